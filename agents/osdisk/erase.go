package osdisk

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/basalt-dev/basalt/bootstrap/plan"
)

// prepare decides whether the image may be written to the disk f (size bytes) and makes it
// ready. A disk with no signature (probeSignatures) is used as it is. A disk with one is
// overwritten only
//
//   - when the Plan allows erasing it (plan.OSImage.Erase, from spec.boot.eraseExistingDisk);
//   - when it starts with Basalt's claim sector: a write of Basalt's that was interrupted (the
//     agent killed, the power lost) and is now done again, whatever it left on the disk;
//   - when it holds the very image about to be written (sameImage; head is the image's start,
//     nil when it could not be read): an install interrupted after the image was written
//     and before the root marker was.
//
// Anything else is a *NotEmptyError and the disk is left untouched. Once allowed, what is on
// the disk is wiped (wipeFile), so no old backup GPT or RAID superblock at its end outlives
// the image, and the claim sector is written at its start.
func (i *Installer) prepare(f *os.File, size int64, img plan.OSImage, head []byte) error {
	first := make([]byte, min(size, WipeBytes))
	if _, err := f.ReadAt(first, 0); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("reading %s: %w", img.Disk, err)
	}
	if found := probeSignatures(f, size); len(found) > 0 || claimed(first) {
		log := i.log().With("disk", img.Disk, "found", fmt.Sprint(found))
		switch {
		case claimed(first):
			log.Info("The disk holds an interrupted write of Basalt's; writing again")
		case sameImage(first, head):
			log.Info("The disk holds this image already, without a root marker (an interrupted install); writing again")
		case img.Erase:
			log.Info("Erasing the disk, as the Host allows (spec.boot.eraseExistingDisk)")
		default:
			return &NotEmptyError{Disk: img.Disk, Found: found}
		}
		if err := wipeFile(f); err != nil {
			return fmt.Errorf("erasing %s: %w", img.Disk, err)
		}
	}
	if _, err := f.WriteAt(claim(i.Host, img.SHA256), 0); err != nil {
		return fmt.Errorf("writing to %s: %w", img.Disk, err)
	}
	return f.Sync()
}

// readHead reads the first WipeBytes of r, or all of it when it is shorter.
func readHead(r io.Reader) ([]byte, error) {
	b := make([]byte, WipeBytes)
	n, err := io.ReadFull(r, b)
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		err = nil
	}
	return b[:n], err
}

// overClaim is what replaces the claim sector once the image checked out: the image's start,
// padded with zeros to a whole sector when the image is shorter.
func overClaim(head []byte) []byte {
	if len(head) >= 512 {
		return head
	}
	return append(head[:len(head):len(head)], make([]byte, 512-len(head))...)
}
