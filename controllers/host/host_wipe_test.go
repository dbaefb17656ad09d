package host_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
	"github.com/basalt-dev/basalt/bootstrap/plan"
	"github.com/basalt-dev/basalt/controllers/hostclaim"
	"github.com/basalt-dev/basalt/test/envtest"
)

// nodePlanHash stands for the hash of a node's Plan that an agent reports while it runs one.
const nodePlanHash = "5f0c6d2b7e1a4c3d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d"

// waitHost waits until h's state is want and, when reason is set, condition Wiped has that reason
// and status; it returns the Host.
func waitHost(t *testing.T, h *basaltv1.Host, want basaltv1.HostState, reason string, status metav1.ConditionStatus) *basaltv1.Host {
	t.Helper()
	got := &basaltv1.Host{}
	envtest.Eventually(t, wait, func() error {
		if err := env.Client.Get(context.Background(), client.ObjectKeyFromObject(h), got); err != nil {
			return err
		}
		if got.Status.State != want {
			return fmt.Errorf("state %q, want %s", got.Status.State, want)
		}
		if reason == "" {
			return nil
		}
		c, err := envtest.Condition(got.Status.Conditions, basaltv1.HostWiped)
		if err != nil {
			return err
		}
		if c.Reason != reason || c.Status != status {
			return fmt.Errorf("Wiped %s/%s (%s), want %s/%s", c.Status, c.Reason, c.Message, status, reason)
		}
		return nil
	})
	return got
}

// claimAndRelease makes a Machine claim h (Provisioned, its agent reporting a node Plan), lets the
// agent go silent when silent is set, then deletes the Machine: the Host is released.
func claimAndRelease(t *testing.T, h *basaltv1.Host, machine string, silent bool) {
	t.Helper()
	ctx := context.Background()
	m := &basaltv1.Machine{
		ObjectMeta: metav1.ObjectMeta{Name: machine, Namespace: h.Namespace},
		Spec:       basaltv1.MachineSpec{Cluster: "c", Role: basaltv1.RoleWorker, HostRef: &basaltv1.LocalObjectReference{Name: h.Name}},
	}
	if err := env.Client.Create(ctx, m); err != nil {
		t.Fatal(err)
	}
	env.UpdateHostStatus(t, h, func(h *basaltv1.Host) {
		now := metav1.Now()
		h.Status.ConsumerRef = &basaltv1.LocalObjectReference{Name: machine}
		h.Status.Agent.PlanHash, h.Status.Agent.LastSeen = nodePlanHash, &now
	})
	waitHost(t, h, basaltv1.HostStateProvisioned, "", "")
	if silent {
		env.UpdateHostStatus(t, h, func(h *basaltv1.Host) {
			long := metav1.NewTime(time.Now().Add(-time.Hour))
			h.Status.Agent.LastSeen = &long
		})
	}
	if err := env.Client.Delete(ctx, m); err != nil {
		t.Fatal(err)
	}
}

// agentApplied stands for a report of the Host's agent: it is connected and applied hash.
func agentApplied(t *testing.T, h *basaltv1.Host, hash string) {
	t.Helper()
	env.UpdateHostStatus(t, h, func(h *basaltv1.Host) {
		now := metav1.Now()
		h.Status.Agent.LastSeen = &now
		h.Status.Agent.PlanHash = hash
	})
}

func annotate(t *testing.T, h *basaltv1.Host, key, value string) {
	t.Helper()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		got := &basaltv1.Host{}
		if err := env.Client.Get(context.Background(), client.ObjectKeyFromObject(h), got); err != nil {
			return err
		}
		if got.Annotations == nil {
			got.Annotations = map[string]string{}
		}
		got.Annotations[key] = value
		return env.Client.Update(context.Background(), got)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestHostReleasedUnwipedStaysOutOfThePool: a Host whose Machine went while its agent was silent
// (a powered-off machine, the Machine's wipe timed out) is Unwiped, not Available, for as long as
// nothing confirms the wipe. When its agent comes back it is Deprovisioning (the agent wipes);
// only the agent's report of the empty Plan makes it Available again.
func TestHostReleasedUnwipedStaysOutOfThePool(t *testing.T) {
	startController(t)
	ctx := context.Background()
	ns := env.Namespace(t)
	h := env.CreateAvailableHost(t, envtest.AvailableHostInput{Namespace: ns, Name: "h1"})
	claimAndRelease(t, h, "m1", true)

	got := waitHost(t, h, basaltv1.HostStateUnwiped, basaltv1.ReasonWipeNotConfirmed, metav1.ConditionFalse)
	if c, _ := envtest.Condition(got.Status.Conditions, basaltv1.HostWiped); !strings.Contains(c.Message, basaltv1.AnnotationConfirmWiped) {
		t.Errorf("the Wiped message does not name the override: %q", c.Message)
	}
	// Not claimable, and it stays so.
	time.Sleep(3 * time.Second)
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(h), got); err != nil {
		t.Fatal(err)
	}
	if got.Status.State != basaltv1.HostStateUnwiped || hostclaim.Available(got) {
		t.Fatalf("a Host released unwiped is %s (claimable %v)", got.Status.State, hostclaim.Available(got))
	}
	if notes, err := hostEvents(ctx, h, basaltv1.ReasonWipeNotConfirmed); err != nil || len(notes) == 0 {
		t.Errorf("no %s event (%v)", basaltv1.ReasonWipeNotConfirmed, err)
	}

	// The agent is back, still running the old node's Plan: it is wiping, still out of the pool.
	agentApplied(t, h, nodePlanHash)
	waitHost(t, h, basaltv1.HostStateDeprovisioning, basaltv1.ReasonWiping, metav1.ConditionFalse)

	// It applied the empty Plan: Available, the wipe confirmed.
	agentApplied(t, h, plan.Empty(h.Name).Hash())
	got = waitHost(t, h, basaltv1.HostStateAvailable, basaltv1.ReasonWipeConfirmed, metav1.ConditionTrue)
	if !hostclaim.Available(got) {
		t.Fatal("a wiped Host is not claimable")
	}

	// A connected agent that wipes at once: Available without passing through Unwiped; the next
	// claim removes the condition.
	claimAndRelease(t, h, "m2", false)
	waitHost(t, h, basaltv1.HostStateDeprovisioning, basaltv1.ReasonWiping, metav1.ConditionFalse)
	agentApplied(t, h, plan.Empty(h.Name).Hash())
	waitHost(t, h, basaltv1.HostStateAvailable, basaltv1.ReasonWipeConfirmed, metav1.ConditionTrue)
	m3 := &basaltv1.Machine{
		ObjectMeta: metav1.ObjectMeta{Name: "m3", Namespace: ns},
		Spec:       basaltv1.MachineSpec{Cluster: "c", Role: basaltv1.RoleWorker, HostRef: &basaltv1.LocalObjectReference{Name: h.Name}},
	}
	if err := env.Client.Create(ctx, m3); err != nil {
		t.Fatal(err)
	}
	env.UpdateHostStatus(t, h, func(h *basaltv1.Host) { h.Status.ConsumerRef = &basaltv1.LocalObjectReference{Name: "m3"} })
	envtest.Eventually(t, wait, func() error {
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(h), got); err != nil {
			return err
		}
		if _, err := envtest.Condition(got.Status.Conditions, basaltv1.HostWiped); err == nil {
			return fmt.Errorf("Wiped still present in state %s", got.Status.State)
		}
		return nil
	})
}

// TestHostConfirmWipedOverride: basalt.dev/confirm-wiped makes an Unwiped Host Available (reason
// WipeOverridden) and forgets the root image on its disk; a value first seen on a Host that waits
// for no wipe is refused. Each value is answered once in status.lastWipeConfirmation and the
// annotation stays, so a value a GitOps tool keeps never vouches for a later release.
func TestHostConfirmWipedOverride(t *testing.T) {
	startController(t)
	ctx := context.Background()
	ns := env.Namespace(t)
	h := env.CreateAvailableHost(t, envtest.AvailableHostInput{Namespace: ns, Name: "h1"})
	lastConfirmation := func() *basaltv1.RequestRecord {
		got := &basaltv1.Host{}
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(h), got); err != nil {
			t.Fatal(err)
		}
		return got.Status.LastWipeConfirmation
	}

	// On an Available Host: refused, and it stays refused.
	annotate(t, h, basaltv1.AnnotationConfirmWiped, "2026-12-06T10:00:00Z")
	envtest.Eventually(t, wait, func() error {
		if last := lastConfirmation(); last == nil || last.Request != "2026-12-06T10:00:00Z" || !strings.Contains(last.Error, "waited for no wipe") {
			return fmt.Errorf("lastWipeConfirmation %+v", last)
		}
		return nil
	})
	if notes, err := hostEvents(ctx, h, "ConfirmWipedIgnored"); err != nil || len(notes) == 0 {
		t.Errorf("no ConfirmWipedIgnored event (%v)", err)
	}
	claimAndRelease(t, h, "m1", true)
	waitHost(t, h, basaltv1.HostStateUnwiped, basaltv1.ReasonWipeNotConfirmed, metav1.ConditionFalse)
	time.Sleep(2 * time.Second)
	waitHost(t, h, basaltv1.HostStateUnwiped, basaltv1.ReasonWipeNotConfirmed, metav1.ConditionFalse)

	// A new value while Unwiped: Available, WipeOverridden.
	annotate(t, h, basaltv1.AnnotationConfirmWiped, "2026-12-06T11:00:00Z")
	got := waitHost(t, h, basaltv1.HostStateAvailable, basaltv1.ReasonWipeOverridden, metav1.ConditionTrue)
	if last := got.Status.LastWipeConfirmation; last == nil || last.Request != "2026-12-06T11:00:00Z" || last.Error != "" {
		t.Errorf("lastWipeConfirmation %+v", last)
	}
	if notes, err := hostEvents(ctx, h, basaltv1.ReasonWipeOverridden); err != nil || len(notes) == 0 {
		t.Errorf("no %s event (%v)", basaltv1.ReasonWipeOverridden, err)
	}

	// Released unwiped again with that value still on the Host: it vouches for nothing new.
	claimAndRelease(t, h, "m2", true)
	waitHost(t, h, basaltv1.HostStateUnwiped, basaltv1.ReasonWipeNotConfirmed, metav1.ConditionFalse)
	time.Sleep(2 * time.Second)
	waitHost(t, h, basaltv1.HostStateUnwiped, basaltv1.ReasonWipeNotConfirmed, metav1.ConditionFalse)
}

// TestHostWithAForeignPlanIsNotAvailable: an accepted, inspected Host whose agent still runs a Plan
// that no Machine stands for (reprovisioned, or used by another manager) waits in Deprovisioning
// until the agent applied the empty Plan the manager serves it.
func TestHostWithAForeignPlanIsNotAvailable(t *testing.T) {
	startController(t)
	ns := env.Namespace(t)
	h := sshHost(ns, "h1")
	if err := env.Client.Create(context.Background(), h); err != nil {
		t.Fatal(err)
	}
	env.UpdateHostStatus(t, h, func(h *basaltv1.Host) {
		now := metav1.Now()
		h.Status.State = basaltv1.HostStateInspecting
		h.Status.Agent = basaltv1.AgentStatus{Version: "test", LastSeen: &now, PlanHash: nodePlanHash}
		h.Status.Hardware = &basaltv1.Hardware{CPUs: 2}
	})
	waitHost(t, h, basaltv1.HostStateDeprovisioning, basaltv1.ReasonWiping, metav1.ConditionFalse)
	agentApplied(t, h, plan.Empty(h.Name).Hash())
	waitHost(t, h, basaltv1.HostStateAvailable, basaltv1.ReasonWipeConfirmed, metav1.ConditionTrue)
}
