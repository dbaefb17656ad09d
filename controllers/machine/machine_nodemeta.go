package machine

import (
	"encoding/json"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"

	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
)

// Labels and taints Basalt keeps on Nodes (docs/lifecycle.md "Node roles, labels and taints").
const (
	// LabelWorkerRole is the role label of a worker Node.
	LabelWorkerRole = "node-role.kubernetes.io/worker"
	// LabelPool names the worker pool of a Node.
	LabelPool = "basalt.dev/pool"
	// TaintControlPlane keeps ordinary pods off control-plane Nodes.
	TaintControlPlane = "node-role.kubernetes.io/control-plane"
	// AnnotationManagedNodeMeta records on a Node the label keys and taints (key:effect) Basalt
	// set, so that what is removed from the Cluster spec is removed from the Node, and what
	// others set (cordon, the node lifecycle controller, users) is never touched.
	AnnotationManagedNodeMeta = "basalt.dev/managed-node-meta"
)

// nodeMeta is what Basalt keeps on a Node.
type nodeMeta struct {
	Labels map[string]string `json:"-"`
	Taints []corev1.Taint    `json:"-"`
}

// managedMeta is the record of AnnotationManagedNodeMeta.
type managedMeta struct {
	Labels []string `json:"labels,omitempty"`
	Taints []string `json:"taints,omitempty"`
}

// controlPlaneTainted says whether c's control-plane Nodes carry TaintControlPlane:
// spec.controlPlane.schedulable when set, else whether the Cluster has worker replicas.
func controlPlaneTainted(c *basaltv1.Cluster) bool {
	if s := c.Spec.ControlPlane.Schedulable; s != nil {
		return !*s
	}
	for _, p := range c.Spec.Workers {
		if p.Replicas > 0 {
			return true
		}
	}
	return false
}

// desiredNodeMeta is what the Node of m carries: the role label, for workers the pool label and
// the pool's nodeLabels and nodeTaints, for control planes the taint controlPlaneTainted asks.
func desiredNodeMeta(c *basaltv1.Cluster, m *basaltv1.Machine) nodeMeta {
	want := nodeMeta{Labels: map[string]string{}}
	if m.Spec.Role == basaltv1.RoleControlPlane {
		want.Labels[LabelControlPlaneRole] = ""
		if controlPlaneTainted(c) {
			want.Taints = append(want.Taints, corev1.Taint{Key: TaintControlPlane, Effect: corev1.TaintEffectNoSchedule})
		}
		return want
	}
	want.Labels[LabelWorkerRole] = ""
	want.Labels[LabelPool] = m.Spec.Pool
	for _, p := range c.Spec.Workers {
		if p.Name != m.Spec.Pool {
			continue
		}
		for _, l := range p.NodeLabels {
			if _, builtin := want.Labels[l.Key]; !builtin {
				want.Labels[l.Key] = l.Value
			}
		}
		for _, t := range p.NodeTaints {
			want.Taints = append(want.Taints, corev1.Taint{Key: t.Key, Value: t.Value, Effect: corev1.TaintEffect(t.Effect)})
		}
	}
	return want
}

func taintID(t corev1.Taint) string { return t.Key + ":" + string(t.Effect) }

// applyNodeMeta puts want on n: labels and taints set or updated, those Basalt set before and no
// longer wants removed, the record annotation rewritten. It says whether n changed.
func applyNodeMeta(n *corev1.Node, want nodeMeta) bool {
	var prev managedMeta
	if raw := n.Annotations[AnnotationManagedNodeMeta]; raw != "" {
		_ = json.Unmarshal([]byte(raw), &prev) // a damaged record is rewritten; nothing is removed then
	}
	changed := false
	if n.Labels == nil {
		n.Labels = map[string]string{}
	}
	for _, k := range prev.Labels {
		if _, keep := want.Labels[k]; !keep {
			if _, ok := n.Labels[k]; ok {
				delete(n.Labels, k)
				changed = true
			}
		}
	}
	for k, v := range want.Labels {
		if cur, ok := n.Labels[k]; !ok || cur != v {
			n.Labels[k] = v
			changed = true
		}
	}
	wantIDs := map[string]corev1.Taint{}
	for _, t := range want.Taints {
		wantIDs[taintID(t)] = t
	}
	var taints []corev1.Taint
	for _, t := range n.Spec.Taints {
		id := taintID(t)
		w, wanted := wantIDs[id]
		switch {
		case wanted:
			if t.Value != w.Value {
				changed = true
			}
			taints = append(taints, w)
			delete(wantIDs, id)
		case slices.Contains(prev.Taints, id):
			changed = true // Basalt's, no longer wanted
		default:
			taints = append(taints, t) // someone else's
		}
	}
	for _, t := range want.Taints { // keep the spec's order for the ones added
		if _, missing := wantIDs[taintID(t)]; missing {
			taints = append(taints, t)
			changed = true
		}
	}
	n.Spec.Taints = taints

	rec := managedMeta{}
	for k := range want.Labels {
		rec.Labels = append(rec.Labels, k)
	}
	slices.Sort(rec.Labels)
	for _, t := range want.Taints {
		rec.Taints = append(rec.Taints, taintID(t))
	}
	slices.Sort(rec.Taints)
	b, _ := json.Marshal(rec)
	if n.Annotations == nil {
		n.Annotations = map[string]string{}
	}
	if n.Annotations[AnnotationManagedNodeMeta] != string(b) {
		n.Annotations[AnnotationManagedNodeMeta] = string(b)
		changed = true
	}
	return changed
}

// describeTaints is for messages: key=value:effect, comma-separated.
func describeTaints(ts []corev1.Taint) string {
	parts := make([]string, 0, len(ts))
	for _, t := range ts {
		parts = append(parts, t.ToString())
	}
	return strings.Join(parts, ",")
}
