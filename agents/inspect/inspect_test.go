package inspect

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/basalt-dev/basalt/agents/protocol"
)

func fakeAddrs(name string) ([]string, error) {
	switch name {
	case "eno1":
		return []string{"10.0.0.11/24", "fe80::ae1f:6bff:fe01:203/64"}, nil
	case "br0":
		return []string{"192.168.122.5/24"}, nil
	}
	return nil, errors.New("no such interface")
}

func TestInspectFakeHost(t *testing.T) {
	got, err := Inspector{Root: "testdata/host", Addrs: fakeAddrs}.Inspect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := &protocol.Hardware{
		CPUs:        15, // 0-11, 14, 16-17
		MemoryBytes: 65843076 * 1024,
		Disks: []protocol.Disk{
			{Name: "nvme0n1", SizeBytes: 1875385008 * 512, Model: "SAMSUNG MZQLB960HAJR-00007", Serial: "S437NA0M123456",
				WWN: "eui.0025388b91b12345", ByPath: "pci-0000:01:00.0-nvme-1"},
			{Name: "sda", SizeBytes: 7814037168 * 512, Model: "ST4000NM0035-1V4", Serial: "ZC1ABCDE", Rotational: true,
				WWN: "0x5000c500a1b2c3d4", ByPath: "pci-0000:00:1f.2-ata-3.0"},
			{Name: "sdb", SizeBytes: 209715200 * 512, Model: "QEMU HARDDISK", Serial: "QM00005", Rotational: true,
				WWN: "0x6001405abcdef0123456789abcdef012", ByPath: "pci-0000:00:05.0-scsi-0:0:1:2"},
			{Name: "vda", SizeBytes: 41943040 * 512, Serial: "virtio-disk-1", Rotational: true, ByPath: "pci-0000:00:04.0"},
		},
		NICs: []protocol.NIC{
			{Name: "br0", MAC: "52:54:00:aa:bb:cc", Addresses: []string{"192.168.122.5/24"}},
			{Name: "eno1", MAC: "ac:1f:6b:01:02:03", Addresses: []string{"10.0.0.11/24", "fe80::ae1f:6bff:fe01:203/64"}, SpeedMbps: 10000},
			{Name: "eno2", MAC: "ac:1f:6b:01:02:04"},
		},
		System: protocol.SystemInfo{Vendor: "Supermicro", Product: "SYS-1029P-WTR", Serial: "S123456X9"},
		OS:     &protocol.OSFacts{}, // the tree has no /proc/1, /run or /sys/fs/cgroup
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("hardware (-want +got):\n%s", d)
	}
}

func TestCPUInfoFallbackAndMissingFacts(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "proc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "proc/cpuinfo"), []byte("processor\t: 0\n\nprocessor\t: 1\n\nprocessor\t: 2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := Inspector{Root: root, Addrs: fakeAddrs}.Inspect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(&protocol.Hardware{CPUs: 3, OS: &protocol.OSFacts{}}, got); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
	if _, err := (Inspector{Root: t.TempDir()}).Inspect(context.Background()); err == nil {
		t.Error("a root without CPU or memory facts is an error")
	}
}

func TestParseCPUList(t *testing.T) {
	for in, want := range map[string]int{"0": 1, "0-3": 4, "0-3,8-11\n": 8, "0,2,4": 3, "": 0, "3-1": 0, "a-b": 0} {
		if got := parseCPUList(in); got != want {
			t.Errorf("parseCPUList(%q) = %d, want %d", in, got, want)
		}
	}
}

// TestInspectThisHost reads the machine the test runs on: it must find CPUs and memory.
func TestInspectThisHost(t *testing.T) {
	hw, err := Inspector{}.Inspect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if hw.CPUs < 1 || hw.MemoryBytes < 1<<20 {
		t.Errorf("this host: %+v", hw)
	}
	if hw.OS == nil || (hw.OS.CgroupVersion != 1 && hw.OS.CgroupVersion != 2) {
		t.Errorf("this host's OS facts: %+v", hw.OS)
	} else {
		t.Logf("this host's OS facts: %+v", *hw.OS)
	}
}

// TestDiskIdentityParsers covers the sysfs formats one by one: VPD page 0x80, the SCSI wwid
// (NAA, EUI-64, T10 vendor), and the NVMe wwid.
func TestDiskIdentityParsers(t *testing.T) {
	for in, want := range map[string]string{
		"\x00\x80\x00\x08ZC1ABCDE":   "ZC1ABCDE",
		"\x00\x80\x00\x0a  ZC1ABC  ": "ZC1ABC",
		"\x00\x80\x00\xffshort":      "short", // a length past the end is cut to what is there
		"\x00\x83\x00\x04abcd":       "",      // another page
		"\x00\x80\x00\x04ab\x01d":    "",      // not ASCII
		"\x00\x80":                   "",
	} {
		if got := vpdSerial([]byte(in)); got != want {
			t.Errorf("vpdSerial(%q) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[string]string{
		"naa.5000C500A1B2C3D4\n": "0x5000c500a1b2c3d4",
		"eui.0025388b91b12345":   "0x0025388b91b12345",
		"t10.ATA     ST4000NM0035-1V4107                     ZC1ABCDE": "",
		"naa.":     "",
		"naa.xyz":  "",
		"nonsense": "",
	} {
		if got := scsiWWN(in); got != want {
			t.Errorf("scsiWWN(%q) = %q, want %q", in, got, want)
		}
	}
	if got := nvmeWWN("  EUI.0025388B91B12345 \n"); got != "eui.0025388b91b12345" {
		t.Errorf("nvmeWWN: %q", got)
	}
}

// TestByPathFromUdev: a disk on a bus the agent does not derive a name for (here SAS) gets
// the name of udev's link, the longest pci- one.
func TestByPathFromUdev(t *testing.T) {
	root := t.TempDir()
	dev := filepath.Join(root, "sys/devices/pci0000:00/0000:00:02.0/0000:02:00.0/host0/port-0:0/end_device-0:0/target0:0:0/0:0:0:0/block/sdc")
	for _, d := range []string{dev, filepath.Join(root, "sys/block"), filepath.Join(root, "dev/disk/by-path")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dev, "size"), []byte("1000\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	rel, _ := filepath.Rel(filepath.Join(root, "sys/block"), dev)
	links := map[string]string{
		"sys/block/sdc": rel,
		"dev/disk/by-path/pci-0000:02:00.0-sas-phy0-lun-0":       "../../sdc",
		"dev/disk/by-path/pci-0000:02:00.0-sas-0x5000c500-lun-0": "../../sdc",
		"dev/disk/by-path/pci-0000:02:00.0-sas-phy0-lun-0-part1": "../../sdc1",
	}
	for l, target := range links {
		if err := os.Symlink(target, filepath.Join(root, l)); err != nil {
			t.Fatal(err)
		}
	}
	d, ok := Inspector{Root: root}.Disk("sdc")
	if !ok || d.ByPath != "pci-0000:02:00.0-sas-0x5000c500-lun-0" {
		t.Errorf("got %+v %v", d, ok)
	}
	for _, name := range []string{"", "..", "sdc/../sdc", "sdz"} {
		if _, ok := (Inspector{Root: root}).Disk(name); ok {
			t.Errorf("Disk(%q) found a disk", name)
		}
	}
}
