package cluster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
	"github.com/basalt-dev/basalt/bootstrap/components"
	"github.com/basalt-dev/basalt/controllers/artifactsource"
	"github.com/basalt-dev/basalt/controllers/topology"
	"github.com/basalt-dev/basalt/controllers/workload"
)

// Requeues of a rollout.
const (
	// upgradeRequeue is how often a rollout in flight (a drain, a Machine moving) is looked at.
	upgradeRequeue = 5 * time.Second
)

// reconcileUpgrade moves the Cluster's Machines to spec.version in place (design §6): the control
// plane first, one Machine at a time and only while every control-plane Machine is Ready and etcd
// is in sync; then the workers, at most spec.upgrade.maxUnavailableWorkers unavailable at once.
// Each Machine's node is cordoned and drained (bounded by spec.nodeDrainTimeout), then its
// spec.version is set, which gives it a Plan with the new binaries; the agent restarts the
// components whose binaries changed. Once the Machine is Ready and its kubelet reports the new
// version, its node is uncordoned and the next Machine goes.
//
// Every step's state is on the Machine (annotation basalt.dev/drain-started-at while it is in
// flight, spec.version once moved), so a manager restarted at any point carries on where it was.
func (r *Reconciler) reconcileUpgrade(ctx context.Context, s *scope) (ctrl.Result, error) {
	c := s.cluster
	if s.etcdRestoring {
		s.upgradeReason, s.upgradeMessage = basaltv1.ReasonEtcdRestoring, "the rollout waits for the etcd restore to complete"
		return ctrl.Result{}, nil
	}
	target := c.Spec.Version
	cp, workers := s.activeMachines(basaltv1.RoleControlPlane), s.activeMachines(basaltv1.RoleWorker)
	behindCP, behindWorkers := behind(c, cp), behind(c, workers)
	inFlight := func(ms []*basaltv1.Machine) []*basaltv1.Machine {
		return slices.DeleteFunc(slices.Clone(ms), func(m *basaltv1.Machine) bool { return !upgrading(m) })
	}
	flyingCP, flyingWorkers := inFlight(cp), inFlight(workers)
	if len(behindCP)+len(behindWorkers)+len(flyingCP)+len(flyingWorkers) == 0 {
		return ctrl.Result{}, nil
	}
	if c.Spec.Upgrade.Strategy == basaltv1.UpgradeReplace {
		s.upgradeReason, s.upgradeMessage = basaltv1.ReasonNotImplemented,
			"spec.upgrade.strategy Replace is not built yet; set it to InPlace to upgrade these Machines where they are"
		return ctrl.Result{}, nil
	}
	if _, err := components.ParseVersion(target); err != nil {
		s.upgradeReason, s.upgradeMessage = basaltv1.ReasonPlanInvalid, fmt.Sprintf(
			"spec.version %s cannot be built by this manager (%v); no Machine is moved", target, err)
		return ctrl.Result{}, nil
	}
	if err := r.artifacts().Available(ctx, c.Spec.Artifacts.Mirror, target); err != nil {
		var nf *artifactsource.NotFoundError
		if !errors.As(err, &nf) {
			return ctrl.Result{}, err
		}
		s.upgradeReason, s.upgradeMessage = basaltv1.ReasonArtifactSetNotFound, fmt.Sprintf(
			"spec.version %s: %v; no Machine is moved until there is one", target, err)
		return ctrl.Result{}, nil
	}
	if c.Status.Version == "" {
		// The cluster never ran: nothing to drain or keep available. Rebuild every Machine for
		// the version asked for.
		for _, m := range append(behindCP, behindWorkers...) {
			if err := r.setMachineVersion(ctx, m, target, false); err != nil {
				return ctrl.Result{}, err
			}
		}
		s.upgradeReason, s.upgradeMessage = basaltv1.ReasonUpgrading, "the cluster has not run yet: its Machines are built for "+target+" directly"
		return ctrl.Result{RequeueAfter: upgradeRequeue}, nil
	}

	res := ctrl.Result{RequeueAfter: upgradeRequeue}
	var progress []string
	// Carry on with the Machines in flight.
	for _, m := range append(slices.Clone(flyingCP), flyingWorkers...) {
		msg, done, err := r.advanceUpgrade(ctx, s, m)
		if err != nil {
			return ctrl.Result{}, err
		}
		if done {
			flyingCP = slices.DeleteFunc(flyingCP, func(x *basaltv1.Machine) bool { return x == m })
			flyingWorkers = slices.DeleteFunc(flyingWorkers, func(x *basaltv1.Machine) bool { return x == m })
			behindCP = slices.DeleteFunc(behindCP, func(x *basaltv1.Machine) bool { return x == m })
			behindWorkers = slices.DeleteFunc(behindWorkers, func(x *basaltv1.Machine) bool { return x == m })
			continue
		}
		progress = append(progress, msg)
	}

	// Start the next Machines, if the cluster is healthy enough.
	blocked := ""
	switch {
	case len(behindCP) > 0 || len(flyingCP) > 0:
		candidates := slices.DeleteFunc(slices.Clone(behindCP), upgrading)
		switch {
		case len(flyingCP) > 0 || len(candidates) == 0:
		case s.cpDeleting():
			blocked = "a control-plane Machine is being deleted; the next one is upgraded once it is gone"
		case !s.etcdReady:
			blocked = "etcd is not in sync (" + s.etcdMessage + "); the next control-plane Machine is upgraded once it is"
		case notReady(cp) != "" || int32(len(cp)) < c.Spec.ControlPlane.Replicas:
			blocked = "control-plane Machines are not all Ready (" + notReady(cp) + "); the next one is upgraded once they are"
		default:
			m := candidates[0]
			msg, err := r.startUpgrade(ctx, s, m)
			if err != nil {
				return ctrl.Result{}, err
			}
			progress = append(progress, msg)
		}
	case len(behindWorkers) > 0:
		limit := max(c.Spec.Upgrade.MaxUnavailableWorkers, 1)
		unavailable := int32(len(flyingWorkers))
		for _, m := range workers {
			if !upgrading(m) && !meta.IsStatusConditionTrue(m.Status.Conditions, basaltv1.ConditionReady) {
				unavailable++
			}
		}
		if unavailable >= limit && len(flyingWorkers) == 0 {
			blocked = fmt.Sprintf("%d worker Machine(s) are not Ready (%s) and spec.upgrade.maxUnavailableWorkers is %d; the next one is upgraded once they are",
				unavailable, notReady(workers), limit)
		}
		for _, m := range behindWorkers {
			if unavailable >= limit {
				break
			}
			if upgrading(m) {
				continue
			}
			msg, err := r.startUpgrade(ctx, s, m)
			if err != nil {
				return ctrl.Result{}, err
			}
			progress = append(progress, msg)
			unavailable++
		}
	}

	updated := countAt(c, cp) + countAt(c, workers)
	summary := fmt.Sprintf("%d of %d Machines run %s", updated, len(cp)+len(workers), target)
	switch {
	case len(progress) > 0:
		s.upgradeReason, s.upgradeMessage = basaltv1.ReasonUpgrading, summary+"; "+strings.Join(progress, "; ")
	case blocked != "":
		s.upgradeReason, s.upgradeMessage = basaltv1.ReasonUpgradeBlocked, summary+"; "+blocked
		res = ctrl.Result{RequeueAfter: waitRequeue}
	default:
		s.upgradeReason, s.upgradeMessage = basaltv1.ReasonUpgrading, summary
	}
	return res, nil
}

// startUpgrade marks m as in flight and cordons its node; the drain runs in advanceUpgrade.
func (r *Reconciler) startUpgrade(ctx context.Context, s *scope, m *basaltv1.Machine) (string, error) {
	before := m.DeepCopy()
	if m.Annotations == nil {
		m.Annotations = map[string]string{}
	}
	m.Annotations[basaltv1.AnnotationDrainStartedAt] = r.now().UTC().Format(time.RFC3339)
	if err := r.Client.Patch(ctx, m, client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{})); err != nil {
		return "", fmt.Errorf("marking Machine %s for upgrade: %w", m.Name, err)
	}
	ctrl.LoggerFrom(ctx).Info("Upgrading Machine", "cluster", klog.KObj(s.cluster), "machine", klog.KObj(m), "from", topology.MachineVersion(s.cluster, m), "to", s.cluster.Spec.Version, "reason", basaltv1.ReasonUpgrading)
	r.Recorder.Eventf(s.cluster, m, corev1.EventTypeNormal, basaltv1.ReasonUpgrading, "Upgrade", "Upgrading Machine %s from %s to %s: draining its node", m.Name, topology.MachineVersion(s.cluster, m), s.cluster.Spec.Version)
	msg, _, err := r.advanceUpgrade(ctx, s, m)
	return msg, err
}

// advanceUpgrade takes one step for a Machine in flight: drain its node (bounded), then move it to
// spec.version, then, once it runs that version and is Ready, uncordon it. done is true when the
// Machine has finished.
func (r *Reconciler) advanceUpgrade(ctx context.Context, s *scope, m *basaltv1.Machine) (msg string, done bool, err error) {
	c := s.cluster
	target := c.Spec.Version
	started, perr := time.Parse(time.RFC3339, m.Annotations[basaltv1.AnnotationDrainStartedAt])
	if perr != nil {
		started = r.now() // unreadable: start the bound again rather than skip the drain
	}
	if topology.MachineVersion(c, m) != target {
		timeout := topology.NodeDrainTimeout(c)
		elapsed := r.now().Sub(started)
		if timeout > 0 && elapsed < timeout {
			st, derr := r.drainNode(ctx, c, m.Name)
			if derr != nil || !st.Done() {
				what := st.String()
				if derr != nil {
					what = derr.Error()
				}
				return fmt.Sprintf("draining Machine %s (%s; at most %s more)", m.Name, what, (timeout - elapsed).Round(time.Second)), false, nil
			}
		} else if timeout > 0 {
			if st, derr := r.drainNode(ctx, c, m.Name); derr != nil || !st.Done() {
				left := st.String()
				if derr != nil {
					left = derr.Error()
				}
				r.Recorder.Eventf(c, m, corev1.EventTypeWarning, "DrainTimedOut", "Upgrade",
					"Upgrading Machine %s although its node is not drained after %s (spec.nodeDrainTimeout): %s", m.Name, timeout, left)
			}
		}
		if err := r.setMachineVersion(ctx, m, target, true); err != nil {
			return "", false, err
		}
		return fmt.Sprintf("moving Machine %s to %s", m.Name, target), false, nil
	}
	ready := meta.IsStatusConditionTrue(m.Status.Conditions, basaltv1.ConditionReady)
	if !ready || m.Status.Version != target {
		have := m.Status.Version
		if have == "" {
			have = "nothing yet"
		}
		return fmt.Sprintf("waiting for Machine %s to run %s (its kubelet reports %s, Ready=%v)", m.Name, target, have, ready), false, nil
	}
	if topology.NodeDrainTimeout(c) > 0 {
		wc, werr := r.workloadClient(ctx, c)
		if werr == nil {
			werr = workload.Cordon(ctx, wc, m.Name, false)
		}
		if werr != nil {
			return fmt.Sprintf("Machine %s runs %s; uncordoning its node: %v", m.Name, target, werr), false, nil
		}
	}
	before := m.DeepCopy()
	delete(m.Annotations, basaltv1.AnnotationDrainStartedAt)
	if err := r.Client.Patch(ctx, m, client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{})); err != nil {
		return "", false, fmt.Errorf("finishing the upgrade of Machine %s: %w", m.Name, err)
	}
	ctrl.LoggerFrom(ctx).Info("Upgraded Machine", "cluster", klog.KObj(c), "machine", klog.KObj(m), "version", target, "took", r.now().Sub(started).Round(time.Second).String())
	r.Recorder.Eventf(c, m, corev1.EventTypeNormal, "Upgraded", "Upgrade", "Machine %s runs %s (took %s)", m.Name, target, r.now().Sub(started).Round(time.Second))
	return "", true, nil
}

// drainNode cordons the Machine's node and runs one drain pass.
func (r *Reconciler) drainNode(ctx context.Context, c *basaltv1.Cluster, node string) (workload.DrainStatus, error) {
	wc, err := r.workloadClient(ctx, c)
	if err != nil {
		return workload.DrainStatus{}, err
	}
	if err := workload.Cordon(ctx, wc, node, true); err != nil {
		return workload.DrainStatus{}, err
	}
	return workload.Drain(ctx, wc, node)
}

func (r *Reconciler) workloadClient(ctx context.Context, c *basaltv1.Cluster) (client.Client, error) {
	if r.Workload == nil {
		return nil, fmt.Errorf("the manager has no workload cluster access")
	}
	return r.Workload.For(ctx, c)
}

// setMachineVersion writes spec.version on m (optimistic lock), with an event when the Machine was
// drained first.
func (r *Reconciler) setMachineVersion(ctx context.Context, m *basaltv1.Machine, version string, drained bool) error {
	if m.Spec.Version == version {
		return nil
	}
	before := m.DeepCopy()
	from := m.Spec.Version
	m.Spec.Version = version
	if err := r.Client.Patch(ctx, m, client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{})); err != nil {
		return fmt.Errorf("setting spec.version of Machine %s to %s: %w", m.Name, version, err)
	}
	ctrl.LoggerFrom(ctx).Info("Moved Machine to a new version", "machine", klog.KObj(m), "from", from, "to", version, "drained", drained)
	return nil
}

// activeMachines returns the Machines of a role in groups the spec still asks for, not being
// deleted, oldest first.
func (s *scope) activeMachines(role basaltv1.MachineRole) []*basaltv1.Machine {
	var out []*basaltv1.Machine
	for _, k := range s.groupsWithMachines() {
		if k.role != role || !wantedGroup(s.cluster, k) {
			continue
		}
		active, _ := splitDeleting(s.machines[k])
		out = append(out, active...)
	}
	slices.SortFunc(out, topology.OldestFirst)
	return out
}

// cpDeleting says whether a control-plane Machine is being deleted.
func (s *scope) cpDeleting() bool {
	_, deleting := splitDeleting(s.machines[groupKey{role: basaltv1.RoleControlPlane}])
	return len(deleting) > 0
}

// behind returns the Machines not built for spec.version.
func behind(c *basaltv1.Cluster, ms []*basaltv1.Machine) []*basaltv1.Machine {
	var out []*basaltv1.Machine
	for _, m := range ms {
		if topology.MachineVersion(c, m) != c.Spec.Version {
			out = append(out, m)
		}
	}
	return out
}

// countAt counts the Machines Ready at spec.version.
func countAt(c *basaltv1.Cluster, ms []*basaltv1.Machine) int {
	n := 0
	for _, m := range ms {
		if m.Status.Version == c.Spec.Version && meta.IsStatusConditionTrue(m.Status.Conditions, basaltv1.ConditionReady) {
			n++
		}
	}
	return n
}

// upgrading says whether m is in flight in a rollout.
func upgrading(m *basaltv1.Machine) bool {
	_, ok := m.Annotations[basaltv1.AnnotationDrainStartedAt]
	return ok
}

// notReady names the Machines of ms that are not Ready, "" when all are.
func notReady(ms []*basaltv1.Machine) string {
	var names []string
	for _, m := range ms {
		if !meta.IsStatusConditionTrue(m.Status.Conditions, basaltv1.ConditionReady) {
			names = append(names, m.Name)
		}
	}
	return strings.Join(names, ", ")
}
