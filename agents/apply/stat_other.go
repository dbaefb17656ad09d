//go:build !unix

package apply

import "io/fs"

func inode(fi fs.FileInfo) uint64 { return 0 }

func wrongOwner(fs.FileInfo, owner) bool { return false }
