// Package ports hands tests free TCP and UDP ports on loopback.
package ports

import (
	"net"
	"testing"
)

// FreeLoopback returns n distinct TCP ports on 127.0.0.1 that were free a moment ago: all n are
// held open together before being released, so they differ from each other.
func FreeLoopback(t testing.TB, n int) []int {
	t.Helper()
	out := make([]int, 0, n)
	ls := make([]net.Listener, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		out = append(out, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		_ = l.Close()
	}
	return out
}

// FreeLoopbackUDP is FreeLoopback for UDP. Prefer opening the socket and handing it to the
// server (tftp.Server.Serve) where the code allows it: a released port can be taken by any
// process's next ephemeral bind.
func FreeLoopbackUDP(t testing.TB, n int) []int {
	t.Helper()
	out := make([]int, 0, n)
	cs := make([]net.PacketConn, 0, n)
	for range n {
		c, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		cs = append(cs, c)
		out = append(out, c.LocalAddr().(*net.UDPAddr).Port)
	}
	for _, c := range cs {
		_ = c.Close()
	}
	return out
}
