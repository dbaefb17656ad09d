// Command manager runs Basalt's controllers: it reconciles Cluster, Machine and Host objects in
// the management cluster.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/basalt-dev/basalt/agents/agentserver"
	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
	"github.com/basalt-dev/basalt/controllers/setup"
)

func main() {
	var (
		metricsAddr, probeAddr, leaderNS            string
		secureMetrics, leaderElect                  bool
		qps                                         float64
		burst                                       int
		clusterWorkers, machineWorkers, hostWorkers int
		agentAddresses, artifactSets                string
		setupOpts                                   setup.Options
		pxeOpts                                     setup.PXEOptions
		pxeAgentArgs                                string
	)
	flag.StringVar(&metricsAddr, "metrics-bind-address", ":8443", "Address the metrics endpoint binds to; 0 disables it.")
	flag.BoolVar(&secureMetrics, "metrics-secure", true, "Serve metrics over HTTPS with authentication and authorization by the API server.")
	flag.StringVar(&probeAddr, "health-probe-bind-address", ":8081", "Address the liveness and readiness probes bind to.")
	flag.BoolVar(&leaderElect, "leader-elect", true, "Elect a leader so only one manager replica reconciles at a time.")
	flag.StringVar(&leaderNS, "leader-election-namespace", "", "Namespace of the leader election lease; defaults to the manager's namespace.")
	watchNS := flag.String("watch-namespace", "", "Reconcile only Clusters, Machines, Hosts and Secrets in this namespace (the Helm chart's namespaced mode); empty watches every namespace.")
	flag.Float64Var(&qps, "kube-api-qps", 50, "Queries per second to the management API server.")
	flag.IntVar(&burst, "kube-api-burst", 100, "Burst of queries to the management API server.")
	flag.IntVar(&clusterWorkers, "cluster-concurrency", 4, "Clusters reconciled at once.")
	flag.IntVar(&machineWorkers, "machine-concurrency", 10, "Machines reconciled at once.")
	flag.IntVar(&hostWorkers, "host-concurrency", 10, "Hosts reconciled at once.")
	flag.StringVar(&setupOpts.Namespace, "namespace", os.Getenv("POD_NAMESPACE"), "The manager's namespace: agent API CAs and bootstrap tokens live there (default $POD_NAMESPACE).")
	flag.StringVar(&setupOpts.AgentAPIAddr, "agent-api-bind-address", "", "Address the agent API (HTTPS, mTLS) listens on, e.g. :9443; empty disables it and SSH provisioning.")
	flag.StringVar(&agentAddresses, "agent-api-addresses", "", "Comma-separated IPs or DNS names hosts reach the agent API at; the first goes into bootstraps.")
	flag.DurationVar(&setupOpts.AgentCertValidity, "agent-cert-validity", agentserver.DefaultClientCertValidity, "How long an agent's client certificate is valid; agents renew theirs over mTLS at two thirds of it (at least 10m).")
	flag.StringVar(&setupOpts.AgentBinary, "agent-binary", "", "Path of the agent executable installed on SSH hosts; empty disables SSH provisioning.")
	flag.BoolVar(&setupOpts.RequirePinnedHostKeys, "ssh-require-pinned-host-keys", false, "Refuse SSH Hosts without spec.ssh.hostKeys instead of trusting the key they present on first contact.")
	flag.StringVar(&artifactSets, "artifact-sets", "", "Comma-separated artifact-set folders the artifact cache fetches from.")
	flag.StringVar(&setupOpts.CacheDir, "artifact-cache-dir", "", "Folder of the sha256-addressed artifact cache (default $BASALT_CACHE/agent-api/artifacts or /var/lib/basalt/cache).")
	flag.StringVar(&setupOpts.SnapshotDir, "snapshot-dir", "", "Folder that holds an etcd snapshot between a cluster's etcd and its backup store, as large as the largest cluster database (default the system temporary folder).")
	flag.StringVar(&pxeOpts.Interface, "pxe-interface", "", "Provisioning network interface the PXE services (DHCP, TFTP, HTTP boot) serve; empty disables PXE. Needs the agent API.")
	flag.StringVar(&pxeOpts.ServerIP, "pxe-server-ip", "", "The manager's IPv4 address on --pxe-interface (DHCP server identifier, TFTP next-server, default HTTP boot host).")
	flag.StringVar(&pxeOpts.DHCPMode, "pxe-dhcp-mode", setup.DHCPModeProxy, "proxy (beside the site's DHCP server), full (lease addresses: spec.boot.address, else --pxe-dhcp-pool) or off.")
	flag.StringVar(&pxeOpts.Pool, "pxe-dhcp-pool", "", "Full mode's pool for Hosts without spec.boot.address and discovered machines, FIRST-LAST/PREFIXLEN, e.g. 192.168.10.100-192.168.10.199/24.")
	flag.StringVar(&pxeOpts.PoolGateway, "pxe-dhcp-pool-gateway", "", "Default router handed out with pool addresses.")
	flag.BoolVar(&pxeOpts.Discovery, "pxe-discovery", false, "Make a Host (spec.accepted=false, label basalt.dev/discovered=true) for every netbooting machine whose MAC no Host has.")
	flag.StringVar(&pxeOpts.DiscoveryNamespace, "pxe-discovery-namespace", "", "Namespace of discovered Hosts (default --namespace).")
	flag.StringVar(&pxeOpts.TFTPRoot, "pxe-tftp-root", "/usr/lib/ipxe", "Folder of the iPXE binaries (Debian package ipxe) served over TFTP; - runs no TFTP.")
	flag.StringVar(&pxeOpts.KernelPath, "pxe-kernel", "", "Agent kernel (vmlinuz from make pxe-image).")
	flag.StringVar(&pxeOpts.InitramfsPath, "pxe-initramfs", "", "Agent initramfs (from make pxe-image).")
	flag.StringVar(&pxeOpts.RootImagePath, "pxe-root-image", "", "OS image written to the local disk of network-booted Hosts when they are provisioned, gzip-compressed: a whole-disk image with its own boot loader (disk.raw.gz of make os-image: the Host then boots from its disk) or an ext4 root filesystem (root.img.gz of make pxe-image: the Host keeps booting its kernel from the network); the format is read from the image. Empty: they run from the network.")
	flag.StringVar(&pxeOpts.HTTPAddr, "pxe-http-bind-address", "", "Address HTTP boot (iPXE scripts, kernel, initramfs) listens on (default <pxe-server-ip>:8080; :8080 listens on every interface). TFTP listens on <pxe-server-ip>:69.")
	flag.StringVar(&pxeOpts.HTTPBaseURL, "pxe-http-url", "", "URL hosts reach HTTP boot at (default http://<pxe-server-ip>:<port of --pxe-http-bind-address>).")
	flag.StringVar(&pxeAgentArgs, "pxe-agent-kernel-args", "", "Space-separated arguments appended to the agent's kernel command line.")
	zapOpts := zap.Options{Development: false}
	zapOpts.BindFlags(flag.CommandLine)
	flag.Parse()

	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))
	setupOpts.ClusterConcurrency, setupOpts.MachineConcurrency, setupOpts.HostConcurrency = clusterWorkers, machineWorkers, hostWorkers
	setupOpts.AgentAPIAddresses = splitList(agentAddresses)
	if setupOpts.AgentCertValidity < 10*time.Minute {
		fmt.Fprintf(os.Stderr, "--agent-cert-validity %s: at least 10m (agents renew at two thirds of it)\n", setupOpts.AgentCertValidity)
		os.Exit(2)
	}
	setupOpts.ArtifactSets = splitList(artifactSets)
	setupOpts.WatchNamespace = *watchNS
	if pxeOpts.Interface != "" {
		pxeOpts.AgentArgs = strings.Fields(pxeAgentArgs)
		setupOpts.PXE = &pxeOpts
	}
	log := ctrl.Log.WithName("setup")
	if setupOpts.PXE != nil && pxeOpts.Discovery && *watchNS != "" {
		// NetBoot reads Hosts through the cache, which sees only the watched namespace.
		if ns := pxeOpts.DiscoveryNamespace; ns != *watchNS && (ns != "" || setupOpts.Namespace != *watchNS) {
			log.Error(nil, "With --watch-namespace, discovered Hosts must go to the watched namespace: set --pxe-discovery-namespace", "watchNamespace", *watchNS)
			os.Exit(1)
		}
	}

	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(basaltv1.AddToScheme(scheme))

	cfg := ctrl.GetConfigOrDie()
	cfg.QPS = float32(qps)
	cfg.Burst = burst
	cfg.UserAgent = "basalt-manager"

	metricsOpts := metricsserver.Options{BindAddress: metricsAddr, SecureServing: secureMetrics}
	if secureMetrics {
		metricsOpts.FilterProvider = filters.WithAuthenticationAndAuthorization
	}
	// A namespaced manager caches, watches and so needs RBAC for one namespace only.
	var cacheOpts cache.Options
	if *watchNS != "" {
		cacheOpts.DefaultNamespaces = map[string]cache.Config{*watchNS: {}}
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Cache:                         cacheOpts,
		Scheme:                        scheme,
		Metrics:                       metricsOpts,
		HealthProbeBindAddress:        probeAddr,
		LeaderElection:                leaderElect,
		LeaderElectionID:              "basalt-manager.basalt.dev",
		LeaderElectionNamespace:       leaderNS,
		LeaderElectionReleaseOnCancel: true,
	})
	if err != nil {
		log.Error(err, "Unable to create the manager")
		os.Exit(1)
	}

	parts, err := setup.Setup(mgr, setupOpts)
	if err != nil {
		log.Error(err, "Unable to set up the controllers")
		os.Exit(1)
	}

	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		log.Error(err, "Unable to set up the health check")
		os.Exit(1)
	}
	// Ready once the informers' caches have synced (the controllers decide from them) and the
	// agent API serves (the agents, the PXE hosts and the artifact fetches need it).
	readyz := map[string]healthz.Checker{"cache": func(req *http.Request) error {
		ctx, cancel := context.WithTimeout(req.Context(), time.Second)
		defer cancel()
		if !mgr.GetCache().WaitForCacheSync(ctx) {
			return errors.New("the informer caches have not synced yet")
		}
		return nil
	}}
	if parts.AgentAPI != nil {
		readyz["agent-api"] = parts.AgentAPI.Ready
	}
	for name, check := range readyz {
		if err := mgr.AddReadyzCheck(name, check); err != nil {
			log.Error(err, "Unable to set up the ready check", "check", name)
			os.Exit(1)
		}
	}

	log.Info("Starting the manager")
	if err := mgr.Start(ctrl.SetupSignalHandler()); err != nil {
		log.Error(err, "The manager stopped with an error")
		os.Exit(1)
	}
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
