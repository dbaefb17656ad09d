// Package ctxio stops reads when a context ends, so a cancelled download or copy does not run on
// to the end of its stream.
package ctxio

import (
	"context"
	"io"
)

// Reader returns r, whose reads fail with ctx.Err() once ctx has ended.
func Reader(ctx context.Context, r io.Reader) io.Reader { return reader{ctx: ctx, r: r} }

type reader struct {
	ctx context.Context
	r   io.Reader
}

func (c reader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
