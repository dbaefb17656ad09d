package host

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/resource"

	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
)

// TestChooseRootDisk: every hint given must match; of the disks that match and hold the image,
// the smallest wins, ties by name; when none does, the error says why for each disk.
func TestChooseRootDisk(t *testing.T) {
	const gib = 1 << 30
	disk := func(name string, size int64, model, serial, wwn, byPath string, rot bool) basaltv1.Disk {
		return basaltv1.Disk{Name: name, Size: resource.NewQuantity(size, resource.BinarySI), Model: model, Serial: serial, WWN: wwn, ByPath: byPath, Rotational: rot}
	}
	disks := []basaltv1.Disk{
		disk("sdb", 4000*gib, "ST4000NM0035-1V4", "ZC1B", "0x5000c500a1b2c3d5", "pci-0000:00:1f.2-ata-2.0", true),
		disk("sda", 480*gib, "SAMSUNG MZ7LH480", "S45N", "0x5002538e40a1b2c3", "pci-0000:00:1f.2-ata-1.0", false),
		disk("nvme0n1", 960*gib, "SAMSUNG MZQLB960HAJR-00007", "S437", "eui.0025388b91b12345", "pci-0000:01:00.0-nvme-1", false),
		disk("sdc", 480*gib, "SAMSUNG MZ7LH480", "S45M", "0x5002538e40a1b2c4", "pci-0000:00:1f.2-ata-3.0", false),
		disk("vda", 1<<20, "", "tiny", "", "pci-0000:00:04.0", true),
	}
	yes, no := true, false
	cases := []struct {
		name   string
		boot   basaltv1.BootSpec
		need   int64
		want   string
		errHas []string
	}{
		{name: "no hints: the smallest that holds the image, ties by name", need: 10 * gib, want: "sda"},
		{name: "even a tiny image skips the disk too small", need: 2 << 20, want: "sda"},
		{name: "deviceName", boot: basaltv1.BootSpec{RootDeviceHints: &basaltv1.RootDeviceHints{DeviceName: "/dev/nvme0n1"}}, need: gib, want: "nvme0n1"},
		{name: "rootDisk, the older deviceName", boot: basaltv1.BootSpec{RootDisk: "sdc"}, need: gib, want: "sdc"},                                                          //nolint:staticcheck // the deprecated field is what is tested
		{name: "rootDisk with other hints", boot: basaltv1.BootSpec{RootDisk: "sdc", RootDeviceHints: &basaltv1.RootDeviceHints{Model: "SAMSUNG"}}, need: gib, want: "sdc"}, //nolint:staticcheck // the deprecated field is what is tested
		{name: "wwn", boot: hints(basaltv1.RootDeviceHints{WWN: "0x5000c500a1b2c3d5"}), need: gib, want: "sdb"},
		{name: "serialNumber", boot: hints(basaltv1.RootDeviceHints{SerialNumber: "S45M"}), need: gib, want: "sdc"},
		{name: "byPath with its prefix", boot: hints(basaltv1.RootDeviceHints{ByPath: "/dev/disk/by-path/pci-0000:01:00.0-nvme-1"}), need: gib, want: "nvme0n1"},
		{name: "model is a substring", boot: hints(basaltv1.RootDeviceHints{Model: "MZQLB"}), need: gib, want: "nvme0n1"},
		{name: "rotational", boot: hints(basaltv1.RootDeviceHints{Rotational: &yes}), need: gib, want: "sdb"},
		{name: "not rotational", boot: hints(basaltv1.RootDeviceHints{Rotational: &no}), need: gib, want: "sda"},
		{name: "minSizeGigabytes", boot: hints(basaltv1.RootDeviceHints{MinSizeGigabytes: 500}), need: gib, want: "nvme0n1"},
		{name: "all hints together", boot: hints(basaltv1.RootDeviceHints{Model: "SAMSUNG", Rotational: &no, MinSizeGigabytes: 400, ByPath: "pci-0000:00:1f.2-ata-3.0"}), need: gib, want: "sdc"},
		{
			name: "a matching disk too small", boot: hints(basaltv1.RootDeviceHints{SerialNumber: "tiny"}), need: gib,
			errHas: []string{"no disk matches spec.boot.rootDeviceHints and holds the root image (1073741824 bytes)", "vda: 1048576 bytes, too small for the image", `sda: serial "S45N" is not "tiny"`},
		},
		{
			name: "hints that contradict", boot: hints(basaltv1.RootDeviceHints{WWN: "0x5000c500a1b2c3d5", Rotational: &no}), need: gib,
			errHas: []string{`sdb: is rotational`, `nvme0n1: WWN "eui.0025388b91b12345" is not "0x5000c500a1b2c3d5"`, "sda: WWN", "sdc: WWN", "vda: WWN"},
		},
		{
			name: "model and size", boot: hints(basaltv1.RootDeviceHints{Model: "INTEL", MinSizeGigabytes: 5000}), need: gib,
			errHas: []string{`sdb: model "ST4000NM0035-1V4" does not contain "INTEL", 4294967296000 bytes, less than minSizeGigabytes 5000`},
		},
		{name: "no hints, nothing big enough", need: 8000 * gib, errHas: []string{"no disk holds the root image (8589934592000 bytes); the agent reported vda: "}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := &basaltv1.Host{Spec: basaltv1.HostSpec{Boot: &tc.boot}, Status: basaltv1.HostStatus{Hardware: &basaltv1.Hardware{Disks: disks}}}
			got, err := chooseRootDisk(h, tc.need)
			if len(tc.errHas) == 0 {
				if err != nil || got.Name != tc.want {
					t.Fatalf("got %q %v, want %q", got.Name, err, tc.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("chose %q, want an error", got.Name)
			}
			for _, s := range tc.errHas {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q\ndoes not say %q", err, s)
				}
			}
		})
	}
	if _, err := chooseRootDisk(&basaltv1.Host{Spec: basaltv1.HostSpec{Boot: &basaltv1.BootSpec{}}}, 1); err == nil || !strings.Contains(err.Error(), "reported no disks") {
		t.Errorf("no hardware: %v", err)
	}
}

func hints(h basaltv1.RootDeviceHints) basaltv1.BootSpec {
	return basaltv1.BootSpec{RootDeviceHints: &h}
}
