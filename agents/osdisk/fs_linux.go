package osdisk

import (
	"fmt"
	"io"
	"os"
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
