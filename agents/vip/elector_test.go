package vip

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/basalt-dev/basalt/bootstrap/addons"
	"github.com/basalt-dev/basalt/bootstrap/components"
	"github.com/basalt-dev/basalt/test/envtest"
)

var env *envtest.Env

func TestMain(m *testing.M) { envtest.Main(m, &env) }

// holdLog records, in order, every time a fake link takes or drops the address.
type holdLog struct {
	mu     sync.Mutex
	events []string // "+name" or "-name"
}

func (l *holdLog) add(e string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, e)
}

// check fails when two links held the address at once, and returns who holds it now.
func (l *holdLog) check(t *testing.T) []string {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	holding := map[string]bool{}
	for i, e := range l.events {
		holding[e[1:]] = e[0] == '+'
		n := 0
		for _, h := range holding {
			if h {
				n++
			}
		}
		if n > 1 {
			t.Fatalf("two hosts held the address at once after event %d: %v", i, l.events)
		}
	}
	var out []string
	for name, h := range holding {
		if h {
			out = append(out, name)
		}
	}
	return out
}

// fakeLink is a Link that records into a holdLog.
type fakeLink struct {
	name string
	log  *holdLog
	mu   sync.Mutex
	has  bool
	adds int
	// fail makes Add fail (an address not on this host's subnet).
	fail bool
}

func (f *fakeLink) Add(context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail {
		return errors.New("not on this host's subnet")
	}
	if !f.has {
		f.log.add("+" + f.name)
	}
	f.has = true
	f.adds++
	return nil
}

func (f *fakeLink) Remove(context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.has {
		f.log.add("-" + f.name)
	}
	f.has = false
	return nil
}

func (f *fakeLink) Has() (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.has, nil
}

// candidate is one elector under test, with switches for its API server's health and its
// reach to the Lease.
type candidate struct {
	e       *Elector
	link    *fakeLink
	healthy atomic.Bool
	cut     atomic.Bool
	cancel  context.CancelFunc
	done    chan struct{}
}

// leaseAccess gives the virtual IP's identity its Role (as the Cluster controller does).
func leaseAccess(t *testing.T) {
	t.Helper()
	objs, err := addons.Decode([]addons.Source{{Key: "rbac", Data: components.VirtualIPLeaseAccess()}})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		if err := env.Client.Create(context.Background(), o); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
}

// asVirtualIP is an HTTP client of the test API server that acts as the virtual IP's identity.
func asVirtualIP(t *testing.T) *http.Client {
	t.Helper()
	cfg := rest.CopyConfig(env.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: "basalt:control-plane-vip"}
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return hc
}

func deleteLease(t *testing.T) {
	t.Helper()
	l := &coordinationv1.Lease{}
	l.Namespace, l.Name = components.VirtualIPLeaseNamespace, components.VirtualIPLeaseName
	if err := env.Client.Delete(context.Background(), l); err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
}

func start(t *testing.T, name string, log *holdLog, lease, deadline time.Duration) *candidate {
	t.Helper()
	hc := asVirtualIP(t)
	c := &candidate{link: &fakeLink{name: name, log: log}, done: make(chan struct{})}
	c.healthy.Store(true)
	get := func() (*http.Client, error) {
		if c.cut.Load() {
			return nil, errors.New("cut off from the API servers")
		}
		return hc, nil
	}
	c.e = &Elector{Identity: name, Link: c.link, LeaseDuration: lease, RenewDeadline: deadline, RetryPeriod: 100 * time.Millisecond,
		Lease:   &leaseClient{client: get, server: env.Config.Host, namespace: components.VirtualIPLeaseNamespace, name: components.VirtualIPLeaseName},
		Healthy: func(context.Context) bool { return c.healthy.Load() },
		Logger:  slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	ctx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	go func() {
		defer close(c.done)
		c.e.Run(ctx)
	}()
	t.Cleanup(c.stop)
	return c
}

func (c *candidate) stop() {
	c.cancel()
	<-c.done
}

// holder waits until exactly one candidate holds the address and the Lease names it.
func holder(t *testing.T, log *holdLog, cs map[string]*candidate, timeout time.Duration, not string) string {
	t.Helper()
	var who string
	envtest.Eventually(t, timeout, func() error {
		h := log.check(t)
		if len(h) != 1 || h[0] == not {
			return fmt.Errorf("holding: %v", h)
		}
		l := &coordinationv1.Lease{}
		if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: components.VirtualIPLeaseNamespace, Name: components.VirtualIPLeaseName}, l); err != nil {
			return err
		}
		if l.Spec.HolderIdentity == nil || *l.Spec.HolderIdentity != h[0] {
			return fmt.Errorf("the Lease names %v, %s holds the address", l.Spec.HolderIdentity, h[0])
		}
		who = h[0]
		return nil
	})
	return who
}

func TestElection(t *testing.T) {
	leaseAccess(t)

	t.Run("an unready API server gives the address up at once", func(t *testing.T) {
		deleteLease(t)
		log := &holdLog{}
		// A Lease of 30 s: a takeover in less than that can only come from the holder's release.
		cs := map[string]*candidate{}
		for _, n := range []string{"cp-1", "cp-2", "cp-3"} {
			cs[n] = start(t, n, log, 30*time.Second, 20*time.Second)
		}
		first := holder(t, log, cs, 20*time.Second, "")
		envtest.Eventually(t, 5*time.Second, func() error {
			cs[first].link.mu.Lock()
			defer cs[first].link.mu.Unlock()
			if cs[first].link.adds < 3 {
				return fmt.Errorf("the address was announced %d times; want 3 (a gratuitous ARP may be lost)", cs[first].link.adds)
			}
			return nil
		})
		cs[first].healthy.Store(false)
		second := holder(t, log, cs, 10*time.Second, first)
		// The one that gave it up does not take it back while unready.
		time.Sleep(500 * time.Millisecond)
		if h := log.check(t); len(h) != 1 || h[0] != second {
			t.Fatalf("holding %v, want %s", h, second)
		}
		// Ready again: it stays a candidate and takes over once the holder stops.
		cs[first].healthy.Store(true)
		cs[second].stop()
		// Not a claim about speed (the stopped holder's release is; a loaded machine may lose
		// it): within the Lease's 30 s someone else holds the address in any case.
		third := holder(t, log, cs, 40*time.Second, second)
		l := &coordinationv1.Lease{}
		if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: components.VirtualIPLeaseNamespace, Name: components.VirtualIPLeaseName}, l); err != nil {
			t.Fatal(err)
		}
		if got := *l.Spec.LeaseTransitions; got < 2 {
			t.Errorf("leaseTransitions %d after %s → %s → %s", got, first, second, third)
		}
	})

	t.Run("a holder cut off from the API servers drops the address before another takes it", func(t *testing.T) {
		deleteLease(t)
		log := &holdLog{}
		cs := map[string]*candidate{}
		for _, n := range []string{"cp-1", "cp-2", "cp-3"} {
			cs[n] = start(t, n, log, 2*time.Second, 1200*time.Millisecond)
		}
		first := holder(t, log, cs, 20*time.Second, "")
		cs[first].cut.Store(true)
		holder(t, log, cs, 20*time.Second, first) // log.check fails on any overlap
		if has, _ := cs[first].link.Has(); has {
			t.Fatalf("%s, cut off, still holds the address", first)
		}
		// Back in reach, it does not take the address from the new holder.
		cs[first].cut.Store(false)
		time.Sleep(time.Second)
		if h := log.check(t); len(h) != 1 || h[0] == first {
			t.Fatalf("holding %v after %s came back", h, first)
		}
	})

	t.Run("a holder steps down before a restart and another takes over at once", func(t *testing.T) {
		deleteLease(t)
		log := &holdLog{}
		cs := map[string]*candidate{}
		for _, n := range []string{"cp-1", "cp-2"} {
			cs[n] = start(t, n, log, 30*time.Second, 20*time.Second)
		}
		first := holder(t, log, cs, 20*time.Second, "")
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if !cs[first].e.StepDown(ctx, 2*time.Second) {
			t.Fatalf("%s did not hold the address when asked to step down", first)
		}
		if has, _ := cs[first].link.Has(); has {
			t.Fatal("the address is still here after StepDown returned")
		}
		// With a 30 s Lease, a takeover within seconds comes from the step-down's release.
		second := holder(t, log, cs, 10*time.Second, first)
		if !cs[first].e.HeldByOther(ctx) {
			t.Errorf("HeldByOther is false while %s holds the Lease", second)
		}
		// The second steps down too; the first, its pause over, takes the address back.
		if !cs[second].e.StepDown(ctx, 5*time.Second) {
			t.Fatalf("%s did not hold the address when asked to step down", second)
		}
		holder(t, log, cs, 10*time.Second, second)
	})

	t.Run("a host that cannot add the address leaves the Lease to one that can", func(t *testing.T) {
		deleteLease(t)
		log := &holdLog{}
		bad := start(t, "cp-1", log, 30*time.Second, 20*time.Second)
		bad.link.mu.Lock()
		bad.link.fail = true
		bad.link.mu.Unlock()
		// Alone, it takes the Lease, cannot add the address and gives the Lease up.
		envtest.Eventually(t, 10*time.Second, func() error {
			l := &coordinationv1.Lease{}
			if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: components.VirtualIPLeaseNamespace, Name: components.VirtualIPLeaseName}, l); err != nil {
				return err
			}
			// It existed (so cp-1 took it) and names nobody (so cp-1 gave it up).
			if l.Spec.HolderIdentity == nil || *l.Spec.HolderIdentity != "" {
				return fmt.Errorf("the Lease names %q", ptrString(l.Spec.HolderIdentity))
			}
			return nil
		})
		good := start(t, "cp-2", log, 30*time.Second, 20*time.Second)
		if got := holder(t, log, map[string]*candidate{"cp-1": bad, "cp-2": good}, 10*time.Second, ""); got != "cp-2" {
			t.Fatalf("%s holds the address", got)
		}
	})

	t.Run("an agent that restarts while it holds takes its Lease back", func(t *testing.T) {
		deleteLease(t)
		log := &holdLog{}
		a := start(t, "cp-1", log, 30*time.Second, 20*time.Second)
		holder(t, log, map[string]*candidate{"cp-1": a}, 20*time.Second, "")
		// A crash: no release. The same identity starts again and renews the Lease it holds,
		// without waiting for it to expire.
		a.cut.Store(true)
		a.stop()
		b := start(t, "cp-1", log, 30*time.Second, 20*time.Second)
		holder(t, log, map[string]*candidate{"cp-1": b}, 10*time.Second, "")
	})
}

func TestLeaseAccessIsLimited(t *testing.T) {
	leaseAccess(t)
	hc := asVirtualIP(t)
	other := &leaseClient{client: func() (*http.Client, error) { return hc, nil }, server: env.Config.Host, namespace: "kube-system", name: "kube-controller-manager"}
	_, err := other.get(context.Background())
	if err == nil {
		t.Fatal("the virtual IP's identity read another Lease")
	}
	if want := "403"; !strings.Contains(err.Error(), want) {
		t.Fatalf("reading another Lease: %v, want %s", err, want)
	}
}

func ptrString(p *string) string {
	if p == nil {
		return "<nil>"
	}
	return *p
}
