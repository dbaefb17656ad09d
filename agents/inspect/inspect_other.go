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
