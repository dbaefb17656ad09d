//go:build unix

package apply

import (
	"io/fs"
	"os"
	"syscall"
)

func inode(fi fs.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Ino)
	}
	return 0
}

// wrongOwner says whether a file the agent (running as root) wrote is not owned by root:root.
func wrongOwner(fi fs.FileInfo) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && os.Geteuid() == 0 && (st.Uid != 0 || st.Gid != 0)
}
