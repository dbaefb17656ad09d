// Package setup wires Basalt's manager: the Cluster, Machine and Host reconcilers, the agent API
// with its artifact cache, the SSH provisioner and the PXE services. cmd/manager and the
// end-to-end suites call the same Setup, so what the tests run is what ships.
package setup

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/basalt-dev/basalt/agents/agentserver"
	"github.com/basalt-dev/basalt/agents/artifactcache"
	agentssh "github.com/basalt-dev/basalt/agents/ssh"
	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
	"github.com/basalt-dev/basalt/bootstrap/artifacts"
	"github.com/basalt-dev/basalt/controllers/artifactsource"
	clustercontroller "github.com/basalt-dev/basalt/controllers/cluster"
	"github.com/basalt-dev/basalt/controllers/etcdbackup"
	hostcontroller "github.com/basalt-dev/basalt/controllers/host"
	machinecontroller "github.com/basalt-dev/basalt/controllers/machine"
	"github.com/basalt-dev/basalt/controllers/metrics"
	"github.com/basalt-dev/basalt/controllers/topology"
	"github.com/basalt-dev/basalt/controllers/workload"
	"github.com/basalt-dev/basalt/pxe"
)

// Options configure the manager's parts.
type Options struct {
	// Namespace is the manager's own namespace: agent API CAs and bootstrap tokens live there.
	Namespace string
	// WatchNamespace, when set, is the one namespace the manager reconciles and caches
	// (--watch-namespace): the agent API watches Plans there only.
	WatchNamespace string

	// AgentAPIAddr is where the agent API listens, e.g. ":9443". Empty disables the agent API and
	// with it SSH provisioning.
	AgentAPIAddr string
	// AgentAPIAddresses are the IPs or DNS names agents reach the agent API at (its serving
	// certificate's SANs); the first one goes into bootstraps.
	AgentAPIAddresses []string
	// AgentCertValidity is how long an agent's client certificate is valid (agents renew it at
	// two thirds of that); default agentserver.DefaultClientCertValidity.
	AgentCertValidity time.Duration
	// AgentBinary is the path of the agent executable to install over SSH. Empty disables SSH
	// provisioning: SSH Hosts stay Registering and say why.
	AgentBinary string
	// RequirePinnedHostKeys refuses SSH Hosts whose spec.ssh.hostKeys is empty instead of trusting
	// the key they present on first contact.
	RequirePinnedHostKeys bool
	// ArtifactSets are artifact-set folders (hack/build-artifacts.sh output) the artifact cache
	// fetches from; the Machine controller builds Plans from their manifests.
	ArtifactSets []string
	// CacheDir is the artifact cache's folder; empty means artifactcache.DefaultCacheDir().
	CacheDir string
	// SnapshotDir holds etcd snapshots between a cluster's etcd and the backup store (one at a
	// time per Cluster being backed up, as large as that cluster's database); empty means
	// os.TempDir().
	SnapshotDir string
	// PXE, when set, runs the network boot services (DHCP, TFTP, HTTP boot) on the leader, with
	// the Host controller answering them; nil (the default) runs none.
	PXE *PXEOptions

	// ClusterConcurrency, MachineConcurrency and HostConcurrency bound reconciles at once.
	ClusterConcurrency, MachineConcurrency, HostConcurrency int
	// SkipNameValidation lets tests start several managers in one process.
	SkipNameValidation bool
}

// Parts are what Setup built, for callers that need them (tests store Plans through the server).
type Parts struct {
	// AgentAPI is the agent API server, nil when disabled.
	AgentAPI *agentserver.Server
	// Artifacts is the artifact cache, nil when the agent API is disabled.
	Artifacts *artifactcache.Cache
	// PXE is the network boot configuration, nil when PXE is off.
	PXE *pxe.Config
}

// Setup adds every controller and server to mgr.
func Setup(mgr ctrl.Manager, o Options) (*Parts, error) {
	parts := &Parts{}
	sets, err := artifacts.LoadSets(o.ArtifactSets...)
	if err != nil {
		return nil, err
	}
	var prov *hostcontroller.Provisioner
	var rootImage *hostcontroller.RootImage
	if o.AgentAPIAddr != "" {
		if o.Namespace == "" || len(o.AgentAPIAddresses) == 0 {
			return nil, errors.New("the agent API needs the manager's namespace and at least one address agents reach it at")
		}
		parts.Artifacts = &artifactcache.Cache{Dir: o.CacheDir, Log: ctrl.Log.WithName("artifacts")}
		if len(sets) > 0 {
			up := &artifactcache.DirUpstream{Sets: sets}
			parts.Artifacts.Upstream = up
			for _, m := range up.Manifests() {
				parts.Artifacts.RegisterManifest(m)
			}
		}
		if o.PXE != nil && o.PXE.RootImagePath != "" {
			img, err := hostcontroller.LoadRootImage(o.PXE.RootImagePath)
			if err != nil {
				return nil, err
			}
			rootImage = img
			parts.Artifacts.Upstream = &artifactcache.FileUpstream{Files: map[string]string{img.Ref.SHA256: img.Path}, Next: parts.Artifacts.Upstream}
			parts.Artifacts.Register(artifactcache.ArtifactRef{Name: img.Ref.Name, SHA256: img.Ref.SHA256, Size: img.Ref.Size})
		}
		parts.AgentAPI = &agentserver.Server{
			Addr:           o.AgentAPIAddr,
			Namespace:      o.Namespace,
			WatchNamespace: o.WatchNamespace,
			Addresses:      o.AgentAPIAddresses,
			Client:         mgr.GetClient(),
			APIReader:      mgr.GetAPIReader(),
			HostReader:     mgr.GetClient(),
			Config:         mgr.GetConfig(),
			Artifacts:      parts.Artifacts,
			Log:            ctrl.Log.WithName("agent-api"),

			ClientCertValidity: o.AgentCertValidity,
		}
		if err := mgr.Add(parts.AgentAPI); err != nil {
			return nil, err
		}
		if o.AgentBinary != "" {
			bin, err := agentssh.BinaryFromFile(o.AgentBinary, runtime.GOARCH)
			if err != nil {
				return nil, err
			}
			prov = &hostcontroller.Provisioner{
				Installer:    &agentssh.Installer{Log: ctrl.Log.WithName("ssh")},
				Bootstrapper: parts.AgentAPI,
				Agent:        bin,

				RequirePinnedHostKeys: o.RequirePinnedHostKeys,
			}
		}
	}

	opts := func(n int) controller.Options {
		c := controller.Options{MaxConcurrentReconciles: max(n, 1)}
		if o.SkipNameValidation {
			c.SkipNameValidation = ptr.To(true)
		}
		return c
	}
	workloads := &workload.Clients{Reader: mgr.GetAPIReader(), Alternates: apiServersOf(mgr.GetClient())}
	// One source of artifact sets for both controllers: the local sets, and Clusters' mirrors
	// whose artifacts the cache fetches (only with the agent API, which serves them).
	source := &artifactsource.Source{Sets: sets, Cache: parts.Artifacts}
	// A snapshot restore needs the agent API: the restoring agent fetches the snapshot from it.
	var stager clustercontroller.SnapshotStager
	if parts.Artifacts != nil {
		stager = &etcdbackup.Stager{APIReader: mgr.GetAPIReader(), Dir: o.SnapshotDir, Cache: parts.Artifacts}
	}
	if err := (&clustercontroller.Reconciler{
		Client:    mgr.GetClient(),
		APIReader: mgr.GetAPIReader(),
		Recorder:  mgr.GetEventRecorder("basalt-cluster"),
		Workload:  workloads,
		// An upgrade waits for the manager to have the new version's artifacts.
		Artifacts: source,
		Snapshots: stager,
	}).SetupWithManager(mgr, opts(o.ClusterConcurrency)); err != nil {
		return nil, fmt.Errorf("cluster controller: %w", err)
	}
	if err := (&machinecontroller.Reconciler{
		Client:    mgr.GetClient(),
		APIReader: mgr.GetAPIReader(),
		Recorder:  mgr.GetEventRecorder("basalt-machine"),
		Artifacts: source,
		Workload:  workloads,
	}).SetupWithManager(mgr, opts(o.MachineConcurrency)); err != nil {
		return nil, fmt.Errorf("machine controller: %w", err)
	}
	if err := (&hostcontroller.Reconciler{
		Client:      mgr.GetClient(),
		APIReader:   mgr.GetAPIReader(),
		Recorder:    mgr.GetEventRecorder("basalt-host"),
		Provisioner: prov,
		NetBoot:     o.PXE != nil,
		RootImage:   rootImage,
	}).SetupWithManager(mgr, opts(o.HostConcurrency)); err != nil {
		return nil, fmt.Errorf("host controller: %w", err)
	}
	// The objects' state as gauges, read from the cache at each scrape (controllers/metrics.State).
	// A second manager in one process (tests) keeps the first registration.
	if err := crmetrics.Registry.Register(&metrics.State{Reader: mgr.GetClient()}); err != nil {
		if are := (prometheus.AlreadyRegisteredError{}); !errors.As(err, &are) {
			return nil, fmt.Errorf("state metrics: %w", err)
		}
	}
	if err := (&etcdbackup.Reconciler{
		Client:    mgr.GetClient(),
		APIReader: mgr.GetAPIReader(),
		Recorder:  mgr.GetEventRecorder("basalt-etcdbackup"),
		TempDir:   o.SnapshotDir,
	}).SetupWithManager(mgr, opts(o.ClusterConcurrency)); err != nil {
		return nil, fmt.Errorf("etcd backup controller: %w", err)
	}
	if o.PXE != nil {
		if err := addPXE(mgr, o, parts); err != nil {
			return nil, err
		}
	}
	return parts, nil
}

// apiServersOf lists a Cluster's API servers (host:port) from the cache: its control-plane
// Machines that run kube-apiserver, at their Hosts' node addresses.
func apiServersOf(c client.Reader) func(ctx context.Context, namespace, name string) []string {
	return func(ctx context.Context, namespace, name string) []string {
		ml := &basaltv1.MachineList{}
		if err := c.List(ctx, ml, client.InNamespace(namespace), client.MatchingLabels{basaltv1.LabelClusterName: name}); err != nil {
			return nil
		}
		hl := &basaltv1.HostList{}
		if err := c.List(ctx, hl, client.InNamespace(namespace)); err != nil {
			return nil
		}
		return topology.APIServers(topology.Peers(ml.Items, hl.Items))
	}
}
