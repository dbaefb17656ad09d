//go:build unix

package apply

import (
	"io/fs"
	"syscall"
)

func inode(fi fs.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Ino)
	}
	return 0
}

// wrongOwner says whether a file the agent wrote is not owned by own, where the agent sets owners
// (chownNeeded).
func wrongOwner(fi fs.FileInfo, own owner) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && chownNeeded(own) && (int(st.Uid) != own.uid || int(st.Gid) != own.gid)
}
