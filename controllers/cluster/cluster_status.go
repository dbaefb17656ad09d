package cluster

import (
	"fmt"
	"strings"

	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
	"github.com/basalt-dev/basalt/controllers/conditions"
)

// updateStatus derives counts, the endpoint, the phase and every condition the Cluster controller
// owns from the scope. It always sets every condition, so none is ever stale.
func updateStatus(s *scope) {
	c := s.cluster
	c.Status.ControlPlane = basaltv1.ReplicaCounts{}
	c.Status.Workers = basaltv1.ReplicaCounts{}
	c.Status.WorkerPools = nil
	for _, g := range desiredGroups(c) {
		counts := countGroup(g.replicas, s.machines[g.key])
		if g.key.role == basaltv1.RoleControlPlane {
			c.Status.ControlPlane = counts
			continue
		}
		c.Status.WorkerPools = append(c.Status.WorkerPools, basaltv1.PoolStatus{Name: g.key.pool, ReplicaCounts: counts})
		c.Status.Workers.Desired += counts.Desired
		c.Status.Workers.Bound += counts.Bound
		c.Status.Workers.Ready += counts.Ready
		c.Status.Workers.Updated += counts.Updated
	}
	c.Status.ControlPlaneEndpoint = endpoint(s)

	setHostsBound(s)
	conditions.False(c, basaltv1.ClusterCertificatesReady, basaltv1.ReasonNotImplemented, "issuing the cluster's certificates is not implemented yet")
	conditions.False(c, basaltv1.ClusterEtcdReady, basaltv1.ReasonNotImplemented, "forming etcd is not implemented yet")
	conditions.False(c, basaltv1.ClusterControlPlaneReady, basaltv1.ReasonNotImplemented, "starting the control plane is not implemented yet")
	conditions.False(c, basaltv1.ClusterWorkersReady, basaltv1.ReasonNotImplemented, "joining workers is not implemented yet")

	switch {
	case !c.DeletionTimestamp.IsZero():
		c.Status.Phase = basaltv1.ClusterPhaseDeleting
		conditions.False(c, basaltv1.ConditionReady, basaltv1.ReasonDeleting, "the Cluster is being deleted")
		return
	case c.Spec.Paused:
		conditions.False(c, basaltv1.ConditionReady, basaltv1.ReasonPaused, "spec.paused is true: nothing is created, changed or deleted")
		if c.Status.Phase == "" {
			c.Status.Phase = basaltv1.ClusterPhasePending
		}
		return
	case conditions.IsTrue(c, basaltv1.ClusterHostsBound):
		c.Status.Phase = basaltv1.ClusterPhaseProvisioning
	default:
		c.Status.Phase = basaltv1.ClusterPhasePending
	}
	conditions.SetSummary(c, basaltv1.ClusterHostsBound, basaltv1.ClusterCertificatesReady, basaltv1.ClusterEtcdReady,
		basaltv1.ClusterControlPlaneReady, basaltv1.ClusterWorkersReady)
}

// setHostsBound says, per group, how many Hosts are missing.
func setHostsBound(s *scope) {
	c := s.cluster
	var missing []string
	for _, g := range desiredGroups(c) {
		if msg, bad := s.selectorErrors[g.key]; bad {
			conditions.False(c, basaltv1.ClusterHostsBound, basaltv1.ReasonInvalidSelector, msg)
			return
		}
		if n := s.shortfall[g.key]; n > 0 {
			missing = append(missing, fmt.Sprintf("%s needs %d more Available Host(s) matching %s", g.key, n, g.selectorField))
		}
	}
	switch {
	case len(missing) > 0:
		conditions.False(c, basaltv1.ClusterHostsBound, basaltv1.ReasonWaitingForHosts, strings.Join(missing, "; "))
	case c.Status.ControlPlane.Bound < c.Status.ControlPlane.Desired || c.Status.Workers.Bound < c.Status.Workers.Desired:
		conditions.False(c, basaltv1.ClusterHostsBound, basaltv1.ReasonWaitingForHosts, "Machines are being created and bound")
	default:
		conditions.True(c, basaltv1.ClusterHostsBound, basaltv1.ReasonHostsBound, "every Machine has a Host")
	}
}

// countGroup counts the Machines of one group. Ready and Updated stay zero until Machines can run.
func countGroup(desired int32, ms []*basaltv1.Machine) basaltv1.ReplicaCounts {
	counts := basaltv1.ReplicaCounts{Desired: desired}
	for _, m := range ms {
		if m.DeletionTimestamp.IsZero() && m.Spec.HostRef != nil {
			counts.Bound++
		}
		if m.Status.Phase == basaltv1.MachinePhaseRunning {
			counts.Ready++
		}
	}
	return counts
}

// endpoint is spec.controlPlane.endpoint, or else the SSH address of the oldest bound
// control-plane Machine's Host.
func endpoint(s *scope) *basaltv1.APIEndpoint {
	if ep := s.cluster.Spec.ControlPlane.Endpoint; ep != nil {
		return ep.DeepCopy()
	}
	for _, m := range s.machines[groupKey{role: basaltv1.RoleControlPlane}] {
		if m.Spec.HostRef == nil {
			continue
		}
		for i := range s.hosts {
			if h := &s.hosts[i]; h.Name == m.Spec.HostRef.Name && h.Spec.SSH != nil {
				return &basaltv1.APIEndpoint{Host: h.Spec.SSH.Address, Port: 6443}
			}
		}
	}
	return nil
}
