package artifactsource

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/basalt-dev/basalt/agents/artifactcache"
	"github.com/basalt-dev/basalt/bootstrap/artifacts"
)

func manifestJSON(t testing.TB, version, path string) []byte {
	t.Helper()
	b, err := json.Marshal(artifacts.Manifest{KubernetesVersion: version, Artifacts: []artifacts.Artifact{{
		Name: "kubelet", Version: version, OS: "linux", Arch: "amd64", Kind: artifacts.KindBinary,
		Path: path, SHA256: strings.Repeat("ab", 32), Size: 10}}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The manifest is fetched once per TTL, its artifacts registered with their mirror URL; while
// the mirror is down the last good manifest is kept; a failure with nothing kept is remembered
// for ErrorTTL and is a NotFoundError that names the URL.
func TestMirrorManifestCachedAndKept(t *testing.T) {
	var hits atomic.Int32
	var down atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if down.Load() || r.URL.Path != "/sets/v1.37.2/manifest.json" {
			http.Error(w, "nope", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write(manifestJSON(t, "v1.37.2", "bin/kubelet"))
	}))
	defer srv.Close()
	now := time.Unix(1000, 0)
	cache := &artifactcache.Cache{Dir: t.TempDir()}
	s := &Source{Cache: cache, Now: func() time.Time { return now }}
	ctx := context.Background()
	for range 3 {
		if _, err := s.Manifest(ctx, srv.URL+"/sets/", "v1.37.2"); err != nil {
			t.Fatal(err)
		}
	}
	if hits.Load() != 1 {
		t.Errorf("%d manifest fetches within the TTL, want 1", hits.Load())
	}
	if ref, ok := cache.Lookup(strings.Repeat("ab", 32)); !ok || ref.URL != srv.URL+"/sets/v1.37.2/bin/kubelet" {
		t.Errorf("registered %+v, want the mirror URL of the kubelet", ref)
	}
	down.Store(true)
	now = now.Add(DefaultTTL + time.Second)
	if m, err := s.Manifest(ctx, srv.URL+"/sets", "v1.37.2"); err != nil || m == nil {
		t.Errorf("mirror down after a good fetch: %v; want the kept manifest", err)
	}
	_, err := s.Manifest(ctx, srv.URL+"/sets", "v1.37.3")
	var nf *NotFoundError
	if !errors.As(err, &nf) || !strings.Contains(err.Error(), srv.URL+"/sets/v1.37.3/manifest.json") || !strings.Contains(err.Error(), "503") {
		t.Errorf("a version the mirror cannot serve: %v", err)
	}
	n := hits.Load()
	_, _ = s.Manifest(ctx, srv.URL+"/sets", "v1.37.3")
	if hits.Load() != n {
		t.Error("a failure was not remembered for ErrorTTL")
	}
	if _, err := (&Source{}).Manifest(ctx, srv.URL, "v1.37.2"); !errors.As(err, &nf) || !strings.Contains(err.Error(), "agent API") {
		t.Errorf("a mirror without the artifact cache: %v", err)
	}
	if _, err := (&Source{}).Manifest(ctx, "", "v1.37.2"); !errors.As(err, &nf) || !strings.Contains(err.Error(), "--artifact-sets") {
		t.Errorf("no local set: %v", err)
	}
}

func TestParseManifestRefuses(t *testing.T) {
	for name, tc := range map[string]struct {
		b    []byte
		want string
	}{
		"other version":   {manifestJSON(t, "v1.36.0", "bin/kubelet"), "not v1.37.2"},
		"path outside":    {manifestJSON(t, "v1.37.2", "../../etc/shadow"), "inside the set"},
		"absolute path":   {manifestJSON(t, "v1.37.2", "/etc/shadow"), "inside the set"},
		"not JSON":        {[]byte("<html>"), "not an artifact manifest"},
		"too big":         {make([]byte, maxManifestBytes+1), "more than"},
		"invalid (empty)": {[]byte(`{"kubernetesVersion":"v1.37.2","artifacts":[{"name":"kubelet"}]}`), ""},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := ParseManifest(tc.b, "v1.37.2"); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// FuzzParseManifest: a mirror's manifest is network input. Whatever it holds, parsing never
// panics, and what it accepts is valid, of the version asked, with every path inside the set.
func FuzzParseManifest(f *testing.F) {
	f.Add(manifestJSON(f, "v1.37.2", "bin/kubelet"))
	f.Add(manifestJSON(f, "v1.37.2", "../x"))
	f.Add([]byte(`{"kubernetesVersion":"v1.37.2","artifacts":[]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseManifest(b, "v1.37.2")
		if err != nil {
			return
		}
		if m.KubernetesVersion != "v1.37.2" || m.Validate() != nil {
			t.Fatalf("accepted an invalid manifest: %+v", m)
		}
		for _, a := range m.Artifacts {
			if strings.HasPrefix(a.Path, "/") || strings.Contains("/"+a.Path+"/", "/../") {
				t.Fatalf("accepted the path %q", a.Path)
			}
		}
	})
}
