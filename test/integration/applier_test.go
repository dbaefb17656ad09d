package integration

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/basalt-dev/basalt/bootstrap/artifacts"
	"github.com/basalt-dev/basalt/bootstrap/plan"
)

// applier is a minimal stand-in for the node agent, for this test only: it writes a Plan's files,
// copies its artifacts from a local artifact set checking their sha256, and runs the selected
// services as child processes in StartOrder, each in its own process group, waiting for its
// probe. A second apply restarts exactly the services whose plan.ServiceHash changed.
type applier struct {
	t        *testing.T
	setDir   string              // the artifact set folder
	manifest *artifacts.Manifest // its manifest
	logDir   string              // <service>.log for each service
	only     []string            // the services to run
	procs    map[string]*exec.Cmd
	exited   map[string]chan struct{}
	hashes   map[string]string // ServiceHash of each running service
	// FirstStart is when the first process was started; applyStart when the current apply
	// started its first process.
	FirstStart time.Time
	applyStart time.Time
}

func newApplier(t *testing.T, setDir string, m *artifacts.Manifest, logDir string, only []string) *applier {
	a := &applier{t: t, setDir: setDir, manifest: m, logDir: logDir, only: only,
		procs: map[string]*exec.Cmd{}, exited: map[string]chan struct{}{}, hashes: map[string]string{}}
	t.Cleanup(a.stopAll)
	return a
}

// apply converges to p and returns the services it (re)started.
func (a *applier) apply(ctx context.Context, p *plan.Plan) ([]string, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	order, err := p.StartOrder()
	if err != nil {
		return nil, err
	}
	order = slices.DeleteFunc(order, func(s string) bool { return !slices.Contains(a.only, s) })
	services := map[string]plan.Service{}
	needed := map[string]bool{}
	for _, s := range p.Services {
		services[s.Name] = s
		if slices.Contains(order, s.Name) {
			for _, r := range s.Reads {
				needed[r] = true
			}
		}
	}
	placing := time.Now()
	a.applyStart = time.Time{}
	for _, f := range p.Files {
		if err := writeAtomic(f.Path, os.FileMode(f.Mode), bytes.NewReader(f.Content), f.SHA256); err != nil {
			return nil, err
		}
	}
	for _, art := range p.Artifacts {
		if needed[art.Path] {
			if err := a.place(art); err != nil {
				return nil, err
			}
		}
	}
	a.t.Logf("Wrote %d files and placed the artifacts the services read in %s", len(p.Files), time.Since(placing).Round(10*time.Millisecond))
	var changed []string
	for _, name := range order {
		if h, _ := p.ServiceHash(name); h != a.hashes[name] || a.procs[name] == nil {
			changed = append(changed, name)
		}
	}
	for i := len(order) - 1; i >= 0; i-- { // stop in reverse order
		if slices.Contains(changed, order[i]) {
			a.stop(order[i])
		}
	}
	for _, name := range changed {
		if err := a.start(ctx, services[name]); err != nil {
			return changed, err
		}
		a.hashes[name], _ = p.ServiceHash(name)
	}
	return changed, nil
}

// place copies an artifact from the set, unless the destination already has its bytes.
func (a *applier) place(art plan.Artifact) error {
	if sum, _, err := artifacts.HashFile(art.Path); err == nil && sum == art.SHA256 {
		return nil
	}
	src, ok := a.manifest.Get(art.Name)
	if !ok {
		return fmt.Errorf("artifact %s is not in the set", art.Name)
	}
	f, err := os.Open(filepath.Join(a.setDir, src.Path))
	if err != nil {
		return err
	}
	defer f.Close()
	return writeAtomic(art.Path, os.FileMode(art.Mode), f, art.SHA256)
}

// writeAtomic writes r to a temp file next to path, checks its sha256 and renames it into place.
func writeAtomic(path string, mode os.FileMode, r io.Reader, sha string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(tmp, h), r); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != sha {
		return fmt.Errorf("%s: sha256 %s, the Plan says %s", path, got, sha)
	}
	if err := os.Chmod(tmp.Name(), mode); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

func (a *applier) start(ctx context.Context, s plan.Service) error {
	logf, err := os.OpenFile(filepath.Join(a.logDir, s.Name+".log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(s.Argv[0], s.Argv[1:]...)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	for k, v := range s.Env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", s.Name, err)
	}
	if a.FirstStart.IsZero() {
		a.FirstStart = time.Now()
	}
	if a.applyStart.IsZero() {
		a.applyStart = time.Now()
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	a.procs[s.Name], a.exited[s.Name] = cmd, done
	started := time.Now()
	for {
		perr := probe(ctx, s.Probe)
		if perr == nil {
			a.t.Logf("%s (pid %d) healthy after %s (%s after this apply started its first process)", s.Name, cmd.Process.Pid,
				time.Since(started).Round(10*time.Millisecond), time.Since(a.applyStart).Round(10*time.Millisecond))
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("%s exited before its probe passed (%v); log:\n%s", s.Name, cmd.ProcessState, a.logTail(s.Name))
		case <-ctx.Done():
			return fmt.Errorf("%s: probe still failing (%w) at %w; log:\n%s", s.Name, perr, ctx.Err(), a.logTail(s.Name))
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// stop sends SIGTERM to the service's process group, then SIGKILL after 15s.
func (a *applier) stop(name string) {
	cmd := a.procs[name]
	if cmd == nil {
		return
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-a.exited[name]:
	case <-time.After(15 * time.Second):
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-a.exited[name]
	}
	delete(a.procs, name)
	delete(a.hashes, name)
}

func (a *applier) stopAll() {
	for i := len(a.only) - 1; i >= 0; i-- {
		a.stop(a.only[i])
	}
}

func (a *applier) pid(name string) int {
	if cmd := a.procs[name]; cmd != nil {
		return cmd.Process.Pid
	}
	return 0
}

func (a *applier) logTail(name string) string {
	b, _ := os.ReadFile(filepath.Join(a.logDir, name+".log"))
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// probe runs a Plan probe once.
func probe(ctx context.Context, p *plan.Probe) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	switch {
	case p == nil:
		return nil
	case p.TCP != nil:
		c, err := (&net.Dialer{}).DialContext(ctx, "tcp", p.TCP.Address)
		if err == nil {
			_ = c.Close()
		}
		return err
	case p.Exec != nil:
		return exec.CommandContext(ctx, p.Exec.Argv[0], p.Exec.Argv[1:]...).Run()
	}
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if p.HTTP.CAFile != "" {
		ca, err := os.ReadFile(p.HTTP.CAFile)
		if err != nil {
			return err
		}
		tlsCfg.RootCAs = x509.NewCertPool()
		tlsCfg.RootCAs.AppendCertsFromPEM(ca)
	}
	if p.HTTP.ClientCertFile != "" {
		pair, err := tls.LoadX509KeyPair(p.HTTP.ClientCertFile, p.HTTP.ClientKeyFile)
		if err != nil {
			return err
		}
		tlsCfg.Certificates = []tls.Certificate{pair}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.HTTP.URL, nil)
	if err != nil {
		return err
	}
	resp, err := (&http.Client{Transport: &http.Transport{TLSClientConfig: tlsCfg, DisableKeepAlives: true}}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return errors.New(resp.Status + ": " + string(body))
	}
	return nil
}
