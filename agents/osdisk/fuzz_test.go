package osdisk

import (
	"bytes"
	"testing"
)

// FuzzParsePartitions feeds arbitrary disks to the partition-table parser and the signature
// probe: a disk is untrusted input. Every extent must lie inside the disk, there must be at
// most maxPartitions of them, and nothing may panic or read without bound.
func FuzzParsePartitions(f *testing.F) {
	f.Add(gptDisk(1<<20, 512, []gptPart{{34, 100}, {101, 2000}}))
	f.Add(gptDisk(1<<20, 4096, []gptPart{{6, 100}}))
	f.Add(mbrDisk(1<<20, [][2]uint32{{1, 100}}, [2]uint32{200, 1000}, [][3]uint32{{0, 1, 10}, {20, 1, 10}}))
	f.Add([]byte("EFI PART"))
	f.Add(make([]byte, 1024))
	f.Fuzz(func(t *testing.T, disk []byte) {
		size := int64(len(disk))
		parts := parsePartitions(bytes.NewReader(disk), size)
		if len(parts) > maxPartitions {
			t.Fatalf("%d partitions", len(parts))
		}
		for _, p := range parts {
			if p.Start < 0 || p.End > size || p.Start >= p.End {
				t.Fatalf("extent %+v outside a disk of %d bytes", p, size)
			}
		}
		for _, s := range probeSignatures(bytes.NewReader(disk), size) {
			if s.Offset < 0 || s.Offset >= size {
				t.Fatalf("signature %v outside a disk of %d bytes", s, size)
			}
		}
	})
}
