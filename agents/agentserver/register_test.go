package agentserver_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/basalt-dev/basalt/agents/agentserver"
	"github.com/basalt-dev/basalt/agents/protocol"
	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
	"github.com/basalt-dev/basalt/bootstrap/pki"
)

func TestRegisterIssuesClientCertificateOnce(t *testing.T) {
	h := newHarness(t, func(s *agentserver.Server) { s.ClientCertValidity = 90 * 24 * time.Hour })
	host := h.createHost("node-1")
	tok, err := h.srv.IssueToken(context.Background(), host)
	if err != nil {
		t.Fatal(err)
	}
	before := metricValue(t, "basalt_agent_api_registrations_total", nil)
	a := h.registerWith(tok)

	// Identity from the token's Host, not from the CSR's subject.
	if got, want := a.cert.Subject.CommonName, protocol.IdentityPrefix+h.hostNS+"/node-1"; got != want {
		t.Errorf("CN %q, want %q", got, want)
	}
	if diff := cmp.Diff([]string{protocol.IdentityOrganization}, a.cert.Subject.Organization); diff != "" {
		t.Errorf("organization (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, a.cert.ExtKeyUsage); diff != "" {
		t.Errorf("extended key usage (-want +got):\n%s", diff)
	}
	if a.cert.IsCA || len(a.cert.DNSNames)+len(a.cert.IPAddresses) != 0 {
		t.Errorf("client certificate is a CA or has DNS/IP SANs: %+v", a.cert)
	}
	if len(a.cert.URIs) != 1 || a.cert.URIs[0].String() != "urn:basalt:host-uid:"+string(host.UID) {
		t.Errorf("URIs %v, want the Host's UID", a.cert.URIs)
	}
	if d := a.cert.NotAfter.Sub(h.clock.Now()); d < 89*24*time.Hour || d > 90*24*time.Hour {
		t.Errorf("certificate valid for %s from now, want about 90 days", d)
	}
	// It chains to the agent CA stored in the manager's namespace.
	ca := &corev1.Secret{}
	if err := h.env.Client.Get(context.Background(), client.ObjectKey{Namespace: h.srv.Namespace, Name: agentserver.AgentCASecret}, ca); err != nil {
		t.Fatal(err)
	}
	certPEM := pemCert(a.cert)
	if err := pki.Verify(certPEM, ca.Data[corev1.TLSCertKey], x509.ExtKeyUsageClientAuth, time.Now()); err != nil {
		t.Errorf("the client certificate does not verify against the agent CA: %v", err)
	}
	// The Host records the agent.
	got := h.getHost("node-1")
	if got.Status.Agent.Version != "v0.1.0-test" || got.Status.Agent.LastSeen == nil {
		t.Errorf("Host status.agent = %+v, want version v0.1.0-test and lastSeen", got.Status.Agent)
	}
	if after := metricValue(t, "basalt_agent_api_registrations_total", nil); after != before+1 {
		t.Errorf("registrations_total went from %v to %v, want +1", before, after)
	}

	// The same token again: 401.
	code, body := post(t, h.client(), h.url+protocol.PathRegister, protocol.RegisterRequest{
		Token: tok, CSR: csr(t, newKey(t)), AgentVersion: "v0.1.0-test",
	})
	if code != http.StatusUnauthorized {
		t.Errorf("reused token: %d %s, want 401", code, body)
	}
}

// TestRegistrationRevokesTheHostsOtherTokens: a Host's tokens stay valid while its scripts are
// fetched; the registration with one revokes the others (and only that Host's), and so does the
// first report of its agent from the root filesystem on its disk.
func TestRegistrationRevokesTheHostsOtherTokens(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	host, other := h.createHost("node-1"), h.createHost("node-2")
	issue := func(host *basaltv1.Host) string {
		t.Helper()
		tok, err := h.srv.IssueToken(ctx, host)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	refused := func(tok string) bool {
		code, _ := post(t, h.client(), h.url+protocol.PathRegister, protocol.RegisterRequest{
			Token: tok, CSR: csr(t, newKey(t)), AgentVersion: "v0.1.0-test",
		})
		return code == http.StatusUnauthorized
	}
	first, used, last := issue(host), issue(host), issue(host)
	otherTok := issue(other)
	a := h.registerWith(used)
	for name, tok := range map[string]string{"earlier": first, "later": last} {
		if !refused(tok) {
			t.Errorf("the %s token of the registered Host still registers", name)
		}
	}
	h.registerWith(otherTok) // another Host's token is untouched

	// The agent writes the Host's disk and reboots: the script that boots it has a token, which
	// the agent on the disk, with its identity, does not use.
	reboot := issue(host)
	st := &protocol.Status{AgentVersion: "v0.1.0-test", Root: &protocol.Root{Image: strings.Repeat("e", 64), Disk: "/dev/vda", Host: h.hostNS + "/node-1"}}
	if code, body := post(t, a.client, h.url+protocol.PathStatus, st); code != http.StatusNoContent {
		t.Fatalf("status: %d %s", code, body)
	}
	if !refused(reboot) {
		t.Error("the token of the boot into the disk still registers after the agent reported from the disk")
	}
	// Later reports from the disk leave new tokens alone (a script for a boot from RAM).
	again := issue(host)
	if code, body := post(t, a.client, h.url+protocol.PathStatus, st); code != http.StatusNoContent {
		t.Fatalf("status: %d %s", code, body)
	}
	h.registerWith(again)
}

// TestRejectedTokensLookAlike: unknown, wrong, expired and reused tokens get the same answer.
func TestRejectedTokensLookAlike(t *testing.T) {
	h := newHarness(t, func(s *agentserver.Server) { s.TokenGCInterval = 100 * time.Millisecond })
	host := h.createHost("node-1")
	ctx := context.Background()
	issue := func() string {
		tok, err := h.srv.IssueToken(ctx, host)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	reused := issue()
	h.registerWith(reused)
	expired := issue()
	wrong := issue()
	wrong = wrong[:7] + strings.Repeat("z", 16)
	h.clock.Advance(16 * time.Minute) // past the default 15-minute TTL

	var first []byte
	for name, tok := range map[string]string{
		"unknown": "abcdef.0123456789abcdef", "wrong secret": wrong, "expired": expired,
		"reused": reused, "malformed": "x", "empty": "",
	} {
		code, body := post(t, h.client(), h.url+protocol.PathRegister, protocol.RegisterRequest{
			Token: tok, CSR: csr(t, newKey(t)), AgentVersion: "v0.1.0-test",
		})
		if name == "empty" {
			if code != http.StatusBadRequest {
				t.Errorf("%s token: %d %s, want 400", name, code, body)
			}
			continue
		}
		if code != http.StatusUnauthorized {
			t.Errorf("%s token: %d %s, want 401", name, code, body)
		}
		if first == nil {
			first = body
		} else if string(body) != string(first) {
			t.Errorf("%s token answered %q, another %q: the answers must not differ", name, body, first)
		}
	}
	// Every token is now used or expired: garbage collection leaves no token Secret.
	eventually(t, func() error {
		list := &corev1.SecretList{}
		if err := h.env.Client.List(ctx, list, client.InNamespace(h.srv.Namespace), client.MatchingLabels{"basalt.dev/secret": "bootstrap-token"}); err != nil {
			return err
		}
		if n := len(list.Items); n != 0 {
			return fmt.Errorf("%d token Secrets left", n)
		}
		return nil
	})
}

func TestConcurrentRegistrationsWithOneToken(t *testing.T) {
	h := newHarness(t)
	host := h.createHost("node-1")
	tok, err := h.srv.IssueToken(context.Background(), host)
	if err != nil {
		t.Fatal(err)
	}
	const n = 6
	codes := make(chan int, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			key := newKey(t)
			req := protocol.RegisterRequest{Token: tok, CSR: csr(t, key), AgentVersion: "v0.1.0-test"}
			<-start
			code, _ := post(t, h.client(), h.url+protocol.PathRegister, req)
			codes <- code
		}()
	}
	close(start)
	wg.Wait()
	close(codes)
	count := map[int]int{}
	for c := range codes {
		count[c]++
	}
	if count[http.StatusOK] != 1 || count[http.StatusUnauthorized] != n-1 {
		t.Errorf("%d concurrent registrations with one token: %v; want one 200 and %d 401", n, count, n-1)
	}
}

func TestRegisterRefusesBadRequestsWithoutBurningTheToken(t *testing.T) {
	h := newHarness(t)
	host := h.createHost("node-1")
	tok, err := h.srv.IssueToken(context.Background(), host)
	if err != nil {
		t.Fatal(err)
	}
	rsaSmall, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	p521, err := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	good := protocol.RegisterRequest{Token: tok, CSR: csr(t, newKey(t)), AgentVersion: "v0.1.0-test"}
	goodJSON, _ := json.Marshal(good)
	for _, tc := range []struct {
		name string
		body any
		want int
	}{
		{"malformed JSON", []byte(`{"token":`), http.StatusBadRequest},
		{"unknown field", []byte(strings.Replace(string(goodJSON), `{`, `{"admin":true,`, 1)), http.StatusBadRequest},
		{"trailing data", append(append([]byte{}, goodJSON...), []byte(`{}`)...), http.StatusBadRequest},
		{"oversized", []byte(`{"token":"` + strings.Repeat("a", protocol.MaxRequestBytes) + `"}`), http.StatusRequestEntityTooLarge},
		{"no CSR", protocol.RegisterRequest{Token: tok, AgentVersion: "v1"}, http.StatusBadRequest},
		{"CSR not PEM", protocol.RegisterRequest{Token: tok, CSR: []byte("hello"), AgentVersion: "v1"}, http.StatusBadRequest},
		{"RSA 1024", protocol.RegisterRequest{Token: tok, CSR: csr(t, rsaSmall), AgentVersion: "v1"}, http.StatusBadRequest},
		{"P-521", protocol.RegisterRequest{Token: tok, CSR: csr(t, p521), AgentVersion: "v1"}, http.StatusBadRequest},
		{"bad signature", protocol.RegisterRequest{Token: tok, CSR: tamper(t, csr(t, newKey(t))), AgentVersion: "v1"}, http.StatusBadRequest},
		{"no version", protocol.RegisterRequest{Token: tok, CSR: csr(t, newKey(t))}, http.StatusBadRequest},
	} {
		code, body := post(t, h.client(), h.url+protocol.PathRegister, tc.body)
		if code != tc.want {
			t.Errorf("%s: %d %s, want %d", tc.name, code, body, tc.want)
		}
	}
	// The token survived every bad request.
	code, body := post(t, h.client(), h.url+protocol.PathRegister, good)
	if code != http.StatusOK {
		t.Fatalf("a good registration after bad ones: %d %s", code, body)
	}
	// An RSA 2048 key is accepted too.
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tok2, _ := h.srv.IssueToken(context.Background(), host)
	if code, body := post(t, h.client(), h.url+protocol.PathRegister, protocol.RegisterRequest{Token: tok2, CSR: csr(t, rsaKey), AgentVersion: "v1"}); code != http.StatusOK {
		t.Errorf("RSA 2048 CSR: %d %s", code, body)
	}
}

// TestRegisterForDeletedHost: a token whose Host is gone (or was re-created) is refused.
func TestRegisterForRecreatedHost(t *testing.T) {
	h := newHarness(t)
	host := h.createHost("node-1")
	tok, err := h.srv.IssueToken(context.Background(), host)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.env.Client.Delete(context.Background(), host); err != nil {
		t.Fatal(err)
	}
	eventually(t, h.env.Gone(host))
	h.createHost("node-1")
	code, body := post(t, h.client(), h.url+protocol.PathRegister, protocol.RegisterRequest{Token: tok, CSR: csr(t, newKey(t)), AgentVersion: "v1"})
	if code != http.StatusUnauthorized {
		t.Errorf("token of a re-created Host: %d %s, want 401", code, body)
	}
}

func TestPKIIsKeptAcrossRestarts(t *testing.T) {
	env := needEnv(t)
	ns := env.Namespace(t)
	ctx := context.Background()
	first := &agentserver.Server{Namespace: ns, Addresses: []string{"127.0.0.1"}, Client: env.Client}
	ca1, err := first.ServingCA(ctx)
	if err != nil {
		t.Fatal(err)
	}
	secret := func(name string) *corev1.Secret {
		s := &corev1.Secret{}
		if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	agentCA1, serving1 := secret(agentserver.AgentCASecret), secret(agentserver.ServingCertSecret)

	// Same addresses: nothing changes.
	second := &agentserver.Server{Namespace: ns, Addresses: []string{"127.0.0.1"}, Client: env.Client}
	ca2, err := second.ServingCA(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if string(ca1) != string(ca2) {
		t.Errorf("the serving CA changed across restarts")
	}
	if secret(agentserver.AgentCASecret).ResourceVersion != agentCA1.ResourceVersion || secret(agentserver.ServingCertSecret).ResourceVersion != serving1.ResourceVersion {
		t.Errorf("a restart with the same configuration rewrote PKI Secrets")
	}

	// A new address: the serving certificate is re-issued with it, the CAs stay.
	third := &agentserver.Server{Namespace: ns, Addresses: []string{"127.0.0.1", "agents.example.org"}, Client: env.Client}
	if _, err := third.ServingCA(ctx); err != nil {
		t.Fatal(err)
	}
	cert, err := pki.ParseCertificate(secret(agentserver.ServingCertSecret).Data[corev1.TLSCertKey])
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"agents.example.org"}, cert.DNSNames); diff != "" {
		t.Errorf("serving certificate DNS names (-want +got):\n%s", diff)
	}
	if secret(agentserver.AgentCASecret).ResourceVersion != agentCA1.ResourceVersion {
		t.Errorf("the agent CA changed when an address was added")
	}
	if err := pki.Verify(secret(agentserver.ServingCertSecret).Data[corev1.TLSCertKey], ca1, x509.ExtKeyUsageServerAuth, time.Now()); err != nil {
		t.Errorf("the re-issued serving certificate does not chain to the pinned CA: %v", err)
	}
}

func TestBootstrap(t *testing.T) {
	h := newHarness(t, func(s *agentserver.Server) { s.URL = "https://agents.basalt.test:9443" })
	host := h.createHost("node-1")
	b, err := h.srv.Bootstrap(context.Background(), host)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := h.srv.ServingCA(context.Background())
	if b.Server != "https://agents.basalt.test:9443" || string(b.CA) != string(ca) || len(b.Token) != 23 {
		t.Errorf("Bootstrap = %+v", b)
	}
	h.registerWith(b.Token)
}

func tamper(t *testing.T, csrPEM []byte) []byte {
	t.Helper()
	c := []byte(string(csrPEM))
	// Flip a byte inside the base64 body, away from the header and the length fields.
	i := len(c) - 60
	if c[i] == 'A' {
		c[i] = 'B'
	} else {
		c[i] = 'A'
	}
	return c
}

func pemCert(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}
