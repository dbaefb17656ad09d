package pki

import (
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"time"

	"github.com/cloudflare/cfssl/config"
	"github.com/cloudflare/cfssl/csr"
	"github.com/cloudflare/cfssl/signer"
	"github.com/cloudflare/cfssl/signer/local"
)

// CARequest describes a self-signed CA.
type CARequest struct {
	// CommonName of the CA, e.g. "kubernetes", "etcd-ca", "front-proxy-ca".
	CommonName string
	// Validity of a new CA certificate; zero means DefaultCAValidity.
	Validity time.Duration
	// Key algorithm of a new CA key; zero means ECDSAP256.
	Key KeyAlgorithm
}

func (r CARequest) validate() error {
	switch {
	case r.CommonName == "":
		return fmt.Errorf("%w: commonName: must not be empty", ErrInvalidRequest)
	case r.Validity < 0:
		return fmt.Errorf("%w: validity: must not be negative, got %s", ErrInvalidRequest, r.Validity)
	}
	_, err := r.Key.keyRequest()
	return err
}

// EnsureCA returns a usable CA: existing when one is stored, a new self-signed CA when existing
// is nil or empty. changed is true only when a new CA was created.
//
// A stored CA is kept whatever its CommonName or validity: replacing a CA would invalidate every
// certificate and kubeconfig issued from it. If the stored CA is malformed, is not a CA, does not
// match its key or has expired at now, EnsureCA returns an error wrapping ErrCAUnusable and never
// creates a new one.
func EnsureCA(existing *KeyPair, req CARequest, now time.Time) (*KeyPair, bool, error) {
	if err := req.validate(); err != nil {
		return nil, false, err
	}
	if !existing.empty() {
		if err := checkCA(existing, now); err != nil {
			return nil, false, fmt.Errorf("%w: %s: %w", ErrCAUnusable, req.CommonName, err)
		}
		return existing, false, nil
	}
	kp, err := newCA(req, now)
	if err != nil {
		return nil, false, fmt.Errorf("creating CA %s: %w", req.CommonName, err)
	}
	return kp, true, nil
}

// checkCA verifies that a stored pair is a CA that can sign at now.
func checkCA(kp *KeyPair, now time.Time) error {
	cert, _, err := parsePair(kp)
	if err != nil {
		return err
	}
	if !cert.IsCA || !cert.BasicConstraintsValid || cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return errors.New("certificate is not a CA")
	}
	if !now.Before(cert.NotAfter) {
		return fmt.Errorf("certificate expired at %s", cert.NotAfter.UTC().Format(time.RFC3339))
	}
	return nil
}

// newCA creates a self-signed CA with cfssl, valid from now-backdate for req.Validity.
func newCA(req CARequest, now time.Time) (*KeyPair, error) {
	validity := req.Validity
	if validity == 0 {
		validity = DefaultCAValidity
	}
	priv, keyPEM, err := generateKey(req.Key)
	if err != nil {
		return nil, err
	}
	csrPEM, err := csr.Generate(priv, &csr.CertificateRequest{
		CN: req.CommonName,
		CA: &csr.CAConfig{},
	})
	if err != nil {
		return nil, err
	}
	policy := &config.Signing{Default: &config.SigningProfile{
		Usage:        []string{"digital signature", "cert sign", "crl sign"},
		Expiry:       validity,
		CAConstraint: config.CAConstraint{IsCA: true},
	}}
	s, err := local.NewSigner(priv, nil, signer.DefaultSigAlgo(priv), policy)
	if err != nil {
		return nil, err
	}
	notBefore := now.Add(-backdate).Truncate(time.Second)
	certPEM, err := s.Sign(signer.SignRequest{
		Request:   string(csrPEM),
		NotBefore: notBefore,
		NotAfter:  notBefore.Add(validity),
	})
	if err != nil {
		return nil, err
	}
	return &KeyPair{Cert: certPEM, Key: keyPEM}, nil
}

// ServiceAccountKey is the key pair kube-apiserver and kube-controller-manager use for
// service-account tokens: PrivateKey (PEM) is stored and goes to --service-account-signing-key-file
// and --service-account-private-key-file; PublicKey (PEM, PKIX) goes to --service-account-key-file.
type ServiceAccountKey struct {
	PrivateKey []byte
	PublicKey  []byte
}

// EnsureServiceAccountKey returns the service-account key pair: existing (a PEM private key)
// when one is stored, a new key of algorithm alg (zero means ECDSAP256) otherwise. changed is
// true only when a new key was generated. A stored key is kept whatever its algorithm, because
// replacing it would invalidate every token issued in the cluster; a stored key that does not
// parse is an error wrapping ErrInvalidKey.
func EnsureServiceAccountKey(existing []byte, alg KeyAlgorithm) (*ServiceAccountKey, bool, error) {
	if len(existing) > 0 {
		pub, err := ServiceAccountPublicKey(existing)
		if err != nil {
			return nil, false, fmt.Errorf("service-account key: %w", err)
		}
		return &ServiceAccountKey{PrivateKey: existing, PublicKey: pub}, false, nil
	}
	_, keyPEM, err := generateKey(alg)
	if err != nil {
		return nil, false, err
	}
	pub, err := ServiceAccountPublicKey(keyPEM)
	if err != nil {
		return nil, false, err
	}
	return &ServiceAccountKey{PrivateKey: keyPEM, PublicKey: pub}, true, nil
}

// ServiceAccountPublicKey returns the PEM "PUBLIC KEY" (PKIX) of a PEM private key. Only RSA
// (at least 2048 bits) and ECDSA keys are accepted, as kube-apiserver signs tokens only with those.
func ServiceAccountPublicKey(privateKey []byte) ([]byte, error) {
	priv, err := parseKey(privateKey)
	if err != nil {
		return nil, err
	}
	switch priv.(type) {
	case *rsa.PrivateKey, *ecdsa.PrivateKey:
	default:
		return nil, fmt.Errorf("%w: %T cannot sign service-account tokens", ErrInvalidKey, priv)
	}
	der, err := x509.MarshalPKIXPublicKey(priv.Public())
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}
