package cluster_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
	"github.com/basalt-dev/basalt/test/envtest"
)

// nodeTaints lists a Node's taints but the not-ready one the API server's admission puts on
// every new Node (no node lifecycle controller runs here to lift it).
func nodeTaints(n *corev1.Node) string {
	var ts []string
	for _, t := range n.Spec.Taints {
		if t.Key != corev1.TaintNodeNotReady {
			ts = append(ts, t.ToString())
		}
	}
	return strings.Join(ts, ",")
}

// TestNodeRolesLabelsAndTaints: the control plane of a Cluster with workers is tainted, the
// pool's Nodes carry the role, pool, nodeLabels and nodeTaints of the spec, and a change of the
// spec reaches the Nodes: what was removed goes, what others set stays.
func TestNodeRolesLabelsAndTaints(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	h := startControllers(t, ns)
	runAgents(t, ns, h.etcd)
	createHost(t, ns, hostInput{name: "cp-0", labels: cpLabels, address: "10.0.8.10", inspected: true})
	createHost(t, ns, hostInput{name: "w-0", labels: workerLabels, address: "10.0.8.20", inspected: true})
	c := newCluster(ns, "roles", 1, 1)
	c.Spec.Workers[0].NodeLabels = []basaltv1.NodeLabel{{Key: "tier", Value: "web"}, {Key: "node-role.kubernetes.io/frontend"}}
	c.Spec.Workers[0].NodeTaints = []basaltv1.NodeTaint{{Key: "example.com/dedicated", Value: "web", Effect: "NoSchedule"}}
	if err := env.Client.Create(ctx, c); err != nil {
		t.Fatal(err)
	}
	waitClusterReady(t, c, wait)
	node := func(role basaltv1.MachineRole) *corev1.Node {
		t.Helper()
		n := &corev1.Node{}
		if err := env.Client.Get(ctx, client.ObjectKey{Name: machineName(t, ns, c.Name, role)}, n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	cp, w := node(basaltv1.RoleControlPlane), node(basaltv1.RoleWorker)
	if _, ok := cp.Labels["node-role.kubernetes.io/control-plane"]; !ok || nodeTaints(cp) != "node-role.kubernetes.io/control-plane:NoSchedule" {
		t.Errorf("control-plane Node: labels %v, taints %s", cp.Labels, nodeTaints(cp))
	}
	for k, v := range map[string]string{"node-role.kubernetes.io/worker": "", "basalt.dev/pool": "pool", "tier": "web", "node-role.kubernetes.io/frontend": ""} {
		if got, ok := w.Labels[k]; !ok || got != v {
			t.Errorf("worker Node label %s=%q (%v), want %q", k, got, ok, v)
		}
	}
	if nodeTaints(w) != "example.com/dedicated=web:NoSchedule" {
		t.Errorf("worker Node taints %s", nodeTaints(w))
	}

	// Someone cordons the worker and labels it; the spec drops tier and the taint, and makes
	// the control plane schedulable.
	w.Spec.Unschedulable = true
	w.Spec.Taints = append(w.Spec.Taints, corev1.Taint{Key: corev1.TaintNodeUnschedulable, Effect: corev1.TaintEffectNoSchedule})
	w.Labels["owner"] = "team-a"
	if err := env.Client.Update(ctx, w); err != nil {
		t.Fatal(err)
	}
	updateCluster(t, c, func(c *basaltv1.Cluster) {
		c.Spec.ControlPlane.Schedulable = ptr.To(true)
		c.Spec.Workers[0].NodeLabels = []basaltv1.NodeLabel{{Key: "node-role.kubernetes.io/frontend"}}
		c.Spec.Workers[0].NodeTaints = nil
	})
	envtest.Eventually(t, wait, func() error {
		cp, w := node(basaltv1.RoleControlPlane), node(basaltv1.RoleWorker)
		if nodeTaints(cp) != "" {
			return fmt.Errorf("control-plane Node still has %s", nodeTaints(cp))
		}
		if _, ok := w.Labels["tier"]; ok {
			return fmt.Errorf("worker Node still has tier: %v", w.Labels)
		}
		if w.Labels["owner"] != "team-a" || nodeTaints(w) != "node.kubernetes.io/unschedulable:NoSchedule" {
			return fmt.Errorf("worker Node: labels %v, taints %s (the owner label and the cordon must stay)", w.Labels, nodeTaints(w))
		}
		return nil
	})
}
