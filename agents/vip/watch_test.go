package vip

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/basalt-dev/basalt/bootstrap/components"
	"github.com/basalt-dev/basalt/bootstrap/plan"
	"github.com/basalt-dev/basalt/test/envtest"
)

// TestWatcherFollowsTheFile: the file the Plan applier writes starts the election (with the
// Plan's CA and client certificate, read from files), a changed file restarts it, and a removed
// one gives the Lease and the address up.
func TestWatcherFollowsTheFile(t *testing.T) {
	deleteLease(t)
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cfg := &plan.VirtualIP{
		Address: "192.0.2.250", NodeAddress: "192.0.2.11", Identity: "cp-1",
		Server: env.Config.Host, Health: strings.TrimSuffix(env.Config.Host, "/") + "/readyz",
		LeaseNamespace: components.VirtualIPLeaseNamespace, LeaseName: components.VirtualIPLeaseName,
		CAFile: write("ca.crt", env.Config.CAData), CertFile: write("client.crt", env.Config.CertData), KeyFile: write("client.key", env.Config.KeyData),
	}
	path := filepath.Join(dir, "vip.json")
	save := func(c *plan.VirtualIP) {
		b, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		write("vip.json", b)
	}
	log := &holdLog{}
	links := map[string]*fakeLink{}
	w := &Watcher{Path: path, Interval: 100 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		newLink: func(c *plan.VirtualIP) Link {
			l := &fakeLink{name: c.Address, log: log}
			links[c.Address] = l
			return l
		}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.Run(ctx)
	}()
	defer func() {
		cancel()
		<-done
	}()
	leaseHolder := func() string {
		l := &coordinationv1.Lease{}
		if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: components.VirtualIPLeaseNamespace, Name: components.VirtualIPLeaseName}, l); err != nil {
			return "error: " + err.Error()
		}
		if l.Spec.HolderIdentity == nil {
			return ""
		}
		return *l.Spec.HolderIdentity
	}
	holds := func(addr string) func() error {
		return func() error {
			h := log.check(t)
			if len(h) != 1 || h[0] != addr || leaseHolder() != "cp-1" {
				return fmt.Errorf("holding %v, Lease holder %q", h, leaseHolder())
			}
			return nil
		}
	}

	save(cfg)
	envtest.Eventually(t, 20*time.Second, holds("192.0.2.250"))
	// A changed address: the old one is given up, the new one held.
	cfg.Address = "192.0.2.251"
	save(cfg)
	envtest.Eventually(t, 20*time.Second, holds("192.0.2.251"))
	// A StepDown for a service the address does not depend on does nothing.
	w.StepDown(ctx, "kube-scheduler")
	if h := log.check(t); len(h) != 1 {
		t.Fatalf("holding %v after an unrelated step-down", h)
	}
	// Removed: the Lease is free and nothing holds the address.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	envtest.Eventually(t, 20*time.Second, func() error {
		if h := log.check(t); len(h) != 0 || leaseHolder() != "" {
			return fmt.Errorf("holding %v, Lease holder %q", h, leaseHolder())
		}
		return nil
	})
}
