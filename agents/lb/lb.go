// Package lb is the node-local API server load balancer: a TCP proxy on a loopback address
// (127.0.0.1:6443 by default) to every kube-apiserver of the cluster, so kubelets and kube-proxy
// keep working when any one control-plane host is lost.
//
// Backends are health-checked by TCP connect. A new connection goes to the next healthy backend
// (round robin) and fails over to the others when the dial fails; a backend that fails its
// checks, or is removed, has its open connections closed so clients reconnect elsewhere at once
// instead of waiting for TCP timeouts. The backend list can change at runtime (SetBackends), and
// Watcher runs a Proxy from a configuration file that the Plan writes.
package lb

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"slices"
	"sync"
	"time"
)

// Proxy forwards TCP connections from Listen to its backends.
type Proxy struct {
	// Listen is the address to listen on, e.g. 127.0.0.1:6443.
	Listen string
	// DialTimeout bounds a connection attempt to a backend and a health check; default 2s.
	DialTimeout time.Duration
	// HealthInterval is the time between health checks; default 2s.
	HealthInterval time.Duration
	// FailThreshold is how many failed checks in a row make a backend unhealthy; default 2.
	FailThreshold int
	// Logger; default slog.Default().
	Logger *slog.Logger

	mu       sync.Mutex
	backends []*backend
	next     int
	ln       net.Listener
	ready    chan struct{}
	once     sync.Once
}

type backend struct {
	addr     string
	healthy  bool
	failures int
	removed  bool
	conns    map[*pair]struct{}
}

// pair is one proxied connection.
type pair struct{ client, server net.Conn }

func (p *pair) close() {
	_ = p.client.Close()
	_ = p.server.Close()
}

// BackendStatus is the state of one backend.
type BackendStatus struct {
	Address     string
	Healthy     bool
	Connections int
}

func (p *Proxy) init() {
	p.once.Do(func() {
		p.ready = make(chan struct{})
		if p.DialTimeout <= 0 {
			p.DialTimeout = 2 * time.Second
		}
		if p.HealthInterval <= 0 {
			p.HealthInterval = 2 * time.Second
		}
		if p.FailThreshold <= 0 {
			p.FailThreshold = 2
		}
		if p.Logger == nil {
			p.Logger = slog.Default()
		}
	})
}

// SetBackends replaces the backend list (host:port each). Backends that stay keep their health
// and connections; new ones start healthy; connections to removed ones are closed.
func (p *Proxy) SetBackends(addrs []string) {
	p.init()
	p.mu.Lock()
	defer p.mu.Unlock()
	var kept []*backend
	for _, b := range p.backends {
		if slices.Contains(addrs, b.addr) {
			kept = append(kept, b)
			continue
		}
		b.removed = true
		p.closeConnsLocked(b)
		p.Logger.Info("Removed API server backend", "backend", b.addr)
	}
	for _, a := range addrs {
		if !slices.ContainsFunc(kept, func(b *backend) bool { return b.addr == a }) {
			kept = append(kept, &backend{addr: a, healthy: true, conns: map[*pair]struct{}{}})
			p.Logger.Info("Added API server backend", "backend", a)
		}
	}
	p.backends = kept
}

// Backends reports every backend's health and open connections.
func (p *Proxy) Backends() []BackendStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]BackendStatus, 0, len(p.backends))
	for _, b := range p.backends {
		out = append(out, BackendStatus{Address: b.addr, Healthy: b.healthy, Connections: len(b.conns)})
	}
	return out
}

// Addr returns the listening address once ListenAndServe listens (useful with port 0), or nil
// when listening failed or ctx ends first.
func (p *Proxy) Addr(ctx context.Context) net.Addr {
	p.init()
	select {
	case <-p.ready:
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.ln == nil {
			return nil
		}
		return p.ln.Addr()
	case <-ctx.Done():
		return nil
	}
}

// ListenAndServe listens on Listen and proxies until ctx ends; it then closes the listener and
// every proxied connection. It may be called once per Proxy.
func (p *Proxy) ListenAndServe(ctx context.Context) error {
	p.init()
	ln, err := net.Listen("tcp", p.Listen)
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	close(p.ready)
	if err != nil {
		return err
	}
	p.Logger.Info("API server load balancer listening", "address", ln.Addr().String())
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		p.healthLoop(ctx)
	}()
	go func() {
		<-ctx.Done()
		_ = ln.Close()
	}()
	for {
		c, err := ln.Accept()
		if err != nil {
			cancel()
			p.mu.Lock()
			for _, b := range p.backends {
				p.closeConnsLocked(b)
			}
			p.mu.Unlock()
			wg.Wait()
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		go p.serve(ctx, c)
	}
}

// candidates returns the backends to try for a new connection: healthy ones round robin, then
// unhealthy ones as a last resort (their health may be stale).
func (p *Proxy) candidates() []*backend {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := len(p.backends)
	var healthy, unhealthy []*backend
	for i := range n {
		b := p.backends[(p.next+i)%n]
		if b.healthy {
			healthy = append(healthy, b)
		} else {
			unhealthy = append(unhealthy, b)
		}
	}
	if n > 0 {
		p.next = (p.next + 1) % n
	}
	return append(healthy, unhealthy...)
}

func (p *Proxy) serve(ctx context.Context, client net.Conn) {
	d := net.Dialer{Timeout: p.DialTimeout}
	for _, b := range p.candidates() {
		server, err := d.DialContext(ctx, "tcp", b.addr)
		if err != nil {
			p.Logger.Warn("API server backend refused a connection; failing over", "backend", b.addr, "error", err)
			p.markUnhealthy(b)
			continue
		}
		pr := &pair{client: client, server: server}
		p.mu.Lock()
		if b.removed {
			p.mu.Unlock()
			_ = server.Close()
			continue
		}
		b.conns[pr] = struct{}{}
		p.mu.Unlock()
		pipe(client, server)
		p.mu.Lock()
		delete(b.conns, pr)
		p.mu.Unlock()
		return
	}
	p.Logger.Warn("No API server backend accepted a connection", "client", client.RemoteAddr().String())
	_ = client.Close()
}

// pipe copies both ways, passing on half-closes, and closes both connections when both
// directions are done.
func pipe(a, b net.Conn) {
	var wg sync.WaitGroup
	cp := func(dst, src net.Conn) {
		defer wg.Done()
		_, _ = io.Copy(dst, src)
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		} else {
			_ = dst.Close()
		}
	}
	wg.Add(2)
	go cp(a, b)
	go cp(b, a)
	wg.Wait()
	_ = a.Close()
	_ = b.Close()
}

func (p *Proxy) markUnhealthy(b *backend) {
	p.mu.Lock()
	defer p.mu.Unlock()
	b.failures = p.FailThreshold
	if b.healthy {
		b.healthy = false
		p.closeConnsLocked(b)
	}
}

func (p *Proxy) closeConnsLocked(b *backend) {
	for pr := range b.conns {
		pr.close()
	}
}

func (p *Proxy) healthLoop(ctx context.Context) {
	t := time.NewTicker(p.HealthInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		p.mu.Lock()
		bs := slices.Clone(p.backends)
		p.mu.Unlock()
		var wg sync.WaitGroup
		for _, b := range bs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				p.check(ctx, b)
			}()
		}
		wg.Wait()
	}
}

func (p *Proxy) check(ctx context.Context, b *backend) {
	d := net.Dialer{Timeout: p.DialTimeout}
	c, err := d.DialContext(ctx, "tcp", b.addr)
	if c != nil {
		_ = c.Close()
	}
	if ctx.Err() != nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if err == nil {
		b.failures = 0
		if !b.healthy {
			b.healthy = true
			p.Logger.Info("API server backend is healthy again", "backend", b.addr)
		}
		return
	}
	b.failures++
	if b.healthy && b.failures >= p.FailThreshold {
		b.healthy = false
		p.Logger.Warn("API server backend is unhealthy; closing its connections", "backend", b.addr, "error", err)
		p.closeConnsLocked(b)
	}
}

// ErrNoBackends is returned by a Config without backends.
var ErrNoBackends = errors.New("lb: no backends")
