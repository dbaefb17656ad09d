package cluster_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
	"github.com/basalt-dev/basalt/bootstrap/artifacts"
	"github.com/basalt-dev/basalt/test/envtest"
)

// prevVersion is the version the upgrade tests start at, nextVersion the one they move to. The
// artifact set of prevVersion is the v1.37.2 set's manifest under another version: the Plans
// differ only in what they are built for, which is what the simulated kubelets report.
const (
	prevVersion = "v1.36.3"
	nextVersion = "v1.37.2"
)

// upgradeSets returns the v1.37.2 artifact set and a copy of its manifest as prevVersion.
func upgradeSets(t *testing.T) artifacts.Sets {
	t.Helper()
	src := filepath.Dir(os.Getenv("KUBEBUILDER_ASSETS"))
	raw, err := os.ReadFile(filepath.Join(src, "manifest.json"))
	if err != nil {
		t.Fatalf("the artifact set of v1.37.2 is needed (hack/build-artifacts.sh v1.37.2): %v", err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	m["kubernetesVersion"] = prevVersion
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "manifest.json"), out, 0o644); err != nil {
		t.Fatal(err)
	}
	sets, err := artifacts.LoadSets(src, dir)
	if err != nil {
		t.Fatal(err)
	}
	return sets
}

// TestInPlaceUpgradeRollsOneMachineAtATime raises spec.version of a running 1+2 Cluster and
// watches the rollout: the control plane moves first, then the workers one at a time
// (maxUnavailableWorkers 1); each node is cordoned and drained through the Eviction API before its
// Machine moves, a PodDisruptionBudget holds a drain until spec.nodeDrainTimeout, every node is
// schedulable again at the end, and the Cluster reports the new version.
func TestInPlaceUpgradeRollsOneMachineAtATime(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	h := startControllersWith(t, ns, upgradeSets(t))
	runAgents(t, ns, h.etcd)
	createHost(t, ns, hostInput{name: "cp-0", labels: cpLabels, address: "10.0.7.10", inspected: true})
	createHost(t, ns, hostInput{name: "w-0", labels: workerLabels, address: "10.0.7.20", inspected: true})
	createHost(t, ns, hostInput{name: "w-1", labels: workerLabels, address: "10.0.7.21", inspected: true})
	c := newCluster(ns, "up", 1, 2)
	c.Spec.Version = prevVersion
	c.Spec.NodeDrainTimeout = &metav1.Duration{Duration: 6 * time.Second}
	if err := env.Client.Create(ctx, c); err != nil {
		t.Fatal(err)
	}
	waitClusterReady(t, c, wait)
	_, workers, err := clusterMachines(ctx, ns, "up")
	if err != nil {
		t.Fatal(err)
	}
	// A pod on each worker; the one on the first is guarded by a PodDisruptionBudget that allows
	// no disruption.
	for i, w := range workers {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("web-%d", i), Labels: map[string]string{"app": fmt.Sprintf("web-%d", i)}},
			Spec:       corev1.PodSpec{NodeName: w.Name, Containers: []corev1.Container{{Name: "web", Image: "basalt.dev/webserver:v1"}}},
		}
		if err := env.Client.Create(ctx, pod); err != nil {
			t.Fatal(err)
		}
		// Running and ready, as a kubelet reports it: the API server evicts a pending pod
		// whatever its budget says.
		pod.Status.Phase = corev1.PodRunning
		pod.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
		if err := env.Client.Status().Update(ctx, pod); err != nil {
			t.Fatal(err)
		}
	}
	pdb := &policyv1.PodDisruptionBudget{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "guard"},
		Spec: policyv1.PodDisruptionBudgetSpec{MinAvailable: ptr.To(intstr.FromInt32(1)),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web-0"}}},
	}
	if err := env.Client.Create(ctx, pdb); err != nil {
		t.Fatal(err)
	}

	// Watch the rollout while it runs.
	var mu sync.Mutex
	var violations, order []string
	seenPDB := false
	watchCtx, stop := context.WithCancel(ctx)
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		moved := map[string]bool{}
		for watchCtx.Err() == nil {
			cp, ws, err := clusterMachines(watchCtx, ns, "up")
			if err == nil {
				mu.Lock()
				inFlight := 0
				cpBehind := false
				for _, m := range cp {
					if m.Spec.Version != nextVersion || m.Status.Version != nextVersion {
						cpBehind = true
					}
				}
				for _, m := range append(slices.Clone(cp), ws...) {
					if _, ok := m.Annotations[basaltv1.AnnotationDrainStartedAt]; ok {
						inFlight++
					}
					if m.Spec.Version == nextVersion && !moved[m.Name] {
						moved[m.Name] = true
						order = append(order, m.Name)
						if m.Spec.Role == basaltv1.RoleWorker && cpBehind {
							violations = append(violations, fmt.Sprintf("worker %s moved to %s before the control plane ran it", m.Name, nextVersion))
						}
					}
				}
				if inFlight > 1 {
					violations = append(violations, fmt.Sprintf("%d Machines in flight at once", inFlight))
				}
				got := &basaltv1.Cluster{}
				if env.Client.Get(watchCtx, client.ObjectKeyFromObject(c), got) == nil {
					if cond := meta.FindStatusCondition(got.Status.Conditions, basaltv1.ClusterUpToDate); cond != nil && strings.Contains(cond.Message, "PodDisruptionBudget") {
						seenPDB = true
					}
				}
				mu.Unlock()
			}
			select {
			case <-watchCtx.Done():
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()

	updateCluster(t, c, func(c *basaltv1.Cluster) { c.Spec.Version = nextVersion })
	envtest.Eventually(t, wait, func() error {
		got, err := get(ctx, c)
		if err != nil {
			return err
		}
		if got.Status.Phase != basaltv1.ClusterPhaseUpgrading && got.Status.Version != nextVersion {
			return fmt.Errorf("phase %s, want Upgrading while the rollout runs", got.Status.Phase)
		}
		return nil
	})
	envtest.Eventually(t, 2*wait, func() error {
		got, err := get(ctx, c)
		if err != nil {
			return err
		}
		if got.Status.Version != nextVersion {
			return fmt.Errorf("status.version %s; %s", got.Status.Version, readyMessage(got.Status.Conditions))
		}
		if err := conditionIs(got.Status.Conditions, basaltv1.ClusterUpToDate, metav1.ConditionTrue, basaltv1.ReasonReady); err != nil {
			return err
		}
		if got.Status.Phase != basaltv1.ClusterPhaseRunning {
			return fmt.Errorf("phase %s", got.Status.Phase)
		}
		return conditionIs(got.Status.Conditions, basaltv1.ConditionReady, metav1.ConditionTrue, "")
	})
	stop()
	<-watched
	mu.Lock()
	defer mu.Unlock()
	for _, v := range violations {
		t.Error(v)
	}
	if len(order) != 3 {
		t.Errorf("Machines moved: %v, want all three", order)
	}
	if !seenPDB {
		t.Error("the PodDisruptionBudget never showed in UpToDate while the guarded pod's node was drained")
	}
	cp, ws, err := clusterMachines(ctx, ns, "up")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range append(cp, ws...) {
		if m.Status.Version != nextVersion || m.Spec.Version != nextVersion {
			t.Errorf("Machine %s: spec %s status %s", m.Name, m.Spec.Version, m.Status.Version)
		}
		if _, ok := m.Annotations[basaltv1.AnnotationDrainStartedAt]; ok {
			t.Errorf("Machine %s still carries %s", m.Name, basaltv1.AnnotationDrainStartedAt)
		}
		n := &corev1.Node{}
		if err := env.Client.Get(ctx, client.ObjectKey{Name: m.Name}, n); err != nil || n.Spec.Unschedulable {
			t.Errorf("Node %s: unschedulable %v (%v); every node is uncordoned after its upgrade", m.Name, n.Spec.Unschedulable, err)
		}
	}
	// The unguarded pod was evicted; the guarded one stayed (the drain gave up at its timeout).
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "web-1"}, &corev1.Pod{}); err == nil {
		t.Error("pod web-1 was not evicted from its node")
	}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "web-0"}, &corev1.Pod{}); err != nil {
		t.Errorf("pod web-0, guarded by a PodDisruptionBudget, was removed: %v", err)
	}
}

// TestUpgradeWaitsForArtifacts: a version the manager has no artifacts for (or cannot build Plans
// for) moves no Machine and says so.
func TestUpgradeWaitsForArtifacts(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	h := startControllers(t, ns)
	runAgents(t, ns, h.etcd)
	createHost(t, ns, hostInput{name: "cp-0", labels: cpLabels, address: "10.0.8.10", inspected: true})
	c := newCluster(ns, "noart", 1, 0)
	if err := env.Client.Create(ctx, c); err != nil {
		t.Fatal(err)
	}
	waitClusterReady(t, c, wait)
	updateCluster(t, c, func(c *basaltv1.Cluster) { c.Spec.Version = "v1.37.3" })
	envtest.Eventually(t, wait, func() error {
		got, err := get(ctx, c)
		if err != nil {
			return err
		}
		if err := conditionIs(got.Status.Conditions, basaltv1.ClusterUpToDate, metav1.ConditionFalse, basaltv1.ReasonArtifactSetNotFound); err != nil {
			return err
		}
		if cond := meta.FindStatusCondition(got.Status.Conditions, basaltv1.ClusterUpToDate); !strings.Contains(cond.Message, "v1.37.2") {
			return fmt.Errorf("message %q should list the versions the manager has", cond.Message)
		}
		return nil
	})
	cp, _, err := clusterMachines(ctx, ns, "noart")
	if err != nil || len(cp) != 1 || cp[0].Spec.Version != "v1.37.2" {
		t.Fatalf("Machines %+v (%v): none may move without artifacts", cp, err)
	}
	// A minor this manager cannot build Plans for.
	updateCluster(t, c, func(c *basaltv1.Cluster) { c.Spec.Version = "v1.38.0" })
	envtest.Eventually(t, wait, func() error {
		got, err := get(ctx, c)
		if err != nil {
			return err
		}
		return conditionIs(got.Status.Conditions, basaltv1.ClusterUpToDate, metav1.ConditionFalse, basaltv1.ReasonPlanInvalid)
	})
	cp, _, err = clusterMachines(ctx, ns, "noart")
	if err != nil || len(cp) != 1 || cp[0].Spec.Version != "v1.37.2" {
		t.Fatalf("Machines %+v (%v): none may move to a version without Plans", cp, err)
	}
}

// TestUnhealthyMachineIsReplaced: a control-plane Machine whose Node stays NotReady past
// spec.remediation.nodeNotReadyTimeout is deleted and replaced on the spare Host; etcd loses the
// old member only after the replacement joined; the count is recorded. A one-machine control
// plane is never remediated (it holds the only etcd voter).
func TestUnhealthyMachineIsReplaced(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	h := startControllers(t, ns)
	agents := runAgents(t, ns, h.etcd)
	for i := range 4 {
		createHost(t, ns, hostInput{name: fmt.Sprintf("cp-%d", i), labels: cpLabels, address: fmt.Sprintf("10.0.9.1%d", i), inspected: true})
	}
	c := newCluster(ns, "heal", 3, 0)
	c.Spec.Remediation = basaltv1.RemediationSpec{NodeNotReadyTimeout: &metav1.Duration{Duration: 2 * time.Second}}
	if err := env.Client.Create(ctx, c); err != nil {
		t.Fatal(err)
	}
	waitClusterReady(t, c, 2*wait)
	cp, _, err := clusterMachines(ctx, ns, "heal")
	if err != nil || len(cp) != 3 {
		t.Fatalf("%d control-plane Machines (%v)", len(cp), err)
	}
	sick := cp[1]
	agents.Hold(sick.Name)
	setNodeReady(t, sick.Name, corev1.ConditionUnknown)

	// The Machine controller reads a Ready Node once a minute: seeing it NotReady can take that
	// long, then the 2 s timeout.
	envtest.Eventually(t, 3*wait, func() error {
		m := &basaltv1.Machine{}
		err := env.Client.Get(ctx, client.ObjectKeyFromObject(&sick), m)
		if err != nil {
			return client.IgnoreNotFound(err) // already gone: fine
		}
		if m.DeletionTimestamp.IsZero() {
			return fmt.Errorf("Machine %s not deleted yet", m.Name)
		}
		if !strings.Contains(m.Annotations[basaltv1.AnnotationRemediatedFor], "Node not Ready") {
			return fmt.Errorf("annotation %s = %q", basaltv1.AnnotationRemediatedFor, m.Annotations[basaltv1.AnnotationRemediatedFor])
		}
		if v, ok := m.Annotations[basaltv1.AnnotationPowerCycledAt]; ok { // its Host has no spec.bmc: replaced at once
			return fmt.Errorf("Machine %s was power-cycled (%s) before its replacement", m.Name, v)
		}
		return nil
	})
	// The host comes back (its agent applies the empty Plan), so the deletion can finish.
	agents.Release(sick.Name)
	envtest.Eventually(t, 2*wait, func() error {
		got, err := get(ctx, c)
		if err != nil {
			return err
		}
		if got.Status.Remediation == nil || got.Status.Remediation.Count != 1 || got.Status.Remediation.LastMachine != sick.Name {
			return fmt.Errorf("status.remediation %+v", got.Status.Remediation)
		}
		cp, _, err := clusterMachines(ctx, ns, "heal")
		if err != nil {
			return err
		}
		for _, m := range cp {
			if m.Name == sick.Name {
				return fmt.Errorf("Machine %s still there", m.Name)
			}
		}
		if len(cp) != 3 {
			return fmt.Errorf("%d control-plane Machines", len(cp))
		}
		if err := conditionIs(got.Status.Conditions, basaltv1.ConditionReady, metav1.ConditionTrue, ""); err != nil {
			return fmt.Errorf("%w: %s", err, readyMessage(got.Status.Conditions))
		}
		return conditionIs(got.Status.Conditions, basaltv1.ClusterMachinesHealthy, metav1.ConditionTrue, "")
	})
	if _, ok := h.etcd.Member(sick.Name); ok {
		t.Errorf("etcd still has the member of %s", sick.Name)
	}
	hist := strings.Join(h.etcd.History(), " ")
	if i, j := strings.LastIndex(hist, "Promote"), strings.LastIndex(hist, "Remove"); i < 0 || j < 0 || j < i {
		t.Errorf("etcd history %q: the old member must go after the replacement was promoted", hist)
	}

	// One control-plane Machine: never remediated.
	createHost(t, ns, hostInput{name: "solo", labels: map[string]string{"solo": "yes"}, address: "10.0.9.30", inspected: true})
	solo := newCluster(ns, "solo", 1, 0)
	solo.Spec.ControlPlane.HostSelector = metav1.LabelSelector{MatchLabels: map[string]string{"solo": "yes"}}
	solo.Spec.Remediation = basaltv1.RemediationSpec{NodeNotReadyTimeout: &metav1.Duration{Duration: time.Second}}
	if err := env.Client.Create(ctx, solo); err != nil {
		t.Fatal(err)
	}
	// The fake etcd is shared with the "heal" cluster: solo first removes heal's members one
	// at a time (as strangers to it), which takes longer than a minute on a loaded 2-core machine.
	waitClusterReady(t, solo, 3*wait)
	only, _, err := clusterMachines(ctx, ns, "solo")
	if err != nil || len(only) != 1 {
		t.Fatalf("%d Machines (%v)", len(only), err)
	}
	agents.Hold(only[0].Name)
	setNodeReady(t, only[0].Name, corev1.ConditionFalse)
	envtest.Eventually(t, 3*wait, func() error {
		got, err := get(ctx, solo)
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
	m := &basaltv1.Machine{}
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(&only[0]), m); err != nil || !m.DeletionTimestamp.IsZero() {
		t.Fatalf("the only control-plane Machine was deleted (%v)", err)
	}
}

// setNodeReady sets the Node's Ready condition, as the node lifecycle controller does for a
// kubelet that stopped posting.
func setNodeReady(t *testing.T, name string, status corev1.ConditionStatus) {
	t.Helper()
	n := &corev1.Node{}
	if err := env.Client.Get(context.Background(), client.ObjectKey{Name: name}, n); err != nil {
		t.Fatal(err)
	}
	n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: status, Reason: "NodeStatusUnknown",
		Message: "Kubelet stopped posting node status.", LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now()}}
	if err := env.Client.Status().Update(context.Background(), n); err != nil {
		t.Fatal(err)
	}
}
