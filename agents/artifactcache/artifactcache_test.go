package artifactcache

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
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

// An artifact registered with a URL (a Cluster's mirror) is fetched from that URL, not from
// Upstream, once for concurrent and later requests, and checked like any other; a Plan's later
// registration of the same sha256 without a URL keeps it.
func TestEnsureFetchesMirrorURLOnce(t *testing.T) {
	good := []byte("kubelet from the mirror")
	sum := sha256.Sum256(good)
	sha := hex.EncodeToString(sum[:])
	var hits atomic.Int32
	body := good
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if r.URL.Path != "/v1.37.2/bin/kubelet" {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write(body)
	}))
	defer srv.Close()
	c := &Cache{Dir: t.TempDir(), Upstream: &FileUpstream{}}
	c.Register(ArtifactRef{Name: "kubelet", SHA256: sha, Size: int64(len(good)), URL: srv.URL + "/v1.37.2/bin/kubelet"})
	c.Register(ArtifactRef{Name: "kubelet", SHA256: sha}) // as a stored Plan registers it
	if ref, _ := c.Lookup(sha); ref.URL == "" || ref.Size != int64(len(good)) {
		t.Fatalf("a registration without URL lost the mirror's: %+v", ref)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := c.Ensure(context.Background(), sha)
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Ensure(context.Background(), sha); err != nil {
		t.Fatal(err)
	}
	if n := hits.Load(); n != 1 {
		t.Errorf("the mirror was asked %d times, want once", n)
	}

	// Bytes that do not match are refused.
	bad := []byte("tampered bytes of the right length!!!")
	badSum := sha256.Sum256([]byte("what the manifest says"))
	body = bad
	c.Register(ArtifactRef{Name: "kubelet", SHA256: hex.EncodeToString(badSum[:]), URL: srv.URL + "/v1.37.2/bin/kubelet"})
	var mismatch *ChecksumMismatchError
	if _, err := c.Ensure(context.Background(), hex.EncodeToString(badSum[:])); !errors.As(err, &mismatch) {
		t.Errorf("tampered mirror bytes: %v, want a ChecksumMismatchError", err)
	}
}
