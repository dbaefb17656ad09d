package lb

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"slices"
	"time"
)

// DefaultConfigPath is where the Plan writes the load balancer's configuration.
const DefaultConfigPath = "/etc/basalt/lb.json"

// DefaultListen is the default listening address. On a control-plane host, where kube-apiserver
// binds port 6443 on every address, the Plan must choose another port.
const DefaultListen = "127.0.0.1:6443"

// Config is the content of the configuration file:
//
//	{"listen": "127.0.0.1:6443", "backends": ["172.28.0.11:6443", "172.28.0.12:6443"]}
type Config struct {
	// Listen is the address to listen on; default DefaultListen.
	Listen string `json:"listen,omitempty"`
	// Backends are the API servers, host:port each.
	Backends []string `json:"backends"`
}

// Validate checks the addresses.
func (c *Config) Validate() error {
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return fmt.Errorf("lb: listen %q: %w", c.Listen, err)
	}
	if len(c.Backends) == 0 {
		return ErrNoBackends
	}
	for _, b := range c.Backends {
		if _, _, err := net.SplitHostPort(b); err != nil {
			return fmt.Errorf("lb: backend %q: %w", b, err)
		}
	}
	return nil
}

// LoadConfig reads and validates a configuration file.
func LoadConfig(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var c Config
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("lb: %s: %w", path, err)
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// Watcher runs a Proxy from a configuration: Static when it is set (the agent's --lb-listen and
// --lb-backends flags), otherwise the file at Path, read again every Interval. A file that
// appears starts the proxy, a change of backends is applied at once, a change of the listening
// address restarts the proxy, and a file that is removed stops it. A malformed file is logged and
// the last good configuration stays.
type Watcher struct {
	// Path of the configuration file; default DefaultConfigPath.
	Path string
	// Static, when set, is used instead of the file.
	Static *Config
	// Interval between reads of the file; default 5s.
	Interval time.Duration
	// Proxy is the template of every proxy started (timeouts, logger); Listen is overwritten.
	Proxy Proxy
	// Logger; default slog.Default().
	Logger *slog.Logger

	// onStart, when set, is told the address of each proxy started (tests).
	onStart func(net.Addr)
}

// Run watches and proxies until ctx ends.
func (w *Watcher) Run(ctx context.Context) error {
	if w.Path == "" {
		w.Path = DefaultConfigPath
	}
	if w.Interval <= 0 {
		w.Interval = 5 * time.Second
	}
	if w.Logger == nil {
		w.Logger = slog.Default()
	}
	if w.Static != nil {
		if err := w.Static.Validate(); err != nil {
			return err
		}
	}
	var run *running
	defer func() { _ = run.stop() }()
	t := time.NewTicker(w.Interval)
	defer t.Stop()
	for {
		want := w.Static
		if want == nil {
			c, err := LoadConfig(w.Path)
			switch {
			case errors.Is(err, fs.ErrNotExist):
				want = nil
			case err != nil:
				w.Logger.Error("Ignoring a bad load balancer configuration", "path", w.Path, "error", err)
				want = run.config()
			default:
				want = c
			}
		}
		if ended, err := run.ended(); ended {
			// The proxy ended on its own (a listen error): start it again below.
			w.Logger.Error("API server load balancer stopped", "error", err)
			run = nil
		}
		switch {
		case want == nil:
			if run != nil {
				w.Logger.Info("Load balancer configuration removed; stopping", "path", w.Path)
			}
			_ = run.stop()
			run = nil
		case run != nil && run.cfg.Listen == want.Listen:
			if !slices.Equal(run.cfg.Backends, want.Backends) {
				run.proxy.SetBackends(want.Backends)
				run.cfg = want
			}
		default:
			_ = run.stop()
			run = w.start(ctx, want)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// running is one started Proxy.
type running struct {
	cfg    *Config
	proxy  *Proxy
	cancel context.CancelFunc
	done   chan error
}

func (w *Watcher) start(ctx context.Context, cfg *Config) *running {
	p := &Proxy{Listen: cfg.Listen, DialTimeout: w.Proxy.DialTimeout, HealthInterval: w.Proxy.HealthInterval,
		FailThreshold: w.Proxy.FailThreshold, Logger: w.Logger}
	p.SetBackends(cfg.Backends)
	ctx, cancel := context.WithCancel(ctx)
	r := &running{cfg: cfg, proxy: p, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- p.ListenAndServe(ctx) }()
	if w.onStart != nil {
		if a := p.Addr(ctx); a != nil {
			w.onStart(a)
		}
	}
	return r
}

func (r *running) config() *Config {
	if r == nil {
		return nil
	}
	return r.cfg
}

// ended reports whether the proxy stopped by itself, and why.
func (r *running) ended() (bool, error) {
	if r == nil {
		return false, nil
	}
	select {
	case err := <-r.done:
		r.cancel()
		return true, err
	default:
		return false, nil
	}
}

// stop stops the proxy and returns why it ended (nil when stopped by stop).
func (r *running) stop() error {
	if r == nil {
		return nil
	}
	r.cancel()
	return <-r.done
}
