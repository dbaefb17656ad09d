package topology

import (
	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
	"github.com/basalt-dev/basalt/bootstrap/plan"
)

// OSImage is the plan.Plan.OS every Plan of h carries: the root filesystem image written, or
// being written, to its disk (status.provisioning); nil when its system is not on a disk
// Basalt wrote. A Plan without it makes an agent running from such a disk wipe it.
func OSImage(h *basaltv1.Host) *plan.OSImage {
	p := h.Status.Provisioning
	if p == nil {
		return nil
	}
	return &plan.OSImage{Name: p.Image.Name, SHA256: p.Image.SHA256, Size: p.Image.Size, Disk: p.Disk}
}
