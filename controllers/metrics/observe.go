package metrics

import (
	"slices"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
	"github.com/basalt-dev/basalt/controllers/etcdcluster"
)

// errorReasons are the condition reasons that mean something failed, as opposed to waiting for
// something that is on its way (WaitingForHosts, Applying, Inspecting, ...).
var errorReasons = map[string]bool{
	// Host
	basaltv1.ReasonHostKeyMismatch:  true,
	basaltv1.ReasonSSHKeyInvalid:    true,
	basaltv1.ReasonInstallFailed:    true,
	basaltv1.ReasonHostKeyNotPinned: true,
	basaltv1.ReasonAgentSilent:      true,
	basaltv1.ReasonNetBootDisabled:  true,
	// Host wipe
	basaltv1.ReasonWipeNotConfirmed: true,
	// Host BMC
	basaltv1.ReasonBMCCredentialsInvalid: true,
	basaltv1.ReasonBMCAddressInvalid:     true,
	basaltv1.ReasonBMCUnreachable:        true,
	basaltv1.ReasonBMCAuthFailed:         true,
	basaltv1.ReasonBMCCertificateInvalid: true,
	basaltv1.ReasonBMCProtocolError:      true,
	// Machine
	basaltv1.ReasonHostNotFound:               true,
	basaltv1.ReasonHostInUse:                  true,
	basaltv1.ReasonClusterNotFound:            true,
	basaltv1.ReasonInvalidHostAddress:         true,
	basaltv1.ReasonArtifactSetNotFound:        true,
	basaltv1.ReasonPlanInvalid:                true,
	basaltv1.ReasonApplyFailed:                true,
	basaltv1.ReasonComponentUnhealthy:         true,
	basaltv1.ReasonWorkloadClusterUnreachable: true,
	basaltv1.ReasonPodCIDRConflict:            true,
	// Cluster
	basaltv1.ReasonInvalidSelector:         true,
	basaltv1.ReasonCertificatesFailed:      true,
	basaltv1.ReasonEtcdUnreachable:         true,
	basaltv1.ReasonPodCIDRExhausted:        true,
	basaltv1.ReasonRemediationBlocked:      true,
	basaltv1.ReasonRemediationLimitReached: true,
	basaltv1.ReasonTooManyUnhealthy:        true,
	basaltv1.ReasonDeletionStalled:         true,
	basaltv1.ReasonAddonApplyFailed:        true,
	etcdcluster.ReasonJoinTimeout:          true,
	etcdcluster.ReasonPeerURLConflict:      true,
	etcdcluster.ReasonInvalidDesired:       true,
	etcdcluster.ReasonLearnerUnhealthy:     true,
	etcdcluster.ReasonNoLeader:             true,
	etcdcluster.ReasonMemberUnhealthy:      true,
	etcdcluster.ReasonQuorumAtRisk:         true,
	etcdcluster.ReasonEtcdUnavailable:      true,
}

// ErrorReasons returns, sorted, the condition reasons basalt_errors_total counts.
func ErrorReasons() []string {
	out := make([]string, 0, len(errorReasons))
	for r := range errorReasons {
		out = append(out, r)
	}
	slices.Sort(out)
	return out
}

// ObserveCluster records a Cluster's phase change, the errors its conditions turned to, the time
// to its first Ready and the time an upgrade took. before is the Cluster as the reconcile read
// it, after as its status patch wrote it; now is the reconcile's clock.
//
// First Ready is the edge where Ready turns True while status.version is still empty: the
// Cluster controller sets status.version once every desired Machine is Ready at spec.version and
// never clears it, so a Cluster that was Ready before and recovers is not counted again. An
// upgrade ends on the edge where status.version changes to spec.version from another version; it
// started when UpToDate turned False for that spec.version.
func (r *Recorder) ObserveCluster(before, after *basaltv1.Cluster, now time.Time) {
	if after == nil {
		return
	}
	if before == nil {
		before = &basaltv1.Cluster{}
	}
	r.phase(KindCluster, phaseLabel(before.Status.Phase), phaseLabel(after.Status.Phase))
	r.conditionErrors(KindCluster, before.Status.Conditions, after.Status.Conditions)

	if !meta.IsStatusConditionTrue(before.Status.Conditions, basaltv1.ConditionReady) &&
		meta.IsStatusConditionTrue(after.Status.Conditions, basaltv1.ConditionReady) && before.Status.Version == "" {
		r.clusterReady.WithLabelValues().Observe(seconds(after.CreationTimestamp.Time, now))
	}
	r.observeUpgrade(before, after, now)
}

// observeUpgrade remembers when an upgrade started (a cache of the UpToDate condition's
// lastTransitionTime, taken again from the object after a restart) and observes its duration
// when status.version reaches spec.version.
func (r *Recorder) observeUpgrade(before, after *basaltv1.Cluster, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	uid := after.UID
	upgrading := after.Status.Version != "" && after.Status.Version != after.Spec.Version && after.DeletionTimestamp.IsZero()
	if upgrading {
		c := meta.FindStatusCondition(after.Status.Conditions, basaltv1.ClusterUpToDate)
		if u, ok := r.upgradeStart[uid]; (!ok || u.to != after.Spec.Version) && c != nil && c.Status != metav1.ConditionTrue {
			r.upgradeStart[uid] = upgrade{to: after.Spec.Version, start: c.LastTransitionTime.Time}
		}
		return
	}
	done := before.Status.Version != "" && after.Status.Version != before.Status.Version && after.Status.Version == after.Spec.Version
	if done {
		u, ok := r.upgradeStart[uid]
		start := u.start
		if !ok || u.to != after.Status.Version {
			c := meta.FindStatusCondition(before.Status.Conditions, basaltv1.ClusterUpToDate)
			ok = c != nil && c.Status != metav1.ConditionTrue
			if ok {
				start = c.LastTransitionTime.Time
			}
		}
		if ok {
			r.clusterUpgrade.WithLabelValues().Observe(seconds(start, now))
		} else {
			r.skipped.WithLabelValues(OpClusterUpgrade).Inc()
		}
	}
	delete(r.upgradeStart, uid)
}

// ObserveMachine records a Machine's phase change, the errors its conditions turned to and the
// time from its creation to its first Running phase. before is the Machine as the reconcile read
// it, after as its status patch wrote it; now is the reconcile's clock.
func (r *Recorder) ObserveMachine(before, after *basaltv1.Machine, now time.Time) {
	if after == nil {
		return
	}
	if before == nil {
		before = &basaltv1.Machine{}
	}
	r.phase(KindMachine, phaseLabel(before.Status.Phase), phaseLabel(after.Status.Phase))
	r.conditionErrors(KindMachine, before.Status.Conditions, after.Status.Conditions)
	switch before.Status.Phase {
	case "", basaltv1.MachinePhasePending, basaltv1.MachinePhaseProvisioning, basaltv1.MachinePhaseBootstrapping:
		if after.Status.Phase == basaltv1.MachinePhaseRunning {
			r.machineProvision.WithLabelValues(phaseLabel(after.Spec.Role)).Observe(seconds(after.CreationTimestamp.Time, now))
		}
	}
}

// ObserveHost records a Host's state change, the errors its conditions turned to, the time its
// inspection took and the time it spent provisioning. before is the Host as the reconcile read
// it, after as its status patch wrote it; now is the reconcile's clock.
//
// Inspection ends on the edge where the Inspected condition turns True (the agent's hardware
// report) and starts when Inspected was last set to not-True: for a new Host its first reconcile,
// right after creation (agent install or PXE boot and registration included); for a Host whose
// hardware facts were cleared, when they were. Waiting for a human to accept a discovered Host
// is not part of it. Provisioning ends on the edge to Provisioned; a Host that went from
// Available to Provisioned within one reconcile (an SSH Host whose agent is already connected)
// took no time.
func (r *Recorder) ObserveHost(before, after *basaltv1.Host, now time.Time) {
	if after == nil {
		return
	}
	if before == nil {
		before = &basaltv1.Host{}
	}
	from, to := before.Status.State, after.Status.State
	r.phase(KindHost, phaseLabel(from), phaseLabel(to))
	r.conditionErrors(KindHost, before.Status.Conditions, after.Status.Conditions)
	access := "pxe"
	if after.Spec.SSH != nil {
		access = "ssh"
	}
	if meta.IsStatusConditionTrue(after.Status.Conditions, basaltv1.HostInspected) {
		switch prev := meta.FindStatusCondition(before.Status.Conditions, basaltv1.HostInspected); {
		case prev == nil:
			r.hostInspect.WithLabelValues(access).Observe(seconds(after.CreationTimestamp.Time, now))
		case prev.Status != metav1.ConditionTrue:
			r.hostInspect.WithLabelValues(access).Observe(seconds(prev.LastTransitionTime.Time, now))
		}
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case to == basaltv1.HostStateProvisioning && from != to && after.DeletionTimestamp.IsZero():
		r.provisionStart[after.UID] = now
		return
	case to == basaltv1.HostStateProvisioned && from == basaltv1.HostStateProvisioning:
		if start, ok := r.provisionStart[after.UID]; ok {
			r.hostProvision.WithLabelValues(access).Observe(seconds(start, now))
		} else {
			r.skipped.WithLabelValues(OpHostProvision).Inc()
		}
	case to == basaltv1.HostStateProvisioned && from != to:
		r.hostProvision.WithLabelValues(access).Observe(0)
	}
	if to != basaltv1.HostStateProvisioning || !after.DeletionTimestamp.IsZero() {
		delete(r.provisionStart, after.UID)
	}
}

// phase counts a phase or state change.
func (r *Recorder) phase(kind, from, to string) {
	if from != to {
		r.transitions.WithLabelValues(kind, from, to).Inc()
	}
}

// conditionErrors counts each condition but Ready (which repeats another's reason) that turned
// to a not-True status with an error reason, or changed from one error reason to another. A
// condition that keeps its status and reason is not counted again, whatever its message says.
func (r *Recorder) conditionErrors(kind string, before, after []metav1.Condition) {
	for _, c := range after {
		if c.Type == basaltv1.ConditionReady || c.Status == metav1.ConditionTrue || !errorReasons[c.Reason] {
			continue
		}
		if p := meta.FindStatusCondition(before, c.Type); p != nil && p.Status == c.Status && p.Reason == c.Reason {
			continue
		}
		r.errors.WithLabelValues(kind, c.Type, c.Reason).Inc()
	}
}
