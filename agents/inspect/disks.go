package inspect

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/basalt-dev/basalt/agents/protocol"
)

// maxIdentityLen bounds the strings read for a disk (model, serial, WWN, by-path): the agent
// API refuses longer ones, and the manager records identities of at most this length.
const maxIdentityLen = 128

// Disks lists the host's disks from /sys/block: whole disks only (no partitions), without
// loop, RAM, zram, device-mapper, MD RAID and optical devices, and without empty drives;
// sorted by name.
func (i Inspector) Disks() []protocol.Disk {
	entries, err := os.ReadDir(i.path("sys/block"))
	if err != nil {
		return nil
	}
	var out []protocol.Disk
	for _, e := range entries {
		if d, ok := i.Disk(e.Name()); ok {
			out = append(out, d)
		}
	}
	slices.SortFunc(out, func(a, b protocol.Disk) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Disk reads what sysfs says about the disk with kernel name name (e.g. sda); false when there
// is no such disk or it is not one Disks would list. It reads the files afresh on every call:
// osdisk calls it right before writing to, or wiping, a disk.
func (i Inspector) Disk(name string) (protocol.Disk, bool) {
	if name == "" || strings.ContainsAny(name, "/.") || virtualDisk(name) {
		return protocol.Disk{}, false
	}
	if _, err := os.Stat(i.path("sys/block", name, "partition")); err == nil {
		return protocol.Disk{}, false
	}
	// Sizes in /sys are in 512-byte sectors whatever the device's block size.
	sectors, ok := i.readInt("sys/block", name, "size")
	if !ok || sectors <= 0 {
		return protocol.Disk{}, false
	}
	d := protocol.Disk{Name: name, SizeBytes: sectors * 512}
	d.Rotational = i.read("sys/block", name, "queue/rotational") == "1"
	d.Model = clipID(i.read("sys/block", name, "device/model"))
	// SCSI and SATA disks name the serial in VPD page 0x80 only; virtio and NVMe have a file.
	for _, f := range []string{"device/serial", "serial"} {
		if d.Serial = clipID(i.read("sys/block", name, f)); d.Serial != "" {
			break
		}
	}
	if d.Serial == "" {
		d.Serial = clipID(vpdSerial(i.readRaw("sys/block", name, "device/vpd_pg80")))
	}
	if w := i.read("sys/block", name, "device/wwid"); w != "" {
		d.WWN = clipID(scsiWWN(w)) // SCSI, SATA
	} else {
		d.WWN = clipID(nvmeWWN(i.read("sys/block", name, "wwid"))) // NVMe namespaces
	}
	d.ByPath = i.byPath(name)
	return d, true
}

// virtualDisk says whether a block device is memory, a loop device, a mapping or RAID set of
// other disks, or an optical drive rather than a disk.
func virtualDisk(name string) bool {
	for _, p := range []string{"loop", "ram", "zram", "dm-", "md", "sr"} {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// readRaw returns the bytes of a file under Root, at most 4 KiB; nil when it cannot be read.
func (i Inspector) readRaw(elem ...string) []byte {
	f, err := os.Open(i.path(elem...))
	if err != nil {
		return nil
	}
	defer f.Close()
	b := make([]byte, 4096)
	n, _ := f.Read(b)
	return b[:n]
}

func clipID(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > maxIdentityLen {
		s = strings.TrimSpace(protocol.Clip(s, maxIdentityLen))
	}
	return s
}

// vpdSerial is the unit serial number of a SCSI VPD page 0x80 (the kernel's vpd_pg80): a
// four-byte header whose last byte is the length of the ASCII serial that follows.
func vpdSerial(b []byte) string {
	if len(b) < 4 || b[1] != 0x80 {
		return ""
	}
	n := int(b[2])<<8 | int(b[3])
	if n > len(b)-4 {
		n = len(b) - 4
	}
	s := b[4 : 4+n]
	for _, c := range s {
		if c < 0x20 || c > 0x7e {
			return ""
		}
	}
	return strings.TrimSpace(string(s))
}

// scsiWWN turns the kernel's SCSI wwid (from VPD page 0x83) into the form udev gives ID_WWN:
// an NAA or EUI-64 designator as "0x" and lowercase hex. A T10 vendor designator ("t10.ATA …",
// what disks without a WWN get) is no WWN: "".
func scsiWWN(wwid string) string {
	kind, id, ok := strings.Cut(strings.TrimSpace(wwid), ".")
	if !ok || (kind != "naa" && kind != "eui") || !isHex(id) {
		return ""
	}
	return "0x" + strings.ToLower(id)
}

// nvmeWWN is an NVMe namespace's wwid as udev's ID_WWN has it ("eui.…", "nvme.…", "uuid.…"),
// lowercase, with runs of spaces (some firmware pads it) removed.
func nvmeWWN(wwid string) string {
	return strings.ToLower(strings.Join(strings.Fields(wwid), ""))
}

func isHex(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if !strings.ContainsRune("0123456789abcdefABCDEF", c) {
			return false
		}
	}
	return true
}

var (
	pciAddrRE  = regexp.MustCompile(`^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$`)
	scsiAddrRE = regexp.MustCompile(`^(\d+):(\d+):(\d+):(\d+)$`)
	ataPortRE  = regexp.MustCompile(`^ata\d+$`)
	scsiHostRE = regexp.MustCompile(`^host(\d+)$`)
)

// byPath names the disk as udev's path_id does under /dev/disk/by-path, derived from where the
// disk sits in /sys/devices: the PCI function closest to the disk, then the bus below it —
// nothing more for virtio-blk, "-ata-<port>.<lun>" for SATA, "-scsi-<host>:<bus>:<target>:<lun>"
// for other SCSI (the host counted from the first SCSI host of the same PCI function), and
// "-nvme-<namespace id>" for NVMe. The PXE initramfs has no udev, so sysfs is the one source
// that gives the same name in RAM and on disk. A bus not listed here (SAS, USB, MMC) gets the
// name of udev's link when /dev/disk/by-path has one, else "".
func (i Inspector) byPath(name string) string {
	if p := i.derivedByPath(name); p != "" {
		return clipID(p)
	}
	return clipID(i.udevByPath(name))
}

func (i Inspector) derivedByPath(name string) string {
	dev, err := filepath.EvalSymlinks(i.path("sys/block", name))
	if err != nil {
		return ""
	}
	devices, err := filepath.EvalSymlinks(i.path("sys/devices"))
	if err != nil {
		return ""
	}
	rel, err := filepath.Rel(devices, dev)
	if err != nil || strings.HasPrefix(rel, "..") {
		return ""
	}
	parts := strings.Split(rel, string(filepath.Separator))
	pci := -1
	for k, p := range parts {
		if pciAddrRE.MatchString(p) {
			pci = k
		}
	}
	if pci < 0 {
		return ""
	}
	path := "pci-" + parts[pci]
	below := parts[pci+1:]
	switch {
	case len(below) >= 3 && below[0] == "nvme":
		// .../<pci>/nvme/nvme0/nvme0n1
		nsid := i.read("sys/block", name, "nsid")
		if _, err := strconv.Atoi(nsid); err != nil {
			return ""
		}
		return path + "-nvme-" + nsid
	case len(below) >= 3 && strings.HasPrefix(below[0], "virtio") && below[1] == "block":
		// .../<pci>/virtio1/block/vda
		return path
	}
	addr := -1
	for k, p := range below {
		if scsiAddrRE.MatchString(p) {
			addr = k
		}
	}
	if addr < 0 {
		return ""
	}
	for _, p := range below[:addr] {
		if strings.HasPrefix(p, "end_device-") || strings.HasPrefix(p, "usb") || strings.HasPrefix(p, "rport-") {
			return "" // SAS, USB, Fibre Channel: named by udev only
		}
	}
	m := scsiAddrRE.FindStringSubmatch(below[addr])
	h, _ := strconv.Atoi(m[1])
	bus, target, lun := m[2], m[3], m[4]
	for k, p := range below[:addr] {
		switch {
		case ataPortRE.MatchString(p):
			// .../<pci>/ata3/host2/target2:0:0/2:0:0:0: the port's number on its controller.
			port := i.read("sys/devices", filepath.Join(parts[:pci+1]...), filepath.Join(below[:k+1]...), "ata_port", p, "port_no")
			if port == "" {
				port = i.read("sys/class/ata_port", p, "port_no")
			}
			if _, err := strconv.Atoi(port); err != nil {
				return ""
			}
			if bus != "0" {
				return path + "-ata-" + port + "." + bus + ".0" // behind a port multiplier
			}
			return path + "-ata-" + port + "." + lun
		case scsiHostRE.MatchString(p):
			// Number the host from the first SCSI host of the same parent, so the name does not
			// depend on the order in which controllers were probed.
			parent := i.path("sys/devices", filepath.Join(parts[:pci+1]...), filepath.Join(below[:k]...))
			base := h
			if entries, err := os.ReadDir(parent); err == nil {
				for _, e := range entries {
					if hm := scsiHostRE.FindStringSubmatch(e.Name()); hm != nil {
						if n, _ := strconv.Atoi(hm[1]); n < base {
							base = n
						}
					}
				}
			}
			return path + "-scsi-" + strconv.Itoa(h-base) + ":" + bus + ":" + target + ":" + lun
		}
	}
	return ""
}

// udevByPath is the name of a /dev/disk/by-path link to the disk, if udev made one: one that
// starts with "pci-" and, of those, the longest (udev keeps shorter compatibility names too).
func (i Inspector) udevByPath(name string) string {
	entries, err := os.ReadDir(i.path("dev/disk/by-path"))
	if err != nil {
		return ""
	}
	best := ""
	for _, e := range entries {
		link, err := os.Readlink(i.path("dev/disk/by-path", e.Name()))
		if err != nil || filepath.Base(link) != name {
			continue
		}
		n := e.Name()
		better := best == "" ||
			(strings.HasPrefix(n, "pci-") && !strings.HasPrefix(best, "pci-")) ||
			(strings.HasPrefix(n, "pci-") == strings.HasPrefix(best, "pci-") && (len(n) > len(best) || (len(n) == len(best) && n < best)))
		if better {
			best = n
		}
	}
	return best
}
