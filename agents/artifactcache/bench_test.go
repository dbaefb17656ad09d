package artifactcache

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/basalt-dev/basalt/agents/protocol"
)

func benchCachedArtifact(b *testing.B, dir string, size int) string {
	b.Helper()
	data := make([]byte, size)
	_, _ = rand.NewChaCha8([32]byte{'b', 'a', 's', 'a', 'l', 't'}).Read(data)
	h := sha256.Sum256(data)
	digest := hex.EncodeToString(h[:])
	if err := os.MkdirAll(filepath.Join(dir, "sha256"), 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "sha256", digest), data, 0o644); err != nil {
		b.Fatal(err)
	}
	return digest
}

// BenchmarkCacheServe: GET /v1/artifacts/<sha256> of a cached 100 MiB artifact, answered by the
// Cache (http.ServeContent from its folder) behind the API's route, through httptest on loopback,
// read to the end by one kept-alive client. http is plain HTTP (the kernel's sendfile path); tls
// is HTTPS, as agents fetch through the mutually authenticated API (no sendfile, every byte
// encrypted and decrypted on this machine's 2 cores). Client-certificate checks are per
// connection and not part of the figure.
func BenchmarkCacheServe(b *testing.B) {
	const size = 100 << 20
	dir := b.TempDir()
	digest := benchCachedArtifact(b, dir, size)
	cache := &Cache{Dir: dir}
	cache.Register(ArtifactRef{Name: "kube-apiserver", SHA256: digest, Size: size})
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+protocol.PathArtifacts+"{digest}", func(w http.ResponseWriter, r *http.Request) {
		cache.Serve(w, r, r.PathValue("digest"))
	})
	for _, tc := range []struct {
		name  string
		start func(http.Handler) *httptest.Server
	}{{"http", httptest.NewServer}, {"tls", httptest.NewTLSServer}} {
		b.Run(tc.name+"-100MiB", func(b *testing.B) {
			srv := tc.start(mux)
			defer srv.Close()
			client := srv.Client()
			url := srv.URL + protocol.PathArtifacts + digest
			b.SetBytes(size)
			b.ReportAllocs()
			for b.Loop() {
				resp, err := client.Get(url)
				if err != nil {
					b.Fatal(err)
				}
				n, err := io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
				if err != nil || resp.StatusCode != http.StatusOK || n != size {
					b.Fatalf("GET: %s, %d bytes, %v", resp.Status, n, err)
				}
			}
		})
	}
}
