package osdisk

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ext4ResizeFS is EXT4_IOC_RESIZE_FS, _IOW('f', 16, __u64): grow a mounted ext4 filesystem to a
// number of blocks.
const ext4ResizeFS = 0x40086610

// hostFS mounts ext4 with mount(2) and grows it online.
type hostFS struct{}

func (hostFS) Mount(disk, dir string) error {
	return unix.Mount(disk, dir, "ext4", unix.MS_NOATIME, "")
}

func (hostFS) Unmount(dir string) error {
	unix.Sync()
	return unix.Unmount(dir, 0)
}

// Grow resizes the filesystem at dir to the whole of disk.
func (hostFS) Grow(disk, dir string) error {
	f, err := os.Open(disk)
	if err != nil {
		return err
	}
	size, err := f.Seek(0, io.SeekEnd)
	f.Close()
	if err != nil {
		return err
	}
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return err
	}
	if st.Bsize <= 0 {
		return fmt.Errorf("block size %d", st.Bsize)
	}
	blocks := uint64(size) / uint64(st.Bsize)
	if blocks <= st.Blocks {
		return nil
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, d.Fd(), ext4ResizeFS, uintptr(unsafe.Pointer(&blocks))); errno != 0 {
		return fmt.Errorf("EXT4_IOC_RESIZE_FS to %d blocks: %w", blocks, errno)
	}
	return nil
}

// Partition re-reads disk's partition table (BLKRRPART; the disk was just overwritten) and
// returns the partition whose ext4 filesystem has label. The partition's device node appears in
// devtmpfs a moment after the kernel adds it, so it is looked for for a few seconds.
func (hostFS) Partition(disk, label string) (string, error) {
	f, err := os.Open(disk)
	if err != nil {
		return "", err
	}
	for try := 0; ; try++ {
		_, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.BLKRRPART, 0)
		if errno == 0 {
			break
		}
		if errno != unix.EBUSY || try == 10 {
			f.Close()
			return "", fmt.Errorf("re-reading the partition table of %s: %w", disk, errno)
		}
		time.Sleep(500 * time.Millisecond)
	}
	f.Close()
	name := filepath.Base(disk)
	var seen []string
	for deadline := time.Now().Add(10 * time.Second); ; {
		seen = seen[:0]
		entries, _ := os.ReadDir(filepath.Join("/sys/class/block", name))
		for _, e := range entries {
			if _, err := os.Stat(filepath.Join("/sys/class/block", name, e.Name(), "partition")); err != nil {
				continue
			}
			dev := filepath.Join(filepath.Dir(disk), e.Name())
			l, err := ext4Label(dev)
			if err != nil {
				seen = append(seen, fmt.Sprintf("%s (%v)", e.Name(), err))
				continue
			}
			if l == label {
				return dev, nil
			}
			seen = append(seen, fmt.Sprintf("%s (label %q)", e.Name(), l))
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("no partition of %s holds an ext4 filesystem labelled %q; found %v", disk, label, seen)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func syncAll() { unix.Sync() }

// Reboot flushes the filesystems and restarts the machine at once (reboot(2); the caller has
// stopped what must be stopped).
func Reboot() error {
	unix.Sync()
	return unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART)
}

// Eligible says whether the system at root may put its root filesystem on disk: it runs from
// RAM (the PXE initramfs: ramfs or tmpfs) or from a root filesystem Basalt wrote (the marker).
// A host with its own operating system (reached over SSH) is never eligible, so no Plan can
// make its agent overwrite a disk.
func (i *Installer) Eligible() bool {
	if cur, err := i.Current(); err == nil && cur != nil {
		return true
	}
	var st unix.Statfs_t
	if err := unix.Statfs(i.path("/"), &st); err != nil {
		return false
	}
	return st.Type == unix.RAMFS_MAGIC || st.Type == unix.TMPFS_MAGIC
}
