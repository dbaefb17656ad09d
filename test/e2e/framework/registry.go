package framework

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/basalt-dev/basalt/bootstrap/pki"
	"github.com/basalt-dev/basalt/test/e2e/bed"
)

// Registry is a real OCI registry (distribution v3, built from Go modules as the bed tool
// tools/registry of an artifact set) on a bed host: TLS with a certificate of its own CA for the
// host's address, and HTTP basic authentication (htpasswd, bcrypt).
type Registry struct {
	// Addr is host:port, e.g. 172.18.0.4:5000.
	Addr string
	// CA is the PEM CA certificate that verifies the registry's TLS certificate.
	CA []byte
	// Username and Password are the one account the registry accepts.
	Username, Password string
}

// RegistryPort is the registry's port on its host.
const RegistryPort = 5000

// StartRegistryInput says where the registry runs.
type StartRegistryInput struct {
	// Host is the bed host that runs it (not a node of a Cluster).
	Host *bed.Host
	// Version names the artifact set whose bed tool tools/registry is the registry binary
	// (built with hack/build-artifacts.sh --only tool-registry when missing).
	Version string
}

// StartRegistry installs and starts the registry on in.Host as a systemd service, and waits until
// it answers over TLS and refuses an anonymous request.
func StartRegistry(ctx context.Context, t *testing.T, in StartRegistryInput) *Registry {
	t.Helper()
	h := in.Host
	setDir, err := bed.Artifacts(ctx, bed.ArtifactsInput{Version: in.Version, Names: []string{"tool-registry"}, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(setDir, "tools", "registry")
	now := time.Now()
	ca, _, err := pki.EnsureCA(nil, pki.CARequest{CommonName: "basalt-e2e-registry-ca", Validity: 24 * time.Hour}, now)
	if err != nil {
		t.Fatal(err)
	}
	ip := net.ParseIP(h.IP)
	srv, _, err := pki.EnsureCertificate(nil, ca, pki.CertRequest{Name: "registry", CommonName: h.IP, IPs: []net.IP{ip},
		Usage: pki.UsageServer, Validity: 12 * time.Hour, RenewBefore: time.Hour}, now)
	if err != nil {
		t.Fatal(err)
	}
	r := &Registry{Addr: net.JoinHostPort(h.IP, fmt.Sprint(RegistryPort)), CA: ca.Cert, Username: "puller", Password: "e2e-" + randomHex(t, 8)}
	hash, err := bcrypt.GenerateFromPassword([]byte(r.Password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	config := fmt.Sprintf(`version: 0.1
log:
  level: info
  formatter: text
storage:
  filesystem:
    rootdirectory: /var/lib/registry
http:
  addr: :%d
  tls:
    certificate: /etc/registry/tls.crt
    key: /etc/registry/tls.key
auth:
  htpasswd:
    realm: basalt-e2e
    path: /etc/registry/htpasswd
`, RegistryPort)
	files := []bed.WriteFileInput{
		{Host: h, Path: "/etc/registry/config.yml", Content: []byte(config)},
		{Host: h, Path: "/etc/registry/tls.crt", Content: srv.Cert},
		{Host: h, Path: "/etc/registry/tls.key", Content: srv.Key, Mode: 0o600},
		{Host: h, Path: "/etc/registry/htpasswd", Content: []byte(r.Username + ":" + string(hash) + "\n"), Mode: 0o600},
	}
	for _, f := range files {
		if err := bed.WriteFile(ctx, f); err != nil {
			t.Fatal(err)
		}
	}
	if err := bed.CopyFile(ctx, bed.CopyFileInput{Host: h, Src: bin, Dst: "/usr/local/bin/registry", Mode: 0o755}); err != nil {
		t.Fatal(err)
	}
	if out, err := h.Run(ctx, "systemd-run --unit=e2e-registry --property=Restart=on-failure /usr/local/bin/registry serve /etc/registry/config.yml"); err != nil {
		t.Fatalf("starting the registry on %s: %v\n%s", h.Name, err, out)
	}
	Eventually(t, time.Minute, func() error {
		resp, err := r.do(ctx, http.MethodGet, "/v2/", nil, "", false)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			return fmt.Errorf("anonymous GET /v2/: %s, want 401", resp.Status)
		}
		return nil
	})
	t.Logf("Registry (distribution v3) on %s at https://%s: TLS from its own CA, basic auth", h.Name, r.Addr)
	return r
}

// do sends one request to the registry, trusting only its CA, with basic auth when auth is set.
// path is absolute (/v2/...) or a full URL the registry returned.
func (r *Registry) do(ctx context.Context, method, path string, body []byte, contentType string, auth bool) (*http.Response, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(r.CA) {
		return nil, errors.New("registry CA is not PEM")
	}
	cl := &http.Client{Timeout: time.Minute, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	u := path
	if strings.HasPrefix(path, "/") {
		u = "https://" + r.Addr + path
	}
	req, err := http.NewRequestWithContext(ctx, method, u, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if auth {
		req.SetBasicAuth(r.Username, r.Password)
	}
	return cl.Do(req)
}

// Push uploads an OCI image layout tar (one image, as hack/ociimage writes) to the registry as
// repository:tag with the OCI distribution API: every blob (monolithic upload), then the manifest.
func (r *Registry) Push(ctx context.Context, t *testing.T, layoutTar, repository, tag string) {
	t.Helper()
	blobs, index, err := readLayout(layoutTar)
	if err != nil {
		t.Fatal(err)
	}
	var idx struct {
		Manifests []struct {
			MediaType string `json:"mediaType"`
			Digest    string `json:"digest"`
		} `json:"manifests"`
	}
	if err := json.Unmarshal(index, &idx); err != nil || len(idx.Manifests) != 1 {
		t.Fatalf("%s: index.json with one manifest expected (%v)", layoutTar, err)
	}
	manifest, ok := blobs[idx.Manifests[0].Digest]
	if !ok {
		t.Fatalf("%s: manifest %s missing", layoutTar, idx.Manifests[0].Digest)
	}
	var m struct {
		Config struct {
			Digest string `json:"digest"`
		} `json:"config"`
		Layers []struct {
			Digest string `json:"digest"`
		} `json:"layers"`
	}
	if err := json.Unmarshal(manifest, &m); err != nil {
		t.Fatal(err)
	}
	digests := []string{m.Config.Digest}
	for _, l := range m.Layers {
		digests = append(digests, l.Digest)
	}
	for _, d := range digests {
		b, ok := blobs[d]
		if !ok {
			t.Fatalf("%s: blob %s missing", layoutTar, d)
		}
		if err := r.pushBlob(ctx, repository, d, b); err != nil {
			t.Fatal(err)
		}
	}
	resp, err := r.do(ctx, http.MethodPut, "/v2/"+repository+"/manifests/"+tag, manifest, idx.Manifests[0].MediaType, true)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		t.Fatalf("PUT manifest %s:%s: %s %s", repository, tag, resp.Status, msg)
	}
}

func (r *Registry) pushBlob(ctx context.Context, repository, digest string, b []byte) error {
	resp, err := r.do(ctx, http.MethodPost, "/v2/"+repository+"/blobs/uploads/", nil, "", true)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return fmt.Errorf("POST blob upload %s: %s", repository, resp.Status)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		return fmt.Errorf("blob upload location: %w", err)
	}
	if !loc.IsAbs() {
		loc = (&url.URL{Scheme: "https", Host: r.Addr}).ResolveReference(loc)
	}
	q := loc.Query()
	q.Set("digest", digest)
	loc.RawQuery = q.Encode()
	resp, err = r.do(ctx, http.MethodPut, loc.String(), b, "application/octet-stream", true)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("PUT blob %s: %s %s", digest, resp.Status, msg)
	}
	return nil
}

// readLayout reads an OCI image layout tar: its blobs by digest, and index.json.
func readLayout(file string) (map[string][]byte, []byte, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	blobs := map[string][]byte{}
	var index []byte
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, nil, err
		}
		if hdr.Typeflag != tar.TypeReg {
			continue
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			return nil, nil, err
		}
		name := strings.TrimPrefix(hdr.Name, "./")
		switch {
		case name == "index.json":
			index = b
		case strings.HasPrefix(name, "blobs/sha256/"):
			blobs["sha256:"+strings.TrimPrefix(name, "blobs/sha256/")] = b
		}
	}
	if index == nil {
		return nil, nil, fmt.Errorf("%s has no index.json", file)
	}
	return blobs, index, nil
}

// BuildTestImage packs the web server of hack/images/webserver as a single-layer OCI image with
// the reference ref and the binary at /<name>, so its layer differs from the preloaded
// basalt.dev/webserver image's: nothing of it is on any node before a pull. It returns the
// layout tar's path.
func BuildTestImage(ctx context.Context, t *testing.T, name, ref string) string {
	t.Helper()
	root, err := bed.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, name)
	out := filepath.Join(dir, name+".tar")
	for _, argv := range [][]string{
		{"go", "build", "-trimpath", "-ldflags", "-s -w", "-o", bin, "./hack/images/webserver"},
		{"go", "run", "./hack/ociimage", "-binary", bin, "-path", "/" + name, "-ref", ref, "-user", "65532:65532", "-port", "8080/tcp", "-o", out},
	} {
		cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(argv, " "), err, b)
		}
	}
	return out
}

// randomHex returns n random bytes in hex.
func randomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}
