package framework

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A JUnit report shaped as the e2e framework writes it: conformance cases that passed, failed,
// errored and were skipped, and a case the focus left out.
const junitSample = `<?xml version="1.0" encoding="UTF-8"?>
<testsuites tests="5" disabled="0" errors="0" failures="1" time="60">
  <testsuite name="Kubernetes e2e suite" package="/" tests="5" failures="1" errors="0" time="60">
    <testcase name="[sig-node] Pods should be submitted and removed [NodeConformance] [Conformance]" classname="Kubernetes e2e suite" status="passed" time="10"></testcase>
    <testcase name="[sig-network] DNS should provide DNS for services  [Conformance]" classname="Kubernetes e2e suite" status="failed" time="30">
      <failure message="timed out" type="failed">timed out</failure>
    </testcase>
    <testcase name="[sig-apps] Job should run a job [Conformance]" classname="Kubernetes e2e suite" status="errored" time="1"><error message="x" type="errored">x</error></testcase>
    <testcase name="[sig-storage] Projected secret should be consumable [Conformance]" classname="Kubernetes e2e suite" status="skipped" time="0"><skipped message="skipped"></skipped></testcase>
    <testcase name="[sig-storage] CSI mock volume should work" classname="Kubernetes e2e suite" status="skipped" time="0"><skipped message="skipped"></skipped></testcase>
  </testsuite>
</testsuites>`

func TestSummarizeJUnit(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "junit_01.xml")
	if err := os.WriteFile(f, []byte(junitSample), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := SummarizeJUnit(f)
	if err != nil {
		t.Fatal(err)
	}
	if s.Passed != 1 || s.Skipped != 1 || len(s.Failed) != 2 || s.Total() != 4 {
		t.Fatalf("summary %+v: want 1 passed, 2 failed, 1 skipped of 4 conformance tests", s)
	}
	if !strings.HasPrefix(s.Failed[0], "[sig-apps] Job") || !strings.HasPrefix(s.Failed[1], "[sig-network] DNS") {
		t.Errorf("failed %q, want the Job and the DNS test in name order", s.Failed)
	}
	s.Version, s.Nodes, s.Duration, s.Report = "v1.37.2", 4, 61*time.Minute, filepath.Join(dir, "report-x")
	s.Skips = map[string]string{`\[sig-x\] needs the internet`: "no route out of the bed"}
	md := s.Markdown(time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC))
	for _, want := range []string{"| v1.37.2 | 4 | 1 | 2 | 1 | 1h1m0s |", "- `[sig-network] DNS should provide DNS for services  [Conformance]`",
		"no route out of the bed", "2026-12-07", "report-x"} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}

	doc := filepath.Join(dir, "conformance.md")
	if err := os.WriteFile(doc, []byte("# Title\n\n"+conformanceBegin+"\nold\n"+conformanceEnd+"\n\nafter\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := WriteConformanceResults(doc, md); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(doc)
	if got := string(b); strings.Contains(got, "old") || !strings.Contains(got, md) || !strings.HasSuffix(got, conformanceEnd+"\n\nafter\n") {
		t.Errorf("page after the rewrite:\n%s", got)
	}
	if err := WriteConformanceResults(filepath.Join(dir, "junit_01.xml"), md); err == nil {
		t.Error("a page without the markers was accepted")
	}

	// A run that never started leaves a report with no conformance test: an error, not "0 failed".
	if err := os.WriteFile(f, []byte(`<testsuites><testsuite name="x"></testsuite></testsuites>`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := SummarizeJUnit(f); err == nil {
		t.Error("a report without conformance tests was accepted")
	}
}

func TestReadImageList(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "images.txt")
	if err := os.WriteFile(f, []byte("e2e-test-images/agnhost 2.66.1 /c/agnhost.tar\nk8s/pause 3.10.2 /c/pause.tar\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := ReadImageList(f)
	if err != nil || len(got) != 2 || got[1] != (TestImage{Repository: "k8s/pause", Tag: "3.10.2", File: "/c/pause.tar"}) {
		t.Fatalf("ReadImageList = %+v, %v", got, err)
	}
	for _, bad := range []string{"", "a b\n", "a b relative.tar\n"} {
		if err := os.WriteFile(f, []byte(bad), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := ReadImageList(f); err == nil {
			t.Errorf("list %q accepted", bad)
		}
	}
}
