package machine

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
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

	"github.com/basalt-dev/basalt/agents/planstore"
	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
	"github.com/basalt-dev/basalt/bootstrap/plan"
	"github.com/basalt-dev/basalt/controllers/hostclaim"
	"github.com/basalt-dev/basalt/controllers/topology"
	"github.com/basalt-dev/basalt/controllers/workload"
)

// observeCluster reads the Cluster named by spec.cluster into the scope.
func (r *Reconciler) observeCluster(ctx context.Context, s *scope) error {
	c := &basaltv1.Cluster{}
	err := r.Client.Get(ctx, client.ObjectKey{Namespace: s.machine.Namespace, Name: s.machine.Spec.Cluster}, c)
	switch {
	case apierrors.IsNotFound(err):
		return nil
	case err != nil:
		return err
	}
	s.cluster = c
	return nil
}

// reconcileClusterLink labels the Machine with its cluster and makes the Cluster an owner, so
// that `kubectl get machines -l basalt.dev/cluster=NAME` works and deleting the Cluster cascades
// to Machines created by hand too.
func (r *Reconciler) reconcileClusterLink(_ context.Context, s *scope) (ctrl.Result, error) {
	m := s.machine
	if m.Labels == nil {
		m.Labels = map[string]string{}
	}
	m.Labels[basaltv1.LabelClusterName] = m.Spec.Cluster
	m.Labels[basaltv1.LabelRole] = string(m.Spec.Role)
	if s.cluster == nil {
		return ctrl.Result{RequeueAfter: hostRequeue}, nil
	}
	for _, o := range m.OwnerReferences {
		if o.UID == s.cluster.UID {
			return ctrl.Result{}, nil
		}
	}
	m.OwnerReferences = append(m.OwnerReferences, metav1.OwnerReference{
		APIVersion: basaltv1.GroupVersion.String(),
		Kind:       "Cluster",
		Name:       s.cluster.Name,
		UID:        s.cluster.UID,
	})
	return ctrl.Result{}, nil
}

// reconcileHost makes sure the Host named by spec.hostRef is claimed by this Machine. A Host is
// claimed by writing status.consumerRef with an optimistic lock, so two Machines racing for one
// Host can never both win: the loser gets a conflict, re-reads, and sees HostInUse.
func (r *Reconciler) reconcileHost(ctx context.Context, s *scope) (ctrl.Result, error) {
	m := s.machine
	if m.Spec.HostRef == nil {
		s.hostProblem, s.hostMessage = basaltv1.ReasonWaitingForHost, "no Host is bound yet; the Cluster controller binds an Available Host that matches the selector"
		return ctrl.Result{}, r.explainNoHost(ctx, s)
	}
	h := &basaltv1.Host{}
	if err := r.Client.Get(ctx, client.ObjectKey{Namespace: m.Namespace, Name: m.Spec.HostRef.Name}, h); err != nil {
		if apierrors.IsNotFound(err) {
			s.hostProblem, s.hostMessage = basaltv1.ReasonHostNotFound, fmt.Sprintf("Host %q does not exist", m.Spec.HostRef.Name)
			return ctrl.Result{RequeueAfter: hostRequeue}, nil
		}
		return ctrl.Result{}, err
	}
	s.host = h
	switch {
	case h.Status.ConsumerRef != nil && h.Status.ConsumerRef.Name == m.Name:
		return ctrl.Result{}, nil
	case h.Status.ConsumerRef != nil:
		s.hostProblem, s.hostMessage = basaltv1.ReasonHostInUse, fmt.Sprintf("Host %q is used by Machine %q", h.Name, h.Status.ConsumerRef.Name)
		return ctrl.Result{}, nil
	case !h.DeletionTimestamp.IsZero():
		s.hostProblem, s.hostMessage = basaltv1.ReasonHostNotFound, fmt.Sprintf("Host %q is being deleted", h.Name)
		return ctrl.Result{}, nil
	case h.Status.State != basaltv1.HostStateAvailable:
		s.hostProblem, s.hostMessage = basaltv1.ReasonHostNotAvailable, fmt.Sprintf("Host %q is %s; waiting for it to become Available", h.Name, stateOrUnknown(h.Status.State))
		if reason, msg, failed := topology.HostFailure(h); failed {
			// Say what stops the Host (an SSH failure, ...) with its own reason.
			s.hostProblem, s.hostMessage = reason, fmt.Sprintf("Host %q is %s and cannot become Available: %s", h.Name, stateOrUnknown(h.Status.State), msg)
		}
		return ctrl.Result{}, nil
	}
	if err := hostclaim.Claim(ctx, r.Client, h, m.Name); err != nil {
		return ctrl.Result{}, err
	}
	ctrl.LoggerFrom(ctx).Info("Claimed Host", "machine", klog.KObj(m), "host", klog.KObj(h), "reason", "HostRefSet")
	return ctrl.Result{}, nil
}

// Bounds of a Machine's deletion.
const (
	// deleteRequeue is how often a Machine being deleted looks again at what it waits for.
	deleteRequeue = 5 * time.Second
	// wipeTimeout bounds the wait for the agent to apply the empty Plan; after it the Host is
	// released anyway, with an event saying what may be left on it.
	wipeTimeout = 10 * time.Minute
)

// reconcileDelete takes the Machine off its Host, in this order:
//
//  1. A control-plane Machine with an etcd member waits until the Cluster controller has removed
//     the member (it does so only while quorum holds, and never before a replacement is a voter).
//     Skipped when the whole Cluster is being deleted.
//  2. The Host's Plan is replaced by an empty one, which makes the agent stop every service and
//     remove every file Basalt wrote; the Machine waits until the agent reports it applied, for at
//     most wipeTimeout, and not at all when the agent is not connected.
//  3. The Plan Secret is deleted, the workload Node removed when the workload cluster answers, and
//     the Host released.
//
// Before step 1 the node is cordoned and drained (pods evicted through the Eviction API, so
// PodDisruptionBudgets hold) for at most spec.nodeDrainTimeout, counted from the deletion; a node
// that is not Ready is not waited for (its kubelet cannot confirm that pods stopped). Skipped when
// the whole Cluster is being deleted.
//
// The annotation basalt.dev/force-delete=true skips the waits of the drain and of steps 1 and 2.
func (r *Reconciler) reconcileDelete(ctx context.Context, s *scope) (ctrl.Result, error) {
	m := s.machine
	force := m.Annotations[basaltv1.AnnotationForceDelete] == "true"
	clusterGoing := s.cluster == nil || !s.cluster.DeletionTimestamp.IsZero()
	if !force && !clusterGoing {
		if res, done := r.drainBeforeDelete(ctx, s); !done {
			return res, nil
		}
	}
	if m.Spec.Role == basaltv1.RoleControlPlane && m.Status.Etcd != nil && !force && !clusterGoing {
		s.deleteWait = "waiting for the Cluster controller to remove this Machine's etcd member (annotate " + basaltv1.AnnotationForceDelete + "=true to skip)"
		return ctrl.Result{RequeueAfter: deleteRequeue}, nil
	}
	var h *basaltv1.Host
	if m.Spec.HostRef != nil {
		h = &basaltv1.Host{}
		err := r.Client.Get(ctx, client.ObjectKey{Namespace: m.Namespace, Name: m.Spec.HostRef.Name}, h)
		switch {
		case apierrors.IsNotFound(err):
			h = nil
		case err != nil:
			return ctrl.Result{}, err
		}
	}
	if h != nil && h.Status.ConsumerRef != nil && h.Status.ConsumerRef.Name == m.Name {
		if res, err := r.wipeHost(ctx, s, h, force); err != nil || !res.IsZero() {
			return res, err
		}
		r.deleteNode(ctx, s)
		if err := hostclaim.Release(ctx, r.Client, h, m.Name); err != nil {
			return ctrl.Result{}, err
		}
	}
	controllerutil.RemoveFinalizer(m, basaltv1.MachineFinalizer)
	return ctrl.Result{}, nil
}

// drainBeforeDelete runs one drain pass over the Machine's node. done is true when the node has no
// pod left to evict, is not Ready, has no Node, cannot be drained in time, or the drain is off.
func (r *Reconciler) drainBeforeDelete(ctx context.Context, s *scope) (ctrl.Result, bool) {
	m, c := s.machine, s.cluster
	timeout := topology.NodeDrainTimeout(c)
	if timeout == 0 || r.Workload == nil || m.Status.NodeName == "" || c.Status.KubeconfigSecretRef == nil {
		return ctrl.Result{}, true
	}
	since := time.Since(m.DeletionTimestamp.Time)
	left := timeout - since
	wc, err := r.Workload.For(ctx, c)
	if err == nil {
		err = workload.Cordon(ctx, wc, m.Status.NodeName, true)
	}
	var st workload.DrainStatus
	if err == nil {
		st, err = workload.Drain(ctx, wc, m.Status.NodeName)
	}
	nodeReady := meta.IsStatusConditionTrue(m.Status.Conditions, basaltv1.MachineNodeReady)
	switch {
	case err == nil && (st.Done() || !nodeReady):
		return ctrl.Result{}, true
	case left > 0:
		what := st.String()
		if err != nil {
			what = err.Error()
		}
		s.deleteWait = fmt.Sprintf("draining Node %s (%s); at most %s more (spec.nodeDrainTimeout; annotate %s=true to skip)",
			m.Status.NodeName, what, left.Round(time.Second), basaltv1.AnnotationForceDelete)
		return ctrl.Result{RequeueAfter: deleteRequeue}, false
	}
	what := st.String()
	if err != nil {
		what = err.Error()
	}
	if _, warned := r.drainWarned.LoadOrStore(m.UID, true); !warned {
		r.Recorder.Eventf(m, nil, corev1.EventTypeWarning, "DrainTimedOut", "Delete",
			"Deleting Machine %s although Node %s is not drained after %s (spec.nodeDrainTimeout): %s", m.Name, m.Status.NodeName, timeout, what)
	}
	return ctrl.Result{}, true
}

// wipeHost stores the empty Plan for h and waits (bounded) for the agent to apply it, then
// deletes the Plan. A Host with no Plan stored has nothing of Basalt's to wipe.
func (r *Reconciler) wipeHost(ctx context.Context, s *scope, h *basaltv1.Host, force bool) (ctrl.Result, error) {
	m := s.machine
	stored, _, err := planstore.LoadPlan(ctx, r.apiReader(), m.Namespace, h.Name)
	var status apierrors.APIStatus
	switch {
	case errors.Is(err, planstore.ErrNoPlan):
		return ctrl.Result{}, nil
	case errors.As(err, &status):
		return ctrl.Result{}, err
	case err != nil:
		stored = nil // unreadable: replace it
	}
	empty := plan.Empty(h.Name)
	emptyHash := empty.Hash()
	if stored == nil || stored.Hash() != emptyHash {
		if _, _, err := planstore.StorePlan(ctx, r.planClient(), m.Namespace, h.Name, empty); err != nil {
			return ctrl.Result{}, err
		}
		ctrl.LoggerFrom(ctx).Info("Stored the empty Plan to wipe the Host", "machine", klog.KObj(m), "host", klog.KObj(h), "reason", "MachineDeleted")
	}
	since := time.Since(m.DeletionTimestamp.Time)
	if m.Status.PlanHash != emptyHash && !force && topology.AgentConnected(h) && since < wipeTimeout {
		s.deleteWait = fmt.Sprintf("waiting for the agent of Host %s to stop the node's services and remove what Basalt wrote (empty Plan %s); at most %s more",
			h.Name, short(emptyHash), (wipeTimeout - since).Round(time.Second))
		return ctrl.Result{RequeueAfter: deleteRequeue}, nil
	}
	if m.Status.PlanHash != emptyHash {
		r.Recorder.Eventf(m, h, corev1.EventTypeWarning, "HostNotWiped", "Delete",
			"Releasing Host %s without a confirmed wipe (agent connected: %v, waited %s): services and files of this node may be left on it",
			h.Name, topology.AgentConnected(h), since.Round(time.Second))
	}
	if err := planstore.DeletePlan(ctx, r.planClient(), m.Namespace, h.Name); err != nil {
		return ctrl.Result{}, err
	}
	return ctrl.Result{}, nil
}

// deleteNode removes the Machine's Node from the workload cluster when it answers (best effort:
// a cluster being deleted may already be gone).
func (r *Reconciler) deleteNode(ctx context.Context, s *scope) {
	if r.Workload == nil || s.cluster == nil || !s.cluster.DeletionTimestamp.IsZero() || s.cluster.Status.KubeconfigSecretRef == nil {
		return
	}
	wc, err := r.Workload.For(ctx, s.cluster)
	if err != nil {
		return
	}
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: s.machine.Name}}
	if err := wc.Delete(ctx, n); err != nil && !apierrors.IsNotFound(err) {
		ctrl.LoggerFrom(ctx).Info("Could not delete the workload Node", "machine", klog.KObj(s.machine), "error", err.Error())
	}
}

// explainNoHost says, for a Machine waiting for the Cluster controller to bind a Host, why the
// Host it would get cannot become Available, when that is so: no Available Host matches the
// Machine's selector and one that matches fails (an SSH failure, ...). The Machine then carries
// that Host's reason, as the Cluster's HostsBound does.
func (r *Reconciler) explainNoHost(ctx context.Context, s *scope) error {
	c, m := s.cluster, s.machine
	if c == nil {
		return nil
	}
	selector, field, ok := hostSelector(c, m)
	if !ok {
		return nil
	}
	hl := &basaltv1.HostList{}
	if err := r.Client.List(ctx, hl, client.InNamespace(m.Namespace), client.MatchingLabelsSelector{Selector: selector}); err != nil {
		return err
	}
	slices.SortFunc(hl.Items, func(a, b basaltv1.Host) int { return strings.Compare(a.Name, b.Name) })
	for i := range hl.Items {
		if hostclaim.Available(&hl.Items[i]) {
			return nil // a Host is about to be bound
		}
	}
	for i := range hl.Items {
		h := &hl.Items[i]
		if h.Status.ConsumerRef != nil {
			continue
		}
		if reason, msg, failed := topology.HostFailure(h); failed {
			s.hostProblem, s.hostMessage = reason, fmt.Sprintf("no Host is bound yet: Host %s matches %s of Cluster %s but cannot become Available: %s", h.Name, field, c.Name, msg)
			return nil
		}
	}
	return nil
}

// hostSelector returns the selector of the Hosts m may be bound to and the field it comes from;
// ok is false when there is none usable (an unknown pool, or an invalid selector the Cluster
// reports).
func hostSelector(c *basaltv1.Cluster, m *basaltv1.Machine) (labels.Selector, string, bool) {
	sel, field := &c.Spec.ControlPlane.HostSelector, "spec.controlPlane.hostSelector"
	if m.Spec.Role == basaltv1.RoleWorker {
		i := slices.IndexFunc(c.Spec.Workers, func(w basaltv1.WorkerPool) bool { return w.Name == m.Spec.Pool })
		if i < 0 {
			return nil, "", false
		}
		sel, field = &c.Spec.Workers[i].HostSelector, fmt.Sprintf("spec.workers[%d].hostSelector", i)
	}
	selector, err := metav1.LabelSelectorAsSelector(sel)
	return selector, field, err == nil
}

func stateOrUnknown(s basaltv1.HostState) string {
	if s == "" {
		return "not yet registered"
	}
	return string(s)
}
