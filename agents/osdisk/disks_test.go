package osdisk

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// gptPart is a partition of a test disk, in sectors (last inclusive, as GPT has it).
type gptPart struct{ first, last uint64 }

// gptDisk builds a disk image of size bytes with a protective MBR and a primary and backup GPT
// (sector size ss, 128 entries of 128 bytes, CRCs filled in) listing parts.
func gptDisk(size, ss int64, parts []gptPart) []byte {
	disk := make([]byte, size)
	le := binary.LittleEndian
	lbas := uint64(size / ss)
	// Protective MBR: one partition of type 0xEE over the disk.
	e := disk[446:]
	e[4] = 0xEE
	le.PutUint32(e[8:], 1)
	le.PutUint32(e[12:], uint32(min(lbas-1, 0xFFFFFFFF)))
	disk[510], disk[511] = 0x55, 0xAA
	entries := make([]byte, 128*128)
	for k, p := range parts {
		ent := entries[k*128:]
		copy(ent[:16], "basalt-test-type") // type GUID: any non-zero
		copy(ent[16:32], []byte{byte(k + 1), 0xAB})
		le.PutUint64(ent[32:], p.first)
		le.PutUint64(ent[40:], p.last)
	}
	tableLBAs := uint64(len(entries)) / uint64(ss)
	if tableLBAs == 0 {
		tableLBAs = 1
	}
	header := func(self, alt, table uint64) []byte {
		h := make([]byte, 92)
		copy(h, "EFI PART")
		le.PutUint32(h[8:], 0x00010000)
		le.PutUint32(h[12:], 92)
		le.PutUint64(h[24:], self)
		le.PutUint64(h[32:], alt)
		le.PutUint64(h[40:], 2+tableLBAs)
		le.PutUint64(h[48:], lbas-2-tableLBAs)
		copy(h[56:72], "disk-guid-012345")
		le.PutUint64(h[72:], table)
		le.PutUint32(h[80:], 128)
		le.PutUint32(h[84:], 128)
		le.PutUint32(h[88:], crc32.ChecksumIEEE(entries))
		le.PutUint32(h[16:], crc32.ChecksumIEEE(h))
		return h
	}
	copy(disk[ss:], header(1, lbas-1, 2))
	copy(disk[2*ss:], entries)
	backupTable := lbas - 1 - tableLBAs
	copy(disk[int64(backupTable)*ss:], entries)
	copy(disk[int64(lbas-1)*ss:], header(lbas-1, 1, backupTable))
	return disk
}

// mbrDisk builds a disk of size bytes with an MBR: primary partitions prim (first sector,
// count) and an extended partition at ext holding the logical partitions logical (offsets
// relative to their EBR, which sits at the given sector relative to ext).
func mbrDisk(size int64, prim [][2]uint32, ext [2]uint32, logical [][3]uint32) []byte {
	disk := make([]byte, size)
	le := binary.LittleEndian
	put := func(sec []byte, k int, t byte, start, n uint32) {
		e := sec[446+16*k:]
		e[4] = t
		le.PutUint32(e[8:], start)
		le.PutUint32(e[12:], n)
	}
	for k, p := range prim {
		put(disk, k, 0x83, p[0], p[1])
	}
	if ext[1] > 0 {
		put(disk, len(prim), 0x05, ext[0], ext[1])
		for k, l := range logical {
			ebr := disk[int64(ext[0]+l[0])*512:]
			put(ebr, 0, 0x83, l[1], l[2])
			if k+1 < len(logical) {
				put(ebr, 1, 0x05, logical[k+1][0], 1)
			}
			ebr[510], ebr[511] = 0x55, 0xAA
		}
	}
	disk[510], disk[511] = 0x55, 0xAA
	return disk
}

// ext4Image is a real ext4 filesystem (mkfs.ext4) when the tool is there, else a superblock
// built by hand: magic and UUID. Images made with the same uuid byte have the same UUID.
func ext4Image(t *testing.T, size int64, uuid byte) []byte {
	t.Helper()
	if mkfs, err := exec.LookPath("mkfs.ext4"); err == nil {
		f := filepath.Join(t.TempDir(), "fs.img")
		if err := os.WriteFile(f, make([]byte, size), 0o600); err != nil {
			t.Fatal(err)
		}
		id := fmt.Sprintf("%02x%02x%02x%02x-0000-4000-8000-000000000000", uuid, uuid, uuid, uuid)
		out, err := exec.Command(mkfs, "-q", "-F", "-U", id, "-L", "basalt-root", f).CombinedOutput()
		if err == nil {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			return b
		}
		t.Logf("mkfs.ext4: %v %s; building the superblock by hand", err, out)
	}
	b := make([]byte, size)
	b[1080], b[1081] = 0x53, 0xEF
	copy(b[1128:1144], bytes.Repeat([]byte{uuid}, 16))
	return b
}
