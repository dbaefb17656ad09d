// Package workload hands out clients of workload clusters, built from each Cluster's admin
// kubeconfig Secret and kept while the kubeconfig stays the same, so a reconcile does not open a
// new TLS connection to a workload API server each time.
package workload

import (
	"context"
	"crypto/sha256"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
	"github.com/basalt-dev/basalt/controllers/pkisecrets"
)

// DefaultTimeout bounds every request to a workload API server.
const DefaultTimeout = 10 * time.Second

// Scheme knows the core Kubernetes types a workload cluster is asked about.
var Scheme = func() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	return s
}()

// Clients builds and keeps workload-cluster clients. The zero value is not usable: set Reader.
// It is safe for concurrent use.
type Clients struct {
	// Reader reads the kubeconfig Secrets, straight from the management API server.
	Reader client.Reader
	// New makes a client from a workload cluster's REST config; nil means client.New with Scheme.
	// Tests replace it to point every workload cluster at a test API server.
	New func(cfg *rest.Config) (client.Client, error)
	// Timeout bounds each request; zero means DefaultTimeout.
	Timeout time.Duration
	// RewriteConfig, when set, changes the configs RESTConfig returns. Tests point every
	// workload cluster at a test API server with it, as with New.
	RewriteConfig func(cfg *rest.Config) *rest.Config
	// Alternates, when set, lists the API servers (host:port) of the Cluster namespace/name. A
	// connection to the endpoint that cannot be made (a virtual IP no agent holds yet, or
	// whose holders are all gone; a default endpoint whose host is down) is made to them in
	// turn; the endpoint stays the TLS server name, which every API server's certificate carries.
	// Such a connection is closed after AlternateLifetime, so the endpoint is tried again.
	Alternates func(ctx context.Context, namespace, name string) []string
	// AlternateLifetime bounds a connection to an alternate; zero means a minute.
	AlternateLifetime time.Duration
	// ServerRewrite, when set, changes the configs ServerConfig returns (tests map node
	// addresses to test API servers).
	ServerRewrite func(cfg *rest.Config, addr string) *rest.Config

	mu    sync.Mutex
	cache map[types.UID]cached
}

type cached struct {
	sum [sha256.Size]byte
	c   client.Client
}

// For returns a client of c's workload cluster. It fails when the kubeconfig Secret is missing or
// unusable; it does not contact the workload API server.
func (w *Clients) For(ctx context.Context, c *basaltv1.Cluster) (client.Client, error) {
	kc, err := pkisecrets.Kubeconfig(ctx, w.Reader, c)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(kc)
	w.mu.Lock()
	defer w.mu.Unlock()
	if e, ok := w.cache[c.UID]; ok && e.sum == sum {
		return e.c, nil
	}
	cfg, err := w.restConfig(c, kc)
	if err != nil {
		return nil, err
	}
	NoEvictionRetry(cfg)
	newClient := w.New
	if newClient == nil {
		newClient = func(cfg *rest.Config) (client.Client, error) { return client.New(cfg, client.Options{Scheme: Scheme}) }
	}
	cl, err := newClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("a client of Cluster %s's API server: %w", c.Name, err)
	}
	if w.cache == nil {
		w.cache = map[types.UID]cached{}
	}
	w.cache[c.UID] = cached{sum: sum, c: cl}
	return cl, nil
}

// RESTConfig returns a REST config of c's workload cluster, from its admin kubeconfig, for
// clients other than controller-runtime's (the Helm SDK). It is not cached.
func (w *Clients) RESTConfig(ctx context.Context, c *basaltv1.Cluster) (*rest.Config, error) {
	kc, err := pkisecrets.Kubeconfig(ctx, w.Reader, c)
	if err != nil {
		return nil, err
	}
	cfg, err := w.restConfig(c, kc)
	if err != nil {
		return nil, err
	}
	if w.RewriteConfig != nil {
		cfg = w.RewriteConfig(cfg)
	}
	return cfg, nil
}

// ServerConfig returns a REST config of c's workload cluster aimed at one API server, addr
// ("host:port", a control-plane node's address: every API server certificate carries it), with
// the admin credentials and without alternates: for what only that server can answer (the
// configuration it runs).
func (w *Clients) ServerConfig(ctx context.Context, c *basaltv1.Cluster, addr string) (*rest.Config, error) {
	cfg, err := w.RESTConfig(ctx, c)
	if err != nil {
		return nil, err
	}
	cfg = rest.CopyConfig(cfg)
	cfg.Host, cfg.Dial = "https://"+addr, nil
	if w.ServerRewrite != nil {
		cfg = w.ServerRewrite(cfg, addr)
	}
	return cfg, nil
}

func (w *Clients) restConfig(c *basaltv1.Cluster, kubeconfig []byte) (*rest.Config, error) {
	cfg, err := clientcmd.RESTConfigFromKubeConfig(kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("the admin kubeconfig of Cluster %s: %w", c.Name, err)
	}
	cfg.Timeout = w.Timeout
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	cfg.UserAgent = "basalt-manager"
	if w.Alternates != nil {
		cfg.Dial = w.dialer(c.Namespace, c.Name)
	}
	return cfg, nil
}

// endpointDialTimeout bounds the connection to the endpoint before the alternates are tried.
const endpointDialTimeout = 3 * time.Second

// dialer connects to the endpoint, else to the first alternate that answers.
func (w *Clients) dialer(namespace, name string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	d := &net.Dialer{Timeout: endpointDialTimeout, KeepAlive: 30 * time.Second}
	life := w.AlternateLifetime
	if life <= 0 {
		life = time.Minute
	}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := d.DialContext(ctx, network, addr)
		if err == nil || ctx.Err() != nil {
			return conn, err
		}
		for _, alt := range w.Alternates(ctx, namespace, name) {
			if alt == addr {
				continue
			}
			ac, aerr := d.DialContext(ctx, network, alt)
			if aerr != nil {
				continue
			}
			alternateDials.Inc()
			t := time.AfterFunc(life, func() { _ = ac.Close() })
			return &timedConn{Conn: ac, timer: t}, nil
		}
		return nil, err
	}
}

// timedConn is a connection to an alternate, closed when its lifetime ends.
type timedConn struct {
	net.Conn
	timer *time.Timer
}

func (c *timedConn) Close() error {
	c.timer.Stop()
	return c.Conn.Close()
}

// Forget drops the client of the Cluster with this UID (the Cluster is gone).
func (w *Clients) Forget(uid types.UID) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.cache, uid)
}

// alternateDials counts connections made to an alternate because the endpoint did not answer.
var alternateDials = prometheus.NewCounter(prometheus.CounterOpts{
	Namespace: "basalt", Subsystem: "workload", Name: "alternate_dials_total",
	Help: "Connections to a workload API server made past the Cluster's endpoint (a virtual IP or host that did not answer).",
})

func init() { crmetrics.Registry.MustRegister(alternateDials) }
