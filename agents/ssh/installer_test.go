package ssh_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/crypto/ssh"

	"github.com/basalt-dev/basalt/agents/protocol"
	agentssh "github.com/basalt-dev/basalt/agents/ssh"
)

// testAgent stands in for basalt-agent: it records each start (its pid) and the bootstrap it
// found, relative to the install root it runs under, then stays up until it is stopped.
const testAgent = `#!/bin/sh
R=$(cd "$(dirname "$0")/../../.." && pwd)
echo "$$" >>"$R/agent-starts"
cat "$R/etc/basalt/agent/bootstrap.json" >"$R/agent-saw-bootstrap.json" 2>/dev/null || true
trap 'exit 0' TERM
while :; do sleep 1; done
`

// rig is one fake host, an install root on it, and the credentials to reach it.
type rig struct {
	t      *testing.T
	host   *fakeHost
	root   string
	inst   *agentssh.Installer
	signer ssh.Signer
	boot   protocol.Bootstrap
}

func newRig(t *testing.T, extraHostKeys ...ssh.Signer) *rig {
	t.Helper()
	// The login key comes from Secret bytes, as the Host controller would read it.
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "basalt test")
	if err != nil {
		t.Fatal(err)
	}
	signer, err := agentssh.SignerFromSecretData(pem.EncodeToMemory(block))
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{
		t:      t,
		host:   newFakeHost(t, signer.PublicKey(), extraHostKeys...),
		root:   t.TempDir(),
		signer: signer,
		boot:   protocol.Bootstrap{Server: "https://127.0.0.1:9443", CA: testCA(t), Token: "abcdef.0123456789abcdef"},
	}
	r.inst = &agentssh.Installer{Root: r.root, DialTimeout: 5 * time.Second}
	t.Cleanup(r.killAgents)
	return r
}

func (r *rig) target() agentssh.Target {
	return agentssh.Target{Address: "127.0.0.1", Port: r.host.addr.Port, User: "root", Signer: r.signer}
}

func (r *rig) install(in agentssh.InstallInput) (agentssh.InstallResult, error) {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if in.Signer == nil {
		in.Target = r.target()
	}
	if in.Agent.Open == nil {
		in.Agent = agentssh.BinaryFromBytes([]byte(testAgent), "")
	}
	if in.Bootstrap.Server == "" {
		in.Bootstrap = r.boot
	}
	return r.inst.Install(ctx, in)
}

func (r *rig) path(p string) string { return filepath.Join(r.root, p) }

// starts returns the pids the test agent recorded, one per start.
func (r *rig) starts() []string {
	b, _ := os.ReadFile(r.path("agent-starts"))
	return strings.Fields(string(b))
}

// pid returns the pid in the agent's pidfile, or 0.
func (r *rig) pid() int {
	b, _ := os.ReadFile(r.path(protocol.AgentPIDFile))
	p, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return p
}

// killAgents stops any test agent a failed test left running.
func (r *rig) killAgents() {
	for _, s := range r.starts() {
		if p, err := strconv.Atoi(s); err == nil && alive(p) {
			_ = syscall.Kill(p, syscall.SIGKILL)
		}
	}
}

// alive says whether pid runs (a zombie, with no command line, does not).
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	return err == nil && len(b) > 0
}

func TestInstallIsIdempotentAndUninstallRemovesEverything(t *testing.T) {
	r := newRig(t)

	// First contact: no pinned or recorded key, so the host's key is accepted and returned.
	res, err := r.install(agentssh.InstallInput{})
	if err != nil {
		t.Fatalf("first install: %v", err)
	}
	if res.HostKey == nil || !bytes.Equal(res.HostKey.Marshal(), r.host.key.PublicKey().Marshal()) {
		t.Fatalf("first install returned host key %v, want the host's %s", res.HostKey, ssh.FingerprintSHA256(r.host.key.PublicKey()))
	}
	want := agentssh.InstallResult{HostKey: res.HostKey, Init: agentssh.InitSupervisor, Uploaded: true, BootstrapWritten: true, Restarted: true}
	if diff := cmp.Diff(want, res, cmp.Comparer(keysEqual)); diff != "" {
		t.Errorf("first install (-want +got):\n%s", diff)
	}
	assertFile(t, r.path(protocol.AgentBinaryPath), []byte(testAgent), 0o755)
	boot, _ := json.Marshal(r.boot)
	assertFile(t, r.path(protocol.BootstrapPath), boot, 0o600)
	if st, err := os.Stat(filepath.Dir(r.path(protocol.BootstrapPath))); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("bootstrap folder: %v, mode %v; want 0700", err, st.Mode().Perm())
	}
	if got := r.starts(); len(got) != 1 {
		t.Fatalf("the agent started %d times, want once", len(got))
	}
	pid := r.pid()
	if !alive(pid) {
		t.Fatalf("the agent (pid %d from the pidfile) is not running", pid)
	}
	eventually(t, func() error {
		saw, err := os.ReadFile(r.path("agent-saw-bootstrap.json"))
		if err != nil || !bytes.Equal(saw, boot) {
			return errors.New("the agent has not read its bootstrap yet")
		}
		return nil
	})

	// The agent registers (it writes its certificate); the controller calls Install again with
	// the recorded key and a fresh token: nothing is uploaded, written or restarted.
	mustWrite(t, r.path(protocol.CertFile), agentCert(t, time.Now().Add(time.Hour)), 0o600)
	second := r.boot
	second.Token = "ghijkl.0123456789abcdef"
	res2, err := r.install(agentssh.InstallInput{
		Target:    withRecorded(r.target(), res.HostKey),
		Bootstrap: second,
	})
	if err != nil {
		t.Fatalf("second install: %v", err)
	}
	want2 := agentssh.InstallResult{HostKey: res.HostKey, Init: agentssh.InitSupervisor, Registered: true}
	if diff := cmp.Diff(want2, res2, cmp.Comparer(keysEqual)); diff != "" {
		t.Errorf("second install (-want +got):\n%s", diff)
	}
	assertFile(t, r.path(protocol.BootstrapPath), boot, 0o600) // the old token stays
	if got := r.starts(); len(got) != 1 || r.pid() != pid || !alive(pid) {
		t.Errorf("second install: starts %v, pidfile %d; want the first agent (pid %d) left running", got, r.pid(), pid)
	}
	if n := countExec(r.host, "upload"); n != 1 {
		t.Errorf("the binary was uploaded %d times over two installs, want once", n)
	}

	// A new agent binary is uploaded and the agent restarted on it.
	newAgent := strings.Replace(testAgent, "sleep 1", "sleep 2", 1)
	res3, err := r.install(agentssh.InstallInput{
		Target: withRecorded(r.target(), res.HostKey),
		Agent:  agentssh.BinaryFromBytes([]byte(newAgent), ""),
	})
	if err != nil {
		t.Fatalf("upgrade: %v", err)
	}
	if !res3.Uploaded || !res3.Restarted || res3.BootstrapWritten {
		t.Errorf("upgrade: %+v; want uploaded and restarted, bootstrap untouched", res3)
	}
	assertFile(t, r.path(protocol.AgentBinaryPath), []byte(newAgent), 0o755)
	if alive(pid) {
		t.Errorf("the old agent (pid %d) still runs after the upgrade", pid)
	}
	if !alive(r.pid()) || len(r.starts()) != 2 {
		t.Errorf("after the upgrade: pid %d alive=%v, starts %v; want a second, running agent", r.pid(), alive(r.pid()), r.starts())
	}

	// Uninstall stops the agent and removes every path the installer wrote.
	newPid := r.pid()
	ctx := context.Background()
	ures, err := r.inst.Uninstall(ctx, withRecorded(r.target(), res.HostKey))
	if err != nil {
		t.Fatalf("uninstall: %v", err)
	}
	if !ures.Stopped {
		t.Errorf("uninstall did not report stopping the agent")
	}
	if alive(newPid) {
		t.Errorf("the agent (pid %d) still runs after uninstall", newPid)
	}
	for _, p := range strings.Fields(protocol.InstalledPaths) {
		if _, err := os.Lstat(r.path(p)); !os.IsNotExist(err) {
			t.Errorf("%s is still there after uninstall (%v)", p, err)
		}
	}
	ures, err = r.inst.Uninstall(ctx, withRecorded(r.target(), res.HostKey))
	if err != nil || ures.Stopped {
		t.Errorf("second uninstall: %+v, %v; want a no-op", ures, err)
	}
}

func TestNewTokenRestartsUnregisteredAgent(t *testing.T) {
	r := newRig(t)
	res, err := r.install(agentssh.InstallInput{})
	if err != nil {
		t.Fatal(err)
	}
	pid := r.pid()
	second := r.boot
	second.Token = "ghijkl.0123456789abcdef"
	res2, err := r.install(agentssh.InstallInput{Target: withRecorded(r.target(), res.HostKey), Bootstrap: second})
	if err != nil {
		t.Fatal(err)
	}
	if res2.Uploaded || !res2.BootstrapWritten || !res2.Restarted {
		t.Errorf("re-install before registration: %+v; want the new bootstrap written and the agent restarted, no upload", res2)
	}
	boot, _ := json.Marshal(second)
	assertFile(t, r.path(protocol.BootstrapPath), boot, 0o600)
	if alive(pid) || !alive(r.pid()) {
		t.Errorf("old agent %d alive=%v, new agent %d alive=%v; want it restarted", pid, alive(pid), r.pid(), alive(r.pid()))
	}
}

func TestHostKeyMismatchSendsNothing(t *testing.T) {
	other := newSigner(t)
	for _, tc := range []struct {
		name   string
		target func(agentssh.Target) agentssh.Target
		pinned bool
	}{
		{"pinned", func(t agentssh.Target) agentssh.Target { t.PinnedKeys = []ssh.PublicKey{other.PublicKey()}; return t }, true},
		{"recorded", func(t agentssh.Target) agentssh.Target { return withRecorded(t, other.PublicKey()) }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t)
			res, err := r.install(agentssh.InstallInput{Target: tc.target(r.target())})
			var mismatch *agentssh.HostKeyMismatchError
			if !errors.As(err, &mismatch) {
				t.Fatalf("got %v, want a *HostKeyMismatchError", err)
			}
			presented := ssh.FingerprintSHA256(r.host.key.PublicKey())
			expected := ssh.FingerprintSHA256(other.PublicKey())
			if !strings.Contains(err.Error(), presented) || !strings.Contains(err.Error(), expected) {
				t.Errorf("message %q does not name both fingerprints %s and %s", err, presented, expected)
			}
			if mismatch.Presented != presented || !cmp.Equal(mismatch.Expected, []string{expected}) || mismatch.Pinned != tc.pinned {
				t.Errorf("error %+v: want presented %s, expected [%s], pinned %v", mismatch, presented, expected, tc.pinned)
			}
			if res.HostKey == nil || ssh.FingerprintSHA256(res.HostKey) != presented {
				t.Errorf("result host key %v, want the presented key", res.HostKey)
			}
			// The server saw the handshake and nothing else: no authentication, no session, no
			// command, so not a byte of the agent or its token.
			eventually(t, func() error {
				if r.host.Count("handshake failed") == 0 {
					return errors.New("the server has not seen the handshake end")
				}
				return nil
			})
			for _, e := range r.host.Events() {
				if e != "connect" && e != "handshake failed" {
					t.Errorf("the server saw %q after a host key mismatch; want only the handshake", e)
				}
			}
			if entries, _ := os.ReadDir(r.root); len(entries) != 0 {
				t.Errorf("the install root is not empty after a mismatch: %v", entries)
			}
		})
	}
}

func TestPinnedKeyOfAnotherTypeIsNegotiated(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rsaSigner, err := ssh.NewSignerFromKey(rsaKey)
	if err != nil {
		t.Fatal(err)
	}
	// The host has an ed25519 key (preferred by default) and an RSA key; only the RSA key is
	// pinned, so the client must ask for it.
	r := newRig(t, rsaSigner)
	target := r.target()
	target.PinnedKeys = []ssh.PublicKey{rsaSigner.PublicKey()}
	res, err := r.install(agentssh.InstallInput{Target: target})
	if err != nil {
		t.Fatalf("install with a pinned RSA key: %v", err)
	}
	if !keysEqual(res.HostKey, rsaSigner.PublicKey()) {
		t.Errorf("host presented %s, want the pinned RSA key", ssh.FingerprintSHA256(res.HostKey))
	}
}

func TestUploadChecksumMismatchKeepsOldBinary(t *testing.T) {
	r := newRig(t)
	good := agentssh.BinaryFromBytes([]byte(testAgent), "")
	bad := good
	bad.Open = func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader("corrupted in transit")), nil }
	_, err := r.install(agentssh.InstallInput{Agent: bad})
	if err == nil || !strings.Contains(err.Error(), good.SHA256) {
		t.Fatalf("got %v, want a checksum error naming %s", err, good.SHA256)
	}
	if _, err := os.Stat(r.path(protocol.AgentBinaryPath)); !os.IsNotExist(err) {
		t.Errorf("a binary that failed its checksum was installed (%v)", err)
	}
	if entries, _ := os.ReadDir(filepath.Dir(r.path(protocol.AgentBinaryPath))); len(entries) != 0 {
		t.Errorf("temporary files left behind: %v", entries)
	}
}

func TestArchitectureMismatchRefused(t *testing.T) {
	r := newRig(t)
	_, err := r.install(agentssh.InstallInput{Agent: agentssh.BinaryFromBytes([]byte(testAgent), "mips64le")})
	if err == nil || !strings.Contains(err.Error(), "mips64le") {
		t.Fatalf("got %v, want an architecture mismatch", err)
	}
	if countExec(r.host, "upload") != 0 {
		t.Errorf("the binary was uploaded to a host of another architecture")
	}
}

func TestInvalidInputRefusedBeforeConnecting(t *testing.T) {
	r := newRig(t)
	bad := r.boot
	bad.Server = "http://insecure"
	bad.Token = "nope"
	_, err := r.install(agentssh.InstallInput{Bootstrap: bad})
	if err == nil || !strings.Contains(err.Error(), "https") || !strings.Contains(err.Error(), "token") {
		t.Fatalf("got %v, want errors about the server URL and the token", err)
	}
	if n := r.host.Count("connect"); n != 0 {
		t.Errorf("the installer connected %d times with invalid input", n)
	}
}

// TestSystemdHost installs on a host where systemd is PID 1. systemctl is a stand-in that records
// its arguments and keeps the unit's active state in a file: the unit is written and the calls
// are made as on a real host (the e2e suite runs real systemd).
func TestSystemdHost(t *testing.T) {
	r := newRig(t)
	mustMkdir(t, r.path("/run/systemd/system"))
	bin := t.TempDir()
	calls := filepath.Join(bin, "calls")
	active := filepath.Join(bin, "active")
	mustWrite(t, filepath.Join(bin, "systemctl"), []byte(`#!/bin/sh
echo "$*" >>`+calls+`
case "$1" in
is-active) [ -f `+active+` ] ;;
start|restart) touch `+active+` ;;
disable) rm -f `+active+` ;;
esac
`), 0o755)
	r.host.env = append(r.host.env, "PATH="+bin+":"+os.Getenv("PATH"))

	res, err := r.install(agentssh.InstallInput{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Init != agentssh.InitSystemd || !res.Restarted {
		t.Errorf("install: %+v; want init systemd, started", res)
	}
	unit, err := os.ReadFile(r.path(protocol.AgentUnitPath))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(unit), "ExecStart="+r.path(protocol.AgentBinaryPath)+"\n") ||
		!strings.Contains(string(unit), "Restart=always") || !strings.Contains(string(unit), "WantedBy=multi-user.target") {
		t.Errorf("unit:\n%s", unit)
	}
	wantCalls := []string{
		"is-active --quiet basalt-agent.service",
		"daemon-reload",
		"enable --quiet basalt-agent.service",
		"restart basalt-agent.service",
	}
	if diff := cmp.Diff(wantCalls, readLines(t, calls)); diff != "" {
		t.Errorf("systemctl calls of the first install (-want +got):\n%s", diff)
	}

	// Registered and running: the second install only checks.
	mustWrite(t, r.path(protocol.CertFile), agentCert(t, time.Now().Add(time.Hour)), 0o600)
	_ = os.Remove(calls)
	res, err = r.install(agentssh.InstallInput{Target: withRecorded(r.target(), res.HostKey)})
	if err != nil {
		t.Fatal(err)
	}
	if res.Restarted || res.Uploaded || res.BootstrapWritten {
		t.Errorf("second install: %+v; want nothing done", res)
	}
	wantCalls = []string{
		"is-active --quiet basalt-agent.service",
		"enable --quiet basalt-agent.service",
		"is-active --quiet basalt-agent.service",
	}
	if diff := cmp.Diff(wantCalls, readLines(t, calls)); diff != "" {
		t.Errorf("systemctl calls of the second install (-want +got):\n%s", diff)
	}

	_ = os.Remove(calls)
	ures, err := r.inst.Uninstall(context.Background(), withRecorded(r.target(), res.HostKey))
	if err != nil || !ures.Stopped {
		t.Fatalf("uninstall: %+v, %v", ures, err)
	}
	wantCalls = []string{
		"is-active --quiet basalt-agent.service",
		"disable --now --quiet basalt-agent.service",
		"daemon-reload",
		"reset-failed basalt-agent.service",
	}
	if diff := cmp.Diff(wantCalls, readLines(t, calls)); diff != "" {
		t.Errorf("systemctl calls of uninstall (-want +got):\n%s", diff)
	}
	if _, err := os.Stat(r.path(protocol.AgentUnitPath)); !os.IsNotExist(err) {
		t.Errorf("the unit is still there after uninstall")
	}
}

// TestSudoForNonRootUser logs in as a user that is not root: every command goes through sudo -n.
// sudo is a stand-in that insists on -n (never prompt) and runs the command.
func TestSudoForNonRootUser(t *testing.T) {
	r := newRig(t)
	bin := t.TempDir()
	mustWrite(t, filepath.Join(bin, "sudo"), []byte(`#!/bin/sh
[ "$1" = -n ] || { echo "sudo: a password is required" >&2; exit 1; }
shift
exec "$@"
`), 0o755)
	r.host.env = append(r.host.env, "PATH="+bin+":"+os.Getenv("PATH"))
	target := r.target()
	target.User = "basalt"
	if _, err := r.install(agentssh.InstallInput{Target: target}); err != nil {
		t.Fatal(err)
	}
	for _, e := range r.host.Events() {
		if strings.HasPrefix(e, "exec ") && !strings.HasPrefix(e, "exec sudo -n sh -c ") {
			t.Errorf("command not run through sudo -n: %.60s", e)
		}
		if strings.HasPrefix(e, "auth ") && e != "auth basalt" {
			t.Errorf("logged in as %q, want basalt", e)
		}
	}
	if _, err := r.inst.Uninstall(context.Background(), target); err != nil {
		t.Fatal(err)
	}
}

func TestSignerFromSecretData(t *testing.T) {
	ed := func() []byte {
		_, k, _ := ed25519.GenerateKey(rand.Reader)
		b, _ := ssh.MarshalPrivateKey(k, "")
		return pem.EncodeToMemory(b)
	}
	rsaPKCS1 := func(bits int) []byte {
		k, err := rsa.GenerateKey(rand.Reader, bits)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)})
	}
	ecSEC1 := func() []byte {
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		der, _ := x509.MarshalECPrivateKey(k)
		return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
	}
	pkcs8 := func() []byte {
		k, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
		der, _ := x509.MarshalPKCS8PrivateKey(k)
		return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	}
	encrypted := func() []byte {
		_, k, _ := ed25519.GenerateKey(rand.Reader)
		b, _ := ssh.MarshalPrivateKeyWithPassphrase(k, "", []byte("secret"))
		return pem.EncodeToMemory(b)
	}
	for _, tc := range []struct {
		name    string
		data    []byte
		wantErr string
	}{
		{"openssh ed25519 with surrounding whitespace", append(append([]byte("\n  "), ed()...), "\n\n"...), ""},
		{"pem rsa 2048", rsaPKCS1(2048), ""},
		{"pem ecdsa sec1", ecSEC1(), ""},
		{"pem pkcs8", pkcs8(), ""},
		{"rsa 1024", rsaPKCS1(1024), "at least 2048"},
		{"encrypted", encrypted(), "passphrase"},
		{"empty", nil, "empty"},
		{"garbage", []byte("not a key"), "ssh private key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := agentssh.SignerFromSecretData(tc.data)
			if tc.wantErr == "" {
				if err != nil || s == nil {
					t.Fatalf("got %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("got %v, want an error containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestHostKeyRoundTrip(t *testing.T) {
	k := newSigner(t).PublicKey()
	s := agentssh.MarshalHostKey(k)
	if strings.HasSuffix(s, "\n") {
		t.Errorf("MarshalHostKey ends with a newline")
	}
	got, err := agentssh.ParseHostKey(s + " root@host")
	if err != nil || !keysEqual(got, k) {
		t.Fatalf("ParseHostKey(MarshalHostKey(k)) = %v, %v", got, err)
	}
	if _, err := agentssh.ParseHostKeys([]string{s, "ssh-ed25519 !!!"}); err == nil || !strings.Contains(err.Error(), "hostKeys[1]") {
		t.Errorf("ParseHostKeys with a bad entry: %v, want an error naming hostKeys[1]", err)
	}
}

// helpers

func newSigner(t *testing.T) ssh.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func withRecorded(t agentssh.Target, k ssh.PublicKey) agentssh.Target {
	t.RecordedKey = k
	return t
}

func keysEqual(a, b ssh.PublicKey) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return bytes.Equal(a.Marshal(), b.Marshal())
}

func countExec(h *fakeHost, step string) int {
	n := 0
	for _, e := range h.Events() {
		if strings.HasPrefix(e, "exec ") && strings.Contains(e, step) {
			n++
		}
	}
	return n
}

func testCA(t *testing.T) []byte {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test-ca"},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func assertFile(t *testing.T, path string, want []byte, mode os.FileMode) {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Errorf("%s: %v", path, err)
		return
	}
	if st.Mode().Perm() != mode {
		t.Errorf("%s: mode %v, want %v", path, st.Mode().Perm(), mode)
	}
	got, _ := os.ReadFile(path)
	if !bytes.Equal(got, want) {
		t.Errorf("%s holds %q, want %q", path, got, want)
	}
}

func mustWrite(t *testing.T, path string, b []byte, mode os.FileMode) {
	t.Helper()
	mustMkdir(t, filepath.Dir(path))
	if err := os.WriteFile(path, b, mode); err != nil {
		t.Fatal(err)
	}
}

func mustMkdir(t *testing.T, path string) {
	t.Helper()
	if err := os.MkdirAll(path, 0o755); err != nil {
		t.Fatal(err)
	}
}

func readLines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSpace(string(b)), "\n")
}

func eventually(t *testing.T, check func() error) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestExpiredCertificateRegistersAgain: an agent whose certificate expired (it was off past its
// renewal) counts as not registered, so a new bootstrap token is written and the agent
// restarted to register again; one with a valid certificate is left alone.
func TestExpiredCertificateRegistersAgain(t *testing.T) {
	r := newRig(t)
	res, err := r.install(agentssh.InstallInput{})
	if err != nil {
		t.Fatal(err)
	}
	writeCert := func(notAfter time.Time) {
		t.Helper()
		mustWrite(t, r.path(protocol.CertFile), agentCert(t, notAfter), 0o600)
		_ = os.Remove(r.path(protocol.BootstrapPath))
	}
	second := r.boot
	second.Token = "ghijkl.0123456789abcdef"
	writeCert(time.Now().Add(-time.Minute))
	res2, err := r.install(agentssh.InstallInput{Target: withRecorded(r.target(), res.HostKey), Bootstrap: second})
	if err != nil {
		t.Fatal(err)
	}
	if res2.Registered || !res2.BootstrapWritten || !res2.Restarted {
		t.Errorf("install with an expired certificate: %+v; want a new bootstrap and a restart", res2)
	}
	boot, _ := json.Marshal(second)
	assertFile(t, r.path(protocol.BootstrapPath), boot, 0o600)

	writeCert(time.Now().Add(time.Hour))
	res3, err := r.install(agentssh.InstallInput{Target: withRecorded(r.target(), res.HostKey), Bootstrap: second})
	if err != nil {
		t.Fatal(err)
	}
	if !res3.Registered || res3.BootstrapWritten || res3.Restarted {
		t.Errorf("install with a valid certificate: %+v; want it left alone", res3)
	}
}

// agentCert is a PEM certificate that expires at notAfter, as an agent's.
func agentCert(t *testing.T, notAfter time.Time) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "basalt:host:ns/h"},
		NotBefore: notAfter.Add(-time.Hour), NotAfter: notAfter}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}
