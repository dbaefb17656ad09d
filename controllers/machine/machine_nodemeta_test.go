package machine

import (
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"

	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
)

func TestControlPlaneTainted(t *testing.T) {
	c := &basaltv1.Cluster{}
	if controlPlaneTainted(c) {
		t.Error("a Cluster without workers taints its control plane: nothing could run")
	}
	c.Spec.Workers = []basaltv1.WorkerPool{{Name: "a", Replicas: 0}, {Name: "b", Replicas: 2}}
	if !controlPlaneTainted(c) {
		t.Error("a Cluster with workers leaves its control plane schedulable")
	}
	c.Spec.ControlPlane.Schedulable = ptr.To(true)
	if controlPlaneTainted(c) {
		t.Error("schedulable: true is not honoured")
	}
	c.Spec.Workers = nil
	c.Spec.ControlPlane.Schedulable = ptr.To(false)
	if !controlPlaneTainted(c) {
		t.Error("schedulable: false is not honoured")
	}
}

// TestApplyNodeMeta: Basalt's labels and taints are set and kept, what it set and no longer wants
// goes, and what others put on the Node stays.
func TestApplyNodeMeta(t *testing.T) {
	c := &basaltv1.Cluster{Spec: basaltv1.ClusterSpec{Workers: []basaltv1.WorkerPool{{Name: "gpu", Replicas: 1,
		NodeLabels: []basaltv1.NodeLabel{{Key: "tier", Value: "compute"}, {Key: LabelPool, Value: "not-this"}},
		NodeTaints: []basaltv1.NodeTaint{{Key: "example.com/gpu", Value: "true", Effect: "NoSchedule"}}}}}}
	m := &basaltv1.Machine{Spec: basaltv1.MachineSpec{Role: basaltv1.RoleWorker, Pool: "gpu"}}
	n := &corev1.Node{}
	n.Labels = map[string]string{"kubernetes.io/hostname": "w"}
	n.Spec.Taints = []corev1.Taint{{Key: "node.kubernetes.io/not-ready", Effect: corev1.TaintEffectNoSchedule}}
	if !applyNodeMeta(n, desiredNodeMeta(c, m)) {
		t.Fatal("nothing changed on a new Node")
	}
	for k, v := range map[string]string{"kubernetes.io/hostname": "w", LabelWorkerRole: "", LabelPool: "gpu", "tier": "compute"} {
		if got, ok := n.Labels[k]; !ok || got != v {
			t.Errorf("label %s=%q (%v), want %q", k, got, ok, v)
		}
	}
	if got := describeTaints(n.Spec.Taints); got != "node.kubernetes.io/not-ready:NoSchedule,example.com/gpu=true:NoSchedule" {
		t.Errorf("taints %s", got)
	}
	if applyNodeMeta(n, desiredNodeMeta(c, m)) {
		t.Error("a second pass changed the Node")
	}

	// The pool drops its label and taint, and changes nothing else; someone cordons the node.
	n.Spec.Taints = append(n.Spec.Taints, corev1.Taint{Key: corev1.TaintNodeUnschedulable, Effect: corev1.TaintEffectNoSchedule})
	n.Labels["user"] = "mine"
	c.Spec.Workers[0].NodeLabels = nil
	c.Spec.Workers[0].NodeTaints = []basaltv1.NodeTaint{{Key: "example.com/gpu", Value: "a100", Effect: "NoSchedule"}}
	if !applyNodeMeta(n, desiredNodeMeta(c, m)) {
		t.Fatal("the change was not applied")
	}
	if _, ok := n.Labels["tier"]; ok {
		t.Error("the label the pool dropped is still there")
	}
	if n.Labels["user"] != "mine" || n.Labels["kubernetes.io/hostname"] != "w" {
		t.Errorf("labels of others touched: %v", n.Labels)
	}
	if got := describeTaints(n.Spec.Taints); got != "node.kubernetes.io/not-ready:NoSchedule,example.com/gpu=a100:NoSchedule,node.kubernetes.io/unschedulable:NoSchedule" {
		t.Errorf("taints %s", got)
	}

	// A control plane of a Cluster with workers is tainted; once schedulable, the taint goes.
	cp := &basaltv1.Machine{Spec: basaltv1.MachineSpec{Role: basaltv1.RoleControlPlane}}
	cn := &corev1.Node{}
	applyNodeMeta(cn, desiredNodeMeta(c, cp))
	if _, ok := cn.Labels[LabelControlPlaneRole]; !ok || describeTaints(cn.Spec.Taints) != TaintControlPlane+":NoSchedule" {
		t.Errorf("control-plane Node: labels %v taints %s", cn.Labels, describeTaints(cn.Spec.Taints))
	}
	c.Spec.ControlPlane.Schedulable = ptr.To(true)
	if !applyNodeMeta(cn, desiredNodeMeta(c, cp)) || len(cn.Spec.Taints) != 0 {
		t.Errorf("schedulable control plane keeps %s", describeTaints(cn.Spec.Taints))
	}
	// A taint of the same key an operator put there by hand is not Basalt's to remove.
	hand := &corev1.Node{}
	hand.Spec.Taints = []corev1.Taint{{Key: TaintControlPlane, Effect: corev1.TaintEffectNoSchedule}}
	applyNodeMeta(hand, desiredNodeMeta(c, cp))
	if !slices.ContainsFunc(hand.Spec.Taints, func(t corev1.Taint) bool { return t.Key == TaintControlPlane }) {
		t.Error("a taint Basalt never set was removed")
	}
}
