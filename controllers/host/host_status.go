package host

import (
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
	"github.com/basalt-dev/basalt/controllers/conditions"
)

// updateStatus derives every condition the Host controller owns from the scope and the Host's
// status. It always sets every condition, so a reader never sees a stale one.
func updateStatus(s *scope) {
	h := s.host
	setAgentConnected(s)
	order := []string{basaltv1.HostAgentConnected}
	if h.Spec.SSH != nil {
		setHostKeyVerified(s)
		order = append(order, basaltv1.HostKeyVerified)
	}
	switch {
	case h.Status.State == basaltv1.HostStateError && h.Status.Hardware == nil:
		conditions.False(h, basaltv1.HostInspected, basaltv1.ReasonInspectionFailed, h.Status.ErrorMessage)
	case h.Status.Hardware != nil:
		conditions.True(h, basaltv1.HostInspected, basaltv1.ReasonReady, "hardware facts reported by the agent")
	case h.Status.Agent.LastSeen != nil:
		conditions.False(h, basaltv1.HostInspected, basaltv1.ReasonInspecting, "the agent registered; waiting for its hardware report")
	default:
		conditions.False(h, basaltv1.HostInspected, basaltv1.ReasonAgentNotInstalled, "no hardware facts reported: the agent has not registered")
	}
	order = append(order, basaltv1.HostInspected)
	if h.Spec.IsAccepted() {
		conditions.True(h, basaltv1.HostAccepted, basaltv1.ReasonReady, "spec.accepted is true")
	} else {
		msg := "spec.accepted is false: this Host does not become Available"
		if h.Labels[basaltv1.LabelDiscovered] == "true" {
			msg = "discovered from a netbooting machine: check status.hardware, then set spec.accepted=true to make it Available"
		}
		conditions.False(h, basaltv1.HostAccepted, basaltv1.ReasonNotAccepted, msg)
	}
	order = append(order, basaltv1.HostAccepted)
	if setDiskProvisioned(s) {
		order = append(order, basaltv1.HostDiskProvisioned)
	}
	if setWiped(s) {
		order = append(order, basaltv1.HostWiped)
	}

	if !h.DeletionTimestamp.IsZero() && h.Status.ConsumerRef != nil {
		conditions.False(h, basaltv1.ConditionReady, basaltv1.ReasonDeleting,
			"waiting for Machine "+h.Status.ConsumerRef.Name+" to release this Host before it is deleted")
		return
	}
	conditions.SetSummary(h, order...)
}

func setAgentConnected(s *scope) {
	h := s.host
	switch last := h.Status.Agent.LastSeen; {
	case last != nil && time.Since(last.Time) <= s.silentAfter:
		conditions.True(h, basaltv1.HostAgentConnected, basaltv1.ReasonReady, "agent "+h.Status.Agent.Version+" is reporting")
	case last != nil:
		conditions.False(h, basaltv1.HostAgentConnected, basaltv1.ReasonAgentSilent,
			fmt.Sprintf("the agent last reported at %s, more than %s ago", last.UTC().Format(time.RFC3339), s.silentAfter))
	case s.hostKeyMismatch != "":
		conditions.False(h, basaltv1.HostAgentConnected, basaltv1.ReasonHostKeyMismatch, "provisioning stopped: "+s.hostKeyMismatch)
	case s.installProblem != "":
		conditions.False(h, basaltv1.HostAgentConnected, s.installProblem, s.installMessage)
	case s.installed:
		conditions.False(h, basaltv1.HostAgentConnected, basaltv1.ReasonWaitingForAgent, "the agent is installed over SSH; waiting for it to register")
	case h.Spec.SSH != nil:
		conditions.False(h, basaltv1.HostAgentConnected, basaltv1.ReasonAgentNotInstalled, "installing the agent over SSH")
	case s.netBoot:
		conditions.False(h, basaltv1.HostAgentConnected, basaltv1.ReasonWaitingForNetBoot,
			"waiting for the machine to boot from the network (PXE) and its agent to register: power it on with network boot first")
	default:
		conditions.False(h, basaltv1.HostAgentConnected, basaltv1.ReasonNetBootDisabled,
			"this manager runs without its PXE services (--pxe-interface), so a network-booted Host cannot get its agent")
	}
}

func setHostKeyVerified(s *scope) {
	h := s.host
	prev := meta.FindStatusCondition(h.Status.Conditions, basaltv1.HostKeyVerified)
	source := "the key recorded on first contact (status.sshHostKey)"
	if len(h.Spec.SSH.HostKeys) > 0 {
		source = "a pinned key (spec.ssh.hostKeys)"
	}
	switch {
	case s.hostKeyMismatch != "":
		conditions.False(h, basaltv1.HostKeyVerified, basaltv1.ReasonHostKeyMismatch, s.hostKeyMismatch)
	case s.hostKeyVerified:
		conditions.True(h, basaltv1.HostKeyVerified, basaltv1.ReasonReady, "the host presented "+source)
	case h.Status.Agent.LastSeen != nil:
		// The agent of an SSH Host only registers after an install whose SSH connection passed
		// the host key check.
		conditions.True(h, basaltv1.HostKeyVerified, basaltv1.ReasonReady, "the host presented "+source+" when the agent was installed")
	case prev != nil && prev.Status == metav1.ConditionTrue && prev.ObservedGeneration == h.Generation:
		conditions.True(h, basaltv1.HostKeyVerified, prev.Reason, prev.Message)
	case prev != nil && prev.Status == metav1.ConditionFalse && prev.Reason == basaltv1.ReasonHostKeyMismatch && prev.ObservedGeneration == h.Generation:
		conditions.False(h, basaltv1.HostKeyVerified, prev.Reason, prev.Message)
	default:
		conditions.Unknown(h, basaltv1.HostKeyVerified, "NotContacted", "no SSH connection has been made yet")
	}
}
