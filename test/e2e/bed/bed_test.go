package bed

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/crypto/ssh"
)

func TestCandidateSubnets(t *testing.T) {
	pool := netip.MustParsePrefix("172.28.0.0/22") // four /24s
	p := netip.MustParsePrefix
	tests := []struct {
		name  string
		used  []netip.Prefix
		start int
		want  []netip.Prefix
	}{
		{"all free", nil, 0, []netip.Prefix{p("172.28.0.0/24"), p("172.28.1.0/24"), p("172.28.2.0/24"), p("172.28.3.0/24")}},
		{"start wraps", nil, 2, []netip.Prefix{p("172.28.2.0/24"), p("172.28.3.0/24"), p("172.28.0.0/24"), p("172.28.1.0/24")}},
		{"start beyond the pool", nil, 6, []netip.Prefix{p("172.28.2.0/24"), p("172.28.3.0/24"), p("172.28.0.0/24"), p("172.28.1.0/24")}},
		{"a used /24", []netip.Prefix{p("172.28.1.0/24")}, 0, []netip.Prefix{p("172.28.0.0/24"), p("172.28.2.0/24"), p("172.28.3.0/24")}},
		{"a used /16 covers all", []netip.Prefix{p("172.16.0.0/12")}, 0, nil},
		{"a smaller used net inside", []netip.Prefix{p("172.28.3.128/25")}, 0, []netip.Prefix{p("172.28.0.0/24"), p("172.28.1.0/24"), p("172.28.2.0/24")}},
		{"unrelated nets", []netip.Prefix{p("172.17.0.0/16"), p("10.0.0.0/8")}, 3, []netip.Prefix{p("172.28.3.0/24"), p("172.28.0.0/24"), p("172.28.1.0/24"), p("172.28.2.0/24")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := candidateSubnets(pool, tt.used, tt.start)
			if diff := cmp.Diff(tt.want, got, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
				t.Errorf("candidateSubnets (-want +got):\n%s", diff)
			}
		})
	}
	if n := len(candidateSubnets(SubnetPool, nil, 0)); n != 256 {
		t.Errorf("SubnetPool has %d /24s, want 256", n)
	}
	if got := hostAddr(p("172.28.7.0/24"), 11).String(); got != "172.28.7.11" {
		t.Errorf("hostAddr = %s", got)
	}
}

func TestKernelRoutes(t *testing.T) {
	routes, err := kernelRoutes()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range routes {
		if !r.IsValid() || r.Bits() == 0 || r != r.Masked() {
			t.Errorf("Route %s: want a masked, non-default prefix", r)
		}
	}
}

func TestNewKeyPair(t *testing.T) {
	kp, err := NewKeyPair("root@host-1")
	if err != nil {
		t.Fatal(err)
	}
	// sshd and ssh(1) read the PEM; so must x/crypto/ssh, with the same public key.
	signer, err := ssh.ParsePrivateKey(kp.PrivatePEM)
	if err != nil {
		t.Fatalf("Parse PrivatePEM: %v", err)
	}
	if !bytes.Equal(signer.PublicKey().Marshal(), kp.Public.Marshal()) ||
		!bytes.Equal(kp.Signer.PublicKey().Marshal(), kp.Public.Marshal()) {
		t.Error("PrivatePEM, Signer and Public disagree")
	}
	pub, comment, _, rest, err := ssh.ParseAuthorizedKey(kp.AuthorizedKey)
	if err != nil || len(rest) != 0 {
		t.Fatalf("Parse AuthorizedKey %q: %v (rest %q)", kp.AuthorizedKey, err, rest)
	}
	if comment != "root@host-1" || pub.Type() != ssh.KeyAlgoED25519 || !bytes.Equal(pub.Marshal(), kp.Public.Marshal()) {
		t.Errorf("AuthorizedKey = %q", kp.AuthorizedKey)
	}
	other, err := NewKeyPair("")
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(other.Public.Marshal(), kp.Public.Marshal()) {
		t.Error("Two NewKeyPair calls returned the same key")
	}
}

func TestWriteTar(t *testing.T) {
	src := filepath.Join(t.TempDir(), "bin")
	if err := os.WriteFile(src, []byte("binary"), 0o755); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	err := writeTar(&buf, []tarEntry{
		{Name: "etc/ssh/key", Mode: 0o600, Data: []byte("secret")},
		{Name: "root/.ssh", Mode: 0o700, Dir: true},
		{Name: "usr/local/bin/x", Mode: 0o755, Size: 6, Open: func() (io.ReadCloser, error) { return os.Open(src) }},
	})
	if err != nil {
		t.Fatal(err)
	}
	type entry struct {
		Name     string
		Mode     int64
		Type     byte
		Uid, Gid int
		Data     string
	}
	var got []entry
	tr := tar.NewReader(&buf)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		got = append(got, entry{h.Name, h.Mode, h.Typeflag, h.Uid, h.Gid, string(b)})
	}
	want := []entry{
		{"etc/ssh/key", 0o600, tar.TypeReg, 0, 0, "secret"},
		{"root/.ssh/", 0o700, tar.TypeDir, 0, 0, ""},
		{"usr/local/bin/x", 0o755, tar.TypeReg, 0, 0, "binary"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("tar (-want +got):\n%s", diff)
	}
	// A file whose size changed under us is an error, not a short or padded file.
	err = writeTar(io.Discard, []tarEntry{{Name: "x", Size: 3, Open: func() (io.ReadCloser, error) { return os.Open(src) }}})
	if err == nil {
		t.Error("writeTar with a wrong Size: no error")
	}
}

func TestLease(t *testing.T) {
	t.Setenv("BASALT_CACHE", t.TempDir())
	l, err := acquireLease("0123abcd")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(l.path, filepath.Join(CacheDir(), "testbed", "runs")) {
		t.Errorf("lease at %s, want under the cache", l.path)
	}
	// Held while this process holds it, even when asked through another open file.
	if !leaseHeld(l.path) {
		t.Error("leaseHeld = false for a held lease")
	}
	if _, err := acquireLease("0123abcd"); err == nil {
		t.Error("A second acquire of a held lease succeeded")
	}
	l.release()
	if leaseHeld(l.path) {
		t.Error("leaseHeld = true after release")
	}
	if leaseHeld("") || leaseHeld(filepath.Join(t.TempDir(), "gone.lock")) {
		t.Error("leaseHeld = true for no lease file")
	}
	// A lease file that nobody holds (its process died) is not held.
	dead := filepath.Join(t.TempDir(), "dead.lock")
	if err := os.WriteFile(dead, []byte("1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if leaseHeld(dead) {
		t.Error("leaseHeld = true for an unlocked file")
	}
}

func TestArtifactPath(t *testing.T) {
	for name, want := range map[string]string{
		"etcd":         "bin/etcd",
		"cni-bridge":   "bin/cni/bridge",
		"image-pause":  "images/pause.tar",
		"containerd":   "bin/containerd",
		"kube-proxy":   "bin/kube-proxy",
		"image-webapp": "images/webapp.tar",
	} {
		if got := artifactPath(name); got != want {
			t.Errorf("artifactPath(%q) = %q, want %q", name, got, want)
		}
	}
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, mode := range map[string]os.FileMode{"etcd": 0o755, "notexec": 0o644} {
		if err := os.WriteFile(filepath.Join(dir, "bin", name), []byte("x"), mode); err != nil {
			t.Fatal(err)
		}
	}
	got := missingArtifacts(dir, []string{"etcd", "notexec", "kubelet", "image-pause"})
	want := []string{"bin/notexec", "bin/kubelet", "images/pause.tar"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("missingArtifacts (-want +got):\n%s", diff)
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	for _, opts := range []Options{
		{Hosts: -1},
		{Hosts: 201},
		{Name: "Host_1"},
		{Name: strings.Repeat("a", 41)},
		{Volumes: []string{"var/lib/x"}},
		{Volumes: []string{"/var/lib/../x"}},
		{Volumes: []string{"/"}},
	} {
		if _, err := New(context.Background(), opts); err == nil || !strings.Contains(err.Error(), "test bed:") {
			t.Errorf("New(%+v) = %v, want an options error", opts, err)
		}
	}
}

func TestTailWriter(t *testing.T) {
	var logged []string
	w := &tailWriter{max: 2, logf: func(f string, a ...any) { logged = append(logged, a[0].(string)) }}
	for _, s := range []string{"one\ntw", "o\nthree\nfour"} {
		if _, err := io.WriteString(w, s); err != nil {
			t.Fatal(err)
		}
	}
	w.flush()
	if diff := cmp.Diff([]string{"one", "two", "three", "four"}, logged); diff != "" {
		t.Errorf("logged (-want +got):\n%s", diff)
	}
	if got := w.String(); got != "three\nfour" {
		t.Errorf("tail = %q", got)
	}
}
