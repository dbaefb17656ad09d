package pki

import (
	"crypto/rsa"
	"crypto/x509"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/cloudflare/cfssl/config"
	"github.com/cloudflare/cfssl/csr"
	"github.com/cloudflare/cfssl/signer"
	"github.com/cloudflare/cfssl/signer/local"
	"k8s.io/apimachinery/pkg/util/validation"
)

// Usage says what a leaf certificate is for.
type Usage string

// Leaf usages.
const (
	// UsageServer is a TLS server certificate (ExtKeyUsage serverAuth).
	UsageServer Usage = "server"
	// UsageClient is a TLS client certificate (ExtKeyUsage clientAuth).
	UsageClient Usage = "client"
	// UsagePeer is both (serverAuth and clientAuth), as etcd peers and etcd servers need.
	UsagePeer Usage = "peer"
)

// extKeyUsages returns the extended key usages in a fixed order.
func (u Usage) extKeyUsages() ([]x509.ExtKeyUsage, []string, error) {
	switch u {
	case UsageServer:
		return []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, []string{"server auth"}, nil
	case UsageClient:
		return []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, []string{"client auth"}, nil
	case UsagePeer:
		return []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
			[]string{"server auth", "client auth"}, nil
	}
	return nil, nil, fmt.Errorf("%w: usage: unknown usage %q (want %s, %s or %s)",
		ErrInvalidRequest, u, UsageServer, UsageClient, UsagePeer)
}

// CAName names the CA that signs a certificate.
type CAName string

// The CAs of a cluster.
const (
	ClusterCA    CAName = "ca"
	EtcdCA       CAName = "etcd-ca"
	FrontProxyCA CAName = "front-proxy-ca"
)

// CertRequest describes a leaf certificate.
type CertRequest struct {
	// Name identifies the certificate in errors and logs, e.g. "apiserver" or "etcd-peer-cp-1".
	Name string
	// Issuer is the CA the caller must pass to EnsureCertificate. It is informational for
	// EnsureCertificate, which checks against the CA it is given.
	Issuer CAName
	// CommonName is the subject CN, the user name Kubernetes sees for client certificates.
	CommonName string
	// Organizations are the subject O values, the groups Kubernetes sees.
	Organizations []string
	// DNSNames and IPs are the subject alternative names.
	DNSNames []string
	IPs      []net.IP
	// Usage is server, client or peer (both).
	Usage Usage
	// Validity of a new certificate; zero means DefaultValidity. A certificate never outlives
	// its CA: NotAfter is capped at the CA's NotAfter.
	Validity time.Duration
	// RenewBefore re-issues the certificate this long before it expires; zero means
	// DefaultRenewBefore. It must be shorter than Validity.
	RenewBefore time.Duration
	// Key algorithm of a new key; zero means ECDSAP256.
	Key KeyAlgorithm
}

// String returns the name used in errors.
func (r CertRequest) String() string {
	if r.Name != "" {
		return r.Name
	}
	return r.CommonName
}

func (r CertRequest) validity() time.Duration {
	if r.Validity == 0 {
		return DefaultValidity
	}
	return r.Validity
}

func (r CertRequest) renewBefore() time.Duration {
	if r.RenewBefore == 0 {
		return DefaultRenewBefore
	}
	return r.RenewBefore
}

// Validate checks the request; the error names the offending field.
func (r CertRequest) Validate() error {
	bad := func(field, format string, args ...any) error {
		return fmt.Errorf("%w: %s: %s: %s", ErrInvalidRequest, r, field, fmt.Sprintf(format, args...))
	}
	if r.CommonName == "" {
		return bad("commonName", "must not be empty")
	}
	if _, _, err := r.Usage.extKeyUsages(); err != nil {
		return bad("usage", "unknown usage %q", r.Usage)
	}
	if _, err := r.Key.keyRequest(); err != nil {
		return bad("key", "unknown algorithm %q", r.Key)
	}
	if r.Validity < 0 || r.RenewBefore < 0 {
		return bad("validity", "validity and renewBefore must not be negative")
	}
	if r.renewBefore() >= r.validity() {
		return bad("renewBefore", "%s must be shorter than validity %s", r.renewBefore(), r.validity())
	}
	for i, o := range r.Organizations {
		if o == "" {
			return bad(fmt.Sprintf("organizations[%d]", i), "must not be empty")
		}
	}
	for i, n := range r.DNSNames {
		if errs := validation.IsDNS1123Subdomain(n); len(errs) > 0 {
			return bad(fmt.Sprintf("dnsNames[%d]", i), "%q is not a DNS name: %s", n, strings.Join(errs, "; "))
		}
	}
	for i, ip := range r.IPs {
		if len(ip) != net.IPv4len && len(ip) != net.IPv6len {
			return bad(fmt.Sprintf("ips[%d]", i), "not an IP address")
		}
	}
	if r.Usage != UsageClient && len(r.DNSNames)+len(r.IPs) == 0 {
		return bad("dnsNames", "a %s certificate needs at least one DNS name or IP", r.Usage)
	}
	return nil
}

// EnsureCertificate returns a leaf certificate for req signed by ca: existing when it still
// satisfies the request at now, a newly issued one otherwise. changed is true only when a new
// certificate (with a new key) was issued. See ReissueReason for when that happens. ca must be
// usable (see EnsureCA); it is never modified.
func EnsureCertificate(existing, ca *KeyPair, req CertRequest, now time.Time) (*KeyPair, bool, error) {
	reason, err := ReissueReason(existing, ca, req, now)
	if err != nil {
		return nil, false, err
	}
	if reason == "" {
		return existing, false, nil
	}
	kp, err := issue(ca, req, now)
	if err != nil {
		return nil, false, fmt.Errorf("issuing %s: %w", req, err)
	}
	return kp, true, nil
}

// ReissueReason says why EnsureCertificate would issue a new certificate, or "" when existing
// satisfies req at now. The reason is meant for logs and events; it holds no secret. An error
// means the request is invalid or the CA unusable.
func ReissueReason(existing, ca *KeyPair, req CertRequest, now time.Time) (string, error) {
	if err := req.Validate(); err != nil {
		return "", err
	}
	if ca.empty() {
		return "", fmt.Errorf("%w: %s: no CA given", ErrCAUnusable, req)
	}
	if err := checkCA(ca, now); err != nil {
		return "", fmt.Errorf("%w: %s: %w", ErrCAUnusable, req, err)
	}
	if existing.empty() {
		return "missing", nil
	}
	caCert, _ := ParseCertificate(ca.Cert) // parsed by checkCA
	cert, problem := parseExisting(existing)
	if problem != "" {
		return problem, nil
	}
	if !signedBy(cert, caCert) {
		return "not signed by the CA", nil
	}
	if d := diff(cert, req); d != "" {
		return d, nil
	}
	if now.Before(cert.NotBefore) {
		return "not valid before " + cert.NotBefore.UTC().Format(time.RFC3339), nil
	}
	if !now.Before(cert.NotAfter.Add(-req.renewBefore())) && notAfter(caCert, req, now).After(cert.NotAfter) {
		return "expires at " + cert.NotAfter.UTC().Format(time.RFC3339), nil
	}
	return "", nil
}

// parseExisting parses a stored leaf; a problem is a reason to re-issue, not an error.
func parseExisting(kp *KeyPair) (*x509.Certificate, string) {
	cert, _, err := parsePair(kp)
	if err != nil {
		return nil, "unusable: " + err.Error()
	}
	return cert, ""
}

// signedBy reports whether leaf is a non-CA certificate signed by ca.
func signedBy(leaf, ca *x509.Certificate) bool {
	return !leaf.IsCA && leaf.CheckSignatureFrom(ca) == nil
}

// diff compares a certificate with a request and describes the first difference.
func diff(cert *x509.Certificate, req CertRequest) string {
	if cert.Subject.CommonName != req.CommonName {
		return fmt.Sprintf("commonName is %q, want %q", cert.Subject.CommonName, req.CommonName)
	}
	if !sameSet(cert.Subject.Organization, req.Organizations) {
		return fmt.Sprintf("organizations are %q, want %q", cert.Subject.Organization, req.Organizations)
	}
	if !sameSet(cert.DNSNames, req.DNSNames) {
		return fmt.Sprintf("DNS names are %q, want %q", cert.DNSNames, req.DNSNames)
	}
	if !sameSet(ipStrings(cert.IPAddresses), ipStrings(req.IPs)) {
		return fmt.Sprintf("IPs are %q, want %q", ipStrings(cert.IPAddresses), ipStrings(req.IPs))
	}
	want, _, _ := req.Usage.extKeyUsages()
	if !slices.Equal(sortedUsages(cert.ExtKeyUsage), sortedUsages(want)) {
		return fmt.Sprintf("usage differs from %s", req.Usage)
	}
	if !req.Key.matches(cert.PublicKey) {
		return fmt.Sprintf("key algorithm differs from %s", keyName(req.Key))
	}
	return ""
}

func keyName(a KeyAlgorithm) KeyAlgorithm {
	if a == "" {
		return ECDSAP256
	}
	return a
}

// notAfter is the NotAfter a certificate issued at now would get.
func notAfter(ca *x509.Certificate, req CertRequest, now time.Time) time.Time {
	t := now.Add(-backdate).Truncate(time.Second).Add(req.validity())
	if t.After(ca.NotAfter) {
		return ca.NotAfter
	}
	return t
}

// issue signs a new certificate for req with a new key.
func issue(ca *KeyPair, req CertRequest, now time.Time) (*KeyPair, error) {
	caCert, caKey, err := parsePair(ca)
	if err != nil {
		return nil, err
	}
	priv, keyPEM, err := generateKey(req.Key)
	if err != nil {
		return nil, err
	}
	cr := &csr.CertificateRequest{CN: req.CommonName}
	for _, o := range req.Organizations {
		cr.Names = append(cr.Names, csr.Name{O: o})
	}
	cr.Hosts = append(cr.Hosts, req.DNSNames...)
	cr.Hosts = append(cr.Hosts, ipStrings(req.IPs)...)
	csrPEM, err := csr.Generate(priv, cr)
	if err != nil {
		return nil, err
	}
	_, ekus, _ := req.Usage.extKeyUsages()
	usages := []string{"digital signature"}
	if _, ok := priv.(*rsa.PrivateKey); ok {
		usages = append(usages, "key encipherment")
	}
	policy := &config.Signing{Default: &config.SigningProfile{
		Usage:  append(usages, ekus...),
		Expiry: req.validity(),
	}}
	s, err := local.NewSigner(caKey, caCert, signer.DefaultSigAlgo(caKey), policy)
	if err != nil {
		return nil, err
	}
	certPEM, err := s.Sign(signer.SignRequest{
		Request:   string(csrPEM),
		NotBefore: now.Add(-backdate).Truncate(time.Second),
		NotAfter:  notAfter(caCert, req, now),
	})
	if err != nil {
		return nil, err
	}
	return &KeyPair{Cert: certPEM, Key: keyPEM}, nil
}

func sameSet(a, b []string) bool {
	return slices.Equal(sortedCopy(a), sortedCopy(b))
}

func sortedCopy(s []string) []string {
	c := slices.Clone(s)
	slices.Sort(c)
	return slices.Compact(c)
}

func sortedUsages(u []x509.ExtKeyUsage) []x509.ExtKeyUsage {
	c := slices.Clone(u)
	slices.Sort(c)
	return c
}

func ipStrings(ips []net.IP) []string {
	out := make([]string, 0, len(ips))
	for _, ip := range ips {
		out = append(out, ip.String())
	}
	return out
}
