package framework

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/basalt-dev/basalt/bootstrap/artifacts"
)

// ArtifactMirror is an HTTP server of artifact sets (spec.artifacts.mirror) that counts what it
// serves.
type ArtifactMirror struct {
	// URL is the mirror's base URL: URL/<version>/manifest.json.
	URL string
	dir string

	mu       sync.Mutex
	requests map[string]int
}

// ServeArtifactMirror serves dir, the folder holding one artifact set per version
// ($BASALT_CACHE/artifacts), on loopback until the test ends.
func ServeArtifactMirror(t *testing.T, dir string) *ArtifactMirror {
	t.Helper()
	m := &ArtifactMirror{dir: dir, requests: map[string]int{}}
	files := http.FileServer(http.Dir(dir))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m.mu.Lock()
		m.requests[r.URL.Path]++
		m.mu.Unlock()
		files.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	m.URL = srv.URL
	return m
}

// CheckFetchedOnce fails the test unless the mirror served no artifact of version's set more than
// once (the manager's cache fetched each one once for every host), and served some.
func (m *ArtifactMirror) CheckFetchedOnce(t *testing.T, version string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(m.dir, version, artifacts.ManifestFile))
	if err != nil {
		t.Fatal(err)
	}
	var man artifacts.Manifest
	if err := json.Unmarshal(b, &man); err != nil {
		t.Fatal(err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	served := 0
	var twice []string
	for _, a := range man.Artifacts {
		n := m.requests["/"+version+"/"+strings.TrimPrefix(filepath.ToSlash(a.Path), "./")]
		if n > 1 {
			twice = append(twice, a.Name)
		}
		served += n
	}
	if len(twice) > 0 {
		t.Errorf("the mirror served %v more than once: the manager's cache should fetch each artifact once", twice)
	}
	if served == 0 {
		t.Errorf("the mirror served no artifact of %s: the hosts did not get theirs from it", version)
	}
	t.Logf("The mirror served %d artifacts of %s, each once, and its manifest %d times", served, version, m.requests["/"+version+"/"+artifacts.ManifestFile])
}
