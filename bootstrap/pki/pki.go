package pki

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"time"

	"github.com/cloudflare/cfssl/csr"
	"github.com/cloudflare/cfssl/helpers"
)

// Defaults applied when a request leaves a field zero.
const (
	// DefaultCAValidity is how long a new CA certificate is valid (10 years, as kubeadm).
	DefaultCAValidity = 10 * 365 * 24 * time.Hour
	// DefaultValidity is how long a new leaf certificate is valid (1 year, as kubeadm).
	DefaultValidity = 365 * 24 * time.Hour
	// DefaultRenewBefore is how long before expiry a leaf is re-issued.
	DefaultRenewBefore = 30 * 24 * time.Hour
	// backdate is subtracted from now for NotBefore so that hosts with a slightly late clock
	// accept a certificate that was just issued.
	backdate = 5 * time.Minute
)

// Errors callers may test with errors.Is.
var (
	// ErrInvalidRequest means a request is malformed; the message names the field.
	ErrInvalidRequest = errors.New("invalid certificate request")
	// ErrCAUnusable means a stored CA cannot be used (malformed, not a CA, key mismatch or
	// expired). EnsureCA never replaces such a CA by itself.
	ErrCAUnusable = errors.New("stored CA is unusable")
	// ErrInvalidKey means stored key material does not parse or is too weak.
	ErrInvalidKey = errors.New("invalid key")
)

// KeyPair is a PEM-encoded certificate and its PEM-encoded private key, as stored in a Secret
// (tls.crt / tls.key).
type KeyPair struct {
	Cert []byte
	Key  []byte
}

// empty reports whether nothing is stored.
func (kp *KeyPair) empty() bool {
	return kp == nil || (len(kp.Cert) == 0 && len(kp.Key) == 0)
}

// Equal reports whether both pairs hold the same bytes.
func (kp *KeyPair) Equal(o *KeyPair) bool {
	if kp == nil || o == nil {
		return kp == o
	}
	return bytes.Equal(kp.Cert, o.Cert) && bytes.Equal(kp.Key, o.Key)
}

// KeyAlgorithm selects the type and size of new private keys.
type KeyAlgorithm string

// Supported key algorithms. The zero value means ECDSAP256.
const (
	ECDSAP256 KeyAlgorithm = "ecdsa-p256"
	ECDSAP384 KeyAlgorithm = "ecdsa-p384"
	RSA2048   KeyAlgorithm = "rsa-2048"
	RSA3072   KeyAlgorithm = "rsa-3072"
	RSA4096   KeyAlgorithm = "rsa-4096"
)

// keyRequest maps an algorithm to cfssl's key request.
func (a KeyAlgorithm) keyRequest() (*csr.KeyRequest, error) {
	switch a {
	case "", ECDSAP256:
		return &csr.KeyRequest{A: "ecdsa", S: 256}, nil
	case ECDSAP384:
		return &csr.KeyRequest{A: "ecdsa", S: 384}, nil
	case RSA2048:
		return &csr.KeyRequest{A: "rsa", S: 2048}, nil
	case RSA3072:
		return &csr.KeyRequest{A: "rsa", S: 3072}, nil
	case RSA4096:
		return &csr.KeyRequest{A: "rsa", S: 4096}, nil
	}
	return nil, fmt.Errorf("%w: key: unknown algorithm %q (want %s, %s, %s, %s or %s)",
		ErrInvalidRequest, a, ECDSAP256, ECDSAP384, RSA2048, RSA3072, RSA4096)
}

// matches reports whether pub is a key of this algorithm.
func (a KeyAlgorithm) matches(pub crypto.PublicKey) bool {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		return (a == "" || a == ECDSAP256) && k.Curve == elliptic.P256() ||
			a == ECDSAP384 && k.Curve == elliptic.P384()
	case *rsa.PublicKey:
		bits := k.N.BitLen()
		return a == RSA2048 && bits == 2048 || a == RSA3072 && bits == 3072 || a == RSA4096 && bits == 4096
	}
	return false
}

// generateKey returns a new private key and its PEM encoding.
func generateKey(a KeyAlgorithm) (crypto.Signer, []byte, error) {
	kr, err := a.keyRequest()
	if err != nil {
		return nil, nil, err
	}
	priv, err := kr.Generate()
	if err != nil {
		return nil, nil, fmt.Errorf("generating %s key: %w", a, err)
	}
	signer, ok := priv.(crypto.Signer)
	if !ok {
		return nil, nil, fmt.Errorf("generating %s key: not a crypto.Signer", a)
	}
	var block *pem.Block
	switch k := priv.(type) {
	case *ecdsa.PrivateKey:
		der, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			return nil, nil, err
		}
		block = &pem.Block{Type: "EC PRIVATE KEY", Bytes: der}
	case *rsa.PrivateKey:
		block = &pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)}
	default:
		return nil, nil, fmt.Errorf("generating %s key: unexpected type %T", a, priv)
	}
	return signer, pem.EncodeToMemory(block), nil
}

// parseKey parses a PEM private key (PKCS#1, PKCS#8 or SEC 1) and rejects weak RSA keys.
func parseKey(keyPEM []byte) (crypto.Signer, error) {
	priv, err := helpers.ParsePrivateKeyPEM(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidKey, err)
	}
	if k, ok := priv.(*rsa.PrivateKey); ok && k.N.BitLen() < 2048 {
		return nil, fmt.Errorf("%w: RSA key of %d bits, want at least 2048", ErrInvalidKey, k.N.BitLen())
	}
	return priv, nil
}

// publicKeysEqual reports whether two public keys are the same key.
func publicKeysEqual(a, b crypto.PublicKey) bool {
	type equaler interface{ Equal(crypto.PublicKey) bool }
	ea, ok := a.(equaler)
	return ok && ea.Equal(b)
}

// ParseCertificate decodes the first PEM certificate in data.
func ParseCertificate(data []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM CERTIFICATE block")
	}
	return x509.ParseCertificate(block.Bytes)
}

// parsePair parses a key pair and checks that the key belongs to the certificate.
func parsePair(kp *KeyPair) (*x509.Certificate, crypto.Signer, error) {
	cert, err := ParseCertificate(kp.Cert)
	if err != nil {
		return nil, nil, fmt.Errorf("certificate: %w", err)
	}
	key, err := parseKey(kp.Key)
	if err != nil {
		return nil, nil, err
	}
	if !publicKeysEqual(key.Public(), cert.PublicKey) {
		return nil, nil, errors.New("private key does not match the certificate")
	}
	return cert, key, nil
}

// Expiry returns the NotAfter time of a PEM certificate.
func Expiry(cert []byte) (time.Time, error) {
	c, err := ParseCertificate(cert)
	if err != nil {
		return time.Time{}, err
	}
	return c.NotAfter, nil
}

// IssuedAt is when a certificate this package issued was issued (its NotBefore is backdated),
// to the second.
func IssuedAt(c *x509.Certificate) time.Time { return c.NotBefore.Add(backdate) }

// NeedsRenewal reports whether a PEM certificate expires within renewBefore of now (or has
// already expired). A zero renewBefore means DefaultRenewBefore.
func NeedsRenewal(cert []byte, renewBefore time.Duration, now time.Time) (bool, error) {
	notAfter, err := Expiry(cert)
	if err != nil {
		return false, err
	}
	if renewBefore == 0 {
		renewBefore = DefaultRenewBefore
	}
	return !now.Before(notAfter.Add(-renewBefore)), nil
}

// Verify checks that a PEM leaf certificate chains to the PEM CA certificate at time now and
// carries the given extended key usage (x509.ExtKeyUsageAny accepts any).
func Verify(cert, ca []byte, usage x509.ExtKeyUsage, now time.Time) error {
	leaf, err := ParseCertificate(cert)
	if err != nil {
		return fmt.Errorf("certificate: %w", err)
	}
	root, err := ParseCertificate(ca)
	if err != nil {
		return fmt.Errorf("CA: %w", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(root)
	_, err = leaf.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{usage}})
	return err
}
