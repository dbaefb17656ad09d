package bmcsim

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"time"
)

// qmp is one connection to QEMU's QMP socket. It is used by one goroutine at a time (the Machine
// holds its lock around every call).
type qmp struct {
	conn net.Conn
	rd   *bufio.Reader
}

// qmpReply is a QMP response line; events are skipped by do.
type qmpReply struct {
	Return json.RawMessage `json:"return"`
	Error  *struct {
		Class string `json:"class"`
		Desc  string `json:"desc"`
	} `json:"error"`
	Event string `json:"event"`
	QMP   any    `json:"QMP"`
}

// dialQMP connects to a QMP unix socket and leaves capabilities negotiation mode.
func dialQMP(ctx context.Context, path string) (*qmp, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, err
	}
	q := &qmp{conn: conn, rd: bufio.NewReader(conn)}
	if _, err := q.read(ctx); err != nil { // greeting
		_ = conn.Close()
		return nil, fmt.Errorf("qmp greeting: %w", err)
	}
	if _, err := q.do(ctx, "qmp_capabilities", nil); err != nil {
		_ = conn.Close()
		return nil, err
	}
	return q, nil
}

func (q *qmp) close() { _ = q.conn.Close() }

func (q *qmp) read(ctx context.Context) (*qmpReply, error) {
	deadline := time.Now().Add(10 * time.Second)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = q.conn.SetReadDeadline(deadline)
	line, err := q.rd.ReadBytes('\n')
	if err != nil {
		return nil, err
	}
	r := &qmpReply{}
	if err := json.Unmarshal(line, r); err != nil {
		return nil, fmt.Errorf("qmp: bad reply %q: %w", line, err)
	}
	return r, nil
}

// do runs one QMP command and returns its "return" value.
func (q *qmp) do(ctx context.Context, cmd string, args any) (json.RawMessage, error) {
	req := map[string]any{"execute": cmd}
	if args != nil {
		req["arguments"] = args
	}
	b, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	_ = q.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := q.conn.Write(append(b, '\n')); err != nil {
		return nil, fmt.Errorf("qmp %s: %w", cmd, err)
	}
	for {
		r, err := q.read(ctx)
		if err != nil {
			return nil, fmt.Errorf("qmp %s: %w", cmd, err)
		}
		switch {
		case r.Event != "" || r.QMP != nil:
			continue
		case r.Error != nil:
			return nil, fmt.Errorf("qmp %s: %s: %s", cmd, r.Error.Class, r.Error.Desc)
		case r.Return == nil:
			return nil, errors.New("qmp " + cmd + ": reply without return")
		}
		return r.Return, nil
	}
}
