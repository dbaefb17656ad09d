// Package apply converges a host to a Plan: files, artifacts, services, routes and container
// images, each step reported as a protocol.StepResult.
//
// Guarantees, for an agent that may be killed at any instant and re-run with the same or a newer
// Plan:
//
//   - Files and artifacts are written through a temporary file in the same folder, fsynced and
//     renamed into place: a path holds the old or the new bytes. A file whose bytes already
//     match is not rewritten; an artifact already present with its sha256 is not downloaded
//     again. An artifact whose bytes do not hash to the Plan's sha256 is refused (the step fails
//     naming both digests) and never renamed into place.
//   - Services are (re)started only when their hash (Plan.ServiceHash) differs from the hash
//     their runtime recorded after the last successful (re)start, in StartOrder, after the
//     services they depend on pass their probes (bounded by DependencyTimeout). A service whose
//     input failed to be written, or whose dependency failed, is left as it is. Services no
//     longer in the Plan are stopped, dependents first, before anything is started.
//   - Everything the agent writes or programs is recorded in StateDir before it is written
//     (paths and routes), so what a later Plan drops is removed even after a crash in between.
//
// The package reaches the outside world only through the interfaces in Applier's fields, so tests
// run it against a temporary root, a fake or real Runtime and a protocol-level fake manager.
package apply

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/basalt-dev/basalt/agents/probe"
	"github.com/basalt-dev/basalt/agents/protocol"
	"github.com/basalt-dev/basalt/agents/routes"
	"github.com/basalt-dev/basalt/agents/service"
	"github.com/basalt-dev/basalt/bootstrap/plan"
)

// Fetcher returns the bytes of an artifact from the manager's sha256-addressed cache.
type Fetcher interface {
	Fetch(ctx context.Context, sha256 string) (io.ReadCloser, error)
}

// HealthChecker probes a service once.
type HealthChecker interface {
	Check(ctx context.Context, svc plan.Service) protocol.ComponentHealth
}

// RouteProgrammer adds and removes node routes, and deletes network interfaces.
type RouteProgrammer interface {
	Replace(ctx context.Context, r plan.Route) error
	Delete(ctx context.Context, r plan.Route) error
	// DeleteLink deletes a network interface; one that does not exist is no error.
	DeleteLink(ctx context.Context, name string) error
}

// Runner runs a command (ctr, for images).
type Runner interface {
	Run(ctx context.Context, name string, args ...string) ([]byte, error)
}

// Applier applies Plans. Apply must not be called concurrently.
type Applier struct {
	// Root prefixes every path of the Plan; empty or "/" on a host, a temporary folder in tests.
	Root string
	// StateDir holds the records of what the agent wrote; required.
	StateDir string
	// Fetcher downloads artifacts; required when a Plan has artifacts.
	Fetcher Fetcher
	// Runtime runs services; required when a Plan has services.
	Runtime service.Runtime
	// Health probes services; default probe.Checker{}.
	Health HealthChecker
	// Routes programs routes; default routes.Programmer{Run: Run}.
	Routes RouteProgrammer
	// Run runs ctr (and ip, for the default Routes); default service.ExecRunner{}.
	Run Runner
	// Ctr is the ctr command for image imports; default the Plan's artifact named "ctr".
	Ctr string
	// DependencyTimeout bounds the wait for a dependency's (or the image runtime's) probe;
	// default 2m.
	DependencyTimeout time.Duration
	// PollInterval is the time between probes while waiting; default 1s.
	PollInterval time.Duration
	// Processes finds and kills the processes services leave behind; default the host's
	// (/proc).
	Processes ProcessKiller
	// Mounts lists and undoes mounts below state dirs before they are removed; default the
	// host's (/proc/self/mountinfo, umount2).
	Mounts Unmounter
	// Logger; default slog.Default().
	Logger *slog.Logger
	// BeforeDisrupt, when set, is called before a running service is restarted or stopped (the
	// agent's virtual IP moves away first when it depends on the service).
	BeforeDisrupt func(ctx context.Context, service string)
	// AfterStart, when set, is called once a service has been started or restarted (the agent's
	// health monitor forgets the old process: Monitor.Restarted).
	AfterStart func(ctx context.Context, service string)
	// CheckVirtualIP, when set, says whether this host can carry the Plan's virtual IP (vip.Check
	// in the agent); an error fails the Plan's virtualip step and nothing campaigns.
	CheckVirtualIP func(*plan.VirtualIP) error

	mu       sync.Mutex
	verified map[string]verifiedFile
	once     sync.Once
}

// CtrArtifact is the name of the artifact that provides the ctr command.
const CtrArtifact = "ctr"

func (a *Applier) init() {
	a.once.Do(func() {
		a.verified = map[string]verifiedFile{}
		if a.Run == nil {
			a.Run = service.ExecRunner{}
		}
		if a.Health == nil {
			a.Health = probe.Checker{}
		}
		if a.Routes == nil {
			a.Routes = routes.Programmer{Run: a.Run}
		}
		if a.DependencyTimeout <= 0 {
			a.DependencyTimeout = 2 * time.Minute
		}
		if a.PollInterval <= 0 {
			a.PollInterval = time.Second
		}
		if a.Logger == nil {
			a.Logger = slog.Default()
		}
		if a.Processes == nil {
			a.Processes = hostProcesses{}
		}
		if a.Mounts == nil {
			a.Mounts = hostMounts{}
		}
	})
}

// path maps a Plan path onto Root.
func (a *Applier) path(p string) string {
	if a.Root == "" || a.Root == "/" {
		return p
	}
	return filepath.Join(a.Root, p)
}

// Apply converges the host to p, which must be valid, and returns one result per step. The error
// is nil only when every step converged; the same Plan may then be applied again at no cost
// (nothing is rewritten, downloaded or restarted). After an error, or a crash, applying the same
// or a newer Plan again converges.
func (a *Applier) Apply(ctx context.Context, p *plan.Plan) ([]protocol.StepResult, error) {
	a.init()
	if err := p.Validate(); err != nil {
		return []protocol.StepResult{{Step: "plan", Error: err.Error()}}, err
	}
	start := time.Now()
	r := &run{Applier: a, plan: p, failedPaths: map[string]string{}, failedServices: map[string]bool{}}
	r.owned = a.loadOwned()
	// Record what this Plan will write before writing it, so a later Plan that drops it removes
	// it even if this apply never finishes.
	if err := a.saveOwned(r.owned.union(p)); err != nil {
		return []protocol.StepResult{{Step: "state", Error: err.Error()}}, err
	}
	r.owned = r.owned.union(p)

	for _, f := range p.Files {
		if ctx.Err() != nil {
			break
		}
		changed, err := a.ensureFile(f)
		r.step("file:"+f.Path, err, changed)
		if err != nil {
			r.failedPaths[f.Path] = err.Error()
		}
	}
	for _, art := range p.Artifacts {
		if ctx.Err() != nil {
			break
		}
		changed, err := a.ensureArtifact(ctx, art)
		r.step("artifact:"+art.Name, err, changed)
		if err != nil {
			r.failedPaths[art.Path] = err.Error()
		}
	}
	if ctx.Err() == nil {
		r.configureLoadBalancers()
	}
	if ctx.Err() == nil && r.plan.VirtualIP != nil {
		r.configureVirtualIP()
	}
	if ctx.Err() == nil {
		r.stopRemovedServices(ctx)
	}
	if ctx.Err() == nil && r.plan.VirtualIP == nil {
		// Only after the services the address depended on stopped: until then the elector
		// still runs and hands the address over before each stop (BeforeDisrupt).
		r.configureVirtualIP()
	}
	if ctx.Err() == nil {
		r.ensureServices(ctx)
	}
	if ctx.Err() == nil {
		r.programRoutes(ctx)
	}
	if ctx.Err() == nil {
		r.importImages(ctx)
	}
	if ctx.Err() == nil && !r.failed {
		r.removeStalePaths(ctx)
	}
	if err := ctx.Err(); err != nil {
		r.steps = append(r.steps, protocol.StepResult{Step: "apply", Error: "interrupted: " + err.Error()})
		return r.steps, err
	}
	a.Logger.Info("Applied Plan", "hash", p.Hash(), "ok", !r.failed, "steps", len(r.steps), "took", since(start))
	if r.failed {
		var errs []error
		for _, s := range r.steps {
			if !s.OK {
				errs = append(errs, fmt.Errorf("%s: %s", s.Step, s.Error))
			}
		}
		return r.steps, errors.Join(errs...)
	}
	return r.steps, nil
}

// run is the state of one Apply.
type run struct {
	*Applier
	plan  *plan.Plan
	owned owned
	steps []protocol.StepResult
	// failedPaths are the files and artifacts that could not be written, with the reason.
	failedPaths map[string]string
	// failedServices are the services that could not be (re)started.
	failedServices map[string]bool
	failed         bool
}

// step records one result and logs a change or a failure.
func (r *run) step(name string, err error, changed bool) {
	res := protocol.StepResult{Step: name, OK: err == nil}
	if err != nil {
		res.Error = err.Error()
		r.failed = true
		r.Logger.Error("Step failed", "step", name, "error", err)
	} else if changed {
		r.Logger.Info("Step changed the host", "step", name)
	}
	r.steps = append(r.steps, res)
}

// programRoutes replaces every route of the Plan and deletes the routes an earlier Plan had.
func (r *run) programRoutes(ctx context.Context) {
	for _, rt := range r.plan.Routes {
		r.step("route:"+rt.Destination, r.Routes.Replace(ctx, rt), false)
	}
	var keep []plan.Route
	for _, rt := range r.owned.Routes {
		if containsRoute(r.plan.Routes, rt) {
			keep = append(keep, rt)
			continue
		}
		err := r.Routes.Delete(ctx, rt)
		r.step("route:"+rt.Destination+" (removed)", err, err == nil)
		if err != nil {
			keep = append(keep, rt)
		}
	}
	r.owned.Routes = keep
	if err := r.saveOwned(r.owned); err != nil {
		r.step("state", err, false)
	}
}

// removeStaleLinks deletes the network interfaces of services no longer in the Plan (they are
// stopped by now) and returns the links still owned.
func (r *run) removeStaleLinks(ctx context.Context, links []string) []string {
	desired := map[string]bool{}
	for _, s := range r.plan.Services {
		for _, l := range s.Links {
			desired[l] = true
		}
	}
	var keep []string
	for _, l := range links {
		if desired[l] {
			keep = append(keep, l)
			continue
		}
		err := r.Routes.DeleteLink(ctx, l)
		r.step("link:"+l+" (removed)", err, err == nil)
		if err != nil {
			keep = append(keep, l)
		}
	}
	return keep
}

// removeStalePaths removes the files and artifacts an earlier Plan wrote and this one does not.
// It runs only after every other step succeeded, so no service still running an old definition
// loses a file it reads.
func (r *run) removeStalePaths(ctx context.Context) {
	want := r.owned.union(r.plan)
	desired := map[string]bool{}
	for _, f := range r.plan.Files {
		desired[f.Path] = true
	}
	for _, art := range r.plan.Artifacts {
		desired[art.Path] = true
	}
	for _, s := range r.plan.Services {
		for _, d := range s.StateDirs {
			desired[d] = true
		}
		if s.Init != nil {
			desired[s.Init.Output()] = true // removed by the init itself before it runs
		}
	}
	var keep []string
	for _, p := range want.Paths {
		if desired[p] {
			keep = append(keep, p)
			continue
		}
		var err error
		if slices.Contains(want.StateDirs, p) {
			err = r.removeStateDir(p)
		} else {
			err = r.removePath(p)
		}
		r.step("remove:"+p, err, err == nil)
		if err != nil {
			keep = append(keep, p)
		}
	}
	want.Paths = keep
	want.StateDirs = slices.DeleteFunc(want.StateDirs, func(d string) bool { return !slices.Contains(keep, d) })
	want.Links = r.removeStaleLinks(ctx, want.Links)
	if err := r.saveOwned(want); err != nil {
		r.step("state", err, false)
	}
}
