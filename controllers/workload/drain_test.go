package workload_test

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/basalt-dev/basalt/controllers/workload"
	"github.com/basalt-dev/basalt/test/envtest"
)

var env *envtest.Env

func TestMain(m *testing.M) {
	envtest.Main(m, &env)
}

// TestDrainEvictsWhatMustLeave drains a node of a real API server: ordinary pods get an
// eviction, DaemonSet pods, mirror pods and finished pods stay, a pod a PodDisruptionBudget
// protects is reported as blocked, and pods of other nodes are untouched.
func TestDrainEvictsWhatMustLeave(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	cfg := rest.CopyConfig(env.Config)
	var evictions atomic.Int32
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper { return countEvictions{rt, &evictions} })
	workload.NoEvictionRetry(cfg)
	c, err := client.New(cfg, client.Options{Scheme: env.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "drain-" + ns}}
	if err := c.Create(ctx, node); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Delete(ctx, node) })
	ds := &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "ds"},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "ds"}},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "ds"}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "x"}}}},
		},
	}
	if err := c.Create(ctx, ds); err != nil {
		t.Fatal(err)
	}
	pod := func(name, nodeName string, mutate func(*corev1.Pod)) {
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"app": name}},
			Spec:       corev1.PodSpec{NodeName: nodeName, Containers: []corev1.Container{{Name: "c", Image: "x"}}},
		}
		if mutate != nil {
			mutate(p)
		}
		if err := c.Create(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	pod("plain", node.Name, nil)
	pod("guarded", node.Name, nil)
	pod("elsewhere", "other-"+ns, nil)
	pod("daemon", node.Name, func(p *corev1.Pod) {
		p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "DaemonSet", Name: ds.Name, UID: ds.UID, Controller: ptr.To(true)}}
	})
	pod("static", node.Name, func(p *corev1.Pod) { p.Annotations = map[string]string{corev1.MirrorPodAnnotationKey: "x"} })
	pod("done", node.Name, nil)
	done := &corev1.Pod{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "done"}, done); err != nil {
		t.Fatal(err)
	}
	done.Status.Phase = corev1.PodSucceeded
	if err := c.Status().Update(ctx, done); err != nil {
		t.Fatal(err)
	}
	// The apiserver lets a pending pod go whatever its budget says: the guarded pod runs.
	guarded := &corev1.Pod{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "guarded"}, guarded); err != nil {
		t.Fatal(err)
	}
	guarded.Status.Phase = corev1.PodRunning
	guarded.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
	if err := c.Status().Update(ctx, guarded); err != nil {
		t.Fatal(err)
	}
	pdb := &policyv1.PodDisruptionBudget{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "guard"},
		Spec: policyv1.PodDisruptionBudgetSpec{MinAvailable: ptr.To(intstr.FromInt32(1)),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "guarded"}}},
	}
	if err := c.Create(ctx, pdb); err != nil {
		t.Fatal(err)
	}

	if err := workload.Cordon(ctx, c, node.Name, true); err != nil {
		t.Fatal(err)
	}
	st, err := workload.Drain(ctx, c, node.Name)
	if err != nil {
		t.Fatal(err)
	}
	// One request per pod: client-go must not retry the refused eviction (it would block the
	// pass for 100 s).
	if n := evictions.Load(); n != 2 {
		t.Errorf("%d eviction requests in one pass, want 2 (plain, guarded)", n)
	}
	if want := []string{ns + "/guarded", ns + "/plain"}; !slices.Equal(st.Remaining, want) {
		t.Errorf("remaining %v, want %v", st.Remaining, want)
	}
	if want := []string{ns + "/guarded"}; !slices.Equal(st.Blocked, want) {
		t.Errorf("blocked %v, want %v", st.Blocked, want)
	}
	if st.Done() || !strings.Contains(st.String(), "PodDisruptionBudget refuses to evict "+ns+"/guarded") {
		t.Errorf("status %q", st.String())
	}
	// The evicted pod is terminating (no kubelet here to finish it); the others are untouched.
	got := map[string]*corev1.Pod{}
	for _, name := range []string{"plain", "guarded", "elsewhere", "daemon", "static", "done"} {
		p := &corev1.Pod{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, p); err != nil {
			t.Fatalf("pod %s: %v", name, err)
		}
		got[name] = p
	}
	if got["plain"].DeletionTimestamp.IsZero() {
		t.Error("pod plain was not evicted")
	}
	for _, name := range []string{"guarded", "elsewhere", "daemon", "static", "done"} {
		if !got[name].DeletionTimestamp.IsZero() {
			t.Errorf("pod %s was evicted", name)
		}
	}
	n := &corev1.Node{}
	if err := c.Get(ctx, client.ObjectKeyFromObject(node), n); err != nil || !n.Spec.Unschedulable {
		t.Errorf("node not cordoned (%v)", err)
	}
	// A second pass does not evict again and still waits for the terminating pod.
	st, err = workload.Drain(ctx, c, node.Name)
	if err != nil || len(st.Remaining) != 2 {
		t.Errorf("second pass: %+v, %v", st, err)
	}
	// Once the kubelet is done with it and the budget is gone, the node is drained.
	if err := c.Delete(ctx, got["plain"], client.GracePeriodSeconds(0)); err != nil {
		t.Fatal(err)
	}
	if err := c.Delete(ctx, pdb); err != nil {
		t.Fatal(err)
	}
	if _, err := workload.Drain(ctx, c, node.Name); err != nil {
		t.Fatal(err)
	}
	if err := c.Delete(ctx, got["guarded"], client.GracePeriodSeconds(0)); err != nil {
		t.Fatal(err)
	}
	if st, err = workload.Drain(ctx, c, node.Name); err != nil || !st.Done() {
		t.Errorf("after the pods left: %+v, %v; want drained", st, err)
	}
	if err := workload.Cordon(ctx, c, node.Name, false); err != nil {
		t.Fatal(err)
	}
	if err := c.Get(ctx, client.ObjectKeyFromObject(node), n); err != nil || n.Spec.Unschedulable {
		t.Errorf("node still cordoned (%v)", err)
	}
	if err := workload.Cordon(ctx, c, "missing-"+ns, true); err != nil {
		t.Errorf("cordoning a missing node: %v, want nil", err)
	}
}

// countEvictions counts the eviction requests that reach the API server.
type countEvictions struct {
	next http.RoundTripper
	n    *atomic.Int32
}

func (c countEvictions) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method == http.MethodPost && strings.HasSuffix(req.URL.Path, "/eviction") {
		c.n.Add(1)
	}
	return c.next.RoundTrip(req)
}
