package host

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
	"github.com/basalt-dev/basalt/bootstrap/plan"
)

// chooseRootDisk picks the disk the root image of need bytes (decompressed) is written to,
// among the disks the agent reported: every hint of spec.boot.rootDeviceHints (and the older
// spec.boot.rootDisk, the same as deviceName) must match, the disk must hold the image, and of
// the disks that pass, the smallest is taken, ties by name. When none passes, the error names
// every reported disk and why it did not.
func chooseRootDisk(h *basaltv1.Host, need int64) (basaltv1.Disk, error) {
	if h.Status.Hardware == nil || len(h.Status.Hardware.Disks) == 0 {
		return basaltv1.Disk{}, errors.New("the agent reported no disks: the root image needs a local disk")
	}
	hints := rootDeviceHints(h.Spec.Boot)
	disks := slices.Clone(h.Status.Hardware.Disks)
	slices.SortFunc(disks, func(a, b basaltv1.Disk) int {
		if c := diskSize(a) - diskSize(b); c != 0 {
			if c < 0 {
				return -1
			}
			return 1
		}
		return strings.Compare(a.Name, b.Name)
	})
	var why []string
	for _, d := range disks {
		reasons := mismatches(hints, d, need)
		if len(reasons) == 0 {
			return d, nil
		}
		why = append(why, fmt.Sprintf("%s: %s", d.Name, strings.Join(reasons, ", ")))
	}
	what := fmt.Sprintf("no disk holds the root image (%d bytes)", need)
	switch {
	case h.Spec.Boot.RootDeviceHints != nil:
		what = fmt.Sprintf("no disk matches spec.boot.rootDeviceHints and holds the root image (%d bytes)", need)
	case hints.DeviceName != "": // the older spec.boot.rootDisk
		what = fmt.Sprintf("no disk is spec.boot.rootDisk %q and holds the root image (%d bytes)", hints.DeviceName, need)
	}
	return basaltv1.Disk{}, fmt.Errorf("%s; the agent reported %s", what, strings.Join(why, "; "))
}

// rootDeviceHints are the Host's hints with the older rootDisk folded in as deviceName, and
// with the optional /dev/ and /dev/disk/by-path/ prefixes taken off.
func rootDeviceHints(b *basaltv1.BootSpec) basaltv1.RootDeviceHints {
	var h basaltv1.RootDeviceHints
	if b.RootDeviceHints != nil {
		h = *b.RootDeviceHints
	}
	h.DeviceName = b.RootDeviceName()
	h.ByPath = strings.TrimPrefix(h.ByPath, "/dev/disk/by-path/")
	return h
}

// mismatches says why d cannot take a root image of need bytes under hints; nothing when it
// can. Reasons are short and name the disk's value, so the condition that lists them tells the
// operator what to change.
func mismatches(hints basaltv1.RootDeviceHints, d basaltv1.Disk, need int64) []string {
	var r []string
	if hints.DeviceName != "" && d.Name != hints.DeviceName {
		r = append(r, fmt.Sprintf("name is not %q", hints.DeviceName))
	}
	if hints.SerialNumber != "" && d.Serial != hints.SerialNumber {
		r = append(r, fmt.Sprintf("serial %q is not %q", d.Serial, hints.SerialNumber))
	}
	if hints.WWN != "" && d.WWN != hints.WWN {
		r = append(r, fmt.Sprintf("WWN %q is not %q", d.WWN, hints.WWN))
	}
	if hints.ByPath != "" && d.ByPath != hints.ByPath {
		r = append(r, fmt.Sprintf("by-path %q is not %q", d.ByPath, hints.ByPath))
	}
	if hints.Model != "" && !strings.Contains(d.Model, hints.Model) {
		r = append(r, fmt.Sprintf("model %q does not contain %q", d.Model, hints.Model))
	}
	if hints.Rotational != nil && d.Rotational != *hints.Rotational {
		r = append(r, map[bool]string{true: "is not rotational", false: "is rotational"}[*hints.Rotational])
	}
	size := diskSize(d)
	if min := int64(hints.MinSizeGigabytes) << 30; hints.MinSizeGigabytes > 0 && size < min {
		r = append(r, fmt.Sprintf("%d bytes, less than minSizeGigabytes %d", size, hints.MinSizeGigabytes))
	}
	if size < need {
		r = append(r, fmt.Sprintf("%d bytes, too small for the image", size))
	}
	// The agent checks the disk by its WWN and serial before it writes: identities it could not
	// carry in a Plan would make that check impossible.
	if !plan.IsDiskIdentity(d.WWN) || !plan.IsDiskIdentity(d.Serial) {
		r = append(r, "its WWN or serial is not printable ASCII of at most 128 characters")
	}
	return r
}

func diskSize(d basaltv1.Disk) int64 {
	if d.Size == nil {
		return 0
	}
	return d.Size.Value()
}

// describeDisk names the disk of p for messages: its kernel name and its identity.
func describeDisk(p *basaltv1.HostProvisioning) string {
	var id []string
	for _, kv := range [][2]string{{"WWN", p.WWN}, {"serial", p.Serial}, {"by-path", p.ByPath}} {
		if kv[1] != "" {
			id = append(id, kv[0]+" "+kv[1])
		}
	}
	if len(id) == 0 {
		return p.Disk
	}
	return fmt.Sprintf("%s (%s)", p.Disk, strings.Join(id, ", "))
}
