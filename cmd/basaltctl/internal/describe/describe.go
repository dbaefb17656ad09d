// Package describe builds what `basaltctl describe cluster` shows: a tree of a Cluster, its
// Machines grouped by role and worker pool, and the Host each Machine runs on, every line with
// its phase or state and version and, below it, the conditions that are not True with their
// reason and message; plus a one-line summary of the Cluster's progress.
//
// Load reads the objects from the API server; Render writes the tree. Render is a pure function
// of the objects and a clock, so its output is deterministic for a given state.
package describe

import (
	"cmp"
	"context"
	"fmt"
	"slices"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
)

// ClusterTree is a Cluster with its Machines and their Hosts.
type ClusterTree struct {
	Cluster *basaltv1.Cluster
	// Groups are the control plane, then the worker pools in spec order, then pools that only
	// Machines still name (removed from the spec, their Machines being deleted).
	Groups []Group
}

// Group is the Machines of one role, or of one worker pool.
type Group struct {
	Role basaltv1.MachineRole
	// Pool is the worker pool's name; empty for the control plane.
	Pool string
	// Desired is the number of Machines the spec asks for; -1 when the spec no longer names
	// the pool.
	Desired int32
	// Machines sorted by name.
	Machines []MachineNode
}

// MachineNode is a Machine and the Host it is bound to.
type MachineNode struct {
	Machine *basaltv1.Machine
	// Host is nil when the Machine has no hostRef or the Host does not exist.
	Host *basaltv1.Host
}

// Load reads Cluster namespace/name, every Machine of the namespace whose spec.cluster names
// it, and the Host each of them is bound to. A missing Cluster is an error that says so; a
// Machine whose Host is missing is shown without it.
func Load(ctx context.Context, c client.Reader, namespace, name string) (*ClusterTree, error) {
	cl := &basaltv1.Cluster{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, cl); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("no Cluster %q in namespace %q", name, namespace)
		}
		return nil, fmt.Errorf("reading Cluster %s/%s: %w", namespace, name, err)
	}
	var machines basaltv1.MachineList
	if err := c.List(ctx, &machines, client.InNamespace(namespace)); err != nil {
		return nil, fmt.Errorf("listing the Machines of namespace %s: %w", namespace, err)
	}
	var nodes []MachineNode
	for i := range machines.Items {
		m := &machines.Items[i]
		if m.Spec.Cluster != name {
			continue
		}
		n := MachineNode{Machine: m}
		if m.Spec.HostRef != nil {
			h := &basaltv1.Host{}
			err := c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: m.Spec.HostRef.Name}, h)
			switch {
			case err == nil:
				n.Host = h
			case !apierrors.IsNotFound(err):
				return nil, fmt.Errorf("reading Host %s/%s of Machine %s: %w", namespace, m.Spec.HostRef.Name, m.Name, err)
			}
		}
		nodes = append(nodes, n)
	}
	return Build(cl, nodes), nil
}

// Build groups Machines under their Cluster: control plane first, worker pools in spec order,
// then pools the spec no longer names.
func Build(c *basaltv1.Cluster, nodes []MachineNode) *ClusterTree {
	t := &ClusterTree{Cluster: c}
	t.Groups = append(t.Groups, Group{Role: basaltv1.RoleControlPlane, Desired: c.Spec.ControlPlane.Replicas})
	for _, w := range c.Spec.Workers {
		t.Groups = append(t.Groups, Group{Role: basaltv1.RoleWorker, Pool: w.Name, Desired: w.Replicas})
	}
	slices.SortFunc(nodes, func(a, b MachineNode) int { return cmp.Compare(a.Machine.Name, b.Machine.Name) })
	for _, n := range nodes {
		i := slices.IndexFunc(t.Groups, func(g Group) bool {
			return g.Role == n.Machine.Spec.Role && (g.Role == basaltv1.RoleControlPlane || g.Pool == n.Machine.Spec.Pool)
		})
		if i < 0 {
			t.Groups = append(t.Groups, Group{Role: n.Machine.Spec.Role, Pool: n.Machine.Spec.Pool, Desired: -1})
			i = len(t.Groups) - 1
		}
		t.Groups[i].Machines = append(t.Groups[i].Machines, n)
	}
	return t
}
