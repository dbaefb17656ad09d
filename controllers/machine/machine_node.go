package machine

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
)

// Requeue delays of the node phase: the workload cluster is not watched, so its Node is polled.
const (
	// nodeWaitRequeue: the Node is missing or not Ready yet.
	nodeWaitRequeue = 10 * time.Second
	// nodeReadyRequeue: the Node is Ready; look again for a change (and certificate renewals).
	nodeReadyRequeue = time.Minute
)

// LabelControlPlaneRole is the role label Basalt puts on a control-plane Node (a kubelet may not
// set node-role labels on itself); machine_nodemeta.go has the others.
const LabelControlPlaneRole = "node-role.kubernetes.io/control-plane"

// reconcileNode keeps the Machine's Node in the workload cluster: once an API server of the
// cluster is up, it creates the Node named after the Machine with spec.podCIDR set to the
// Machine's pod range (before the kubelet may register, since the kubelet only enters the Plan
// once the Node exists), then mirrors the Node's Ready condition and the kubelet's version.
//
// kube-controller-manager's range allocator sees the ranges of Nodes created this way as taken,
// so the pod range the CNI configuration, the routes and the Node carry is the same one.
func (r *Reconciler) reconcileNode(ctx context.Context, s *scope) (ctrl.Result, error) {
	m, c := s.machine, s.cluster
	if c == nil || !s.hostBound() || !s.nodeIP.IsValid() {
		return ctrl.Result{}, nil
	}
	wait := func(reason, format string, args ...any) (ctrl.Result, error) {
		s.nodeReason, s.nodeMessage = reason, fmt.Sprintf(format, args...)
		return ctrl.Result{}, nil
	}
	if m.Status.PodCIDR == "" {
		return wait(basaltv1.ReasonWaitingForPodCIDR, "the Node is created with the Machine's pod range, which is not allocated yet")
	}
	if r.Workload == nil {
		return wait(basaltv1.ReasonWaitingForControlPlane, "this manager does not talk to workload clusters")
	}
	if !s.apiServerUp() {
		return wait(basaltv1.ReasonWaitingForControlPlane, "no kube-apiserver of the cluster reports healthy yet")
	}
	unreachable := func(err error) (ctrl.Result, error) {
		s.nodeReason, s.nodeMessage = basaltv1.ReasonWorkloadClusterUnreachable, err.Error()
		return ctrl.Result{RequeueAfter: nodeWaitRequeue}, nil
	}
	wc, err := r.Workload.For(ctx, c)
	if err != nil {
		return unreachable(err)
	}
	n := &corev1.Node{}
	err = wc.Get(ctx, client.ObjectKey{Name: m.Name}, n)
	if apierrors.IsNotFound(err) {
		n = &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: m.Name, Labels: map[string]string{}},
			Spec:       corev1.NodeSpec{PodCIDR: m.Status.PodCIDR, PodCIDRs: []string{m.Status.PodCIDR}},
		}
		// Labels and taints from the start: no pod lands on a control-plane node before its taint.
		applyNodeMeta(n, desiredNodeMeta(c, m))
		if err = wc.Create(ctx, n); err == nil {
			ctrl.LoggerFrom(ctx).Info("Created the workload Node with its pod range", "machine", klog.KObj(m), "node", n.Name, "podCIDR", m.Status.PodCIDR)
		} else if apierrors.IsAlreadyExists(err) {
			err = wc.Get(ctx, client.ObjectKey{Name: m.Name}, n)
		}
	}
	if err != nil {
		return unreachable(fmt.Errorf("reading or creating the workload Node %s: %w", m.Name, err))
	}
	switch n.Spec.PodCIDR {
	case m.Status.PodCIDR:
	case "":
		// Registered before Basalt could create it, and no range allocated yet: set it (podCIDR can
		// be set once).
		before := n.DeepCopy()
		n.Spec.PodCIDR, n.Spec.PodCIDRs = m.Status.PodCIDR, []string{m.Status.PodCIDR}
		if err := wc.Patch(ctx, n, client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{})); err != nil {
			return unreachable(fmt.Errorf("setting the pod range of Node %s: %w", n.Name, err))
		}
	default:
		return wait(basaltv1.ReasonPodCIDRConflict, "Node %s has spec.podCIDR %s, not this Machine's %s; delete the Node to let Basalt create it again",
			n.Name, n.Spec.PodCIDR, m.Status.PodCIDR)
	}
	if before := n.DeepCopy(); applyNodeMeta(n, desiredNodeMeta(c, m)) {
		if err := wc.Patch(ctx, n, client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{})); err != nil {
			return unreachable(fmt.Errorf("setting the labels and taints of Node %s: %w", n.Name, err))
		}
		ctrl.LoggerFrom(ctx).Info("Set the labels and taints of the workload Node", "machine", klog.KObj(m), "node", n.Name, "taints", describeTaints(n.Spec.Taints))
	}
	s.nodeRegistered = true
	if v := n.Status.NodeInfo.KubeletVersion; v != "" {
		m.Status.NodeName = n.Name
		m.Status.Version = v
	}
	for _, cond := range n.Status.Conditions {
		if cond.Type != corev1.NodeReady {
			continue
		}
		if cond.Status == corev1.ConditionTrue {
			s.nodeReady = true
			s.nodeMessage = fmt.Sprintf("Node %s: %s", n.Name, cond.Message)
			if m.Spec.Version != "" && m.Status.Version != m.Spec.Version {
				// Moving to another version: the rollout waits for the kubelet to report it.
				return ctrl.Result{RequeueAfter: nodeWaitRequeue}, nil
			}
			return ctrl.Result{RequeueAfter: nodeReadyRequeue}, nil
		}
		reason := cond.Reason
		if reason == "" {
			reason = "NodeNotReady"
		}
		s.nodeReason, s.nodeMessage = reason, fmt.Sprintf("Node %s is %s: %s", n.Name, cond.Status, cond.Message)
		return ctrl.Result{RequeueAfter: nodeWaitRequeue}, nil
	}
	s.nodeReason, s.nodeMessage = basaltv1.ReasonNodeNotRegistered, fmt.Sprintf("Node %s exists with pod range %s; waiting for its kubelet to report", n.Name, n.Spec.PodCIDR)
	return ctrl.Result{RequeueAfter: nodeWaitRequeue}, nil
}
