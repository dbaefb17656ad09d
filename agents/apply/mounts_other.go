//go:build !linux

package apply

// hostMounts finds no mounts outside Linux (the agent runs on Linux; this keeps the package
// building elsewhere for development).
type hostMounts struct{}

func (hostMounts) Below(string) ([]string, error) { return nil, nil }

func (hostMounts) Unmount(string) error { return nil }
