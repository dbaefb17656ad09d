// Package osdisk puts a host's root filesystem on its local disk and takes it off again: the
// agent side of plan.Plan.OS.
//
// Install streams a gzip-compressed filesystem image from the manager's artifact cache straight
// onto a whole disk: the compressed bytes are hashed as they arrive and the decompressed bytes
// are written as they come, so nothing is held in memory or on a RAM disk. A digest, size or
// gzip checksum that does not match leaves the disk wiped, never half-trusted. Then the new
// filesystem is mounted, grown to the disk, given the agent's identity (the Carry folders) and,
// last, the marker (protocol.RootMarkerPath): the PXE initramfs switches only to a filesystem
// that has it, so an install interrupted at any point is simply done again.
//
// A whole-disk image (plan.FormatDisk: partition table, boot loader, root partition labelled
// RootLabel) is written the same way; then the kernel reads its partition table, the root
// partition is mounted (not grown: the image grows it at boot), and the agent installs itself
// there (binary, enabled systemd unit, the boot interface's static address) before the marker.
// The host then boots from its disk, with or without the manager.
//
// The disk is named by its kernel name and, when it has them, its WWN and serial number: before
// every write and wipe the agent reads sysfs again and touches only the disk with that identity
// (identity.go). A disk that holds a partition table, a filesystem, RAID or LVM is refused
// unless the Plan allows erasing it or what it holds is Basalt's own interrupted write
// (signatures.go, erase.go).
//
// Wipe undoes it on a host running from such a disk: the marker goes first (a filesystem
// change, so a crash right after leaves a disk the initramfs no longer boots), then every
// signature on the disk and its partitions is overwritten, so nothing recognises the disk any
// more (wipe.go).
package osdisk

import (
	"bufio"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/basalt-dev/basalt/agents/apply"
	"github.com/basalt-dev/basalt/agents/internal/ctxio"
	"github.com/basalt-dev/basalt/agents/protocol"
	"github.com/basalt-dev/basalt/bootstrap/plan"
)

// Fetcher returns the bytes of an artifact from the manager's sha256-addressed cache.
type Fetcher interface {
	Fetch(ctx context.Context, sha256 string) (io.ReadCloser, error)
}

// FileSystem mounts the written filesystem and grows it to its disk. The host's is Linux's
// (mount(2) of ext4, EXT4_IOC_RESIZE_FS); tests use a folder.
type FileSystem interface {
	// Mount mounts the filesystem on disk at dir.
	Mount(disk, dir string) error
	// Grow grows the filesystem mounted at dir to fill disk; best effort.
	Grow(disk, dir string) error
	// Unmount unmounts dir, flushing it.
	Unmount(dir string) error
	// Partition has the kernel read disk's partition table again and returns the partition
	// whose filesystem is labelled label (a whole-disk image's root).
	Partition(disk, label string) (string, error)
}

// RootLabel is the filesystem label of the root partition of a whole-disk image
// (plan.FormatDisk), as hack/os-image.sh makes it.
const RootLabel = "basalt-root"

// SelfBinary is the running agent's executable: what Install copies into a whole-disk image.
const SelfBinary = "/proc/self/exe"

// WipeBytes is how much of each end of the disk, and of each of its partitions, a wipe
// overwrites: the ext4 superblock is at byte 1024, partition tables and most other signatures
// are in the first MiB, the backup GPT and end-of-device RAID superblocks in the last.
const WipeBytes = 1 << 20

// Installer writes and wipes root filesystems on local disks.
type Installer struct {
	// Root prefixes the running system's paths (Marker, Carry); "" or "/" on a host.
	Root string
	// Host is "<namespace>/<name>", written into the marker.
	Host string
	// Fetcher downloads the image. Required for Install.
	Fetcher Fetcher
	// Carry are folders of the running system copied to the same place in the new root, e.g.
	// the agent's state folder with its identity.
	Carry []string
	// FS mounts and grows the written filesystem; default the host's (Linux).
	FS FileSystem
	// AgentBinary is the agent executable Install puts into a whole-disk image (default
	// SelfBinary), run there by the systemd unit protocol.AgentUnit with AgentArgs.
	AgentBinary string
	AgentArgs   []string
	// Logger; default slog.Default().
	Logger *slog.Logger
	// RemountReadOnly makes the running system's root filesystem read-only before Wipe
	// overwrites the disk it is on; default sysrq "u" through Root's /proc/sysrq-trigger.
	RemountReadOnly func() error
}

func (i *Installer) path(p string) string {
	if i.Root == "" || i.Root == "/" {
		return p
	}
	return filepath.Join(i.Root, p)
}

func (i *Installer) log() *slog.Logger {
	if i.Logger == nil {
		return slog.Default()
	}
	return i.Logger
}

func (i *Installer) fs() FileSystem {
	if i.FS == nil {
		return hostFS{}
	}
	return i.FS
}

// HostName is the Host the installer writes for, "<namespace>/<name>".
func (i *Installer) HostName() string { return i.Host }

// Current returns the marker of the root filesystem the system runs from, nil when it runs from
// anything else (the PXE initramfs has no marker).
func (i *Installer) Current() (*protocol.Root, error) {
	b, err := os.ReadFile(i.path(protocol.RootMarkerPath))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	r := &protocol.Root{}
	if err := json.Unmarshal(b, r); err != nil || r.Disk == "" || r.Image == "" {
		return nil, fmt.Errorf("%s is not a root marker: %q", protocol.RootMarkerPath, clip(b))
	}
	return r, nil
}

// ChecksumError says the image's bytes did not match its digest or size; the disk was wiped.
type ChecksumError struct {
	Name                string
	Want, Got           string
	WantSize, GotSize   int64
	GzipError, WipeFail error
}

func (e *ChecksumError) Error() string {
	msg := fmt.Sprintf("image %s: got sha256 %s (%d bytes), want %s", e.Name, e.Got, e.GotSize, e.Want)
	if e.WantSize > 0 {
		msg += fmt.Sprintf(" (%d bytes)", e.WantSize)
	}
	if e.GzipError != nil {
		msg += fmt.Sprintf("; decompressing: %v", e.GzipError)
	}
	if e.WipeFail != nil {
		return msg + fmt.Sprintf("; wiping what was written failed too: %v", e.WipeFail)
	}
	return msg + "; what was written is wiped"
}

// Install writes img to img.Disk and makes it a root filesystem the host can run from. The
// disk must not be in use (it is opened exclusively, so a mounted disk is refused).
func (i *Installer) Install(ctx context.Context, img plan.OSImage) error {
	if err := img.Validate(); err != nil {
		return err
	}
	if i.Fetcher == nil {
		return errors.New("osdisk: no Fetcher")
	}
	name, err := i.resolveDisk(img.Disk, img.WWN, img.Serial)
	if err != nil {
		return err
	}
	disk := i.path(name)
	log := i.log().With("disk", img.Disk, "image", img.Name, "sha256", img.SHA256)
	log.Info("Writing the root filesystem image")
	written, err := i.write(ctx, disk, img)
	if err != nil {
		return err
	}
	log.Info("Root filesystem image written", "bytes", written)

	target := disk
	if img.IsDiskImage() {
		// The image has its own partition table: the root is the partition labelled RootLabel,
		// and the image's own first-boot unit grows it to the disk (growing the filesystem
		// here, beyond its partition, would corrupt the disk).
		if target, err = i.fs().Partition(disk, RootLabel); err != nil {
			return fmt.Errorf("finding the root partition of the image on %s: %w", img.Disk, err)
		}
	}
	dir := i.path("/run/basalt/newroot")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := i.fs().Mount(target, dir); err != nil {
		return fmt.Errorf("mounting the written filesystem of %s: %w", img.Disk, err)
	}
	mounted := true
	defer func() {
		if mounted {
			_ = i.fs().Unmount(dir)
		}
	}()
	if !img.IsDiskImage() {
		if err := i.fs().Grow(disk, dir); err != nil {
			log.Warn("Cannot grow the root filesystem to its disk; it keeps the image's size", "error", err)
		}
	}
	for _, c := range i.Carry {
		if err := copyTree(i.path(c), filepath.Join(dir, c)); err != nil {
			return fmt.Errorf("copying %s into the new root: %w", c, err)
		}
	}
	if img.IsDiskImage() {
		if err := i.installAgent(dir, img.Network); err != nil {
			return err
		}
	}
	marker, err := json.Marshal(i.rootMarker(img))
	if err != nil {
		return err
	}
	if err := apply.WriteFile(filepath.Join(dir, protocol.RootMarkerPath), marker, 0o644); err != nil {
		return fmt.Errorf("writing the root marker: %w", err)
	}
	mounted = false
	if err := i.fs().Unmount(dir); err != nil {
		return fmt.Errorf("unmounting the new root: %w", err)
	}
	log.Info("Root filesystem ready on disk")
	return nil
}

// NetworkFile is where installAgent writes the installed system's static address: a
// systemd-networkd file that sorts before the image's own DHCP configuration.
const NetworkFile = "/etc/systemd/network/10-basalt-boot.network"

// installAgent makes the whole-disk image mounted at dir run this agent with its identity (the
// Carry folders, already copied): the binary, its systemd unit, enabled, and the boot
// interface's static address when the Plan gives one.
func (i *Installer) installAgent(dir string, network *plan.OSNetwork) error {
	src := i.AgentBinary
	if src == "" {
		src = SelfBinary
	}
	bin, err := os.ReadFile(i.path(src))
	if err != nil {
		return fmt.Errorf("reading the agent binary: %w", err)
	}
	if err := apply.WriteFile(filepath.Join(dir, protocol.AgentBinaryPath), bin, 0o755); err != nil {
		return fmt.Errorf("installing the agent into the new root: %w", err)
	}
	if err := apply.WriteFile(filepath.Join(dir, protocol.AgentUnitPath), protocol.AgentUnitFile(protocol.AgentBinaryPath, i.AgentArgs), 0o644); err != nil {
		return fmt.Errorf("installing the agent's unit: %w", err)
	}
	wants := filepath.Join(dir, "/etc/systemd/system/multi-user.target.wants")
	if err := os.MkdirAll(wants, 0o755); err != nil {
		return err
	}
	link := filepath.Join(wants, protocol.AgentUnit)
	_ = os.Remove(link)
	if err := os.Symlink(protocol.AgentUnitPath, link); err != nil {
		return fmt.Errorf("enabling the agent's unit: %w", err)
	}
	if network == nil {
		return nil
	}
	if err := apply.WriteFile(filepath.Join(dir, NetworkFile), NetworkdFile(network), 0o644); err != nil {
		return fmt.Errorf("writing the boot interface's address: %w", err)
	}
	return nil
}

// NetworkdFile is the systemd-networkd configuration of n: the interface with n.MAC gets the
// static address, gateway and name servers, so the installed system keeps its node address
// when no DHCP server answers (the manager is down, or the site's server forgot the host).
func NetworkdFile(n *plan.OSNetwork) []byte {
	var b strings.Builder
	b.WriteString("# Written by Basalt's agent when it installed this system: the Host's spec.boot.address.\n")
	fmt.Fprintf(&b, "[Match]\nMACAddress=%s\n\n[Network]\nAddress=%s\n", n.MAC, n.Address)
	if n.Gateway != "" {
		fmt.Fprintf(&b, "Gateway=%s\n", n.Gateway)
	}
	for _, d := range n.DNS {
		fmt.Fprintf(&b, "DNS=%s\n", d)
	}
	b.WriteString("LinkLocalAddressing=no\nIPv6AcceptRA=no\n")
	return []byte(b.String())
}

// write streams the image onto disk and checks it; on a mismatch the disk is wiped. A disk
// that holds something is refused first, untouched (see prepare). The image's first WipeBytes
// are held in memory and written last, once every byte has checked out: until then the disk
// starts with the claim sector, so an interrupted write leaves a disk that nothing mounts or
// boots and that the next attempt recognises as Basalt's own.
func (i *Installer) write(ctx context.Context, disk string, img plan.OSImage) (int64, error) {
	f, err := os.OpenFile(disk, os.O_RDWR|os.O_EXCL, 0)
	if err != nil {
		return 0, fmt.Errorf("opening %s: %w (is it mounted or in use?)", img.Disk, err)
	}
	defer f.Close()
	capacity, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return 0, fmt.Errorf("reading the size of %s: %w", img.Disk, err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return 0, err
	}
	body, err := i.Fetcher.Fetch(ctx, img.SHA256)
	if err != nil {
		return 0, fmt.Errorf("fetching image %s: %w", img.Name, err)
	}
	defer body.Close()
	h := sha256.New()
	counted := &countingReader{r: ctxio.Reader(ctx, body), h: h}
	var written int64
	var head []byte
	zr, gzErr := gzip.NewReader(bufio.NewReaderSize(counted, 1<<20))
	// The disk's size bounds what is written: a bigger image is an error, not an overrun.
	var bounded io.Reader
	if gzErr == nil {
		bounded = &boundedReader{r: zr, left: capacity, cap: capacity, disk: img.Disk}
		head, gzErr = readHead(bounded)
	}
	if err := i.prepare(f, capacity, img, head); err != nil {
		return 0, err
	}
	if gzErr == nil {
		var n int64
		n, gzErr = io.CopyBuffer(io.NewOffsetWriter(f, int64(len(head))), bounded, make([]byte, 1<<20))
		written = int64(len(head)) + n
	}
	var tooBig *tooBigError
	if errors.As(gzErr, &tooBig) || ctx.Err() != nil {
		return written, errors.Join(gzErr, ctx.Err(), wipeFile(f))
	}
	// Read to the end so the digest covers every byte the manager sent.
	if _, err := io.Copy(io.Discard, counted); err != nil && gzErr == nil {
		gzErr = err
	}
	got := hex.EncodeToString(h.Sum(nil))
	if gzErr != nil || got != img.SHA256 || (img.Size > 0 && counted.n != img.Size) {
		e := &ChecksumError{Name: img.Name, Want: img.SHA256, Got: got, WantSize: img.Size, GotSize: counted.n, GzipError: gzErr}
		e.WipeFail = wipeFile(f)
		return written, e
	}
	// Last, the image's start over the claim sector (all of the sector, however short the
	// image), after the rest is on the disk: writeback does not keep the order of writes.
	if err := f.Sync(); err != nil {
		return written, fmt.Errorf("flushing %s: %w", img.Disk, err)
	}
	if _, err := f.WriteAt(overClaim(head), 0); err != nil {
		return written, fmt.Errorf("writing the start of the image to %s: %w", img.Disk, err)
	}
	if err := f.Sync(); err != nil {
		return written, fmt.Errorf("flushing %s: %w", img.Disk, err)
	}
	return written, nil
}

type countingReader struct {
	r io.Reader
	h hash.Hash
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.h.Write(p[:n])
	c.n += int64(n)
	return n, err
}

type tooBigError struct {
	disk     string
	capacity int64
}

func (e *tooBigError) Error() string {
	return fmt.Sprintf("the image is larger than %s (%d bytes)", e.disk, e.capacity)
}

// boundedReader fails once more than left bytes come.
type boundedReader struct {
	r    io.Reader
	left int64
	cap  int64
	disk string
}

func (b *boundedReader) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if int64(n) > b.left {
		return 0, &tooBigError{disk: b.disk, capacity: b.cap}
	}
	b.left -= int64(n)
	return n, err
}

// copyTree copies the folder src to dst: folders, regular files and symbolic links, with their
// modes. dst's existing files are replaced.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			if err := os.MkdirAll(target, info.Mode().Perm()); err != nil {
				return err
			}
			return os.Chmod(target, info.Mode().Perm())
		case d.Type()&fs.ModeSymlink != 0:
			link, err := os.Readlink(p)
			if err != nil {
				return err
			}
			_ = os.Remove(target)
			return os.Symlink(link, target)
		case d.Type().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			return apply.WriteFile(target, b, info.Mode().Perm())
		}
		return nil // sockets, devices: nothing the agent keeps
	})
}

func clip(b []byte) string {
	if len(b) > 200 {
		return string(b[:200]) + "..."
	}
	return string(b)
}
