package agent

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/basalt-dev/basalt/agents/apply"
	"github.com/basalt-dev/basalt/agents/protocol"
)

// Files of the agent's identity in the state folder.
const (
	// KeyFile is the agent's ECDSA P-256 private key (mode 0600); it never leaves the host.
	KeyFile = "agent.key"
	// CertFile is the client certificate registration returned. It is written last, so its
	// presence means the agent is registered (protocol.CertFile, which the SSH installer checks).
	CertFile = "agent.crt"
	// CAFile is the pinned CA of the manager's agent API.
	CAFile = "ca.crt"
	// IdentityFile names the server and the Host.
	IdentityFile = "identity.json"
)

// Identity is who the agent is and how it reaches the manager.
type Identity struct {
	// Server is the base URL of the agent API.
	Server string `json:"server"`
	// Namespace and Host name the Host the agent speaks for.
	Namespace string `json:"namespace"`
	Host      string `json:"host"`
	// TokenSHA256 is the sha256 of the bootstrap token used, to tell a leftover bootstrap file
	// (same token, burnt) from a new one (the host is being registered again).
	TokenSHA256 string `json:"tokenSHA256,omitempty"`

	// TLS is the mutual-TLS client configuration: the pinned CA as the only root, the agent's
	// current certificate as client certificate (Renew replaces it).
	TLS *tls.Config `json:"-"`

	// cert is the current client certificate; copies of the Identity share it.
	cert *atomic.Pointer[tls.Certificate]
}

// Certificate is the agent's current client certificate, parsed.
func (id *Identity) Certificate() *x509.Certificate { return id.cert.Load().Leaf }

// RenewAt is when the current certificate is due for renewal: protocol.RenewFraction of its
// lifetime after it became valid.
func (id *Identity) RenewAt() time.Time {
	leaf := id.Certificate()
	return leaf.NotBefore.Add(time.Duration(float64(leaf.NotAfter.Sub(leaf.NotBefore)) * protocol.RenewFraction))
}

// ErrNotBootstrapped is returned when the agent is neither registered nor has a bootstrap file.
var ErrNotBootstrapped = errors.New("agent: not registered and no bootstrap file")

// PermanentError marks an error that retrying will not fix (a refused token).
type PermanentError struct{ Err error }

func (e *PermanentError) Error() string { return e.Err.Error() }
func (e *PermanentError) Unwrap() error { return e.Err }

// EnsureIdentity returns the agent's identity, registering first if needed: it reads the
// bootstrap file, creates (or reuses) the private key in stateDir, sends a CSR with the one-time
// token to the manager over HTTPS that trusts only the bootstrap CA, stores the certificate, the
// CA and the identity, and deletes the bootstrap file (the token is burnt). An agent that is
// registered already skips all of it, unless a bootstrap file with another token appears: then
// the host is registered again with a new key.
//
// Crash safety: the key is written before the request, and the certificate after the CA and the
// identity file, so a crash before the answer is stored retries with the same key; a crash after
// it finds the identity and only deletes the bootstrap file. A crash between the manager signing
// and the agent storing the certificate leaves a burnt token: the Host then needs a new token.
func EnsureIdentity(ctx context.Context, stateDir, bootstrapPath, version string) (*Identity, error) {
	id, idErr := LoadIdentity(stateDir)
	b, err := os.ReadFile(bootstrapPath)
	if idErr != nil && !errors.Is(idErr, fs.ErrNotExist) {
		if err != nil {
			return nil, idErr
		}
		// An identity that cannot be loaded (a damaged certificate or key) and a bootstrap file
		// (the installer saw the same and wrote a new token): register again.
		id = nil
		for _, f := range []string{CertFile, IdentityFile, KeyFile, CAFile, nextKeyFile, nextCertFile} {
			if rerr := os.Remove(filepath.Join(stateDir, f)); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
				return nil, rerr
			}
		}
	}
	switch {
	case errors.Is(err, fs.ErrNotExist) && id != nil:
		return id, nil
	case errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("%w at %s", ErrNotBootstrapped, bootstrapPath)
	case err != nil:
		return nil, err
	}
	var boot protocol.Bootstrap
	if err := json.Unmarshal(b, &boot); err != nil {
		if id != nil {
			// Registered already: a damaged bootstrap file must not stop the agent.
			return id, nil
		}
		return nil, &PermanentError{fmt.Errorf("agent: bootstrap file %s: %w", bootstrapPath, err)}
	}
	if id != nil {
		if id.TokenSHA256 == tokenSum(boot.Token) {
			// Registered with this token already: the file outlived a crash. The token is burnt.
			if err := os.Remove(bootstrapPath); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("agent: removing the used bootstrap file: %w", err)
			}
			return id, nil
		}
		// A new token: the host is being registered again (reinstalled, or moved to another
		// manager). Forget the old identity, marker first, and register with a new key.
		for _, f := range []string{CertFile, IdentityFile, KeyFile, CAFile} {
			if err := os.Remove(filepath.Join(stateDir, f)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return nil, err
			}
		}
	}
	if err := checkServer(boot.Server); err != nil {
		return nil, &PermanentError{err}
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(boot.CA) {
		return nil, &PermanentError{fmt.Errorf("agent: bootstrap file %s: ca holds no PEM certificate", bootstrapPath)}
	}
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return nil, err
	}
	key, err := loadOrCreateKey(filepath.Join(stateDir, KeyFile))
	if err != nil {
		return nil, err
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "basalt-agent"}}, key)
	if err != nil {
		return nil, err
	}
	req := protocol.RegisterRequest{
		Token:        boot.Token,
		CSR:          pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr}),
		AgentVersion: version,
	}
	resp, err := register(ctx, boot.Server, pool, req)
	if err != nil {
		return nil, err
	}
	certPEM := resp.Certificate
	if err := checkCertificate(certPEM, key, resp); err != nil {
		return nil, err
	}
	stored := Identity{Server: boot.Server, Namespace: resp.Namespace, Host: resp.Host, TokenSHA256: tokenSum(boot.Token)}
	idJSON, _ := json.MarshalIndent(stored, "", "  ")
	for _, f := range []struct {
		name string
		data []byte
	}{{CAFile, boot.CA}, {IdentityFile, append(idJSON, '\n')}, {CertFile, certPEM}} {
		if err := apply.WriteFile(filepath.Join(stateDir, f.name), f.data, 0o600); err != nil {
			return nil, err
		}
	}
	if err := os.Remove(bootstrapPath); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("agent: removing the used bootstrap file: %w", err)
	}
	return LoadIdentity(stateDir)
}

func tokenSum(token string) string {
	h := sha256.Sum256([]byte(token))
	return hex.EncodeToString(h[:])
}

// LoadIdentity reads a stored identity; fs.ErrNotExist when the agent is not registered (no
// certificate).
func LoadIdentity(stateDir string) (*Identity, error) {
	if _, err := os.Stat(filepath.Join(stateDir, CertFile)); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(filepath.Join(stateDir, IdentityFile))
	if err != nil {
		return nil, fmt.Errorf("agent: registered (%s exists) but %s is unreadable (%s); remove %s to register again",
			CertFile, IdentityFile, err.Error(), CertFile)
	}
	var id Identity
	if err := json.Unmarshal(b, &id); err != nil {
		return nil, fmt.Errorf("agent: %s: %w", IdentityFile, err)
	}
	pair, err := loadKeyPair(stateDir)
	if err != nil {
		return nil, fmt.Errorf("agent: client certificate: %w", err)
	}
	caPEM, err := os.ReadFile(filepath.Join(stateDir, CAFile))
	if err != nil {
		return nil, fmt.Errorf("agent: pinned CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("agent: %s holds no PEM certificate", CAFile)
	}
	id.cert = &atomic.Pointer[tls.Certificate]{}
	id.cert.Store(pair)
	cur := id.cert
	id.TLS = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cur.Load(), nil }}
	return &id, nil
}

// Files of a renewal in progress: the new key and certificate, renamed over KeyFile and
// CertFile once both are written.
const (
	nextKeyFile  = KeyFile + ".next"
	nextCertFile = CertFile + ".next"
)

// loadKeyPair loads the agent's certificate and key, finishing a renewal a crash interrupted:
// the key is renamed into place before the certificate, so a key that does not match the
// certificate is matched by the next certificate, which is then renamed too.
func loadKeyPair(stateDir string) (*tls.Certificate, error) {
	cert, key := filepath.Join(stateDir, CertFile), filepath.Join(stateDir, KeyFile)
	pair, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		next := filepath.Join(stateDir, nextCertFile)
		if p, nerr := tls.LoadX509KeyPair(next, key); nerr == nil {
			if rerr := os.Rename(next, cert); rerr != nil {
				return nil, rerr
			}
			pair, err = p, nil
		}
	}
	if err != nil {
		return nil, err
	}
	// Leftovers of a renewal that did not get its certificate.
	for _, f := range []string{nextKeyFile, nextCertFile} {
		_ = os.Remove(filepath.Join(stateDir, f))
	}
	return &pair, nil
}

// Renew replaces the agent's certificate with one for a new key, signed by the manager for the
// same Host over mutual TLS with the current certificate (protocol.PathRenew). The new key and
// certificate are written beside the current ones and renamed over them key first; a crash at
// any point leaves the old pair, or a state loadKeyPair completes.
func (id *Identity) Renew(ctx context.Context, stateDir string, c *Client) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
	if err := apply.WriteFile(filepath.Join(stateDir, nextKeyFile), keyPEM, 0o600); err != nil {
		return err
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "basalt-agent"}}, key)
	if err != nil {
		return err
	}
	resp, err := c.Renew(ctx, protocol.RenewRequest{CSR: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr})})
	if err != nil {
		return err
	}
	if resp.Namespace != id.Namespace || resp.Host != id.Host {
		return fmt.Errorf("agent: renew: the answer names %s/%s, this agent is %s/%s", resp.Namespace, resp.Host, id.Namespace, id.Host)
	}
	if err := checkCertificate(resp.Certificate, key, resp); err != nil {
		return err
	}
	pair, err := tls.X509KeyPair(resp.Certificate, keyPEM)
	if err != nil {
		return err
	}
	if err := apply.WriteFile(filepath.Join(stateDir, nextCertFile), resp.Certificate, 0o600); err != nil {
		return err
	}
	if err := os.Rename(filepath.Join(stateDir, nextKeyFile), filepath.Join(stateDir, KeyFile)); err != nil {
		return err
	}
	if err := os.Rename(filepath.Join(stateDir, nextCertFile), filepath.Join(stateDir, CertFile)); err != nil {
		return err
	}
	id.cert.Store(&pair)
	c.CloseIdleConnections()
	return nil
}

func checkServer(s string) error {
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "https" || u.Host == "" || (u.Path != "" && u.Path != "/") {
		return fmt.Errorf("agent: bootstrap server %q must be https://host[:port]", s)
	}
	return nil
}

func loadOrCreateKey(path string) (*ecdsa.PrivateKey, error) {
	if b, err := os.ReadFile(path); err == nil {
		blk, _ := pem.Decode(b)
		if blk == nil {
			return nil, fmt.Errorf("agent: %s holds no PEM key", path)
		}
		return x509.ParseECPrivateKey(blk.Bytes)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	if err := apply.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return nil, err
	}
	return key, nil
}

// register sends the CSR over TLS that trusts only the bootstrap CA (no system roots).
func register(ctx context.Context, server string, ca *x509.CertPool, req protocol.RegisterRequest) (*protocol.RegisterResponse, error) {
	body, _ := json.Marshal(req)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca, MinVersion: tls.VersionTLS12}, Proxy: nil}
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(server, "/")+protocol.PathRegister, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	hreq.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Transport: tr}).Do(hreq)
	if err != nil {
		return nil, fmt.Errorf("agent: register: %w", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, protocol.MaxRequestBytes))
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusCreated {
		err := fmt.Errorf("agent: register: %s: %s", resp.Status, strings.TrimSpace(string(b)))
		if resp.StatusCode >= 400 && resp.StatusCode < 500 && resp.StatusCode != http.StatusTooManyRequests {
			return nil, &PermanentError{err}
		}
		return nil, err
	}
	var out protocol.RegisterResponse
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("agent: register: answer: %w", err)
	}
	return &out, nil
}

// checkCertificate checks that the returned certificate is for the agent's key and names the
// Host the answer names.
func checkCertificate(certPEM []byte, key *ecdsa.PrivateKey, resp *protocol.RegisterResponse) error {
	blk, _ := pem.Decode(certPEM)
	if blk == nil {
		return errors.New("agent: register: the answer holds no PEM certificate")
	}
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return fmt.Errorf("agent: register: %w", err)
	}
	if pub, ok := cert.PublicKey.(*ecdsa.PublicKey); !ok || !pub.Equal(&key.PublicKey) {
		return errors.New("agent: register: the certificate is not for this agent's key")
	}
	if want := protocol.IdentityPrefix + resp.Namespace + "/" + resp.Host; resp.Host == "" || cert.Subject.CommonName != want {
		return fmt.Errorf("agent: register: certificate names %q, the answer %q", cert.Subject.CommonName, want)
	}
	return nil
}
