package host

import (
	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
	"github.com/basalt-dev/basalt/controllers/conditions"
)

// updateStatus derives every condition the Host controller owns from the scope and the Host's
// status. It always sets every condition, so a reader never sees a stale one.
func updateStatus(s *scope) {
	h := s.host
	switch {
	case h.Status.Agent.LastSeen != nil:
		conditions.True(h, basaltv1.HostAgentConnected, basaltv1.ReasonReady, "")
	case h.Spec.SSH != nil:
		conditions.False(h, basaltv1.HostAgentConnected, basaltv1.ReasonNotImplemented,
			"installing the agent over SSH is not implemented yet; this Host cannot be inspected or provisioned")
	default:
		conditions.False(h, basaltv1.HostAgentConnected, basaltv1.ReasonNotImplemented,
			"PXE boot of the agent is not implemented yet; this Host cannot be inspected or provisioned")
	}

	if h.Status.Hardware != nil {
		conditions.True(h, basaltv1.HostInspected, basaltv1.ReasonReady, "")
	} else {
		conditions.False(h, basaltv1.HostInspected, basaltv1.ReasonAgentNotInstalled, "no hardware facts reported: the agent has not registered")
	}

	order := []string{basaltv1.HostAgentConnected, basaltv1.HostInspected}
	if h.Spec.SSH != nil {
		conditions.Unknown(h, basaltv1.HostKeyVerified, basaltv1.ReasonNotImplemented,
			"no SSH connection has been made yet: host key verification comes with the SSH installer")
	}
	if !h.DeletionTimestamp.IsZero() && h.Status.ConsumerRef != nil {
		conditions.False(h, basaltv1.ConditionReady, basaltv1.ReasonDeleting,
			"waiting for Machine "+h.Status.ConsumerRef.Name+" to release this Host before it is deleted")
		return
	}
	conditions.SetSummary(h, order...)
}
