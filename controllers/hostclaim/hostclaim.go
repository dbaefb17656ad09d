// Package hostclaim binds Hosts to Machines. A Host belongs to the Machine named in its
// status.consumerRef; that field is only ever written here, with an optimistic lock, so two
// Machines (or two Clusters) racing for one Host can never both win: the loser gets a conflict,
// re-reads and sees the Host in use.
package hostclaim

import (
	"context"

	"sigs.k8s.io/controller-runtime/pkg/client"

	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
)

// Claim records machine as the consumer of h. It fails with a conflict if h changed since it was
// read; h is updated with the server's answer on success.
func Claim(ctx context.Context, c client.Client, h *basaltv1.Host, machine string) error {
	before := h.DeepCopy()
	h.Status.ConsumerRef = &basaltv1.LocalObjectReference{Name: machine}
	return c.Status().Patch(ctx, h, client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{}))
}

// Release clears h's consumer if it is machine. Releasing a Host claimed by another Machine, or by
// none, does nothing.
func Release(ctx context.Context, c client.Client, h *basaltv1.Host, machine string) error {
	if h.Status.ConsumerRef == nil || h.Status.ConsumerRef.Name != machine {
		return nil
	}
	before := h.DeepCopy()
	h.Status.ConsumerRef = nil
	return c.Status().Patch(ctx, h, client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{}))
}

// Available says whether h may be claimed by a new Machine: Available, unclaimed, not deleting.
func Available(h *basaltv1.Host) bool {
	return h.Status.State == basaltv1.HostStateAvailable && h.Status.ConsumerRef == nil && h.DeletionTimestamp.IsZero()
}
