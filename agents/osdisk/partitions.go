package osdisk

import (
	"encoding/binary"
	"io"
	"slices"
)

// extent is the byte range [Start, End) of a partition on a disk.
type extent struct{ Start, End int64 }

// Bounds of partition-table parsing. A disk is untrusted input: whatever its tables say, the
// parser reads a bounded number of bytes and returns at most maxPartitions extents, each inside
// the disk.
const (
	maxPartitions   = 256
	maxGPTEntries   = 1024
	maxGPTEntrySize = 4096
	maxGPTTable     = 1 << 20 // bytes of partition entries read per header
	maxLogical      = 128     // MBR logical partitions followed along the EBR chain
)

// gptSectorSizes are the logical sector sizes a GPT may be laid out for: 512 (and 512e disks)
// and 4096 (4Kn disks).
var gptSectorSizes = []int64{512, 4096}

// parsePartitions lists the partitions that the disk's partition tables describe: the primary
// and backup GPT (for 512- and 4096-byte sectors) and the MBR with its logical partitions.
// Every table found contributes, so a disk whose primary GPT is damaged still has the backup's
// partitions wiped. CRCs are not checked for the same reason: a damaged table still points at
// data worth wiping, and every value is checked against the disk's size instead. Extents that
// start past the disk are dropped; ones that end past it are cut at its end.
func parsePartitions(r io.ReaderAt, size int64) []extent {
	var out []extent
	add := func(start, end int64) {
		if start < 0 || start >= size || end <= start || len(out) >= maxPartitions {
			return
		}
		out = append(out, extent{Start: start, End: min(end, size)})
	}
	for _, ss := range gptSectorSizes {
		if size < 2*ss {
			continue
		}
		parseGPT(r, size, ss, ss, add)      // primary header at LBA 1
		parseGPT(r, size, ss, size-ss, add) // backup header in the last LBA
	}
	parseMBR(r, size, add)
	slices.SortFunc(out, func(a, b extent) int {
		if a.Start != b.Start {
			return cmpInt64(a.Start, b.Start)
		}
		return cmpInt64(a.End, b.End)
	})
	return slices.Compact(out)
}

func cmpInt64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// parseGPT reads the GPT header at byte at (sector size ss) and its partition entries.
func parseGPT(r io.ReaderAt, size, ss, at int64, add func(start, end int64)) {
	hdr := make([]byte, 92)
	if _, err := r.ReadAt(hdr, at); err != nil || string(hdr[:8]) != "EFI PART" {
		return
	}
	le := binary.LittleEndian
	hdrSize := int64(le.Uint32(hdr[12:]))
	entriesLBA := le.Uint64(hdr[72:])
	count := int64(le.Uint32(hdr[80:]))
	entrySize := int64(le.Uint32(hdr[84:]))
	lbas := uint64(size / ss)
	switch {
	case hdrSize < 92 || hdrSize > ss:
		return
	case entrySize < 128 || entrySize > maxGPTEntrySize || entrySize%8 != 0:
		return
	case count <= 0 || count > maxGPTEntries:
		return
	case entriesLBA == 0 || entriesLBA >= lbas:
		return
	}
	count = min(count, maxGPTTable/entrySize)
	table := make([]byte, count*entrySize)
	off := int64(entriesLBA) * ss
	n, _ := r.ReadAt(table, off) // a table cut by the disk's end: use the entries read
	table = table[:n-n%int(entrySize)]
	for e := 0; e+int(entrySize) <= len(table); e += int(entrySize) {
		ent := table[e : e+int(entrySize)]
		if allZero(ent[:16]) { // unused entry: no partition type
			continue
		}
		first, last := le.Uint64(ent[32:]), le.Uint64(ent[40:])
		if first > last || first >= lbas {
			continue
		}
		last = min(last, lbas-1)
		add(int64(first)*ss, (int64(last)+1)*ss)
	}
}

// MBR partition types.
const (
	mbrEmpty        = 0x00
	mbrGPTProtected = 0xEE
)

func isExtended(t byte) bool { return t == 0x05 || t == 0x0F || t == 0x85 }

// parseMBR reads the four primary entries of an MBR (512-byte sectors) and follows the chain
// of extended boot records of an extended partition. A protective MBR (type 0xEE) is left to
// the GPT.
func parseMBR(r io.ReaderAt, size int64, add func(start, end int64)) {
	sec := make([]byte, 512)
	if _, err := r.ReadAt(sec, 0); err != nil || sec[510] != 0x55 || sec[511] != 0xAA {
		return
	}
	for k := range 4 {
		t, start, n := mbrEntry(sec, k)
		if t == mbrEmpty || t == mbrGPTProtected || n == 0 {
			continue
		}
		add(start*512, (start+n)*512)
		if isExtended(t) {
			parseEBRs(r, size, start, add)
		}
	}
}

// mbrEntry returns the type, first sector and sector count of entry k of an MBR or EBR.
func mbrEntry(sec []byte, k int) (byte, int64, int64) {
	e := sec[446+16*k : 446+16*(k+1)]
	return e[4], int64(binary.LittleEndian.Uint32(e[8:])), int64(binary.LittleEndian.Uint32(e[12:]))
}

// parseEBRs follows the linked list of extended boot records that starts at sector ext: each
// holds one logical partition (relative to itself) and the next record (relative to ext). The
// walk stops at a record that is out of the disk, is seen twice, or after maxLogical records.
func parseEBRs(r io.ReaderAt, size, ext int64, add func(start, end int64)) {
	sec := make([]byte, 512)
	seen := map[int64]bool{}
	at := ext
	for range maxLogical {
		if seen[at] || at*512+512 > size {
			return
		}
		seen[at] = true
		if _, err := r.ReadAt(sec, at*512); err != nil || sec[510] != 0x55 || sec[511] != 0xAA {
			return
		}
		if t, start, n := mbrEntry(sec, 0); t != mbrEmpty && n > 0 {
			add((at+start)*512, (at+start+n)*512)
		}
		t, next, _ := mbrEntry(sec, 1)
		if !isExtended(t) || next == 0 {
			return
		}
		at = ext + next
	}
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
