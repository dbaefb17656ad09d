package agent

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/basalt-dev/basalt/agents/protocol"
	"github.com/basalt-dev/basalt/bootstrap/plan"
)

// fakeDisk is a host's disk: Install writes the marker only when reboot happens (the next
// boot runs from it), Wipe removes it.
type fakeDisk struct {
	mu       sync.Mutex
	root     *protocol.Root
	pending  *protocol.Root
	installs int
	wipes    int
	failWith error
	events   []string
	wiped    bool
}

func (d *fakeDisk) Current() (*protocol.Root, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.root, nil
}

func (d *fakeDisk) HostName() string { return "ns/host-1" }

func (d *fakeDisk) Install(_ context.Context, img plan.OSImage) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.installs++
	d.events = append(d.events, "install")
	if d.failWith != nil {
		return d.failWith
	}
	d.pending = &protocol.Root{Image: img.SHA256, Disk: img.Disk}
	return nil
}

func (d *fakeDisk) Wipe(protocol.Root) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.wipes++
	d.events = append(d.events, "wipe")
	// The marker goes at once: Current says nothing from here on, although the host runs from
	// the disk until it reboots.
	d.pending, d.root, d.wiped = nil, nil, true
	return nil
}

// runsFromDisk says whether the host still runs from its disk: not rebooted since a wipe.
func (d *fakeDisk) runsFromDisk() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.wiped
}

// reboot makes the next boot run from what Install or Wipe left.
func (d *fakeDisk) reboot() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.events = append(d.events, "reboot")
	d.root, d.wiped = d.pending, false
	return nil
}

// honestLog is a statusLog that fails the test when a report says the host runs from the
// network while it still runs from its wiped disk (the manager would release it too early).
type honestLog struct {
	statusLog
	t    *testing.T
	disk *fakeDisk
}

func (l *honestLog) ReportStatus(ctx context.Context, st *protocol.Status) error {
	if st.Root == nil && l.disk.runsFromDisk() {
		l.t.Errorf("a report without root while the host still runs from its disk: %+v", st)
	}
	return l.statusLog.ReportStatus(ctx, st)
}

// recordingApplier counts applies.
type recordingApplier struct {
	mu    sync.Mutex
	plans []*plan.Plan
	disk  *fakeDisk
}

func (a *recordingApplier) Apply(_ context.Context, p *plan.Plan) ([]protocol.StepResult, error) {
	a.mu.Lock()
	a.plans = append(a.plans, p)
	a.mu.Unlock()
	if a.disk != nil {
		a.disk.mu.Lock()
		a.disk.events = append(a.disk.events, "apply")
		a.disk.mu.Unlock()
	}
	return []protocol.StepResult{{Step: "file:/etc/basalt/x", OK: true}}, nil
}

// plans hands out the Plans of a list, one per poll whose applied hash differs.
type planList struct {
	mu   sync.Mutex
	plan *plan.Plan
}

func (s *planList) set(p *plan.Plan) {
	s.mu.Lock()
	s.plan = p
	s.mu.Unlock()
}

func (s *planList) NextPlan(ctx context.Context, applied string, wait time.Duration) (*protocol.PlanResponse, error) {
	s.mu.Lock()
	p := s.plan
	s.mu.Unlock()
	if p != nil && p.Hash() != applied {
		return &protocol.PlanResponse{Hash: p.Hash(), Plan: p}, nil
	}
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(10 * time.Millisecond):
		return nil, nil
	}
}

var testImage = plan.OSImage{Name: "basalt-root", SHA256: strings.Repeat("c", 64), Disk: "/dev/vda"}

func runDiskAgent(t *testing.T, plans *planList, disk *fakeDisk, ap Applier, log StatusReporter) {
	a := &Agent{
		Host: "host-1", StateDir: t.TempDir(), Version: "v-test", Plans: plans, Applier: ap, Status: log,
		StatusInterval: 20 * time.Millisecond, BackoffInitial: 10 * time.Millisecond, BackoffMax: 50 * time.Millisecond,
		Disk: disk, Reboot: disk.reboot, Logger: slog.New(slog.NewTextHandler(testWriter{t}, nil)),
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
}

// TestOSImageWrittenThenRebootedInto: from the network, a Plan with OS writes the image and
// reboots before anything else is applied; running from it, the Plan applies and its status
// names the root; a Plan without OS then applies (services and files go first) and wipes the
// disk and reboots.
func TestOSImageWrittenThenRebootedInto(t *testing.T) {
	disk := &fakeDisk{}
	ap := &recordingApplier{disk: disk}
	honest := &honestLog{t: t, disk: disk}
	log := &honest.statusLog
	p := &plan.Plan{Host: "host-1", OS: &testImage}
	plans := &planList{plan: p}
	runDiskAgent(t, plans, disk, ap, honest)

	// The last report before the reboot into the image names what was written (the manager
	// hands the host's network boot over to a whole-disk image's own boot loader from then on).
	_, st := log.waitFor(t, "the write reported", 0, func(s protocol.Status) bool { return s.Written != nil })
	if want := (protocol.Root{Image: testImage.SHA256, Disk: "/dev/vda", Host: "ns/host-1"}); *st.Written != want || st.Root != nil {
		t.Errorf("report before the reboot: written %+v root %+v; want written %+v and no root", st.Written, st.Root, want)
	}
	_, st = log.waitFor(t, "the Plan applied from the disk", 0, func(s protocol.Status) bool { return s.PlanHash == p.Hash() })
	if st.Written != nil {
		t.Errorf("a report from the disk still says written: %+v", st.Written)
	}
	if st.Root == nil || st.Root.Image != testImage.SHA256 || st.Root.Disk != "/dev/vda" {
		t.Errorf("status root %+v", st.Root)
	}
	if st.Steps[0].Step != "os:/dev/vda" || !st.Steps[0].OK {
		t.Errorf("steps %+v, want os:/dev/vda first and OK", st.Steps)
	}
	disk.mu.Lock()
	if got := strings.Join(disk.events, ","); got != "install,reboot,apply" {
		t.Errorf("events %s, want install,reboot,apply (nothing applied before the reboot, written once)", got)
	}
	disk.mu.Unlock()

	// Released: the empty Plan is applied first, then the disk is wiped and the host reboots.
	// The report sent just before the reboot still names the disk root (the agent runs from
	// it until the reboot); the next agent, from the network, reports none.
	empty := &plan.Plan{Host: "host-1"}
	plans.set(empty)
	i, st := log.waitFor(t, "the wipe reported", 0, func(s protocol.Status) bool {
		return s.PlanHash == empty.Hash() && len(s.Steps) == 1 && s.Steps[0].Step == "os:/dev/vda"
	})
	if st.Root == nil || !st.Steps[0].OK {
		t.Errorf("report before the wipe's reboot: %+v", st)
	}
	log.waitFor(t, "a report from the network", i+1, func(s protocol.Status) bool { return s.PlanHash == empty.Hash() && s.Root == nil })
	disk.mu.Lock()
	defer disk.mu.Unlock()
	if got := strings.Join(disk.events, ","); !strings.HasPrefix(got, "install,reboot,apply,apply,wipe,reboot") || disk.installs != 1 || disk.wipes != 1 {
		t.Errorf("events %s, installs %d, wipes %d", got, disk.installs, disk.wipes)
	}
}

// TestOSImageFailureIsReported: a failed write is a failed os step, retried, with nothing else
// applied.
func TestOSImageFailureIsReported(t *testing.T) {
	disk := &fakeDisk{failWith: errors.New("image basalt-root: got sha256 ab, want cd; what was written is wiped")}
	ap := &recordingApplier{}
	log := &statusLog{}
	runDiskAgent(t, &planList{plan: &plan.Plan{Host: "host-1", OS: &testImage}}, disk, ap, log)
	_, st := log.waitFor(t, "the failure reported", 0, func(s protocol.Status) bool { return len(stepsFailed(s)) > 0 })
	if st.Steps[0].Step != "os:/dev/vda" || !strings.Contains(st.Steps[0].Error, "what was written is wiped") {
		t.Errorf("steps %+v", st.Steps)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		disk.mu.Lock()
		n := disk.installs
		disk.mu.Unlock()
		if n >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the write was not retried (%d installs)", n)
		}
	}
	ap.mu.Lock()
	defer ap.mu.Unlock()
	if len(ap.plans) != 0 {
		t.Errorf("the rest of the Plan was applied %d times without its root filesystem", len(ap.plans))
	}
}

// TestOSImageMismatchAndNoDisk: a host running from another image refuses the Plan; an agent
// without a RootDisk (reached over SSH) refuses any Plan with OS.
func TestOSImageMismatchAndNoDisk(t *testing.T) {
	disk := &fakeDisk{root: &protocol.Root{Image: strings.Repeat("d", 64), Disk: "/dev/vda"}}
	log := &statusLog{}
	runDiskAgent(t, &planList{plan: &plan.Plan{Host: "host-1", OS: &testImage}}, disk, &recordingApplier{}, log)
	_, st := log.waitFor(t, "the mismatch reported", 0, func(s protocol.Status) bool { return len(stepsFailed(s)) > 0 })
	if !strings.Contains(st.Steps[0].Error, "deprovision the Host to change it") {
		t.Errorf("steps %+v", st.Steps)
	}

	log2 := &statusLog{}
	a := &Agent{
		Host: "host-1", StateDir: t.TempDir(), Version: "v-test", Plans: &planList{plan: &plan.Plan{Host: "host-1", OS: &testImage}},
		Applier: &recordingApplier{}, Status: log2, StatusInterval: time.Hour, BackoffInitial: time.Hour, BackoffMax: time.Hour,
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, nil)),
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	_, st = log2.waitFor(t, "the refusal reported", 0, func(s protocol.Status) bool { return len(stepsFailed(s)) > 0 })
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
	if !strings.Contains(st.Steps[0].Error, "reached over SSH") {
		t.Errorf("steps %+v", st.Steps)
	}
}
