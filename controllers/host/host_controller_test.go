package host_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
	"github.com/basalt-dev/basalt/test/envtest"
)

const wait = 30 * time.Second

func sshHost(ns, name string) *basaltv1.Host {
	return &basaltv1.Host{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: basaltv1.HostSpec{SSH: &basaltv1.SSHSpec{
			Address:             "10.0.0.5",
			PrivateKeySecretRef: basaltv1.SecretKeyReference{Name: "ssh", Key: "id"},
		}},
	}
}

// TestHostRegistersHonestly: a new Host gets the finalizer, enters Registering and says plainly
// that the agent is not built yet; Ready is never faked.
func TestHostRegistersHonestly(t *testing.T) {
	startController(t)
	ctx := context.Background()
	ns := env.Namespace(t)
	h := sshHost(ns, "h1")
	if err := env.Client.Create(ctx, h); err != nil {
		t.Fatal(err)
	}
	envtest.Eventually(t, wait, func() error {
		got := &basaltv1.Host{}
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(h), got); err != nil {
			return err
		}
		if len(got.Finalizers) != 1 || got.Finalizers[0] != basaltv1.HostFinalizer {
			return fmt.Errorf("finalizers %v", got.Finalizers)
		}
		if got.Status.State != basaltv1.HostStateRegistering {
			return fmt.Errorf("state %q", got.Status.State)
		}
		if got.Status.ObservedGeneration != got.Generation {
			return fmt.Errorf("observedGeneration %d, generation %d", got.Status.ObservedGeneration, got.Generation)
		}
		ready, err := envtest.Condition(got.Status.Conditions, basaltv1.ConditionReady)
		if err != nil {
			return err
		}
		if ready.Status != metav1.ConditionFalse || ready.Reason != basaltv1.ReasonNotImplemented {
			return fmt.Errorf("Ready %s/%s, want False/NotImplemented", ready.Status, ready.Reason)
		}
		agent, err := envtest.Condition(got.Status.Conditions, basaltv1.HostAgentConnected)
		if err != nil {
			return err
		}
		if agent.Status != metav1.ConditionFalse {
			return fmt.Errorf("AgentConnected %s", agent.Status)
		}
		return nil
	})

	if err := env.Client.Delete(ctx, h); err != nil {
		t.Fatal(err)
	}
	envtest.Eventually(t, wait, env.Gone(h))
}

// TestHostInUseIsNotDeletedUnderItsMachine: deleting a Host consumed by an existing Machine waits
// for the Machine, with Ready=False/Deleting naming it; once the Machine is gone the Host goes.
func TestHostInUseIsNotDeletedUnderItsMachine(t *testing.T) {
	startController(t)
	ctx := context.Background()
	ns := env.Namespace(t)
	m := &basaltv1.Machine{
		ObjectMeta: metav1.ObjectMeta{Name: "m1", Namespace: ns},
		Spec:       basaltv1.MachineSpec{Cluster: "c", Role: basaltv1.RoleWorker, HostRef: &basaltv1.LocalObjectReference{Name: "h1"}},
	}
	if err := env.Client.Create(ctx, m); err != nil {
		t.Fatal(err)
	}
	h := env.CreateAvailableHost(t, envtest.AvailableHostInput{Namespace: ns, Name: "h1"})
	env.UpdateHostStatus(t, h, func(h *basaltv1.Host) { h.Status.ConsumerRef = &basaltv1.LocalObjectReference{Name: "m1"} })
	envtest.Eventually(t, wait, func() error {
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(h), h); err != nil {
			return err
		}
		if len(h.Finalizers) == 0 {
			return errors.New("no finalizer yet")
		}
		return nil
	})
	if err := env.Client.Delete(ctx, h); err != nil {
		t.Fatal(err)
	}
	envtest.Eventually(t, wait, func() error {
		got := &basaltv1.Host{}
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(h), got); err != nil {
			return err
		}
		ready, err := envtest.Condition(got.Status.Conditions, basaltv1.ConditionReady)
		if err != nil {
			return err
		}
		if ready.Reason != basaltv1.ReasonDeleting {
			return fmt.Errorf("Ready reason %q, want Deleting", ready.Reason)
		}
		return nil
	})
	// The Host must still be there a while later: its consumer still exists.
	time.Sleep(2 * time.Second)
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(h), &basaltv1.Host{}); err != nil {
		t.Fatalf("Host in use disappeared: %v", err)
	}
	if err := env.Client.Delete(ctx, m); err != nil {
		t.Fatal(err)
	}
	envtest.Eventually(t, wait, env.Gone(h))
}

// TestHostClaimOfMissingMachineIsReleased: a claim left by a Machine that no longer exists (a crash
// between claim and bind, or a Machine deleted without its finalizer) is cleared.
func TestHostClaimOfMissingMachineIsReleased(t *testing.T) {
	startController(t)
	ctx := context.Background()
	ns := env.Namespace(t)
	h := env.CreateAvailableHost(t, envtest.AvailableHostInput{Namespace: ns, Name: "h1"})
	env.UpdateHostStatus(t, h, func(h *basaltv1.Host) {
		h.Status.ConsumerRef = &basaltv1.LocalObjectReference{Name: "never-existed"}
	})
	envtest.Eventually(t, wait, func() error {
		got := &basaltv1.Host{}
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(h), got); err != nil {
			return err
		}
		if got.Status.ConsumerRef != nil {
			return fmt.Errorf("still claimed by %s", got.Status.ConsumerRef.Name)
		}
		if got.Status.State != basaltv1.HostStateAvailable {
			return fmt.Errorf("state %q, want Available", got.Status.State)
		}
		return nil
	})
}
