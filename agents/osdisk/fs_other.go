//go:build !linux

package osdisk

import (
	"errors"
	"os"
)

var errNotLinux = errors.New("osdisk: root filesystems on disk need Linux")

type hostFS struct{}

func (hostFS) Mount(string, string) error { return errNotLinux }
func (hostFS) Unmount(string) error       { return errNotLinux }
func (hostFS) Grow(string, string) error  { return errNotLinux }

func (hostFS) Partition(string, string) (string, error) { return "", errNotLinux }

func syncAll() {}

// Reboot is not available off Linux.
func Reboot() error { return errNotLinux }

// Eligible is false off Linux.
func (i *Installer) Eligible() bool { return false }

func (i *Installer) sysrqReadOnly() error { return errNotLinux }

func discard(*os.File, int64) error { return nil }
