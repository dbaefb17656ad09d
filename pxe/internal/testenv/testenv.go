// Package testenv gives the PXE tests what they need from the machine: Debian packages (installed
// when missing, as `make test` promises) and the repository's root. Only tests import it.
package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
)

// RepoRoot is the root of the repository.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", "..", ".."))
}

// EnsureDebs installs the Debian packages that are missing, with pxe/image/ensure-debs.sh. An
// error says what is missing and why it could not be installed: tests fail on it, loudly.
func EnsureDebs(pkgs ...string) error {
	cmd := exec.Command(filepath.Join(RepoRoot(), "pxe", "image", "ensure-debs.sh"), pkgs...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("installing %v: %w", pkgs, err)
	}
	return nil
}
