// Command manager runs Basalt's controllers: it reconciles Cluster, Machine and Host objects in
// the management cluster.
package main

import (
	"flag"
	"os"

	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
	clustercontroller "github.com/basalt-dev/basalt/controllers/cluster"
	hostcontroller "github.com/basalt-dev/basalt/controllers/host"
	machinecontroller "github.com/basalt-dev/basalt/controllers/machine"
)

func main() {
	var (
		metricsAddr, probeAddr, leaderNS            string
		secureMetrics, leaderElect                  bool
		qps                                         float64
		burst                                       int
		clusterWorkers, machineWorkers, hostWorkers int
	)
	flag.StringVar(&metricsAddr, "metrics-bind-address", ":8443", "Address the metrics endpoint binds to; 0 disables it.")
	flag.BoolVar(&secureMetrics, "metrics-secure", true, "Serve metrics over HTTPS with authentication and authorization by the API server.")
	flag.StringVar(&probeAddr, "health-probe-bind-address", ":8081", "Address the liveness and readiness probes bind to.")
	flag.BoolVar(&leaderElect, "leader-elect", true, "Elect a leader so only one manager replica reconciles at a time.")
	flag.StringVar(&leaderNS, "leader-election-namespace", "", "Namespace of the leader election lease; defaults to the manager's namespace.")
	flag.Float64Var(&qps, "kube-api-qps", 50, "Queries per second to the management API server.")
	flag.IntVar(&burst, "kube-api-burst", 100, "Burst of queries to the management API server.")
	flag.IntVar(&clusterWorkers, "cluster-concurrency", 4, "Clusters reconciled at once.")
	flag.IntVar(&machineWorkers, "machine-concurrency", 10, "Machines reconciled at once.")
	flag.IntVar(&hostWorkers, "host-concurrency", 10, "Hosts reconciled at once.")
	zapOpts := zap.Options{Development: false}
	zapOpts.BindFlags(flag.CommandLine)
	flag.Parse()

	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))
	log := ctrl.Log.WithName("setup")

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
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
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

	if err := (&clustercontroller.Reconciler{
		Client:   mgr.GetClient(),
		Recorder: mgr.GetEventRecorder("basalt-cluster"),
	}).SetupWithManager(mgr, controller.Options{MaxConcurrentReconciles: clusterWorkers}); err != nil {
		log.Error(err, "Unable to set up the controller", "controller", "cluster")
		os.Exit(1)
	}
	if err := (&machinecontroller.Reconciler{
		Client:   mgr.GetClient(),
		Recorder: mgr.GetEventRecorder("basalt-machine"),
	}).SetupWithManager(mgr, controller.Options{MaxConcurrentReconciles: machineWorkers}); err != nil {
		log.Error(err, "Unable to set up the controller", "controller", "machine")
		os.Exit(1)
	}
	if err := (&hostcontroller.Reconciler{
		Client:    mgr.GetClient(),
		APIReader: mgr.GetAPIReader(),
		Recorder:  mgr.GetEventRecorder("basalt-host"),
	}).SetupWithManager(mgr, controller.Options{MaxConcurrentReconciles: hostWorkers}); err != nil {
		log.Error(err, "Unable to set up the controller", "controller", "host")
		os.Exit(1)
	}

	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		log.Error(err, "Unable to set up the health check")
		os.Exit(1)
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		log.Error(err, "Unable to set up the ready check")
		os.Exit(1)
	}

	log.Info("Starting the manager")
	if err := mgr.Start(ctrl.SetupSignalHandler()); err != nil {
		log.Error(err, "The manager stopped with an error")
		os.Exit(1)
	}
}
