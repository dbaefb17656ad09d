package machine_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
	"github.com/basalt-dev/basalt/test/envtest"
)

const wait = 30 * time.Second

func createCluster(t *testing.T, ns string) *basaltv1.Cluster {
	t.Helper()
	c := &basaltv1.Cluster{ObjectMeta: metav1.ObjectMeta{Name: "c", Namespace: ns}, Spec: basaltv1.ClusterSpec{Version: "v1.37.2"}}
	if err := env.Client.Create(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	return c
}

func createMachine(t *testing.T, ns, name, host string) *basaltv1.Machine {
	t.Helper()
	m := &basaltv1.Machine{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec:       basaltv1.MachineSpec{Cluster: "c", Role: basaltv1.RoleWorker},
	}
	if host != "" {
		m.Spec.HostRef = &basaltv1.LocalObjectReference{Name: host}
	}
	if err := env.Client.Create(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	return m
}

// hostBound returns the HostBound condition of the named Machine.
func hostBound(ctx context.Context, ns, name string) (*basaltv1.Machine, *metav1.Condition, error) {
	m := &basaltv1.Machine{}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, m); err != nil {
		return nil, nil, err
	}
	c, err := envtest.Condition(m.Status.Conditions, basaltv1.MachineHostBound)
	return m, c, err
}

// TestMachineClaimsItsHost: a Machine bound by hand to an Available Host claims it, is linked to
// its Cluster, moves to Provisioning and says honestly that nothing reports on its agent yet.
func TestMachineClaimsItsHost(t *testing.T) {
	startController(t)
	ctx := context.Background()
	ns := env.Namespace(t)
	c := createCluster(t, ns)
	env.CreateAvailableHost(t, envtest.AvailableHostInput{Namespace: ns, Name: "h1", Address: "10.1.2.3"})
	createMachine(t, ns, "m1", "h1")

	envtest.Eventually(t, wait, func() error {
		m, bound, err := hostBound(ctx, ns, "m1")
		if err != nil {
			return err
		}
		if bound.Status != metav1.ConditionTrue {
			return fmt.Errorf("HostBound %s: %s", bound.Status, bound.Message)
		}
		if m.Status.Phase != basaltv1.MachinePhaseProvisioning {
			return fmt.Errorf("phase %q", m.Status.Phase)
		}
		if len(m.Finalizers) != 1 || m.Finalizers[0] != basaltv1.MachineFinalizer {
			return fmt.Errorf("finalizers %v, want [%s]", m.Finalizers, basaltv1.MachineFinalizer)
		}
		if m.Labels[basaltv1.LabelClusterName] != "c" || len(m.OwnerReferences) != 1 || m.OwnerReferences[0].UID != c.UID {
			return fmt.Errorf("not linked to its cluster: labels %v owners %v", m.Labels, m.OwnerReferences)
		}
		if len(m.Status.Addresses) != 1 || m.Status.Addresses[0] != "10.1.2.3" {
			return fmt.Errorf("addresses %v", m.Status.Addresses)
		}
		ready, err := envtest.Condition(m.Status.Conditions, basaltv1.ConditionReady)
		if err != nil {
			return err
		}
		// No Host controller runs here, so nobody says whether the agent reports: Ready is
		// False with that reason, never faked.
		if ready.Status != metav1.ConditionFalse || ready.Reason != basaltv1.ReasonAgentNotReported {
			return fmt.Errorf("Ready %s/%s, want False/AgentNotReported", ready.Status, ready.Reason)
		}
		if m.Status.ObservedGeneration != m.Generation {
			return fmt.Errorf("observedGeneration %d, generation %d", m.Status.ObservedGeneration, m.Generation)
		}
		h := &basaltv1.Host{}
		if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "h1"}, h); err != nil {
			return err
		}
		if h.Status.ConsumerRef == nil || h.Status.ConsumerRef.Name != "m1" {
			return fmt.Errorf("host consumer %v", h.Status.ConsumerRef)
		}
		return nil
	})

	// Deleting the Machine releases its finalizer (the Machine is gone) and its Host.
	m := &basaltv1.Machine{ObjectMeta: metav1.ObjectMeta{Name: "m1", Namespace: ns}}
	if err := env.Client.Delete(ctx, m); err != nil {
		t.Fatal(err)
	}
	envtest.Eventually(t, wait, env.Gone(m))
	h := &basaltv1.Host{}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "h1"}, h); err != nil {
		t.Fatal(err)
	}
	if h.Status.ConsumerRef != nil {
		t.Fatalf("Host still claimed by %s after its Machine was deleted", h.Status.ConsumerRef.Name)
	}
}

// TestOneHostNeverBoundTwice: many Machines naming the same Host race for it; exactly one wins and
// every other says HostInUse naming the winner.
func TestOneHostNeverBoundTwice(t *testing.T) {
	startController(t)
	ctx := context.Background()
	ns := env.Namespace(t)
	createCluster(t, ns)
	env.CreateAvailableHost(t, envtest.AvailableHostInput{Namespace: ns, Name: "h1"})
	const n = 6
	for i := range n {
		createMachine(t, ns, fmt.Sprintf("m%d", i), "h1")
	}
	envtest.Eventually(t, wait, func() error {
		h := &basaltv1.Host{}
		if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "h1"}, h); err != nil {
			return err
		}
		if h.Status.ConsumerRef == nil {
			return fmt.Errorf("host not claimed yet")
		}
		winner := h.Status.ConsumerRef.Name
		for i := range n {
			name := fmt.Sprintf("m%d", i)
			_, bound, err := hostBound(ctx, ns, name)
			if err != nil {
				return err
			}
			switch {
			case name == winner && bound.Status != metav1.ConditionTrue:
				return fmt.Errorf("winner %s has HostBound %s", name, bound.Status)
			case name != winner && (bound.Status != metav1.ConditionFalse || bound.Reason != basaltv1.ReasonHostInUse):
				return fmt.Errorf("loser %s has HostBound %s/%s", name, bound.Status, bound.Reason)
			}
		}
		return nil
	})
}

// TestMachineWaitsForAvailableHost: a Host still Registering is not claimed.
func TestMachineWaitsForAvailableHost(t *testing.T) {
	startController(t)
	ctx := context.Background()
	ns := env.Namespace(t)
	createCluster(t, ns)
	h := &basaltv1.Host{
		ObjectMeta: metav1.ObjectMeta{Name: "h1", Namespace: ns},
		Spec:       basaltv1.HostSpec{Boot: &basaltv1.BootSpec{MACAddresses: []string{"52:54:00:00:00:01"}}},
	}
	if err := env.Client.Create(ctx, h); err != nil {
		t.Fatal(err)
	}
	createMachine(t, ns, "m1", "h1")
	createMachine(t, ns, "m2", "missing")
	envtest.Eventually(t, wait, func() error {
		for name, reason := range map[string]string{"m1": basaltv1.ReasonHostNotAvailable, "m2": basaltv1.ReasonHostNotFound} {
			m, bound, err := hostBound(ctx, ns, name)
			if err != nil {
				return err
			}
			if bound.Status != metav1.ConditionFalse || bound.Reason != reason {
				return fmt.Errorf("%s HostBound %s/%s, want False/%s", name, bound.Status, bound.Reason, reason)
			}
			if m.Status.Phase != basaltv1.MachinePhasePending {
				return fmt.Errorf("%s phase %q, want Pending", name, m.Status.Phase)
			}
		}
		return nil
	})
}
