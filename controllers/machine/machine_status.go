package machine

import (
	"fmt"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/api/meta"

	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
	"github.com/basalt-dev/basalt/controllers/conditions"
)

// updateStatus derives the phase and every condition the Machine controller owns from the scope:
//
//	Pending        no Host is bound
//	Provisioning   the Host is bound; no Plan is stored yet (the agent has not connected, or an
//	               input of the Plan is missing: pod range, certificates, etcd membership, ...)
//	Bootstrapping  a Plan is stored; the agent has not applied it, a component is unhealthy, or
//	               the Node is not Ready yet
//	Running        the current Plan is applied with every component healthy and the Node is
//	               Ready; a Machine stays Running afterwards (its Ready condition says when it
//	               degrades)
//	Deleting       the Machine is being deleted
func updateStatus(s *scope) {
	m := s.machine
	if s.host != nil && len(s.host.Spec.SSHAddresses()) > 0 {
		m.Status.Addresses = s.host.Spec.SSHAddresses()
	}
	hostBound := s.hostBound()
	switch {
	case hostBound:
		conditions.True(m, basaltv1.MachineHostBound, basaltv1.ReasonReady, "Host "+s.host.Name+" is reserved for this Machine")
	case s.hostProblem != "":
		conditions.False(m, basaltv1.MachineHostBound, s.hostProblem, s.hostMessage)
	case s.cluster == nil && m.DeletionTimestamp.IsZero():
		conditions.False(m, basaltv1.MachineHostBound, basaltv1.ReasonClusterNotFound, "Cluster "+m.Spec.Cluster+" does not exist")
	}
	setAgentConnected(s)
	setPlanApplied(s)
	setUpToDate(s)
	setNodeReady(s)
	if s.cluster != nil {
		conditions.SetPaused(m, s.cluster.Spec.Paused && m.DeletionTimestamp.IsZero(), "Cluster "+s.cluster.Name+" is paused (spec.paused)")
	}

	switch {
	case !m.DeletionTimestamp.IsZero():
		m.Status.Phase = basaltv1.MachinePhaseDeleting
		msg := "the Machine is being deleted"
		if s.deleteWait != "" {
			msg += ": " + s.deleteWait
		}
		conditions.False(m, basaltv1.ConditionReady, basaltv1.ReasonDeleting, msg)
		return
	case s.cluster != nil && s.cluster.Spec.Paused:
		// Ready keeps what the last reconcile found (see the Cluster's).
		if meta.FindStatusCondition(m.Status.Conditions, basaltv1.ConditionReady) == nil {
			conditions.Unknown(m, basaltv1.ConditionReady, basaltv1.ReasonPaused, "Cluster "+s.cluster.Name+" was paused before this Machine's first reconcile")
		}
		return
	case !hostBound:
		m.Status.Phase = basaltv1.MachinePhasePending
	case m.Status.Phase == basaltv1.MachinePhaseRunning:
	case conditions.IsTrue(m, basaltv1.MachinePlanApplied) && conditions.IsTrue(m, basaltv1.MachineNodeReady):
		m.Status.Phase = basaltv1.MachinePhaseRunning
	case s.planHash != "":
		m.Status.Phase = basaltv1.MachinePhaseBootstrapping
	default:
		m.Status.Phase = basaltv1.MachinePhaseProvisioning
	}
	conditions.SetSummary(m, basaltv1.MachineHostBound, basaltv1.MachineAgentConnected, basaltv1.MachinePlanApplied, basaltv1.MachineNodeReady)
}

// setAgentConnected mirrors the Host's AgentConnected condition, reason and message included, so
// an SSH failure (InstallFailed, HostKeyMismatch, SSHKeyInvalid) or a silent agent shows on the
// Machine as the Host controller reported it.
func setAgentConnected(s *scope) {
	m := s.machine
	if !s.hostBound() {
		conditions.False(m, basaltv1.MachineAgentConnected, basaltv1.ReasonWaitingForHost, "no Host is bound to this Machine")
		return
	}
	hc := meta.FindStatusCondition(s.host.Status.Conditions, basaltv1.HostAgentConnected)
	if hc == nil {
		conditions.Unknown(m, basaltv1.MachineAgentConnected, basaltv1.ReasonAgentNotReported, "the Host controller has not reported on the agent of Host "+s.host.Name+" yet")
		return
	}
	conditions.Set(m, basaltv1.MachineAgentConnected, hc.Status, hc.Reason, "Host "+s.host.Name+": "+hc.Message)
}

// setPlanApplied says whether the agent runs the current Plan with every component healthy. The
// agent's own words (a failed step, a failing probe) are the message.
func setPlanApplied(s *scope) {
	m := s.machine
	switch {
	case !s.hostBound():
		conditions.False(m, basaltv1.MachinePlanApplied, basaltv1.ReasonWaitingForHost, "no Host is bound to this Machine")
	case s.planReason != "":
		conditions.False(m, basaltv1.MachinePlanApplied, s.planReason, s.planMessage)
	case s.planHash == "":
		if meta.FindStatusCondition(m.Status.Conditions, basaltv1.MachinePlanApplied) == nil {
			conditions.Unknown(m, basaltv1.MachinePlanApplied, "NotObserved", "the Plan has not been built yet")
		}
	case m.Status.PlanHash != s.planHash && len(m.Status.FailedSteps) > 0:
		var steps []string
		for _, st := range m.Status.FailedSteps {
			steps = append(steps, st.Step+": "+st.Error)
		}
		conditions.False(m, basaltv1.MachinePlanApplied, basaltv1.ReasonApplyFailed,
			fmt.Sprintf("applying Plan %s failed: %s", short(s.planHash), clip(strings.Join(steps, "; "), 4000)))
	case m.Status.PlanHash != s.planHash:
		from := "no Plan yet"
		if m.Status.PlanHash != "" {
			from = "Plan " + short(m.Status.PlanHash)
		}
		conditions.False(m, basaltv1.MachinePlanApplied, basaltv1.ReasonApplying,
			fmt.Sprintf("the agent has applied %s; the current Plan is %s", from, short(s.planHash)))
	default:
		var bad []string
		for _, name := range s.planServices {
			i := slices.IndexFunc(m.Status.Components, func(c basaltv1.ComponentHealth) bool { return c.Name == name })
			switch {
			case i < 0:
				bad = append(bad, name+": not reported yet")
			case !m.Status.Components[i].Healthy:
				bad = append(bad, name+": "+orDefault(m.Status.Components[i].Message, "unhealthy"))
			}
		}
		if len(bad) > 0 {
			conditions.False(m, basaltv1.MachinePlanApplied, basaltv1.ReasonComponentUnhealthy,
				fmt.Sprintf("Plan %s is applied but %s", short(s.planHash), clip(strings.Join(bad, "; "), 4000)))
			return
		}
		if s.learner {
			// Applied, but a learner's Plan is not the node's full Plan: kube-apiserver,
			// kube-controller-manager and kube-scheduler join it once etcd promotes the member.
			conditions.False(m, basaltv1.MachinePlanApplied, basaltv1.ReasonWaitingForEtcdMember,
				fmt.Sprintf("Plan %s is applied; the etcd member is a learner, and kube-apiserver starts once it is promoted", short(s.planHash)))
			return
		}
		conditions.True(m, basaltv1.MachinePlanApplied, basaltv1.ReasonReady,
			fmt.Sprintf("Plan %s is applied; %s healthy", short(s.planHash), strings.Join(s.planServices, ", ")))
	}
}

// setUpToDate says whether the stored Plan is the current one or a new one waits for its turn
// to restart etcd or kube-apiserver (machine_rollout.go). It is left as it was while no Plan is
// built (PlanApplied says why).
func setUpToDate(s *scope) {
	m := s.machine
	switch {
	case s.rolloutWait != "":
		conditions.False(m, basaltv1.MachineUpToDate, basaltv1.ReasonWaitingForRollout, s.rolloutWait)
	case s.planHash != "" && s.planReason == "":
		conditions.True(m, basaltv1.MachineUpToDate, basaltv1.ReasonUpToDate, "Plan "+short(s.planHash)+" is built from the Cluster's current spec, certificates and peers")
	}
}

// setNodeReady mirrors the workload Node's Ready condition.
func setNodeReady(s *scope) {
	m := s.machine
	switch {
	case !s.hostBound():
		conditions.Unknown(m, basaltv1.MachineNodeReady, basaltv1.ReasonWaitingForHost, "no Host is bound to this Machine")
	case s.nodeReady:
		conditions.True(m, basaltv1.MachineNodeReady, "KubeletReady", s.nodeMessage)
	case s.nodeReason == basaltv1.ReasonWaitingForControlPlane || s.nodeReason == basaltv1.ReasonWorkloadClusterUnreachable:
		conditions.Unknown(m, basaltv1.MachineNodeReady, s.nodeReason, s.nodeMessage) // the Node cannot be read
	case s.nodeReason == basaltv1.ReasonWaitingForPodCIDR || s.nodeReason == basaltv1.ReasonNodeNotRegistered:
		// The kubelet has not reported yet: its readiness is unknown, not false. The condition
		// turns False (a new transition time) only when the kubelet reports NotReady, so the
		// remediation timeout counts from then, not from the Node's creation before a slow first
		// boot.
		conditions.Unknown(m, basaltv1.MachineNodeReady, s.nodeReason, s.nodeMessage)
	case s.nodeReason != "":
		conditions.False(m, basaltv1.MachineNodeReady, s.nodeReason, s.nodeMessage)
	case s.nodeIPErr != nil:
		conditions.False(m, basaltv1.MachineNodeReady, basaltv1.ReasonInvalidHostAddress, s.nodeIPErr.Error())
	case meta.FindStatusCondition(m.Status.Conditions, basaltv1.MachineNodeReady) == nil:
		conditions.Unknown(m, basaltv1.MachineNodeReady, "NotObserved", "the Node has not been looked at yet")
	}
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
