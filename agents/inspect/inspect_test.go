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
			{Name: "nvme0n1", SizeBytes: 1875385008 * 512, Model: "SAMSUNG MZQLB960HAJR-00007", Serial: "S437NA0M123456"},
			{Name: "sda", SizeBytes: 7814037168 * 512, Model: "ST4000NM0035-1V4", Serial: "ZC1ABCDE", Rotational: true},
			{Name: "vda", SizeBytes: 41943040 * 512, Serial: "virtio-disk-1", Rotational: true},
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
