package cluster_test

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"

	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/basalt-dev/basalt/agents/artifactcache"
	"github.com/basalt-dev/basalt/bootstrap/artifacts"
	"github.com/basalt-dev/basalt/controllers/artifactsource"
	"github.com/basalt-dev/basalt/controllers/cluster"
	"github.com/basalt-dev/basalt/controllers/etcdcluster/etcdfake"
	"github.com/basalt-dev/basalt/controllers/host"
	"github.com/basalt-dev/basalt/controllers/machine"
	"github.com/basalt-dev/basalt/controllers/workload"
	"github.com/basalt-dev/basalt/test/envtest"
)

var env *envtest.Env

func TestMain(m *testing.M) {
	envtest.Main(m, &env)
}

// harness is a running manager with the test doubles of the outside world: the workload
// clusters are the test API server itself (their Nodes live there), etcd is an etcdfake.Cluster, and the
// Cluster controller's clock can be moved.
type harness struct {
	etcd  *etcdfake.Cluster
	clock *testClock
	// artifacts is the manager's artifact cache, which fetches the artifacts of mirrors.
	artifacts *artifactcache.Cache
	// stager hands snapshots to restores.
	stager *fakeStager

	mu sync.Mutex
	// servers are the API server URLs of the workload kubeconfigs the controllers used.
	servers map[string]bool
}

func (h *harness) workloadServers() map[string]bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := map[string]bool{}
	for k := range h.servers {
		out[k] = true
	}
	return out
}

// startControllers runs all three controllers against env until the test ends, as the manager
// does, with the artifact set of v1.37.2 the tests run with. The manager sees namespace ns only,
// so the Clusters earlier tests left behind are not reconciled against this test's doubles.
func startControllers(t *testing.T, ns string) *harness {
	t.Helper()
	return startControllersWith(t, ns, artifactSets(t))
}

// startControllersWith is startControllers with the artifact sets given.
func startControllersWith(t *testing.T, ns string, sets artifacts.Sets) *harness {
	t.Helper()
	mgr, err := ctrl.NewManager(env.Config, ctrl.Options{
		Scheme:                 env.Scheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Cache:                  cache.Options{DefaultNamespaces: map[string]cache.Config{ns: {}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{etcd: &etcdfake.Cluster{}, clock: &testClock{}, servers: map[string]bool{},
		artifacts: &artifactcache.Cache{Dir: t.TempDir()}, stager: &fakeStager{}}
	// One source for both controllers, as the manager has.
	source := &artifactsource.Source{Sets: sets, Cache: h.artifacts}
	// The workload clusters are the test API server, reached with the settings Clients gives
	// every workload client (an eviction a budget refuses is returned, not retried).
	wcfg := rest.CopyConfig(env.Config)
	workload.NoEvictionRetry(wcfg)
	wclient, err := client.New(wcfg, client.Options{Scheme: env.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	workloads := &workload.Clients{Reader: mgr.GetAPIReader(), New: func(cfg *rest.Config) (client.Client, error) {
		h.mu.Lock()
		defer h.mu.Unlock()
		h.servers[cfg.Host] = true
		return wclient, nil
	}, RewriteConfig: func(*rest.Config) *rest.Config { return rest.CopyConfig(wcfg) },
		// A control-plane node's own API server is the test API server too (it runs no
		// encryption configuration, so a key rotation waits at its first step).
		ServerRewrite: func(*rest.Config, string) *rest.Config { return rest.CopyConfig(wcfg) }}
	opts := envtest.ControllerOptions()
	if err := (&cluster.Reconciler{
		Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Recorder: mgr.GetEventRecorder("basalt-cluster"),
		Workload: workloads, EtcdClient: h.etcd.Connect, Now: h.clock.Now, Artifacts: source, Snapshots: h.stager,
	}).SetupWithManager(mgr, opts); err != nil {
		t.Fatal(err)
	}
	if err := (&machine.Reconciler{
		Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Recorder: mgr.GetEventRecorder("basalt-machine"),
		Artifacts: source, Workload: workloads,
	}).SetupWithManager(mgr, opts); err != nil {
		t.Fatal(err)
	}
	// SSH provisioning is real up to the network: a Host still Registering gets its key read and a
	// bootstrap issued, and the connection is refused (refusingInstaller).
	prov := &host.Provisioner{Installer: refusingInstaller{}, Bootstrapper: fakeBootstrapper{}}
	if err := (&host.Reconciler{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Recorder: mgr.GetEventRecorder("basalt-host"),
		Provisioner: prov}).SetupWithManager(mgr, opts); err != nil {
		t.Fatal(err)
	}
	envtest.StartManager(t, mgr)
	setDNSReady(t, true)
	return h
}

// setDNSReady plays the kubelet and the EndpointSlice controller of the workload cluster (the
// test API server) for the CoreDNS add-on: with ready true a ready endpoint stands behind the
// kube-dns Service, as when a CoreDNS pod passed its readiness probe; with false it is not ready.
func setDNSReady(t *testing.T, ready bool) {
	t.Helper()
	ctx := context.Background()
	sl := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: metav1.NamespaceSystem, Name: "kube-dns-test",
			Labels: map[string]string{discoveryv1.LabelServiceName: "kube-dns"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"10.244.0.10"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(ready)}}},
	}
	err := env.Client.Create(ctx, sl.DeepCopy())
	if err == nil {
		return
	}
	if !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	got := &discoveryv1.EndpointSlice{}
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(sl), got); err != nil {
		t.Fatal(err)
	}
	got.Endpoints = sl.Endpoints
	if err := env.Client.Update(ctx, got); err != nil {
		t.Fatal(err)
	}
}

// artifactSets loads the artifact set next to the envtest binaries (KUBEBUILDER_ASSETS is its bin
// folder). Only its manifest is read.
func artifactSets(t *testing.T) artifacts.Sets {
	t.Helper()
	dir := filepath.Dir(os.Getenv("KUBEBUILDER_ASSETS"))
	sets, err := artifacts.LoadSets(dir)
	if err != nil {
		t.Fatalf("the artifact set of v1.37.2 is needed (run `hack/build-artifacts.sh v1.37.2` and set KUBEBUILDER_ASSETS to its bin folder): %v", err)
	}
	return sets
}
