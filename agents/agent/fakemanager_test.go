package agent

import (
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
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/basalt-dev/basalt/agents/protocol"
	"github.com/basalt-dev/basalt/bootstrap/plan"
)

// testCA signs certificates for the fake manager.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
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

func (ca *testCA) sign(t *testing.T, pub any, cn string, org []string, usage x509.ExtKeyUsage, ips []net.IP) []byte {
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn, Organization: org},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage}, IPAddresses: ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, pub, ca.key)
	if err != nil {
		t.Error(err)
		return nil
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// fakeManager speaks the agent protocol over real TLS on loopback: the serving certificate is
// signed by servingCA (what the bootstrap file pins); client certificates are issued by agentCA
// and required on every call but registration.
type fakeManager struct {
	t         *testing.T
	srv       *httptest.Server
	servingCA *testCA
	agentCA   *testCA
	namespace string
	host      string

	mu        sync.Mutex
	token     string
	tokenUsed bool
	registers int
	// serials are the serial numbers of the client certificates calls were made with.
	serials  []string
	plan     *plan.Plan
	hash     string
	changed  chan struct{}
	statuses []protocol.Status
	blobs    map[string][]byte
	fetches  map[string]int
	// hold, when set for a sha256, makes its download send half the bytes and wait for release.
	hold    map[string]chan struct{}
	holding chan string
}

func newFakeManager(t *testing.T) *fakeManager {
	t.Helper()
	m := &fakeManager{
		t: t, servingCA: newCA(t, "agent API serving CA"), agentCA: newCA(t, "agent client CA"),
		namespace: "default", host: "host-1", token: "abcdef.0123456789abcdef", changed: make(chan struct{}),
		blobs: map[string][]byte{}, fetches: map[string]int{}, hold: map[string]chan struct{}{}, holding: make(chan string, 4),
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	certPEM := m.servingCA.sign(t, &key.PublicKey, "basalt-agent-api", nil, x509.ExtKeyUsageServerAuth, []net.IP{net.ParseIP("127.0.0.1")})
	kb, _ := x509.MarshalECPrivateKey(key)
	pair, err := tls.X509KeyPair(certPEM, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(m.agentCA.pem)
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+protocol.PathRegister, m.register)
	mux.HandleFunc("GET "+protocol.PathPlan, m.authed(m.getPlan))
	mux.HandleFunc("POST "+protocol.PathStatus, m.authed(m.postStatus))
	mux.HandleFunc("POST "+protocol.PathRenew, m.authed(m.renew))
	mux.HandleFunc("GET "+protocol.PathArtifacts+"{sha}", m.authed(m.artifact))
	m.srv = httptest.NewUnstartedServer(mux)
	m.srv.TLS = &tls.Config{Certificates: []tls.Certificate{pair}, ClientCAs: pool, ClientAuth: tls.VerifyClientCertIfGiven}
	m.srv.StartTLS()
	t.Cleanup(m.srv.Close)
	return m
}

func (m *fakeManager) bootstrap() protocol.Bootstrap {
	return protocol.Bootstrap{Server: m.srv.URL, CA: m.servingCA.pem, Token: m.token}
}

func (m *fakeManager) register(w http.ResponseWriter, r *http.Request) {
	var req protocol.RegisterRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, protocol.MaxRequestBytes)).Decode(&req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.registers++
	if req.Token != m.token || m.tokenUsed {
		http.Error(w, "token invalid or used", http.StatusUnauthorized)
		return
	}
	cert, ok := m.signCSR(w, req.CSR)
	if !ok {
		return
	}
	m.tokenUsed = true
	_ = json.NewEncoder(w).Encode(protocol.RegisterResponse{Certificate: cert, Namespace: m.namespace, Host: m.host})
}

// authed requires a verified client certificate naming this host.
func (m *fakeManager) authed(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if len(r.TLS.VerifiedChains) == 0 || r.TLS.PeerCertificates[0].Subject.CommonName != protocol.IdentityPrefix+m.namespace+"/"+m.host {
			http.Error(w, "client certificate required", http.StatusUnauthorized)
			return
		}
		m.mu.Lock()
		m.serials = append(m.serials, r.TLS.PeerCertificates[0].SerialNumber.String())
		m.mu.Unlock()
		h(w, r)
	}
}

// renew signs a new certificate for the CSR's key, for the same host.
func (m *fakeManager) renew(w http.ResponseWriter, r *http.Request) {
	var req protocol.RenewRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, protocol.MaxRequestBytes)).Decode(&req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	cert, ok := m.signCSR(w, req.CSR)
	if !ok {
		return
	}
	_ = json.NewEncoder(w).Encode(protocol.RegisterResponse{Certificate: cert, Namespace: m.namespace, Host: m.host})
}

// signCSR signs the host's client certificate for the key of a PEM CSR, or answers 400.
func (m *fakeManager) signCSR(w http.ResponseWriter, csrPEM []byte) ([]byte, bool) {
	blk, _ := pem.Decode(csrPEM)
	if blk == nil {
		http.Error(w, "no CSR", http.StatusBadRequest)
		return nil, false
	}
	csr, err := x509.ParseCertificateRequest(blk.Bytes)
	if err != nil || csr.CheckSignature() != nil {
		http.Error(w, "bad CSR", http.StatusBadRequest)
		return nil, false
	}
	return m.agentCA.sign(m.t, csr.PublicKey, protocol.IdentityPrefix+m.namespace+"/"+m.host, []string{protocol.IdentityOrganization}, x509.ExtKeyUsageClientAuth, nil), true
}

// lastSerial is the serial of the client certificate of the latest authenticated call.
func (m *fakeManager) lastSerial() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.serials) == 0 {
		return ""
	}
	return m.serials[len(m.serials)-1]
}

// setPlan publishes a Plan; waiting long polls answer at once.
func (m *fakeManager) setPlan(p *plan.Plan) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.plan = p.DeepCopy()
	m.plan.Normalize()
	m.hash = m.plan.Hash()
	close(m.changed)
	m.changed = make(chan struct{})
	return m.hash
}

func (m *fakeManager) getPlan(w http.ResponseWriter, r *http.Request) {
	wait, err := time.ParseDuration(r.URL.Query().Get(protocol.QueryWait))
	if err != nil || wait > protocol.MaxPlanWait {
		http.Error(w, "bad wait", http.StatusBadRequest)
		return
	}
	have := r.URL.Query().Get(protocol.QueryHash)
	timeout := time.NewTimer(wait)
	defer timeout.Stop()
	for {
		m.mu.Lock()
		p, hash, changed := m.plan, m.hash, m.changed
		m.mu.Unlock()
		if p != nil && hash != have {
			w.Header().Set(protocol.HeaderPlanHash, hash)
			_ = json.NewEncoder(w).Encode(protocol.PlanResponse{Hash: hash, Plan: p})
			return
		}
		select {
		case <-changed:
		case <-timeout.C:
			w.WriteHeader(http.StatusNotModified)
			return
		case <-r.Context().Done():
			return
		}
	}
}

func (m *fakeManager) postStatus(w http.ResponseWriter, r *http.Request) {
	var st protocol.Status
	if err := json.NewDecoder(io.LimitReader(r.Body, protocol.MaxRequestBytes)).Decode(&st); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	m.mu.Lock()
	m.statuses = append(m.statuses, st)
	m.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// addBlob makes content available and returns its sha256.
func (m *fakeManager) addBlob(content []byte) string {
	h := sha256.Sum256(content)
	s := hex.EncodeToString(h[:])
	m.mu.Lock()
	m.blobs[s] = content
	m.mu.Unlock()
	return s
}

func (m *fakeManager) artifact(w http.ResponseWriter, r *http.Request) {
	sha := r.PathValue("sha")
	m.mu.Lock()
	b, ok := m.blobs[sha]
	m.fetches[sha]++
	hold := m.hold[sha]
	m.mu.Unlock()
	if !ok {
		http.NotFound(w, r)
		return
	}
	if hold != nil {
		_, _ = w.Write(b[:len(b)/2])
		w.(http.Flusher).Flush()
		m.holding <- sha
		select {
		case <-hold:
		case <-r.Context().Done():
			return
		}
		_, _ = w.Write(b[len(b)/2:])
		return
	}
	_, _ = w.Write(b)
}

// lastStatus returns the latest status matching f.
func (m *fakeManager) findStatus(f func(protocol.Status) bool) (protocol.Status, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := len(m.statuses) - 1; i >= 0; i-- {
		if f(m.statuses[i]) {
			return m.statuses[i], true
		}
	}
	return protocol.Status{}, false
}

func (m *fakeManager) registerCount() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.registers
}

func (m *fakeManager) fetchCount(sha string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.fetches[sha]
}

func stepsFailed(st protocol.Status) []string {
	var out []string
	for _, s := range st.Steps {
		if !s.OK {
			out = append(out, s.Step+": "+s.Error)
		}
	}
	return out
}

func hasStep(st protocol.Status, prefix string) (protocol.StepResult, bool) {
	for _, s := range st.Steps {
		if strings.HasPrefix(s.Step, prefix) {
			return s, true
		}
	}
	return protocol.StepResult{}, false
}

func sha(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}
