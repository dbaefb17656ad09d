// Package vip holds the control-plane virtual IP: the agents on a Cluster's control-plane hosts
// elect one holder through a Lease in the workload cluster (kube-system/basalt-control-plane-vip),
// and the holder adds the address to its node interface and announces it with gratuitous ARP.
//
// Only a host whose own API server is ready campaigns or keeps the address, since the address
// leads to that server. The Lease is written through the node-local load balancer, so a holder
// whose API server stops (an upgrade restarts it) gives the Lease up at once through the others
// and the next host takes over within about one retry period, instead of after the Lease
// expires. A holder that cannot renew within RenewDeadline drops the address before the others
// may take the Lease (LeaseDuration, measured on their own clocks from the last change they saw),
// so two hosts never answer for the address beyond a gratuitous ARP's delay.
package vip

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"
)

// Timing of the election. The holder renews every RetryPeriod and drops the address when it has
// not renewed for RenewDeadline; the others take the Lease once it has not changed for
// LeaseDuration.
const (
	DefaultLeaseDuration = 6 * time.Second
	DefaultRenewDeadline = 3 * time.Second
	DefaultRetryPeriod   = time.Second
)

// Elector campaigns for the Lease and holds the address while it leads.
type Elector struct {
	// Identity is this host's name in the Lease (the node name).
	Identity string
	// Lease reads and writes the Lease.
	Lease *leaseClient
	// Healthy says whether the host's own API server is ready.
	Healthy func(ctx context.Context) bool
	// Link adds and removes the address.
	Link Link
	// LeaseDuration, RenewDeadline and RetryPeriod; defaults above.
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
	// Logger; default slog.Default().
	Logger *slog.Logger
	// OnChange, when set, is told each time this host takes or gives up the address (tests).
	OnChange func(holding bool)

	now func() time.Time

	// stepDown carries StepDown's requests into Run's goroutine.
	stepDown chan stepDownRequest
	// pausedUntil: no campaigning before then (a service the address depends on restarts).
	pausedUntil time.Time

	holding    bool
	lastRenew  time.Time // when this host last wrote the Lease as holder
	announce   int       // gratuitous ARPs still to repeat
	observed   *record   // the Lease as last read
	observedAt time.Time // when observed last changed, on this host's clock
}

func (e *Elector) defaults() {
	if e.LeaseDuration <= 0 {
		e.LeaseDuration = DefaultLeaseDuration
	}
	if e.RenewDeadline <= 0 || e.RenewDeadline >= e.LeaseDuration {
		e.RenewDeadline = e.LeaseDuration / 2
	}
	if e.RetryPeriod <= 0 {
		e.RetryPeriod = DefaultRetryPeriod
	}
	if e.RenewDeadline+e.RetryPeriod >= e.LeaseDuration {
		e.RetryPeriod = (e.LeaseDuration - e.RenewDeadline) / 2
	}
	if e.Logger == nil {
		e.Logger = slog.Default()
	}
	if e.now == nil {
		e.now = time.Now
	}
	if e.stepDown == nil {
		e.stepDown = make(chan stepDownRequest)
	}
}

type stepDownRequest struct {
	pause time.Duration
	held  chan bool
}

// NewElector returns an Elector with its defaults set, ready for Run and StepDown.
func NewElector(e *Elector) *Elector {
	e.defaults()
	return e
}

// StepDown gives the address up if this host holds it and keeps it from campaigning for pause;
// it says whether it held the address. It must be called while Run runs (it waits for Run's
// goroutine, or for ctx).
func (e *Elector) StepDown(ctx context.Context, pause time.Duration) bool {
	req := stepDownRequest{pause: pause, held: make(chan bool, 1)}
	select {
	case e.stepDown <- req:
	case <-ctx.Done():
		return false
	}
	select {
	case held := <-req.held:
		return held
	case <-ctx.Done():
		return false
	}
}

// HeldByOther says whether the Lease names a holder other than this host.
func (e *Elector) HeldByOther(ctx context.Context) bool {
	cur, err := e.Lease.get(ctx)
	return err == nil && cur != nil && cur.Holder != "" && cur.Holder != e.Identity
}

// Run campaigns until ctx ends, then gives the Lease and the address up.
func (e *Elector) Run(ctx context.Context) {
	e.defaults()
	// An address left by an earlier run of the agent (a crash) is not ours until we hold the Lease.
	if err := e.Link.Remove(ctx); err != nil {
		e.Logger.Error("Removing a stale virtual IP", "error", err)
	}
	t := time.NewTicker(e.RetryPeriod)
	defer t.Stop()
	for {
		e.step(ctx)
		if !e.wait(ctx, t.C) {
			stop, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			e.release(stop, "the agent stops or the Plan no longer has a virtual IP")
			cancel()
			return
		}
	}
}

// wait serves step-down requests until the next tick (true) or the end of ctx (false).
func (e *Elector) wait(ctx context.Context, tick <-chan time.Time) bool {
	for {
		select {
		case <-ctx.Done():
			return false
		case req := <-e.stepDown:
			e.pausedUntil = e.now().Add(req.pause)
			held := e.holding
			e.release(ctx, "a service the address depends on is about to restart")
			req.held <- held
		case <-tick:
			return true
		}
	}
}

// step is one round: renew or give up when holding, else take the Lease when it is free.
func (e *Elector) step(ctx context.Context) {
	// A round lasts at most RetryPeriod, and a holder checks its deadline before each: it drops
	// the address at most RenewDeadline + RetryPeriod after its last renewal, well before the
	// others may take the Lease (LeaseDuration after they saw that renewal).
	e.checkDeadline(ctx)
	rctx, cancel := context.WithTimeout(ctx, e.RetryPeriod)
	defer cancel()
	if e.now().Before(e.pausedUntil) {
		e.release(ctx, "a service the address depends on restarts")
		return
	}
	healthy := e.Healthy(rctx)
	if e.holding && !healthy {
		e.release(ctx, "the API server here is not ready")
		return
	}
	cur, err := e.Lease.get(rctx)
	if err != nil {
		e.Logger.Debug("Reading the virtual IP Lease", "error", err)
		e.checkDeadline(ctx)
		return
	}
	now := e.now()
	if !sameRecord(cur, e.observed) {
		e.observed, e.observedAt = cur, now
	}
	switch {
	case e.holding:
		if cur == nil || cur.Holder != e.Identity {
			e.drop(ctx, "another host holds the Lease")
			return
		}
		next := *cur
		next.Renew = now
		next.DurationSeconds = int32(e.LeaseDuration / time.Second)
		if err := e.Lease.write(rctx, &next); err != nil {
			e.Logger.Debug("Renewing the virtual IP Lease", "error", err)
			e.checkDeadline(ctx)
			return
		}
		e.observed, e.observedAt, e.lastRenew = &next, now, now
		_ = e.keep(ctx) // logged; the address is added again next round
	case !healthy:
		return
	case cur == nil || cur.Holder == "" || cur.Holder == e.Identity || now.Sub(e.observedAt) > time.Duration(cur.DurationSeconds)*time.Second:
		next := record{Holder: e.Identity, DurationSeconds: int32(e.LeaseDuration / time.Second), Acquire: now, Renew: now}
		if cur != nil {
			next.resourceVersion, next.Transitions = cur.resourceVersion, cur.Transitions
			if cur.Holder != e.Identity {
				next.Transitions++
			} else {
				next.Acquire = cur.Acquire
			}
		}
		if err := e.Lease.write(rctx, &next); err != nil {
			if !errors.Is(err, errConflict) {
				e.Logger.Debug("Taking the virtual IP Lease", "error", err)
			}
			return
		}
		e.observed, e.observedAt, e.lastRenew = &next, now, now
		e.take(ctx, cur)
	}
}

// take starts holding the address.
func (e *Elector) take(ctx context.Context, from *record) {
	e.holding = true
	e.announce = 3
	prev := ""
	if from != nil {
		prev = from.Holder
	}
	e.Logger.Info("Took the control-plane virtual IP", "identity", e.Identity, "previousHolder", prev)
	if err := e.keep(ctx); err != nil {
		// A host that cannot put the address on its interface must not keep the Lease from one
		// that can.
		e.pausedUntil = e.now().Add(addFailedPause)
		e.release(ctx, "the address could not be added here: "+err.Error())
		return
	}
	if e.OnChange != nil {
		e.OnChange(true)
	}
}

// addFailedPause keeps a host that could not add the address out of the election for a while.
const addFailedPause = 30 * time.Second

// keep makes sure the address is here, announcing it again the first few rounds after it was
// taken (a single gratuitous ARP may be lost).
func (e *Elector) keep(ctx context.Context) error {
	has, err := e.Link.Has()
	if err == nil && has && e.announce == 0 {
		return nil
	}
	if err := e.Link.Add(ctx); err != nil {
		e.Logger.Error("Holding the control-plane virtual IP", "error", err)
		return err
	}
	if e.announce > 0 {
		e.announce--
	}
	return nil
}

// checkDeadline drops the address when the Lease has not been renewed for RenewDeadline.
func (e *Elector) checkDeadline(ctx context.Context) {
	if e.holding && e.now().Sub(e.lastRenew) > e.RenewDeadline {
		e.drop(ctx, "the Lease could not be renewed")
	}
}

// release gives the Lease up (so another host takes over at once) and drops the address.
func (e *Elector) release(ctx context.Context, why string) {
	if !e.holding {
		return
	}
	if cur := e.observed; cur != nil && cur.Holder == e.Identity {
		next := *cur
		next.Holder, next.DurationSeconds = "", 1
		next.Renew = e.now()
		wctx, cancel := context.WithTimeout(ctx, e.RetryPeriod)
		defer cancel()
		if err := e.Lease.write(wctx, &next); err != nil {
			e.Logger.Info("Could not give the virtual IP Lease up; the others take it when it expires", "error", err)
		} else {
			e.observed, e.observedAt = &next, e.now()
		}
	}
	e.drop(ctx, why)
}

// drop stops holding the address.
func (e *Elector) drop(ctx context.Context, why string) {
	if !e.holding {
		return
	}
	e.holding = false
	if err := e.Link.Remove(ctx); err != nil {
		e.Logger.Error("Removing the control-plane virtual IP", "error", err)
	}
	e.Logger.Info("Gave up the control-plane virtual IP", "identity", e.Identity, "reason", why)
	if e.OnChange != nil {
		e.OnChange(false)
	}
}

func sameRecord(a, b *record) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.resourceVersion == b.resourceVersion
}

// readyz reports whether GET url answers 200 within ctx.
func readyz(client func() (*http.Client, error), url string) func(ctx context.Context) bool {
	return func(ctx context.Context) bool {
		hc, err := client()
		if err != nil {
			return false
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return false
		}
		resp, err := hc.Do(req)
		if err != nil {
			return false
		}
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}
}
