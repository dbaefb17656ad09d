package bed

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strconv"
	"time"
)

// tarEntry is one file or directory put into a container with `docker cp -`.
type tarEntry struct {
	// Name is relative to the directory the archive is unpacked in, e.g. "etc/ssh/key".
	Name string
	Mode int64
	Dir  bool
	// Either Data or Open supplies a file's bytes; Open also needs Size.
	Data []byte
	Open func() (io.ReadCloser, error)
	Size int64
}

// writeTar writes entries as a tar stream owned by root.
func writeTar(w io.Writer, entries []tarEntry) error {
	tw := tar.NewWriter(w)
	now := time.Now()
	for _, e := range entries {
		hdr := &tar.Header{Name: e.Name, Mode: e.Mode, ModTime: now, Uid: 0, Gid: 0, Uname: "root", Gname: "root"}
		switch {
		case e.Dir:
			hdr.Typeflag = tar.TypeDir
			hdr.Name += "/"
		case e.Open != nil:
			hdr.Typeflag = tar.TypeReg
			hdr.Size = e.Size
		default:
			hdr.Typeflag = tar.TypeReg
			hdr.Size = int64(len(e.Data))
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if e.Dir {
			continue
		}
		if e.Open == nil {
			if _, err := tw.Write(e.Data); err != nil {
				return err
			}
			continue
		}
		r, err := e.Open()
		if err != nil {
			return err
		}
		_, err = io.Copy(tw, r)
		r.Close()
		if err != nil {
			return err
		}
	}
	return tw.Close()
}

// putFiles unpacks entries under dir of a container, running or not (docker cp works on a
// created container, which is how host keys get in before the first boot).
func putFiles(ctx context.Context, container, dir string, entries []tarEntry) error {
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(writeTar(pw, entries)) }()
	_, err := dockerIn(ctx, pr, "cp", "-", container+":"+dir)
	pr.CloseWithError(errors.New("docker cp ended"))
	return err
}

// CopyFileInput says which local file goes where on a host.
type CopyFileInput struct {
	Host *Host
	// Src is a local file.
	Src string
	// Dst is an absolute path on the host; missing parent directories are created.
	Dst string
	// Mode of Dst; 0 keeps Src's permission bits.
	Mode os.FileMode
}

// CopyFile puts a local file onto a running host, e.g. a binary for a test. The file appears
// at Dst atomically (written next to it, then renamed), owned by root.
func CopyFile(ctx context.Context, in CopyFileInput) error {
	if in.Host == nil || in.Src == "" || !path.IsAbs(in.Dst) {
		return fmt.Errorf("CopyFile: need a Host, a Src and an absolute Dst (got %q)", in.Dst)
	}
	st, err := os.Stat(in.Src)
	if err != nil {
		return fmt.Errorf("CopyFile: %w", err)
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("CopyFile: %s is not a regular file", in.Src)
	}
	mode := in.Mode
	if mode == 0 {
		mode = st.Mode().Perm()
	}
	return in.Host.putFile(ctx, in.Dst, mode, tarEntry{
		Open: func() (io.ReadCloser, error) { return os.Open(in.Src) },
		Size: st.Size(),
	})
}

// WriteFileInput says what to write where on a host.
type WriteFileInput struct {
	Host *Host
	// Path is absolute; missing parent directories are created.
	Path    string
	Content []byte
	// Mode defaults to 0644.
	Mode os.FileMode
}

// WriteFile writes Content to Path on a running host atomically, owned by root.
func WriteFile(ctx context.Context, in WriteFileInput) error {
	if in.Host == nil || !path.IsAbs(in.Path) {
		return fmt.Errorf("WriteFile: need a Host and an absolute Path (got %q)", in.Path)
	}
	mode := in.Mode
	if mode == 0 {
		mode = 0o644
	}
	return in.Host.putFile(ctx, in.Path, mode, tarEntry{Data: in.Content})
}

// putFile writes one file at dst on a running host: unpacked next to dst, then renamed.
func (h *Host) putFile(ctx context.Context, dst string, mode os.FileMode, e tarEntry) error {
	dir, base := path.Split(dst)
	tmp := "." + base + ".bed-tmp"
	if _, err := h.Exec(ctx, "mkdir", "-p", dir); err != nil {
		return fmt.Errorf("%s: mkdir %s: %w", h.Name, dir, err)
	}
	e.Name = tmp
	e.Mode = int64(mode.Perm())
	if err := putFiles(ctx, h.Container, dir, []tarEntry{e}); err != nil {
		return fmt.Errorf("%s: put %s: %w", h.Name, dst, err)
	}
	// docker cp leaves a file's mode to the archive but may apply the umask; set it again.
	tmpPath := path.Join(dir, tmp)
	if _, err := h.Exec(ctx, "sh", "-c", `chmod "$1" "$2" && mv -f "$2" "$3"`, "sh",
		strconv.FormatUint(uint64(mode.Perm()), 8), tmpPath, dst); err != nil {
		return fmt.Errorf("%s: install %s: %w", h.Name, dst, err)
	}
	return nil
}
