package lb

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// echoServer answers every line with "<name> <line>" on a real loopback listener.
type echoServer struct {
	name  string
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func startEcho(t *testing.T, name string) *echoServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &echoServer{name: name, ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns = append(s.conns, c)
			s.mu.Unlock()
			go func() {
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						_ = c.Close()
						return
					}
					if _, err := io.WriteString(c, s.name+" "+line); err != nil {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(s.kill)
	return s
}

func (s *echoServer) addr() string { return s.ln.Addr().String() }

// kill closes the listener and every connection: the backend is dead.
func (s *echoServer) kill() {
	_ = s.ln.Close()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.conns {
		_ = c.Close()
	}
}

// ask opens a connection through the proxy, sends one line and returns who answered.
func ask(t *testing.T, addr string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	return roundTrip(c)
}

func roundTrip(c net.Conn) string {
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := io.WriteString(c, "ping\n"); err != nil {
		return "error: " + err.Error()
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "error: " + err.Error()
	}
	name, _, _ := strings.Cut(line, " ")
	return name
}

func startProxy(t *testing.T, backends ...string) (*Proxy, string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	p := &Proxy{Listen: "127.0.0.1:0", HealthInterval: 50 * time.Millisecond, DialTimeout: 500 * time.Millisecond}
	p.SetBackends(backends)
	done := make(chan error, 1)
	go func() { done <- p.ListenAndServe(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("ListenAndServe: %v", err)
		}
	})
	a := p.Addr(ctx)
	if a == nil {
		t.Fatal("proxy did not listen")
	}
	return p, a.String()
}

func eventually(t *testing.T, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestRoundRobinAndFailover(t *testing.T) {
	a, b := startEcho(t, "a"), startEcho(t, "b")
	p, addr := startProxy(t, a.addr(), b.addr())

	seen := map[string]int{}
	for range 6 {
		seen[ask(t, addr)]++
	}
	if seen["a"] != 3 || seen["b"] != 3 {
		t.Errorf("round robin over two healthy backends: %v", seen)
	}

	// A long-lived connection (a watch) that happens to be on a.
	var onA net.Conn
	for onA == nil {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		if roundTrip(c) == "a" {
			onA = c
		} else {
			_ = c.Close()
		}
	}
	defer func() { _ = onA.Close() }()

	a.kill()
	// Right after the kill, before any health check noticed: new connections still all reach b,
	// because a failed dial fails over.
	for i := range 10 {
		if got := ask(t, addr); got != "b" {
			t.Fatalf("connection %d after a died went to %q", i, got)
		}
	}
	eventually(t, "a marked unhealthy", func() bool {
		for _, s := range p.Backends() {
			if s.Address == a.addr() {
				return !s.Healthy
			}
		}
		return false
	})
	// The connection that was on a is closed, so its client reconnects.
	_ = onA.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := onA.Read(make([]byte, 1)); err == nil {
		t.Error("the connection to the dead backend is still open")
	}
}

func TestSetBackendsAtRuntime(t *testing.T) {
	a, b, c := startEcho(t, "a"), startEcho(t, "b"), startEcho(t, "c")
	p, addr := startProxy(t, a.addr())
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	if got := roundTrip(conn); got != "a" {
		t.Fatalf("got %q", got)
	}
	p.SetBackends([]string{b.addr(), c.addr()})
	seen := map[string]bool{}
	for range 4 {
		seen[ask(t, addr)] = true
	}
	if !seen["b"] || !seen["c"] || seen["a"] {
		t.Errorf("after SetBackends(b, c): %v", seen)
	}
	// The connection to the removed backend was closed.
	_ = conn.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := conn.Read(make([]byte, 1)); err == nil {
		t.Error("connection to a removed backend still open")
	}
	// A backend that comes back after being unhealthy is used again.
	b.kill()
	eventually(t, "b unhealthy", func() bool { return !p.Backends()[0].Healthy })
	for range 3 {
		if got := ask(t, addr); got != "c" {
			t.Fatalf("with b dead: %q", got)
		}
	}
}

func TestNoBackendClosesClient(t *testing.T) {
	dead := startEcho(t, "dead")
	dead.kill()
	_, addr := startProxy(t, dead.addr())
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	if got := roundTrip(c); !strings.HasPrefix(got, "error") {
		t.Errorf("with no live backend the client must see its connection closed, got %q", got)
	}
}

func TestWatcherFollowsFile(t *testing.T) {
	a, b := startEcho(t, "a"), startEcho(t, "b")
	dir := t.TempDir()
	path := filepath.Join(dir, "lb.json")
	write := func(c Config) {
		t.Helper()
		bs, _ := json.Marshal(c)
		if err := os.WriteFile(path+".tmp", bs, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(path+".tmp", path); err != nil {
			t.Fatal(err)
		}
	}
	addrs := make(chan net.Addr, 4)
	w := &Watcher{Path: path, Interval: 30 * time.Millisecond, Proxy: Proxy{HealthInterval: 50 * time.Millisecond}, onStart: func(a net.Addr) { addrs <- a }}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()

	// Pick a free port for the listen address, as the Plan would name a fixed one.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	listen := ln.Addr().String()
	_ = ln.Close()
	write(Config{Listen: listen, Backends: []string{a.addr()}})
	select {
	case got := <-addrs:
		if got.String() != listen {
			t.Fatalf("listening on %s, want %s", got, listen)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("proxy not started from the file")
	}
	if got := ask(t, listen); got != "a" {
		t.Fatalf("got %q", got)
	}
	write(Config{Listen: listen, Backends: []string{b.addr()}})
	eventually(t, "backend switched to b", func() bool { return ask(t, listen) == "b" })

	if err := os.WriteFile(path, []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if got := ask(t, listen); got != "b" {
		t.Errorf("a malformed file must keep the last good configuration, got %q", got)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	eventually(t, "proxy stopped", func() bool {
		c, err := net.DialTimeout("tcp", listen, time.Second)
		if err != nil {
			return true
		}
		_ = c.Close()
		return false
	})
	select {
	case a := <-addrs:
		t.Errorf("unexpected restart on %s", a)
	default:
	}
}

func TestConfigValidate(t *testing.T) {
	for _, c := range []Config{
		{Backends: nil},
		{Backends: []string{"10.0.0.1"}},
		{Listen: "6443", Backends: []string{"10.0.0.1:6443"}},
	} {
		if err := c.Validate(); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
	c := Config{Backends: []string{"10.0.0.1:6443", "[fd00::1]:6443"}}
	if err := c.Validate(); err != nil || c.Listen != DefaultListen {
		t.Errorf("%+v: %v", c, err)
	}
}
