package cluster_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
	"github.com/basalt-dev/basalt/test/envtest"
)

const wait = 60 * time.Second

var (
	cpLabels     = map[string]string{"role": "cp"}
	workerLabels = map[string]string{"role": "worker"}
)

// newCluster is a Cluster of the tests. Its metrics and storage add-ons are off: the test API
// server, which plays every workload cluster, runs no pods, so the metrics.k8s.io API never
// becomes Available nor the provisioner's Deployment (TestAddons covers both add-ons up to that
// point, the e2e beyond).
func newCluster(ns, name string, cp, workers int32) *basaltv1.Cluster {
	return &basaltv1.Cluster{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: basaltv1.ClusterSpec{
			Version:      "v1.37.2",
			ControlPlane: basaltv1.ControlPlaneSpec{Replicas: cp, HostSelector: metav1.LabelSelector{MatchLabels: cpLabels}},
			Workers:      []basaltv1.WorkerPool{{Name: "pool", Replicas: workers, HostSelector: metav1.LabelSelector{MatchLabels: workerLabels}}},
			Addons: basaltv1.AddonsSpec{Metrics: basaltv1.MetricsAddonSpec{Disabled: true},
				Storage: basaltv1.StorageAddonSpec{Disabled: true}},
		},
	}
}

func get(ctx context.Context, c *basaltv1.Cluster) (*basaltv1.Cluster, error) {
	got := &basaltv1.Cluster{}
	return got, env.Client.Get(ctx, client.ObjectKeyFromObject(c), got)
}

func machines(ctx context.Context, ns, cluster string) ([]basaltv1.Machine, error) {
	l := &basaltv1.MachineList{}
	err := env.Client.List(ctx, l, client.InNamespace(ns), client.MatchingLabels{basaltv1.LabelClusterName: cluster})
	return l.Items, err
}

// onlyFinalizer returns an error unless obj carries exactly the finalizer want, which its
// controller adds on first sight.
func onlyFinalizer(obj client.Object, want string) error {
	if f := obj.GetFinalizers(); len(f) != 1 || f[0] != want {
		return fmt.Errorf("%s has finalizers %v, want [%s]", obj.GetName(), f, want)
	}
	return nil
}

func hosts(ctx context.Context, ns string) ([]basaltv1.Host, error) {
	l := &basaltv1.HostList{}
	err := env.Client.List(ctx, l, client.InNamespace(ns))
	return l.Items, err
}

// checkBindings verifies that every Host is claimed by at most one live Machine and that every
// Machine's hostRef matches its Host's claim, and returns how many Machines are bound.
func checkBindings(ctx context.Context, ns string) (int, error) {
	// Machines first, Hosts second: a Host is claimed before a Machine names it, so a Machine seen
	// bound must find its claim in the later read of the Hosts.
	l := &basaltv1.MachineList{}
	if err := env.Client.List(ctx, l, client.InNamespace(ns)); err != nil {
		return 0, err
	}
	hs, err := hosts(ctx, ns)
	if err != nil {
		return 0, err
	}
	claimOf := map[string]string{}
	for _, h := range hs {
		if h.Status.ConsumerRef != nil {
			claimOf[h.Name] = h.Status.ConsumerRef.Name
		}
	}
	bound, byHost := 0, map[string]string{}
	for _, m := range l.Items {
		if m.Spec.HostRef == nil {
			continue
		}
		if other, dup := byHost[m.Spec.HostRef.Name]; dup {
			return 0, fmt.Errorf("Host %s bound to both %s and %s", m.Spec.HostRef.Name, other, m.Name)
		}
		byHost[m.Spec.HostRef.Name] = m.Name
		if claimOf[m.Spec.HostRef.Name] != m.Name {
			return 0, fmt.Errorf("Machine %s names Host %s, which is claimed by %q", m.Name, m.Spec.HostRef.Name, claimOf[m.Spec.HostRef.Name])
		}
		bound++
	}
	return bound, nil
}

// TestClusterWaitsForHostsThenBinds: a 3+2 Cluster with no Hosts creates its 5 Machines and says
// how many Hosts each group is missing; when Hosts become Available every Machine is bound to a
// distinct Host of the right kind. Ready stays False: no agent reports, and nothing is faked.
func TestClusterWaitsForHostsThenBinds(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	startControllers(t, ns)
	c := newCluster(ns, "prod", 3, 2)
	if err := env.Client.Create(ctx, c); err != nil {
		t.Fatal(err)
	}
	envtest.Eventually(t, wait, func() error {
		got, err := get(ctx, c)
		if err != nil {
			return err
		}
		ms, err := machines(ctx, ns, "prod")
		if err != nil {
			return err
		}
		if len(ms) != 5 {
			return fmt.Errorf("%d Machines, want 5", len(ms))
		}
		if err := onlyFinalizer(got, basaltv1.ClusterFinalizer); err != nil {
			return err
		}
		for i := range ms {
			if err := onlyFinalizer(&ms[i], basaltv1.MachineFinalizer); err != nil {
				return err
			}
		}
		hb, err := envtest.Condition(got.Status.Conditions, basaltv1.ClusterHostsBound)
		if err != nil {
			return err
		}
		wantMsg := "control plane needs 3 more Available Host(s) matching spec.controlPlane.hostSelector; worker pool pool needs 2 more Available Host(s) matching spec.workers[0].hostSelector"
		if hb.Status != metav1.ConditionFalse || hb.Reason != basaltv1.ReasonWaitingForHosts || hb.Message != wantMsg {
			return fmt.Errorf("HostsBound %s/%s %q", hb.Status, hb.Reason, hb.Message)
		}
		if got.Status.Phase != basaltv1.ClusterPhasePending {
			return fmt.Errorf("phase %q", got.Status.Phase)
		}
		return nil
	})

	for i := range 3 {
		env.CreateAvailableHost(t, envtest.AvailableHostInput{Namespace: ns, Name: fmt.Sprintf("cp-%d", i), Labels: cpLabels, Address: fmt.Sprintf("10.0.0.%d", 10+i)})
	}
	for i := range 3 {
		env.CreateAvailableHost(t, envtest.AvailableHostInput{Namespace: ns, Name: fmt.Sprintf("w-%d", i), Labels: workerLabels})
	}
	envtest.Eventually(t, wait, func() error {
		n, err := checkBindings(ctx, ns)
		if err != nil {
			return err
		}
		if n != 5 {
			return fmt.Errorf("%d Machines bound, want 5", n)
		}
		got, err := get(ctx, c)
		if err != nil {
			return err
		}
		if got.Status.ControlPlane.Bound != 3 || got.Status.Workers.Bound != 2 || got.Status.Workers.Desired != 2 {
			return fmt.Errorf("counts cp %+v workers %+v", got.Status.ControlPlane, got.Status.Workers)
		}
		if got.Status.Phase != basaltv1.ClusterPhaseProvisioning {
			return fmt.Errorf("phase %q", got.Status.Phase)
		}
		if !strings.HasPrefix(got.Status.ControlPlaneEndpoint.Host, "10.0.0.1") {
			return fmt.Errorf("endpoint %+v", got.Status.ControlPlaneEndpoint)
		}
		// The Hosts' agents never report hardware here, so no Plan is built and no etcd member
		// chosen: Ready stays False, saying so, while the certificates are issued.
		certs, err := envtest.Condition(got.Status.Conditions, basaltv1.ClusterCertificatesReady)
		if err != nil {
			return err
		}
		if certs.Status != metav1.ConditionTrue {
			return fmt.Errorf("CertificatesReady %s/%s: %s", certs.Status, certs.Reason, certs.Message)
		}
		ready, err := envtest.Condition(got.Status.Conditions, basaltv1.ConditionReady)
		if err != nil {
			return err
		}
		if ready.Status != metav1.ConditionFalse || ready.Reason != basaltv1.ReasonWaitingForEtcd {
			return fmt.Errorf("Ready %s/%s, want False/WaitingForEtcd", ready.Status, ready.Reason)
		}
		if got.Status.ObservedGeneration != got.Generation {
			return fmt.Errorf("observedGeneration %d, generation %d", got.Status.ObservedGeneration, got.Generation)
		}
		ms, err := machines(ctx, ns, "prod")
		if err != nil {
			return err
		}
		for _, m := range ms {
			wantPrefix := "cp-"
			if m.Spec.Role == basaltv1.RoleWorker {
				wantPrefix = "w-"
			}
			if !strings.HasPrefix(m.Spec.HostRef.Name, wantPrefix) {
				return fmt.Errorf("%s Machine %s bound to Host %s", m.Spec.Role, m.Name, m.Spec.HostRef.Name)
			}
		}
		return nil
	})
}

// TestClustersRacingForHosts: two Clusters that together want more Hosts than exist never bind
// one Host twice.
func TestClustersRacingForHosts(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	startControllers(t, ns)
	for i := range 4 {
		env.CreateAvailableHost(t, envtest.AvailableHostInput{Namespace: ns, Name: fmt.Sprintf("h-%d", i), Labels: cpLabels})
	}
	for _, name := range []string{"a", "b"} {
		c := newCluster(ns, name, 3, 0)
		if err := env.Client.Create(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	envtest.Eventually(t, wait, func() error {
		n, err := checkBindings(ctx, ns)
		if err != nil {
			t.Fatal(err) // a double binding is never acceptable, not even transiently
		}
		if n != 4 {
			return fmt.Errorf("%d Machines bound, want all 4 Hosts used", n)
		}
		return nil
	})
}

// TestScaleDownPauseAndDelete: scaling workers down deletes one Machine and frees its Host; while
// paused, scaling up creates nothing; deleting the Cluster removes every Machine, frees every Host
// and completes.
func TestScaleDownPauseAndDelete(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	startControllers(t, ns)
	env.CreateAvailableHost(t, envtest.AvailableHostInput{Namespace: ns, Name: "cp-0", Labels: cpLabels})
	for i := range 2 {
		env.CreateAvailableHost(t, envtest.AvailableHostInput{Namespace: ns, Name: fmt.Sprintf("w-%d", i), Labels: workerLabels})
	}
	c := newCluster(ns, "s", 1, 2)
	if err := env.Client.Create(ctx, c); err != nil {
		t.Fatal(err)
	}
	waitBound := func(want int) {
		t.Helper()
		envtest.Eventually(t, wait, func() error {
			n, err := checkBindings(ctx, ns)
			if err != nil {
				return err
			}
			ms, err := machines(ctx, ns, "s")
			if err != nil {
				return err
			}
			if n != want || len(ms) != want {
				return fmt.Errorf("%d Machines, %d bound, want %d", len(ms), n, want)
			}
			return nil
		})
	}
	waitBound(3)
	// Every object carries its controller's finalizer; they are released on deletion below.
	var created []client.Object
	envtest.Eventually(t, wait, func() error {
		got, err := get(ctx, c)
		if err != nil {
			return err
		}
		if err := onlyFinalizer(got, basaltv1.ClusterFinalizer); err != nil {
			return err
		}
		ms, err := machines(ctx, ns, "s")
		if err != nil {
			return err
		}
		created = created[:0]
		for i := range ms {
			if err := onlyFinalizer(&ms[i], basaltv1.MachineFinalizer); err != nil {
				return err
			}
			created = append(created, &ms[i])
		}
		return nil
	})

	updateCluster(t, c, func(c *basaltv1.Cluster) {
		c.Spec.Workers[0].Replicas = 1
	})
	waitBound(2)
	envtest.Eventually(t, wait, func() error {
		hs, err := hosts(ctx, ns)
		if err != nil {
			return err
		}
		free := 0
		for _, h := range hs {
			if h.Status.ConsumerRef == nil {
				free++
			}
		}
		if free != 1 {
			return fmt.Errorf("%d free Hosts, want 1", free)
		}
		return nil
	})

	updateCluster(t, c, func(c *basaltv1.Cluster) {
		c.Spec.Paused = true
		c.Spec.Workers[0].Replicas = 2
	})
	envtest.Eventually(t, wait, func() error {
		got, err := get(ctx, c)
		if err != nil {
			return err
		}
		// Paused says why nothing moves; GitOps tools see no progress to wait for.
		if err := conditionIs(got.Status.Conditions, basaltv1.ConditionPaused, metav1.ConditionTrue, basaltv1.ReasonPaused); err != nil {
			return err
		}
		if _, err := envtest.Condition(got.Status.Conditions, basaltv1.ConditionReconciling); err == nil {
			return fmt.Errorf("a paused Cluster is Reconciling: %+v", got.Status.Conditions)
		}
		return nil
	})
	if ms, err := machines(ctx, ns, "s"); err != nil || len(ms) != 2 {
		t.Fatalf("paused Cluster changed its Machines: %d (%v)", len(ms), err)
	}

	if err := env.Client.Delete(ctx, c); err != nil {
		t.Fatal(err)
	}
	// The Cluster and every Machine it ever had (the one scaled away included) are gone: each
	// controller released its finalizer.
	envtest.Eventually(t, wait, env.Gone(c))
	for _, m := range created {
		envtest.Eventually(t, wait, env.Gone(m))
	}
	ms, err := machines(ctx, ns, "s")
	if err != nil || len(ms) != 0 {
		t.Fatalf("%d Machines left after the Cluster was deleted (%v)", len(ms), err)
	}
	hs, err := hosts(ctx, ns)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hs {
		if h.Status.ConsumerRef != nil {
			t.Errorf("Host %s still claimed by %s", h.Name, h.Status.ConsumerRef.Name)
		}
	}
}
