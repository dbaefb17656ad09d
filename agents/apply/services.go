package apply

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/basalt-dev/basalt/agents/service"
	"github.com/basalt-dev/basalt/bootstrap/plan"
)

// stopRemovedServices stops the services the runtime manages that the Plan no longer has,
// dependents first.
func (r *run) stopRemovedServices(ctx context.Context) {
	if r.Runtime == nil {
		if len(r.plan.Services) > 0 {
			r.step("services", errors.New("no service runtime configured"), false)
		}
		return
	}
	installed, err := r.Runtime.Installed(ctx)
	if err != nil {
		r.step("services", fmt.Errorf("listing installed services: %w", err), false)
		return
	}
	var gone []service.Installed
	for _, in := range installed {
		if !slices.ContainsFunc(r.plan.Services, func(s plan.Service) bool { return s.Name == in.Name }) {
			gone = append(gone, in)
		}
	}
	for _, name := range service.StopOrder(gone) {
		r.Logger.Info("Stopping service", "service", name, "reason", "no longer in the Plan")
		r.beforeDisrupt(ctx, name)
		err := r.Runtime.Stop(ctx, name)
		r.step("service:"+name+" (stopped)", err, err == nil)
	}
	r.killLeftovers()
	if r.plan.ImageRuntime == "" {
		// No image runtime any more: its images went with its state; import them again if one
		// comes back.
		if err := r.saveImages(map[string]string{}); err != nil {
			r.step("state", err, false)
		}
	}
}

// killLeftovers kills the processes that services no longer in the Plan left behind
// (plan.Service.Leaves), with everything they started, and forgets them once none is left.
func (r *run) killLeftovers() {
	for svc, exes := range r.owned.Leaves {
		if slices.ContainsFunc(r.plan.Services, func(s plan.Service) bool { return s.Name == svc }) {
			continue
		}
		paths := make([]string, len(exes))
		for i, e := range exes {
			paths[i] = r.path(e)
		}
		n, err := r.Processes.KillTrees(paths)
		r.step("service:"+svc+" (leftover processes killed)", err, n > 0)
		if err == nil {
			delete(r.owned.Leaves, svc)
		}
	}
}

// ensureServices (re)starts, in StartOrder, every service whose hash changed or that does not
// run, after its dependencies are healthy.
func (r *run) ensureServices(ctx context.Context) {
	if r.Runtime == nil {
		return
	}
	order, err := r.plan.StartOrder()
	if err != nil {
		r.step("services", err, false)
		return
	}
	for _, name := range order {
		if ctx.Err() != nil {
			return
		}
		err := r.ensureService(ctx, name)
		if err != nil {
			r.failedServices[name] = true
		}
	}
}

func (r *run) ensureService(ctx context.Context, name string) (err error) {
	svc := r.service(name)
	step := "service:" + name
	changed := false
	defer func() { r.step(step, err, changed) }()
	for _, in := range svc.Reads {
		if reason, bad := r.failedPaths[in]; bad {
			return fmt.Errorf("not (re)started: its input %s was not written: %s", in, reason)
		}
	}
	for _, d := range svc.After {
		if r.failedServices[d] {
			return fmt.Errorf("not (re)started: dependency %s failed", d)
		}
	}
	hash, err := r.plan.ServiceHash(name)
	if err != nil {
		return err
	}
	st, err := r.Runtime.Status(ctx, name)
	if err != nil {
		return err
	}
	if st.Hash != hash || !st.Active {
		for _, d := range svc.After {
			if err := r.waitHealthy(ctx, r.service(d)); err != nil {
				return fmt.Errorf("not (re)started: dependency %s: %w", d, err)
			}
		}
		reason := "definition changed"
		if st.Hash == hash {
			reason = "not running"
		}
		r.Logger.Info("Starting service", "service", name, "hash", hash, "oldHash", st.Hash, "reason", reason)
		if st.Active {
			r.beforeDisrupt(ctx, name)
		}
	}
	ran, err := r.ensureInit(ctx, svc)
	if err != nil {
		return err
	}
	changed, err = r.Runtime.Ensure(ctx, svc, hash)
	if changed && r.AfterStart != nil {
		r.AfterStart(ctx, name)
	}
	changed = changed || ran
	return err
}

func (r *run) service(name string) plan.Service {
	i := slices.IndexFunc(r.plan.Services, func(s plan.Service) bool { return s.Name == name })
	return r.plan.Services[i]
}

// healthy probes svc, or, when it has no probe, asks the runtime whether its process runs.
func (a *Applier) healthy(ctx context.Context, svc plan.Service) (bool, string) {
	if svc.Probe == nil {
		st, err := a.Runtime.Status(ctx, svc.Name)
		if err != nil {
			return false, err.Error()
		}
		if !st.Active {
			return false, "not running: " + st.Message
		}
		return true, ""
	}
	h := a.Health.Check(ctx, svc)
	return h.Healthy, h.Message
}

// waitHealthy waits until svc is healthy, at most DependencyTimeout.
func (a *Applier) waitHealthy(ctx context.Context, svc plan.Service) error {
	deadline := time.Now().Add(a.DependencyTimeout)
	for {
		ok, msg := a.healthy(ctx, svc)
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not healthy after %s: %s", a.DependencyTimeout, msg)
		}
		t := time.NewTimer(a.PollInterval)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// importImages imports the Plan's image artifacts into containerd's k8s.io namespace once the
// image runtime is healthy. An image imported before (same path and sha256) is not imported
// again; the record is written after each successful import.
func (r *run) importImages(ctx context.Context) {
	p := r.plan
	if len(p.Images) == 0 {
		return
	}
	fail := func(err error, from int) {
		for _, img := range p.Images[from:] {
			r.step("image:"+img, err, false)
		}
	}
	if r.failedServices[p.ImageRuntime] {
		fail(fmt.Errorf("not imported: the image runtime %s failed", p.ImageRuntime), 0)
		return
	}
	ctr := r.Ctr
	if ctr == "" {
		i := slices.IndexFunc(p.Artifacts, func(a plan.Artifact) bool { return a.Name == CtrArtifact })
		if i < 0 {
			fail(fmt.Errorf("not imported: the Plan has no artifact named %q and the agent has no --ctr", CtrArtifact), 0)
			return
		}
		if reason, bad := r.failedPaths[p.Artifacts[i].Path]; bad {
			fail(fmt.Errorf("not imported: ctr was not written: %s", reason), 0)
			return
		}
		ctr = r.path(p.Artifacts[i].Path)
	}
	imported := r.loadImages()
	waited := false
	for i, img := range p.Images {
		art := p.Artifacts[slices.IndexFunc(p.Artifacts, func(a plan.Artifact) bool { return a.Name == img })]
		if imported[art.Path] == art.SHA256 {
			r.step("image:"+img, nil, false)
			continue
		}
		if reason, bad := r.failedPaths[art.Path]; bad {
			r.step("image:"+img, fmt.Errorf("not imported: the artifact was not written: %s", reason), false)
			continue
		}
		if !waited {
			if err := r.waitHealthy(ctx, r.service(p.ImageRuntime)); err != nil {
				fail(fmt.Errorf("not imported: image runtime %s: %w", p.ImageRuntime, err), i)
				return
			}
			waited = true
		}
		_, err := r.Run.Run(ctx, ctr, "-n", "k8s.io", "images", "import", r.path(art.Path))
		if err == nil {
			imported[art.Path] = art.SHA256
			err = r.saveImages(imported)
		}
		r.step("image:"+img, err, err == nil)
	}
}

// beforeDisrupt tells the agent that a running service is about to be restarted or stopped.
func (a *Applier) beforeDisrupt(ctx context.Context, name string) {
	if a.BeforeDisrupt != nil {
		a.BeforeDisrupt(ctx, name)
	}
}
