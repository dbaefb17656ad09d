// Package patch writes back what a reconcile changed on an object: metadata and spec through the
// main resource and status through the status subresource, both with an optimistic lock, so a
// concurrent change (a finalizer, a state the agent API wrote) is never overwritten: the
// reconcile gets a conflict, is requeued, and re-reads. Both patches are computed from one snapshot before either
// is sent, so the server's answer to the first cannot hide the changes of the second.
package patch

import (
	"context"
	"encoding/json"
	"fmt"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Helper remembers an object as it was read and patches the difference later.
type Helper struct {
	c      client.Client
	before client.Object
}

// NewHelper snapshots obj. Call it right after reading obj, before changing it.
func NewHelper(obj client.Object, c client.Client) *Helper {
	return &Helper{c: c, before: obj.DeepCopyObject().(client.Object)}
}

// Patch sends what changed on obj since NewHelper. It sends nothing when nothing changed, which
// keeps reconciles that observe a steady state free of writes. A conflict on the metadata patch is
// returned so the caller requeues and re-reads.
func (h *Helper) Patch(ctx context.Context, obj client.Object) error {
	data, err := client.MergeFrom(h.before).Data(obj)
	if err != nil {
		return fmt.Errorf("computing patch: %w", err)
	}
	var diff map[string]any
	if err := json.Unmarshal(data, &diff); err != nil {
		return fmt.Errorf("decoding patch: %w", err)
	}
	status, hasStatus := diff["status"]
	delete(diff, "status")

	rv := h.before.GetResourceVersion()
	if len(diff) > 0 {
		meta, _ := diff["metadata"].(map[string]any)
		if meta == nil {
			meta = map[string]any{}
			diff["metadata"] = meta
		}
		meta["resourceVersion"] = rv
		body, err := json.Marshal(diff)
		if err != nil {
			return err
		}
		o := obj.DeepCopyObject().(client.Object)
		if err := h.c.Patch(ctx, o, client.RawPatch(types.MergePatchType, body)); err != nil {
			return fmt.Errorf("patching %s: %w", client.ObjectKeyFromObject(obj), err)
		}
		// The lock held: nothing but this patch changed the object since it was read, so the
		// status patch may build on the version it produced.
		rv = o.GetResourceVersion()
	}
	// An object whose last finalizer was just removed is gone: there is no status left to write.
	gone := !obj.GetDeletionTimestamp().IsZero() && len(obj.GetFinalizers()) == 0
	if hasStatus && !gone {
		body, err := json.Marshal(map[string]any{"metadata": map[string]any{"resourceVersion": rv}, "status": status})
		if err != nil {
			return err
		}
		if err := h.c.Status().Patch(ctx, obj.DeepCopyObject().(client.Object), client.RawPatch(types.MergePatchType, body)); err != nil {
			return fmt.Errorf("patching status of %s: %w", client.ObjectKeyFromObject(obj), err)
		}
	}
	return nil
}
