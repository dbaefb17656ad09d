package osdisk

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/basalt-dev/basalt/agents/apply"
	"github.com/basalt-dev/basalt/agents/protocol"
)

func TestParsePartitions(t *testing.T) {
	const mib = 1 << 20
	gpt := gptDisk(64*mib, 512, []gptPart{{2048, 10239}, {10240, 40959}, {40960, 131038}})
	backupOnly := bytes.Clone(gpt)
	clear(backupOnly[512:1024]) // the primary header is gone; the backup still lists them
	past := gptDisk(8*mib, 512, []gptPart{{2048, 4095}, {4096, 1 << 40}, {1 << 41, 1<<41 + 10}, {9000, 100}})
	gpt4k := gptDisk(64*mib, 4096, []gptPart{{256, 1279}})
	mbr := mbrDisk(64*mib, [][2]uint32{{2048, 8192}}, [2]uint32{16384, 65536}, [][3]uint32{{0, 2048, 4096}, {8192, 2048, 4096}})
	loop := mbrDisk(64*mib, nil, [2]uint32{16384, 65536}, [][3]uint32{{0, 2048, 4096}, {8192, 2048, 4096}})
	// The second EBR's "next" points at itself.
	next := loop[(16384+8192)*512+446+16:]
	next[4] = 0x05
	binary.LittleEndian.PutUint32(next[8:], 8192)
	cases := map[string]struct {
		disk []byte
		want []extent
	}{
		"gpt":             {gpt, []extent{{2048 * 512, 10240 * 512}, {10240 * 512, 40960 * 512}, {40960 * 512, 131039 * 512}}},
		"gpt backup only": {backupOnly, []extent{{2048 * 512, 10240 * 512}, {10240 * 512, 40960 * 512}, {40960 * 512, 131039 * 512}}},
		// A partition past the disk's end is cut at it; one starting past it, or ending before
		// it starts, is dropped.
		"gpt past the end": {past, []extent{{2048 * 512, 4096 * 512}, {4096 * 512, 8 * mib}}},
		"gpt 4096":         {gpt4k, []extent{{256 * 4096, 1280 * 4096}}},
		"mbr with logical partitions": {mbr, []extent{
			{2048 * 512, 10240 * 512}, {16384 * 512, (16384 + 65536) * 512},
			{(16384 + 2048) * 512, (16384 + 2048 + 4096) * 512}, {(16384 + 8192 + 2048) * 512, (16384 + 8192 + 2048 + 4096) * 512},
		}},
		"mbr ebr loop": {loop, []extent{
			{16384 * 512, (16384 + 65536) * 512},
			{(16384 + 2048) * 512, (16384 + 2048 + 4096) * 512}, {(16384 + 8192 + 2048) * 512, (16384 + 8192 + 2048 + 4096) * 512},
		}},
		"empty":   {make([]byte, mib), nil},
		"tiny":    {[]byte("EFI PART"), nil},
		"nothing": {nil, nil},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			got := parsePartitions(bytes.NewReader(tc.disk), int64(len(tc.disk)))
			sortExtents(tc.want)
			if d := cmp.Diff(tc.want, got, cmp.AllowUnexported(extent{})); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
		})
	}
}

func sortExtents(e []extent) {
	for i := range e {
		for j := i + 1; j < len(e); j++ {
			if e[j].Start < e[i].Start || (e[j].Start == e[i].Start && e[j].End < e[i].End) {
				e[i], e[j] = e[j], e[i]
			}
		}
	}
}

// signedDisk is a 64 MiB GPT disk whose partitions hold an ext4 filesystem (with an md 1.0
// superblock at its end), XFS, swap and an LVM physical volume, and a btrfs at the disk's end;
// every probe must find something on it.
func signedDisk(t *testing.T) ([]byte, []extent) {
	const mib = 1 << 20
	disk := gptDisk(64*mib, 512, []gptPart{{2048, 18431}, {18432, 34815}, {34816, 51199}, {51200, 120000}})
	parts := parsePartitions(bytes.NewReader(disk), int64(len(disk)))
	if len(parts) != 4 {
		t.Fatalf("partitions %+v", parts)
	}
	copy(disk[parts[0].Start:], ext4Image(t, 8*mib, 7))
	copy(disk[(parts[0].End-8192)&^4095:], mdMagic)
	copy(disk[parts[1].Start:], "XFSB")
	copy(disk[parts[2].Start+4096-10:], "SWAPSPACE2")
	copy(disk[parts[3].Start+512:], "LABELONE")
	copy(disk[parts[3].Start+65600:], "_BHRfS_M")
	for _, p := range parts {
		if len(probeSignatures(bytes.NewReader(disk[p.Start:p.End]), p.End-p.Start)) == 0 {
			t.Fatalf("partition %+v has no signature before the wipe", p)
		}
	}
	return disk, parts
}

// TestWipeLeavesNoSignature: Wipe on a GPT disk with a filesystem, RAID, swap and LVM in its
// partitions leaves no signature on the disk nor in any former partition. The marker goes
// first, then the root is made read-only, then the disk is overwritten.
func TestWipeLeavesNoSignature(t *testing.T) {
	root := t.TempDir()
	disk, parts := signedDisk(t)
	dev := filepath.Join(root, "dev/sda")
	if err := os.MkdirAll(filepath.Dir(dev), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dev, disk, 0o600); err != nil {
		t.Fatal(err)
	}
	if found := probeSignatures(bytes.NewReader(disk), int64(len(disk))); len(found) < 3 {
		t.Fatalf("before: %v", found)
	}
	marker := filepath.Join(root, protocol.RootMarkerPath)
	if err := apply.WriteFile(marker, []byte(`{"image":"`+strings.Repeat("a", 64)+`","disk":"/dev/sda"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	remounted := false
	in := &Installer{Root: root, RemountReadOnly: func() error {
		remounted = true
		if _, err := os.Stat(marker); !errors.Is(err, os.ErrNotExist) {
			t.Error("the root was made read-only before the marker was removed")
		}
		if b, _ := os.ReadFile(dev); !bytes.Equal(b, disk) {
			t.Error("the disk was written before the root was made read-only")
		}
		return errors.New("read-only already") // an error is logged, not fatal
	}}
	cur, err := in.Current()
	if err != nil || cur == nil {
		t.Fatalf("Current: %+v %v", cur, err)
	}
	if err := in.Wipe(*cur); err != nil {
		t.Fatal(err)
	}
	if !remounted {
		t.Error("the root was not made read-only")
	}
	got, err := os.ReadFile(dev)
	if err != nil || len(got) != len(disk) {
		t.Fatalf("disk after the wipe: %d bytes, %v", len(got), err)
	}
	if found := probeSignatures(bytes.NewReader(got), int64(len(got))); len(found) != 0 {
		t.Errorf("signatures left on the disk: %v", found)
	}
	if p := parsePartitions(bytes.NewReader(got), int64(len(got))); len(p) != 0 {
		t.Errorf("partition tables left: %v", p)
	}
	for _, p := range parts {
		if found := probeSignatures(io.NewSectionReader(bytes.NewReader(got), p.Start, p.End-p.Start), p.End-p.Start); len(found) != 0 {
			t.Errorf("signatures left in former partition %+v: %v", p, found)
		}
	}
	// What lies between the wiped ends is left (the wipe is not a full overwrite).
	if mid := parts[3].Start + 8<<20; !bytes.Equal(got[mid:mid+16], disk[mid:mid+16]) {
		t.Log("the middle of a partition was overwritten too")
	}
}

// TestWipeChecksTheIdentityFirst: a marker naming a disk by identity that no disk has leaves
// the marker and every disk as they were.
func TestWipeChecksTheIdentityFirst(t *testing.T) {
	root := t.TempDir()
	fakeDisk(t, root, "sda", "0x5000000000000001", "S1", bytes.Repeat([]byte{0xAA}, 4<<20))
	marker := filepath.Join(root, protocol.RootMarkerPath)
	if err := apply.WriteFile(marker, []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	in := &Installer{Root: root, RemountReadOnly: func() error { t.Error("remounted"); return nil }}
	err := in.Wipe(protocol.Root{Image: strings.Repeat("a", 64), Disk: "/dev/sda", WWN: "0x5000000000000002"})
	if err == nil || !strings.Contains(err.Error(), `refusing to touch /dev/sda: it has WWN "0x5000000000000001"`) {
		t.Fatalf("got %v", err)
	}
	if _, err := os.Stat(marker); err != nil {
		t.Errorf("the marker went: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(root, "dev/sda")); !bytes.Equal(b, bytes.Repeat([]byte{0xAA}, 4<<20)) {
		t.Error("the disk was written")
	}
}

func TestProbeSignaturesFindsEach(t *testing.T) {
	const size = 8 << 20
	for _, p := range probes {
		disk := make([]byte, size)
		at := p.at(size)
		copy(disk[at:], p.magic)
		found := probeSignatures(bytes.NewReader(disk), size)
		if len(found) == 0 || found[0].What != p.what && !containsWhat(found, p.what) {
			t.Errorf("%s at %d: found %v", p.what, at, found)
		}
	}
	if found := probeSignatures(bytes.NewReader(make([]byte, size)), size); len(found) != 0 {
		t.Errorf("an empty disk: %v", found)
	}
}

func containsWhat(found []Signature, what string) bool {
	for _, s := range found {
		if s.What == what {
			return true
		}
	}
	return false
}
