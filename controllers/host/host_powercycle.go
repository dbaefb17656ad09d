package host

import (
	"context"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
)

// Power cycle on request. Whoever wants a Host power-cycled (Cluster remediation, an operator)
// writes a request id as the value of the annotation basalt.dev/power-cycle; the Host controller
// power-cycles the Host through its BMC once per distinct value and records the value it
// answered in status.lastPowerCycle, so the requester can tell its request was done:
//
//	value == status.lastPowerCycle.request, error empty   done, at status.lastPowerCycle.time
//	value == status.lastPowerCycle.request, error set     refused: the Host has no spec.bmc
//	value != status.lastPowerCycle.request                pending (or the BMC call fails and is
//	                                                      retried: event PowerCycleFailed and the
//	                                                      BMCReachable condition say why)
//
// A Host is reset at most once per value. The record goes out with the reconcile's status patch;
// until a reconcile sees it stored, BMCAccess remembers the power cycle done, so a patch lost to a
// conflict (the agent's reports write the status too) or a cache that lags is answered by writing
// the record again, never by a second reset. With nothing remembered (a first attempt, or after a
// manager restart) the request is checked against the API server, not the cache, before the BMC
// is called.

// Backoff of a failing power-cycle request: 10 s, doubling, at most 5 minutes.
const (
	powerCycleRetryMin = 10 * time.Second
	powerCycleRetryMax = 5 * time.Minute
)

// errPowerCycleNoBMC is the answer recorded for a request on a Host without spec.bmc.
const errPowerCycleNoBMC = "the Host has no spec.bmc: Basalt cannot power-cycle it; reset the machine by hand, or add spec.bmc"

// maxPowerCycleRequest is the longest request id recorded (status.lastPowerCycle.request); a
// longer one is ignored, with an event.
const maxPowerCycleRequest = 64

// powerCycleBackoff is what BMCAccess remembers of the last request of a Host until a reconcile
// sees its record stored: the BMC call failed (retry the call after next), or the request was
// answered (write the record again if it is not stored, never reset again).
type powerCycleBackoff struct {
	request  string
	failures int
	next     time.Time
	// done is the answer given, nil while the BMC call fails.
	done *basaltv1.PowerCycleRecord
	// ignored is true for a request id too long to record: it was reported and is not acted on.
	ignored bool
}

// powerCycleOnRequest acts on the Host's basalt.dev/power-cycle annotation when its value has not
// been answered yet (see above), and says when to look again: after the backoff of a failed call.
func (r *Reconciler) powerCycleOnRequest(ctx context.Context, h *basaltv1.Host) ctrl.Result {
	key := client.ObjectKeyFromObject(h)
	retries := &r.bmcAccess().powerCycleRetry
	req := h.Annotations[basaltv1.AnnotationPowerCycle]
	if req == "" || powerCycleAnswered(h, req) {
		retries.Delete(key)
		return ctrl.Result{}
	}
	log := ctrl.LoggerFrom(ctx).WithValues("host", klog.KObj(h), "request", req)
	var b *powerCycleBackoff
	if v, ok := retries.Load(key); ok && v.(*powerCycleBackoff).request == req {
		b = v.(*powerCycleBackoff)
		if b.ignored {
			return ctrl.Result{}
		}
		if b.done != nil {
			h.Status.LastPowerCycle = b.done.DeepCopy()
			return ctrl.Result{}
		}
		if wait := time.Until(b.next); wait > 0 {
			return ctrl.Result{RequeueAfter: wait}
		}
	}
	if len(req) > maxPowerCycleRequest {
		retries.Store(key, &powerCycleBackoff{request: req, ignored: true})
		r.Recorder.Eventf(h, nil, corev1.EventTypeWarning, "PowerCycleFailed", "PowerCycle",
			"Power cycle request ignored: the value of %s is longer than %d characters; write the time of the request (RFC 3339)",
			basaltv1.AnnotationPowerCycle, maxPowerCycleRequest)
		return ctrl.Result{}
	}
	// Nothing remembered (a restarted manager): the cache may lag behind the record of this very
	// request; ask the API server before resetting a machine.
	live := &basaltv1.Host{}
	if err := r.APIReader.Get(ctx, key, live); err != nil {
		log.Info("Reading the Host before power-cycling it failed", "err", err.Error())
		return ctrl.Result{RequeueAfter: powerCycleRetryMin}
	}
	if live.Annotations[basaltv1.AnnotationPowerCycle] != req || powerCycleAnswered(live, req) {
		// This reconcile works on an old copy; the newer one's watch event brings it back.
		return ctrl.Result{RequeueAfter: time.Second}
	}
	if h.Spec.BMC == nil {
		log.Info("Refusing to power-cycle a Host without spec.bmc", "reason", "PowerCycleFailed")
		r.Recorder.Eventf(h, nil, corev1.EventTypeWarning, "PowerCycleFailed", "PowerCycle",
			"Power cycle requested (%s=%s) but %s", basaltv1.AnnotationPowerCycle, req, errPowerCycleNoBMC)
		r.answerPowerCycle(h, &powerCycleBackoff{request: req,
			done: &basaltv1.PowerCycleRecord{Request: req, Time: metav1.Now(), Error: errPowerCycleNoBMC}})
		return ctrl.Result{}
	}
	if b == nil {
		b = &powerCycleBackoff{request: req}
	}
	if err := r.powerCycle(ctx, h); err != nil {
		b.failures++
		wait := powerCycleRetryMax
		if b.failures <= 6 {
			wait = min(powerCycleRetryMin<<(b.failures-1), powerCycleRetryMax)
		}
		b.next = time.Now().Add(wait)
		retries.Store(key, b)
		r.Recorder.Eventf(h, nil, corev1.EventTypeWarning, "PowerCycleFailed", "PowerCycle",
			"Power-cycling the Host through its BMC failed (request %s, attempt %d), trying again in %s: %v", req, b.failures, wait, err)
		return ctrl.Result{RequeueAfter: wait}
	}
	r.Recorder.Eventf(h, nil, corev1.EventTypeNormal, "PowerCycled", "PowerCycle",
		"Power-cycled the Host through its %s BMC (request %s)", h.Spec.BMC.Protocol, req)
	b.done = &basaltv1.PowerCycleRecord{Request: req, Time: metav1.Now()}
	r.answerPowerCycle(h, b)
	return ctrl.Result{}
}

// answerPowerCycle records b.done in h's status, for the reconcile's patch, and remembers it until
// a reconcile sees it stored.
func (r *Reconciler) answerPowerCycle(h *basaltv1.Host, b *powerCycleBackoff) {
	h.Status.LastPowerCycle = b.done.DeepCopy()
	r.bmcAccess().powerCycleRetry.Store(client.ObjectKeyFromObject(h), b)
}

// powerCycleAnswered says whether h's status records an answer to request req.
func powerCycleAnswered(h *basaltv1.Host, req string) bool {
	return h.Status.LastPowerCycle != nil && h.Status.LastPowerCycle.Request == req
}
