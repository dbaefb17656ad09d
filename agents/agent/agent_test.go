package agent

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/basalt-dev/basalt/agents/protocol"
	"github.com/basalt-dev/basalt/bootstrap/plan"
)

// onePlan hands out one Plan, then long-polls without news. Its second call (the poll after the
// apply) closes polled.
type onePlan struct {
	mu     sync.Mutex
	resp   *protocol.PlanResponse
	calls  int
	polled chan struct{}
}

func (s *onePlan) NextPlan(ctx context.Context, applied string, wait time.Duration) (*protocol.PlanResponse, error) {
	s.mu.Lock()
	s.calls++
	n := s.calls
	s.mu.Unlock()
	if n == 1 {
		return s.resp, nil
	}
	if n == 2 {
		close(s.polled)
	}
	<-ctx.Done()
	return nil, ctx.Err()
}

// scriptedApplier blocks until release is closed (when set), then returns steps and err.
type scriptedApplier struct {
	release chan struct{}
	steps   []protocol.StepResult
	err     error
}

func (a *scriptedApplier) Apply(ctx context.Context, p *plan.Plan) ([]protocol.StepResult, error) {
	if a.release != nil {
		select {
		case <-a.release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return a.steps, a.err
}

// statusLog records every status; while hold is set, the first report waits for it to close.
type statusLog struct {
	mu   sync.Mutex
	all  []protocol.Status
	hold chan struct{}
}

func (l *statusLog) ReportStatus(ctx context.Context, st *protocol.Status) error {
	l.mu.Lock()
	hold := l.hold
	l.hold = nil
	l.mu.Unlock()
	if hold != nil {
		<-hold
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.all = append(l.all, *st)
	return nil
}

// waitFor returns the first status from index from on that matches f, and its index.
func (l *statusLog) waitFor(t *testing.T, what string, from int, f func(protocol.Status) bool) (int, protocol.Status) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		l.mu.Lock()
		for i := from; i < len(l.all); i++ {
			if st := l.all[i]; f(st) {
				l.mu.Unlock()
				return i, st
			}
		}
		n := len(l.all)
		l.mu.Unlock()
		if time.Now().After(deadline) {
			l.mu.Lock()
			defer l.mu.Unlock()
			t.Fatalf("timed out waiting for %s; %d statuses: %+v", what, n, l.all)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// startAgent runs an agent for host-1 with one Plan to apply and a heartbeat too slow to matter.
func startAgent(t *testing.T, ap Applier, log *statusLog) (hash string, polled chan struct{}) {
	p := &plan.Plan{Host: "host-1", Files: []plan.File{{Path: "/etc/basalt/x", Mode: 0o644, Content: []byte("x")}}}
	plans := &onePlan{resp: &protocol.PlanResponse{Hash: p.Hash(), Plan: p}, polled: make(chan struct{})}
	a := &Agent{
		Host: "host-1", StateDir: t.TempDir(), Version: "v-test", Plans: plans, Applier: ap, Status: log,
		StatusInterval: time.Hour, BackoffInitial: time.Hour, BackoffMax: time.Hour,
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, nil)),
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return p.Hash(), plans.polled
}

// TestApplyReportedWhileItRuns: a status carries the hash being applied while the apply runs;
// a failed apply then reports its failed steps and keeps the applied hash.
func TestApplyReportedWhileItRuns(t *testing.T) {
	log := &statusLog{}
	ap := &scriptedApplier{release: make(chan struct{}), err: errors.New("1 step failed"), steps: []protocol.StepResult{
		{Step: "file:/etc/basalt/x", OK: true},
		{Step: "service:kubelet", Error: "exit status 1"},
	}}
	hash, _ := startAgent(t, ap, log)

	i, _ := log.waitFor(t, "the apply reported running", 0, func(s protocol.Status) bool { return s.ApplyingHash == hash })
	close(ap.release)
	_, got := log.waitFor(t, "the failed apply reported", i+1, func(s protocol.Status) bool { return s.ApplyingHash == "" })
	if got.PlanHash != "" {
		t.Errorf("a failed apply moved the applied hash to %s", got.PlanHash)
	}
	if d := cmp.Diff(ap.steps, got.Steps); d != "" {
		t.Errorf("steps (-want +got):\n%s", d)
	}
}

// TestApplyStartReportedWhenApplyIsFast: an apply that ends before the status loop wakes is
// still reported at its start, before its result.
func TestApplyStartReportedWhenApplyIsFast(t *testing.T) {
	hold := make(chan struct{})
	log := &statusLog{hold: hold} // the first heartbeat is in flight during the whole apply
	ap := &scriptedApplier{steps: []protocol.StepResult{{Step: "file:/etc/basalt/x", OK: true}}}
	hash, polled := startAgent(t, ap, log)
	<-polled // the apply is done
	close(hold)

	i, s := log.waitFor(t, "the apply reported running", 0, func(s protocol.Status) bool { return s.ApplyingHash == hash })
	if s.PlanHash != "" || s.AgentVersion != "v-test" {
		t.Errorf("start report: %+v", s)
	}
	if _, s := log.waitFor(t, "the apply reported done", i+1, func(s protocol.Status) bool { return s.PlanHash == hash }); s.ApplyingHash != "" || len(stepsFailed(s)) > 0 {
		t.Errorf("result report: %+v", s)
	}
}

// TestFailedApplyWithoutFailedStep: an apply that fails outside any step reports why.
func TestFailedApplyWithoutFailedStep(t *testing.T) {
	log := &statusLog{}
	ap := &scriptedApplier{steps: []protocol.StepResult{{Step: "file:/etc/basalt/x", OK: true}}, err: errors.New("state folder: read-only file system")}
	startAgent(t, ap, log)
	_, got := log.waitFor(t, "the failure reported", 0, func(s protocol.Status) bool { return len(s.Steps) > 0 && s.ApplyingHash == "" })
	want := []protocol.StepResult{{Step: "file:/etc/basalt/x", OK: true}, {Step: "apply", Error: "state folder: read-only file system"}}
	if d := cmp.Diff(want, got.Steps); d != "" {
		t.Errorf("steps (-want +got):\n%s", d)
	}
	if len(ap.steps) != 1 {
		t.Errorf("the applier's steps were changed: %+v", ap.steps)
	}
}
