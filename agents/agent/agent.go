// Package agent is the node agent's control loop: it gets the agent an identity (a one-time
// bootstrap token exchanged for a client certificate, see EnsureIdentity), long-polls the
// manager for the host's Plan, applies it (package apply), and reports status — the hash being
// applied when an apply starts, per-step results (the failed steps with their errors) when it
// ends, and a heartbeat with component health, hardware and OS facts every StatusInterval.
//
// The loop is built from single-method interfaces (PlanSource, Applier, StatusReporter,
// HardwareInspector), so each part is replaced in tests; Run wires the real ones from Options.
//
// State (in StateDir): desired.json is the last valid Plan received for this host, written
// before it is applied; applied.json is the last Plan applied completely, with its hash, written
// after. A restarted agent polls with the applied hash and, if the manager has nothing newer or
// cannot be reached, applies desired.json again, which finishes an interrupted apply or, after a
// reboot, starts the services again. cluster.json names the Cluster whose Plan the host's state
// belongs to (plan.Plan.Cluster): before a Plan of another Cluster is applied, the empty Plan is
// applied, so a new Cluster never starts on an old one's etcd data, keys or kubelet state.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/basalt-dev/basalt/agents/protocol"
	"github.com/basalt-dev/basalt/bootstrap/plan"
)

// PlanSource returns a Plan newer than the applied hash, or nil after waiting up to wait.
type PlanSource interface {
	NextPlan(ctx context.Context, applied string, wait time.Duration) (*protocol.PlanResponse, error)
}

// Applier converges the host to a Plan.
type Applier interface {
	Apply(ctx context.Context, p *plan.Plan) ([]protocol.StepResult, error)
}

// StatusReporter sends a status to the manager.
type StatusReporter interface {
	ReportStatus(ctx context.Context, st *protocol.Status) error
}

// HardwareInspector reads the host's hardware.
type HardwareInspector interface {
	Inspect(ctx context.Context) (*protocol.Hardware, error)
}

// RootDisk carries out plan.Plan.OS (package osdisk).
type RootDisk interface {
	// Current is the root filesystem on disk the host runs from, nil when it runs from the
	// network or an OS Basalt did not write.
	Current() (*protocol.Root, error)
	// HostName is "<namespace>/<name>" of the Host, as the marker records it.
	HostName() string
	// Install writes the image to its disk and readies it as a root filesystem.
	Install(ctx context.Context, img plan.OSImage) error
	// Wipe takes the root filesystem the host runs from off its disk.
	Wipe(root protocol.Root) error
}

// Agent runs the plan loop and the status heartbeat.
type Agent struct {
	// Host is the registered Host name; a Plan for another host is refused.
	Host string
	// StateDir holds desired.json and applied.json.
	StateDir string
	// Version is reported in every status.
	Version string
	Plans   PlanSource
	Applier Applier
	Status  StatusReporter
	// Inspector, when set, adds hardware facts (and the OS facts in Hardware.OS) to the
	// heartbeat.
	Inspector HardwareInspector
	// Health, when set, adds component health to every status.
	Health *Monitor
	// PlanWait is the long-poll duration; default 30s.
	PlanWait time.Duration
	// StatusInterval is the heartbeat period; default 15s.
	StatusInterval time.Duration
	// HardwareInterval is how often hardware is read again; default 10m.
	HardwareInterval time.Duration
	// BackoffInitial and BackoffMax bound the delay after an error; default 1s and 1m.
	BackoffInitial, BackoffMax time.Duration
	// Disk carries out Plan.OS; without it a Plan with OS fails.
	Disk RootDisk
	// Reboot restarts the host, after an image was written or wiped; required with Disk.
	Reboot func() error
	// Logger; default slog.Default().
	Logger *slog.Logger

	mu sync.Mutex
	// leaving is the root filesystem on disk being wiped: reports name it until the reboot,
	// although its marker is gone, so the manager does not take a host still running from its
	// disk for one booted from the network.
	leaving  *protocol.Root
	applied  string
	applying string
	steps    []protocol.StepResult
	// started is the state at the start of the latest apply until a status has reported that
	// apply running; the status loop sends it first when the apply ended before it could.
	started  *protocol.Status
	kickOnce sync.Once
	kick     chan struct{}
}

func (a *Agent) defaults() {
	if a.PlanWait <= 0 {
		a.PlanWait = 30 * time.Second
	}
	if a.StatusInterval <= 0 {
		a.StatusInterval = 15 * time.Second
	}
	if a.HardwareInterval <= 0 {
		a.HardwareInterval = 10 * time.Minute
	}
	if a.BackoffInitial <= 0 {
		a.BackoffInitial = time.Second
	}
	if a.BackoffMax <= 0 {
		a.BackoffMax = time.Minute
	}
	if a.Logger == nil {
		a.Logger = slog.Default()
	}
	a.kicks()
}

// kicks returns the channel that wakes the status loop, made once.
func (a *Agent) kicks() chan struct{} {
	a.kickOnce.Do(func() { a.kick = make(chan struct{}, 1) })
	return a.kick
}

// HealthChanged reports status now: a component's health flipped (Monitor.Changed), and the
// manager waits on it (a control-plane node's restarted kube-apiserver is healthy again).
func (a *Agent) HealthChanged() { a.kickStatus() }

// Run runs until ctx ends. It returns nil then; it returns an error only when its state cannot
// be read.
func (a *Agent) Run(ctx context.Context) error {
	a.defaults()
	applied, err := loadPlanRecord(a.StateDir, AppliedFile)
	if err != nil {
		return err
	}
	desired, err := loadPlanRecord(a.StateDir, DesiredFile)
	if err != nil {
		return err
	}
	if applied != nil {
		a.applied = applied.Hash
	}
	if desired != nil && a.Health != nil {
		a.Health.SetServices(desired.Plan.Services)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		a.statusLoop(ctx)
	}()
	defer wg.Wait()

	bo := &backoff{initial: a.BackoffInitial, max: a.BackoffMax}
	// First a short poll: a newer Plan is applied at once; otherwise the desired Plan is applied
	// again (it converges an interrupted apply and restarts services after a reboot).
	resp, err := a.Plans.NextPlan(ctx, a.appliedHash(), 0)
	switch {
	case err == nil && resp != nil:
		a.handle(ctx, resp, bo)
	case desired != nil:
		if err != nil {
			a.Logger.Warn("Manager unreachable at start; applying the last Plan received", "error", err, "hash", desired.Hash)
		}
		a.applyPlan(ctx, desired.Hash, desired.Plan, bo)
	}
	for ctx.Err() == nil {
		resp, err := a.Plans.NextPlan(ctx, a.appliedHash(), a.PlanWait)
		if ctx.Err() != nil {
			break
		}
		if err != nil {
			d := bo.next()
			a.Logger.Warn("Cannot get the Plan; retrying", "error", err, "delay", d)
			if !sleep(ctx, d) {
				break
			}
			// The manager is away: finish a failed apply of the Plan already received.
			if desired, _ := loadPlanRecord(a.StateDir, DesiredFile); desired != nil && desired.Hash != a.appliedHash() {
				a.applyPlan(ctx, desired.Hash, desired.Plan, bo)
			}
			continue
		}
		if resp != nil {
			a.handle(ctx, resp, bo)
		}
	}
	return nil
}

// handle checks a Plan from the manager and applies it; a refused or failed Plan is retried
// after a backoff (the next poll returns it again at once).
func (a *Agent) handle(ctx context.Context, resp *protocol.PlanResponse, bo *backoff) {
	if err := a.check(resp); err != nil {
		a.Logger.Error("Refusing Plan", "hash", resp.Hash, "error", err)
		a.setResult("", []protocol.StepResult{{Step: "plan", Error: err.Error()}})
		sleep(ctx, bo.next())
		return
	}
	if err := savePlanRecord(a.StateDir, DesiredFile, &planRecord{Hash: resp.Hash, Plan: resp.Plan}); err != nil {
		a.Logger.Error("Cannot record the desired Plan", "error", err)
	}
	a.applyPlan(ctx, resp.Hash, resp.Plan, bo)
}

// check refuses a Plan that is malformed, does not hash to its announced hash, or is for
// another host.
func (a *Agent) check(resp *protocol.PlanResponse) error {
	if resp.Plan == nil {
		return errors.New("the answer holds no Plan")
	}
	if err := resp.Plan.Validate(); err != nil {
		return err
	}
	if got := resp.Plan.Hash(); got != resp.Hash {
		return fmt.Errorf("the Plan hashes to %s, the manager announced %s", got, resp.Hash)
	}
	if resp.Plan.Host != a.Host {
		return fmt.Errorf("the Plan is for host %q, this agent is %q", resp.Plan.Host, a.Host)
	}
	return nil
}

// applyPlan applies p. The manager hears of it at least twice: once at the start (ApplyingHash
// set, even when the apply ends before the status loop gets to run) and once with the result
// (PlanHash moved, or the failed steps of the apply).
func (a *Agent) applyPlan(ctx context.Context, hash string, p *plan.Plan, bo *backoff) {
	a.mu.Lock()
	a.applying = hash
	a.started = &protocol.Status{PlanHash: a.applied, ApplyingHash: hash, Steps: a.steps}
	a.mu.Unlock()
	a.kickStatus()
	if a.Health != nil {
		a.Health.SetServices(p.Services)
	}
	a.Logger.Info("Applying Plan", "hash", hash, "applied", a.appliedHash())
	root, osStep, done := a.applyOS(ctx, p, bo)
	if done {
		return
	}
	wipeStep, err := a.leaveOtherCluster(ctx, p)
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		a.setResult("", []protocol.StepResult{*wipeStep})
		d := bo.next()
		a.Logger.Error("Cannot wipe the state of another Cluster's Plan; retrying", "hash", hash, "error", err, "delay", d)
		sleep(ctx, d)
		return
	}
	steps, err := a.Applier.Apply(ctx, p)
	if ctx.Err() != nil {
		return
	}
	if wipeStep != nil {
		steps = append([]protocol.StepResult{*wipeStep}, steps...)
	}
	if osStep != nil {
		steps = append([]protocol.StepResult{*osStep}, steps...)
	}
	if err != nil {
		a.setResult("", withFailure(steps, err))
		d := bo.next()
		a.Logger.Error("Plan not fully applied; retrying", "hash", hash, "error", err, "delay", d)
		sleep(ctx, d)
		return
	}
	if err := savePlanRecord(a.StateDir, AppliedFile, &planRecord{Hash: hash, Plan: p}); err != nil {
		a.Logger.Error("Cannot record the applied Plan", "error", err)
	}
	if p.Cluster == nil && p.IsEmpty() {
		// Nothing of any Cluster is left on the host.
		if err := removeClusterRecord(a.StateDir); err != nil {
			a.Logger.Error("Cannot remove the record of the host's Cluster", "error", err)
		}
	}
	bo.reset()
	a.setResult(hash, steps)
	if p.OS == nil && root != nil {
		a.wipeRoot(ctx, *root, bo)
	}
}

// osStepName names the step of Plan.OS in reports.
func osStepName(disk string) string { return "os:" + disk }

// applyOS does the part of Plan.OS that comes before the rest of the Plan. It returns the root
// filesystem on disk the host runs from (nil: from the network), the step to report with the
// apply, and done when the apply ends here: the image was written and the host reboots into
// it, or the Plan cannot be applied on this host.
func (a *Agent) applyOS(ctx context.Context, p *plan.Plan, bo *backoff) (*protocol.Root, *protocol.StepResult, bool) {
	if a.Disk == nil {
		if p.OS != nil {
			a.failOS(ctx, osStepName(p.OS.Disk), errors.New("this agent cannot put a root filesystem on disk: it runs on a host reached over SSH, not from Basalt's PXE image"), bo)
			return nil, nil, true
		}
		return nil, nil, false
	}
	root, err := a.Disk.Current()
	if err != nil {
		a.failOS(ctx, "os", err, bo)
		return nil, nil, true
	}
	switch {
	case p.OS == nil:
		return root, nil, false
	case root == nil:
		step := osStepName(p.OS.Disk)
		start := time.Now()
		if err := a.Disk.Install(ctx, *p.OS); err != nil {
			if ctx.Err() == nil {
				a.failOS(ctx, step, err, bo)
			}
			return nil, nil, true
		}
		a.Logger.Info("Root filesystem written; rebooting into it", "disk", p.OS.Disk, "image", p.OS.Name, "took", time.Since(start).Round(time.Millisecond))
		// The report names what was written: for a whole-disk image the manager hands the
		// host's network boot over to its disk from now on.
		written := &protocol.Root{Image: p.OS.SHA256, Disk: p.OS.Disk, Host: a.Disk.HostName()}
		a.rebootNow(ctx, &protocol.Status{Written: written}, []protocol.StepResult{{Step: step, OK: true}}, bo)
		return nil, nil, true
	case root.Image != p.OS.SHA256 || root.Disk != p.OS.Disk:
		a.failOS(ctx, osStepName(p.OS.Disk), fmt.Errorf("the host runs from image %s on %s; the Plan wants image %s on %s: deprovision the Host to change it", root.Image, root.Disk, p.OS.SHA256, p.OS.Disk), bo)
		return root, nil, true
	}
	return root, &protocol.StepResult{Step: osStepName(p.OS.Disk), OK: true}, false
}

// failOS reports a failed Plan.OS step and backs off.
func (a *Agent) failOS(ctx context.Context, step string, err error, bo *backoff) {
	a.setResult("", []protocol.StepResult{{Step: step, Error: err.Error()}})
	d := bo.next()
	a.Logger.Error("Plan not applied", "step", step, "error", err, "delay", d)
	sleep(ctx, d)
}

// wipeRoot takes the root filesystem off the disk the host runs from, once the Plan without OS
// is applied (its services stopped, its files removed), and reboots into the network.
func (a *Agent) wipeRoot(ctx context.Context, root protocol.Root, bo *backoff) {
	a.Logger.Info("The Plan has no root filesystem on disk: wiping it and rebooting", "disk", root.Disk, "image", root.Image)
	// Under mu, so that no status is built between the marker's removal and leaving being set.
	a.mu.Lock()
	a.leaving = &root
	err := a.Disk.Wipe(root)
	a.mu.Unlock()
	if err != nil {
		a.failOS(ctx, osStepName(root.Disk), fmt.Errorf("wiping the root filesystem: %w", err), bo)
		return
	}
	// The report before the reboot still names the root it runs from: the Host is released
	// only once the agent reports from the network.
	wiped := root
	a.rebootNow(ctx, &protocol.Status{Root: &root, Wiped: &wiped}, []protocol.StepResult{{Step: osStepName(root.Disk), OK: true}}, bo)
}

// rebootNow reports steps and the disk facts of disk (the root it runs from, the one it has just
// written or wiped) to the manager, then reboots the host. The report is sent here, not by the
// status loop: the host is gone a moment later.
func (a *Agent) rebootNow(ctx context.Context, disk *protocol.Status, steps []protocol.StepResult, bo *backoff) {
	a.mu.Lock()
	a.applying, a.steps = "", steps
	st := &protocol.Status{AgentVersion: a.Version, PlanHash: a.applied, Steps: steps, Root: disk.Root, Written: disk.Written, Wiped: disk.Wiped}
	a.mu.Unlock()
	sanitize(st)
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	if err := a.Status.ReportStatus(rctx, st); err != nil {
		a.Logger.Warn("Cannot report before rebooting", "error", err)
	}
	cancel()
	if a.Reboot == nil {
		a.failOS(ctx, steps[0].Step, errors.New("the agent has no way to reboot the host"), bo)
		return
	}
	if err := a.Reboot(); err != nil {
		a.failOS(ctx, steps[0].Step, fmt.Errorf("rebooting: %w", err), bo)
		return
	}
	// On a host the process ends with the reboot; a Reboot that returns (tests) has booted anew.
	a.mu.Lock()
	a.leaving = nil
	a.mu.Unlock()
}

// setResult records the outcome of an apply (hash empty when it failed) and sends a status.
func (a *Agent) setResult(hash string, steps []protocol.StepResult) {
	a.mu.Lock()
	if hash != "" {
		a.applied = hash
	}
	a.applying = ""
	a.steps = steps
	a.mu.Unlock()
	a.kickStatus()
}

// withFailure returns the steps of a failed apply with at least one failed step: when none of
// them failed (the apply stopped before or between steps), err becomes an "apply" step, so the
// manager always learns why.
func withFailure(steps []protocol.StepResult, err error) []protocol.StepResult {
	for _, s := range steps {
		if !s.OK {
			return steps
		}
	}
	return append(slices.Clip(steps), protocol.StepResult{Step: "apply", Error: err.Error()})
}

func (a *Agent) appliedHash() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.applied
}

// currentRoot is the root filesystem on disk the host runs from, for reports. Call it with mu
// held.
func (a *Agent) currentRoot() *protocol.Root {
	if a.leaving != nil {
		return a.leaving
	}
	if a.Disk == nil {
		return nil
	}
	r, err := a.Disk.Current()
	if err != nil {
		a.Logger.Warn("Cannot read the root marker", "error", err)
	}
	return r
}

func (a *Agent) kickStatus() {
	select {
	case a.kicks() <- struct{}{}:
	default:
	}
}

// statusLoop reports status at the start and end of every apply and every StatusInterval.
func (a *Agent) statusLoop(ctx context.Context) {
	t := time.NewTicker(a.StatusInterval)
	defer t.Stop()
	var hw *protocol.Hardware
	var hwAt time.Time
	for {
		if a.Inspector != nil && time.Since(hwAt) >= a.HardwareInterval {
			if h, err := a.Inspector.Inspect(ctx); err != nil {
				a.Logger.Warn("Cannot inspect the hardware", "error", err)
			} else {
				hw = h
			}
			hwAt = time.Now()
		}
		a.mu.Lock()
		st := &protocol.Status{AgentVersion: a.Version, PlanHash: a.applied, ApplyingHash: a.applying, Steps: a.steps, Hardware: hw, Root: a.currentRoot()}
		reports := []*protocol.Status{st}
		if start := a.started; start != nil && start.ApplyingHash != a.applying {
			// The apply ended (or another began) before its start was reported.
			start.AgentVersion, start.Hardware = a.Version, hw
			reports = []*protocol.Status{start, st}
		}
		a.started = nil
		a.mu.Unlock()
		var components []protocol.ComponentHealth
		if a.Health != nil {
			components = a.Health.Snapshot()
		}
		for _, r := range reports {
			r.Components = components
			sanitize(r)
			if err := a.Status.ReportStatus(ctx, r); err != nil && ctx.Err() == nil {
				a.Logger.Warn("Cannot report status", "error", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-a.kicks():
		}
	}
}

// Limits of a status the manager accepts (agents/agentserver rejects a status that breaks them, and the
// whole report would be lost).
const (
	maxStepError     = 4096
	maxComponentText = 1024
	maxVersion       = 64
	maxName          = 256
)

// sanitize makes every text of st valid UTF-8 without NUL bytes and within the manager's limits;
// it copies the slices it changes.
func sanitize(st *protocol.Status) {
	if st.AgentVersion == "" {
		st.AgentVersion = "unknown"
	}
	st.AgentVersion = protocol.Clip(st.AgentVersion, maxVersion)
	steps := make([]protocol.StepResult, len(st.Steps))
	for i, s := range st.Steps {
		s.Step, s.Error = protocol.Clip(s.Step, 1024), protocol.Clip(s.Error, maxStepError)
		steps[i] = s
	}
	st.Steps = steps
	for i := range st.Components {
		st.Components[i].Message = protocol.Clip(st.Components[i].Message, maxComponentText)
	}
	if h := st.Hardware; h != nil {
		c := *h
		c.Disks = append([]protocol.Disk(nil), h.Disks...)
		for i := range c.Disks {
			d := &c.Disks[i]
			d.Name, d.Model, d.Serial = protocol.Clip(d.Name, maxName), protocol.Clip(d.Model, maxName), protocol.Clip(d.Serial, maxName)
		}
		c.NICs = append([]protocol.NIC(nil), h.NICs...)
		for i := range c.NICs {
			c.NICs[i].Name = protocol.Clip(c.NICs[i].Name, maxName)
		}
		c.System.Vendor, c.System.Product, c.System.Serial = protocol.Clip(c.System.Vendor, maxName), protocol.Clip(c.System.Product, maxName), protocol.Clip(c.System.Serial, maxName)
		st.Hardware = &c
	}
}

// backoff is an exponential delay with ±20% jitter.
type backoff struct {
	initial, max, cur time.Duration
}

func (b *backoff) next() time.Duration {
	if b.cur == 0 {
		b.cur = b.initial
	} else {
		b.cur = min(b.cur*2, b.max)
	}
	return time.Duration(float64(b.cur) * (0.8 + 0.4*rand.Float64()))
}

func (b *backoff) reset() { b.cur = 0 }

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// leaveOtherCluster prepares the host for a Plan of p.Cluster. When the host holds the state of
// another Cluster's Plan (cluster.json names another UID), it applies the empty Plan first: every
// service of the old node stopped, every file and state dir it wrote (etcd data, certificates,
// kubelet state) removed. Only then is p.Cluster recorded, so a crash anywhere in between wipes
// again on restart. It returns the step to report (nil when nothing was wiped) and an error when
// the wipe failed; p must not be applied then.
//
// A Plan without a Cluster (the empty Plan, a root-image Plan, or one from a manager older than
// the field) changes nothing here, and neither does a host with no record: the state of a Plan
// applied before the record existed is taken to be p's Cluster's.
func (a *Agent) leaveOtherCluster(ctx context.Context, p *plan.Plan) (*protocol.StepResult, error) {
	if p.Cluster == nil {
		return nil, nil
	}
	held, err := loadClusterRecord(a.StateDir)
	if err != nil {
		return &protocol.StepResult{Step: "cluster", Error: err.Error()}, err
	}
	var step *protocol.StepResult
	if held != nil && held.UID != p.Cluster.UID {
		a.Logger.Warn("The host holds the state of another Cluster's Plan: wiping it before applying this one", "held", held.String(), "cluster", p.Cluster.String())
		steps, err := a.Applier.Apply(ctx, plan.Empty(a.Host))
		if err != nil {
			what := err.Error()
			if i := slices.IndexFunc(steps, func(s protocol.StepResult) bool { return !s.OK }); i >= 0 {
				what = steps[i].Step + ": " + steps[i].Error
			}
			return &protocol.StepResult{Step: "wipe-cluster", Error: fmt.Sprintf("wiping the state of Cluster %s: %s", held, what)}, err
		}
		a.Logger.Info("Wiped the state of another Cluster's Plan", "held", held.String())
		step = &protocol.StepResult{Step: "wipe-cluster", OK: true}
	}
	if held == nil || held.UID != p.Cluster.UID {
		if err := saveClusterRecord(a.StateDir, p.Cluster); err != nil {
			return &protocol.StepResult{Step: "cluster", Error: err.Error()}, err
		}
	}
	return step, nil
}
