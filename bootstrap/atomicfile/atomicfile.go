// Package atomicfile writes files so that a reader, or a process started after a crash, sees
// either the old content or the new, never a part: the content goes to a temporary file in the
// same folder, is synced, gets its mode, and is renamed over the path; then the folder is synced.
// It is the one temp-file-and-rename writer of Basalt (agent files and services, artifact cache,
// artifact manifests, kubeconfigs basaltctl writes).
package atomicfile

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// Options change how WriteFrom writes. The zero value is the default.
type Options struct {
	// TempPattern is the os.CreateTemp pattern of the temporary file, in path's folder.
	// Default "."+base(path)+".tmp-*".
	TempPattern string
	// Prepare, when set, is called on the temporary file once its content is written and
	// replaces the chmod to mode (for callers that also set the owner, in an order of their
	// own). The file is synced after it.
	Prepare func(*os.File) error
	// DirMode, when not zero, creates path's folder (and its parents) with this mode when it is
	// missing.
	DirMode fs.FileMode
}

// Write writes data to path atomically with mode.
func Write(path string, data []byte, mode fs.FileMode) error {
	return WriteFrom(path, mode, Options{}, Content(data))
}

// Content is a fill function for WriteFrom that writes data.
func Content(data []byte) func(io.Writer) error {
	return func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	}
}

// WriteFrom writes what fill writes to path atomically with mode. When fill (or any step) fails,
// path is left as it was and the temporary file is removed; fill's error is returned as it is,
// so a caller can tell its own errors (a checksum mismatch) from the file system's. An error
// syncing the folder after the rename is returned too (the new content is in place, but may not
// survive a power loss); a file system that cannot sync folders (EINVAL) is not an error.
func WriteFrom(path string, mode fs.FileMode, o Options, fill func(io.Writer) error) error {
	dir := filepath.Dir(path)
	if o.DirMode != 0 {
		if err := os.MkdirAll(dir, o.DirMode); err != nil {
			return err
		}
	}
	pattern := o.TempPattern
	if pattern == "" {
		pattern = "." + filepath.Base(path) + ".tmp-*"
	}
	tmp, err := os.CreateTemp(dir, pattern)
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // a no-op once renamed
	if err := fill(tmp); err != nil {
		tmp.Close()
		return err
	}
	prepare := o.Prepare
	if prepare == nil {
		prepare = func(f *os.File) error { return f.Chmod(mode) }
	}
	if err := prepare(tmp); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, os.ErrInvalid) {
		return err
	}
	return nil
}
