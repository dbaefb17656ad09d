package cluster

import (
	"context"
	"fmt"
	"net/netip"
	"slices"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
	"github.com/basalt-dev/basalt/controllers/topology"
)

// reconcilePodCIDRs gives every bound Machine without one a per-node range of
// spec.network.podCIDR (status.podCIDR): the lowest range no Machine of the Cluster holds, in the
// order the Machines were created. A range is written once and never changed; it is free again
// when its Machine is gone.
//
// The Machines are read from the API server, not the cache, and each is patched with an
// optimistic lock: a range allocated a moment ago is always seen, so two Machines never get the
// same range, even when the cache lags behind this controller's own writes.
func (r *Reconciler) reconcilePodCIDRs(ctx context.Context, s *scope) (ctrl.Result, error) {
	need := false
	for _, ms := range s.machines {
		for _, m := range ms {
			need = need || (m.Spec.HostRef != nil && m.DeletionTimestamp.IsZero() && m.Status.PodCIDR == "")
		}
	}
	if !need {
		return ctrl.Result{}, nil
	}
	c := s.cluster
	podCIDR, bits, total, problem := nodeRanges(c)
	if problem != "" {
		s.podCIDRProblem = problem
		return ctrl.Result{}, nil
	}
	ml := &basaltv1.MachineList{}
	if err := r.apiReader().List(ctx, ml, client.InNamespace(c.Namespace), client.MatchingLabels{basaltv1.LabelClusterName: c.Name}); err != nil {
		return ctrl.Result{}, err
	}
	used := map[uint64]bool{}
	var pending []*basaltv1.Machine
	for i := range ml.Items {
		m := &ml.Items[i]
		if m.Status.PodCIDR != "" {
			if p, err := netip.ParsePrefix(m.Status.PodCIDR); err == nil {
				if idx, ok := topology.NodeRangeIndex(podCIDR, bits, p); ok {
					used[idx] = true
				}
			}
			continue
		}
		if m.Spec.HostRef != nil && m.DeletionTimestamp.IsZero() {
			pending = append(pending, m)
		}
	}
	slices.SortFunc(pending, topology.OldestFirst)
	next := uint64(0)
	for _, m := range pending {
		for next < total && used[next] {
			next++
		}
		if next >= total {
			s.podCIDRProblem = fmt.Sprintf("spec.network.podCIDR %s holds %d ranges of /%d and every one is in use; Machine %s has none", podCIDR, total, bits, m.Name)
			r.Recorder.Eventf(c, m, corev1.EventTypeWarning, basaltv1.ReasonPodCIDRExhausted, "AllocatePodCIDR", "%s", s.podCIDRProblem)
			return ctrl.Result{}, nil
		}
		rng, err := topology.NodeRange(podCIDR, bits, next)
		if err != nil {
			return ctrl.Result{}, err
		}
		if err := r.patchMachineStatus(ctx, m, func(m *basaltv1.Machine) { m.Status.PodCIDR = rng.String() }); err != nil {
			return conflictRequeue(err)
		}
		used[next] = true
		ctrl.LoggerFrom(ctx).Info("Allocated a pod range", "machine", klog.KObj(m), "podCIDR", rng.String(), "reason", "MachineBound")
	}
	return ctrl.Result{}, nil
}

// nodeRanges returns the Cluster's pod CIDR, the prefix length of node ranges and how many there
// are, or why there are none.
func nodeRanges(c *basaltv1.Cluster) (netip.Prefix, int, uint64, string) {
	podCIDR, err := netip.ParsePrefix(c.Spec.Network.PodCIDR)
	if err != nil {
		return netip.Prefix{}, 0, 0, fmt.Sprintf("spec.network.podCIDR %q: %v", c.Spec.Network.PodCIDR, err)
	}
	bits := topology.NodeMaskBits(c, podCIDR)
	total, err := topology.NodeRanges(podCIDR, bits)
	if err != nil {
		return netip.Prefix{}, 0, 0, err.Error()
	}
	return podCIDR, bits, total, ""
}
