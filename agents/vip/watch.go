package vip

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"reflect"
	"slices"
	"sync"
	"time"

	"github.com/basalt-dev/basalt/bootstrap/plan"
)

// DefaultConfigPath is where the agent's Plan applier writes the Plan's VirtualIP (JSON).
const DefaultConfigPath = "/etc/basalt/vip.json"

// LoadConfig reads and validates a configuration file.
func LoadConfig(path string) (*plan.VirtualIP, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var c plan.VirtualIP
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("vip: %s: %w", path, err)
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("vip: %s: %w", path, err)
	}
	return &c, nil
}

// Watcher runs an Elector for the configuration at Path, read again every Interval: a file that
// appears starts the election, a changed one restarts it, a removed one stops it (giving the
// Lease and the address up). A malformed file is logged and the last good configuration stays.
type Watcher struct {
	// Path of the configuration file; default DefaultConfigPath.
	Path string
	// Interval between reads; default 2s.
	Interval time.Duration
	// Commands runs ip(8).
	Commands Runner
	// Logger; default slog.Default().
	Logger *slog.Logger

	// newLink, when set, replaces the host's Link (tests).
	newLink func(cfg *plan.VirtualIP) Link

	mu      sync.Mutex
	elector *Elector
	cfg     *plan.VirtualIP
}

// Step-down timing: a host gives the address up for StepDownPause before a service it depends on
// restarts (long enough for the old process to go; after it, the API server's readiness decides),
// and waits at most StepDownWait for another host to take it before the restart goes ahead.
const (
	StepDownPause = 5 * time.Second
	StepDownWait  = 3 * time.Second
)

// StepDown is called before the agent restarts or stops service. When the virtual IP depends
// on it (plan.VirtualIP.StepDownFor) and this host holds the address, it gives the address up and
// waits, at most StepDownWait, until another host holds it.
func (w *Watcher) StepDown(ctx context.Context, service string) {
	w.mu.Lock()
	e, cfg := w.elector, w.cfg
	w.mu.Unlock()
	if e == nil || !slices.Contains(cfg.StepDownFor, service) {
		return
	}
	log := w.Logger
	if log == nil {
		log = slog.Default()
	}
	ctx, cancel := context.WithTimeout(ctx, StepDownWait)
	defer cancel()
	began := time.Now()
	if !e.StepDown(ctx, StepDownPause) {
		return
	}
	for ctx.Err() == nil {
		if e.HeldByOther(ctx) {
			log.Info("Handed the control-plane virtual IP over before a restart", "service", service, "took", time.Since(began).Round(time.Millisecond))
			return
		}
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
	log.Info("No other host took the control-plane virtual IP before a restart; going ahead", "service", service, "waited", StepDownWait)
}

// Run watches until ctx ends.
func (w *Watcher) Run(ctx context.Context) {
	if w.Path == "" {
		w.Path = DefaultConfigPath
	}
	if w.Interval <= 0 {
		w.Interval = 2 * time.Second
	}
	if w.Logger == nil {
		w.Logger = slog.Default()
	}
	var cur *plan.VirtualIP
	var stop func()
	defer func() {
		if stop != nil {
			stop()
		}
	}()
	t := time.NewTicker(w.Interval)
	defer t.Stop()
	for {
		want, err := LoadConfig(w.Path)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			want = nil
		case err != nil:
			w.Logger.Error("Ignoring a bad virtual IP configuration", "path", w.Path, "error", err)
			want = cur
		}
		if !reflect.DeepEqual(want, cur) {
			if stop != nil {
				stop()
				stop = nil
			}
			cur = want
			if want != nil {
				stop = w.start(ctx, want)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// start runs an Elector for cfg until the returned func is called.
func (w *Watcher) start(ctx context.Context, cfg *plan.VirtualIP) func() {
	addr, _ := netip.ParseAddr(cfg.Address) // validated
	node, _ := netip.ParseAddr(cfg.NodeAddress)
	var link Link
	if w.newLink != nil {
		link = w.newLink(cfg)
	} else {
		link = newHostLink(w.Commands, addr, node)
	}
	tc := &tlsClient{ca: cfg.CAFile, cert: cfg.CertFile, key: cfg.KeyFile}
	e := NewElector(&Elector{Identity: cfg.Identity, Link: link, Logger: w.Logger,
		Lease:   &leaseClient{client: tc.get, server: cfg.Server, namespace: cfg.LeaseNamespace, name: cfg.LeaseName},
		Healthy: readyz(tc.get, cfg.Health)})
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		e.Run(ctx)
	}()
	w.mu.Lock()
	w.elector, w.cfg = e, cfg
	w.mu.Unlock()
	w.Logger.Info("Campaigning for the control-plane virtual IP", "address", cfg.Address, "lease", cfg.LeaseNamespace+"/"+cfg.LeaseName)
	return func() {
		w.mu.Lock()
		w.elector, w.cfg = nil, nil
		w.mu.Unlock()
		cancel()
		<-done
	}
}

// tlsClient is an HTTP client with the Plan's CA and client certificate, built again when one of
// the files changes (the Cluster controller renews the certificate; the election goes on).
type tlsClient struct {
	ca, cert, key string

	mu     sync.Mutex
	stamp  [3]time.Time
	client *http.Client
}

func (t *tlsClient) get() (*http.Client, error) {
	var stamp [3]time.Time
	for i, p := range []string{t.ca, t.cert, t.key} {
		fi, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		stamp[i] = fi.ModTime()
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.client != nil && stamp == t.stamp {
		return t.client, nil
	}
	caPEM, err := os.ReadFile(t.ca)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("vip: %s holds no certificate", t.ca)
	}
	pair, err := tls.LoadX509KeyPair(t.cert, t.key)
	if err != nil {
		return nil, fmt.Errorf("vip: client certificate: %w", err)
	}
	if t.client != nil {
		t.client.CloseIdleConnections()
	}
	t.client = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12},
		MaxIdleConnsPerHost: 2, IdleConnTimeout: 30 * time.Second, TLSHandshakeTimeout: 3 * time.Second,
	}}
	t.stamp = stamp
	return t.client, nil
}
