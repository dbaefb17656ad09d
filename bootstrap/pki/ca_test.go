package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"strings"
	"testing"
	"time"
)

// t0 is the injected "now" of the tests.
var t0 = time.Date(2030, time.March, 1, 12, 0, 0, 0, time.UTC)

func mustCA(t *testing.T, req CARequest, now time.Time) *KeyPair {
	t.Helper()
	ca, changed, err := EnsureCA(nil, req, now)
	if err != nil || !changed {
		t.Fatalf("EnsureCA(%s) = changed %v, err %v", req.CommonName, changed, err)
	}
	return ca
}

func mustParse(t *testing.T, certPEM []byte) *x509.Certificate {
	t.Helper()
	c, err := ParseCertificate(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestEnsureCACreatesAndKeeps(t *testing.T) {
	ca := mustCA(t, CARequest{CommonName: "kubernetes", Validity: 5 * 365 * 24 * time.Hour}, t0)
	c := mustParse(t, ca.Cert)
	if !c.IsCA || !c.BasicConstraintsValid || c.KeyUsage&x509.KeyUsageCertSign == 0 {
		t.Errorf("not a CA: IsCA=%v KeyUsage=%v", c.IsCA, c.KeyUsage)
	}
	if c.Subject.CommonName != "kubernetes" || c.Issuer.CommonName != "kubernetes" {
		t.Errorf("subject %q issuer %q", c.Subject, c.Issuer)
	}
	if err := c.CheckSignatureFrom(c); err != nil {
		t.Errorf("not self-signed: %v", err)
	}
	if want := t0.Add(-backdate); !c.NotBefore.Equal(want) {
		t.Errorf("NotBefore = %s, want %s", c.NotBefore, want)
	}
	if got := c.NotAfter.Sub(c.NotBefore); got != 5*365*24*time.Hour {
		t.Errorf("validity = %s, want 5y", got)
	}
	if k, ok := c.PublicKey.(*ecdsa.PublicKey); !ok || k.Curve != elliptic.P256() {
		t.Errorf("key is %T, want ECDSA P-256", c.PublicKey)
	}

	// A second call, even with another name, validity or algorithm, keeps the stored CA.
	for _, req := range []CARequest{
		{CommonName: "kubernetes"},
		{CommonName: "renamed", Validity: time.Hour, Key: RSA2048},
	} {
		got, changed, err := EnsureCA(ca, req, t0.Add(365*24*time.Hour))
		if err != nil || changed || !got.Equal(ca) {
			t.Errorf("EnsureCA(existing, %+v) = changed %v, err %v, same %v; want the stored CA", req, changed, err, got.Equal(ca))
		}
	}
}

func TestEnsureCADefaultsAndRSA(t *testing.T) {
	ca := mustCA(t, CARequest{CommonName: "etcd-ca", Key: RSA2048}, t0)
	c := mustParse(t, ca.Cert)
	if k, ok := c.PublicKey.(*rsa.PublicKey); !ok || k.N.BitLen() != 2048 {
		t.Errorf("key is %T, want RSA 2048", c.PublicKey)
	}
	if got := c.NotAfter.Sub(c.NotBefore); got != DefaultCAValidity {
		t.Errorf("validity = %s, want %s", got, DefaultCAValidity)
	}
}

func TestEnsureCANeverReplaces(t *testing.T) {
	ca := mustCA(t, CARequest{CommonName: "kubernetes", Validity: 24 * time.Hour}, t0)
	other := mustCA(t, CARequest{CommonName: "kubernetes"}, t0)
	leaf, _, err := EnsureCertificate(nil, ca, AdminCert(), t0)
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string]struct {
		existing *KeyPair
		now      time.Time
	}{
		"expired":          {ca, t0.Add(48 * time.Hour)},
		"garbage cert":     {&KeyPair{Cert: []byte("junk"), Key: ca.Key}, t0},
		"missing key":      {&KeyPair{Cert: ca.Cert}, t0},
		"missing cert":     {&KeyPair{Key: ca.Key}, t0},
		"key mismatch":     {&KeyPair{Cert: ca.Cert, Key: other.Key}, t0},
		"leaf, not a CA":   {leaf, t0},
		"truncated key":    {&KeyPair{Cert: ca.Cert, Key: ca.Key[:40]}, t0},
		"cert is not cert": {&KeyPair{Cert: ca.Key, Key: ca.Key}, t0},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			got, changed, err := EnsureCA(tc.existing, ClusterCARequest(), tc.now)
			if !errors.Is(err, ErrCAUnusable) || changed || got != nil {
				t.Fatalf("EnsureCA = %v, changed %v, err %v; want ErrCAUnusable and nothing new", got, changed, err)
			}
		})
	}
}

func TestEnsureCAInvalidRequest(t *testing.T) {
	for field, req := range map[string]CARequest{
		"commonName": {},
		"validity":   {CommonName: "x", Validity: -time.Second},
		"key":        {CommonName: "x", Key: "dsa-1024"},
	} {
		_, _, err := EnsureCA(nil, req, t0)
		if !errors.Is(err, ErrInvalidRequest) || !strings.Contains(err.Error(), field) {
			t.Errorf("EnsureCA(%+v) err = %v, want ErrInvalidRequest naming %q", req, err, field)
		}
	}
}

func TestEnsureServiceAccountKey(t *testing.T) {
	sa, changed, err := EnsureServiceAccountKey(nil, "")
	if err != nil || !changed {
		t.Fatalf("new key: changed %v, err %v", changed, err)
	}
	block, _ := pem.Decode(sa.PublicKey)
	if block == nil || block.Type != "PUBLIC KEY" {
		t.Fatalf("public key PEM: %q", sa.PublicKey)
	}
	pub, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	priv, err := parseKey(sa.PrivateKey)
	if err != nil || !publicKeysEqual(priv.Public(), pub) {
		t.Fatalf("public key does not belong to the private key (err %v)", err)
	}
	if _, ok := pub.(*ecdsa.PublicKey); !ok {
		t.Errorf("default SA key is %T, want ECDSA", pub)
	}

	again, changed, err := EnsureServiceAccountKey(sa.PrivateKey, RSA2048)
	if err != nil || changed || string(again.PrivateKey) != string(sa.PrivateKey) || string(again.PublicKey) != string(sa.PublicKey) {
		t.Errorf("second call: changed %v, err %v; want the same key kept whatever the algorithm", changed, err)
	}

	rsaKey, changed, err := EnsureServiceAccountKey(nil, RSA2048)
	if err != nil || !changed || !strings.Contains(string(rsaKey.PrivateKey), "RSA PRIVATE KEY") {
		t.Errorf("RSA key: changed %v, err %v", changed, err)
	}

	weak, _ := rsa.GenerateKey(rand.Reader, 1024)
	weakPEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(weak)})
	for name, in := range map[string][]byte{"garbage": []byte("not a key"), "weak RSA": weakPEM} {
		if _, _, err := EnsureServiceAccountKey(in, ""); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("%s: err = %v, want ErrInvalidKey", name, err)
		}
	}
}
