package pki

import (
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"net"
	"slices"
	"strings"
	"testing"
	"time"
)

// clusterCAs holds the three CAs of a test cluster.
type clusterCAs map[CAName]*KeyPair

func newClusterCAs(t *testing.T) clusterCAs {
	t.Helper()
	return clusterCAs{
		ClusterCA:    mustCA(t, ClusterCARequest(), t0),
		EtcdCA:       mustCA(t, EtcdCARequest(), t0),
		FrontProxyCA: mustCA(t, FrontProxyCARequest(), t0),
	}
}

// clusterRequests returns every leaf request of a 2-control-plane, 1-worker cluster.
func clusterRequests(t *testing.T) []CertRequest {
	t.Helper()
	cp := map[string]net.IP{"cp-1": net.ParseIP("192.0.2.11"), "cp-2": net.ParseIP("192.0.2.12")}
	reqs := []CertRequest{
		APIServerKubeletClientCert(), APIServerEtcdClientCert(), FrontProxyClientCert(),
		EtcdHealthcheckClientCert(), AdminCert(), ControllerManagerCert(), SchedulerCert(), KubeProxyCert(),
		ControllerManagerServingCert(), SchedulerServingCert(),
	}
	must := func(r CertRequest, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		reqs = append(reqs, r)
	}
	for _, name := range []string{"cp-1", "cp-2"} {
		must(APIServerCert(APIServerNames{NodeNames: []string{name}, NodeIPs: []net.IP{cp[name]},
			ServiceCIDR: "10.96.0.0/12", DNSDomain: "cluster.local", EndpointHost: "api.example.com"}))
		must(EtcdServerCert(name, cp[name]))
		must(EtcdPeerCert(name, cp[name]))
	}
	for name, ip := range map[string]net.IP{"cp-1": cp["cp-1"], "worker-1": net.ParseIP("192.0.2.21")} {
		must(KubeletClientCert(name))
		must(KubeletServingCert(name, ip))
	}
	for i := range reqs {
		reqs[i].Validity = 90 * 24 * time.Hour
		reqs[i].RenewBefore = 10 * 24 * time.Hour
	}
	return reqs
}

func extKeyUsages(u Usage) []x509.ExtKeyUsage {
	e, _, _ := u.extKeyUsages()
	return e
}

// TestClusterPKI issues every certificate of a cluster and checks chains, subjects, SANs,
// usages and validity, then checks a second pass changes nothing.
func TestClusterPKI(t *testing.T) {
	cas := newClusterCAs(t)
	issued := map[string]*KeyPair{}
	for _, req := range clusterRequests(t) {
		kp, changed, err := EnsureCertificate(nil, cas[req.Issuer], req, t0)
		if err != nil || !changed {
			t.Fatalf("%s: changed %v, err %v", req, changed, err)
		}
		issued[req.Name] = kp
		c := mustParse(t, kp.Cert)

		for _, u := range extKeyUsages(req.Usage) {
			if err := Verify(kp.Cert, cas[req.Issuer].Cert, u, t0); err != nil {
				t.Errorf("%s does not verify against %s for %v: %v", req, req.Issuer, u, err)
			}
		}
		for name, other := range cas {
			if name != req.Issuer && Verify(kp.Cert, other.Cert, x509.ExtKeyUsageAny, t0) == nil {
				t.Errorf("%s verifies against %s too", req, name)
			}
		}
		if req.Usage == UsageClient && Verify(kp.Cert, cas[req.Issuer].Cert, x509.ExtKeyUsageServerAuth, t0) == nil {
			t.Errorf("%s: a client certificate is accepted for server auth", req)
		}
		if req.Usage == UsageServer && Verify(kp.Cert, cas[req.Issuer].Cert, x509.ExtKeyUsageClientAuth, t0) == nil {
			t.Errorf("%s: a server certificate is accepted for client auth", req)
		}
		if c.IsCA {
			t.Errorf("%s is a CA", req)
		}
		if c.Subject.CommonName != req.CommonName || !slices.Equal(c.Subject.Organization, req.Organizations) {
			t.Errorf("%s: subject %v, want CN=%s O=%v", req, c.Subject, req.CommonName, req.Organizations)
		}
		if !slices.Equal(c.DNSNames, req.DNSNames) || !slices.Equal(ipStrings(c.IPAddresses), ipStrings(req.IPs)) {
			t.Errorf("%s: SANs %v %v, want %v %v", req, c.DNSNames, c.IPAddresses, req.DNSNames, req.IPs)
		}
		if c.KeyUsage != x509.KeyUsageDigitalSignature {
			t.Errorf("%s: key usage %v, want digital signature only for ECDSA", req, c.KeyUsage)
		}
		if got := c.NotAfter.Sub(c.NotBefore); got != 90*24*time.Hour {
			t.Errorf("%s: validity %s, want 90d", req, got)
		}
		if _, ok := c.PublicKey.(*ecdsa.PublicKey); !ok {
			t.Errorf("%s: key %T, want ECDSA", req, c.PublicKey)
		}
	}

	// Second pass, a day later: nothing changes, same bytes.
	for _, req := range clusterRequests(t) {
		kp, changed, err := EnsureCertificate(issued[req.Name], cas[req.Issuer], req, t0.Add(24*time.Hour))
		if err != nil || changed || !kp.Equal(issued[req.Name]) {
			t.Errorf("%s second pass: changed %v, err %v", req, changed, err)
		}
	}
}

func TestRenewalWithInjectedClock(t *testing.T) {
	ca := mustCA(t, ClusterCARequest(), t0)
	req := AdminCert()
	req.Validity, req.RenewBefore = 30*24*time.Hour, 7*24*time.Hour
	first, _, err := EnsureCertificate(nil, ca, req, t0)
	if err != nil {
		t.Fatal(err)
	}

	// Just before the renewal window: kept.
	before := t0.Add(23*24*time.Hour - backdate - time.Minute)
	if kp, changed, err := EnsureCertificate(first, ca, req, before); err != nil || changed || !kp.Equal(first) {
		t.Fatalf("before the window: changed %v, err %v", changed, err)
	}
	if need, _ := NeedsRenewal(first.Cert, req.RenewBefore, before); need {
		t.Error("NeedsRenewal before the window = true")
	}

	// Inside the window: a new certificate from the same CA; the CA is unchanged.
	later := t0.Add(25 * 24 * time.Hour)
	if need, _ := NeedsRenewal(first.Cert, req.RenewBefore, later); !need {
		t.Error("NeedsRenewal inside the window = false")
	}
	if reason, _ := ReissueReason(first, ca, req, later); !strings.HasPrefix(reason, "expires at") {
		t.Errorf("reason = %q", reason)
	}
	renewed, changed, err := EnsureCertificate(first, ca, req, later)
	if err != nil || !changed || renewed.Equal(first) || string(renewed.Key) == string(first.Key) {
		t.Fatalf("inside the window: changed %v, err %v; want a new certificate and key", changed, err)
	}
	caAgain, caChanged, err := EnsureCA(ca, ClusterCARequest(), later)
	if err != nil || caChanged || !caAgain.Equal(ca) {
		t.Fatalf("CA after renewal: changed %v, err %v", caChanged, err)
	}
	if err := Verify(renewed.Cert, ca.Cert, x509.ExtKeyUsageClientAuth, later); err != nil {
		t.Errorf("renewed certificate does not verify: %v", err)
	}
	oldExp, _ := Expiry(first.Cert)
	newExp, _ := Expiry(renewed.Cert)
	if !newExp.Equal(later.Add(-backdate).Add(req.Validity)) || !newExp.After(oldExp) {
		t.Errorf("renewed NotAfter = %s (old %s)", newExp, oldExp)
	}
	// And it is stable again.
	if _, changed, _ := EnsureCertificate(renewed, ca, req, later.Add(time.Hour)); changed {
		t.Error("renewed certificate re-issued again")
	}
	// Past expiry, with the clock injected, it is re-issued too.
	if _, changed, _ := EnsureCertificate(first, ca, req, t0.Add(60*24*time.Hour)); !changed {
		t.Error("expired certificate kept")
	}
}

func TestLeafNeverOutlivesCA(t *testing.T) {
	ca := mustCA(t, CARequest{CommonName: "short", Validity: 100 * 24 * time.Hour}, t0)
	caExp, _ := Expiry(ca.Cert)
	req := SchedulerCert()             // default validity: one year
	now := t0.Add(95 * 24 * time.Hour) // within RenewBefore of the CA's end
	kp, _, err := EnsureCertificate(nil, ca, req, now)
	if err != nil {
		t.Fatal(err)
	}
	if exp, _ := Expiry(kp.Cert); !exp.Equal(caExp) {
		t.Errorf("leaf NotAfter %s, want capped at CA NotAfter %s", exp, caExp)
	}
	// Renewing cannot help, so it must not churn.
	if _, changed, err := EnsureCertificate(kp, ca, req, now.Add(time.Hour)); err != nil || changed {
		t.Errorf("capped leaf re-issued: changed %v, err %v", changed, err)
	}
}

func TestReissueReasons(t *testing.T) {
	cas := newClusterCAs(t)
	ca := cas[ClusterCA]
	base, err := KubeletServingCert("node-1", net.ParseIP("192.0.2.5"))
	if err != nil {
		t.Fatal(err)
	}
	kp, _, err := EnsureCertificate(nil, ca, base, t0)
	if err != nil {
		t.Fatal(err)
	}
	other, _, _ := EnsureCertificate(nil, ca, AdminCert(), t0)
	mod := func(f func(*CertRequest)) CertRequest {
		r := base
		r.DNSNames = slices.Clone(base.DNSNames)
		r.IPs = slices.Clone(base.IPs)
		f(&r)
		return r
	}
	cases := map[string]struct {
		existing *KeyPair
		ca       *KeyPair
		req      CertRequest
		now      time.Time
		reason   string
	}{
		"missing":             {nil, ca, base, t0, "missing"},
		"empty":               {&KeyPair{}, ca, base, t0, "missing"},
		"garbage":             {&KeyPair{Cert: []byte("x"), Key: kp.Key}, ca, base, t0, "unusable"},
		"key of another cert": {&KeyPair{Cert: kp.Cert, Key: other.Key}, ca, base, t0, "unusable"},
		"other CA":            {kp, cas[EtcdCA], base, t0, "not signed by the CA"},
		"CA as leaf":          {ca, ca, base, t0, "not signed by the CA"},
		"commonName":          {kp, ca, mod(func(r *CertRequest) { r.CommonName = "system:node:x" }), t0, "commonName"},
		"organizations":       {kp, ca, mod(func(r *CertRequest) { r.Organizations = nil }), t0, "organizations"},
		"new DNS SAN":         {kp, ca, mod(func(r *CertRequest) { r.DNSNames = append(r.DNSNames, "extra") }), t0, "DNS names"},
		"new IP SAN":          {kp, ca, mod(func(r *CertRequest) { r.IPs = append(r.IPs, net.ParseIP("192.0.2.6")) }), t0, "IPs"},
		"usage":               {kp, ca, mod(func(r *CertRequest) { r.Usage = UsagePeer }), t0, "usage"},
		"key algorithm":       {kp, ca, mod(func(r *CertRequest) { r.Key = RSA2048 }), t0, "key algorithm"},
		"not yet valid":       {kp, ca, base, t0.Add(-time.Hour), "not valid before"},
		"renew window":        {kp, ca, base, t0.Add(DefaultValidity - DefaultRenewBefore), "expires at"},
		"same SANs reordered": {kp, ca, mod(func(r *CertRequest) { slices.Reverse(r.IPs) }), t0, ""},
		"unchanged":           {kp, ca, base, t0.Add(time.Hour), ""},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			reason, err := ReissueReason(tc.existing, tc.ca, tc.req, tc.now)
			if err != nil {
				t.Fatal(err)
			}
			if (tc.reason == "") != (reason == "") || !strings.Contains(reason, tc.reason) {
				t.Fatalf("reason = %q, want %q", reason, tc.reason)
			}
			got, changed, err := EnsureCertificate(tc.existing, tc.ca, tc.req, tc.now)
			if err != nil || changed != (tc.reason != "") {
				t.Fatalf("EnsureCertificate: changed %v, err %v", changed, err)
			}
			if changed {
				if d := diff(mustParse(t, got.Cert), tc.req); d != "" {
					t.Errorf("re-issued certificate still differs: %s", d)
				}
				at := tc.now
				if at.Before(t0) { // the CA itself is not valid before t0-backdate
					at = t0
				}
				if err := Verify(got.Cert, tc.ca.Cert, x509.ExtKeyUsageAny, at); err != nil {
					t.Errorf("re-issued certificate does not verify: %v", err)
				}
			}
		})
	}
}

func TestRSALeaf(t *testing.T) {
	ca := mustCA(t, ClusterCARequest(), t0)
	req := ControllerManagerCert()
	req.Key = RSA2048
	kp, _, err := EnsureCertificate(nil, ca, req, t0)
	if err != nil {
		t.Fatal(err)
	}
	c := mustParse(t, kp.Cert)
	if _, ok := c.PublicKey.(*rsa.PublicKey); !ok || c.KeyUsage != x509.KeyUsageDigitalSignature|x509.KeyUsageKeyEncipherment {
		t.Errorf("RSA leaf: key %T usage %v", c.PublicKey, c.KeyUsage)
	}
}

func TestEnsureCertificateErrors(t *testing.T) {
	ca := mustCA(t, CARequest{CommonName: "kubernetes", Validity: time.Hour}, t0)
	good := SchedulerCert()
	cases := map[string]struct {
		ca    *KeyPair
		req   CertRequest
		now   time.Time
		is    error
		field string
	}{
		"no CA":            {nil, good, t0, ErrCAUnusable, ""},
		"expired CA":       {ca, good, t0.Add(2 * time.Hour), ErrCAUnusable, "expired"},
		"commonName":       {ca, CertRequest{Usage: UsageClient}, t0, ErrInvalidRequest, "commonName"},
		"usage":            {ca, CertRequest{CommonName: "x", Usage: "both"}, t0, ErrInvalidRequest, "usage"},
		"renewBefore":      {ca, CertRequest{CommonName: "x", Usage: UsageClient, Validity: 24 * time.Hour}, t0, ErrInvalidRequest, "renewBefore"},
		"negative":         {ca, CertRequest{CommonName: "x", Usage: UsageClient, Validity: -1}, t0, ErrInvalidRequest, "validity"},
		"dnsNames":         {ca, CertRequest{CommonName: "x", Usage: UsageServer, DNSNames: []string{"Not_A_Name"}}, t0, ErrInvalidRequest, "dnsNames[0]"},
		"server sans":      {ca, CertRequest{CommonName: "x", Usage: UsageServer}, t0, ErrInvalidRequest, "dnsNames"},
		"ips":              {ca, CertRequest{CommonName: "x", Usage: UsageServer, IPs: []net.IP{{1, 2}}}, t0, ErrInvalidRequest, "ips[0]"},
		"empty org":        {ca, CertRequest{CommonName: "x", Usage: UsageClient, Organizations: []string{""}}, t0, ErrInvalidRequest, "organizations[0]"},
		"unknown key algo": {ca, CertRequest{CommonName: "x", Usage: UsageClient, Key: "ed448"}, t0, ErrInvalidRequest, "key"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, _, err := EnsureCertificate(nil, tc.ca, tc.req, tc.now)
			if !errors.Is(err, tc.is) || !strings.Contains(err.Error(), tc.field) {
				t.Fatalf("err = %v, want %v naming %q", err, tc.is, tc.field)
			}
		})
	}
}

func TestExpiryAndNeedsRenewal(t *testing.T) {
	ca := mustCA(t, ClusterCARequest(), t0)
	kp, _, _ := EnsureCertificate(nil, ca, KubeProxyCert(), t0)
	exp, err := Expiry(kp.Cert)
	if want := t0.Add(-backdate).Add(DefaultValidity); err != nil || !exp.Equal(want) {
		t.Errorf("Expiry = %s, %v; want %s", exp, err, want)
	}
	for _, tc := range []struct {
		renewBefore time.Duration
		now         time.Time
		want        bool
	}{
		{0, exp.Add(-DefaultRenewBefore - time.Second), false},
		{0, exp.Add(-DefaultRenewBefore), true},
		{time.Hour, exp.Add(-2 * time.Hour), false},
		{time.Hour, exp.Add(-time.Minute), true},
		{time.Hour, exp.Add(time.Hour), true},
	} {
		if got, err := NeedsRenewal(kp.Cert, tc.renewBefore, tc.now); err != nil || got != tc.want {
			t.Errorf("NeedsRenewal(%s, %s) = %v, %v; want %v", tc.renewBefore, tc.now, got, err, tc.want)
		}
	}
	if _, err := Expiry([]byte("nope")); err == nil {
		t.Error("Expiry of garbage: no error")
	}
	if _, err := NeedsRenewal(kp.Key, time.Hour, t0); err == nil {
		t.Error("NeedsRenewal of a key: no error")
	}
}
