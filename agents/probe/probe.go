// Package probe checks the health of a Plan's services: HTTP(S) GET (with a CA file and an
// optional client certificate), TCP connect, or a command's exit status, each bounded by a
// timeout. Results are protocol.ComponentHealth values, as the agent reports them.
package probe

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/basalt-dev/basalt/agents/protocol"
	"github.com/basalt-dev/basalt/bootstrap/plan"
)

// DefaultTimeout bounds one probe when the Checker does not set Timeout.
const DefaultTimeout = 5 * time.Second

// Prober checks one thing once; nil means healthy.
type Prober interface {
	Probe(ctx context.Context) error
}

// New returns the Prober for p: exactly one of p.HTTP, p.TCP and p.Exec must be set.
func New(p *plan.Probe) (Prober, error) {
	switch {
	case p == nil:
		return nil, errors.New("probe: none defined")
	case p.HTTP != nil && p.TCP == nil && p.Exec == nil:
		return HTTP{HTTPProbe: *p.HTTP}, nil
	case p.TCP != nil && p.HTTP == nil && p.Exec == nil:
		return TCP{Address: p.TCP.Address}, nil
	case p.Exec != nil && p.HTTP == nil && p.TCP == nil:
		if len(p.Exec.Argv) == 0 {
			return nil, errors.New("probe: exec has no argv")
		}
		return Exec{Argv: p.Exec.Argv}, nil
	}
	return nil, errors.New("probe: exactly one of http, tcp and exec must be set")
}

// Checker probes services and reports their health.
type Checker struct {
	// Timeout bounds each probe; default DefaultTimeout.
	Timeout time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Check probes svc once. A service without a probe is reported healthy with the message
// "no probe"; callers that know whether its process runs should say so instead.
func (c Checker) Check(ctx context.Context, svc plan.Service) protocol.ComponentHealth {
	now := time.Now
	if c.Now != nil {
		now = c.Now
	}
	h := protocol.ComponentHealth{Name: svc.Name}
	if svc.Probe == nil {
		h.Healthy, h.Message, h.Time = true, "no probe", now().UTC()
		return h
	}
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	p, err := New(svc.Probe)
	if err == nil {
		err = p.Probe(ctx)
	}
	h.Time = now().UTC()
	if err != nil {
		h.Message = err.Error()
		return h
	}
	h.Healthy = true
	return h
}

// HTTP is healthy when a GET of URL answers with a 2xx status. For https, CAFile (when set) is
// the only trusted root, and ClientCertFile/ClientKeyFile authenticate the prober. The files are
// read on every probe, so rotated certificates are picked up.
type HTTP struct {
	plan.HTTPProbe
}

// Probe performs one GET.
func (h HTTP) Probe(ctx context.Context) error {
	tlsConfig := &tls.Config{MinVersion: tls.VersionTLS12}
	if h.CAFile != "" {
		pem, err := os.ReadFile(h.CAFile)
		if err != nil {
			return fmt.Errorf("reading CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("CA file %s holds no PEM certificate", h.CAFile)
		}
		tlsConfig.RootCAs = pool
	}
	if h.ClientCertFile != "" || h.ClientKeyFile != "" {
		cert, err := tls.LoadX509KeyPair(h.ClientCertFile, h.ClientKeyFile)
		if err != nil {
			return fmt.Errorf("loading client certificate: %w", err)
		}
		tlsConfig.Certificates = []tls.Certificate{cert}
	}
	tr := &http.Transport{TLSClientConfig: tlsConfig, DisableKeepAlives: true, Proxy: nil}
	defer tr.CloseIdleConnections()
	client := &http.Client{
		Transport: tr,
		// A redirect is an answer, not something to follow to another host.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.URL, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("GET %s: %s: %s", h.URL, resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}

// TCP is healthy when Address accepts a connection.
type TCP struct {
	Address string
}

// Probe connects once and closes the connection.
func (t TCP) Probe(ctx context.Context) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", t.Address)
	if err != nil {
		return err
	}
	return c.Close()
}

// Exec is healthy when Argv exits 0; it is killed when the probe's context ends.
type Exec struct {
	Argv []string
}

// Probe runs the command once.
func (e Exec) Probe(ctx context.Context) error {
	cmd := exec.CommandContext(ctx, e.Argv[0], e.Argv[1:]...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = time.Second
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(out.String())
		if len(msg) > 512 {
			msg = msg[:512]
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%s: %w", e.Argv[0], ctx.Err())
		}
		return fmt.Errorf("%s: %w: %s", e.Argv[0], err, msg)
	}
	return nil
}
