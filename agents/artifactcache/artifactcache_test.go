package artifactcache

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestHTTPUpstreamURL(t *testing.T) {
	ref := ArtifactRef{Name: "kube-apiserver", SHA256: strings.Repeat("a", 64)}
	for base, want := range map[string]string{
		"https://mirror.example/k8s/v1.37.2/":             "https://mirror.example/k8s/v1.37.2/kube-apiserver",
		"https://mirror.example/k8s/v1.37.2":              "https://mirror.example/k8s/v1.37.2/kube-apiserver",
		"https://mirror.example/by-sha/{sha256}":          "https://mirror.example/by-sha/" + ref.SHA256,
		"https://mirror.example/{name}/{sha256}/download": "https://mirror.example/kube-apiserver/" + ref.SHA256 + "/download",
	} {
		if got := (&HTTPUpstream{BaseURL: base}).URL(ref); got != want {
			t.Errorf("URL with base %s = %s, want %s", base, got, want)
		}
	}
}

// A fetch whose bytes do not match the artifact's sha256 leaves nothing in the cache, not even a
// partial file, and says so with a ChecksumMismatchError; the right bytes are then cached.
func TestEnsureStoresOnlyVerifiedBytes(t *testing.T) {
	good := []byte("the right bytes")
	sum := sha256.Sum256(good)
	ref := ArtifactRef{Name: "a", SHA256: hex.EncodeToString(sum[:]), Size: int64(len(good))}
	src := filepath.Join(t.TempDir(), "a")
	if err := os.WriteFile(src, []byte("the wrong bytes"), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	c := &Cache{Dir: dir, Upstream: &FileUpstream{Files: map[string]string{ref.SHA256: src}}}
	c.Register(ref)
	_, err := c.Ensure(context.Background(), ref.SHA256)
	var mismatch *ChecksumMismatchError
	if !errors.As(err, &mismatch) {
		t.Fatalf("Ensure with wrong upstream bytes: %v, want a ChecksumMismatchError", err)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "sha256", "*")); len(left) > 0 {
		t.Fatalf("the cache kept %v after a mismatch", left)
	}
	if err := os.WriteFile(src, good, 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := c.Ensure(context.Background(), ref.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(p); !bytes.Equal(got, good) {
		t.Errorf("cached %q, want %q", got, good)
	}
	if _, err := c.Ensure(context.Background(), strings.Repeat("A", 64)); !errors.Is(err, ErrInvalidDigest) {
		t.Errorf("upper-case digest: %v, want ErrInvalidDigest", err)
	}
}
