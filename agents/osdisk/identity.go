package osdisk

import (
	"fmt"
	"strings"

	"github.com/basalt-dev/basalt/agents/inspect"
	"github.com/basalt-dev/basalt/agents/protocol"
	"github.com/basalt-dev/basalt/bootstrap/plan"
)

// resolveDisk returns the disk (/dev/<kernel name>) that has the identity the manager recorded
// for disk: wwn and serial, whichever are set. Kernel names are handed out in probe order and
// change from one boot to the next (a disk added, a controller slower to start), so before
// every write and every wipe the agent reads sysfs again: disk itself when it still has that
// identity, else the one disk that has it now. No disk, or more than one, with that identity is
// an error, and nothing is touched. Without an identity (a disk that reports neither, or a Plan
// from before identities were recorded) disk is taken by its name, as before.
func (i *Installer) resolveDisk(disk, wwn, serial string) (string, error) {
	if wwn == "" && serial == "" {
		return disk, nil
	}
	sys := inspect.Inspector{Root: i.Root}
	want := func(d protocol.Disk) bool {
		return (wwn == "" || d.WWN == wwn) && (serial == "" || d.Serial == serial)
	}
	named, ok := sys.Disk(strings.TrimPrefix(disk, "/dev/"))
	if ok && want(named) {
		return disk, nil
	}
	var found []string
	for _, d := range sys.Disks() {
		if want(d) {
			found = append(found, "/dev/"+d.Name)
		}
	}
	if len(found) == 1 {
		i.log().Info("The disk has another kernel name on this boot; using it", "disk", disk, "now", found[0], "wwn", wwn, "serial", serial)
		return found[0], nil
	}
	has := "is not a disk on this boot"
	if ok {
		has = fmt.Sprintf("has WWN %q and serial %q", named.WWN, named.Serial)
	}
	wants := fmt.Sprintf("WWN %q and serial %q", wwn, serial)
	if len(found) == 0 {
		return "", fmt.Errorf("refusing to touch %s: it %s, and no disk has the %s the manager recorded for it "+
			"(the disk was replaced or removed; see status.hardware.disks and status.provisioning of the Host)", disk, has, wants)
	}
	return "", fmt.Errorf("refusing to touch %s: it %s, and %d disks (%s) have the %s the manager recorded for it",
		disk, has, len(found), strings.Join(found, ", "), wants)
}

// rootMarker is the root marker written for img: the disk named as the Plan names it, with its
// identity, so that Wipe finds it again on a later boot.
func (i *Installer) rootMarker(img plan.OSImage) protocol.Root {
	return protocol.Root{Image: img.SHA256, Disk: img.Disk, WWN: img.WWN, Serial: img.Serial, Host: i.Host}
}
