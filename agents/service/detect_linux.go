package service

import (
	"os"
	"strings"
)

// SystemdRunning says whether systemd manages this host: /run/systemd/system exists (systemd's
// own test, sd_booted) and PID 1 is systemd (not, say, a container whose image merely ships
// systemd).
func SystemdRunning() bool {
	if fi, err := os.Stat("/run/systemd/system"); err != nil || !fi.IsDir() {
		return false
	}
	comm, err := os.ReadFile("/proc/1/comm")
	return err == nil && strings.TrimSpace(string(comm)) == "systemd"
}
