package host

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"

	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
	"github.com/basalt-dev/basalt/bootstrap/plan"
	"github.com/basalt-dev/basalt/controllers/conditions"
)

// A Host goes back to the pool only when its agent confirmed that nothing of its former consumer
// is left (wipeConfirmed): the Machine's deletion has the agent apply the empty Plan, but it
// releases the Host after a bounded wait, or at once when the agent is silent (a powered-off
// machine must not block a Cluster's deletion). Such a Host waits in Deprovisioning while its
// agent is connected and wiping, and in Unwiped while it is silent; it is never Available with
// another cluster's etcd data and kubelet state on its disk. basalt.dev/confirm-wiped is the
// operator's override.

// wipeConfirmed says the agent is connected and runsNoPlan: a report of a silent agent is no
// confirmation of what happened since.
func wipeConfirmed(s *scope) bool {
	return agentConnected(s) && runsNoPlan(s.host)
}

// runsNoPlan says the agent's last report has no Plan of a consumer applied (none since it started
// from a blank state, or the empty Plan) and nothing of Basalt's is recorded on the Host's disk.
func runsNoPlan(h *basaltv1.Host) bool {
	if h.Status.Provisioning != nil {
		return false
	}
	hash := h.Status.Agent.PlanHash
	return hash == "" || hash == plan.Empty(h.Name).Hash()
}

// deprovision waits until the consumer is gone (the Machine controller has the agent apply the
// empty Plan before it lets go), then until the agent confirms the wipe: a network-booted Host's
// disk wiped and the agent back in RAM (wipeDisk), the empty Plan applied. Then the Host is
// Available again. A Host whose agent is silent goes to Unwiped.
func (r *Reconciler) deprovision(ctx context.Context, s *scope) ctrl.Result {
	h := s.host
	if h.Status.ConsumerRef != nil {
		return ctrl.Result{RequeueAfter: waitForConsumer}
	}
	diskDone := r.wipeDisk(ctx, s)
	switch {
	case diskDone && wipeConfirmed(s):
		s.wiped = basaltv1.ReasonWipeConfirmed
		h.Status.State = basaltv1.HostStateAvailable
		r.Recorder.Eventf(h, nil, corev1.EventTypeNormal, basaltv1.ReasonWipeConfirmed, "Deprovision",
			"The agent confirmed that nothing of the former consumer is left on the Host; it is Available")
		return r.available(ctx, s)
	case !agentConnected(s):
		h.Status.State = basaltv1.HostStateUnwiped
		ctrl.LoggerFrom(ctx).Info("Host released without a confirmed wipe; keeping it out of the pool", "host", klog.KObj(h), "reason", basaltv1.ReasonWipeNotConfirmed)
		r.Recorder.Eventf(h, nil, corev1.EventTypeWarning, basaltv1.ReasonWipeNotConfirmed, "Deprovision", "%s", unwipedMessage(h))
		return r.watchAgent(ctx, s)
	}
	return ctrl.Result{RequeueAfter: waitForConsumer}
}

// unwiped keeps a Host whose wipe nobody confirmed out of the pool. Its agent coming back (the
// machine powered on: it boots its disk or the network, and the manager serves it the empty Plan)
// takes it back to Deprovisioning; basalt.dev/confirm-wiped makes it Available at once.
func (r *Reconciler) unwiped(ctx context.Context, s *scope) ctrl.Result {
	if agentConnected(s) || s.host.Status.ConsumerRef != nil {
		s.host.Status.State = basaltv1.HostStateDeprovisioning
		return r.deprovision(ctx, s)
	}
	// The agent's next report (a status write) brings the Host back.
	return ctrl.Result{}
}

// overrideWipe acts on basalt.dev/confirm-wiped. On a released Host that waits for its wipe
// (Deprovisioning without a consumer, or Unwiped) it makes the Host Available and forgets the root
// image on its disk; in any other state there is nothing to confirm and the request is refused.
// Each value is answered once, in status.lastWipeConfirmation, and the annotation stays: a value
// first seen while the Host waits for no wipe never vouches for a later release. reconcile runs
// it before the state's handler.
func (r *Reconciler) overrideWipe(ctx context.Context, s *scope) {
	h := s.host
	value := h.Annotations[basaltv1.AnnotationConfirmWiped]
	if value == "" || (h.Status.LastWipeConfirmation != nil && h.Status.LastWipeConfirmation.Request == value) {
		return
	}
	record := &basaltv1.RequestRecord{Request: clip(value, 64), Time: metav1.Now()}
	h.Status.LastWipeConfirmation = record
	waiting := h.Status.State == basaltv1.HostStateUnwiped || h.Status.State == basaltv1.HostStateDeprovisioning
	if !waiting || h.Status.ConsumerRef != nil {
		record.Error = fmt.Sprintf("the Host was %s: it waited for no wipe", h.Status.State)
		ctrl.LoggerFrom(ctx).Info("Refusing a wipe confirmation: the Host waits for no wipe", "host", klog.KObj(h), "state", h.Status.State, "value", value)
		r.Recorder.Eventf(h, nil, corev1.EventTypeNormal, "ConfirmWipedIgnored", "Deprovision",
			"Ignored %s=%s: the Host is %s, it waits for no wipe (a new value is needed once it does)", basaltv1.AnnotationConfirmWiped, value, h.Status.State)
		return
	}
	h.Status.Provisioning = nil
	h.Status.State = basaltv1.HostStateAvailable
	s.wiped = basaltv1.ReasonWipeOverridden
	ctrl.LoggerFrom(ctx).Info("Wipe confirmed by an operator", "host", klog.KObj(h), "value", value, "reason", basaltv1.ReasonWipeOverridden)
	r.Recorder.Eventf(h, nil, corev1.EventTypeWarning, basaltv1.ReasonWipeOverridden, "Deprovision",
		"An operator confirmed the wipe (%s=%s) that the agent never confirmed; the Host is Available", basaltv1.AnnotationConfirmWiped, value)
}

// unwipedMessage says why h is Unwiped and what brings it back.
func unwipedMessage(h *basaltv1.Host) string {
	last := "never"
	if t := h.Status.Agent.LastSeen; t != nil {
		last = "last at " + t.UTC().Format("2006-01-02T15:04:05Z")
	}
	return fmt.Sprintf("the Host was released while its agent was silent (it reported %s), so nothing confirms that the former node's services, "+
		"etcd data and files are gone: it stays out of the pool until its agent comes back and wipes it (power the machine on), "+
		"or annotate %s=<now> (basaltctl host confirm-wiped %s) once you erased it yourself", last, basaltv1.AnnotationConfirmWiped, h.Name)
}

// setWiped derives basaltv1.HostWiped; it says whether the condition is present. It is False while
// the Host waits for its wipe, True from the confirmation until the next claim, absent on a Host
// in use and on one never released.
func setWiped(s *scope) bool {
	h := s.host
	switch h.Status.State {
	case basaltv1.HostStateDeprovisioning:
		msg := "the Host's Machine is letting it go: its agent stops the node's services and removes what Basalt wrote (the empty Plan)"
		if h.Status.ConsumerRef == nil {
			msg = fmt.Sprintf("waiting for the agent to report the empty Plan applied (it reports %s)", shortHash(h.Status.Agent.PlanHash))
			if s.diskReason != "" {
				msg = s.diskMessage
			}
			msg += fmt.Sprintf("; if it cannot, look at its log (journalctl -u basalt-agent), or annotate %s once you erased the machine yourself", basaltv1.AnnotationConfirmWiped)
		}
		conditions.False(h, basaltv1.HostWiped, basaltv1.ReasonWiping, msg)
	case basaltv1.HostStateUnwiped:
		conditions.False(h, basaltv1.HostWiped, basaltv1.ReasonWipeNotConfirmed, unwipedMessage(h))
	case basaltv1.HostStateProvisioning, basaltv1.HostStateProvisioned:
		meta.RemoveStatusCondition(&h.Status.Conditions, basaltv1.HostWiped)
		return false
	default:
		switch s.wiped {
		case basaltv1.ReasonWipeConfirmed:
			conditions.True(h, basaltv1.HostWiped, s.wiped, "the agent reported that it runs no Plan of a former consumer and nothing of Basalt's is on the disk")
		case basaltv1.ReasonWipeOverridden:
			conditions.True(h, basaltv1.HostWiped, s.wiped, "an operator confirmed the wipe ("+basaltv1.AnnotationConfirmWiped+"); the agent never did")
		default:
			return meta.FindStatusCondition(h.Status.Conditions, basaltv1.HostWiped) != nil
		}
	}
	return true
}

// shortHash is the first 12 characters of a Plan hash, or "no Plan applied".
func shortHash(h string) string {
	if h == "" {
		return "no Plan applied"
	}
	return "Plan " + h[:min(12, len(h))]
}
