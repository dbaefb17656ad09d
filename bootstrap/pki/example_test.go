package pki_test

import (
	"crypto/x509"
	"fmt"
	"net"
	"time"

	"github.com/basalt-dev/basalt/bootstrap/pki"
)

// The Cluster controller loads what it stored, ensures the CA and a leaf, and stores the
// results back only when changed. Calling it again with the stored values changes nothing.
func Example() {
	now := time.Now()
	var storedCA, storedLeaf *pki.KeyPair // nil on the first reconcile

	ca, caChanged, err := pki.EnsureCA(storedCA, pki.ClusterCARequest(), now)
	if err != nil {
		panic(err)
	}
	req, err := pki.KubeletServingCert("worker-1", net.ParseIP("192.0.2.21"))
	if err != nil {
		panic(err)
	}
	req.Validity, req.RenewBefore = 90*24*time.Hour, 14*24*time.Hour // from spec.certificates
	leaf, leafChanged, err := pki.EnsureCertificate(storedLeaf, ca, req, now)
	if err != nil {
		panic(err)
	}
	fmt.Println("first reconcile:", caChanged, leafChanged)

	_, caChanged, _ = pki.EnsureCA(ca, pki.ClusterCARequest(), now)
	_, leafChanged, _ = pki.EnsureCertificate(leaf, ca, req, now)
	fmt.Println("second reconcile:", caChanged, leafChanged)

	fmt.Println("verifies:", pki.Verify(leaf.Cert, ca.Cert, x509.ExtKeyUsageServerAuth, now) == nil)
	renew, _ := pki.NeedsRenewal(leaf.Cert, req.RenewBefore, now.Add(80*24*time.Hour))
	fmt.Println("needs renewal in 80 days:", renew)
	// Output:
	// first reconcile: true true
	// second reconcile: false false
	// verifies: true
	// needs renewal in 80 days: true
}
