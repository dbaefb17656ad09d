package metrics

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// histogram returns the sample count and sum of the histogram name with the given label values
// (in the order of its label names), gathered through a registry as Prometheus would scrape it.
func histogram(t *testing.T, r *Recorder, name string, labels ...string) (uint64, float64) {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(r.Collectors()...)
	fams, err := reg.Gather()
	if err != nil {
		t.Fatalf("gathering: %v", err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			if labelValues(m) == strings.Join(labels, ",") {
				return m.GetHistogram().GetSampleCount(), m.GetHistogram().GetSampleSum()
			}
		}
	}
	return 0, 0
}

func labelValues(m *dto.Metric) string {
	var v []string
	for _, l := range m.GetLabel() {
		v = append(v, l.GetValue())
	}
	return strings.Join(v, ",")
}

func host(state basaltv1.HostState) *basaltv1.Host {
	return &basaltv1.Host{
		ObjectMeta: metav1.ObjectMeta{Name: "h1", UID: types.UID("host-1"), CreationTimestamp: metav1.NewTime(t0)},
		Spec:       basaltv1.HostSpec{SSH: &basaltv1.SSHSpec{Address: "10.0.0.1"}},
		Status:     basaltv1.HostStatus{State: state},
	}
}

// inspected is host(state) with the Inspected condition set to s since at.
func inspected(state basaltv1.HostState, s metav1.ConditionStatus, at time.Time) *basaltv1.Host {
	h := host(state)
	h.Status.Conditions = []metav1.Condition{{Type: basaltv1.HostInspected, Status: s, Reason: "X", LastTransitionTime: metav1.NewTime(at)}}
	return h
}

func TestHostInspectFromInspectedFalseToTrue(t *testing.T) {
	f, tr := metav1.ConditionFalse, metav1.ConditionTrue
	r := NewRecorder()
	first := t0.Add(2 * time.Second) // the first reconcile, just after creation
	r.ObserveHost(host(""), inspected(basaltv1.HostStateRegistering, f, first), first)
	r.ObserveHost(inspected(basaltv1.HostStateRegistering, f, first), inspected(basaltv1.HostStateInspecting, f, first), t0.Add(40*time.Second))
	r.ObserveHost(inspected(basaltv1.HostStateInspecting, f, first), inspected(basaltv1.HostStateAvailable, tr, t0.Add(92*time.Second)), t0.Add(92*time.Second))
	// Later reconciles see Inspected True → True: nothing more to observe.
	r.ObserveHost(inspected(basaltv1.HostStateAvailable, tr, t0.Add(92*time.Second)), inspected(basaltv1.HostStateAvailable, tr, t0.Add(92*time.Second)), t0.Add(10*time.Minute))
	n, sum := histogram(t, r, "basalt_host_inspect_duration_seconds", "ssh")
	if n != 1 || sum != 90 {
		t.Fatalf("inspect histogram: %d samples, sum %v; want 1 sample of 90s", n, sum)
	}
	if got := testutil.ToFloat64(r.transitions.WithLabelValues(KindHost, "Inspecting", "Available")); got != 1 {
		t.Errorf("Inspecting→Available transitions = %v, want 1", got)
	}
	if got := testutil.ToFloat64(r.transitions.WithLabelValues(KindHost, noPhase, "Registering")); got != 1 {
		t.Errorf("None→Registering transitions = %v, want 1", got)
	}

	// Hardware facts cleared (reprovisioning) and reported again: a second inspection, measured
	// from when Inspected turned False.
	again := t0.Add(time.Hour)
	r.ObserveHost(inspected(basaltv1.HostStateInspecting, f, again), inspected(basaltv1.HostStateAvailable, tr, again.Add(30*time.Second)), again.Add(30*time.Second))
	if n, sum := histogram(t, r, "basalt_host_inspect_duration_seconds", "ssh"); n != 2 || sum != 120 {
		t.Fatalf("after a re-inspection: %d samples, sum %v; want 2 samples, 90s + 30s", n, sum)
	}

	// Inspected True in the very first reconcile: measured from creation.
	r2 := NewRecorder()
	r2.ObserveHost(host(""), inspected(basaltv1.HostStateAvailable, tr, t0.Add(5*time.Second)), t0.Add(5*time.Second))
	if n, sum := histogram(t, r2, "basalt_host_inspect_duration_seconds", "ssh"); n != 1 || sum != 5 {
		t.Fatalf("inspected in the first reconcile: %d samples, sum %v; want 1 sample of 5s", n, sum)
	}
}

func TestHostProvisionNeedsItsStartAndSkipsAfterRestart(t *testing.T) {
	r := NewRecorder()
	r.ObserveHost(host(basaltv1.HostStateAvailable), host(basaltv1.HostStateProvisioning), t0)
	r.ObserveHost(host(basaltv1.HostStateProvisioning), host(basaltv1.HostStateProvisioning), t0.Add(time.Minute))
	r.ObserveHost(host(basaltv1.HostStateProvisioning), host(basaltv1.HostStateProvisioned), t0.Add(5*time.Minute))
	if n, sum := histogram(t, r, "basalt_host_provision_duration_seconds", "ssh"); n != 1 || sum != 300 {
		t.Fatalf("provision histogram: %d samples, sum %v; want 1 sample of 300s", n, sum)
	}
	// The same edge seen again (it cannot be, after a successful patch, but a caller may err) has
	// no start any more: skipped, never a second sample.
	r.ObserveHost(host(basaltv1.HostStateProvisioning), host(basaltv1.HostStateProvisioned), t0.Add(6*time.Minute))
	if n, _ := histogram(t, r, "basalt_host_provision_duration_seconds", "ssh"); n != 1 {
		t.Fatalf("provision histogram has %d samples after a repeated edge, want 1", n)
	}

	// A manager restarted during provisioning does not know the start.
	restarted := NewRecorder()
	restarted.ObserveHost(host(basaltv1.HostStateProvisioning), host(basaltv1.HostStateProvisioned), t0.Add(5*time.Minute))
	if n, _ := histogram(t, restarted, "basalt_host_provision_duration_seconds", "ssh"); n != 0 {
		t.Fatalf("a provisioning with an unknown start was observed")
	}
	if got := testutil.ToFloat64(restarted.skipped.WithLabelValues(OpHostProvision)); got != 1 {
		t.Errorf("skipped host_provision = %v, want 1", got)
	}
}

func TestHostProvisionedWithinOneReconcileTookNoTime(t *testing.T) {
	r := NewRecorder()
	r.ObserveHost(host(basaltv1.HostStateAvailable), host(basaltv1.HostStateProvisioned), t0)
	if n, sum := histogram(t, r, "basalt_host_provision_duration_seconds", "ssh"); n != 1 || sum != 0 {
		t.Fatalf("%d samples, sum %v; want 1 sample of 0s", n, sum)
	}
}

func TestHostProvisionStartForgottenWhenLeavingProvisioning(t *testing.T) {
	r := NewRecorder()
	r.ObserveHost(host(basaltv1.HostStateAvailable), host(basaltv1.HostStateProvisioning), t0)
	r.ObserveHost(host(basaltv1.HostStateProvisioning), host(basaltv1.HostStateError), t0.Add(time.Minute))
	if len(r.provisionStart) != 0 {
		t.Fatalf("start kept after leaving Provisioning: %v", r.provisionStart)
	}
}

func machine(phase basaltv1.MachinePhase) *basaltv1.Machine {
	return &basaltv1.Machine{
		ObjectMeta: metav1.ObjectMeta{Name: "m1", UID: types.UID("machine-1"), CreationTimestamp: metav1.NewTime(t0)},
		Spec:       basaltv1.MachineSpec{Cluster: "c", Role: basaltv1.RoleWorker},
		Status:     basaltv1.MachineStatus{Phase: phase},
	}
}

func TestMachineProvisionFromCreationToFirstRunning(t *testing.T) {
	r := NewRecorder()
	steps := []basaltv1.MachinePhase{"", basaltv1.MachinePhasePending, basaltv1.MachinePhaseProvisioning,
		basaltv1.MachinePhaseBootstrapping, basaltv1.MachinePhaseRunning, basaltv1.MachinePhaseRunning}
	for i := 1; i < len(steps); i++ {
		r.ObserveMachine(machine(steps[i-1]), machine(steps[i]), t0.Add(time.Duration(i)*time.Minute))
	}
	// A Machine that failed and came back is not provisioned again.
	r.ObserveMachine(machine(basaltv1.MachinePhaseFailed), machine(basaltv1.MachinePhaseRunning), t0.Add(time.Hour))
	n, sum := histogram(t, r, "basalt_machine_provision_duration_seconds", "worker")
	if n != 1 || sum != 240 {
		t.Fatalf("machine provision: %d samples, sum %v; want 1 sample of 240s", n, sum)
	}
	if got := testutil.CollectAndCount(r.transitions, "basalt_phase_transitions_total"); got != 5 {
		t.Errorf("%d transition series, want 5 (None→Pending→Provisioning→Bootstrapping→Running, Failed→Running)", got)
	}
}

type condSpec struct {
	t, reason string
	status    metav1.ConditionStatus
	at        time.Time
}

func cluster(version, specVersion string, conds ...condSpec) *basaltv1.Cluster {
	c := &basaltv1.Cluster{
		ObjectMeta: metav1.ObjectMeta{Name: "c", UID: types.UID("cluster-1"), CreationTimestamp: metav1.NewTime(t0)},
		Spec:       basaltv1.ClusterSpec{Version: specVersion},
		Status:     basaltv1.ClusterStatus{Version: version},
	}
	for _, cs := range conds {
		meta.SetStatusCondition(&c.Status.Conditions, metav1.Condition{Type: cs.t, Status: cs.status, Reason: cs.reason,
			LastTransitionTime: metav1.NewTime(cs.at)})
	}
	return c
}

func ready(s metav1.ConditionStatus) condSpec {
	return condSpec{t: basaltv1.ConditionReady, status: s, reason: "X", at: t0}
}

func TestClusterReadyOnlyTheFirstTime(t *testing.T) {
	r := NewRecorder()
	f, tr := metav1.ConditionFalse, metav1.ConditionTrue
	r.ObserveCluster(cluster("", "v1.37.2", ready(f)), cluster("", "v1.37.2", ready(f)), t0.Add(time.Minute))
	r.ObserveCluster(cluster("", "v1.37.2", ready(f)), cluster("v1.37.2", "v1.37.2", ready(tr)), t0.Add(20*time.Minute))
	// Ready flaps later: the recovery is not a time to first Ready.
	r.ObserveCluster(cluster("v1.37.2", "v1.37.2", ready(tr)), cluster("v1.37.2", "v1.37.2", ready(f)), t0.Add(time.Hour))
	r.ObserveCluster(cluster("v1.37.2", "v1.37.2", ready(f)), cluster("v1.37.2", "v1.37.2", ready(tr)), t0.Add(2*time.Hour))
	n, sum := histogram(t, r, "basalt_cluster_ready_duration_seconds")
	if n != 1 || sum != 1200 {
		t.Fatalf("cluster ready: %d samples, sum %v; want 1 sample of 1200s", n, sum)
	}
}

func upToDate(s metav1.ConditionStatus, at time.Time) condSpec {
	return condSpec{t: basaltv1.ClusterUpToDate, status: s, reason: "X", at: at}
}

func TestClusterUpgradeFromUpToDateFalseToVersionReached(t *testing.T) {
	f, tr := metav1.ConditionFalse, metav1.ConditionTrue
	started := t0.Add(time.Hour)
	upgrading := func(s metav1.ConditionStatus) *basaltv1.Cluster {
		return cluster("v1.36.3", "v1.37.2", upToDate(s, started))
	}
	done := cluster("v1.37.2", "v1.37.2", upToDate(tr, started.Add(8*time.Minute)))

	t.Run("seen from the start", func(t *testing.T) {
		r := NewRecorder()
		r.ObserveCluster(cluster("v1.36.3", "v1.37.2", upToDate(tr, t0)), upgrading(f), started)
		// UpToDate turns True (every Machine built for the version) before the version is reached.
		r.ObserveCluster(upgrading(f), cluster("v1.36.3", "v1.37.2", upToDate(tr, started.Add(8*time.Minute))), started.Add(8*time.Minute))
		r.ObserveCluster(cluster("v1.36.3", "v1.37.2", upToDate(tr, started.Add(8*time.Minute))), done, started.Add(10*time.Minute))
		r.ObserveCluster(done, done, started.Add(11*time.Minute))
		if n, sum := histogram(t, r, "basalt_cluster_upgrade_duration_seconds"); n != 1 || sum != 600 {
			t.Fatalf("upgrade: %d samples, sum %v; want 1 sample of 600s", n, sum)
		}
	})
	t.Run("manager restarted while UpToDate is False", func(t *testing.T) {
		r := NewRecorder()
		r.ObserveCluster(upgrading(f), cluster("v1.37.2", "v1.37.2", upToDate(tr, started.Add(10*time.Minute))), started.Add(10*time.Minute))
		if n, sum := histogram(t, r, "basalt_cluster_upgrade_duration_seconds"); n != 1 || sum != 600 {
			t.Fatalf("upgrade: %d samples, sum %v; want 1 sample of 600s", n, sum)
		}
	})
	t.Run("manager restarted after UpToDate turned True", func(t *testing.T) {
		r := NewRecorder()
		r.ObserveCluster(cluster("v1.36.3", "v1.37.2", upToDate(tr, started.Add(8*time.Minute))), done, started.Add(10*time.Minute))
		if n, _ := histogram(t, r, "basalt_cluster_upgrade_duration_seconds"); n != 0 {
			t.Fatalf("an upgrade with an unknown start was observed")
		}
		if got := testutil.ToFloat64(r.skipped.WithLabelValues(OpClusterUpgrade)); got != 1 {
			t.Errorf("skipped cluster_upgrade = %v, want 1", got)
		}
	})
	t.Run("first version is not an upgrade", func(t *testing.T) {
		r := NewRecorder()
		r.ObserveCluster(cluster("", "v1.37.2"), cluster("v1.37.2", "v1.37.2"), started)
		if n, _ := histogram(t, r, "basalt_cluster_upgrade_duration_seconds"); n != 0 {
			t.Fatalf("reaching the first version was observed as an upgrade")
		}
	})
}

func TestErrorsCountedOnTheEdgeOnly(t *testing.T) {
	r := NewRecorder()
	cond := func(status metav1.ConditionStatus, reason, msg string) *basaltv1.Host {
		h := host(basaltv1.HostStateRegistering)
		h.Status.Conditions = []metav1.Condition{
			{Type: basaltv1.HostAgentConnected, Status: status, Reason: reason, Message: msg},
			// Ready repeats the reason; it is not counted twice.
			{Type: basaltv1.ConditionReady, Status: status, Reason: reason, Message: msg},
		}
		return h
	}
	steps := []*basaltv1.Host{
		host(basaltv1.HostStateRegistering),
		cond(metav1.ConditionFalse, basaltv1.ReasonAgentNotInstalled, "installing"),            // waiting: not an error
		cond(metav1.ConditionFalse, basaltv1.ReasonInstallFailed, "connection refused"),        // error
		cond(metav1.ConditionFalse, basaltv1.ReasonInstallFailed, "connection timed out"),      // same reason: not again
		cond(metav1.ConditionFalse, basaltv1.ReasonHostKeyMismatch, "the host presented ..."),  // another error
		cond(metav1.ConditionTrue, basaltv1.ReasonReady, "agent is reporting"),                 // recovered
		cond(metav1.ConditionFalse, basaltv1.ReasonAgentSilent, "last reported 5m ago"),        // error
		cond(metav1.ConditionFalse, basaltv1.ReasonInstallFailed, "connection refused, again"), // error again
	}
	for i := 1; i < len(steps); i++ {
		r.ObserveHost(steps[i-1], steps[i], t0)
	}
	want := map[string]float64{basaltv1.ReasonInstallFailed: 2, basaltv1.ReasonHostKeyMismatch: 1, basaltv1.ReasonAgentSilent: 1}
	for reason, n := range want {
		if got := testutil.ToFloat64(r.errors.WithLabelValues(KindHost, basaltv1.HostAgentConnected, reason)); got != n {
			t.Errorf("errors{AgentConnected,%s} = %v, want %v", reason, got, n)
		}
	}
	if got := testutil.CollectAndCount(r.errors); got != len(want) {
		t.Errorf("%d error series, want %d (no Ready, no waiting reasons)", got, len(want))
	}
}

func TestNilObjects(t *testing.T) {
	r := NewRecorder()
	r.ObserveCluster(nil, nil, t0)
	r.ObserveMachine(nil, machine(basaltv1.MachinePhasePending), t0)
	r.ObserveHost(nil, host(basaltv1.HostStateRegistering), t0)
	if got := testutil.CollectAndCount(r.transitions); got != 2 {
		t.Errorf("%d transition series, want 2", got)
	}
}

func TestNegativeDurationsCountAsZero(t *testing.T) {
	r := NewRecorder()
	// The API server's clock, which stamped the creation, is ahead of the manager's.
	r.ObserveMachine(machine(basaltv1.MachinePhaseBootstrapping), machine(basaltv1.MachinePhaseRunning), t0.Add(-3*time.Second))
	if n, sum := histogram(t, r, "basalt_machine_provision_duration_seconds", "worker"); n != 1 || sum != 0 {
		t.Fatalf("%d samples, sum %v; want 1 sample of 0s", n, sum)
	}
}

// TestDefaultIsRegistered proves the manager's metrics endpoint serves the metrics: registering
// them again in controller-runtime's registry is refused as a duplicate.
func TestDefaultIsRegistered(t *testing.T) {
	for _, c := range Default.Collectors() {
		err := crmetrics.Registry.Register(c)
		var are prometheus.AlreadyRegisteredError
		if !errors.As(err, &are) {
			t.Errorf("collector %v is not registered in controller-runtime's registry (Register said %v)", c, err)
		}
	}
}

// TestMetricNamesPassPromlint checks names, units and help texts the way Prometheus' own linter
// does, on every metric with at least one series.
func TestMetricNamesPassPromlint(t *testing.T) {
	r := NewRecorder()
	r.ObserveHost(host(basaltv1.HostStateInspecting), inspected(basaltv1.HostStateAvailable, metav1.ConditionTrue, t0), t0)
	r.ObserveHost(host(basaltv1.HostStateAvailable), host(basaltv1.HostStateProvisioning), t0)
	r.ObserveHost(host(basaltv1.HostStateProvisioning), host(basaltv1.HostStateProvisioned), t0)
	r.ObserveMachine(machine(basaltv1.MachinePhaseBootstrapping), machine(basaltv1.MachinePhaseRunning), t0)
	r.ObserveCluster(cluster("", "v1.37.2"), cluster("v1.37.2", "v1.37.2", ready(metav1.ConditionTrue)), t0)
	r.skipped.WithLabelValues(OpClusterUpgrade).Inc()
	r.errors.WithLabelValues(KindHost, basaltv1.HostAgentConnected, basaltv1.ReasonInstallFailed).Inc()
	r.clusterUpgrade.WithLabelValues().Observe(1)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(r.Collectors()...)
	problems, err := promlint.NewWithMetricFamilies(mustGather(t, reg)).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
	if n := testutil.CollectAndCount(reg); n < 8 {
		t.Errorf("only %d series gathered; every metric should have one here", n)
	}
}

func mustGather(t *testing.T, g prometheus.Gatherer) []*dto.MetricFamily {
	t.Helper()
	fams, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	return fams
}

func TestErrorReasonsSorted(t *testing.T) {
	rs := ErrorReasons()
	if len(rs) != len(errorReasons) || !strings.Contains(strings.Join(rs, ","), basaltv1.ReasonInstallFailed) {
		t.Fatalf("ErrorReasons() = %v", rs)
	}
	for i := 1; i < len(rs); i++ {
		if rs[i-1] >= rs[i] {
			t.Fatalf("not sorted: %v", rs)
		}
	}
}

// TestDocsListEveryErrorReason keeps docs/observability.md in step with the code.
func TestDocsListEveryErrorReason(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "observability.md"))
	if err != nil {
		t.Fatal(err)
	}
	start := strings.Index(string(doc), "Error reasons (`metrics.ErrorReasons()`)")
	if start < 0 {
		t.Fatal("docs/observability.md has no list of error reasons")
	}
	list := string(doc[start:])
	list = list[:strings.Index(list, "\n\n")]
	for _, r := range ErrorReasons() {
		if !strings.Contains(list, "`"+r+"`") {
			t.Errorf("docs/observability.md does not list error reason %s", r)
		}
	}
}
