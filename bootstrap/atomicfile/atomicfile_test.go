package atomicfile

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

func TestWriteReplacesWholeFileWithMode(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	if err := os.WriteFile(p, []byte("old content that is longer"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Write(p, []byte("new"), 0o640); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(p)
	if err != nil || string(got) != "new" {
		t.Fatalf("content %q, %v; want %q", got, err, "new")
	}
	st, _ := os.Stat(p)
	if st.Mode().Perm() != 0o640 {
		t.Errorf("mode %v, want 0640", st.Mode().Perm())
	}
	assertOnly(t, dir, "f")
}

func TestFailedFillLeavesOldFileAndNoTemp(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	if err := os.WriteFile(p, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("checksum mismatch")
	err := WriteFrom(p, 0o644, Options{}, func(w io.Writer) error {
		_, _ = w.Write([]byte("partial"))
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("error %v, want fill's own error", err)
	}
	if got, _ := os.ReadFile(p); string(got) != "old" {
		t.Errorf("content %q after a failed write, want the old one", got)
	}
	assertOnly(t, dir, "f")
}

func TestPrepareReplacesChmodAndDirMode(t *testing.T) {
	p := filepath.Join(t.TempDir(), "a", "b", "f")
	called := false
	err := WriteFrom(p, 0o600, Options{DirMode: 0o755, TempPattern: "x-*", Prepare: func(f *os.File) error {
		called = true
		return f.Chmod(0o604)
	}}, func(w io.Writer) error { _, err := w.Write([]byte("x")); return err })
	if err != nil || !called {
		t.Fatalf("err %v, prepare called %v", err, called)
	}
	if st, _ := os.Stat(p); st.Mode().Perm() != 0o604 {
		t.Errorf("mode %v, want Prepare's 0604", st.Mode().Perm())
	}
}

func assertOnly(t *testing.T, dir string, names ...string) {
	t.Helper()
	es, _ := os.ReadDir(dir)
	if len(es) != len(names) {
		var got []string
		for _, e := range es {
			got = append(got, e.Name())
		}
		t.Errorf("folder holds %v, want only %v (a temporary file was left)", got, names)
	}
}
