package osdisk

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"github.com/basalt-dev/basalt/agents/protocol"
)

// Wipe takes the root filesystem off the disk the system runs from, root.Disk (found by
// root.WWN and root.Serial when its kernel name changed). The order makes a crash anywhere
// converge:
//
//  1. the disk's identity is checked, before anything changes: a disk that is not the one
//     written is never wiped;
//  2. the marker goes: a filesystem change, so after a crash the PXE initramfs no longer
//     switches to the disk and the agent starts from RAM;
//  3. the root filesystem is remounted read-only (Installer.RemountReadOnly), so no later
//     write-back (a journal commit, the sync before reboot) puts a superblock back;
//  4. every signature is zeroed (see wipeFile) and the device discarded.
func (i *Installer) Wipe(root protocol.Root) error {
	disk, err := i.resolveDisk(root.Disk, root.WWN, root.Serial)
	if err != nil {
		return err
	}
	if err := os.Remove(i.path(protocol.RootMarkerPath)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("removing the root marker: %w", err)
	}
	syncAll()
	ro := i.RemountReadOnly
	if ro == nil {
		ro = i.sysrqReadOnly
	}
	if err := ro(); err != nil {
		// The marker is gone already: wiping now is better than leaving a whole root behind.
		i.log().Warn("Cannot remount the root filesystem read-only; wiping its disk anyway", "disk", disk, "error", err)
	}
	f, err := os.OpenFile(i.path(disk), os.O_RDWR|os.O_SYNC, 0)
	if err != nil {
		return fmt.Errorf("opening %s: %w", disk, err)
	}
	defer f.Close()
	return wipeFile(f)
}

// wipeFile removes every signature from the disk f: it zeroes the first and last WipeBytes of
// each partition its partition tables list, then the first and last WipeBytes of the disk
// (MBR, primary and backup GPT, and the superblocks of a filesystem on the whole disk), then
// discards the whole device, best effort. Partitions go first, while the tables that locate
// them are still there, so a wipe interrupted and done again finds them again.
func wipeFile(f *os.File) error {
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return err
	}
	zero := make([]byte, WipeBytes)
	for _, p := range parsePartitions(f, size) {
		if err := zeroEnds(f, zero, p.Start, p.End); err != nil {
			return err
		}
	}
	if err := zeroEnds(f, zero, 0, size); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	// Discarding tells thin storage and SSDs that nothing on the disk matters any more; the
	// zeros above are what makes the wipe, so a device that cannot discard is no error.
	_ = discard(f, size)
	return nil
}

// zeroEnds zeroes the first and the last len(zero) bytes of [start, end) (all of it when it
// is shorter).
func zeroEnds(f *os.File, zero []byte, start, end int64) error {
	n := min(int64(len(zero)), end-start)
	if n <= 0 {
		return nil
	}
	if _, err := f.WriteAt(zero[:n], start); err != nil {
		return err
	}
	_, err := f.WriteAt(zero[:n], end-n)
	return err
}
