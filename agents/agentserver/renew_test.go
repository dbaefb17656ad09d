package agentserver_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptrace"
	"strings"
	"testing"
	"time"

	"github.com/basalt-dev/basalt/agents/agentserver"
	"github.com/basalt-dev/basalt/agents/protocol"
)

// TestRenewKeepsTheIdentity: an agent renews its certificate over mutual TLS for a new key once
// half its lifetime has passed (not before); the new certificate names the same Host and Host
// incarnation and authenticates the agent; an agent without a certificate, and the agent of a
// deleted Host, get nothing.
func TestRenewKeepsTheIdentity(t *testing.T) {
	h := newHarness(t, func(s *agentserver.Server) { s.ClientCertValidity = time.Hour })
	// Registered 40 minutes ago by the manager's clock (the handshake checks the real clock).
	h.clock.Advance(-40 * time.Minute)
	a := h.register(h.createHost("node-1"))
	h.clock.Advance(40 * time.Minute)
	url := h.url + protocol.PathRenew
	key := newKey(t)

	h.clock.Advance(-20 * time.Minute)
	if code, body := post(t, a.client, url, protocol.RenewRequest{CSR: csr(t, key)}); code != http.StatusConflict || !strings.Contains(string(body), "renewed from") {
		t.Errorf("renewal 20 minutes after registration: %d %s, want 409 saying from when", code, body)
	}
	h.clock.Advance(20 * time.Minute)
	before := metricValue(t, "basalt_agent_api_renewals_total", nil)
	code, body := post(t, a.client, url, protocol.RenewRequest{CSR: csr(t, key)})
	if code != http.StatusOK {
		t.Fatalf("renewal past half the lifetime: %d %s", code, body)
	}
	var resp protocol.RegisterResponse
	if err := json.Unmarshal(body, &resp); err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(resp.Certificate)
	if block == nil {
		t.Fatalf("no PEM certificate: %s", body)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if cert.Subject.CommonName != a.cert.Subject.CommonName || len(cert.URIs) != 1 || cert.URIs[0].String() != a.cert.URIs[0].String() {
		t.Errorf("renewed certificate %s %v, want the identity %s %v", cert.Subject.CommonName, cert.URIs, a.cert.Subject.CommonName, a.cert.URIs)
	}
	if !cert.NotAfter.After(a.cert.NotAfter) || cert.SerialNumber.Cmp(a.cert.SerialNumber) == 0 {
		t.Errorf("renewed certificate valid until %s (old %s), serial %s (old %s)", cert.NotAfter, a.cert.NotAfter, cert.SerialNumber, a.cert.SerialNumber)
	}
	if got := metricValue(t, "basalt_agent_api_renewals_total", nil); got != before+1 {
		t.Errorf("renewals counted %v → %v", before, got)
	}
	renewed := h.client(tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: key, Leaf: cert})
	if code, body := post(t, renewed, h.url+protocol.PathStatus, protocol.Status{AgentVersion: "v0.1.0-test"}); code/100 != 2 {
		t.Errorf("status with the renewed certificate: %d %s", code, body)
	}

	if code, _ := post(t, h.client(), url, protocol.RenewRequest{CSR: csr(t, newKey(t))}); code != http.StatusUnauthorized {
		t.Errorf("renewal without a certificate: %d, want 401", code)
	}
	if code, _ := post(t, renewed, url, protocol.RenewRequest{CSR: []byte("junk")}); code != http.StatusBadRequest {
		t.Errorf("renewal with a bad CSR: %d, want 400", code)
	}
	if err := h.env.Client.Delete(context.Background(), h.getHost("node-1")); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() error {
		if code, _ := post(t, renewed, url, protocol.RenewRequest{CSR: csr(t, newKey(t))}); code != http.StatusForbidden {
			return &statusError{code}
		}
		return nil
	})
}

type statusError struct{ code int }

func (e *statusError) Error() string {
	return http.StatusText(e.code) + ", want 403 for a deleted Host"
}

// renewWith renews c's certificate for a new key and returns a client with the new one, or the
// refusal's status code.
func renewWith(t *testing.T, h *harness, c *http.Client) (*http.Client, *x509.Certificate, int) {
	t.Helper()
	key := newKey(t)
	code, body := post(t, c, h.url+protocol.PathRenew, protocol.RenewRequest{CSR: csr(t, key)})
	if code != http.StatusOK {
		return nil, nil, code
	}
	var resp protocol.RegisterResponse
	if err := json.Unmarshal(body, &resp); err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(resp.Certificate)
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	// A fresh client: the renewed certificate on a new connection, as the agent's next dial.
	return h.client(tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: key, Leaf: cert}), cert, code
}

// TestCopiedIdentityIsShutOut: two holders of one agent certificate (the agent and a copy of its
// key and certificate). The first to renew keeps the identity; the other's renewal is refused,
// and its certificate is refused once the identity renewed again; a new registration (the
// Host's agent installed again) shuts every earlier certificate out.
func TestCopiedIdentityIsShutOut(t *testing.T) {
	h := newHarness(t, func(s *agentserver.Server) { s.ClientCertValidity = time.Hour })
	// The handshake checks certificates against the real clock, the server's renewal rules
	// against h.clock: registered 57 minutes ago, renewed by the copy 27 minutes ago, renewed
	// again a minute from now, so every certificate used below is valid now (each is backdated 6
	// minutes).
	h.clock.Advance(-57 * time.Minute)
	host := h.createHost("node-1")
	a := h.register(host)
	if got := h.getHost("node-1").Status.Agent.CertificateSerial; got != a.cert.SerialNumber.Text(16) {
		t.Fatalf("status.agent.certificateSerial %q after registration, want %x", got, a.cert.SerialNumber)
	}
	copyClient := h.client(a.pair) // the copy: same key and certificate, its own connections
	h.clock.Advance(30 * time.Minute)

	stolen, stolenCert, code := renewWith(t, h, copyClient)
	if code != http.StatusOK {
		t.Fatalf("the copy's renewal: %d", code)
	}
	st := h.getHost("node-1").Status.Agent
	if st.CertificateSerial != stolenCert.SerialNumber.Text(16) || st.PreviousCertificateSerial != a.cert.SerialNumber.Text(16) {
		t.Fatalf("serials after the renewal: %+v", st)
	}
	// The renewed certificate works at once (the cached Host may not know it yet).
	if code, body := post(t, stolen, h.url+protocol.PathStatus, protocol.Status{AgentVersion: "v0.1.0-test"}); code/100 != 2 {
		t.Fatalf("status with the renewed certificate: %d %s", code, body)
	}
	before := metricValue(t, "basalt_agent_api_rejected_requests_total", map[string]string{"path": protocol.PathRenew, "reason": "superseded"})
	if _, _, code := renewWith(t, h, a.client); code != http.StatusForbidden {
		t.Fatalf("the other holder's renewal of the replaced certificate: %d, want 403", code)
	}
	if got := metricValue(t, "basalt_agent_api_rejected_requests_total", map[string]string{"path": protocol.PathRenew, "reason": "superseded"}); got != before+1 {
		t.Errorf("superseded renewals counted %v → %v", before, got)
	}
	// The replaced certificate still reports (connections opened before a renewal carry it),
	// and its connection is closed after the answer ...
	for i := range 2 {
		reused := false
		trace := &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) { reused = info.Reused }}
		req, err := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), http.MethodPost,
			h.url+protocol.PathStatus, strings.NewReader(`{"agentVersion":"v0.1.0-test"}`))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := a.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			t.Fatalf("status with the replaced certificate: %d", resp.StatusCode)
		}
		if i == 1 && reused {
			t.Error("the connection of a replaced certificate was used again")
		}
	}
	// ... until the identity renews again.
	h.clock.Advance(28 * time.Minute)
	stolen2, _, code := renewWith(t, h, stolen)
	if code != http.StatusOK {
		t.Fatalf("second renewal: %d", code)
	}
	for _, p := range []string{protocol.PathStatus, protocol.PathRenew} {
		if code, _ := post(t, a.client, h.url+p, protocol.Status{AgentVersion: "v0.1.0-test"}); code != http.StatusForbidden {
			t.Errorf("%s with a certificate two renewals old: %d, want 403", p, code)
		}
	}
	if r, _ := get(t, a.client, h.url+protocol.PathPlan); r.StatusCode != http.StatusForbidden {
		t.Errorf("plan with a certificate two renewals old: %d, want 403", r.StatusCode)
	}

	// The Host's agent registers again with a new token: the copy is out.
	fresh := h.register(host)
	st = h.getHost("node-1").Status.Agent
	if st.CertificateSerial != fresh.cert.SerialNumber.Text(16) || st.PreviousCertificateSerial != "" {
		t.Fatalf("serials after a new registration: %+v", st)
	}
	if code, _ := post(t, stolen2, h.url+protocol.PathStatus, protocol.Status{AgentVersion: "v0.1.0-test"}); code != http.StatusForbidden {
		t.Errorf("status with the copy's certificate after a new registration: %d, want 403", code)
	}
	if code, body := post(t, fresh.client, h.url+protocol.PathStatus, protocol.Status{AgentVersion: "v0.1.0-test"}); code/100 != 2 {
		t.Errorf("status after the new registration: %d %s", code, body)
	}
}
