package agent

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/basalt-dev/basalt/agents/protocol"
	"github.com/basalt-dev/basalt/bootstrap/plan"
)

// gatedChecker answers each probe with the health of the process generation it is told, after
// the test lets the probe finish.
type gatedChecker struct {
	healthy atomic.Bool
	started chan struct{}
	release chan struct{}
}

func (g *gatedChecker) Check(ctx context.Context, svc plan.Service) protocol.ComponentHealth {
	healthy := g.healthy.Load() // what the process probed now would answer
	select {
	case g.started <- struct{}{}:
	case <-ctx.Done():
	}
	select {
	case <-g.release:
	case <-ctx.Done():
	}
	return protocol.ComponentHealth{Name: svc.Name, Healthy: healthy, Message: "probed", Time: time.Now()}
}

func health(m *Monitor, name string) protocol.ComponentHealth {
	for _, h := range m.Snapshot() {
		if h.Name == name {
			return h
		}
	}
	return protocol.ComponentHealth{}
}

// A probe of the process a restart replaced must not report the new process healthy: the
// manager lets the next control-plane node restart on that report. A flip of health reports
// status at once.
func TestMonitorForgetsTheRestartedProcess(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	chk := &gatedChecker{started: make(chan struct{}), release: make(chan struct{})}
	var changes atomic.Int32
	m := &Monitor{Checker: chk, Tick: 10 * time.Millisecond, Changed: func() { changes.Add(1) }}
	m.SetServices([]plan.Service{{Name: "kube-apiserver", Probe: &plan.Probe{PeriodSeconds: 1}}})
	chk.healthy.Store(true) // the old process answers healthy
	done := make(chan struct{})
	go func() { defer close(done); m.Run(ctx) }()

	<-chk.started
	chk.release <- struct{}{}
	waitFor(t, func() bool { return health(m, "kube-apiserver").Healthy })
	if changes.Load() != 1 {
		t.Fatalf("Changed called %d times after the first healthy probe, want 1", changes.Load())
	}

	// A probe starts against the old process, which is then restarted; the new one is not up.
	<-chk.started
	chk.healthy.Store(false)
	m.Restarted(ctx, "kube-apiserver")
	if h := health(m, "kube-apiserver"); h.Healthy || h.Message != "(re)started, not probed yet" {
		t.Fatalf("right after the restart: %+v, want unhealthy, (re)started, not probed yet", h)
	}
	if changes.Load() != 2 {
		t.Fatalf("Changed called %d times after the restart, want 2", changes.Load())
	}
	chk.release <- struct{}{} // the old process's healthy answer arrives late
	// The next probe is of the new process.
	<-chk.started
	if h := health(m, "kube-apiserver"); h.Healthy {
		t.Fatalf("the probe of the replaced process was kept: %+v", h)
	}
	chk.release <- struct{}{}
	waitFor(t, func() bool { return health(m, "kube-apiserver").Message == "probed" })
	if h := health(m, "kube-apiserver"); h.Healthy {
		t.Fatalf("new process reported %+v, want unhealthy", h)
	}

	// It comes up: reported at once.
	chk.healthy.Store(true)
	before := changes.Load()
	<-chk.started
	chk.release <- struct{}{}
	waitFor(t, func() bool { return health(m, "kube-apiserver").Healthy })
	waitFor(t, func() bool { return changes.Load() > before })
	cancel()
	go func() {
		for {
			select {
			case <-chk.started:
			case <-done:
				return
			}
		}
	}()
	<-done
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
