package agent

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/basalt-dev/basalt/agents/protocol"
)

func writeBootstrap(t *testing.T, path string, b protocol.Bootstrap) {
	t.Helper()
	data, _ := json.Marshal(b)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestRegisterStoresIdentityAndBurnsToken(t *testing.T) {
	m, state, boot := bootstrapped(t)
	ctx := context.Background()

	id, err := EnsureIdentity(ctx, state, boot, "v0.1.0")
	if err != nil {
		t.Fatal(err)
	}
	if id.Host != "host-1" || id.Namespace != "default" || id.Server != m.srv.URL || id.TLS == nil {
		t.Errorf("identity: %+v", id)
	}
	if _, err := os.Stat(boot); !errors.Is(err, fs.ErrNotExist) {
		t.Error("the bootstrap file (single-use token) was not deleted")
	}
	for name, mode := range map[string]os.FileMode{KeyFile: 0o600, CertFile: 0o600, CAFile: 0o600, IdentityFile: 0o600} {
		fi, err := os.Stat(filepath.Join(state, name))
		if err != nil || fi.Mode().Perm() != mode {
			t.Errorf("%s: %v %v", name, fi, err)
		}
	}
	if fi, _ := os.Stat(state); fi.Mode().Perm() != 0o700 {
		t.Errorf("state dir mode %v", fi.Mode())
	}
	// The stored identity speaks mTLS: the fake manager accepts it for the plan call.
	c := NewClient(id)
	if resp, err := c.NextPlan(ctx, "", 0); err != nil || resp != nil {
		t.Fatalf("plan call with the new certificate: %v %v", resp, err)
	}

	// A restart finds the certificate and does not register again, even if the bootstrap file is
	// back (a crash between storing the identity and deleting it).
	writeBootstrap(t, boot, m.bootstrap())
	id2, err := EnsureIdentity(ctx, state, boot, "v0.1.0")
	if err != nil || id2.Host != "host-1" {
		t.Fatalf("restart: %+v %v", id2, err)
	}
	if n := m.registerCount(); n != 1 {
		t.Errorf("registered %d times", n)
	}
	if _, err := os.Stat(boot); !errors.Is(err, fs.ErrNotExist) {
		t.Error("leftover bootstrap file not deleted")
	}

	// A bootstrap file with a new token (the host is installed again): registered again, with a
	// new key.
	oldKey, _ := os.ReadFile(filepath.Join(state, KeyFile))
	m.mu.Lock()
	m.token, m.tokenUsed = "ghijkl.0123456789abcdef", false
	m.mu.Unlock()
	writeBootstrap(t, boot, m.bootstrap())
	if _, err := EnsureIdentity(ctx, state, boot, "v0.1.0"); err != nil {
		t.Fatal(err)
	}
	if n := m.registerCount(); n != 2 {
		t.Errorf("a new token must register again; registered %d times", n)
	}
	if newKey, _ := os.ReadFile(filepath.Join(state, KeyFile)); string(newKey) == string(oldKey) {
		t.Error("the key was not renewed")
	}
}

func TestRegisterPinsTheBootstrapCA(t *testing.T) {
	m := newFakeManager(t)
	dir := t.TempDir()
	state, boot := filepath.Join(dir, "state"), filepath.Join(dir, "bootstrap.json")
	b := m.bootstrap()
	b.CA = newCA(t, "impostor CA").pem
	writeBootstrap(t, boot, b)
	_, err := EnsureIdentity(context.Background(), state, boot, "v")
	if err == nil || !strings.Contains(err.Error(), "certificate signed by unknown authority") {
		t.Fatalf("err = %v", err)
	}
	if m.registerCount() != 0 {
		t.Error("the token was sent to a server the pinned CA does not vouch for")
	}
	if _, err := os.Stat(boot); err != nil {
		t.Error("the bootstrap file must stay until registration succeeds")
	}
	// The key made for the attempt is reused by the next one.
	key1, _ := os.ReadFile(filepath.Join(state, KeyFile))
	writeBootstrap(t, boot, m.bootstrap())
	if _, err := EnsureIdentity(context.Background(), state, boot, "v"); err != nil {
		t.Fatal(err)
	}
	key2, _ := os.ReadFile(filepath.Join(state, KeyFile))
	if string(key1) != string(key2) {
		t.Error("a new key was generated for the retry")
	}
}

func TestRegisterWithRefusedToken(t *testing.T) {
	m := newFakeManager(t)
	dir := t.TempDir()
	boot := filepath.Join(dir, "bootstrap.json")
	b := m.bootstrap()
	b.Token = "abcdef.wrongwrongwrong0"
	writeBootstrap(t, boot, b)
	_, err := EnsureIdentity(context.Background(), filepath.Join(dir, "state"), boot, "v")
	var perm *PermanentError
	if !errors.As(err, &perm) || !strings.Contains(err.Error(), "401") {
		t.Fatalf("err = %v", err)
	}
	if _, err := EnsureIdentity(context.Background(), filepath.Join(dir, "state2"), filepath.Join(dir, "none.json"), "v"); !errors.Is(err, ErrNotBootstrapped) {
		t.Errorf("no bootstrap file: %v", err)
	}
	writeBootstrap(t, boot, protocol.Bootstrap{Server: "http://127.0.0.1:1", CA: m.servingCA.pem, Token: "x"})
	if _, err := EnsureIdentity(context.Background(), filepath.Join(dir, "state3"), boot, "v"); !errors.As(err, &perm) {
		t.Errorf("plain http server accepted: %v", err)
	}
}

func TestUnauthenticatedCallsAreRefused(t *testing.T) {
	m := newFakeManager(t)
	dir := t.TempDir()
	boot := filepath.Join(dir, "bootstrap.json")
	writeBootstrap(t, boot, m.bootstrap())
	id, err := EnsureIdentity(context.Background(), filepath.Join(dir, "state"), boot, "v")
	if err != nil {
		t.Fatal(err)
	}
	noCert := *id
	noCert.TLS = id.TLS.Clone()
	noCert.TLS.GetClientCertificate = nil
	if _, err := NewClient(&noCert).NextPlan(context.Background(), "", 0); err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("plan without a client certificate: %v", err)
	}
}

func TestSanitizeStatus(t *testing.T) {
	long := strings.Repeat("é", 3000) // 6000 bytes
	st := &protocol.Status{
		Steps:      []protocol.StepResult{{Step: "service:etcd", Error: long + "\xff\x00"}},
		Components: []protocol.ComponentHealth{{Name: "etcd", Message: "bad \xff byte\x00" + long}},
	}
	orig := st.Steps[0].Error
	sanitize(st)
	if st.AgentVersion != "unknown" {
		t.Errorf("version %q", st.AgentVersion)
	}
	for _, s := range []string{st.Steps[0].Error, st.Components[0].Message} {
		if !utf8.ValidString(s) || strings.ContainsRune(s, 0) || !strings.HasSuffix(s, "…") {
			t.Errorf("not clean: %q…", s[:20])
		}
	}
	if len(st.Steps[0].Error) > 4096 || len(st.Components[0].Message) > 1024 {
		t.Errorf("lengths %d %d", len(st.Steps[0].Error), len(st.Components[0].Message))
	}
	if orig == st.Steps[0].Error {
		t.Error("unchanged")
	}
}

// TestRenewReplacesTheCertificate: Renew gets a certificate for a new key over mutual TLS, the
// client uses it at once, and it is what a restarted agent loads; a renewal a crash cut between
// renaming the key and the certificate is completed on load, and a renewal that got no
// certificate leaves the old pair.
func TestRenewReplacesTheCertificate(t *testing.T) {
	m, state, boot := bootstrapped(t)
	ctx := context.Background()
	id, err := EnsureIdentity(ctx, state, boot, "v0.1.0")
	if err != nil {
		t.Fatal(err)
	}
	old := id.Certificate()
	if want := old.NotBefore.Add(old.NotAfter.Sub(old.NotBefore) * 2 / 3); id.RenewAt().Sub(want).Abs() > time.Second {
		t.Errorf("RenewAt %s, want two thirds of the lifetime %s", id.RenewAt(), want)
	}
	c := NewClient(id)
	if _, err := c.NextPlan(ctx, "", 0); err != nil {
		t.Fatal(err)
	}
	oldKey, _ := os.ReadFile(filepath.Join(state, KeyFile))
	if err := id.Renew(ctx, state, c); err != nil {
		t.Fatal(err)
	}
	renewed := id.Certificate()
	if renewed.SerialNumber.Cmp(old.SerialNumber) == 0 {
		t.Fatal("the certificate did not change")
	}
	if k, _ := os.ReadFile(filepath.Join(state, KeyFile)); string(k) == string(oldKey) {
		t.Error("the key did not change")
	}
	if _, err := c.NextPlan(ctx, "", 0); err != nil {
		t.Fatal(err)
	}
	if got := m.lastSerial(); got != renewed.SerialNumber.String() {
		t.Errorf("the next call presented serial %s, want the renewed %s", got, renewed.SerialNumber)
	}
	loaded, err := LoadIdentity(state)
	if err != nil || loaded.Certificate().SerialNumber.Cmp(renewed.SerialNumber) != 0 {
		t.Fatalf("reloaded identity: %v, %v", loaded, err)
	}

	// A crash after the new key was renamed into place, before the certificate.
	certPEM, _ := os.ReadFile(filepath.Join(state, CertFile))
	if err := id.Renew(ctx, state, c); err != nil {
		t.Fatal(err)
	}
	third, _ := os.ReadFile(filepath.Join(state, CertFile))
	if err := os.WriteFile(filepath.Join(state, nextCertFile), third, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(state, CertFile), certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadIdentity(state); err != nil {
		t.Fatalf("load after a crash between the renames: %v", err)
	}
	if got, _ := os.ReadFile(filepath.Join(state, CertFile)); string(got) != string(third) {
		t.Error("the next certificate was not renamed into place")
	}
	// A renewal that got no answer: a new key beside the old pair, which stays.
	if err := os.WriteFile(filepath.Join(state, nextKeyFile), []byte("half"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadIdentity(state); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(state, nextKeyFile)); !errors.Is(err, fs.ErrNotExist) {
		t.Error("the leftover next key was not removed")
	}
}

// TestDamagedIdentityRegistersAgain: a certificate that no longer loads and a new bootstrap file
// (what the SSH installer writes when it sees one) register the agent again.
func TestDamagedIdentityRegistersAgain(t *testing.T) {
	m, state, boot := bootstrapped(t)
	ctx := context.Background()
	if _, err := EnsureIdentity(ctx, state, boot, "v0.1.0"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(state, CertFile), []byte("damaged"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := EnsureIdentity(ctx, state, boot, "v0.1.0"); err == nil {
		t.Fatal("a damaged identity without a bootstrap file loaded")
	}
	m.mu.Lock()
	m.token, m.tokenUsed = "ghijkl.0123456789abcdef", false
	m.mu.Unlock()
	writeBootstrap(t, boot, m.bootstrap())
	id, err := EnsureIdentity(ctx, state, boot, "v0.1.0")
	if err != nil || m.registerCount() != 2 {
		t.Fatalf("registered again: %v, %d registrations", err, m.registerCount())
	}
	if _, err := NewClient(id).NextPlan(ctx, "", 0); err != nil {
		t.Fatal(err)
	}
}

// bootstrapped is a fake manager and an agent state folder with a bootstrap file for it.
func bootstrapped(t *testing.T) (m *fakeManager, state, boot string) {
	t.Helper()
	m = newFakeManager(t)
	dir := t.TempDir()
	state, boot = filepath.Join(dir, "state"), filepath.Join(dir, "etc", "bootstrap.json")
	writeBootstrap(t, boot, m.bootstrap())
	return m, state, boot
}
