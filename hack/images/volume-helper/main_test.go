package main

import (
	"os"
	"path/filepath"
	"testing"
)

func TestCreateAndDelete(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pvc-1")
	if err := run([]string{"-p", dir, "-s", "1024", "-m", "Filesystem", "-a", "create"}); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(dir)
	if err != nil || st.Mode().Perm() != 0o777 {
		t.Fatalf("created %v %v", st, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "data"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := run([]string{"-p", dir, "-a", "delete"}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("still there: %v", err)
	}
	for _, bad := range [][]string{{"-p", "/", "-a", "delete"}, {"-p", "/data", "-a", "delete"}, {"-p", "rel/x", "-a", "create"},
		{"-p", "/a/../b", "-a", "delete"}, {"-p", dir, "-a", "format"}, {"-p", dir, "-m", "Block", "-a", "create"}} {
		if err := run(bad); err == nil {
			t.Errorf("%v: accepted", bad)
		}
	}
}
