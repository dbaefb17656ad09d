package skeleton_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
	"github.com/basalt-dev/basalt/controllers/conditions"
	"github.com/basalt-dev/basalt/controllers/skeleton"
	"github.com/basalt-dev/basalt/test/envtest"
)

var env *envtest.Env

func TestMain(m *testing.M) { envtest.Main(m, &env) }

// hostKind counts what Observe saw.
func hostKind(observed *[]string) *skeleton.Kind[*basaltv1.Host] {
	return &skeleton.Kind[*basaltv1.Host]{
		Name: "Host", Word: "state",
		Phase:              func(h *basaltv1.Host) string { return string(h.Status.State) },
		ObservedGeneration: func(h *basaltv1.Host) *int64 { return &h.Status.ObservedGeneration },
		Observe: func(before, after *basaltv1.Host, _ time.Time) {
			*observed = append(*observed, string(before.Status.State)+"->"+string(after.Status.State))
		},
	}
}

func newHost(t *testing.T) *basaltv1.Host {
	t.Helper()
	h := &basaltv1.Host{
		ObjectMeta: metav1.ObjectMeta{Namespace: env.Namespace(t), Name: "h"},
		Spec:       basaltv1.HostSpec{SSH: &basaltv1.SSHSpec{Address: "192.0.2.10", User: "root", PrivateKeySecretRef: basaltv1.SecretKeyReference{Name: "k", Key: "id_ed25519"}}},
	}
	if err := env.Client.Create(context.Background(), h); err != nil {
		t.Fatal(err)
	}
	return h
}

func read(t *testing.T, h *basaltv1.Host) *basaltv1.Host {
	t.Helper()
	got := &basaltv1.Host{}
	if err := env.Client.Get(context.Background(), client.ObjectKeyFromObject(h), got); err != nil {
		t.Fatal(err)
	}
	return got
}

// A body that fails early still gets its status derived and written, but never claims to have
// observed the generation it failed on; a body that succeeds does, and a state change is logged
// as an event.
func TestRunDerivesStatusOnEveryReturn(t *testing.T) {
	ctx := context.Background()
	h := read(t, newHost(t))
	var observed []string
	rec := events.NewFakeRecorder(10)
	kind := hostKind(&observed)
	status := func(obj *basaltv1.Host) func() {
		return func() {
			conditions.False(obj, basaltv1.ConditionReady, "Derived", "set by the status function in state "+string(obj.Status.State))
		}
	}

	failing := errors.New("the outside world said no")
	_, err := skeleton.Run(ctx, env.Client, rec, kind, h, time.Now, status(h), func(context.Context) (ctrl.Result, error) {
		h.Status.State = basaltv1.HostStateRegistering
		return ctrl.Result{}, failing
	})
	if !errors.Is(err, failing) {
		t.Fatalf("Run returned %v, want the body's error", err)
	}
	got := read(t, h)
	c, cerr := envtest.Condition(got.Status.Conditions, basaltv1.ConditionReady)
	if cerr != nil || c.Reason != "Derived" || !strings.Contains(c.Message, "Registering") {
		t.Fatalf("after a failed body: Ready %+v (%v), want the condition derived from the state the body left", c, cerr)
	}
	if got.Status.ObservedGeneration != 0 {
		t.Errorf("after a failed body: observedGeneration %d, want 0 (not observed)", got.Status.ObservedGeneration)
	}
	if got.Status.State != basaltv1.HostStateRegistering {
		t.Errorf("state %q not written on the error path", got.Status.State)
	}
	select {
	case e := <-rec.Events:
		if !strings.Contains(e, "StateChanged") || !strings.Contains(e, `Host moved from "" to "Registering"`) {
			t.Errorf("event %q, want a StateChanged event naming both states", e)
		}
	default:
		t.Error("no event for the state change")
	}

	h = got
	res, err := skeleton.Run(ctx, env.Client, rec, kind, h, time.Now, status(h), func(context.Context) (ctrl.Result, error) {
		return ctrl.Result{RequeueAfter: time.Minute}, nil
	})
	if err != nil || res.RequeueAfter != time.Minute {
		t.Fatalf("Run = %v, %v; want the body's result", res, err)
	}
	if got := read(t, h); got.Status.ObservedGeneration != got.Generation {
		t.Errorf("after a successful body: observedGeneration %d, generation %d", got.Status.ObservedGeneration, got.Generation)
	}
	select {
	case e := <-rec.Events:
		t.Errorf("event %q without a state change", e)
	default:
	}
	if len(observed) != 2 || observed[0] != "->Registering" || observed[1] != "Registering->Registering" {
		t.Errorf("Observe saw %v, want one call per reconcile with before and after", observed)
	}
}

// An object deleted while its reconcile ran is not an error: there is nothing left to patch.
func TestRunObjectGone(t *testing.T) {
	ctx := context.Background()
	h := read(t, newHost(t))
	var observed []string
	_, err := skeleton.Run(ctx, env.Client, events.NewFakeRecorder(10), hostKind(&observed), h, time.Now, func() {
		conditions.False(h, basaltv1.ConditionReady, "Derived", "x")
	}, func(ctx context.Context) (ctrl.Result, error) {
		return ctrl.Result{}, env.Client.Delete(ctx, h.DeepCopy())
	})
	if err != nil {
		t.Fatalf("Run on an object deleted meanwhile: %v", err)
	}
}

func TestRunPhasesStopsAtFirstErrorAndKeepsSoonestRequeue(t *testing.T) {
	type scope struct{ ran []string }
	step := func(name string, res ctrl.Result, err error) skeleton.Phase[scope] {
		return func(_ context.Context, s *scope) (ctrl.Result, error) {
			s.ran = append(s.ran, name)
			return res, err
		}
	}
	s := &scope{}
	res, err := skeleton.RunPhases(context.Background(), s,
		step("a", ctrl.Result{RequeueAfter: time.Minute}, nil), step("b", ctrl.Result{RequeueAfter: time.Second}, nil), step("c", ctrl.Result{}, nil))
	if err != nil || res.RequeueAfter != time.Second || strings.Join(s.ran, "") != "abc" {
		t.Errorf("RunPhases = %v, %v after %v; want 1s, nil after abc", res, err, s.ran)
	}
	s = &scope{}
	boom := errors.New("boom")
	res, err = skeleton.RunPhases(context.Background(), s,
		step("a", ctrl.Result{RequeueAfter: time.Minute}, nil), step("b", ctrl.Result{}, boom), step("c", ctrl.Result{}, nil))
	if !errors.Is(err, boom) || !res.IsZero() || strings.Join(s.ran, "") != "ab" {
		t.Errorf("RunPhases = %v, %v after %v; want a zero result, boom after ab", res, err, s.ran)
	}
}

// A write that loses the optimistic lock (the object changed while the reconcile ran) is not an
// error: the other writer's change is kept, and the reconcile asks to run again soon. A body
// error beside a conflict is returned alone, without a requeue result next to it.
func TestRunConflictRequeues(t *testing.T) {
	ctx := context.Background()
	h := read(t, newHost(t))
	var observed []string
	kind := hostKind(&observed)
	concurrent := func(ctx context.Context) error {
		other := read(t, h)
		other.Labels = map[string]string{"changed-by": "someone-else"}
		return env.Client.Update(ctx, other)
	}
	status := func() { conditions.False(h, basaltv1.ConditionReady, "Derived", "x") }
	res, err := skeleton.Run(ctx, env.Client, events.NewFakeRecorder(10), kind, h, time.Now, status, func(ctx context.Context) (ctrl.Result, error) {
		h.Status.State = basaltv1.HostStateRegistering
		return ctrl.Result{RequeueAfter: time.Hour}, concurrent(ctx)
	})
	if err != nil || res.RequeueAfter <= 0 || res.RequeueAfter > time.Minute {
		t.Fatalf("Run with a concurrent change = %+v, %v; want no error and a prompt requeue", res, err)
	}
	if got := read(t, h); got.Labels["changed-by"] != "someone-else" || got.Status.State != "" {
		t.Errorf("after the conflict: labels %v, state %q; want the other change kept and this one not written", got.Labels, got.Status.State)
	}

	h = read(t, h)
	failing := errors.New("the outside world said no")
	res, err = skeleton.Run(ctx, env.Client, events.NewFakeRecorder(10), kind, h, time.Now, status, func(ctx context.Context) (ctrl.Result, error) {
		h.Status.State = basaltv1.HostStateRegistering
		if err := concurrent(ctx); err != nil {
			return ctrl.Result{}, err
		}
		return ctrl.Result{RequeueAfter: time.Minute}, failing
	})
	if !errors.Is(err, failing) || !res.IsZero() {
		t.Fatalf("Run with a failing body and a conflict = %+v, %v; want the body's error alone", res, err)
	}
	if strings.Contains(err.Error(), "modified") {
		t.Errorf("error %q carries the conflict", err)
	}
}
