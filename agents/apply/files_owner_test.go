//go:build unix

package apply

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// ownerOf returns the uid:gid and permission bits of the file at p.
func ownerOf(t *testing.T, p string) (uid, gid uint32, mode os.FileMode) {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	return st.Uid, st.Gid, fi.Mode().Perm()
}

// TestFileOwners: a Plan file is written with the owner it names (root when it names none); a
// file whose bytes are right but whose owner is wrong, changed behind the agent's back or by a
// new Plan, gets its owner corrected in place, without being rewritten.
func TestFileOwners(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("setting owners needs root, as the agent runs; run the tests as root to cover this")
	}
	e := newEnv(t)
	p := basePlan(e)
	p.Files[1].Owner = "1234:5678"
	e.mustApply(t, p)
	key := filepath.Join(e.root, "/etc/basalt/pki/apiserver.key")
	config := filepath.Join(e.root, "/etc/basalt/kube-apiserver/config.yaml")
	check := func(what, path string, wantUID, wantGID uint32, wantMode os.FileMode) {
		t.Helper()
		if uid, gid, mode := ownerOf(t, path); uid != wantUID || gid != wantGID || mode != wantMode {
			t.Errorf("%s: %s is %d:%d %v, want %d:%d %v", what, filepath.Base(path), uid, gid, mode, wantUID, wantGID, wantMode)
		}
	}
	check("first apply", key, 1234, 5678, 0o600)
	check("first apply", config, 0, 0, 0o644)
	ino := inodeOf(t, key)

	// Again: the file is right, nothing is rewritten.
	e.mustApply(t, p)
	check("second apply", key, 1234, 5678, 0o600)
	if inodeOf(t, key) != ino {
		t.Error("second apply: a file with the right bytes, mode and owner was rewritten")
	}

	// An owner changed behind the agent's back is corrected in place.
	if err := os.Chown(key, 0, 0); err != nil {
		t.Fatal(err)
	}
	e.mustApply(t, p)
	check("after a chown behind the agent's back", key, 1234, 5678, 0o600)

	// A new owner in the Plan is applied; so is going back to no owner (root).
	p.Files[1].Owner = "4321:8765"
	e.mustApply(t, p)
	check("new owner in the Plan", key, 4321, 8765, 0o600)
	p.Files[1].Owner = ""
	e.mustApply(t, p)
	check("owner dropped from the Plan", key, 0, 0, 0o600)
	if inodeOf(t, key) != ino {
		t.Error("a file whose bytes were right was rewritten to change its owner")
	}

	// New bytes with an owner: the replacement carries the owner from the moment it appears.
	p.Files[1].Owner = "1234:5678"
	p.Files[1].Content = []byte("NEW KEY")
	e.mustApply(t, p)
	check("new content", key, 1234, 5678, 0o600)
	if got := e.read(t, "/etc/basalt/pki/apiserver.key"); got != "NEW KEY" {
		t.Errorf("content %q", got)
	}
	if tmp := tempFiles(t, filepath.Dir(key)); len(tmp) != 0 {
		t.Errorf("temporary files left: %v", tmp)
	}
}
