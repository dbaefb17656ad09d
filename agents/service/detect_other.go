//go:build !linux

package service

// SystemdRunning is false where there is no Linux systemd.
func SystemdRunning() bool { return false }
