package machine

import (
	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
	"github.com/basalt-dev/basalt/controllers/conditions"
)

// updateStatus derives the phase and every condition the Machine controller owns from the scope.
func updateStatus(s *scope) {
	m := s.machine
	if s.host != nil && len(s.host.Spec.SSHAddresses()) > 0 {
		m.Status.Addresses = s.host.Spec.SSHAddresses()
	}
	hostBound := s.host != nil && s.host.Status.ConsumerRef != nil && s.host.Status.ConsumerRef.Name == m.Name
	switch {
	case hostBound:
		conditions.True(m, basaltv1.MachineHostBound, basaltv1.ReasonReady, "Host "+s.host.Name+" is reserved for this Machine")
	case s.hostProblem != "":
		conditions.False(m, basaltv1.MachineHostBound, s.hostProblem, s.hostMessage)
	case s.cluster == nil && m.DeletionTimestamp.IsZero():
		conditions.False(m, basaltv1.MachineHostBound, basaltv1.ReasonClusterNotFound, "Cluster "+m.Spec.Cluster+" does not exist")
	}
	conditions.False(m, basaltv1.MachineAgentConnected, basaltv1.ReasonNotImplemented,
		"installing and connecting the node agent is not implemented yet")
	conditions.False(m, basaltv1.MachinePlanApplied, basaltv1.ReasonNotImplemented,
		"applying node Plans is not implemented yet")
	conditions.Unknown(m, basaltv1.MachineNodeReady, basaltv1.ReasonNotImplemented,
		"reading the workload cluster's Node is not implemented yet")

	switch {
	case !m.DeletionTimestamp.IsZero():
		m.Status.Phase = basaltv1.MachinePhaseDeleting
		conditions.False(m, basaltv1.ConditionReady, basaltv1.ReasonDeleting, "the Machine is being deleted")
		return
	case s.cluster != nil && s.cluster.Spec.Paused:
		conditions.False(m, basaltv1.ConditionReady, basaltv1.ReasonPaused, "Cluster "+s.cluster.Name+" is paused")
		return
	case hostBound:
		m.Status.Phase = basaltv1.MachinePhaseProvisioning
	default:
		m.Status.Phase = basaltv1.MachinePhasePending
	}
	conditions.SetSummary(m, basaltv1.MachineHostBound, basaltv1.MachineAgentConnected, basaltv1.MachinePlanApplied, basaltv1.MachineNodeReady)
}
