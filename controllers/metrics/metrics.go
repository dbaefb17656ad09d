// Package metrics records how long Basalt's operations take and how often objects change phase
// or run into errors, as Prometheus metrics in controller-runtime's registry (served by the
// manager's metrics endpoint next to controller-runtime's own workqueue and reconcile metrics).
//
// Each reconciler makes one call after its deferred status patch has succeeded:
//
//	metrics.ObserveCluster(before, c, now)
//	metrics.ObserveMachine(before, m, now)
//	metrics.ObserveHost(before, h, now)
//
// where before is a copy of the object as the reconcile read it. Every measurement is taken on a
// transition edge, before → after, and its duration is computed from timestamps stored in the
// object (metadata.creationTimestamp, a condition's lastTransitionTime), not from anything the
// manager remembers. That makes the numbers right across manager restarts and never double
// counted: the status patch carries the resourceVersion it read (controllers/patch), so a given
// edge is written by exactly one successful patch, and only a successful patch is observed. A
// reconcile that works from a stale cache gets a conflict instead, observes nothing, and its retry
// reads the object with the edge already taken.
//
// The one measurement with no stored start is host provisioning (Host has no timestamp for
// entering Provisioning): its start is remembered in memory when the Available → Provisioning
// edge is observed, and a provisioning that spans a manager restart is not observed (counted in
// basalt_metrics_observations_skipped_total) rather than observed wrong.
package metrics

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/types"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
)

// DurationBuckets are the histogram buckets of every operation duration, in seconds: from a
// second (an inspection of a Host whose agent is already there) to two hours (an upgrade of a
// large cluster); longer ones land in +Inf.
var DurationBuckets = []float64{1, 5, 10, 20, 30, 60, 90, 120, 180, 300, 450, 600, 900, 1200, 1800, 2700, 3600, 5400, 7200}

// Label values of the kind label.
const (
	KindCluster = "Cluster"
	KindMachine = "Machine"
	KindHost    = "Host"
)

// Operations, the values of the operation label of basalt_metrics_observations_skipped_total.
const (
	OpHostProvision  = "host_provision"
	OpClusterUpgrade = "cluster_upgrade"
)

// noPhase is the label value for an object that had no phase or state yet.
const noPhase = "None"

// Recorder holds the metrics and the little state a measurement without a stored start needs.
// The package functions use Default; tests make their own with NewRecorder.
type Recorder struct {
	hostInspect      *prometheus.HistogramVec
	hostProvision    *prometheus.HistogramVec
	machineProvision *prometheus.HistogramVec
	clusterReady     *prometheus.HistogramVec
	clusterUpgrade   *prometheus.HistogramVec
	transitions      *prometheus.CounterVec
	errors           *prometheus.CounterVec
	skipped          *prometheus.CounterVec

	mu sync.Mutex
	// provisionStart is when this process saw a Host enter Provisioning, by UID.
	provisionStart map[types.UID]time.Time
	// upgradeStart is the lastTransitionTime of a Cluster's UpToDate=False while it upgrades to
	// a version, by UID; a cache of a stored timestamp, filled again after a restart.
	upgradeStart map[types.UID]upgrade
}

type upgrade struct {
	to    string
	start time.Time
}

// NewRecorder returns a Recorder with fresh, unregistered metrics.
func NewRecorder() *Recorder {
	hist := func(subsystem, name, help string, labels ...string) *prometheus.HistogramVec {
		return prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "basalt", Subsystem: subsystem, Name: name, Help: help, Buckets: DurationBuckets,
		}, labels)
	}
	return &Recorder{
		hostInspect: hist("host", "inspect_duration_seconds",
			"Seconds from a Host's Inspected condition turning False (for a new Host: its first reconcile, before the agent is installed or PXE-booted) to the agent's hardware report turning it True, by access (ssh, pxe).", "access"),
		hostProvision: hist("host", "provision_duration_seconds",
			"Seconds a Host spent in Provisioning before it became Provisioned (0 when both happened in one reconcile), by access (ssh, pxe).", "access"),
		machineProvision: hist("machine", "provision_duration_seconds",
			"Seconds from a Machine's creation to its first Running phase (bound, Plan applied, node Ready), by role.", "role"),
		clusterReady: hist("cluster", "ready_duration_seconds",
			"Seconds from a Cluster's creation to the first time it was Ready."),
		clusterUpgrade: hist("cluster", "upgrade_duration_seconds",
			"Seconds from a Cluster's spec.version change (its UpToDate condition turning False) to status.version reaching it."),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "basalt", Name: "phase_transitions_total",
			Help: "Phase (Cluster, Machine) and state (Host) changes, by kind, from and to.",
		}, []string{"kind", "from", "to"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "basalt", Name: "errors_total",
			Help: "Conditions that turned False or Unknown with an error reason (see ErrorReasons), by kind, condition and reason.",
		}, []string{"kind", "condition", "reason"}),
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "basalt", Subsystem: "metrics", Name: "observations_skipped_total",
			Help: "Operation durations not observed because their start was unknown (a manager restart during the operation), by operation.",
		}, []string{"operation"}),
		provisionStart: map[types.UID]time.Time{},
		upgradeStart:   map[types.UID]upgrade{},
	}
}

// Collectors returns every metric of r, for registration.
func (r *Recorder) Collectors() []prometheus.Collector {
	return []prometheus.Collector{r.hostInspect, r.hostProvision, r.machineProvision, r.clusterReady, r.clusterUpgrade,
		r.transitions, r.errors, r.skipped}
}

// Default is the Recorder registered in controller-runtime's metrics registry.
var Default = NewRecorder()

func init() {
	crmetrics.Registry.MustRegister(Default.Collectors()...)
}

// ObserveCluster records what changed between before and after on Default. Call it once per
// reconcile, after the status patch that wrote after succeeded.
func ObserveCluster(before, after *basaltv1.Cluster, now time.Time) {
	Default.ObserveCluster(before, after, now)
}

// ObserveMachine records what changed between before and after on Default. Call it once per
// reconcile, after the status patch that wrote after succeeded.
func ObserveMachine(before, after *basaltv1.Machine, now time.Time) {
	Default.ObserveMachine(before, after, now)
}

// ObserveHost records what changed between before and after on Default. Call it once per
// reconcile, after the status patch that wrote after succeeded.
func ObserveHost(before, after *basaltv1.Host, now time.Time) {
	Default.ObserveHost(before, after, now)
}

// seconds is the duration from start to now in seconds; a negative one (the API server's clock,
// which stamps creationTimestamp, ahead of the manager's) counts as 0.
func seconds(start, now time.Time) float64 {
	d := now.Sub(start).Seconds()
	if d < 0 {
		return 0
	}
	return d
}

func phaseLabel[T ~string](p T) string {
	if p == "" {
		return noPhase
	}
	return string(p)
}
