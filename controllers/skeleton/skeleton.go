// Package skeleton is the one Reconcile skeleton of Basalt's controllers (Cluster, Machine and
// Host), in the shape Cluster API's machine controller has:
//
//	get the object ─► snapshot it ─► body: finalizer, observe, phases in order (RunPhases)
//	                                   │ any return, early or late, with or without an error
//	                                   ▼
//	                   deferred: status() derives every condition from the scope's facts
//	                             Reconciling / Stalled from them (kstatus, conditions.SetProgress)
//	                             observedGeneration = generation, only when the body succeeded
//	                             one patch of metadata and status (package patch, optimistic lock)
//	                             metrics of the change (before → after)
//	                             a log line and an event when the phase (or state) changed
//
// A controller supplies the body and a status function; the skeleton guarantees that nothing is
// written whose conditions were not recomputed from this reconcile's facts, and that a reconcile
// that failed never claims to have observed the generation it failed on.
package skeleton

import (
	"context"
	"errors"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/basalt-dev/basalt/controllers/conditions"
	"github.com/basalt-dev/basalt/controllers/patch"
)

// Kind describes how the skeleton reads one kind of object. Its fields are required.
type Kind[T client.Object] struct {
	// Name is the kind's name in log lines and events ("Cluster").
	Name string
	// Word names what Phase returns in log lines and events: "phase" or "state". The event's
	// reason is the word capitalised with "Changed" ("PhaseChanged").
	Word string
	// Phase returns the object's phase (or state).
	Phase func(T) string
	// ObservedGeneration returns where the object's status.observedGeneration is kept.
	ObservedGeneration func(T) *int64
	// Observe records metrics of a change: before is the object as it was read, after as it was
	// written.
	Observe func(before, after T, now time.Time)
	// Stalled are the condition reasons of this kind that no retry fixes: an object with a
	// condition that is not True for one of them is Stalled (kstatus), not Reconciling.
	Stalled map[string]bool
}

// Run is one reconcile of obj, which the caller has just read. It runs body and then, whatever
// body returned, calls status (which must derive every condition the controller owns from what
// body recorded), sets observedGeneration when body returned no error, patches what changed, and
// records metrics and the phase-change event. A patch error is joined to body's error; a patch
// of an object that is gone is not an error, nor is a conflict (the object changed meanwhile:
// the reconcile is requeued after conflictRequeue to start again from the new version). With an
// error, the result is empty (the workqueue's backoff applies). now is the clock metrics are
// taken with.
func Run[T client.Object](ctx context.Context, c client.Client, rec events.EventRecorder, k *Kind[T], obj T,
	now func() time.Time, status func(), body func(context.Context) (ctrl.Result, error)) (res ctrl.Result, reterr error) {
	helper := patch.NewHelper(obj, c)
	before := obj.DeepCopyObject().(T)
	oldPhase := k.Phase(obj)
	defer func() {
		defer func() {
			if reterr != nil {
				res = ctrl.Result{} // the error's backoff applies; a result beside it is ignored
			}
		}()
		status()
		if o, ok := any(obj).(conditions.Setter); ok {
			conditions.SetProgress(o, k.Stalled)
		}
		if reterr == nil {
			*k.ObservedGeneration(obj) = obj.GetGeneration()
		}
		if err := helper.Patch(ctx, obj); err != nil && !apierrors.IsNotFound(err) {
			switch {
			case apierrors.IsConflict(err) && reterr == nil:
				// Someone else (the agent API, a user) changed the object since it was read:
				// the optimistic lock kept their change. Nothing is wrong: reconcile again from
				// what is there now, soon, without an error in the log (their change queues a
				// reconcile too).
				ctrl.LoggerFrom(ctx).V(1).Info(k.Name+" changed while it was reconciled; again from the new version", "conflict", err.Error())
				res = Sooner(res, ctrl.Result{RequeueAfter: conflictRequeue})
			case apierrors.IsConflict(err):
				// The body's error says what went wrong; the conflict adds nothing to it.
			default:
				reterr = errors.Join(reterr, err)
			}
			return
		}
		k.Observe(before, obj, now())
		if newPhase := k.Phase(obj); newPhase != oldPhase {
			ctrl.LoggerFrom(ctx).Info(k.Name+" changed "+k.Word, strings.ToLower(k.Name), klog.KObj(obj), "from", oldPhase, "to", newPhase)
			rec.Eventf(obj, nil, corev1.EventTypeNormal, strings.ToUpper(k.Word[:1])+k.Word[1:]+"Changed", "Reconcile",
				"%s moved from %q to %q", k.Name, oldPhase, newPhase)
		}
	}()
	return body(ctx)
}

// conflictRequeue is how soon a reconcile whose write lost the optimistic lock runs again.
const conflictRequeue = time.Second

// Phase is one step of a reconcile, with one signature for all: it reads the world, acts, and
// records what it found in the scope S for the status function.
type Phase[S any] func(ctx context.Context, s *S) (ctrl.Result, error)

// RunPhases runs the phases in order and returns the soonest requeue any of them asked for. The
// first error stops the phases after it and is returned alone (never with a requeue: the
// workqueue's backoff applies).
func RunPhases[S any](ctx context.Context, s *S, phases ...Phase[S]) (ctrl.Result, error) {
	var res ctrl.Result
	for _, p := range phases {
		pr, err := p(ctx, s)
		if err != nil {
			return ctrl.Result{}, err
		}
		res = Sooner(res, pr)
	}
	return res, nil
}

// Sooner keeps the sooner of two requeue requests; a zero Result asks for nothing.
func Sooner(a, b ctrl.Result) ctrl.Result {
	switch {
	case a.IsZero():
		return b
	case b.IsZero():
		return a
	case b.RequeueAfter < a.RequeueAfter:
		return b
	}
	return a
}
