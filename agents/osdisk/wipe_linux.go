package osdisk

import (
	"errors"
	"os"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// sysrqReadOnly remounts every filesystem read-only the forceful way (sysrq "u": files open
// for writing do not stop it, as they stop mount -o remount,ro) and waits until the root
// filesystem is. The paths are under Installer.Root, so a test root never touches the host's
// /proc.
func (i *Installer) sysrqReadOnly() error {
	f, err := os.OpenFile(i.path("/proc/sysrq-trigger"), os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.Write([]byte("u"))
	f.Close()
	if err != nil {
		return err
	}
	// The kernel remounts in a work queue after the write returns.
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		var st unix.Statfs_t
		if err := unix.Statfs(i.path("/"), &st); err == nil && st.Flags&unix.ST_RDONLY != 0 {
			return nil
		}
	}
	return errors.New("the root filesystem is still writable 10s after sysrq u")
}

// discard issues BLKDISCARD for the whole device. A device without discard (EOPNOTSUPP) and a
// file that is no block device (ENOTTY, in tests) are not errors.
func discard(f *os.File, size int64) error {
	r := [2]uint64{0, uint64(size)}
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.BLKDISCARD, uintptr(unsafe.Pointer(&r)))
	if errno == 0 || errno == unix.EOPNOTSUPP || errno == unix.ENOTTY {
		return nil
	}
	return errno
}
