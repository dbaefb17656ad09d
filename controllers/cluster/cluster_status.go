package cluster

import (
	"fmt"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
	"github.com/basalt-dev/basalt/controllers/conditions"
	"github.com/basalt-dev/basalt/controllers/etcdcluster"
	"github.com/basalt-dev/basalt/controllers/topology"
)

// updateStatus derives counts, the endpoint, the phase and every condition the Cluster controller
// owns from the scope. Conditions about what the phases observe (certificates, etcd) keep their
// last value when the phases did not run (paused, deleting, or an earlier phase failed).
func updateStatus(s *scope) {
	c := s.cluster
	c.Status.ControlPlane = basaltv1.ReplicaCounts{}
	c.Status.Workers = basaltv1.ReplicaCounts{}
	c.Status.WorkerPools = nil
	for _, g := range desiredGroups(c) {
		counts := countGroup(c, g.replicas, s.machines[g.key])
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
	if s.endpoint == nil {
		s.endpoint = endpoint(s)
	}
	c.Status.ControlPlaneEndpoint = s.endpoint

	setHostsBound(s)
	setCertificatesReady(s)
	setEtcdReady(s)
	setRoleReady(s, basaltv1.ClusterControlPlaneReady, basaltv1.RoleControlPlane, c.Status.ControlPlane.Desired)
	setRoleReady(s, basaltv1.ClusterWorkersReady, basaltv1.RoleWorker, c.Status.Workers.Desired)
	setUpToDate(s)
	setMachinesHealthy(s)
	setVersion(s)
	setAddonsReady(s)
	conditions.SetPaused(c, c.Spec.Paused && c.DeletionTimestamp.IsZero(), "spec.paused is true: nothing is created, changed or deleted")

	switch {
	case !c.DeletionTimestamp.IsZero():
		c.Status.Phase = basaltv1.ClusterPhaseDeleting
		if s.deleteStalled != "" {
			conditions.False(c, basaltv1.ConditionReady, basaltv1.ReasonDeletionStalled, s.deleteStalled)
			return
		}
		conditions.False(c, basaltv1.ConditionReady, basaltv1.ReasonDeleting, "the Cluster is being deleted")
		return
	case c.Spec.Paused:
		// Ready keeps what the last reconcile found: a paused Cluster that was Ready is still
		// Current for GitOps tools, and Paused says why nothing moves.
		if meta.FindStatusCondition(c.Status.Conditions, basaltv1.ConditionReady) == nil {
			conditions.Unknown(c, basaltv1.ConditionReady, basaltv1.ReasonPaused, "the Cluster was paused before its first reconcile")
		}
		if c.Status.Phase == "" {
			c.Status.Phase = basaltv1.ClusterPhasePending
		}
		return
	case c.Status.Version != "" && c.Status.Version != c.Spec.Version:
		c.Status.Phase = basaltv1.ClusterPhaseUpgrading
	case conditions.IsTrue(c, basaltv1.ClusterControlPlaneReady) && conditions.IsTrue(c, basaltv1.ClusterWorkersReady):
		c.Status.Phase = basaltv1.ClusterPhaseRunning
	case conditions.IsTrue(c, basaltv1.ClusterHostsBound):
		c.Status.Phase = basaltv1.ClusterPhaseProvisioning
	default:
		c.Status.Phase = basaltv1.ClusterPhasePending
	}
	conditions.SetSummary(c, basaltv1.ClusterHostsBound, basaltv1.ClusterCertificatesReady, basaltv1.ClusterEtcdReady,
		basaltv1.ClusterControlPlaneReady, basaltv1.ClusterWorkersReady, basaltv1.ClusterUpToDate, basaltv1.ClusterAddonsReady)
}

// setAddonsReady reports what reconcileAddons found; it keeps its last value when the add-ons
// were not looked at this reconcile.
func setAddonsReady(s *scope) {
	c := s.cluster
	switch {
	case s.addonsReady:
		conditions.True(c, basaltv1.ClusterAddonsReady, basaltv1.ReasonAddonsApplied, s.addonsMessage)
	case s.addonsRan:
		conditions.False(c, basaltv1.ClusterAddonsReady, s.addonsReason, s.addonsMessage)
	case meta.FindStatusCondition(c.Status.Conditions, basaltv1.ClusterAddonsReady) == nil:
		conditions.Unknown(c, basaltv1.ClusterAddonsReady, "NotObserved", "the add-ons have not been applied yet")
	}
}

// setCertificatesReady reports what reconcileCertificates found.
func setCertificatesReady(s *scope) {
	c := s.cluster
	switch {
	case s.pkiReason != "":
		conditions.False(c, basaltv1.ClusterCertificatesReady, s.pkiReason, s.pkiMessage)
	case s.material != nil:
		conditions.True(c, basaltv1.ClusterCertificatesReady, basaltv1.ReasonReady, s.pkiMessage)
	case meta.FindStatusCondition(c.Status.Conditions, basaltv1.ClusterCertificatesReady) == nil:
		conditions.Unknown(c, basaltv1.ClusterCertificatesReady, "NotObserved", "the cluster's certificates have not been looked at yet")
	}
}

// setEtcdReady reports what reconcileEtcd found.
func setEtcdReady(s *scope) {
	c := s.cluster
	switch {
	case s.etcdReady:
		conditions.True(c, basaltv1.ClusterEtcdReady, etcdcluster.ReasonInSync, s.etcdMessage)
	case s.etcdReason != "":
		conditions.False(c, basaltv1.ClusterEtcdReady, s.etcdReason, s.etcdMessage)
	case meta.FindStatusCondition(c.Status.Conditions, basaltv1.ClusterEtcdReady) == nil:
		conditions.Unknown(c, basaltv1.ClusterEtcdReady, "NotObserved", "etcd has not been looked at yet")
	}
}

// setRoleReady sets ControlPlaneReady or WorkersReady from the Ready conditions of the role's
// Machines. When it is False it carries the reason and message of the first Machine that is not
// Ready (an SSH failure, a failed apply step, a crashing component, a Node not Ready), so what
// stops a Machine shows on the Cluster too.
func setRoleReady(s *scope, condType string, role basaltv1.MachineRole, desired int32) {
	c := s.cluster
	var ms []*basaltv1.Machine
	for _, k := range s.groupsWithMachines() {
		if k.role != role || !wantedGroup(c, k) {
			continue
		}
		active, _ := splitDeleting(s.machines[k])
		ms = append(ms, active...)
	}
	slices.SortFunc(ms, topology.OldestFirst)
	what := "control-plane"
	if role == basaltv1.RoleWorker {
		what = "worker"
	}
	ready := int32(0)
	var blocker *basaltv1.Machine
	var blockerCond *metav1.Condition
	for _, m := range ms {
		rc := meta.FindStatusCondition(m.Status.Conditions, basaltv1.ConditionReady)
		if rc != nil && rc.Status == metav1.ConditionTrue {
			ready++
			continue
		}
		if blocker == nil && rc != nil {
			blocker, blockerCond = m, rc
		}
	}
	if ready >= desired {
		if desired == 0 {
			conditions.True(c, condType, basaltv1.ReasonReady, fmt.Sprintf("no %s Machines are desired", what))
			return
		}
		if role == basaltv1.RoleControlPlane && s.workloadProblem != "" {
			conditions.False(c, condType, basaltv1.ReasonWorkloadClusterUnreachable, s.workloadProblem)
			return
		}
		conditions.True(c, condType, basaltv1.ReasonReady, fmt.Sprintf("%d of %d %s Machines Ready", ready, desired, what))
		return
	}
	summary := fmt.Sprintf("%d of %d %s Machines Ready", ready, desired, what)
	switch {
	case s.podCIDRProblem != "":
		conditions.False(c, condType, basaltv1.ReasonPodCIDRExhausted, summary+"; "+s.podCIDRProblem)
	case blocker != nil:
		conditions.False(c, condType, blockerCond.Reason, fmt.Sprintf("%s; Machine %s: %s", summary, blocker.Name, blockerCond.Message))
	default:
		conditions.False(c, condType, basaltv1.ReasonMachinesNotReady, summary)
	}
}

// wantedGroup says whether the spec still asks for group k.
func wantedGroup(c *basaltv1.Cluster, k groupKey) bool {
	for _, g := range desiredGroups(c) {
		if g.key == k {
			return true
		}
	}
	return false
}

// setMachinesHealthy reports what reconcileRemediation did or could not do. It keeps its last
// value when remediation did not run (paused, deleting, an earlier phase failed).
func setMachinesHealthy(s *scope) {
	c := s.cluster
	switch {
	case s.remediationReason != "":
		conditions.False(c, basaltv1.ClusterMachinesHealthy, s.remediationReason, s.remediationMessage)
	case s.remediationRan:
		conditions.True(c, basaltv1.ClusterMachinesHealthy, basaltv1.ReasonReady, "no Machine needs remediation")
	}
}

// setUpToDate says whether every Machine runs spec.version, and how the rollout goes when not.
func setUpToDate(s *scope) {
	c := s.cluster
	if s.upgradeReason != "" {
		conditions.False(c, basaltv1.ClusterUpToDate, s.upgradeReason, s.upgradeMessage)
		return
	}
	var behind []string
	from := ""
	for _, k := range s.groupsWithMachines() {
		active, _ := splitDeleting(s.machines[k])
		for _, m := range active {
			if v := topology.MachineVersion(c, m); v != c.Spec.Version || upgrading(m) {
				behind = append(behind, m.Name)
				from = v
			}
		}
	}
	if len(behind) == 0 {
		conditions.True(c, basaltv1.ClusterUpToDate, basaltv1.ReasonReady, "every Machine is built for "+c.Spec.Version)
		return
	}
	conditions.False(c, basaltv1.ClusterUpToDate, basaltv1.ReasonUpgrading, fmt.Sprintf(
		"%d Machine(s) are not yet moved from %s to spec.version %s (e.g. %s)", len(behind), from, c.Spec.Version, behind[0]))
}

// setVersion sets status.version to spec.version once every desired Machine is Ready and its
// kubelet reports spec.version.
func setVersion(s *scope) {
	c := s.cluster
	want := c.Status.ControlPlane.Desired + c.Status.Workers.Desired
	n := int32(0)
	for _, k := range s.groupsWithMachines() {
		active, _ := splitDeleting(s.machines[k])
		for _, m := range active {
			if m.Status.Version != c.Spec.Version {
				return
			}
			n++
		}
	}
	if n >= want && c.Status.ControlPlane.Ready >= c.Status.ControlPlane.Desired && c.Status.Workers.Ready >= c.Status.Workers.Desired {
		c.Status.Version = c.Spec.Version
	}
}

// setHostsBound says, per group, how many Hosts are missing.
func setHostsBound(s *scope) {
	c := s.cluster
	var missing []string
	reason := basaltv1.ReasonWaitingForHosts
	for _, g := range desiredGroups(c) {
		if msg, bad := s.selectorErrors[g.key]; bad {
			conditions.False(c, basaltv1.ClusterHostsBound, basaltv1.ReasonInvalidSelector, msg)
			return
		}
		if n := s.shortfall[g.key]; n > 0 {
			msg := fmt.Sprintf("%s needs %d more Available Host(s) matching %s", g.key, n, g.selectorField)
			for _, p := range s.failingHosts[g.key] {
				// A matching Host that cannot become Available says why, with its reason.
				if reason == basaltv1.ReasonWaitingForHosts {
					reason = p.reason
				}
				msg += fmt.Sprintf("; Host %s matches but %s: %s", p.host, p.reason, p.message)
			}
			missing = append(missing, msg)
		}
	}
	switch {
	case len(missing) > 0:
		conditions.False(c, basaltv1.ClusterHostsBound, reason, strings.Join(missing, "; "))
	case c.Status.ControlPlane.Bound < c.Status.ControlPlane.Desired || c.Status.Workers.Bound < c.Status.Workers.Desired:
		conditions.False(c, basaltv1.ClusterHostsBound, basaltv1.ReasonWaitingForHosts, "Machines are being created and bound")
	default:
		conditions.True(c, basaltv1.ClusterHostsBound, basaltv1.ReasonHostsBound, "every Machine has a Host")
	}
}

// countGroup counts the Machines of one group: bound to a Host, Ready, and Ready at spec.version.
func countGroup(c *basaltv1.Cluster, desired int32, ms []*basaltv1.Machine) basaltv1.ReplicaCounts {
	counts := basaltv1.ReplicaCounts{Desired: desired}
	for _, m := range ms {
		if !m.DeletionTimestamp.IsZero() {
			continue
		}
		if m.Spec.HostRef != nil {
			counts.Bound++
		}
		if meta.IsStatusConditionTrue(m.Status.Conditions, basaltv1.ConditionReady) {
			counts.Ready++
			if m.Status.Version == c.Spec.Version {
				counts.Updated++
			}
		}
	}
	return counts
}

// endpoint is spec.controlPlane.endpoint, else spec.controlPlane.virtualIP's address, else, by
// default, the address of a bound control-plane Machine's Host: the one in use as long as one of
// the Hosts still has it (a default endpoint moves only when its Host leaves the cluster, since it
// re-issues the API server certificates and the admin kubeconfig), else the oldest bound
// control-plane Machine's.
func endpoint(s *scope) *basaltv1.APIEndpoint {
	if ep := s.cluster.Spec.ControlPlane.Endpoint; ep != nil {
		out := ep.DeepCopy()
		if out.Port == 0 {
			out.Port = topology.APIServerPort
		}
		return out
	}
	if v := s.cluster.Spec.ControlPlane.VirtualIP; v != nil {
		return &basaltv1.APIEndpoint{Host: v.Address, Port: topology.APIServerPort}
	}
	cp, _ := s.boundNodes()
	if cur := s.cluster.Status.ControlPlaneEndpoint; cur != nil {
		for _, n := range cp {
			if n.ip == cur.Host && n.machine.DeletionTimestamp.IsZero() {
				return cur.DeepCopy()
			}
		}
	}
	for _, n := range cp {
		if n.machine.DeletionTimestamp.IsZero() {
			return &basaltv1.APIEndpoint{Host: n.ip, Port: topology.APIServerPort}
		}
	}
	return nil
}
