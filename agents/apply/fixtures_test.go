package apply

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/basalt-dev/basalt/agents/protocol"
	"github.com/basalt-dev/basalt/agents/service"
	"github.com/basalt-dev/basalt/bootstrap/plan"
)

// memFetcher serves artifacts from memory and counts fetches.
type memFetcher struct {
	mu      sync.Mutex
	blobs   map[string][]byte // sha256 → bytes served (may be wrong on purpose)
	fetches map[string]int
	// block, when set, makes fetches of that sha256 stream half the bytes then wait for ctx.
	block string
}

func newFetcher() *memFetcher {
	return &memFetcher{blobs: map[string][]byte{}, fetches: map[string]int{}}
}

// add registers content and returns its sha256.
func (f *memFetcher) add(content []byte) string {
	s := sum(content)
	f.mu.Lock()
	f.blobs[s] = content
	f.mu.Unlock()
	return s
}

func (f *memFetcher) Fetch(ctx context.Context, sha string) (io.ReadCloser, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	b, ok := f.blobs[sha]
	if !ok {
		return nil, fmt.Errorf("404: no artifact %s", sha)
	}
	f.fetches[sha]++
	if sha == f.block {
		return io.NopCloser(io.MultiReader(bytes.NewReader(b[:len(b)/2]), blockingReader{ctx})), nil
	}
	return io.NopCloser(bytes.NewReader(b)), nil
}

type blockingReader struct{ ctx context.Context }

func (b blockingReader) Read([]byte) (int, error) {
	<-b.ctx.Done()
	return 0, b.ctx.Err()
}

// fakeRuntime is an in-process Runtime with inspectable state: it records the hash of each
// service the way the real runtimes do (only after a successful start).
type fakeRuntime struct {
	mu      sync.Mutex
	running map[string]service.Installed
	active  map[string]bool
	starts  map[string]int
	log     []string // "start x", "stop x" in order
	failing map[string]bool
}

func newRuntime() *fakeRuntime {
	return &fakeRuntime{running: map[string]service.Installed{}, active: map[string]bool{}, starts: map[string]int{}, failing: map[string]bool{}}
}

func (r *fakeRuntime) Ensure(ctx context.Context, svc plan.Service, hash string) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if cur, ok := r.running[svc.Name]; ok && cur.Hash == hash && r.active[svc.Name] {
		return false, nil
	}
	if r.failing[svc.Name] {
		return false, errors.New("exec format error")
	}
	r.running[svc.Name] = service.Installed{Name: svc.Name, Hash: hash, After: svc.After}
	r.active[svc.Name] = true
	r.starts[svc.Name]++
	r.log = append(r.log, "start "+svc.Name)
	return true, nil
}

func (r *fakeRuntime) Stop(ctx context.Context, name string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.running, name)
	delete(r.active, name)
	r.log = append(r.log, "stop "+name)
	return nil
}

func (r *fakeRuntime) Status(ctx context.Context, name string) (service.State, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	in, ok := r.running[name]
	if !ok {
		return service.State{}, nil
	}
	return service.State{Hash: in.Hash, Active: r.active[name]}, nil
}

func (r *fakeRuntime) Installed(ctx context.Context) ([]service.Installed, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []service.Installed
	for _, in := range r.running {
		out = append(out, in)
	}
	return out, nil
}

func (r *fakeRuntime) takeLog() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	l := r.log
	r.log = nil
	return l
}

// recorder is a fake command runner (ip, ctr) that records its calls.
type recorder struct {
	mu    sync.Mutex
	calls []string
}

func (r *recorder) Run(ctx context.Context, name string, args ...string) ([]byte, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, name+" "+strings.Join(args, " "))
	return nil, nil
}

func (r *recorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.calls
	r.calls = nil
	return c
}

// healthMap answers probes from a map, defaulting to healthy.
type healthMap struct {
	mu      sync.Mutex
	unready map[string]bool
}

func (h *healthMap) Check(ctx context.Context, svc plan.Service) protocol.ComponentHealth {
	h.mu.Lock()
	defer h.mu.Unlock()
	return protocol.ComponentHealth{Name: svc.Name, Healthy: !h.unready[svc.Name], Message: "probe", Time: time.Now()}
}

type env struct {
	root    string
	state   string
	fetcher *memFetcher
	rt      *fakeRuntime
	run     *recorder
	health  *healthMap
	a       *Applier
}

func newEnv(t *testing.T) *env {
	t.Helper()
	dir := t.TempDir()
	e := &env{root: filepath.Join(dir, "root"), state: filepath.Join(dir, "state"), fetcher: newFetcher(), rt: newRuntime(), run: &recorder{}, health: &healthMap{unready: map[string]bool{}}}
	e.a = &Applier{
		Root: e.root, StateDir: e.state, Fetcher: e.fetcher, Runtime: e.rt, Run: e.run, Health: e.health,
		DependencyTimeout: 300 * time.Millisecond, PollInterval: 10 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	return e
}

func (e *env) apply(t *testing.T, p *plan.Plan) ([]protocol.StepResult, error) {
	t.Helper()
	return e.a.Apply(context.Background(), p)
}

func (e *env) mustApply(t *testing.T, p *plan.Plan) []protocol.StepResult {
	t.Helper()
	steps, err := e.apply(t, p)
	if err != nil {
		t.Fatalf("apply: %v\nsteps: %+v", err, steps)
	}
	return steps
}

func (e *env) read(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(e.root, p))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func (e *env) exists(p string) bool {
	_, err := os.Stat(filepath.Join(e.root, p))
	return err == nil
}

func sum(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

func stepErr(steps []protocol.StepResult, name string) (protocol.StepResult, bool) {
	for _, s := range steps {
		if s.Step == name {
			return s, true
		}
	}
	return protocol.StepResult{}, false
}

// tempFiles lists the temporary files left under root.
func tempFiles(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	_ = filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err == nil && strings.Contains(fi.Name(), ".basalt-tmp-") {
			out = append(out, p)
		}
		return nil
	})
	return out
}
