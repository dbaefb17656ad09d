package osdisk

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// Signature is something found on a disk that says it is in use: a partition table, a
// filesystem, RAID or LVM metadata.
type Signature struct {
	// What it is, e.g. "ext2/3/4 filesystem".
	What string
	// Offset is the byte of the disk it was found at.
	Offset int64
}

func (s Signature) String() string { return fmt.Sprintf("%s at byte %d", s.What, s.Offset) }

// mdMagic is the Linux software RAID (md) superblock magic, 0xa92b4efc, as stored
// (little-endian).
var mdMagic = []byte{0xfc, 0x4e, 0x2b, 0xa9}

// probe is one place a signature is looked for; at is its offset for a disk of size bytes
// (negative: not on a disk that small).
type probe struct {
	what  string
	at    func(size int64) int64
	magic []byte
}

func fixed(off int64) func(int64) int64 { return func(int64) int64 { return off } }

// probes are where blkid-like tools find partition tables, filesystems, RAID and LVM: the
// first MiB, and the last sectors for the backup GPT and end-of-device RAID superblocks.
var probes = func() []probe {
	ps := []probe{
		{"MBR partition table or boot sector (0x55AA)", fixed(510), []byte{0x55, 0xAA}},
		{`GPT partition table ("EFI PART")`, fixed(512), []byte("EFI PART")},
		{`GPT partition table for 4096-byte sectors ("EFI PART")`, fixed(4096), []byte("EFI PART")},
		{`backup GPT header ("EFI PART" in the last sector)`, func(n int64) int64 { return n - 512 }, []byte("EFI PART")},
		{`backup GPT header for 4096-byte sectors ("EFI PART" in the last sector)`, func(n int64) int64 { return n - 4096 }, []byte("EFI PART")},
		{"ext2/3/4 filesystem (magic 0xEF53)", fixed(1080), []byte{0x53, 0xEF}},
		{`XFS filesystem ("XFSB")`, fixed(0), []byte("XFSB")},
		{`btrfs filesystem ("_BHRfS_M")`, fixed(65600), []byte("_BHRfS_M")},
		{`ISO 9660 filesystem ("CD001")`, fixed(32769), []byte("CD001")},
		{"Linux RAID member (md superblock 1.1)", fixed(0), mdMagic},
		{"Linux RAID member (md superblock 1.2)", fixed(4096), mdMagic},
		// 1.0: 8 KiB from the end, on a 4 KiB boundary; 0.90: the last 64 KiB-aligned 64 KiB.
		{"Linux RAID member (md superblock 1.0)", func(n int64) int64 { return (n - 8192) &^ 4095 }, mdMagic},
		{"Linux RAID member (md superblock 0.90)", func(n int64) int64 { return n&^65535 - 65536 }, mdMagic},
	}
	// The LVM label is in one of the first four sectors, normally the second.
	for s := int64(0); s < 4; s++ {
		ps = append(ps, probe{`LVM2 physical volume ("LABELONE")`, fixed(512 * s), []byte("LABELONE")})
	}
	// Swap's signature ends its first page, whatever the page size of the system that made it.
	for _, page := range []int64{4096, 8192, 16384, 65536} {
		ps = append(ps,
			probe{`swap area ("SWAPSPACE2")`, fixed(page - 10), []byte("SWAPSPACE2")},
			probe{`swap area ("SWAP-SPACE")`, fixed(page - 10), []byte("SWAP-SPACE")})
	}
	return ps
}()

// probeSignatures lists the signatures found on the disk r of size bytes, in the order of
// probes; nothing when the disk is empty as far as partition tables, filesystems, RAID and LVM
// go. Read errors count as nothing found at that place.
func probeSignatures(r io.ReaderAt, size int64) []Signature {
	var out []Signature
	buf := make([]byte, 16)
	for _, p := range probes {
		at := p.at(size)
		if at < 0 || at+int64(len(p.magic)) > size {
			continue
		}
		b := buf[:len(p.magic)]
		if _, err := r.ReadAt(b, at); err != nil {
			continue
		}
		if bytes.Equal(b, p.magic) {
			out = append(out, Signature{What: p.what, Offset: at})
		}
	}
	return out
}

// NotEmptyError says the agent refused to write to a disk that holds something.
type NotEmptyError struct {
	Disk  string
	Found []Signature
}

func (e *NotEmptyError) Error() string {
	found := make([]string, len(e.Found))
	for k, s := range e.Found {
		found[k] = s.String()
	}
	return fmt.Sprintf("refusing to write the root filesystem image to %s: the disk is not empty, it holds %s; "+
		"set spec.boot.eraseExistingDisk: true on the Host to let Basalt erase it, or pick another disk with spec.boot.rootDeviceHints",
		e.Disk, strings.Join(found, ", "))
}

// claimMagic starts the first sector of a disk while the agent writes an image to it (see
// Installer.write): a disk that starts with it holds an interrupted write of Basalt's, nothing
// anyone could use, and is overwritten without asking.
const claimMagic = "BASALT-IMAGE-WRITE-IN-PROGRESS\n"

// claim is the sector written at the start of a disk before an image: claimMagic and what is
// being written, for people looking at the disk.
func claim(host, image string) []byte {
	b, _ := json.Marshal(struct {
		Host  string `json:"host,omitempty"`
		Image string `json:"image"`
	}{host, image})
	sec := make([]byte, 512)
	copy(sec, claimMagic)
	copy(sec[len(claimMagic):len(sec)-2], b)
	return sec
}

// claimed says whether head, the start of a disk, is a claim sector.
func claimed(head []byte) bool { return bytes.HasPrefix(head, []byte(claimMagic)) }

// sameImage says whether the disk whose first bytes are disk holds the image whose first bytes
// are img, as Basalt wrote it before: the same ext4 filesystem (same UUID; mounting and growing
// change the superblock, not its UUID) or the same GPT disk (same disk GUID). That is an
// install that stopped after the image was written and before the root marker was: the disk
// holds nothing but the image about to be written again.
func sameImage(disk, img []byte) bool {
	same := func(magicAt int, magic []byte, idAt int) bool {
		end := idAt + 16
		if len(disk) < end || len(img) < end || !bytes.Equal(disk[magicAt:magicAt+len(magic)], magic) ||
			!bytes.Equal(img[magicAt:magicAt+len(magic)], magic) || allZero(img[idAt:end]) {
			return false
		}
		return bytes.Equal(disk[idAt:end], img[idAt:end])
	}
	// ext4: magic at 1080, s_uuid at 1024+104. GPT: header at 512, disk GUID at 512+56.
	return same(1080, []byte{0x53, 0xEF}, 1128) || same(512, []byte("EFI PART"), 568)
}
