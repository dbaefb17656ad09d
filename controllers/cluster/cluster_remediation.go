package cluster

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
	"github.com/basalt-dev/basalt/controllers/topology"
)

// Defaults of spec.remediation fields left unset (objects stored before they had defaults).
const (
	defaultNodeNotReadyTimeout = 5 * time.Minute
	defaultAgentSilentTimeout  = 5 * time.Minute
	defaultMaxRetries          = 3
	defaultRetryPeriod         = time.Hour
)

// unhealthy is a Machine that needs remediation and why.
type unhealthy struct {
	m     *basaltv1.Machine
	why   string
	since time.Time
	// timeout is the spec.remediation timeout of the failing check.
	timeout time.Duration
}

// healthCheck is one way a Machine that ran is found unhealthy: condition cond not True (for
// AgentConnected: False because the agent is silent) for longer than timeout.
type healthCheck struct {
	cond    string
	timeout time.Duration
	what    string
}

func healthChecks(c *basaltv1.Cluster) []healthCheck {
	spec := c.Spec.Remediation
	return []healthCheck{
		{basaltv1.MachineAgentConnected, durationOr(spec.AgentSilentTimeout, defaultAgentSilentTimeout), "agent silent"},
		{basaltv1.MachineNodeReady, durationOr(spec.NodeNotReadyTimeout, defaultNodeNotReadyTimeout), "Node not Ready"},
	}
}

// failing returns m's condition of check ch when it says m is unhealthy, nil otherwise. Only what
// the manager knows counts: a NodeReady that is Unknown (the workload API cannot be read, or the
// Node was not looked at yet) is no failure, and a silent agent is one only while the Node,
// read from the workload API, is not Ready: an agent that stopped reporting on a node that works
// (an outage of the agent API, expired agent certificates, a partition between the manager and
// its agents) is no reason to replace the machine.
func (ch healthCheck) failing(m *basaltv1.Machine) *metav1.Condition {
	cond := meta.FindStatusCondition(m.Status.Conditions, ch.cond)
	if cond == nil || cond.Status != metav1.ConditionFalse {
		return nil
	}
	if ch.cond == basaltv1.MachineAgentConnected {
		if cond.Reason != basaltv1.ReasonAgentSilent {
			return nil
		}
		if node := meta.FindStatusCondition(m.Status.Conditions, basaltv1.MachineNodeReady); node == nil || node.Status != metav1.ConditionFalse {
			return nil
		}
	}
	return cond
}

// defaultMaxUnhealthy applies when spec.remediation.maxUnhealthy is unset.
var defaultMaxUnhealthy = intstr.FromString("40%")

// maxUnhealthy is how many of total Machines may be unhealthy at once for remediation to go on:
// spec.remediation.maxUnhealthy, a percentage rounded up.
func maxUnhealthy(c *basaltv1.Cluster, total int) int {
	v := c.Spec.Remediation.MaxUnhealthy
	if v == nil {
		v = &defaultMaxUnhealthy
	}
	n, err := intstr.GetScaledValueFromIntOrPercent(v, total, true)
	if err != nil {
		n, _ = intstr.GetScaledValueFromIntOrPercent(&defaultMaxUnhealthy, total, true)
	}
	return n
}

// unhealthyNow lists the Machines that ran and fail a check now, past their timeout or not.
func unhealthyNow(c *basaltv1.Cluster, ms []*basaltv1.Machine) []string {
	var out []string
	for _, m := range ms {
		if m.Spec.HostRef == nil || m.Status.NodeName == "" || upgrading(m) {
			continue
		}
		if !recovered(c, m) {
			out = append(out, m.Name)
		}
	}
	return out
}

// recovered says whether no check finds m unhealthy.
func recovered(c *basaltv1.Cluster, m *basaltv1.Machine) bool {
	for _, ch := range healthChecks(c) {
		if ch.failing(m) != nil {
			return false
		}
	}
	return true
}

// powerCycledAt returns when remediation asked for m's Host to be power-cycled (annotation
// basalt.dev/power-cycled-at), and whether it did (zero time for a value that is not RFC 3339).
func powerCycledAt(m *basaltv1.Machine) (time.Time, bool) {
	v, ok := m.Annotations[basaltv1.AnnotationPowerCycledAt]
	if !ok {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return time.Time{}, true
	}
	return t, true
}

// powerCycleStart is when m's timeout counts from after its power cycle: the request time, or
// zero when there was none or the Host refused it (status.lastPowerCycle.error: no spec.bmc), so
// the timeout counts from the condition alone.
func (s *scope) powerCycleStart(m *basaltv1.Machine) time.Time {
	at, cycled := powerCycledAt(m)
	if !cycled || m.Spec.HostRef == nil {
		return time.Time{}
	}
	if h := s.host(m.Spec.HostRef.Name); h != nil {
		if pc := h.Status.LastPowerCycle; pc != nil && pc.Request == m.Annotations[basaltv1.AnnotationPowerCycledAt] && pc.Error != "" {
			return time.Time{}
		}
	}
	return at
}

// Remediation asks a Host for a power cycle through its annotation basalt.dev/power-cycle.
// +kubebuilder:rbac:groups=basalt.dev,resources=hosts,verbs=patch

// reconcileRemediation remediates a Machine that ran and stopped working: its Node NotReady past
// spec.remediation.nodeNotReadyTimeout, or its agent silent past agentSilentTimeout.
//
// When the Machine's Host has spec.bmc, the first step is a power cycle: the Machine is annotated
// basalt.dev/power-cycled-at and its Host basalt.dev/power-cycle with the same request time, the
// Host controller resets the machine through its BMC, and the Machine gets its timeout again,
// counted from the request. A Machine that recovers loses the annotation (a later failure starts
// a new remediation); one still unhealthy then, or whose Host refused the request (no BMC), is
// replaced as a Machine without a BMC is at once: it is deleted (annotated with why) and
// reconcileMachines creates its replacement on a free Host. The Machine's own deletion removes
// its etcd member through the membership rules (a dead voter goes only while the healthy voters
// left keep a majority) and does not wait to wipe a host that does not answer.
//
// Safety, in this order: one remediation at a time (none while any Machine of the Cluster is being
// deleted, or waits after its power cycle); no more than maxRetries remediations started within
// retryPeriod (a power cycle starts one, and the replacement that may follow it is part of the
// same remediation); a control-plane Machine is power-cycled only while the healthy etcd voters
// other than it are a majority of all the voters (otherwise it goes straight to replacement), and
// replaced only while the healthy etcd voters left after its removal are a majority of the voters
// left, and never when it is the last voter.
func (r *Reconciler) reconcileRemediation(ctx context.Context, s *scope) (ctrl.Result, error) {
	c := s.cluster
	if s.etcdRestoring {
		// Control-plane members are down on purpose until they join the restored etcd.
		return ctrl.Result{}, nil
	}
	s.remediationRan = true
	spec := c.Spec.Remediation
	maxRetries := int32(defaultMaxRetries)
	if spec.MaxRetries != nil {
		maxRetries = *spec.MaxRetries
	}
	if maxRetries == 0 {
		return ctrl.Result{}, nil
	}
	now := r.now()
	period := durationOr(spec.RetryPeriod, defaultRetryPeriod)
	cp, workers := s.activeMachines(basaltv1.RoleControlPlane), s.activeMachines(basaltv1.RoleWorker)
	var sick []unhealthy
	// cycling is a Machine power-cycled and not yet past its timeout again.
	var cycling *basaltv1.Machine
	var soonest time.Duration
	for _, m := range append(cp, workers...) {
		if _, cycled := powerCycledAt(m); cycled && recovered(c, m) {
			if err := r.forgetPowerCycle(ctx, c, m); err != nil {
				return ctrl.Result{}, err
			}
			continue
		}
		u, wait := needsRemediation(c, m, now, s.powerCycleStart(m))
		switch {
		case u != nil:
			sick = append(sick, *u)
		case wait > 0 && (soonest == 0 || wait < soonest):
			soonest = wait
		}
		at, cycled := powerCycledAt(m)
		if !cycled {
			continue
		}
		if !at.IsZero() {
			countPowerCycle(c, m, at, period)
		}
		if u == nil && m.Spec.HostRef != nil {
			if err := r.ensurePowerCycleRequest(ctx, s, m); err != nil {
				return ctrl.Result{}, err
			}
			if cycling == nil {
				cycling = m
			}
		}
	}
	if len(sick) == 0 {
		if cycling != nil {
			at, _ := powerCycledAt(cycling)
			s.remediationReason, s.remediationMessage = basaltv1.ReasonPowerCycling, fmt.Sprintf(
				"Machine %s: its Host %s was power-cycled at %s; the Machine is replaced if it is still unhealthy when its timeout has passed again",
				cycling.Name, cycling.Spec.HostRef.Name, at.UTC().Format(time.RFC3339))
		}
		if soonest > 0 {
			return ctrl.Result{RequeueAfter: soonest}, nil
		}
		return ctrl.Result{}, nil
	}
	// A Machine already power-cycled finishes its remediation before another one starts.
	slices.SortStableFunc(sick, func(a, b unhealthy) int {
		_, ac := powerCycledAt(a.m)
		_, bc := powerCycledAt(b.m)
		switch {
		case ac && !bc:
			return -1
		case bc && !ac:
			return 1
		}
		return 0
	})
	target := sick[0]
	_, targetCycled := powerCycledAt(target.m)
	res := ctrl.Result{RequeueAfter: waitRequeue}
	all := append(slices.Clone(cp), workers...)
	if failing, limit := unhealthyNow(c, all), maxUnhealthy(c, len(all)); len(failing) > limit {
		s.remediationReason, s.remediationMessage = basaltv1.ReasonTooManyUnhealthy, fmt.Sprintf(
			"%d of %d Machines are unhealthy (%s), more than spec.remediation.maxUnhealthy allows (%d): none is remediated, since so many failing at once points at "+
				"the network, the power or the management side rather than at the machines; fix the cause, or raise maxUnhealthy",
			len(failing), len(all), strings.Join(failing, ", "), limit)
		if prev := meta.FindStatusCondition(c.Status.Conditions, basaltv1.ClusterMachinesHealthy); prev == nil || prev.Reason != basaltv1.ReasonTooManyUnhealthy {
			ctrl.LoggerFrom(ctx).Info("Not remediating: too many Machines are unhealthy at once", "cluster", klog.KObj(c), "unhealthy", failing, "maxUnhealthy", limit, "reason", basaltv1.ReasonTooManyUnhealthy)
			r.Recorder.Eventf(c, nil, corev1.EventTypeWarning, basaltv1.ReasonTooManyUnhealthy, "Remediate", "%s", s.remediationMessage)
		}
		return res, nil
	}
	for _, ms := range s.machines {
		for _, m := range ms {
			if !m.DeletionTimestamp.IsZero() {
				s.remediationReason, s.remediationMessage = basaltv1.ReasonRemediationBlocked, fmt.Sprintf(
					"Machine %s needs remediation (%s), but Machine %s is being deleted; one Machine is replaced at a time", target.m.Name, target.why, m.Name)
				if _, ok := m.Annotations[basaltv1.AnnotationRemediatedFor]; ok {
					s.remediationReason = basaltv1.ReasonRemediating
				}
				return res, nil
			}
		}
	}
	if cycling != nil {
		at, _ := powerCycledAt(cycling)
		s.remediationReason, s.remediationMessage = basaltv1.ReasonPowerCycling, fmt.Sprintf(
			"Machine %s needs remediation (%s), but Machine %s was power-cycled at %s and is given its timeout to recover; one Machine is remediated at a time",
			target.m.Name, target.why, cycling.Name, at.UTC().Format(time.RFC3339))
		return res, nil
	}
	st := c.Status.Remediation
	if !targetCycled && st != nil && st.WindowStart != nil && now.Sub(st.WindowStart.Time) < period && st.Count >= maxRetries {
		s.remediationReason, s.remediationMessage = basaltv1.ReasonRemediationLimitReached, fmt.Sprintf(
			"Machine %s needs remediation (%s), but %d remediations happened since %s (spec.remediation.maxRetries %d per %s); look at the hosts, then delete the Machine by hand or raise the limit",
			target.m.Name, target.why, st.Count, st.WindowStart.UTC().Format(time.RFC3339), maxRetries, period)
		return res, nil
	}

	if h := s.host(target.m.Spec.HostRef.Name); !targetCycled && h != nil && h.Spec.BMC != nil {
		ok, why := true, ""
		if target.m.Spec.Role == basaltv1.RoleControlPlane {
			ok, why = quorumAllowsPowerCycle(cp, target.m)
		}
		if ok {
			return r.powerCycleMachine(ctx, s, target, h, maxRetries, period)
		}
		ctrl.LoggerFrom(ctx).V(1).Info("Not power-cycling the Host of an unhealthy Machine: replacing it if quorum allows", "cluster", klog.KObj(c),
			"machine", klog.KObj(target.m), "host", h.Name, "why", why)
	}
	if target.m.Spec.Role == basaltv1.RoleControlPlane {
		if ok, why := quorumAllowsRemoval(cp, target.m); !ok {
			s.remediationReason, s.remediationMessage = basaltv1.ReasonRemediationBlocked, fmt.Sprintf(
				"Machine %s needs remediation (%s), but %s", target.m.Name, target.why, why)
			return res, nil
		}
	}

	// The count goes out with this reconcile's status patch. A crash between the deletion below
	// and that patch loses one count, never a Machine: the deleting Machine blocks the next
	// remediation until it is gone.
	next := &basaltv1.RemediationStatus{Count: 1, WindowStart: &metav1.Time{Time: now}}
	if st != nil && st.WindowStart != nil && now.Sub(st.WindowStart.Time) < period {
		next.Count, next.WindowStart = st.Count+1, st.WindowStart
	}
	if targetCycled && st != nil {
		// The replacement finishes the remediation its power cycle started and counted.
		next.Count, next.WindowStart = st.Count, st.WindowStart
	}
	next.LastMachine, next.LastRemediatedAt = target.m.Name, &metav1.Time{Time: now}
	c.Status.Remediation = next
	m := target.m
	mb := m.DeepCopy()
	if m.Annotations == nil {
		m.Annotations = map[string]string{}
	}
	m.Annotations[basaltv1.AnnotationRemediatedFor] = target.why
	if err := r.Client.Patch(ctx, m, client.MergeFrom(mb)); err != nil && !apierrors.IsNotFound(err) {
		return ctrl.Result{}, fmt.Errorf("annotating Machine %s for remediation: %w", m.Name, err)
	}
	if err := r.deleteMachine(ctx, c, m, basaltv1.ReasonRemediating); err != nil {
		return ctrl.Result{}, err
	}
	ctrl.LoggerFrom(ctx).Info("Remediating Machine", "cluster", klog.KObj(c), "machine", klog.KObj(m), "why", target.why, "count", next.Count, "reason", basaltv1.ReasonRemediating)
	r.Recorder.Eventf(c, m, corev1.EventTypeWarning, basaltv1.ReasonRemediating, "Remediate",
		"Replacing Machine %s: %s (remediation %d of at most %d per %s)", m.Name, target.why, next.Count, maxRetries, period)
	s.remediationReason, s.remediationMessage = basaltv1.ReasonRemediating, fmt.Sprintf("replacing Machine %s: %s", m.Name, target.why)
	return ctrl.Result{RequeueAfter: time.Second}, nil
}

// powerCycleMachine is the first step of remediating target, whose Host h has spec.bmc: the
// Machine is annotated with the request time (with an optimistic lock, so a reconcile that read
// an older copy of the Machine cannot ask a second time), then the Host with the same value; the
// Host controller does the power cycle. The Machine gets its timeout again from the request.
func (r *Reconciler) powerCycleMachine(ctx context.Context, s *scope, target unhealthy, h *basaltv1.Host,
	maxRetries int32, period time.Duration) (ctrl.Result, error) {
	c, m := s.cluster, target.m
	at := r.now().UTC().Truncate(time.Second)
	req := at.Format(time.RFC3339)
	mb := m.DeepCopy()
	if m.Annotations == nil {
		m.Annotations = map[string]string{}
	}
	m.Annotations[basaltv1.AnnotationPowerCycledAt] = req
	if err := r.Client.Patch(ctx, m, client.MergeFromWithOptions(mb, client.MergeFromWithOptimisticLock{})); apierrors.IsNotFound(err) {
		return ctrl.Result{RequeueAfter: time.Second}, nil
	} else if err != nil {
		return ctrl.Result{}, fmt.Errorf("annotating Machine %s for its power cycle: %w", m.Name, err)
	}
	countPowerCycle(c, m, at, period)
	next := c.Status.Remediation
	if err := r.requestPowerCycle(ctx, h, req); err != nil {
		// The Machine is annotated: the next reconcile writes the request again
		// (ensurePowerCycleRequest), and the timeout counts from the annotation regardless.
		return ctrl.Result{}, err
	}
	ctrl.LoggerFrom(ctx).Info("Remediating Machine: power-cycling its Host", "cluster", klog.KObj(c), "machine", klog.KObj(m), "host", h.Name,
		"why", target.why, "count", next.Count, "reason", basaltv1.ReasonPowerCycling)
	r.Recorder.Eventf(c, m, corev1.EventTypeWarning, basaltv1.ReasonPowerCycling, "Remediate",
		"Power-cycling Host %s of Machine %s through its BMC: %s (remediation %d of at most %d per %s); the Machine is replaced if it is still unhealthy %s later",
		h.Name, m.Name, target.why, next.Count, maxRetries, period, target.timeout)
	s.remediationReason, s.remediationMessage = basaltv1.ReasonPowerCycling, fmt.Sprintf(
		"power-cycling Host %s of Machine %s (%s); the Machine is replaced if it is still unhealthy %s later", h.Name, m.Name, target.why, target.timeout)
	return ctrl.Result{RequeueAfter: time.Second}, nil
}

// countPowerCycle counts in status.remediation the power cycle of m requested at at, unless a
// remediation at or after at is counted already. The count goes out with the reconcile's status
// patch, which a conflict can lose, so every reconcile that sees a power-cycled Machine makes sure:
// the Machine's annotation is the lasting record, status.remediation.lastRemediatedAt says how far
// the count went.
func countPowerCycle(c *basaltv1.Cluster, m *basaltv1.Machine, at time.Time, period time.Duration) {
	st := c.Status.Remediation
	if st != nil && st.LastRemediatedAt != nil && !st.LastRemediatedAt.Time.Before(at) {
		return
	}
	next := &basaltv1.RemediationStatus{Count: 1, WindowStart: &metav1.Time{Time: at}}
	if st != nil && st.WindowStart != nil && at.Sub(st.WindowStart.Time) < period {
		next.Count, next.WindowStart = st.Count+1, st.WindowStart
	}
	next.LastMachine, next.LastRemediatedAt = m.Name, &metav1.Time{Time: at}
	c.Status.Remediation = next
}

// ensurePowerCycleRequest writes m's power-cycle request on its Host again when the Host neither
// carries nor answered it (the Host write of powerCycleMachine failed). The same value is acted
// on once by the Host controller, so writing it twice is harmless.
func (r *Reconciler) ensurePowerCycleRequest(ctx context.Context, s *scope, m *basaltv1.Machine) error {
	req := m.Annotations[basaltv1.AnnotationPowerCycledAt]
	h := s.host(m.Spec.HostRef.Name)
	if h == nil || h.Annotations[basaltv1.AnnotationPowerCycle] == req || (h.Status.LastPowerCycle != nil && h.Status.LastPowerCycle.Request == req) {
		return nil
	}
	return r.requestPowerCycle(ctx, h, req)
}

// requestPowerCycle annotates Host h with power-cycle request req.
func (r *Reconciler) requestPowerCycle(ctx context.Context, h *basaltv1.Host, req string) error {
	hb := h.DeepCopy()
	if h.Annotations == nil {
		h.Annotations = map[string]string{}
	}
	h.Annotations[basaltv1.AnnotationPowerCycle] = req
	if err := r.Client.Patch(ctx, h, client.MergeFrom(hb)); err != nil {
		return fmt.Errorf("asking Host %s for a power cycle: %w", h.Name, err)
	}
	return nil
}

// forgetPowerCycle removes the power-cycle annotation of a Machine that recovered, so a later
// failure starts a new remediation. The optimistic lock keeps a stale copy from removing it.
func (r *Reconciler) forgetPowerCycle(ctx context.Context, c *basaltv1.Cluster, m *basaltv1.Machine) error {
	at := m.Annotations[basaltv1.AnnotationPowerCycledAt]
	mb := m.DeepCopy()
	delete(m.Annotations, basaltv1.AnnotationPowerCycledAt)
	if err := r.Client.Patch(ctx, m, client.MergeFromWithOptions(mb, client.MergeFromWithOptimisticLock{})); err != nil {
		return client.IgnoreNotFound(err)
	}
	ctrl.LoggerFrom(ctx).Info("Machine recovered after its power cycle", "cluster", klog.KObj(c), "machine", klog.KObj(m), "powerCycledAt", at)
	r.Recorder.Eventf(c, m, corev1.EventTypeNormal, "Recovered", "Remediate", "Machine %s is healthy again after its Host was power-cycled at %s", m.Name, at)
	return nil
}

// needsRemediation says whether m, a Machine that ran (its kubelet reported), has been unhealthy
// past its timeout; otherwise, when it is unhealthy but not for long enough, how long until it
// is. The timeout counts from the later of the condition's change and cycledAt, the Machine's
// power cycle (zero: none). A Machine being upgraded is left to the rollout.
func needsRemediation(c *basaltv1.Cluster, m *basaltv1.Machine, now, cycledAt time.Time) (*unhealthy, time.Duration) {
	if m.Spec.HostRef == nil || m.Status.NodeName == "" || upgrading(m) {
		return nil, 0
	}
	var wait time.Duration
	for _, ch := range healthChecks(c) {
		cond := ch.failing(m)
		if cond == nil {
			continue
		}
		since := cond.LastTransitionTime.Time
		why := fmt.Sprintf("%s since %s (%s: %s)", ch.what, since.UTC().Format(time.RFC3339), cond.Reason, clip(cond.Message, 200))
		if cycledAt.After(since) {
			since = cycledAt
			why += fmt.Sprintf("; still %s after the power cycle of %s", ch.timeout, cycledAt.UTC().Format(time.RFC3339))
		}
		if left := ch.timeout - now.Sub(since); left > 0 {
			if wait == 0 || left < wait {
				wait = left
			}
			continue
		}
		return &unhealthy{m: m, since: since, timeout: ch.timeout, why: why}, 0
	}
	return nil, wait
}

// etcdVoters counts the etcd voters of cp other than target and the healthy ones among them, and
// says whether target is a voter.
func etcdVoters(cp []*basaltv1.Machine, target *basaltv1.Machine) (targetVoter bool, others, healthy int) {
	for _, m := range cp {
		if m.Status.Etcd == nil || m.Status.Etcd.Learner {
			continue
		}
		if m == target {
			targetVoter = true
			continue
		}
		others++
		if topology.ComponentHealthy(m, topology.ComponentEtcd) && meta.IsStatusConditionTrue(m.Status.Conditions, basaltv1.MachineAgentConnected) {
			healthy++
		}
	}
	return targetVoter, others, healthy
}

// quorumAllowsRemoval says whether removing target's etcd member leaves a majority of healthy
// voters among the voters left, and why not.
func quorumAllowsRemoval(cp []*basaltv1.Machine, target *basaltv1.Machine) (bool, string) {
	targetVoter, voters, healthy := etcdVoters(cp, target)
	if !targetVoter {
		return true, ""
	}
	if voters == 0 {
		return false, "it holds the only etcd voter: replacing it would lose the cluster's data; repair the host, or restore etcd onto another Machine with the basalt.dev/etcd-restore annotation (docs/restore.md)"
	}
	if healthy < voters/2+1 {
		return false, fmt.Sprintf("only %d of the %d other etcd voters are healthy: removing its member would leave no majority (if the majority is lost for good, recover from a surviving member with basalt.dev/etcd-restore=member/<machine>, docs/restore.md)", healthy, voters)
	}
	return true, ""
}

// quorumAllowsPowerCycle says whether the healthy etcd voters other than target are a majority of
// all the voters, target's included (its member stays, down while its host restarts), and why
// not.
func quorumAllowsPowerCycle(cp []*basaltv1.Machine, target *basaltv1.Machine) (bool, string) {
	targetVoter, others, healthy := etcdVoters(cp, target)
	if !targetVoter {
		return true, ""
	}
	if others == 0 {
		return false, "it holds the only etcd voter: a power cycle would take etcd down"
	}
	if healthy < (others+1)/2+1 {
		return false, fmt.Sprintf("only %d of the %d other etcd voters are healthy: with its member down while the host restarts, etcd would have no majority", healthy, others)
	}
	return true, ""
}

func durationOr(d *metav1.Duration, def time.Duration) time.Duration {
	if d == nil {
		return def
	}
	return d.Duration
}
