package osdisk

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"os"
)

// ext4 superblock: 1024 bytes from byte 1024 of the filesystem; the magic at 0x38, the volume
// name (16 bytes, NUL-padded) at 0x78.
const (
	superblockOffset = 1024
	ext4MagicOffset  = 0x38
	ext4LabelOffset  = 0x78
	ext4Magic        = 0xEF53
)

// ext4Label returns the volume label of the ext2/3/4 filesystem at the start of path.
func ext4Label(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	return readExt4Label(f)
}

// readExt4Label reads the label from the superblock of the filesystem r holds.
func readExt4Label(r io.ReaderAt) (string, error) {
	sb := make([]byte, ext4LabelOffset+16)
	if _, err := r.ReadAt(sb, superblockOffset); err != nil {
		return "", err
	}
	if binary.LittleEndian.Uint16(sb[ext4MagicOffset:]) != ext4Magic {
		return "", errors.New("no ext4 filesystem")
	}
	l := sb[ext4LabelOffset : ext4LabelOffset+16]
	if i := bytes.IndexByte(l, 0); i >= 0 {
		l = l[:i]
	}
	return string(l), nil
}
