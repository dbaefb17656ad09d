package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestGenerateFromTheRepository runs the generator on the real CRDs and API package and checks
// what a reader looks for: a field with its default and CEL message, the kind facts, constants.
func TestGenerateFromTheRepository(t *testing.T) {
	crds, api := filepath.Join("..", "..", "config", "crd", "bases"), filepath.Join("..", "..", "api", "v1alpha1")
	doc, err := Generate(crds, api)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"## Cluster\n", "## Machine\n", "## Host\n",
		"| short names | `bcl` |",
		"### `spec.controlPlane`",
		"| `replicas` | integer (int32) | `1` | ≥ 1; ≤ 7; rule: spec.controlPlane.replicas must be odd",
		"| `version` **(required)** | string |",
		"### `spec.workers[]`",
		"| `conditions` | []Condition (map list, keyed by `type`) |",
		"| `ConditionReady` | `Ready` |",
		"| `AnnotationReprovision` | `basalt.dev/reprovision` |",
		"| Ready | string | `.status.conditions[?(@.type==\"Ready\")].status` | 0 |",
	} {
		if !bytes.Contains(doc, []byte(want)) {
			t.Errorf("the reference lacks %q", want)
		}
	}
	again, err := Generate(crds, api)
	if err != nil || !bytes.Equal(doc, again) {
		t.Fatalf("two runs differ (err %v): the output must be deterministic for make verify", err)
	}
}

func TestGenerateErrors(t *testing.T) {
	empty := t.TempDir()
	if _, err := Generate(empty, empty); err == nil || !strings.Contains(err.Error(), "no CRDs") {
		t.Errorf("empty CRD folder: %v", err)
	}
	bad := t.TempDir()
	if err := os.WriteFile(filepath.Join(bad, "x.yaml"), []byte("kind: ConfigMap\nfoo: bar\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Generate(bad, empty); err == nil {
		t.Error("a file that is not a CRD was accepted")
	}
}
