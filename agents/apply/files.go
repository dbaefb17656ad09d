package apply

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/basalt-dev/basalt/agents/internal/ctxio"
	"github.com/basalt-dev/basalt/bootstrap/atomicfile"
	"github.com/basalt-dev/basalt/bootstrap/plan"
)

// WriteFile writes data to path atomically: a temporary file in the same folder is written,
// fsynced, given mode (and, when the agent runs as root, owner root:root), renamed over path, and
// the folder is fsynced. After a crash path holds the old or the new bytes, never a mix; a
// leftover temporary file is removed by the next WriteFile of the same path. Missing parent
// folders are created with mode 0755.
func WriteFile(path string, data []byte, mode fs.FileMode) error {
	return writeFileOwned(path, data, mode, rootOwner)
}

// writeFileOwned is WriteFile with the owner given.
func writeFileOwned(path string, data []byte, mode fs.FileMode, own owner) error {
	return writeFrom(path, mode, own, atomicfile.Content(data))
}

// owner is the numeric user and group of a file the agent writes.
type owner struct{ uid, gid int }

// rootOwner is the owner of every artifact, and of every file whose Plan names no owner.
var rootOwner = owner{0, 0}

// fileOwner is the owner a Plan file asks for.
func fileOwner(f plan.File) (owner, error) {
	uid, gid, err := plan.ParseOwner(f.Owner)
	return owner{uid, gid}, err
}

// chownNeeded says whether the agent sets own on the files it writes: always as root; as another
// user (a test, a developer's run) only for an owner other than root, which then fails unless it
// is that user.
func chownNeeded(own owner) bool {
	return os.Geteuid() == 0 || own != rootOwner
}

// tmpPattern names the temporary files of path; a crash may leave one behind.
func tmpPattern(path string) string {
	return "." + filepath.Base(path) + ".basalt-tmp-*"
}

// removeStaleTemps removes temporary files a crashed write of path left behind.
func removeStaleTemps(path string) {
	old, _ := filepath.Glob(filepath.Join(filepath.Dir(path), tmpPattern(path)))
	for _, o := range old {
		_ = os.Remove(o)
	}
}

// writeFrom is WriteFile with the content produced by fill, which may fail (a download, a hash
// mismatch); then nothing is renamed and the temporary file is removed. Owner and mode are set
// on the temporary file, before the rename: the file never appears at path with the wrong owner,
// even for an instant.
func writeFrom(path string, mode fs.FileMode, own owner, fill func(io.Writer) error) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	removeStaleTemps(path)
	return atomicfile.WriteFrom(path, mode, atomicfile.Options{
		TempPattern: tmpPattern(path),
		Prepare:     func(f *os.File) error { return setModeOwner(f, mode, own) },
	}, fill)
}

type chmodChowner interface {
	Chmod(fs.FileMode) error
	Chown(uid, gid int) error
}

// setModeOwner gives f owner own (see chownNeeded) and mode, in this order: a chown clears the
// setuid and setgid bits.
func setModeOwner(f chmodChowner, mode fs.FileMode, own owner) error {
	if chownNeeded(own) {
		if err := f.Chown(own.uid, own.gid); err != nil {
			return fmt.Errorf("setting owner %d:%d: %w", own.uid, own.gid, err)
		}
	}
	return f.Chmod(mode)
}

// fileMode is the permission bits of a Plan mode.
func fileMode(m uint32) fs.FileMode { return fs.FileMode(m).Perm() }

// fixModeOwner corrects the mode and owner of an existing file whose bytes are right, and says
// whether it had to.
func fixModeOwner(path string, mode fs.FileMode, own owner) (changed bool, err error) {
	fi, err := os.Stat(path)
	if err != nil {
		return false, err
	}
	if fi.Mode().Perm() == mode && !wrongOwner(fi, own) {
		return false, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	return true, setModeOwner(f, mode, own)
}

// ensureFile writes f unless the file already holds its bytes; then only mode and owner are
// corrected, in place.
func (a *Applier) ensureFile(f plan.File) (changed bool, err error) {
	path := a.path(f.Path)
	mode := fileMode(f.Mode)
	own, err := fileOwner(f)
	if err != nil {
		return false, err
	}
	if cur, err := os.ReadFile(path); err == nil && bytes.Equal(cur, f.Content) {
		return fixModeOwner(path, mode, own)
	}
	return true, writeFileOwned(path, f.Content, mode, own)
}

// ensureArtifact places the artifact unless a file with its sha256 is there already: the bytes
// are streamed from the Fetcher into a temporary file while hashed, and renamed into place only
// when the sha256 (and the size, when the Plan gives it) match.
func (a *Applier) ensureArtifact(ctx context.Context, art plan.Artifact) (changed bool, err error) {
	path := a.path(art.Path)
	mode := fileMode(art.Mode)
	if a.hasArtifact(path, art) {
		return fixModeOwner(path, mode, rootOwner)
	}
	rc, err := a.Fetcher.Fetch(ctx, art.SHA256)
	if err != nil {
		return false, fmt.Errorf("fetching %s: %w", art.SHA256, err)
	}
	defer rc.Close()
	err = writeFrom(path, mode, rootOwner, func(w io.Writer) error {
		h := sha256.New()
		n, err := io.Copy(io.MultiWriter(w, h), ctxio.Reader(ctx, rc))
		if err != nil {
			return fmt.Errorf("downloading: %w", err)
		}
		if got := hex.EncodeToString(h.Sum(nil)); got != art.SHA256 {
			return fmt.Errorf("sha256 mismatch: expected %s, got %s (%d bytes); refused", art.SHA256, got, n)
		}
		if art.Size > 0 && n != art.Size {
			return fmt.Errorf("size mismatch: expected %d bytes, got %d", art.Size, n)
		}
		return nil
	})
	if err != nil {
		return false, err
	}
	a.rememberVerified(path, art.SHA256)
	return true, nil
}

// hasArtifact says whether path holds the artifact's bytes. A file verified earlier by this
// process and not changed since (same size, modification time and inode) is not hashed again.
func (a *Applier) hasArtifact(path string, art plan.Artifact) bool {
	fi, err := os.Stat(path)
	if err != nil || !fi.Mode().IsRegular() || (art.Size > 0 && fi.Size() != art.Size) {
		return false
	}
	key := fileKey(fi)
	a.mu.Lock()
	v, ok := a.verified[path]
	a.mu.Unlock()
	if ok && v.key == key && v.sha256 == art.SHA256 {
		return true
	}
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return false
	}
	if hex.EncodeToString(h.Sum(nil)) != art.SHA256 {
		return false
	}
	a.mu.Lock()
	a.verified[path] = verifiedFile{key: key, sha256: art.SHA256}
	a.mu.Unlock()
	return true
}

func (a *Applier) rememberVerified(path, sum string) {
	fi, err := os.Stat(path)
	if err != nil {
		return
	}
	a.mu.Lock()
	a.verified[path] = verifiedFile{key: fileKey(fi), sha256: sum}
	a.mu.Unlock()
}

type verifiedFile struct {
	key    string
	sha256 string
}

func fileKey(fi fs.FileInfo) string {
	return fmt.Sprintf("%d/%d/%d", fi.Size(), fi.ModTime().UnixNano(), inode(fi))
}

// removePath removes a file the agent wrote for an earlier Plan; one already gone is fine.
func (a *Applier) removePath(p string) error {
	// A path is a file or artifact the agent wrote, or a service's state dir (removed whole,
	// after the service was stopped).
	err := os.RemoveAll(a.path(p))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	removeStaleTemps(a.path(p))
	a.mu.Lock()
	delete(a.verified, a.path(p))
	a.mu.Unlock()
	return nil
}

// since formats a duration for logs.
func since(t time.Time) string { return time.Since(t).Round(time.Millisecond).String() }
