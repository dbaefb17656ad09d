// Package ports hands tests free TCP and UDP ports on loopback.
package ports

import (
	"io"
	"net"
	"testing"
)

// FreeLoopback returns n distinct TCP ports on 127.0.0.1 that were free a moment ago: all n are
// held open together before being released, so they differ from each other.
func FreeLoopback(t testing.TB, n int) []int {
	t.Helper()
	return free(t, n, func() (io.Closer, int, error) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, 0, err
		}
		return l, l.Addr().(*net.TCPAddr).Port, nil
	})
}

// FreeLoopbackUDP is FreeLoopback for UDP. Prefer opening the socket and handing it to the
// server (tftp.Server.Serve) where the code allows it: a released port can be taken by any
// process's next ephemeral bind.
func FreeLoopbackUDP(t testing.TB, n int) []int {
	t.Helper()
	return free(t, n, func() (io.Closer, int, error) {
		c, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			return nil, 0, err
		}
		return c, c.LocalAddr().(*net.UDPAddr).Port, nil
	})
}

// free opens n sockets with open, holds them all, then closes them and returns their ports.
func free(t testing.TB, n int, open func() (io.Closer, int, error)) []int {
	t.Helper()
	out := make([]int, 0, n)
	held := make([]io.Closer, 0, n)
	defer func() {
		for _, c := range held {
			_ = c.Close()
		}
	}()
	for range n {
		c, port, err := open()
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
		out = append(out, port)
	}
	return out
}
