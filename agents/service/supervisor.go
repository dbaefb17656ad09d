package service

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/basalt-dev/basalt/bootstrap/plan"
)

// Supervisor is the agent's own process supervisor, for hosts without systemd.
//
// Every service runs in its own session and process group with stdout and stderr appended to
// LogDir/<name>.log (a file, not a pipe, so the process survives the agent), rotated by size.
// A process that exits is restarted after an exponential backoff (BackoffInitial doubling up to
// BackoffMax; a run longer than StableAfter resets it). Stop sends SIGTERM to the group, then
// SIGKILL after StopGrace.
//
// Crash safety: for each service a record in StateDir holds the definition, its hash, the pid
// and the process start time (so a reused pid is never mistaken for the service) and a nonce that
// is also put in the process environment. The record is written before the process is started
// (pid 0) and again once it runs. After the agent is killed and restarted, Init adopts every
// recorded process that still runs, finding it by pid and start time or, when the crash came
// between start and record, by its nonce. Ensure then leaves an adopted process alone when its
// hash is current and replaces it otherwise, so there is never a second copy of a service.
//
// Close ends supervision and leaves the processes running: a restarted agent adopts them.
type Supervisor struct {
	// StateDir holds one record per service; required.
	StateDir string
	// LogDir holds <name>.log and its rotated copies <name>.log.1 ... <name>.log.<LogKeep>;
	// default /var/log/basalt.
	LogDir string
	// LogMaxBytes rotates a log larger than this; default 10 MiB.
	LogMaxBytes int64
	// LogKeep is the number of rotated logs kept; default 5.
	LogKeep int
	// BackoffInitial (default 1s) and BackoffMax (default 1m) bound the restart delay.
	BackoffInitial, BackoffMax time.Duration
	// StableAfter is how long a process must run for its backoff to reset; default 1m.
	StableAfter time.Duration
	// StopGrace is the time between SIGTERM and SIGKILL; default 10s.
	StopGrace time.Duration
	// PollInterval is how often adopted processes are checked and logs measured; default 1s.
	PollInterval time.Duration
	// Logger; default slog.Default().
	Logger *slog.Logger

	mu      sync.Mutex
	procs   map[string]*proc
	detach  chan struct{}
	started bool
	closed  bool
	wg      sync.WaitGroup
}

var _ Runtime = (*Supervisor)(nil)

// record is what the Supervisor persists about one service.
type record struct {
	Service plan.Service `json:"service"`
	Hash    string       `json:"hash"`
	Nonce   string       `json:"nonce"`
	// PID is 0 between writing the record and starting the process.
	PID int `json:"pid"`
	// StartTime is the process start time in clock ticks since boot (/proc/<pid>/stat field 22).
	StartTime uint64 `json:"startTime,omitempty"`
	// Completed is set when the process exited and its restart policy says not to restart it.
	Completed bool `json:"completed,omitempty"`
}

// proc is one supervised service.
type proc struct {
	mu        sync.Mutex
	rec       record
	exited    chan struct{} // closed when the current process has exited; nil when none runs
	exitCode  int           // of the last exit; -1 when unknown (an adopted process)
	startedAt time.Time
	message   string
	// stop is closed to end supervision and terminate the process; finished is closed when the
	// supervising goroutine has returned. Both are nil while nothing supervises the service.
	stop, finished chan struct{}
}

// NonceEnv is the environment variable that carries a supervised process's nonce.
const NonceEnv = "BASALT_SERVICE_NONCE"

// ServiceEnv is the environment variable that carries a supervised process's service name.
const ServiceEnv = "BASALT_SERVICE"

// Init fills in defaults, creates the state and log folders and adopts the processes a previous
// agent started that still run. It starts nothing.
func (s *Supervisor) Init(ctx context.Context) error {
	if s.StateDir == "" {
		return errors.New("supervisor: StateDir is required")
	}
	if s.LogDir == "" {
		s.LogDir = "/var/log/basalt"
	}
	if s.LogMaxBytes <= 0 {
		s.LogMaxBytes = 10 << 20
	}
	if s.LogKeep <= 0 {
		s.LogKeep = 5
	}
	if s.BackoffInitial <= 0 {
		s.BackoffInitial = time.Second
	}
	if s.BackoffMax <= 0 {
		s.BackoffMax = time.Minute
	}
	if s.StableAfter <= 0 {
		s.StableAfter = time.Minute
	}
	if s.StopGrace <= 0 {
		s.StopGrace = 10 * time.Second
	}
	if s.PollInterval <= 0 {
		s.PollInterval = time.Second
	}
	if s.Logger == nil {
		s.Logger = slog.Default()
	}
	if err := os.MkdirAll(s.StateDir, 0o700); err != nil {
		return err
	}
	if err := os.MkdirAll(s.LogDir, 0o755); err != nil {
		return err
	}
	s.procs = map[string]*proc{}
	s.detach = make(chan struct{})
	entries, err := os.ReadDir(s.StateDir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || strings.HasPrefix(name, ".") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(s.StateDir, e.Name()))
		if err != nil {
			return err
		}
		var rec record
		if err := json.Unmarshal(b, &rec); err != nil || rec.Service.Name != name {
			s.Logger.Warn("Ignoring an unreadable supervisor record", "file", e.Name(), "error", err)
			continue
		}
		p := &proc{rec: rec, exitCode: -1}
		if !rec.Completed {
			s.adopt(p)
		}
		s.procs[name] = p
	}
	return nil
}

// adopt looks for the recorded process of p; when it runs, p tracks it.
func (s *Supervisor) adopt(p *proc) {
	rec := &p.rec
	if rec.PID == 0 && rec.Nonce != "" {
		// Killed between starting the process and recording its pid: find it by its nonce.
		rec.PID, rec.StartTime = findByNonce(rec.Nonce)
	}
	if rec.PID == 0 || !alive(rec.PID, rec.StartTime) {
		s.Logger.Info("Recorded service process is gone", "service", rec.Service.Name, "pid", rec.PID)
		rec.PID, rec.StartTime = 0, 0
		p.message = "not running"
		return
	}
	s.Logger.Info("Adopting running service process", "service", rec.Service.Name, "pid", rec.PID, "hash", rec.Hash)
	p.exited = make(chan struct{})
	p.message = "running (adopted)"
	if err := s.writeRecord(rec); err != nil {
		s.Logger.Error("Cannot update a supervisor record", "service", rec.Service.Name, "error", err)
	}
}

// Start begins supervising the adopted processes and rotating logs. Ensure needs it.
func (s *Supervisor) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.procs == nil {
		return errors.New("supervisor: Init was not called")
	}
	if s.started {
		return nil
	}
	s.started = true
	for _, p := range s.procs {
		if p.exited != nil {
			s.watchAdopted(p)
			s.superviseLocked(p)
		}
	}
	s.wg.Add(1)
	go s.rotateLoop()
	return nil
}

// Close ends supervision and waits for the supervising goroutines; the processes keep running
// and a later Supervisor adopts them.
func (s *Supervisor) Close() {
	s.mu.Lock()
	if s.closed || s.detach == nil {
		s.mu.Unlock()
		return
	}
	s.closed = true
	close(s.detach)
	s.mu.Unlock()
	s.wg.Wait()
}

// Ensure starts svc, or replaces the process of an older definition (SIGTERM, then SIGKILL after
// StopGrace, then start), unless the service already runs hash.
func (s *Supervisor) Ensure(ctx context.Context, svc plan.Service, hash string) (bool, error) {
	if err := checkService(svc); err != nil {
		return false, err
	}
	s.mu.Lock()
	if !s.started || s.closed {
		s.mu.Unlock()
		return false, errors.New("supervisor: not started")
	}
	old := s.procs[svc.Name]
	s.mu.Unlock()
	if old != nil {
		old.mu.Lock()
		current := old.rec.Hash == hash && (old.stop != nil || old.rec.Completed)
		old.mu.Unlock()
		if current {
			return false, nil
		}
		s.Logger.Info("Replacing service process", "service", svc.Name, "hash", hash, "oldHash", old.rec.Hash, "reason", "definition changed or not running")
		s.terminate(old)
	}
	p := &proc{rec: record{Service: svc, Hash: hash}, exitCode: -1}
	if err := s.spawn(p); err != nil {
		s.mu.Lock()
		delete(s.procs, svc.Name)
		s.mu.Unlock()
		_ = os.Remove(s.recordPath(svc.Name))
		return false, fmt.Errorf("service %s: %w", svc.Name, err)
	}
	s.mu.Lock()
	s.procs[svc.Name] = p
	s.superviseLocked(p)
	s.mu.Unlock()
	return true, nil
}

// Stop terminates the service (SIGTERM to its process group, SIGKILL after StopGrace) and
// removes its record.
func (s *Supervisor) Stop(ctx context.Context, name string) error {
	s.mu.Lock()
	p := s.procs[name]
	s.mu.Unlock()
	if p != nil {
		s.terminate(p)
		s.mu.Lock()
		if s.procs[name] == p {
			delete(s.procs, name)
		}
		s.mu.Unlock()
	}
	if err := os.Remove(s.recordPath(name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// StopAll stops every service, dependents before their dependencies.
func (s *Supervisor) StopAll(ctx context.Context) error {
	installed, err := s.Installed(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, name := range StopOrder(installed) {
		errs = append(errs, s.Stop(ctx, name))
	}
	return errors.Join(errs...)
}

// Status reports the recorded hash and whether the process runs.
func (s *Supervisor) Status(ctx context.Context, name string) (State, error) {
	s.mu.Lock()
	p := s.procs[name]
	s.mu.Unlock()
	if p == nil {
		return State{}, nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	st := State{Hash: p.rec.Hash, Message: p.message}
	if p.exited != nil {
		select {
		case <-p.exited:
		default:
			st.Active, st.PID = true, p.rec.PID
		}
	}
	return st, nil
}

// Installed lists every service with a record.
func (s *Supervisor) Installed(ctx context.Context) ([]Installed, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Installed
	for name, p := range s.procs {
		p.mu.Lock()
		out = append(out, Installed{Name: name, Hash: p.rec.Hash, After: slices.Clone(p.rec.Service.After)})
		p.mu.Unlock()
	}
	slices.SortFunc(out, func(a, b Installed) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// StopOrder returns the names of installed services in the order to stop them: every service
// before the services it was started after. Dependencies on services outside the list are
// ignored.
func StopOrder(installed []Installed) []string {
	p := &plan.Plan{}
	in := map[string]bool{}
	for _, i := range installed {
		in[i.Name] = true
	}
	for _, i := range installed {
		var after []string
		for _, a := range i.After {
			if in[a] {
				after = append(after, a)
			}
		}
		p.Services = append(p.Services, plan.Service{Name: i.Name, After: after})
	}
	order, err := p.StartOrder()
	if err != nil {
		// A cycle among recorded services cannot come from a validated Plan; stop by name.
		order = nil
		for _, i := range installed {
			order = append(order, i.Name)
		}
	}
	slices.Reverse(order)
	return order
}

func (s *Supervisor) recordPath(name string) string {
	return filepath.Join(s.StateDir, name+".json")
}

func (s *Supervisor) writeRecord(rec *record) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	return writeFileAtomic(s.recordPath(rec.Service.Name), b, 0o600)
}

func newNonce() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
