package agentserver

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/basalt-dev/basalt/agents/artifactcache"
	"github.com/basalt-dev/basalt/agents/planstore"
	"github.com/basalt-dev/basalt/agents/protocol"
	"github.com/basalt-dev/basalt/agents/tokens"
	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
	"github.com/basalt-dev/basalt/bootstrap/pki"
	"github.com/basalt-dev/basalt/bootstrap/plan"
)

// Defaults of Server.
const (
	// DefaultAddr is where the agent API listens.
	DefaultAddr = ":9443"
	// DefaultTokenGCInterval is how often expired bootstrap tokens are deleted.
	DefaultTokenGCInterval = 5 * time.Minute
	// DefaultClientCertValidity is how long an agent's client certificate is valid (1 year, like
	// the cluster's leaf certificates). Agents renew theirs at two thirds of it (PathRenew).
	DefaultClientCertValidity = pki.DefaultValidity
	// DefaultServingCertCheckInterval is how often the serving certificate is checked for renewal
	// (pki.DefaultRenewBefore before it expires) and for changed addresses.
	DefaultServingCertCheckInterval = time.Hour
	// DefaultStatusWriteInterval is how often a status report that changes nothing but the time
	// is written: lastSeen (and component probe times) are refreshed at most this often.
	DefaultStatusWriteInterval = 30 * time.Second
)

// QueryHost is an optional query parameter of /v1/plan and /v1/status: "<namespace>/<host>". The
// server never uses it to choose the Host, which always comes from the client certificate; when
// it is present and names another Host the request is refused with 403.
const QueryHost = "host"

// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=basalt.dev,resources=hosts;machines,verbs=get;list;watch
// +kubebuilder:rbac:groups=basalt.dev,resources=hosts/status;machines/status,verbs=get;update;patch

// Server is the manager-side agent API: HTTPS with mutual TLS for every call but registration.
// See the package documentation for the protocol and its security model.
//
// Fields must not change after the first method call. IssueToken, Bootstrap and ServingCA may be
// called before ListenAndServe (the PKI is created on first use).
type Server struct {
	// Addr is the TCP address to listen on. Default DefaultAddr.
	Addr string
	// Namespace is the manager's namespace: the CA, serving-certificate and bootstrap-token
	// Secrets live there. Required.
	Namespace string
	// WatchNamespace, when set, is the only namespace whose Plan Secrets are watched: a manager
	// limited to one namespace (--watch-namespace, the chart's namespaced mode) may not list
	// Secrets anywhere else, and a cluster-wide watch would never sync. Empty watches all.
	WatchNamespace string
	// Addresses are the IP addresses and DNS names agents reach the API at; they are the SANs of
	// the serving certificate. At least one is required.
	Addresses []string
	// URL is the base URL agents receive in their Bootstrap. Default
	// https://<Addresses[0]>:<port of Addr>.
	URL string

	// Client writes Secrets, Host and Machine status. Required.
	Client client.Client
	// APIReader reads what must not be stale: token and PKI Secrets, and the Hosts and Machines
	// a status report updates (the optimistic lock needs the latest resourceVersion). Use the
	// manager's GetAPIReader. Default Client.
	APIReader client.Reader
	// HostReader reads the caller's Host on every plan poll to check that it still exists with
	// the UID in the certificate; a cache-backed reader (the manager's GetClient) keeps polls off
	// the API server. Default Client.
	HostReader client.Reader
	// Config reaches the API server to watch Plan Secrets (only Secrets labelled
	// basalt.dev/secret=plan are cached). Required by ListenAndServe and Serve.
	Config *rest.Config

	// Artifacts serves /v1/artifacts/<sha256>. Artifacts of every stored Plan are registered with
	// it. nil answers 404 to every artifact request.
	Artifacts *artifactcache.Cache

	// TokenTTL is how long a bootstrap token is valid. Default tokens.DefaultTTL (15 minutes).
	TokenTTL time.Duration
	// TokenGCInterval is how often expired tokens are deleted. Default DefaultTokenGCInterval.
	TokenGCInterval time.Duration
	// ClientCertValidity is how long an agent certificate is valid, capped at the agent CA's
	// expiry. Default DefaultClientCertValidity.
	ClientCertValidity time.Duration
	// ServingCertCheckInterval is how often the serving certificate is checked for renewal.
	// Default DefaultServingCertCheckInterval.
	ServingCertCheckInterval time.Duration
	// StatusWriteInterval limits writes of reports that change only timestamps. Default
	// DefaultStatusWriteInterval.
	StatusWriteInterval time.Duration

	// Log receives the server's logs. Default ctrl.Log.WithName("agent-api").
	Log logr.Logger
	// Now is the clock. Default time.Now.
	Now func() time.Time

	initMu  sync.Mutex
	initErr error
	inited  bool
	tokens  *tokens.Store

	pkiMu       sync.Mutex
	agentCA     *caPair
	servingCA   *caPair
	servingCAKP *pki.KeyPair
	serving     atomic.Pointer[tls.Certificate]

	plans     notifier
	planCache cache.Cache
	// up is true while Serve serves (Ready).
	up atomic.Bool
}

// complete applies defaults and checks required fields, once.
func (s *Server) complete() error {
	s.initMu.Lock()
	defer s.initMu.Unlock()
	if s.inited {
		return s.initErr
	}
	var errs []error
	if s.Namespace == "" {
		errs = append(errs, errors.New("field Namespace is required"))
	}
	if s.Client == nil {
		errs = append(errs, errors.New("field Client is required"))
	}
	if len(s.Addresses) == 0 {
		errs = append(errs, errors.New("field Addresses needs at least one address agents reach the API at"))
	}
	for _, a := range s.Addresses {
		if net.ParseIP(a) == nil && len(validation.IsDNS1123Subdomain(a)) > 0 {
			errs = append(errs, fmt.Errorf("field Addresses: %q is neither an IP address nor a DNS name", a))
		}
	}
	if err := errors.Join(errs...); err != nil {
		// Leave inited false: a corrected Server may be tried again.
		return fmt.Errorf("agent API: %w", err)
	}
	if s.Addr == "" {
		s.Addr = DefaultAddr
	}
	if s.APIReader == nil {
		s.APIReader = s.Client
	}
	if s.HostReader == nil {
		s.HostReader = s.Client
	}
	if s.TokenGCInterval <= 0 {
		s.TokenGCInterval = DefaultTokenGCInterval
	}
	if s.ClientCertValidity <= 0 {
		s.ClientCertValidity = DefaultClientCertValidity
	}
	if s.ServingCertCheckInterval <= 0 {
		s.ServingCertCheckInterval = DefaultServingCertCheckInterval
	}
	if s.StatusWriteInterval <= 0 {
		s.StatusWriteInterval = DefaultStatusWriteInterval
	}
	if s.Log.GetSink() == nil {
		s.Log = ctrl.Log.WithName("agent-api")
	}
	if s.Now == nil {
		s.Now = time.Now
	}
	if s.URL == "" {
		_, port, err := net.SplitHostPort(s.Addr)
		if err != nil || port == "" || port == "0" {
			_, port, _ = net.SplitHostPort(DefaultAddr)
		}
		s.URL = "https://" + net.JoinHostPort(s.Addresses[0], port)
	}
	if s.Artifacts != nil && s.Artifacts.Log.GetSink() == nil {
		s.Artifacts.Log = s.Log.WithName("artifacts")
	}
	s.tokens = &tokens.Store{Client: s.Client, Reader: s.APIReader, Namespace: s.Namespace, TTL: s.TokenTTL, Now: s.Now}
	s.inited = true
	return nil
}

// IssueToken creates a one-time bootstrap token for host, valid for TokenTTL. See package tokens.
func (s *Server) IssueToken(ctx context.Context, host *basaltv1.Host) (string, error) {
	if err := s.complete(); err != nil {
		return "", err
	}
	return s.tokens.Issue(ctx, tokens.HostRef{Namespace: host.Namespace, Name: host.Name, UID: host.UID})
}

// RevokeTokens deletes every outstanding bootstrap token of host, e.g. when the SSH installer did
// not need the token it was given (InstallResult.BootstrapWritten false) or the Host is deleted.
func (s *Server) RevokeTokens(ctx context.Context, host *basaltv1.Host) error {
	if err := s.complete(); err != nil {
		return err
	}
	return s.tokens.Revoke(ctx, tokens.HostRef{Namespace: host.Namespace, Name: host.Name, UID: host.UID})
}

// ServingCA returns the PEM CA certificate agents pin, creating the PKI on first use.
func (s *Server) ServingCA(ctx context.Context) ([]byte, error) {
	if err := s.ensurePKI(ctx); err != nil {
		return nil, err
	}
	return s.servingCA.pem, nil
}

// Bootstrap returns everything an agent for host needs to register: the API's URL, the CA to pin
// and a new one-time token. The SSH installer writes it to protocol.BootstrapPath; PXE passes it
// on the kernel command line.
func (s *Server) Bootstrap(ctx context.Context, host *basaltv1.Host) (protocol.Bootstrap, error) {
	ca, err := s.ServingCA(ctx)
	if err != nil {
		return protocol.Bootstrap{}, err
	}
	tok, err := s.IssueToken(ctx, host)
	if err != nil {
		return protocol.Bootstrap{}, err
	}
	return protocol.Bootstrap{Server: s.URL, CA: ca, Token: tok}, nil
}

// Start runs the server until ctx ends; it makes Server a controller-runtime Runnable
// (mgr.Add(server)).
func (s *Server) Start(ctx context.Context) error { return s.ListenAndServe(ctx) }

// NeedLeaderElection is false: every manager replica serves agents.
func (s *Server) NeedLeaderElection() bool { return false }

// ListenAndServe listens on Addr and serves until ctx ends (see Serve).
func (s *Server) ListenAndServe(ctx context.Context) error {
	if err := s.complete(); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", s.Addr)
	if err != nil {
		return fmt.Errorf("agent API: %w", err)
	}
	return s.Serve(ctx, ln)
}

// Serve ensures the PKI (idempotently: existing CAs are kept), starts the Plan watch and
// serves HTTPS on ln until ctx ends. When ctx ends, the listener is closed, long polls return,
// and in-flight requests get a few seconds to finish. It also deletes expired tokens and renews
// the serving certificate in the background.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	defer func() { _ = ln.Close() }()
	if err := s.complete(); err != nil {
		return err
	}
	if s.Config == nil {
		return errors.New("agent API: Config is required to watch Plans")
	}
	if err := s.ensurePKI(ctx); err != nil {
		if ctx.Err() != nil {
			return nil // stopped while starting
		}
		return fmt.Errorf("agent API: %w", err)
	}
	g, gctx := errgroup.WithContext(ctx)
	if err := s.startPlanWatch(gctx, g); err != nil {
		werr := g.Wait()
		if ctx.Err() != nil {
			return nil // stopped while starting
		}
		return fmt.Errorf("agent API: watching Plans: %w", errors.Join(err, werr))
	}

	srv := &http.Server{
		Handler:           s.Handler(),
		TLSConfig:         s.tlsConfig(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		BaseContext:       func(net.Listener) context.Context { return gctx },
		ErrorLog:          log.New(logWriter{s.Log}, "", 0),
	}
	g.Go(func() error {
		if err := srv.ServeTLS(ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		shutdown, cancel := context.WithTimeout(context.WithoutCancel(gctx), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
		return nil
	})
	g.Go(func() error { s.every(gctx, s.TokenGCInterval, s.collectTokens); return nil })
	g.Go(func() error { s.every(gctx, s.ServingCertCheckInterval, s.renewServingCert); return nil })
	s.Log.Info("Serving the agent API", "address", ln.Addr().String(), "url", s.URL)
	s.up.Store(true)
	defer s.up.Store(false)
	return g.Wait()
}

// Ready is the manager's readiness check of the agent API (healthz.Checker): an error until
// Serve has its PKI, its Plan watch and its listener, and again once it stopped. A manager
// whose agents cannot reach it is not ready, so a rollout of the manager waits for it.
func (s *Server) Ready(*http.Request) error {
	if !s.up.Load() {
		return errors.New("the agent API is not serving yet (PKI, Plan watch, listener)")
	}
	return nil
}

func (s *Server) every(ctx context.Context, d time.Duration, f func(context.Context)) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			f(ctx)
		}
	}
}

func (s *Server) collectTokens(ctx context.Context) {
	n, err := s.tokens.CollectGarbage(ctx)
	if err != nil && ctx.Err() == nil {
		s.Log.Error(err, "Cannot delete expired bootstrap tokens")
	}
	if n > 0 {
		s.Log.V(1).Info("Deleted expired bootstrap tokens", "count", n, "reason", "Expired")
	}
}

func (s *Server) renewServingCert(ctx context.Context) {
	if err := s.ensureServingCert(ctx); err != nil && ctx.Err() == nil {
		s.Log.Error(err, "Cannot renew the serving certificate")
	}
}

// tlsConfig asks for a client certificate but does not require one (registration has none); the
// handlers decide. A certificate that is given must chain to the agent CA with clientAuth usage.
func (s *Server) tlsConfig() *tls.Config {
	pool := x509.NewCertPool()
	pool.AddCert(s.agentCA.cert)
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		ClientAuth: tls.VerifyClientCertIfGiven,
		ClientCAs:  pool,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return s.serving.Load(), nil
		},
	}
}

// Handler returns the API's HTTP handler, instrumented. It expects requests over the TLS
// configuration Serve uses.
func (s *Server) Handler() http.Handler {
	if err := s.complete(); err != nil {
		return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, "the agent API is misconfigured", http.StatusServiceUnavailable)
		})
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+protocol.PathRegister, s.handleRegister)
	mux.HandleFunc("GET "+protocol.PathPlan, s.handlePlan)
	mux.HandleFunc("POST "+protocol.PathStatus, s.handleStatus)
	mux.HandleFunc("POST "+protocol.PathRenew, s.handleRenew)
	mux.HandleFunc("GET "+protocol.PathArtifacts+"{digest}", s.handleArtifact)
	return instrument(mux)
}

// startPlanWatch starts an informer on Plan Secrets (only those, by label) in every namespace,
// or in WatchNamespace. A change wakes the long polls of its Host and registers the Plan's
// artifacts with the cache.
func (s *Server) startPlanWatch(ctx context.Context, g *errgroup.Group) error {
	opts := cache.Options{
		ByObject: map[client.Object]cache.ByObject{
			&corev1.Secret{}: {Label: labels.SelectorFromSet(labels.Set{planstore.LabelSecretKind: planstore.KindPlan})},
		},
	}
	if s.WatchNamespace != "" {
		opts.DefaultNamespaces = map[string]cache.Config{s.WatchNamespace: {}}
	}
	c, err := cache.New(s.Config, opts)
	if err != nil {
		return err
	}
	inf, err := c.GetInformer(ctx, &corev1.Secret{})
	if err != nil {
		return err
	}
	if _, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { s.onPlanEvent(o, false) },
		UpdateFunc: func(_, o any) { s.onPlanEvent(o, false) },
		DeleteFunc: func(o any) { s.onPlanEvent(o, true) },
	}); err != nil {
		return err
	}
	g.Go(func() error { return c.Start(ctx) })
	if !c.WaitForCacheSync(ctx) {
		return errors.New("the Plan cache did not sync")
	}
	s.planCache = c
	return nil
}

func (s *Server) onPlanEvent(o any, deleted bool) {
	if d, ok := o.(toolscache.DeletedFinalStateUnknown); ok {
		o = d.Obj
	}
	sec, ok := o.(*corev1.Secret)
	if !ok || sec.Type != planstore.PlanSecretType {
		return
	}
	host := sec.Annotations[planstore.AnnotationHost]
	if host == "" {
		return
	}
	if !deleted && s.Artifacts != nil {
		p := &plan.Plan{}
		if err := json.Unmarshal(sec.Data[planstore.PlanKey], p); err == nil {
			for _, a := range p.Artifacts {
				s.Artifacts.Register(artifactcache.ArtifactRef{Name: a.Name, SHA256: a.SHA256, Size: a.Size,
					Private: strings.HasPrefix(a.Name, plan.PrivateArtifactPrefix)})
			}
		}
	}
	s.plans.notify(sec.Namespace + "/" + host)
}

// logWriter sends net/http's own messages (TLS handshake failures, ...) to the logger at V(1).
type logWriter struct{ l logr.Logger }

func (w logWriter) Write(p []byte) (int, error) {
	msg := strings.TrimSpace(string(p))
	if msg != "" {
		w.l.V(1).Info("HTTP server", "message", msg)
	}
	return len(p), nil
}
