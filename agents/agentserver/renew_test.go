package agentserver_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net/http"
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
