package agentserver_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/basalt-dev/basalt/agents/agentserver"
	"github.com/basalt-dev/basalt/agents/artifactcache"
	"github.com/basalt-dev/basalt/agents/planstore"
	"github.com/basalt-dev/basalt/agents/protocol"
	"github.com/basalt-dev/basalt/bootstrap/artifacts"
	"github.com/basalt-dev/basalt/bootstrap/plan"
)

// countingUpstream counts fetches per sha256 and, while gate is open, holds every fetch until it
// is closed.
type countingUpstream struct {
	artifactcache.Upstream
	gate chan struct{}

	mu    sync.Mutex
	count map[string]int
}

func (c *countingUpstream) Fetch(ctx context.Context, ref artifactcache.ArtifactRef, w io.Writer) error {
	c.mu.Lock()
	if c.count == nil {
		c.count = map[string]int{}
	}
	c.count[ref.SHA256]++
	gate := c.gate
	c.mu.Unlock()
	if gate != nil {
		<-gate
	}
	return c.Upstream.Fetch(ctx, ref, w)
}

func (c *countingUpstream) fetches(sha string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.count[sha]
}

func randomBytes(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func sum(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// artifactSet writes an artifact set folder: "good" and "big" match the manifest, "bad" does not
// (the manifest lists the sha256 of other bytes, as a corrupted download would).
func artifactSet(t *testing.T) (dir string, good, big, bad []byte, badSHA string) {
	t.Helper()
	dir = t.TempDir()
	good, big, bad = randomBytes(t, 64<<10), randomBytes(t, 1<<20), []byte("these bytes were corrupted")
	badSHA = sum([]byte("the bytes the manifest promises"))
	for name, b := range map[string][]byte{"good": good, "big": big, "bad": bad} {
		if err := os.MkdirAll(filepath.Join(dir, "bin"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "bin", name), b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	m := &artifacts.Manifest{KubernetesVersion: "v1.37.2", Artifacts: []artifacts.Artifact{
		{Name: "good", Version: "v1", OS: "linux", Arch: "amd64", Kind: artifacts.KindBinary, Path: "bin/good", SHA256: sum(good), Size: int64(len(good))},
		{Name: "big", Version: "v1", OS: "linux", Arch: "amd64", Kind: artifacts.KindBinary, Path: "bin/big", SHA256: sum(big), Size: int64(len(big))},
		{Name: "bad", Version: "v1", OS: "linux", Arch: "amd64", Kind: artifacts.KindBinary, Path: "bin/bad", SHA256: badSHA, Size: int64(len(bad))},
	}}
	if err := m.Write(dir); err != nil {
		t.Fatal(err)
	}
	return dir, good, big, bad, badSHA
}

func TestArtifacts(t *testing.T) {
	dir, good, big, _, badSHA := artifactSet(t)
	sets, err := artifacts.LoadSets(dir)
	if err != nil {
		t.Fatal(err)
	}
	dirUp := &artifactcache.DirUpstream{Sets: sets}
	up := &countingUpstream{Upstream: dirUp}
	cache := &artifactcache.Cache{Dir: t.TempDir(), Upstream: up}
	for _, m := range dirUp.Manifests() {
		cache.RegisterManifest(m)
	}
	h := newHarness(t, func(s *agentserver.Server) { s.Artifacts = cache })
	a := h.register(h.createHost("node-1"))
	url := h.url + protocol.PathArtifacts

	// Served with its checksum as ETag.
	resp, body := get(t, a.client, url+sum(good))
	if resp.StatusCode != http.StatusOK || !bytes.Equal(body, good) || resp.Header.Get("ETag") != `"`+sum(good)+`"` {
		t.Fatalf("GET good: %d, %d bytes, ETag %q", resp.StatusCode, len(body), resp.Header.Get("ETag"))
	}

	// Range requests.
	resp, body = get(t, a.client, url+sum(good), "Range", "bytes=100-199")
	if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(body, good[100:200]) ||
		resp.Header.Get("Content-Range") != fmt.Sprintf("bytes 100-199/%d", len(good)) {
		t.Errorf("range: %d %q, %d bytes", resp.StatusCode, resp.Header.Get("Content-Range"), len(body))
	}

	// Concurrent requests for an artifact not cached yet fetch it from upstream once.
	up.mu.Lock()
	up.gate = make(chan struct{})
	up.mu.Unlock()
	const n = 8
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, body := get(t, a.client, url+sum(big))
			if resp.StatusCode != http.StatusOK || !bytes.Equal(body, big) {
				errs <- fmt.Errorf("concurrent GET: %d, %d bytes", resp.StatusCode, len(body))
			}
		}()
	}
	eventually(t, func() error {
		if up.fetches(sum(big)) == 0 {
			return errors.New("no fetch started yet")
		}
		return nil
	})
	sleepBriefly() // let every request reach the cache and wait on the one fetch
	close(up.gate)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := up.fetches(sum(big)); got != 1 {
		t.Errorf("%d concurrent requests fetched upstream %d times, want once", n, got)
	}
	up.mu.Lock()
	up.gate = nil
	up.mu.Unlock()
	if resp, _ := get(t, a.client, url+sum(big)); resp.StatusCode != http.StatusOK || up.fetches(sum(big)) != 1 {
		t.Errorf("a cached artifact was fetched again (%d fetches)", up.fetches(sum(big)))
	}

	// Upstream bytes that do not match: refused, never cached, tried again next time.
	for i := 1; i <= 2; i++ {
		resp, _ := get(t, a.client, url+badSHA)
		if resp.StatusCode != http.StatusBadGateway {
			t.Errorf("mismatching artifact, try %d: %d, want 502", i, resp.StatusCode)
		}
		if got := up.fetches(badSHA); got != i {
			t.Errorf("mismatching artifact, try %d: %d upstream fetches, want %d (failures are not cached)", i, got, i)
		}
	}
	entries, _ := os.ReadDir(filepath.Join(cache.Dir, "sha256"))
	for _, e := range entries {
		if strings.Contains(e.Name(), badSHA) {
			t.Errorf("the cache holds %s after a checksum mismatch", e.Name())
		}
	}
	if _, err := cache.Ensure(context.Background(), badSHA); err == nil {
		t.Errorf("Ensure of a mismatching artifact succeeded")
	} else {
		var mismatch *artifactcache.ChecksumMismatchError
		if !errors.As(err, &mismatch) || mismatch.Want != badSHA {
			t.Errorf("Ensure: %v, want a *ChecksumMismatchError", err)
		}
	}

	// Only known digests, only hex, only agents.
	unknown := sum([]byte("not in any set or Plan"))
	if resp, _ := get(t, a.client, url+unknown); resp.StatusCode != http.StatusNotFound || up.fetches(unknown) != 0 {
		t.Errorf("unknown digest: %d with %d fetches, want 404 without asking upstream", resp.StatusCode, up.fetches(unknown))
	}
	for _, bad := range []string{strings.ToUpper(sum(good)), "abc", "..%2F..%2Fetc%2Fpasswd", sum(good) + "0"} {
		if resp, _ := get(t, a.client, url+bad); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("GET %s: %d, want 400", bad, resp.StatusCode)
		}
	}
	if resp, _ := get(t, h.client(), url+sum(good)); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("anonymous artifact request: %d, want 401", resp.StatusCode)
	}
	if n := metricValue(t, "basalt_agent_api_artifact_upstream_fetches_total", map[string]string{"result": "checksum_mismatch"}); n < 2 {
		t.Errorf("artifact_upstream_fetches_total{result=checksum_mismatch} = %v, want at least 2", n)
	}
}

// TestPlanArtifactsFromMirror: an artifact named by a stored Plan becomes fetchable, from an HTTP
// mirror.
func TestPlanArtifactsFromMirror(t *testing.T) {
	etcd := randomBytes(t, 32<<10)
	var mirrorHits sync.Map
	mirror := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mirrorHits.Store(r.URL.Path, true)
		if r.URL.Path != "/v1.37.2/etcd" {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write(etcd)
	}))
	t.Cleanup(mirror.Close)
	cache := &artifactcache.Cache{Dir: t.TempDir(), Upstream: &artifactcache.HTTPUpstream{BaseURL: mirror.URL + "/v1.37.2"}}
	h := newHarness(t, func(s *agentserver.Server) { s.Artifacts = cache })
	a := h.register(h.createHost("node-1"))
	url := h.url + protocol.PathArtifacts + sum(etcd)

	if resp, _ := get(t, a.client, url); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("artifact before any Plan names it: %d, want 404", resp.StatusCode)
	}
	p := testPlan("node-1", "x")
	p.Artifacts = []plan.Artifact{{Name: "etcd", SHA256: sum(etcd), Size: int64(len(etcd)), Path: "/usr/local/bin/etcd", Mode: 0o755}}
	if _, _, err := planstore.StorePlan(context.Background(), h.env.Client, h.hostNS, "node-1", p); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() error {
		resp, body := get(t, a.client, url)
		if resp.StatusCode != http.StatusOK || !bytes.Equal(body, etcd) {
			return fmt.Errorf("artifact named by a Plan: %d, %d bytes", resp.StatusCode, len(body))
		}
		return nil
	})
	if _, ok := mirrorHits.Load("/v1.37.2/etcd"); !ok {
		t.Errorf("the mirror was not asked for /v1.37.2/etcd")
	}
}

// TestPrivateArtifact: an etcd snapshot staged for a restore is served to the agent whose Plan
// lists it and to no other, and is stored readable by the manager only.
func TestPrivateArtifact(t *testing.T) {
	snap := randomBytes(t, 64<<10)
	src := filepath.Join(t.TempDir(), "snap.db")
	if err := os.WriteFile(src, snap, 0o600); err != nil {
		t.Fatal(err)
	}
	cache := &artifactcache.Cache{Dir: t.TempDir()}
	ref := artifactcache.ArtifactRef{Name: "etcd-snapshot/ns/c/x", SHA256: sum(snap), Size: int64(len(snap)), Private: true}
	if err := cache.AddFile(ref, src); err != nil {
		t.Fatal(err)
	}
	if err := cache.AddFile(artifactcache.ArtifactRef{Name: "wrong", SHA256: sum([]byte("other")), Size: int64(len(snap))}, src); err == nil {
		t.Error("AddFile accepted a file whose sha256 differs from the reference's")
	}
	cached, err := cache.Ensure(context.Background(), sum(snap))
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(cached); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("cached snapshot mode %v (%v), want 0600", fi.Mode(), err)
	}
	h := newHarness(t, func(s *agentserver.Server) { s.Artifacts = cache })
	owner := h.register(h.createHost("node-1"))
	other := h.register(h.createHost("node-2"))
	url := h.url + protocol.PathArtifacts + sum(snap)
	p := testPlan("node-1", "x")
	p.Artifacts = []plan.Artifact{{Name: "etcd-snapshot-r1", SHA256: sum(snap), Size: int64(len(snap)), Path: "/var/lib/basalt/etcd-snapshots/r1.db", Mode: 0o600}}
	if _, _, err := planstore.StorePlan(context.Background(), h.env.Client, h.hostNS, "node-1", p); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() error {
		resp, body := get(t, owner.client, url)
		if resp.StatusCode != http.StatusOK || !bytes.Equal(body, snap) {
			return fmt.Errorf("the Host whose Plan lists the snapshot: %d, %d bytes", resp.StatusCode, len(body))
		}
		return nil
	})
	if resp, body := get(t, other.client, url); resp.StatusCode != http.StatusNotFound || bytes.Equal(body, snap) {
		t.Errorf("another Host's agent: %d, %d bytes, want 404", resp.StatusCode, len(body))
	}
}
