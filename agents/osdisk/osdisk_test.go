package osdisk

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/basalt-dev/basalt/agents/apply"
	"github.com/basalt-dev/basalt/agents/protocol"
	"github.com/basalt-dev/basalt/bootstrap/plan"
)

// fetcher serves one blob under any digest (the Installer must check it).
type fetcher struct{ blob []byte }

func (f fetcher) Fetch(context.Context, string) (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(f.blob)), nil
}

// folderFS "mounts" a disk file by checking it holds the expected image; the filesystem is the
// mount folder itself.
type folderFS struct {
	t       *testing.T
	want    []byte
	mounts  int
	unmount int
	grown   bool
	// partitions are the labels Partition was asked for.
	partitions []string
}

func (f *folderFS) Mount(disk, _ string) error {
	f.mounts++
	b, err := os.ReadFile(disk)
	if err != nil {
		return err
	}
	if !bytes.Equal(b[:len(f.want)], f.want) {
		f.t.Errorf("mounting %s: the disk does not start with the image", disk)
	}
	return nil
}
func (f *folderFS) Grow(string, string) error { f.grown = true; return nil }
func (f *folderFS) Unmount(string) error      { f.unmount++; return nil }

// Partition "finds" the root partition at the start of the disk (the fake image has no table).
func (f *folderFS) Partition(disk, label string) (string, error) {
	f.partitions = append(f.partitions, label)
	return disk, nil
}

func gz(t *testing.T, raw []byte) []byte {
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	if _, err := w.Write(raw); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func digest(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// setup makes a root folder with a 4 MiB "disk" full of old bytes and an agent state folder.
func setup(t *testing.T) (root, disk string) {
	root = t.TempDir()
	disk = filepath.Join(root, "dev", "vda")
	if err := os.MkdirAll(filepath.Dir(disk), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(disk, bytes.Repeat([]byte{0xAA}, 4<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(root, protocol.StateDir)
	if err := os.MkdirAll(state, 0o700); err != nil {
		t.Fatal(err)
	}
	for name, mode := range map[string]os.FileMode{"agent.key": 0o600, "agent.crt": 0o644} {
		if err := os.WriteFile(filepath.Join(state, name), []byte(name), mode); err != nil {
			t.Fatal(err)
		}
	}
	return root, disk
}

func rawImage(n int) []byte {
	r := rand.New(rand.NewPCG(1, 2))
	b := make([]byte, n)
	for i := range b[:n/2] {
		b[i] = byte(r.IntN(256)) // half noise, half zeros, like a filesystem image
	}
	return b
}

func TestInstallWritesChecksAndCarriesTheIdentity(t *testing.T) {
	root, disk := setup(t)
	raw := rawImage(3 << 20)
	blob := gz(t, raw)
	ffs := &folderFS{t: t, want: raw}
	in := &Installer{Root: root, Host: "pxe/node-1", Fetcher: fetcher{blob}, Carry: []string{protocol.StateDir}, FS: ffs}
	img := plan.OSImage{Name: "basalt-root", SHA256: digest(blob), Size: int64(len(blob)), Disk: "/dev/vda"}
	if err := in.Install(context.Background(), img); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(disk)
	if !bytes.Equal(got[:len(raw)], raw) || len(got) != 4<<20 {
		t.Fatalf("the disk does not hold the image (%d bytes)", len(got))
	}
	if ffs.mounts != 1 || ffs.unmount != 1 || !ffs.grown {
		t.Errorf("mounts %d, unmounts %d, grown %v; want 1, 1, true", ffs.mounts, ffs.unmount, ffs.grown)
	}
	newroot := filepath.Join(root, "run/basalt/newroot")
	key := filepath.Join(newroot, protocol.StateDir, "agent.key")
	if st, err := os.Stat(key); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("the identity was not carried with its mode: %v %v", st, err)
	}
	// The marker says what was written, for which Host; the running system has none.
	marker := &Installer{Root: newroot}
	cur, err := marker.Current()
	if err != nil || cur == nil || *cur != (protocol.Root{Image: img.SHA256, Disk: "/dev/vda", Host: "pxe/node-1"}) {
		t.Errorf("marker in the new root: %+v %v", cur, err)
	}
	if cur, err := in.Current(); cur != nil || err != nil {
		t.Errorf("the running system has a marker: %+v %v", cur, err)
	}
}

// TestInstallWholeDiskImageInstallsTheAgent: a whole-disk image is not grown (its own first-boot
// unit grows its root partition), its root partition is found by label, and it gets the agent,
// its enabled unit and the boot interface's static address, with the marker written last.
func TestInstallWholeDiskImageInstallsTheAgent(t *testing.T) {
	root, _ := setup(t)
	raw := rawImage(3 << 20)
	blob := gz(t, raw)
	agentBin := filepath.Join(root, "agent-binary")
	if err := os.WriteFile(agentBin, []byte("#!agent"), 0o755); err != nil {
		t.Fatal(err)
	}
	ffs := &folderFS{t: t, want: raw}
	in := &Installer{Root: root, Host: "metal/node-7", Fetcher: fetcher{blob}, Carry: []string{protocol.StateDir}, FS: ffs,
		AgentBinary: "/agent-binary", AgentArgs: []string{"--log-level", "debug"}}
	img := plan.OSImage{Name: "basalt-os", SHA256: digest(blob), Disk: "/dev/vda", Format: plan.FormatDisk,
		Network: &plan.OSNetwork{MAC: "52:54:00:ba:5a:07", Address: "10.1.2.200/24", Gateway: "10.1.2.1", DNS: []string{"10.1.2.1"}}}
	if err := in.Install(context.Background(), img); err != nil {
		t.Fatal(err)
	}
	if ffs.grown || !slices.Equal(ffs.partitions, []string{RootLabel}) {
		t.Errorf("grown %v, partitions looked up %v; want false, [%s]", ffs.grown, ffs.partitions, RootLabel)
	}
	newroot := filepath.Join(root, "run/basalt/newroot")
	read := func(p string) string {
		b, err := os.ReadFile(filepath.Join(newroot, p))
		if err != nil {
			t.Error(err)
		}
		return string(b)
	}
	if got := read(protocol.AgentBinaryPath); got != "#!agent" {
		t.Errorf("agent binary %q", got)
	}
	if st, err := os.Stat(filepath.Join(newroot, protocol.AgentBinaryPath)); err != nil || st.Mode().Perm() != 0o755 {
		t.Errorf("agent binary mode: %v %v", st, err)
	}
	if unit := read(protocol.AgentUnitPath); !strings.Contains(unit, "ExecStart="+protocol.AgentBinaryPath+" --log-level debug\n") {
		t.Errorf("unit:\n%s", unit)
	}
	if l, err := os.Readlink(filepath.Join(newroot, "etc/systemd/system/multi-user.target.wants", protocol.AgentUnit)); err != nil || l != protocol.AgentUnitPath {
		t.Errorf("unit not enabled: %q %v", l, err)
	}
	want := "[Match]\nMACAddress=52:54:00:ba:5a:07\n\n[Network]\nAddress=10.1.2.200/24\nGateway=10.1.2.1\nDNS=10.1.2.1\n"
	if nw := read(NetworkFile); !strings.Contains(nw, want) {
		t.Errorf("network file:\n%s\nwant it to contain\n%s", nw, want)
	}
	if _, err := os.Stat(filepath.Join(newroot, protocol.StateDir, "agent.key")); err != nil {
		t.Errorf("identity not carried: %v", err)
	}
	cur, err := (&Installer{Root: newroot}).Current()
	if err != nil || cur == nil || cur.Image != img.SHA256 {
		t.Errorf("marker: %+v %v", cur, err)
	}
}

func TestReadExt4Label(t *testing.T) {
	fs := make([]byte, 4096)
	binary.LittleEndian.PutUint16(fs[superblockOffset+ext4MagicOffset:], ext4Magic)
	copy(fs[superblockOffset+ext4LabelOffset:], "basalt-root")
	if l, err := readExt4Label(bytes.NewReader(fs)); err != nil || l != "basalt-root" {
		t.Errorf("label %q, %v", l, err)
	}
	copy(fs[superblockOffset+ext4LabelOffset:], "0123456789abcdefXYZ") // 16 bytes, no NUL
	if l, _ := readExt4Label(bytes.NewReader(fs)); l != "0123456789abcdef" {
		t.Errorf("a full-length label reads %q", l)
	}
	if _, err := readExt4Label(bytes.NewReader(make([]byte, 4096))); err == nil {
		t.Error("zeros read as ext4")
	}
	if _, err := readExt4Label(bytes.NewReader(make([]byte, 100))); err == nil {
		t.Error("a short device read as ext4")
	}
}

func TestInstallRefusesBadBytesAndWipes(t *testing.T) {
	raw := rawImage(2 << 20)
	good := gz(t, raw)
	corrupt := bytes.Clone(good)
	corrupt[len(corrupt)/2] ^= 0xFF
	huge := gz(t, make([]byte, 5<<20))
	cases := map[string]struct {
		blob []byte
		img  plan.OSImage
		want string
	}{
		"another digest":   {good, plan.OSImage{SHA256: strings.Repeat("a", 64)}, "want " + strings.Repeat("a", 64)},
		"another size":     {good, plan.OSImage{SHA256: digest(good), Size: 12}, "(12 bytes)"},
		"corrupt gzip":     {corrupt, plan.OSImage{SHA256: digest(corrupt)}, "decompressing"},
		"not gzip":         {raw, plan.OSImage{SHA256: digest(raw)}, "decompressing: gzip: invalid header"},
		"larger than disk": {huge, plan.OSImage{SHA256: digest(huge)}, "larger than /dev/vda"},
		"truncated gzip":   {good[:len(good)/2], plan.OSImage{SHA256: digest(good[:len(good)/2])}, "unexpected EOF"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			root, disk := setup(t)
			ffs := &folderFS{t: t}
			in := &Installer{Root: root, Fetcher: fetcher{tc.blob}, FS: ffs}
			tc.img.Name, tc.img.Disk = "basalt-root", "/dev/vda"
			err := in.Install(context.Background(), tc.img)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error with %q", err, tc.want)
			}
			if ffs.mounts != 0 {
				t.Error("a refused image was mounted")
			}
			got, _ := os.ReadFile(disk)
			if !bytes.Equal(got[:WipeBytes], make([]byte, WipeBytes)) {
				t.Error("the disk's first MiB was not wiped")
			}
		})
	}
}

func TestInstallRefusesAnInvalidImage(t *testing.T) {
	in := &Installer{Root: t.TempDir(), Fetcher: fetcher{}}
	err := in.Install(context.Background(), plan.OSImage{Name: "basalt-root", SHA256: strings.Repeat("a", 64), Disk: "/etc/shadow"})
	if err == nil || !strings.Contains(err.Error(), "os.disk") {
		t.Fatalf("got %v", err)
	}
}

func TestWipeRemovesTheMarkerThenTheSuperblock(t *testing.T) {
	root, disk := setup(t)
	in := &Installer{Root: root}
	marker := filepath.Join(root, protocol.RootMarkerPath)
	if err := apply.WriteFile(marker, []byte(`{"image":"`+strings.Repeat("a", 64)+`","disk":"/dev/vda"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	cur, err := in.Current()
	if err != nil || cur == nil {
		t.Fatalf("Current: %+v %v", cur, err)
	}
	if err := in.Wipe(*cur); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(marker); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("marker left: %v", err)
	}
	got, _ := os.ReadFile(disk)
	if !bytes.Equal(got[:WipeBytes], make([]byte, WipeBytes)) || got[WipeBytes] != 0xAA {
		t.Error("want exactly the first MiB zeroed")
	}
	if cur, err := in.Current(); cur != nil || err != nil {
		t.Errorf("after the wipe: %+v %v", cur, err)
	}
}

func TestCurrentRefusesAGarbledMarker(t *testing.T) {
	root := t.TempDir()
	if err := apply.WriteFile(filepath.Join(root, protocol.RootMarkerPath), []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := (&Installer{Root: root}).Current(); err == nil {
		t.Fatal("an empty marker was accepted")
	}
}
