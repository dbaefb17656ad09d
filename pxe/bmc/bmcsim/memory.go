package bmcsim

import (
	"context"
	"fmt"
	"sync"
)

// MemorySystem is an in-process System with inspectable state, for protocol-level tests (TLS,
// authentication, sessions) that need no VM. Tests read On, Boots and Resets to check what the
// client really asked for.
type MemorySystem struct {
	mu         sync.Mutex
	on         bool
	resets     int
	persistent BootDevice
	once       BootDevice
	boots      []BootDevice
}

// boot records a firmware start and uses up a one-time override. Callers hold s.mu.
func (s *MemorySystem) boot() {
	dev := s.persistent
	if s.once != BootNone {
		dev = s.once
	}
	if dev == BootNone {
		dev = BootDisk
	}
	s.boots = append(s.boots, dev)
	s.once = BootNone
}

// Boots lists the device each power-on or restart booted from, oldest first.
func (s *MemorySystem) Boots() []BootDevice {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]BootDevice(nil), s.boots...)
}

var _ System = (*MemorySystem)(nil)

// PowerState implements System.
func (s *MemorySystem) PowerState(context.Context) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.on, nil
}

// PowerOn implements System.
func (s *MemorySystem) PowerOn(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.on {
		s.on = true
		s.boot()
	}
	return nil
}

// ForceOff implements System.
func (s *MemorySystem) ForceOff(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.on = false
	return nil
}

// ForceRestart implements System.
func (s *MemorySystem) ForceRestart(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.on = true
	s.boot()
	s.resets++
	return nil
}

// SetBootOverride implements System.
func (s *MemorySystem) SetBootOverride(_ context.Context, dev BootDevice, persistent bool) error {
	switch dev {
	case BootNone, BootPXE, BootDisk:
	default:
		return fmt.Errorf("boot device %q is not supported: use Pxe or Hdd", dev)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case dev == BootNone:
		s.once, s.persistent = BootNone, BootNone
	case persistent:
		s.once, s.persistent = BootNone, dev
	default:
		s.once = dev
	}
	return nil
}

// BootOverride implements System.
func (s *MemorySystem) BootOverride() (BootDevice, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.once != BootNone {
		return s.once, false
	}
	return s.persistent, s.persistent != BootNone
}

// Resets is how many times ForceRestart was called.
func (s *MemorySystem) Resets() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.resets
}
