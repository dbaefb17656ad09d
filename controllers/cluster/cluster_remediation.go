package cluster

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
	"github.com/basalt-dev/basalt/controllers/cluster/topology"
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
}

// reconcileRemediation replaces a Machine that ran and stopped working: its Node NotReady past
// spec.remediation.nodeNotReadyTimeout, or its agent silent past agentSilentTimeout. The Machine
// is deleted (annotated with why) and reconcileMachines creates its replacement on a free Host.
// The Machine's own deletion removes its etcd member through the membership rules (a dead voter
// goes only while the healthy voters left keep a majority) and does not wait to wipe a host that
// does not answer.
//
// Safety, in this order: one remediation at a time (none while any Machine of the Cluster is being
// deleted); no more than maxRetries within retryPeriod; a control-plane Machine only while the
// healthy etcd voters left after its removal are a majority of the voters left, and never the
// last voter.
func (r *Reconciler) reconcileRemediation(ctx context.Context, s *scope) (ctrl.Result, error) {
	c := s.cluster
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
	cp, workers := s.activeMachines(basaltv1.RoleControlPlane), s.activeMachines(basaltv1.RoleWorker)
	var sick []unhealthy
	var soonest time.Duration
	for _, m := range append(cp, workers...) {
		u, wait := needsRemediation(c, m, now)
		switch {
		case u != nil:
			sick = append(sick, *u)
		case wait > 0 && (soonest == 0 || wait < soonest):
			soonest = wait
		}
	}
	if len(sick) == 0 {
		if soonest > 0 {
			return ctrl.Result{RequeueAfter: soonest}, nil
		}
		return ctrl.Result{}, nil
	}
	target := sick[0]
	res := ctrl.Result{RequeueAfter: waitRequeue}
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
	st := c.Status.Remediation
	period := durationOr(spec.RetryPeriod, defaultRetryPeriod)
	if st != nil && st.WindowStart != nil && now.Sub(st.WindowStart.Time) < period && st.Count >= maxRetries {
		s.remediationReason, s.remediationMessage = basaltv1.ReasonRemediationLimitReached, fmt.Sprintf(
			"Machine %s needs remediation (%s), but %d remediations happened since %s (spec.remediation.maxRetries %d per %s); look at the hosts, then delete the Machine by hand or raise the limit",
			target.m.Name, target.why, st.Count, st.WindowStart.UTC().Format(time.RFC3339), maxRetries, period)
		return res, nil
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

// needsRemediation says whether m, a Machine that ran (its kubelet reported), has been unhealthy
// past its timeout; otherwise, when it is unhealthy but not for long enough, how long until it
// is. A Machine being upgraded is left to the rollout.
func needsRemediation(c *basaltv1.Cluster, m *basaltv1.Machine, now time.Time) (*unhealthy, time.Duration) {
	if m.Spec.HostRef == nil || m.Status.NodeName == "" || upgrading(m) {
		return nil, 0
	}
	spec := c.Spec.Remediation
	checks := []struct {
		cond    string
		timeout time.Duration
		what    string
	}{
		{basaltv1.MachineAgentConnected, durationOr(spec.AgentSilentTimeout, defaultAgentSilentTimeout), "agent silent"},
		{basaltv1.MachineNodeReady, durationOr(spec.NodeNotReadyTimeout, defaultNodeNotReadyTimeout), "Node not Ready"},
	}
	var wait time.Duration
	for _, ch := range checks {
		cond := meta.FindStatusCondition(m.Status.Conditions, ch.cond)
		if cond == nil || cond.Status == metav1.ConditionTrue {
			continue
		}
		if ch.cond == basaltv1.MachineAgentConnected && cond.Reason != basaltv1.ReasonAgentSilent {
			continue
		}
		since := cond.LastTransitionTime.Time
		if left := ch.timeout - now.Sub(since); left > 0 {
			if wait == 0 || left < wait {
				wait = left
			}
			continue
		}
		return &unhealthy{m: m, since: since, why: fmt.Sprintf("%s since %s (%s: %s)", ch.what, since.UTC().Format(time.RFC3339), cond.Reason, clip(cond.Message, 200))}, 0
	}
	return nil, wait
}

// quorumAllowsRemoval says whether removing target's etcd member leaves a majority of healthy
// voters among the voters left, and why not.
func quorumAllowsRemoval(cp []*basaltv1.Machine, target *basaltv1.Machine) (bool, string) {
	voters, healthy := 0, 0
	targetVoter := false
	for _, m := range cp {
		if m.Status.Etcd == nil || m.Status.Etcd.Learner {
			continue
		}
		if m == target {
			targetVoter = true
			continue
		}
		voters++
		if topology.ComponentHealthy(m, topology.ComponentEtcd) && meta.IsStatusConditionTrue(m.Status.Conditions, basaltv1.MachineAgentConnected) {
			healthy++
		}
	}
	if !targetVoter {
		return true, ""
	}
	if voters == 0 {
		return false, "it holds the only etcd voter: replacing it would lose the cluster's data; repair the host or restore from a backup"
	}
	if healthy < voters/2+1 {
		return false, fmt.Sprintf("only %d of the %d other etcd voters are healthy: removing its member would leave no majority", healthy, voters)
	}
	return true, ""
}

func durationOr(d *metav1.Duration, def time.Duration) time.Duration {
	if d == nil {
		return def
	}
	return d.Duration
}
