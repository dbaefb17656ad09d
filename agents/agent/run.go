package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	"github.com/basalt-dev/basalt/agents/apply"
	"github.com/basalt-dev/basalt/agents/inspect"
	"github.com/basalt-dev/basalt/agents/lb"
	"github.com/basalt-dev/basalt/agents/osdisk"
	"github.com/basalt-dev/basalt/agents/probe"
	"github.com/basalt-dev/basalt/agents/protocol"
	"github.com/basalt-dev/basalt/agents/service"
	"github.com/basalt-dev/basalt/agents/vip"
)

// Runtime choices.
const (
	RuntimeAuto       = "auto"
	RuntimeSystemd    = "systemd"
	RuntimeSupervisor = "supervisor"
)

// Options configure a whole agent; cmd/agent fills them from flags.
type Options struct {
	// StateDir holds identity, Plan records and service records; default protocol.StateDir.
	StateDir string
	// BootstrapPath is the bootstrap file; default protocol.BootstrapPath.
	BootstrapPath string
	// Version of the agent.
	Version string
	// Root prefixes every path a Plan writes; default "/" (tests use a temporary folder).
	Root string
	// Runtime is auto (systemd when it is PID 1, else the supervisor), systemd or supervisor.
	Runtime string
	// UnitDir is where systemd units are written; default /etc/systemd/system.
	UnitDir string
	// LogDir, LogMaxBytes and LogKeep configure the supervisor's service logs.
	LogDir      string
	LogMaxBytes int64
	LogKeep     int
	// StopGrace is the time between SIGTERM and SIGKILL when a service is stopped; default 10s
	// (supervisor) and 30s (systemd's TimeoutStopSec).
	StopGrace time.Duration
	// Ctr is the ctr command for image imports; default the Plan's artifact named "ctr".
	Ctr string
	// PlanWait, StatusInterval and DependencyTimeout tune the loop (see Agent and
	// apply.Applier).
	PlanWait, StatusInterval, DependencyTimeout time.Duration
	// BackoffMax caps the delay between retries of registration, polling and applying; default
	// 1m.
	BackoffMax time.Duration
	// LBConfig is the load balancer configuration file the Plan writes; default
	// lb.DefaultConfigPath; "-" turns the load balancer off.
	LBConfig string
	// LBListen and LBBackends, when LBBackends is set, configure the load balancer statically
	// instead of the file.
	LBListen   string
	LBBackends []string
	// VIPConfig is the control-plane virtual IP configuration file the Plan writes; default
	// vip.DefaultConfigPath; "-" turns the virtual IP off.
	VIPConfig string
	// Run runs systemctl, ip and ctr; default service.ExecRunner.
	Run service.Runner
	// Inspector reads the hardware; default inspect.Inspector{}.
	Inspector HardwareInspector
	// Logger; default slog.Default().
	Logger *slog.Logger
}

func (o *Options) defaults() {
	if o.StateDir == "" {
		o.StateDir = protocol.StateDir
	}
	if o.BootstrapPath == "" {
		o.BootstrapPath = protocol.BootstrapPath
	}
	if o.Runtime == "" {
		o.Runtime = RuntimeAuto
	}
	if o.LBConfig == "" {
		o.LBConfig = lb.DefaultConfigPath
	}
	if o.VIPConfig == "" {
		o.VIPConfig = vip.DefaultConfigPath
	}
	if o.BackoffMax <= 0 {
		o.BackoffMax = time.Minute
	}
	if o.Run == nil {
		o.Run = service.ExecRunner{}
	}
	if o.Inspector == nil {
		o.Inspector = inspect.Inspector{}
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// Run runs the agent until ctx ends: registration (retried with backoff), the service runtime,
// the load balancer, the health monitor, and the plan loop. Services keep running when it
// returns.
func Run(ctx context.Context, o Options) error {
	o.defaults()
	log := o.Logger
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	// The load balancer does not need the manager: kubelets must reach the API servers even
	// while the manager is away.
	if o.LBConfig != "-" || len(o.LBBackends) > 0 {
		w := &lb.Watcher{Path: o.LBConfig, Logger: log.With("component", "lb")}
		if len(o.LBBackends) > 0 {
			w.Static = &lb.Config{Listen: o.LBListen, Backends: o.LBBackends}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := w.Run(ctx); err != nil {
				log.Error("Load balancer stopped", "error", err)
			}
		}()
	}

	// Nor does the virtual IP: it follows the Lease in the workload cluster.
	var vipWatcher *vip.Watcher
	if o.VIPConfig != "-" {
		vipWatcher = &vip.Watcher{Path: o.VIPConfig, Commands: o.Run, Logger: log.With("component", "vip")}
		wg.Add(1)
		go func() {
			defer wg.Done()
			vipWatcher.Run(ctx)
		}()
	}

	id, err := registerLoop(ctx, o)
	if err != nil {
		return err
	}
	log = log.With("host", id.Host)
	log.Info("Agent registered", "namespace", id.Namespace, "server", id.Server)

	rt, closeRuntime, err := newRuntime(ctx, o, log)
	if err != nil {
		return err
	}
	defer closeRuntime()

	client := NewClient(id)
	checker := probe.Checker{}
	applier := &apply.Applier{
		Root: o.Root, StateDir: filepath.Join(o.StateDir, "apply"), Fetcher: client, Runtime: rt,
		Health: checker, Run: o.Run, Ctr: o.Ctr, DependencyTimeout: o.DependencyTimeout, Logger: log.With("component", "apply"),
	}
	if vipWatcher != nil {
		applier.BeforeDisrupt = vipWatcher.StepDown
		applier.CheckVirtualIP = vip.Check
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		renewLoop(ctx, id, o.StateDir, client, o.BackoffMax, log.With("component", "identity"))
	}()
	mon := &Monitor{Checker: checker, Runtime: rt}
	a := &Agent{
		Host: id.Host, StateDir: o.StateDir, Version: o.Version, Plans: client, Applier: applier, Status: client,
		Inspector: o.Inspector, Health: mon, PlanWait: o.PlanWait, StatusInterval: o.StatusInterval,
		BackoffMax: o.BackoffMax, Logger: log,
	}
	mon.Changed = a.HealthChanged
	applier.AfterStart = mon.Restarted
	wg.Add(1)
	go func() {
		defer wg.Done()
		mon.Run(ctx)
	}()
	disk := &osdisk.Installer{
		Root: o.Root, Host: id.Namespace + "/" + id.Host, Fetcher: client, Carry: []string{o.StateDir},
		Logger: log.With("component", "osdisk"),
	}
	if disk.Eligible() {
		// Only a host running from the PXE initramfs, or from a root filesystem Basalt wrote,
		// ever writes or wipes a disk.
		a.Disk, a.Reboot = disk, osdisk.Reboot
	}
	return a.Run(ctx)
}

// renewLoop renews the agent's certificate when it is due (Identity.RenewAt), retrying with
// backoff, until ctx ends. It looks again at least hourly, so a clock that jumps is noticed.
func renewLoop(ctx context.Context, id *Identity, stateDir string, c *Client, maxBackoff time.Duration, log *slog.Logger) {
	bo := &backoff{initial: time.Second, max: maxBackoff}
	for {
		wait := min(time.Until(id.RenewAt()), time.Hour)
		if wait > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
			continue
		}
		if err := id.Renew(ctx, stateDir, c); err != nil {
			if ctx.Err() != nil {
				return
			}
			d := bo.next()
			log.Error("Cannot renew the agent certificate", "error", err, "expires", id.Certificate().NotAfter, "retryIn", d)
			select {
			case <-ctx.Done():
				return
			case <-time.After(d):
			}
			continue
		}
		bo.reset()
		log.Info("Renewed the agent certificate", "validUntil", id.Certificate().NotAfter, "nextRenewal", id.RenewAt())
	}
}

// registerLoop retries EnsureIdentity until it succeeds or ctx ends.
func registerLoop(ctx context.Context, o Options) (*Identity, error) {
	bo := &backoff{initial: time.Second, max: o.BackoffMax}
	for {
		id, err := EnsureIdentity(ctx, o.StateDir, o.BootstrapPath, o.Version)
		if err == nil {
			return id, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		d := bo.next()
		var perm *PermanentError
		if errors.As(err, &perm) || errors.Is(err, ErrNotBootstrapped) {
			o.Logger.Error("Cannot register; a new bootstrap token or file is needed", "error", err, "retryIn", d)
		} else {
			o.Logger.Warn("Cannot register; retrying", "error", err, "retryIn", d)
		}
		if !sleep(ctx, d) {
			return nil, ctx.Err()
		}
	}
}

// newRuntime starts the chosen service runtime; close ends its supervision (services keep
// running).
func newRuntime(ctx context.Context, o Options, log *slog.Logger) (service.Runtime, func(), error) {
	kind := o.Runtime
	if kind == RuntimeAuto {
		kind = RuntimeSupervisor
		if service.SystemdRunning() {
			kind = RuntimeSystemd
		}
	}
	records := filepath.Join(o.StateDir, "services")
	switch kind {
	case RuntimeSystemd:
		s := &service.Systemd{UnitDir: o.UnitDir, StateDir: records, Run: o.Run, StopTimeout: o.StopGrace, Logger: log.With("component", "systemd")}
		if err := s.Init(ctx); err != nil {
			return nil, nil, err
		}
		log.Info("Services run as systemd units")
		return s, func() {}, nil
	case RuntimeSupervisor:
		s := &service.Supervisor{StateDir: records, LogDir: o.LogDir, LogMaxBytes: o.LogMaxBytes, LogKeep: o.LogKeep,
			StopGrace: o.StopGrace, BackoffMax: o.BackoffMax, Logger: log.With("component", "supervisor")}
		if err := s.Init(ctx); err != nil {
			return nil, nil, err
		}
		if err := s.Start(ctx); err != nil {
			return nil, nil, err
		}
		log.Info("Services run under the agent's supervisor", "logs", s.LogDir)
		return s, s.Close, nil
	}
	return nil, nil, fmt.Errorf("agent: unknown runtime %q (auto, systemd or supervisor)", o.Runtime)
}
