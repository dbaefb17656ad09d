package cluster

import (
	"context"
	"fmt"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
	"github.com/basalt-dev/basalt/controllers/hostclaim"
	"github.com/basalt-dev/basalt/controllers/pkisecrets"
	"github.com/basalt-dev/basalt/controllers/skeleton"
	"github.com/basalt-dev/basalt/controllers/topology"
)

// groupKey names a group of interchangeable Machines: the control plane, or one worker pool.
type groupKey struct {
	role basaltv1.MachineRole
	pool string
}

func (g groupKey) String() string {
	if g.role == basaltv1.RoleControlPlane {
		return "control plane"
	}
	return "worker pool " + g.pool
}

// machineSet holds a Cluster's Machines by group, each group sorted oldest first.
type machineSet map[groupKey][]*basaltv1.Machine

// desiredGroups returns every group the spec asks for with its replica count and selector, the
// control plane first.
func desiredGroups(c *basaltv1.Cluster) []desiredGroup {
	groups := []desiredGroup{{key: groupKey{role: basaltv1.RoleControlPlane}, replicas: c.Spec.ControlPlane.Replicas, selector: c.Spec.ControlPlane.HostSelector, selectorField: "spec.controlPlane.hostSelector"}}
	for i, w := range c.Spec.Workers {
		groups = append(groups, desiredGroup{key: groupKey{role: basaltv1.RoleWorker, pool: w.Name}, replicas: w.Replicas, selector: w.HostSelector, selectorField: fmt.Sprintf("spec.workers[%d].hostSelector", i)})
	}
	return groups
}

type desiredGroup struct {
	key           groupKey
	replicas      int32
	selector      metav1.LabelSelector
	selectorField string
}

// observe reads the Cluster's Machines and the Hosts of its namespace into the scope.
func (r *Reconciler) observe(ctx context.Context, s *scope) error {
	c := s.cluster
	ml := &basaltv1.MachineList{}
	if err := r.Client.List(ctx, ml, client.InNamespace(c.Namespace), client.MatchingLabels{basaltv1.LabelClusterName: c.Name}); err != nil {
		return err
	}
	s.machines = machineSet{}
	for i := range ml.Items {
		m := &ml.Items[i]
		k := groupKey{role: m.Spec.Role, pool: m.Spec.Pool}
		s.machines[k] = append(s.machines[k], m)
	}
	for _, ms := range s.machines {
		sort.Slice(ms, func(i, j int) bool {
			ti, tj := ms[i].CreationTimestamp, ms[j].CreationTimestamp
			if !ti.Equal(&tj) {
				return ti.Before(&tj)
			}
			return ms[i].Name < ms[j].Name
		})
	}
	hl := &basaltv1.HostList{}
	if err := r.Client.List(ctx, hl, client.InNamespace(c.Namespace)); err != nil {
		return err
	}
	s.hosts = hl.Items
	return nil
}

// reconcileMachines creates the Machines the spec asks for and deletes the ones it no longer
// does. Surplus Machines without a Host go first, then the newest. The control plane shrinks one
// Machine at a time: a second deletion waits until the first is gone.
func (r *Reconciler) reconcileMachines(ctx context.Context, s *scope) (ctrl.Result, error) {
	c := s.cluster
	wanted := map[groupKey]bool{}
	var res ctrl.Result
	for _, g := range desiredGroups(c) {
		wanted[g.key] = true
		active, deleting := splitDeleting(s.machines[g.key])
		for n := int32(len(active)); n < g.replicas; n++ {
			m, err := r.createMachine(ctx, c, g.key)
			if err != nil {
				return ctrl.Result{}, err
			}
			s.machines[g.key] = append(s.machines[g.key], m)
		}
		surplus := int32(len(active)) - g.replicas
		if surplus <= 0 {
			continue
		}
		if g.key.role == basaltv1.RoleControlPlane {
			if len(deleting) > 0 {
				res = skeleton.Sooner(res, ctrl.Result{RequeueAfter: waitRequeue})
				continue
			}
			surplus = 1
		}
		for _, m := range pickForDeletion(active, surplus, endpointHost(s)) {
			if err := r.deleteMachine(ctx, c, m, "ScaleDown"); err != nil {
				return ctrl.Result{}, err
			}
		}
	}
	for k, ms := range s.machines {
		if wanted[k] {
			continue
		}
		active, _ := splitDeleting(ms)
		for _, m := range active {
			if err := r.deleteMachine(ctx, c, m, "PoolRemoved"); err != nil {
				return ctrl.Result{}, err
			}
		}
	}
	return res, nil
}

func (r *Reconciler) createMachine(ctx context.Context, c *basaltv1.Cluster, k groupKey) (*basaltv1.Machine, error) {
	prefix := c.Name + "-cp-"
	if k.role == basaltv1.RoleWorker {
		prefix = c.Name + "-" + k.pool + "-"
	}
	m := &basaltv1.Machine{
		ObjectMeta: metav1.ObjectMeta{
			Namespace:    c.Namespace,
			GenerateName: prefix,
			Labels: map[string]string{
				basaltv1.LabelClusterName: c.Name,
				basaltv1.LabelRole:        string(k.role),
			},
		},
		// The version is pinned at creation: a Machine is never moved to another version by a
		// change of the Cluster's spec.version, since upgrades are not implemented yet.
		Spec: basaltv1.MachineSpec{Cluster: c.Name, Role: k.role, Pool: k.pool, Version: topology.RunningVersion(c)},
	}
	if k.pool != "" {
		m.Labels[basaltv1.LabelPool] = k.pool
	}
	if err := controllerutil.SetControllerReference(c, m, r.Client.Scheme()); err != nil {
		return nil, err
	}
	if err := r.Client.Create(ctx, m); err != nil {
		return nil, fmt.Errorf("creating a Machine for the %s: %w", k, err)
	}
	ctrl.LoggerFrom(ctx).Info("Created Machine", "cluster", klog.KObj(c), "machine", klog.KObj(m), "group", k.String(), "reason", "ScaleUp")
	r.Recorder.Eventf(c, m, "Normal", "MachineCreated", "ScaleUp", "Created Machine %s for the %s", m.Name, k)
	return m, nil
}

func (r *Reconciler) deleteMachine(ctx context.Context, c *basaltv1.Cluster, m *basaltv1.Machine, reason string) error {
	if err := r.Client.Delete(ctx, m); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting Machine %s: %w", m.Name, err)
	}
	ctrl.LoggerFrom(ctx).Info("Deleted Machine", "cluster", klog.KObj(c), "machine", klog.KObj(m), "reason", reason)
	r.Recorder.Eventf(c, m, "Normal", "MachineDeleted", reason, "Deleted Machine %s", m.Name)
	return nil
}

// pickForDeletion chooses n Machines to remove from active (oldest first): unbound ones first,
// then the newest, and the Machine on keepHost (the Host serving the default API endpoint) last,
// so scaling down never takes away the address users and kubeconfigs reach the cluster at.
func pickForDeletion(active []*basaltv1.Machine, n int32, keepHost string) []*basaltv1.Machine {
	var unbound, bound, keep []*basaltv1.Machine
	for i := len(active) - 1; i >= 0; i-- {
		switch m := active[i]; {
		case m.Spec.HostRef == nil:
			unbound = append(unbound, m)
		case keepHost != "" && m.Spec.HostRef.Name == keepHost:
			keep = append(keep, m)
		default:
			bound = append(bound, m)
		}
	}
	return append(append(unbound, bound...), keep...)[:n]
}

// endpointHost is the name of the Host whose address is the Cluster's API endpoint, or "" when
// the endpoint is a VIP or DNS name of the user's (spec.controlPlane.endpoint).
func endpointHost(s *scope) string {
	ep := s.cluster.Status.ControlPlaneEndpoint
	if ep == nil || s.cluster.Spec.ControlPlane.Endpoint != nil {
		return ""
	}
	for i := range s.hosts {
		if ip, err := topology.NodeIP(&s.hosts[i]); err == nil && ip.String() == ep.Host {
			return s.hosts[i].Name
		}
	}
	return ""
}

func splitDeleting(ms []*basaltv1.Machine) (active, deleting []*basaltv1.Machine) {
	for _, m := range ms {
		if m.DeletionTimestamp.IsZero() {
			active = append(active, m)
		} else {
			deleting = append(deleting, m)
		}
	}
	return active, deleting
}

// reconcileBindings gives every unbound Machine a Host. A Host is claimed (status.consumerRef,
// optimistic lock) before the Machine's spec.hostRef is written, so after a crash between the two
// the claim is found and adopted instead of a second Host being taken.
func (r *Reconciler) reconcileBindings(ctx context.Context, s *scope) (ctrl.Result, error) {
	claimed := map[string]*basaltv1.Host{}
	for i := range s.hosts {
		if ref := s.hosts[i].Status.ConsumerRef; ref != nil {
			claimed[ref.Name] = &s.hosts[i]
		}
	}
	for _, g := range desiredGroups(s.cluster) {
		sel, err := metav1.LabelSelectorAsSelector(&g.selector)
		if err != nil {
			s.selectorErrors[g.key] = fmt.Sprintf("%s is invalid: %v", g.selectorField, err)
			continue
		}
		active, _ := splitDeleting(s.machines[g.key])
		for _, m := range active {
			if m.Spec.HostRef != nil {
				continue
			}
			h := claimed[m.Name]
			if h == nil {
				h = pickHost(s.hosts, sel)
				if h == nil {
					s.shortfall[g.key]++
					continue
				}
				if err := hostclaim.Claim(ctx, r.Client, h, m.Name); err != nil {
					if apierrors.IsConflict(err) {
						// Someone else changed the Host; look again with fresh data.
						return ctrl.Result{RequeueAfter: 100 * time.Millisecond}, nil
					}
					return ctrl.Result{}, fmt.Errorf("claiming Host %s for Machine %s: %w", h.Name, m.Name, err)
				}
			}
			before := m.DeepCopy()
			m.Spec.HostRef = &basaltv1.LocalObjectReference{Name: h.Name}
			if err := r.Client.Patch(ctx, m, client.MergeFrom(before)); err != nil {
				return ctrl.Result{}, fmt.Errorf("binding Machine %s to Host %s: %w", m.Name, h.Name, err)
			}
			ctrl.LoggerFrom(ctx).Info("Bound Machine to Host", "machine", klog.KObj(m), "host", klog.KObj(h), "reason", "HostAvailable")
			r.Recorder.Eventf(s.cluster, m, "Normal", "HostBound", "Bind", "Bound Machine %s to Host %s", m.Name, h.Name)
		}
	}
	var res ctrl.Result
	for k, n := range s.shortfall {
		if n > 0 {
			res = ctrl.Result{RequeueAfter: waitRequeue}
			for _, g := range desiredGroups(s.cluster) {
				if g.key == k {
					sel, _ := metav1.LabelSelectorAsSelector(&g.selector)
					s.failingHosts[k] = failingHosts(s.hosts, sel)
				}
			}
		}
	}
	return res, nil
}

// hostProblem is why a Host that matches a selector cannot become Available.
type hostProblem struct{ host, reason, message string }

// failingHosts lists the unclaimed Hosts matching sel whose agent cannot be brought on or heard
// from (an SSH failure, ...), by name.
func failingHosts(hosts []basaltv1.Host, sel labels.Selector) []hostProblem {
	var out []hostProblem
	for i := range hosts {
		h := &hosts[i]
		if h.Status.ConsumerRef != nil || !h.DeletionTimestamp.IsZero() || !sel.Matches(labels.Set(h.Labels)) {
			continue
		}
		if reason, msg, failed := topology.HostFailure(h); failed {
			out = append(out, hostProblem{host: h.Name, reason: reason, message: msg})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].host < out[j].host })
	return out
}

// pickHost returns the first Host, by name, that is free and matches sel.
func pickHost(hosts []basaltv1.Host, sel labels.Selector) *basaltv1.Host {
	var best *basaltv1.Host
	for i := range hosts {
		h := &hosts[i]
		if !hostclaim.Available(h) || !sel.Matches(labels.Set(h.Labels)) {
			continue
		}
		if best == nil || h.Name < best.Name {
			best = h
		}
	}
	return best
}

// reconcileDelete deletes the Cluster's Machines and keeps the finalizer until they are gone.
// Each Machine's own finalizer drains nothing (the whole cluster goes), wipes and releases its
// Host.
//
// The Machines' waits are bounded (etcd removal is skipped for a Cluster being deleted, the wipe
// lasts at most wipeTimeout); a deletion still going after deleteStallAfter says so on the
// Cluster's Ready condition, naming the Machine and what it waits for. The annotation
// basalt.dev/force-delete=true on the Cluster is copied to every Machine, which then stops waiting
// for its host.
func (r *Reconciler) reconcileDelete(ctx context.Context, s *scope) (ctrl.Result, error) {
	c := s.cluster
	force := c.Annotations[basaltv1.AnnotationForceDelete] == "true"
	var waiting []*basaltv1.Machine
	for _, ms := range s.machines {
		for _, m := range ms {
			waiting = append(waiting, m)
			if force && m.Annotations[basaltv1.AnnotationForceDelete] != "true" {
				before := m.DeepCopy()
				if m.Annotations == nil {
					m.Annotations = map[string]string{}
				}
				m.Annotations[basaltv1.AnnotationForceDelete] = "true"
				if err := r.Client.Patch(ctx, m, client.MergeFrom(before)); err != nil && !apierrors.IsNotFound(err) {
					return ctrl.Result{}, fmt.Errorf("annotating Machine %s with %s: %w", m.Name, basaltv1.AnnotationForceDelete, err)
				}
			}
			if m.DeletionTimestamp.IsZero() {
				if err := r.deleteMachine(ctx, c, m, "ClusterDeleted"); err != nil {
					return ctrl.Result{}, err
				}
			}
		}
	}
	if len(waiting) > 0 {
		sort.Slice(waiting, func(i, j int) bool { return waiting[i].Name < waiting[j].Name })
		if since := r.now().Sub(c.DeletionTimestamp.Time); since > deleteStallAfter {
			m := waiting[0]
			why := "no reason reported"
			if rc := meta.FindStatusCondition(m.Status.Conditions, basaltv1.ConditionReady); rc != nil {
				why = rc.Message
			}
			s.deleteStalled = fmt.Sprintf("deleting for %s: %d Machine(s) left; Machine %s: %s. Annotate the Cluster %s=true to stop waiting for unreachable hosts",
				since.Round(time.Second), len(waiting), m.Name, why, basaltv1.AnnotationForceDelete)
		}
		return ctrl.Result{RequeueAfter: waitRequeue}, nil
	}
	// The Secrets are owned by the Cluster, but a management cluster's garbage collector may be
	// slow or absent: delete them here, so a deleted Cluster never leaves its keys behind.
	if err := r.Client.DeleteAllOf(ctx, &corev1.Secret{}, client.InNamespace(s.cluster.Namespace),
		client.MatchingLabels{basaltv1.LabelClusterName: s.cluster.Name}, client.HasLabels{pkisecrets.LabelKind}); err != nil {
		return ctrl.Result{}, fmt.Errorf("deleting the Cluster's Secrets: %w", err)
	}
	if r.Workload != nil {
		r.Workload.Forget(c.UID)
	}
	r.workloadDone.Delete(s.cluster.UID)
	controllerutil.RemoveFinalizer(s.cluster, basaltv1.ClusterFinalizer)
	return ctrl.Result{}, nil
}
