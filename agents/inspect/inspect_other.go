//go:build !linux

package inspect

import (
	"context"
	"errors"

	"github.com/basalt-dev/basalt/agents/protocol"
)

func (i Inspector) inspect(ctx context.Context) (*protocol.Hardware, error) {
	return nil, errors.New("inspect: only Linux hosts are supported")
}

// InspectOS reads the operating system facts; only Linux hosts are supported.
func (i Inspector) InspectOS(ctx context.Context) (*protocol.OSFacts, error) {
	return nil, errors.New("inspect: only Linux hosts are supported")
}
