package topology

import (
	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
	"github.com/basalt-dev/basalt/bootstrap/plan"
)

// OSImage is the plan.Plan.OS every Plan of h carries: the root filesystem image written, or
// being written, to its disk (status.provisioning); nil when its system is not on a disk
// Basalt wrote. A Plan without it makes an agent running from such a disk wipe it. The disk is
// named by its kernel name and identified by its WWN and serial, which the agent checks.
func OSImage(h *basaltv1.Host) *plan.OSImage {
	p := h.Status.Provisioning
	if p == nil {
		return nil
	}
	img := &plan.OSImage{Name: p.Image.Name, SHA256: p.Image.SHA256, Size: p.Image.Size, Disk: p.Disk, WWN: p.WWN, Serial: p.Serial}
	// Erasing matters only until the image is written; a Provisioned Host's Plans leave it out,
	// so turning spec.boot.eraseExistingDisk on or off later changes none of them.
	if p.ProvisionedAt == nil && h.Spec.Boot != nil {
		img.Erase = h.Spec.Boot.EraseExistingDisk
	}
	if p.Format == basaltv1.OSImageFormatDisk {
		img.Format = plan.FormatDisk
		img.Network = bootNetwork(h)
	}
	return img
}

// bootNetwork is the static address a whole-disk system configures on its boot interface:
// spec.boot.address and spec.boot.gateway on the interface with the first of
// spec.boot.macAddresses; nil without an address, leaving the image's DHCP.
func bootNetwork(h *basaltv1.Host) *plan.OSNetwork {
	b := h.Spec.Boot
	if b == nil || b.Address == "" || len(b.MACAddresses) == 0 {
		return nil
	}
	return &plan.OSNetwork{MAC: b.MACAddresses[0], Address: b.Address, Gateway: b.Gateway}
}
