package osdisk

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/basalt-dev/basalt/agents/protocol"
	"github.com/basalt-dev/basalt/bootstrap/plan"
)

// fakeDisk makes /dev/<name> (a file holding content) and its sysfs entry with a WWN ("0x…",
// stored as the kernel's naa. wwid; "" for none) and a serial.
func fakeDisk(t *testing.T, root, name, wwn, serial string, content []byte) string {
	t.Helper()
	sys := filepath.Join(root, "sys/block", name)
	files := map[string]string{"size": strconv.Itoa(len(content) / 512), "device/serial": serial}
	if wwn != "" {
		files["device/wwid"] = "naa." + strings.TrimPrefix(wwn, "0x")
	}
	for f, v := range files {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(sys, f)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(sys, f), []byte(v+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	dev := filepath.Join(root, "dev", name)
	if err := os.MkdirAll(filepath.Dir(dev), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dev, content, 0o600); err != nil {
		t.Fatal(err)
	}
	return dev
}

const (
	wwnA = "0x5000c500a1b2c3d4"
	wwnB = "0x5000c500a1b2c3d5"
)

// TestInstallChecksTheDiskIdentity: the agent writes only to the disk with the Plan's WWN and
// serial — the named one when it has them, the one disk that has them when the kernel name
// moved — and refuses, touching nothing, when no disk or several have them.
func TestInstallChecksTheDiskIdentity(t *testing.T) {
	raw := rawImage(3 << 20)
	blob := gz(t, raw)
	old := bytes.Repeat([]byte{0xAA}, 4<<20)
	cases := map[string]struct {
		disks   map[string][2]string // name → WWN, serial
		wwn     string
		serial  string
		written string // the disk written to; "" for none
		err     string
	}{
		"same name":      {map[string][2]string{"sda": {wwnA, "S1"}, "sdb": {wwnB, "S2"}}, wwnA, "S1", "sda", ""},
		"serial only":    {map[string][2]string{"sda": {"", "S1"}, "sdb": {"", "S2"}}, "", "S1", "sda", ""},
		"renamed":        {map[string][2]string{"sda": {wwnB, "S2"}, "sdb": {wwnA, "S1"}}, wwnA, "S1", "sdb", ""},
		"gone":           {map[string][2]string{"sda": {wwnB, "S2"}}, wwnA, "S1", "", `refusing to touch /dev/sda: it has WWN "0x5000c500a1b2c3d5" and serial "S2", and no disk has the WWN "0x5000c500a1b2c3d4" and serial "S1"`},
		"name gone too":  {map[string][2]string{"sdb": {wwnB, "S2"}}, wwnA, "", "", "refusing to touch /dev/sda: it is not a disk on this boot"},
		"serial differs": {map[string][2]string{"sda": {wwnA, "S9"}}, wwnA, "S1", "", `it has WWN "0x5000c500a1b2c3d4" and serial "S9"`},
		"two match":      {map[string][2]string{"sda": {"", "S9"}, "sdb": {"", "S1"}, "sdc": {"", "S1"}}, "", "S1", "", "2 disks (/dev/sdb, /dev/sdc) have the"},
		"no identity":    {map[string][2]string{"sda": {wwnB, "S2"}}, "", "", "sda", ""},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			root, _ := setup(t)
			for d, id := range tc.disks {
				fakeDisk(t, root, d, id[0], id[1], old)
			}
			in := &Installer{Root: root, Host: "pxe/n1", Fetcher: fetcher{blob}, FS: &folderFS{t: t, want: raw}}
			img := plan.OSImage{Name: "basalt-root", SHA256: digest(blob), Disk: "/dev/sda", WWN: tc.wwn, Serial: tc.serial}
			err := in.Install(context.Background(), img)
			if tc.err == "" && err != nil {
				t.Fatal(err)
			}
			if tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
				t.Fatalf("got %v, want an error with %q", err, tc.err)
			}
			for d := range tc.disks {
				b, _ := os.ReadFile(filepath.Join(root, "dev", d))
				if d == tc.written != bytes.Equal(b[:len(raw)], raw) {
					t.Errorf("%s: written %v, want %v", d, !bytes.Equal(b, old), d == tc.written)
				}
			}
			if tc.written == "" {
				return
			}
			// The marker names the disk as the Plan did, with its identity: Wipe finds it by that.
			cur, err := (&Installer{Root: filepath.Join(root, "run/basalt/newroot")}).Current()
			want := protocol.Root{Image: img.SHA256, Disk: "/dev/sda", WWN: tc.wwn, Serial: tc.serial, Host: "pxe/n1"}
			if err != nil || cur == nil || *cur != want {
				t.Errorf("marker %+v %v, want %+v", cur, err, want)
			}
		})
	}
}

// TestWipeFollowsTheIdentity: after a reboot that renamed the disk, Wipe wipes the disk with
// the marker's identity, not the one that now has its old name.
func TestWipeFollowsTheIdentity(t *testing.T) {
	root := t.TempDir()
	other := bytes.Repeat([]byte{0xAA}, 4<<20)
	ours := ext4Image(t, 4<<20, 3)
	fakeDisk(t, root, "sda", wwnB, "S2", other)
	fakeDisk(t, root, "sdb", wwnA, "S1", ours)
	in := &Installer{Root: root, RemountReadOnly: func() error { return nil }}
	if err := in.Wipe(protocol.Root{Image: strings.Repeat("a", 64), Disk: "/dev/sda", WWN: wwnA, Serial: "S1"}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(root, "dev/sda")); !bytes.Equal(b, other) {
		t.Error("/dev/sda, now another disk, was written")
	}
	if b, _ := os.ReadFile(filepath.Join(root, "dev/sdb")); len(probeSignatures(bytes.NewReader(b), int64(len(b)))) != 0 {
		t.Error("/dev/sdb, the disk written, still has a signature")
	}
}

// TestInstallRefusesNonEmptyDisks: a disk with any signature is refused, untouched, with a
// message that names what was found and the field that allows erasing it; with the Plan's
// Erase it is written, and no signature outside the image survives.
func TestInstallRefusesNonEmptyDisks(t *testing.T) {
	raw := rawImage(3 << 20)
	blob := gz(t, raw)
	const size = 8 << 20
	for _, p := range probes {
		t.Run(p.what, func(t *testing.T) {
			root := t.TempDir()
			disk := make([]byte, size)
			copy(disk[p.at(size):], p.magic)
			dev := fakeDisk(t, root, "sda", "", "", disk)
			in := &Installer{Root: root, Fetcher: fetcher{blob}, FS: &folderFS{t: t, want: raw}}
			img := plan.OSImage{Name: "basalt-root", SHA256: digest(blob), Disk: "/dev/sda"}
			err := in.Install(context.Background(), img)
			var ne *NotEmptyError
			if !errors.As(err, &ne) || !strings.Contains(err.Error(), p.what) || !strings.Contains(err.Error(), "spec.boot.eraseExistingDisk: true") {
				t.Fatalf("got %v", err)
			}
			if b, _ := os.ReadFile(dev); !bytes.Equal(b, disk) {
				t.Fatal("a refused disk was written")
			}
			img.Erase = true
			if err := in.Install(context.Background(), img); err != nil {
				t.Fatal(err)
			}
			b, _ := os.ReadFile(dev)
			if !bytes.Equal(b[:len(raw)], raw) {
				t.Error("the image was not written")
			}
			if at := p.at(size); at >= int64(len(raw)) && !bytes.Equal(b[at:at+int64(len(p.magic))], make([]byte, len(p.magic))) {
				t.Errorf("the old %s survived at %d", p.what, at)
			}
		})
	}
}

// crashingFetcher serves blob and ends the goroutine reading it (as a crash ends the agent:
// no error handling, no wipe, only deferred closes) once after bytes have been read.
type crashingFetcher struct {
	blob  []byte
	after int
}

func (c crashingFetcher) Fetch(context.Context, string) (io.ReadCloser, error) {
	return io.NopCloser(&crashReader{r: bytes.NewReader(c.blob), left: c.after}), nil
}

type crashReader struct {
	r    io.Reader
	left int
}

func (c *crashReader) Read(p []byte) (int, error) {
	if c.left <= 0 {
		runtime.Goexit()
	}
	n, err := c.r.Read(p[:min(len(p), c.left)])
	c.left -= n
	return n, err
}

// TestInstallAfterAnInterruptedWrite: the agent dies while it writes the image over a disk
// it was allowed to erase; the disk now starts with Basalt's claim sector and holds the
// image's end (here a whole-disk image's backup GPT) but not its start. The next attempt,
// without Erase, writes it again; a disk holding the same image without the claim sector (an
// install stopped after the write) is written again too; another filesystem is refused.
func TestInstallAfterAnInterruptedWrite(t *testing.T) {
	const size = 4 << 20
	raw := ext4Image(t, size, 5)
	copy(raw[size-512:], "EFI PART") // the image's last sector: a backup GPT header
	blob := gz(t, raw)
	root := t.TempDir()
	dev := fakeDisk(t, root, "sda", wwnA, "S1", bytes.Repeat([]byte{0x11}, size))
	img := plan.OSImage{Name: "basalt-root", SHA256: digest(blob), Disk: "/dev/sda", WWN: wwnA, Serial: "S1", Erase: true}

	done := make(chan error, 1)
	go func() {
		defer close(done)
		in := &Installer{Root: root, Host: "pxe/n1", Fetcher: crashingFetcher{blob: blob, after: len(blob)}, FS: &folderFS{t: t, want: raw}}
		done <- in.Install(context.Background(), img)
	}()
	if err, ok := <-done; ok {
		t.Fatalf("the install ended with %v, want a crash", err)
	}
	b, _ := os.ReadFile(dev)
	if !claimed(b) || len(probeSignatures(bytes.NewReader(b), size)) == 0 || bytes.Equal(b[:WipeBytes], raw[:WipeBytes]) {
		t.Fatalf("after the crash: claimed %v, signatures %v", claimed(b), probeSignatures(bytes.NewReader(b), size))
	}

	img.Erase = false
	in := &Installer{Root: root, Host: "pxe/n1", Fetcher: fetcher{blob}, FS: &folderFS{t: t, want: raw}}
	if err := in.Install(context.Background(), img); err != nil {
		t.Fatalf("after an interrupted write: %v", err)
	}
	if b, _ := os.ReadFile(dev); !bytes.Equal(b, raw) {
		t.Fatal("the image was not written")
	}
	// Written completely (no marker was written: an install stopped before it): again.
	if err := in.Install(context.Background(), img); err != nil {
		t.Fatalf("over the same image: %v", err)
	}
	// Another ext4 filesystem: refused.
	if err := os.WriteFile(dev, ext4Image(t, size, 6), 0o600); err != nil {
		t.Fatal(err)
	}
	var ne *NotEmptyError
	if err := in.Install(context.Background(), img); !errors.As(err, &ne) || !strings.Contains(err.Error(), "ext2/3/4 filesystem") {
		t.Fatalf("over another filesystem: %v", err)
	}
}
