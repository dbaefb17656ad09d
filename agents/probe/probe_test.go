package probe

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/basalt-dev/basalt/bootstrap/plan"
)

// testCA is a throwaway CA that signs server and client certificates.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newCA(t *testing.T) *testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue returns a PEM certificate and key for cn, valid for 127.0.0.1.
func (ca *testCA) issue(t *testing.T, cn string, usage x509.ExtKeyUsage) (certPEM, keyPEM []byte) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
}

func writeFile(t *testing.T, dir, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestHTTP(t *testing.T) {
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/readyz" {
			_, _ = w.Write([]byte("ok"))
			return
		}
		http.Error(w, "etcd not ready", http.StatusInternalServerError)
	}))
	defer ok.Close()
	c := Checker{Timeout: 2 * time.Second}
	h := c.Check(context.Background(), plan.Service{Name: "api", Probe: &plan.Probe{HTTP: &plan.HTTPProbe{URL: ok.URL + "/readyz"}}})
	if !h.Healthy || h.Name != "api" || h.Time.IsZero() {
		t.Errorf("healthy server: %+v", h)
	}
	h = c.Check(context.Background(), plan.Service{Name: "api", Probe: &plan.Probe{HTTP: &plan.HTTPProbe{URL: ok.URL + "/livez"}}})
	if h.Healthy || !strings.Contains(h.Message, "500") || !strings.Contains(h.Message, "etcd not ready") {
		t.Errorf("failing server: %+v", h)
	}
}

func TestHTTPSWithClientCertificate(t *testing.T) {
	ca := newCA(t)
	dir := t.TempDir()
	srvCert, srvKey := ca.issue(t, "server", x509.ExtKeyUsageServerAuth)
	pair, err := tls.X509KeyPair(srvCert, srvKey)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.pem)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("ok " + r.TLS.PeerCertificates[0].Subject.CommonName))
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{pair}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert}
	srv.StartTLS()
	defer srv.Close()

	cliCert, cliKey := ca.issue(t, "prober", x509.ExtKeyUsageClientAuth)
	good := &plan.HTTPProbe{
		URL: srv.URL + "/health", CAFile: writeFile(t, dir, "ca.crt", ca.pem),
		ClientCertFile: writeFile(t, dir, "c.crt", cliCert), ClientKeyFile: writeFile(t, dir, "c.key", cliKey),
	}
	c := Checker{Timeout: 2 * time.Second}
	if h := c.Check(context.Background(), plan.Service{Name: "etcd", Probe: &plan.Probe{HTTP: good}}); !h.Healthy {
		t.Fatalf("with CA and client cert: %+v", h)
	}
	noClient := *good
	noClient.ClientCertFile, noClient.ClientKeyFile = "", ""
	if h := c.Check(context.Background(), plan.Service{Name: "etcd", Probe: &plan.Probe{HTTP: &noClient}}); h.Healthy {
		t.Errorf("without a client certificate the server refuses: %+v", h)
	}
	otherCA := *good
	otherCA.CAFile = writeFile(t, dir, "other.crt", newCA(t).pem)
	if h := c.Check(context.Background(), plan.Service{Name: "etcd", Probe: &plan.Probe{HTTP: &otherCA}}); h.Healthy || !strings.Contains(h.Message, "certificate") {
		t.Errorf("a server not signed by the CA file is unhealthy: %+v", h)
	}
}

func TestTCP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	svc := plan.Service{Name: "etcd", Probe: &plan.Probe{TCP: &plan.TCPProbe{Address: addr}}}
	c := Checker{Timeout: time.Second}
	if h := c.Check(context.Background(), svc); !h.Healthy {
		t.Errorf("listening: %+v", h)
	}
	_ = ln.Close()
	if h := c.Check(context.Background(), svc); h.Healthy || !strings.Contains(h.Message, "refused") {
		t.Errorf("closed: %+v", h)
	}
}

func TestExec(t *testing.T) {
	c := Checker{Timeout: 300 * time.Millisecond}
	for _, tc := range []struct {
		argv    []string
		healthy bool
		msg     string
	}{
		{[]string{"/bin/sh", "-c", "exit 0"}, true, ""},
		{[]string{"/bin/sh", "-c", "echo member unhealthy; exit 3"}, false, "member unhealthy"},
		{[]string{"/bin/sleep", "5"}, false, "deadline exceeded"},
		{[]string{"/nonexistent/probe"}, false, "no such file"},
	} {
		start := time.Now()
		h := c.Check(context.Background(), plan.Service{Name: "x", Probe: &plan.Probe{Exec: &plan.ExecProbe{Argv: tc.argv}}})
		if h.Healthy != tc.healthy || !strings.Contains(h.Message, tc.msg) {
			t.Errorf("%v: %+v", tc.argv, h)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("%v: took %s, the timeout is 300ms", tc.argv, d)
		}
	}
}

func TestNoProbeAndInvalid(t *testing.T) {
	if h := (Checker{}).Check(context.Background(), plan.Service{Name: "x"}); !h.Healthy || h.Message != "no probe" {
		t.Errorf("no probe: %+v", h)
	}
	both := &plan.Probe{TCP: &plan.TCPProbe{Address: "127.0.0.1:1"}, Exec: &plan.ExecProbe{Argv: []string{"/bin/true"}}}
	if h := (Checker{}).Check(context.Background(), plan.Service{Name: "x", Probe: both}); h.Healthy {
		t.Errorf("two probes: %+v", h)
	}
}
