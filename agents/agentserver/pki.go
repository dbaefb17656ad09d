package agentserver

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/basalt-dev/basalt/agents/protocol"
	"github.com/basalt-dev/basalt/agents/tokens"
	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
	"github.com/basalt-dev/basalt/bootstrap/pki"
)

// Secrets in the manager's namespace that hold the agent API's PKI. Each is of type
// kubernetes.io/tls (tls.crt, tls.key); they are created on first start and kept afterwards.
const (
	// AgentCASecret holds the CA that signs agent client certificates.
	AgentCASecret = "basalt-agent-ca"
	// ServingCASecret holds the CA that signs the API's serving certificate; its certificate is
	// what agents pin (Server.ServingCA).
	ServingCASecret = "basalt-agent-api-serving-ca"
	// ServingCertSecret holds the API's serving certificate.
	ServingCertSecret = "basalt-agent-api-serving"
)

// Subjects.
const (
	agentCACommonName   = "basalt-agent-ca"
	servingCACommonName = "basalt-agent-api-ca"
	servingCommonName   = "basalt-agent-api"
	// hostUIDURIPrefix starts the URI SAN that binds a client certificate to one incarnation of
	// its Host (the Host's UID).
	hostUIDURIPrefix = "urn:basalt:host-uid:"
	// certBackdate is subtracted from now for NotBefore, for hosts with a slightly late clock.
	certBackdate = 5 * time.Minute
)

// caPair is a parsed CA.
type caPair struct {
	cert *x509.Certificate
	key  crypto.Signer
	pem  []byte
}

func parseCAPair(kp *pki.KeyPair) (*caPair, error) {
	pair, err := tls.X509KeyPair(kp.Cert, kp.Key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, err
	}
	key, ok := pair.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("CA key of type %T cannot sign", pair.PrivateKey)
	}
	return &caPair{cert: cert, key: key, pem: kp.Cert}, nil
}

// ensureKeyPairSecret reads the key pair stored in Secret name, passes it to ensure and writes
// the result back when ensure says it changed. Concurrent managers converge: a create that
// finds the Secret already there, or an update that conflicts, re-reads and tries again.
func (s *Server) ensureKeyPairSecret(ctx context.Context, name string,
	ensure func(existing *pki.KeyPair) (*pki.KeyPair, bool, error)) (*pki.KeyPair, error) {
	var lastErr error
	for range 5 {
		sec := &corev1.Secret{}
		err := s.APIReader.Get(ctx, client.ObjectKey{Namespace: s.Namespace, Name: name}, sec)
		switch {
		case apierrors.IsNotFound(err):
			kp, _, err := ensure(nil)
			if err != nil {
				return nil, err
			}
			sec = &corev1.Secret{
				ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: s.Namespace, Labels: map[string]string{tokens.LabelSecretKind: "agent-api-pki"}},
				Type:       corev1.SecretTypeTLS,
				Data:       map[string][]byte{corev1.TLSCertKey: kp.Cert, corev1.TLSPrivateKeyKey: kp.Key},
			}
			err = s.Client.Create(ctx, sec)
			if apierrors.IsAlreadyExists(err) {
				lastErr = err
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("creating Secret %s/%s: %w", s.Namespace, name, err)
			}
			s.Log.Info("Created agent API key pair", "secret", name, "reason", "Missing")
			return kp, nil
		case err != nil:
			return nil, fmt.Errorf("reading Secret %s/%s: %w", s.Namespace, name, err)
		}
		existing := &pki.KeyPair{Cert: sec.Data[corev1.TLSCertKey], Key: sec.Data[corev1.TLSPrivateKeyKey]}
		kp, changed, err := ensure(existing)
		if err != nil {
			return nil, fmt.Errorf("key pair in Secret %s/%s: %w", s.Namespace, name, err)
		}
		if !changed {
			return kp, nil
		}
		sec.Data = map[string][]byte{corev1.TLSCertKey: kp.Cert, corev1.TLSPrivateKeyKey: kp.Key}
		err = s.Client.Update(ctx, sec)
		if apierrors.IsConflict(err) {
			lastErr = err
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("updating Secret %s/%s: %w", s.Namespace, name, err)
		}
		s.Log.Info("Renewed agent API key pair", "secret", name, "reason", "Reissued")
		return kp, nil
	}
	return nil, fmt.Errorf("the key pair in Secret %s/%s keeps changing: %w", s.Namespace, name, lastErr)
}

// ensurePKI creates or loads both CAs and the serving certificate. It may be called any number
// of times; the first success is kept, and a failure is retried by the next call.
func (s *Server) ensurePKI(ctx context.Context) error {
	s.pkiMu.Lock()
	defer s.pkiMu.Unlock()
	if s.agentCA != nil {
		return nil
	}
	if err := s.complete(); err != nil {
		return err
	}
	now := s.Now()
	agentKP, err := s.ensureKeyPairSecret(ctx, AgentCASecret, func(e *pki.KeyPair) (*pki.KeyPair, bool, error) {
		return pki.EnsureCA(e, pki.CARequest{CommonName: agentCACommonName}, now)
	})
	if err != nil {
		return fmt.Errorf("agent CA: %w", err)
	}
	agentCA, err := parseCAPair(agentKP)
	if err != nil {
		return fmt.Errorf("agent CA: %w", err)
	}
	servingKP, err := s.ensureKeyPairSecret(ctx, ServingCASecret, func(e *pki.KeyPair) (*pki.KeyPair, bool, error) {
		return pki.EnsureCA(e, pki.CARequest{CommonName: servingCACommonName}, now)
	})
	if err != nil {
		return fmt.Errorf("serving CA: %w", err)
	}
	servingCA, err := parseCAPair(servingKP)
	if err != nil {
		return fmt.Errorf("serving CA: %w", err)
	}
	s.agentCA, s.servingCA = agentCA, servingCA
	s.servingCAKP = servingKP
	return s.ensureServingCertLocked(ctx)
}

// ensureServingCert re-issues the serving certificate when its SANs changed or it nears expiry,
// and swaps it in for new connections.
func (s *Server) ensureServingCert(ctx context.Context) error {
	s.pkiMu.Lock()
	defer s.pkiMu.Unlock()
	return s.ensureServingCertLocked(ctx)
}

func (s *Server) ensureServingCertLocked(ctx context.Context) error {
	req := pki.CertRequest{Name: "agent-api", CommonName: servingCommonName, Usage: pki.UsageServer}
	for _, a := range s.Addresses {
		if ip := net.ParseIP(a); ip != nil {
			req.IPs = append(req.IPs, ip)
		} else {
			req.DNSNames = append(req.DNSNames, a)
		}
	}
	now := s.Now()
	kp, err := s.ensureKeyPairSecret(ctx, ServingCertSecret, func(e *pki.KeyPair) (*pki.KeyPair, bool, error) {
		return pki.EnsureCertificate(e, s.servingCAKP, req, now)
	})
	if err != nil {
		return fmt.Errorf("serving certificate: %w", err)
	}
	cert, err := tls.X509KeyPair(kp.Cert, kp.Key)
	if err != nil {
		return fmt.Errorf("serving certificate: %w", err)
	}
	s.serving.Store(&cert)
	return nil
}

// signAgentCert issues the client certificate of host for the key in csr. The subject is set
// here, never taken from the CSR.
func (s *Server) signAgentCert(csr *x509.CertificateRequest, ns, host string, uid types.UID) (certPEM []byte, serialHex string, err error) {
	ca := s.agentCA
	now := s.Now()
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, "", err
	}
	// Backdated for late clocks, but by at most a tenth of the validity: a short-lived
	// certificate is not born half used (agents renew at two thirds of the lifetime).
	notBefore := now.Add(-min(certBackdate, s.ClientCertValidity/10)).Truncate(time.Second)
	notAfter := now.Add(s.ClientCertValidity).Truncate(time.Second)
	if notAfter.After(ca.cert.NotAfter) {
		notAfter = ca.cert.NotAfter
	}
	usage := x509.KeyUsageDigitalSignature
	if _, ok := csr.PublicKey.(*rsa.PublicKey); ok {
		usage |= x509.KeyUsageKeyEncipherment
	}
	uidURI, err := url.Parse(hostUIDURIPrefix + string(uid))
	if err != nil {
		return nil, "", err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: Identity(ns, host), Organization: []string{protocol.IdentityOrganization}},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              usage,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		URIs:                  []*url.URL{uidURI},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, csr.PublicKey, ca.key)
	if err != nil {
		return nil, "", err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), serialString(serial), nil
}

// Identity is the CommonName of the client certificate of Host namespace/name.
func Identity(namespace, name string) string {
	return protocol.IdentityPrefix + namespace + "/" + name
}

// agentIdentity is who a verified client certificate speaks for.
type agentIdentity struct {
	Namespace string
	Host      string
	UID       types.UID
	// Serial is the presented certificate's serial number, serialString.
	Serial string
}

// serialString is how a certificate serial is recorded on a Host: lowercase hex.
func serialString(n *big.Int) string { return n.Text(16) }

// certificateAccepted says whether the certificate with this serial may speak for h: the last
// one issued to it or the one that replaced (a connection opened before a renewal still carries
// it). A Host with none recorded (registered before serials were) accepts any of its certificates.
func certificateAccepted(h *basaltv1.Host, serial string) bool {
	a := h.Status.Agent
	return a.CertificateSerial == "" || serial == a.CertificateSerial || serial == a.PreviousCertificateSerial
}

func (id agentIdentity) String() string { return id.Namespace + "/" + id.Host }

// errNoIdentity means the request carries no verified agent certificate.
var errNoIdentity = errors.New("a client certificate issued by the agent CA is required")

// identify returns the Host a request's verified client certificate speaks for. The TLS layer
// verified the chain to the agent CA (ClientCAs) and the clientAuth usage; this checks the
// subject. The identity comes from the certificate only, never from the request.
func identify(state *tls.ConnectionState) (agentIdentity, error) {
	if state == nil || len(state.VerifiedChains) == 0 || len(state.VerifiedChains[0]) == 0 {
		return agentIdentity{}, errNoIdentity
	}
	leaf := state.VerifiedChains[0][0]
	id, err := parseIdentity(leaf)
	if err != nil {
		return agentIdentity{}, fmt.Errorf("%w: %w", errNoIdentity, err)
	}
	return id, nil
}

func parseIdentity(cert *x509.Certificate) (agentIdentity, error) {
	if len(cert.Subject.Organization) != 1 || cert.Subject.Organization[0] != protocol.IdentityOrganization {
		return agentIdentity{}, fmt.Errorf("organization %q is not %q", cert.Subject.Organization, protocol.IdentityOrganization)
	}
	rest, ok := strings.CutPrefix(cert.Subject.CommonName, protocol.IdentityPrefix)
	if !ok {
		return agentIdentity{}, fmt.Errorf("common name does not start with %q", protocol.IdentityPrefix)
	}
	ns, host, ok := strings.Cut(rest, "/")
	if !ok || !validNamespace(ns) || !validName(host) {
		return agentIdentity{}, errors.New("common name does not name a Host")
	}
	id := agentIdentity{Namespace: ns, Host: host, Serial: serialString(cert.SerialNumber)}
	for _, u := range cert.URIs {
		if uid, ok := strings.CutPrefix(u.String(), hostUIDURIPrefix); ok {
			id.UID = types.UID(uid)
		}
	}
	if id.UID == "" {
		return agentIdentity{}, errors.New("no Host UID")
	}
	return id, nil
}
