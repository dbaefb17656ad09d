// Package ports hands tests free TCP ports on loopback.
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
