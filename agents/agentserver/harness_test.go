package agentserver_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/basalt-dev/basalt/agents/agentserver"
	"github.com/basalt-dev/basalt/agents/protocol"
	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
	"github.com/basalt-dev/basalt/test/envtest"
)

// clock is a settable time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock                   { return &clock{t: time.Now()} }
func (c *clock) Now() time.Time          { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) { c.mu.Lock(); defer c.mu.Unlock(); c.t = c.t.Add(d) }

// harness is a Server on loopback against the envtest API server: the manager's namespace holds
// its PKI and tokens, hostNS the Hosts, Machines and Plans.
type harness struct {
	t      *testing.T
	env    *envtest.Env
	srv    *agentserver.Server
	clock  *clock
	url    string
	ca     *x509.CertPool
	hostNS string
}

// newHarness starts a Server; tweak adjusts it before it starts.
func newHarness(t *testing.T, tweak ...func(*agentserver.Server)) *harness {
	t.Helper()
	env := needEnv(t)
	clk := newClock()
	srv := &agentserver.Server{
		Namespace: env.Namespace(t),
		Addresses: []string{"127.0.0.1", "agents.basalt.test"},
		Client:    env.Client,
		Config:    env.Config,
		Now:       clk.Now,
	}
	for _, f := range tweak {
		f(srv)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Ready(nil); err == nil {
		t.Fatal("the agent API is ready before it serves")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve returned %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Errorf("Serve did not return after its context ended")
		}
	})
	envtest.Eventually(t, 30*time.Second, func() error { return srv.Ready(nil) })
	caPEM, err := srv.ServingCA(ctx)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	hostNS := srv.WatchNamespace // a namespaced server's Hosts live in the namespace it watches
	if hostNS == "" {
		hostNS = env.Namespace(t)
	}
	return &harness{t: t, env: env, srv: srv, clock: clk, url: "https://" + ln.Addr().String(), ca: pool, hostNS: hostNS}
}

// createHost creates an SSH Host in hostNS.
func (h *harness) createHost(name string) *basaltv1.Host {
	h.t.Helper()
	host := &basaltv1.Host{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: h.hostNS},
		Spec: basaltv1.HostSpec{SSH: &basaltv1.SSHSpec{
			Address: "10.0.0.1", PrivateKeySecretRef: basaltv1.SecretKeyReference{Name: "ssh", Key: "id"},
		}},
	}
	if err := h.env.Client.Create(context.Background(), host); err != nil {
		h.t.Fatalf("creating Host %s: %v", name, err)
	}
	return host
}

func (h *harness) getHost(name string) *basaltv1.Host {
	h.t.Helper()
	host := &basaltv1.Host{}
	if err := h.env.Client.Get(context.Background(), client.ObjectKey{Namespace: h.hostNS, Name: name}, host); err != nil {
		h.t.Fatal(err)
	}
	return host
}

// client returns an HTTPS client that trusts the serving CA and presents certs.
func (h *harness) client(certs ...tls.Certificate) *http.Client {
	return &http.Client{
		Timeout: 2 * time.Minute,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{
			RootCAs: h.ca, Certificates: certs, MinVersion: tls.VersionTLS13,
		}},
	}
}

// post sends body (a value to encode, or raw []byte) and returns the status and the answer.
func post(t testing.TB, c *http.Client, url string, body any) (int, []byte) {
	t.Helper()
	raw, ok := body.([]byte)
	if !ok {
		var err error
		if raw, err = json.Marshal(body); err != nil {
			t.Fatal(err)
		}
	}
	resp, err := c.Post(url, "application/json", bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// reply is the status and headers of an answer whose body was read and closed.
type reply struct {
	StatusCode int
	Header     http.Header
}

func get(t testing.TB, c *http.Client, url string, header ...string) (*reply, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return &reply{StatusCode: resp.StatusCode, Header: resp.Header}, b
}

// agent is a registered agent: its key, its certificate and a client that presents them.
type agent struct {
	key    *ecdsa.PrivateKey
	cert   *x509.Certificate
	pair   tls.Certificate
	client *http.Client
}

// csr returns a PEM CSR for key with a subject that the server must ignore.
func csr(t testing.TB, key any) []byte {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: "system:masters-wannabe", Organization: []string{"system:masters"}},
	}, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// register exchanges a new token of host for a certificate.
func (h *harness) register(host *basaltv1.Host) *agent {
	h.t.Helper()
	tok, err := h.srv.IssueToken(context.Background(), host)
	if err != nil {
		h.t.Fatal(err)
	}
	return h.registerWith(tok)
}

func (h *harness) registerWith(token string) *agent {
	h.t.Helper()
	key := newKey(h.t)
	code, body := post(h.t, h.client(), h.url+protocol.PathRegister, protocol.RegisterRequest{
		Token: token, CSR: csr(h.t, key), AgentVersion: "v0.1.0-test",
	})
	if code != http.StatusOK {
		h.t.Fatalf("register: %d %s", code, body)
	}
	var resp protocol.RegisterResponse
	if err := json.Unmarshal(body, &resp); err != nil {
		h.t.Fatal(err)
	}
	block, _ := pem.Decode(resp.Certificate)
	if block == nil {
		h.t.Fatalf("register returned no PEM certificate: %s", body)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		h.t.Fatal(err)
	}
	pair := tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: key, Leaf: cert}
	return &agent{key: key, cert: cert, pair: pair, client: h.client(pair)}
}

func eventually(t testing.TB, check func() error) { envtest.Eventually(t, 15*time.Second, check) }

// metricValue returns the value of the counter name with exactly these labels from
// controller-runtime's registry, 0 when it has not been written yet.
func metricValue(t testing.TB, name string, labels map[string]string) float64 {
	t.Helper()
	families, err := metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	next:
		for _, m := range f.GetMetric() {
			if len(m.GetLabel()) != len(labels) {
				continue
			}
			for _, l := range m.GetLabel() {
				if labels[l.GetName()] != l.GetValue() {
					continue next
				}
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			if h := m.GetHistogram(); h != nil {
				return float64(h.GetSampleCount())
			}
		}
	}
	return 0
}

// sleepBriefly gives goroutines that were just started time to reach a blocking point; tests use
// it only where being late cannot make them pass wrongly.
func sleepBriefly() { time.Sleep(300 * time.Millisecond) }
