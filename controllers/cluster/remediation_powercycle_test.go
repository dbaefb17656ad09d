package cluster_test

import (
	"context"
	"encoding/pem"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
	"github.com/basalt-dev/basalt/pxe/bmc/bmcsim"
	"github.com/basalt-dev/basalt/test/envtest"
)

// setBMC gives Host name a Redfish BMC at url, with the credentials Secret "bmc".
func setBMC(t *testing.T, ns, name, url string) {
	t.Helper()
	envtest.Eventually(t, wait, func() error {
		h := &basaltv1.Host{}
		if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, h); err != nil {
			return err
		}
		h.Spec.BMC = &basaltv1.BMCSpec{Protocol: basaltv1.BMCRedfish, Address: url, CredentialsSecretRef: basaltv1.LocalObjectReference{Name: "bmc"}}
		return env.Client.Update(context.Background(), h)
	})
}

// clusterEventNotes returns the notes of the events with that reason about Cluster c.
func clusterEventNotes(ctx context.Context, c *basaltv1.Cluster, reason string) ([]string, error) {
	l := &eventsv1.EventList{}
	if err := env.Client.List(ctx, l, client.InNamespace(c.Namespace)); err != nil {
		return nil, err
	}
	var out []string
	for _, e := range l.Items {
		if e.Regarding.Kind == "Cluster" && e.Regarding.Name == c.Name && e.Reason == reason {
			out = append(out, e.Note)
		}
	}
	return out, nil
}

// TestUnhealthyMachineIsPowerCycledFirst: a worker whose Node stays NotReady past
// nodeNotReadyTimeout, on a Host with spec.bmc, is not deleted: its Host is annotated
// basalt.dev/power-cycle, the Host controller resets the machine once through the (simulated
// Redfish) BMC, and the Machine carries basalt.dev/power-cycled-at. When it recovers the
// annotation goes and nothing is replaced. When it fails again it is power-cycled again and,
// still NotReady a whole timeout after that, replaced on the spare Host (which has no BMC);
// the power cycle and the replacement count as one remediation each episode. A lone etcd voter
// with a BMC is never power-cycled (quorum would not hold without it).
func TestUnhealthyMachineIsPowerCycledFirst(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	hs := startControllers(t, ns)
	agents := runAgents(t, ns, hs.etcd)
	sys := &bmcsim.MemorySystem{}
	if err := sys.PowerOn(ctx); err != nil { // the machines run: a power cycle resets them
		t.Fatal(err)
	}
	srv := httptest.NewTLSServer(&bmcsim.Redfish{Username: "root", Password: "pw", System: sys})
	t.Cleanup(srv.Close)
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := env.Client.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "bmc"},
		Data: map[string][]byte{"username": []byte("root"), "password": []byte("pw"), "ca.crt": ca}}); err != nil {
		t.Fatal(err)
	}
	createHost(t, ns, hostInput{name: "cp-0", labels: cpLabels, address: "10.0.7.10", inspected: true})
	createHost(t, ns, hostInput{name: "w-0", labels: workerLabels, address: "10.0.7.20", inspected: true})
	setBMC(t, ns, "cp-0", srv.URL)
	setBMC(t, ns, "w-0", srv.URL)

	const timeout = 8 * time.Second
	setTimeout := func(d time.Duration) {
		updateCluster(t, &basaltv1.Cluster{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "pc"}}, func(c *basaltv1.Cluster) {
			c.Spec.Remediation.NodeNotReadyTimeout = &metav1.Duration{Duration: d}
		})
	}
	c := newCluster(ns, "pc", 1, 1)
	c.Spec.Remediation = basaltv1.RemediationSpec{
		NodeNotReadyTimeout: &metav1.Duration{Duration: timeout},
		AgentSilentTimeout:  &metav1.Duration{Duration: time.Hour},
	}
	if err := env.Client.Create(ctx, c); err != nil {
		t.Fatal(err)
	}
	waitClusterReady(t, c, 2*wait)
	cp, workers, err := clusterMachines(ctx, ns, "pc")
	if err != nil || len(cp) != 1 || len(workers) != 1 || workers[0].Spec.HostRef == nil || workers[0].Spec.HostRef.Name != "w-0" {
		t.Fatalf("Machines %+v %+v (%v), want the worker on w-0", cp, workers, err)
	}
	sick := workers[0]
	// The spare Host for the replacement has no BMC.
	createHost(t, ns, hostInput{name: "w-1", labels: workerLabels, address: "10.0.7.21", inspected: true})

	fail := func(m basaltv1.Machine, status corev1.ConditionStatus) {
		agents.Hold(m.Name)
		setNodeReady(t, m.Name, status)
		// The Machine controller reads a Ready Node once a minute; a change brings it sooner.
		touch(t, &basaltv1.Machine{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: m.Name}})
	}
	// waitPowerCycled waits for the power cycle of sick's Host other than the one of request
	// prev, done by the BMC (resets in all), with the Machine still there; it returns the request.
	waitPowerCycled := func(prev string, resets int, count int32) (string, time.Time) {
		t.Helper()
		var req string
		envtest.Eventually(t, wait, func() error {
			m := &basaltv1.Machine{}
			if err := env.Client.Get(ctx, client.ObjectKeyFromObject(&sick), m); err != nil {
				return err
			}
			req = m.Annotations[basaltv1.AnnotationPowerCycledAt]
			if req == "" || req == prev {
				return fmt.Errorf("Machine %s annotated %s=%q", m.Name, basaltv1.AnnotationPowerCycledAt, req)
			}
			if !m.DeletionTimestamp.IsZero() {
				return fmt.Errorf("Machine %s deleted right after its power cycle", m.Name)
			}
			h := &basaltv1.Host{}
			if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "w-0"}, h); err != nil {
				return err
			}
			if got := h.Annotations[basaltv1.AnnotationPowerCycle]; got != req {
				return fmt.Errorf("Host w-0 annotated %s=%q, want %q", basaltv1.AnnotationPowerCycle, got, req)
			}
			if pc := h.Status.LastPowerCycle; pc == nil || pc.Request != req || pc.Error != "" {
				return fmt.Errorf("Host w-0 status.lastPowerCycle %+v", pc)
			}
			if n := sys.Resets(); n != resets {
				return fmt.Errorf("%d resets, want %d", n, resets)
			}
			got, err := get(ctx, c)
			if err != nil {
				return err
			}
			if got.Status.Remediation == nil || got.Status.Remediation.Count != count || got.Status.Remediation.LastMachine != sick.Name {
				return fmt.Errorf("status.remediation %+v, want count %d", got.Status.Remediation, count)
			}
			notes, err := clusterEventNotes(ctx, c, basaltv1.ReasonPowerCycling)
			if err != nil {
				return err
			}
			if len(notes) < int(count) {
				return fmt.Errorf("%d %s events, want %d: %q", len(notes), basaltv1.ReasonPowerCycling, count, notes)
			}
			return nil
		})
		at, err := time.Parse(time.RFC3339, req)
		if err != nil {
			t.Fatalf("%s=%q is not RFC 3339: %v", basaltv1.AnnotationPowerCycledAt, req, err)
		}
		return req, at
	}

	// Episode 1: power-cycled, then healthy again.
	fail(sick, corev1.ConditionUnknown)
	first, _ := waitPowerCycled("", 1, 1)
	setTimeout(time.Hour) // no race with the recovery below
	envtest.Eventually(t, wait, func() error {
		got, err := get(ctx, c)
		if err != nil {
			return err
		}
		return conditionIs(got.Status.Conditions, basaltv1.ClusterMachinesHealthy, metav1.ConditionFalse, basaltv1.ReasonPowerCycling)
	})
	// The host is back: its agent reports and its kubelet posts Ready.
	agents.Release(sick.Name)
	setNodeReady(t, sick.Name, corev1.ConditionTrue)
	touch(t, &basaltv1.Machine{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: sick.Name}})
	envtest.Eventually(t, wait, func() error {
		m := &basaltv1.Machine{}
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(&sick), m); err != nil {
			return err
		}
		if v, ok := m.Annotations[basaltv1.AnnotationPowerCycledAt]; ok {
			return fmt.Errorf("Machine %s still annotated %s=%s", m.Name, basaltv1.AnnotationPowerCycledAt, v)
		}
		got, err := get(ctx, c)
		if err != nil {
			return err
		}
		return conditionIs(got.Status.Conditions, basaltv1.ClusterMachinesHealthy, metav1.ConditionTrue, "")
	})
	if n := sys.Resets(); n != 1 {
		t.Fatalf("%d resets after the recovery, want 1", n)
	}

	// Episode 2: power-cycled again, still NotReady a timeout later: replaced.
	setTimeout(timeout)
	fail(sick, corev1.ConditionUnknown)
	_, cycledAt := waitPowerCycled(first, 2, 2)
	envtest.Eventually(t, 2*wait, func() error {
		got, err := get(ctx, c)
		if err != nil {
			return err
		}
		st := got.Status.Remediation
		if st == nil || st.LastRemediatedAt == nil || !st.LastRemediatedAt.After(cycledAt) {
			return fmt.Errorf("status.remediation %+v: not replaced yet", st)
		}
		// The replacement finishes the remediation the power cycle started: not counted again.
		if st.Count != 2 || st.LastMachine != sick.Name {
			return fmt.Errorf("status.remediation %+v, want count 2", st)
		}
		if waited := st.LastRemediatedAt.Sub(cycledAt); waited < timeout {
			t.Errorf("Machine replaced %s after its power cycle, before the timeout of %s passed again", waited, timeout)
		}
		return nil
	})
	m := &basaltv1.Machine{}
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(&sick), m); err == nil {
		if why := m.Annotations[basaltv1.AnnotationRemediatedFor]; !strings.Contains(why, "after the power cycle") {
			t.Errorf("%s=%q, want it to name the power cycle", basaltv1.AnnotationRemediatedFor, why)
		}
	}
	agents.Release(sick.Name) // the host comes back and applies the empty Plan, so the deletion finishes
	envtest.Eventually(t, 2*wait, func() error {
		_, workers, err := clusterMachines(ctx, ns, "pc")
		if err != nil {
			return err
		}
		if len(workers) != 1 || workers[0].Name == sick.Name || workers[0].Spec.HostRef == nil || workers[0].Spec.HostRef.Name != "w-1" {
			return fmt.Errorf("workers %v, want one replacement on w-1", machineNames(workers))
		}
		got, err := get(ctx, c)
		if err != nil {
			return err
		}
		if err := conditionIs(got.Status.Conditions, basaltv1.ConditionReady, metav1.ConditionTrue, ""); err != nil {
			return fmt.Errorf("%w: %s", err, readyMessage(got.Status.Conditions))
		}
		return conditionIs(got.Status.Conditions, basaltv1.ClusterMachinesHealthy, metav1.ConditionTrue, "")
	})
	if n := sys.Resets(); n != 2 {
		t.Fatalf("%d resets, want 2", n)
	}

	// The lone control-plane Machine: its Host has a BMC, but it holds the only etcd voter, so it
	// is neither power-cycled nor replaced.
	fail(cp[0], corev1.ConditionFalse)
	envtest.Eventually(t, 2*wait, func() error {
		got, err := get(ctx, c)
		if err != nil {
			return err
		}
		if err := conditionIs(got.Status.Conditions, basaltv1.ClusterMachinesHealthy, metav1.ConditionFalse, basaltv1.ReasonRemediationBlocked); err != nil {
			return err
		}
		if cond := meta.FindStatusCondition(got.Status.Conditions, basaltv1.ClusterMachinesHealthy); !strings.Contains(cond.Message, "only etcd voter") {
			return fmt.Errorf("message %q", cond.Message)
		}
		return nil
	})
	h := &basaltv1.Host{}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "cp-0"}, h); err != nil {
		t.Fatal(err)
	}
	if v, ok := h.Annotations[basaltv1.AnnotationPowerCycle]; ok || sys.Resets() != 2 {
		t.Fatalf("the lone etcd voter's Host was asked for a power cycle (%q) or reset (%d resets)", v, sys.Resets())
	}
}

func machineNames(ms []basaltv1.Machine) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.Name)
	}
	return out
}
