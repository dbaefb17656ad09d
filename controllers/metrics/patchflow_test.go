package metrics

import (
	"context"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
	"github.com/basalt-dev/basalt/controllers/patch"
	"github.com/basalt-dev/basalt/test/envtest"
)

var env *envtest.Env

func TestMain(m *testing.M) {
	envtest.Main(m, &env)
}

// TestEdgeWrittenOnceObservedOnce runs the flow the controllers use against a real API server:
// two reconciles read the same Machine (the second from a cache that has not seen the first's
// write yet), both move it to Running and patch its status with controllers/patch, and each
// observes only when its patch succeeded. The optimistic lock lets one through; the edge is
// observed once, and the retry of the other sees no edge.
func TestEdgeWrittenOnceObservedOnce(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	m := &basaltv1.Machine{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "m"},
		Spec: basaltv1.MachineSpec{Cluster: "c", Role: basaltv1.RoleWorker}}
	if err := env.Client.Create(ctx, m); err != nil {
		t.Fatal(err)
	}
	m.Status.Phase = basaltv1.MachinePhaseBootstrapping
	if err := env.Client.Status().Update(ctx, m); err != nil {
		t.Fatal(err)
	}

	r := NewRecorder()
	now := m.CreationTimestamp.Add(7 * time.Minute)
	reconcile := func(read *basaltv1.Machine) error {
		helper := patch.NewHelper(read, env.Client)
		before := read.DeepCopy()
		read.Status.Phase = basaltv1.MachinePhaseRunning
		if err := helper.Patch(ctx, read); err != nil {
			return err
		}
		r.ObserveMachine(before, read, now)
		return nil
	}
	get := func() *basaltv1.Machine {
		got := &basaltv1.Machine{}
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(m), got); err != nil {
			t.Fatal(err)
		}
		return got
	}
	first, stale := get(), get()
	if err := reconcile(first); err != nil {
		t.Fatalf("first reconcile: %v", err)
	}
	if err := reconcile(stale); !apierrors.IsConflict(err) {
		t.Fatalf("a reconcile from a stale read wrote the same edge again (err %v)", err)
	}
	if err := reconcile(get()); err != nil { // the retry, from a fresh read
		t.Fatalf("retry: %v", err)
	}
	if n, sum := histogram(t, r, "basalt_machine_provision_duration_seconds", "worker"); n != 1 || sum != 420 {
		t.Fatalf("%d samples, sum %v; want the edge observed once, 420s", n, sum)
	}
	if got := get().Status.Phase; got != basaltv1.MachinePhaseRunning {
		t.Fatalf("phase %s", got)
	}
}
