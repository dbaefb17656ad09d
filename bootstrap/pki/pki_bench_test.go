package pki_test

import (
	"net"
	"testing"
	"time"

	"github.com/basalt-dev/basalt/bootstrap/pki"
)

var benchNow = time.Date(2026, 7, 1, 12, 0, 0, 0, time.UTC)

// benchAPIServerRequest is the largest leaf Basalt issues: a control-plane node's kube-apiserver
// serving certificate (6 DNS names, 5 IPs).
func benchAPIServerRequest(b *testing.B, key pki.KeyAlgorithm) pki.CertRequest {
	b.Helper()
	req, err := pki.APIServerCert(pki.APIServerNames{NodeNames: []string{"cp-1"}, NodeIPs: []net.IP{net.ParseIP("192.0.2.11")},
		ServiceCIDR: "10.96.0.0/12", DNSDomain: "cluster.local", EndpointHost: "api.example.com"})
	if err != nil {
		b.Fatal(err)
	}
	req.Key = key
	return req
}

func benchCA(b *testing.B, key pki.KeyAlgorithm) *pki.KeyPair {
	b.Helper()
	caReq := pki.ClusterCARequest()
	caReq.Key = key
	ca, _, err := pki.EnsureCA(nil, caReq, benchNow)
	if err != nil {
		b.Fatal(err)
	}
	return ca
}

// BenchmarkIssueLeaf: one new leaf (key generated, CSR built, signed by the CA through cfssl),
// with the default ECDSA P-256 keys and with RSA-2048 (spec.certificates.keyAlgorithm).
func BenchmarkIssueLeaf(b *testing.B) {
	for _, tc := range []struct {
		name string
		key  pki.KeyAlgorithm
	}{{"ecdsa-p256", pki.ECDSAP256}, {"rsa-2048", pki.RSA2048}} {
		b.Run(tc.name, func(b *testing.B) {
			ca := benchCA(b, tc.key)
			req := benchAPIServerRequest(b, tc.key)
			b.ReportAllocs()
			for b.Loop() {
				if _, changed, err := pki.EnsureCertificate(nil, ca, req, benchNow); err != nil || !changed {
					b.Fatalf("changed %v, %v", changed, err)
				}
			}
		})
	}
}

// BenchmarkCheckLeaf: the steady-state check of one stored leaf (nothing to renew), which
// clusterpki.Ensure runs for every leaf on every reconcile.
func BenchmarkCheckLeaf(b *testing.B) {
	ca := benchCA(b, pki.ECDSAP256)
	req := benchAPIServerRequest(b, pki.ECDSAP256)
	leaf, _, err := pki.EnsureCertificate(nil, ca, req, benchNow)
	if err != nil {
		b.Fatal(err)
	}
	later := benchNow.Add(24 * time.Hour)
	b.ReportAllocs()
	for b.Loop() {
		if reason, err := pki.ReissueReason(leaf, ca, req, later); err != nil || reason != "" {
			b.Fatalf("reason %q, %v", reason, err)
		}
	}
}
