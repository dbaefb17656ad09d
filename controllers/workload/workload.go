// Package workload hands out clients of workload clusters, built from each Cluster's admin
// kubeconfig Secret and kept while the kubeconfig stays the same, so a reconcile does not open a
// new TLS connection to a workload API server each time.
package workload

import (
	"context"
	"crypto/sha256"
	"fmt"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

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
	return cfg, nil
}

// Forget drops the client of the Cluster with this UID (the Cluster is gone).
func (w *Clients) Forget(uid types.UID) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.cache, uid)
}
