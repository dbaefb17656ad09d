package host

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"

	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
)

// stateHandler runs the work of one state and says when to look again. It records facts in the
// scope and may change s.host.Status.State; updateStatus derives the conditions afterwards.
// A handler that moves the Host on runs the next state's handler itself, so one reconcile goes
// as far as the facts allow.
type stateHandler func(r *Reconciler, ctx context.Context, s *scope) ctrl.Result

// stateHandlers maps every HostState to its handler.
var stateHandlers = map[basaltv1.HostState]stateHandler{
	basaltv1.HostStateRegistering:    (*Reconciler).register,
	basaltv1.HostStateInspecting:     (*Reconciler).inspect,
	basaltv1.HostStateAvailable:      (*Reconciler).available,
	basaltv1.HostStateProvisioning:   (*Reconciler).provision,
	basaltv1.HostStateProvisioned:    (*Reconciler).provisioned,
	basaltv1.HostStateDeprovisioning: (*Reconciler).deprovision,
	basaltv1.HostStateUnwiped:        (*Reconciler).unwiped,
	basaltv1.HostStateError:          (*Reconciler).watchAgent,
}

// defaultInspectTimeout is how long a registered agent may take to report hardware facts.
const defaultInspectTimeout = 10 * time.Minute

// waitForConsumer is how often a Host waiting for its Machine to let go looks again (the Machine
// watch usually brings it back sooner).
const waitForConsumer = 10 * time.Second

// register waits for the Host's agent to register, installing it over SSH when the Host is
// reached that way. A network-booted Host registers by itself: its agent comes with its PXE
// script (NetBoot).
func (r *Reconciler) register(ctx context.Context, s *scope) ctrl.Result {
	if s.host.Status.Agent.LastSeen != nil {
		s.host.Status.State = basaltv1.HostStateInspecting
		return r.inspect(ctx, s)
	}
	if s.host.Spec.SSH == nil {
		if s.host.Spec.Boot != nil && s.host.Spec.BMC != nil {
			return r.netBootViaBMC(ctx, s)
		}
		return ctrl.Result{}
	}
	return r.installAgent(ctx, s)
}

// netBootRegisterTimeout is how long a network-booted Host powered on through its BMC has to
// register before it is booted from the network again.
const netBootRegisterTimeout = 5 * time.Minute

// netBootViaBMC boots a network-booted Host that has a BMC from PXE (one-time boot device, then
// power on or cycle) so its agent comes up and registers; once per attempt, the attempt's time
// kept in status.agent.installedAt (the agent is "installed" by its PXE script). A Host whose
// agent has not registered after netBootRegisterTimeout is booted again.
func (r *Reconciler) netBootViaBMC(ctx context.Context, s *scope) ctrl.Result {
	h := s.host
	if at := h.Status.Agent.InstalledAt; at != nil && time.Since(at.Time) < netBootRegisterTimeout {
		s.installed = true
		return ctrl.Result{RequeueAfter: waitForRegistration}
	}
	if err := r.powerOnForProvisioning(ctx, h); err != nil {
		r.Recorder.Eventf(h, nil, corev1.EventTypeWarning, "NetBootFailed", "PowerOn", "Booting the Host from the network through its BMC failed: %v", err)
		return ctrl.Result{RequeueAfter: retryInstall}
	}
	// Record the attempt in a write of its own: were it lost with a conflicting final patch, the
	// next reconcile would boot the machine again.
	if err := r.recordContact(ctx, h, nil, false, true); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "Recording the network boot", "host", klog.KObj(h))
		return ctrl.Result{RequeueAfter: waitForRegistration}
	}
	s.installed = true
	r.Recorder.Eventf(h, nil, corev1.EventTypeNormal, "NetBooting", "PowerOn", "Booting the Host from the network through its BMC; waiting for its agent to register")
	return ctrl.Result{RequeueAfter: waitForRegistration}
}

// inspect waits for the agent's hardware report, then makes the Host Available once it is
// accepted (spec.accepted; a discovered Host waits here until an operator accepts it).
func (r *Reconciler) inspect(ctx context.Context, s *scope) ctrl.Result {
	h := s.host
	if h.Status.Hardware == nil {
		// An agent that registered but never reports hardware (its inspection fails) puts the
		// Host in Error after InspectTimeout, counted from when this manager first saw it
		// waiting (a restart starts the count again: never early). basalt.dev/reprovision
		// restarts it.
		timeout := r.InspectTimeout
		if timeout <= 0 {
			timeout = defaultInspectTimeout
		}
		first, _ := r.inspectingSince.LoadOrStore(h.UID, time.Now())
		if waited := time.Since(first.(time.Time)); waited >= timeout {
			r.inspectingSince.Delete(h.UID)
			h.Status.State = basaltv1.HostStateError
			h.Status.ErrorMessage = fmt.Sprintf("the agent registered but reported no hardware facts within %s: look at its log (journalctl -u basalt-agent), "+
				"then annotate %s=<now> (basaltctl host reprovision %s) to inspect it again", timeout, basaltv1.AnnotationReprovision, h.Name)
			r.Recorder.Eventf(h, nil, corev1.EventTypeWarning, basaltv1.ReasonInspectionFailed, "Inspect", "%s", h.Status.ErrorMessage)
			return r.watchAgent(ctx, s)
		} else if left := timeout - waited; left < waitForRegistration {
			return ctrl.Result{RequeueAfter: left}
		}
		return ctrl.Result{RequeueAfter: waitForRegistration}
	}
	r.inspectingSince.Delete(h.UID)
	if !s.host.Spec.IsAccepted() {
		return r.watchAgent(ctx, s)
	}
	if !runsNoPlan(h) {
		// The agent still runs a Plan no Machine stands for (a Host reprovisioned, or one
		// another manager used): it is served the empty Plan; wait until it has applied it.
		s.host.Status.State = basaltv1.HostStateDeprovisioning
		return r.deprovision(ctx, s)
	}
	s.host.Status.State = basaltv1.HostStateAvailable
	return r.available(ctx, s)
}

// available waits for a Machine to claim the Host (the Cluster or Machine controller writes
// status.consumerRef with an optimistic lock; only Available, unclaimed Hosts are claimed, so a
// Host is never claimed twice). A claimed Host moves to Provisioning. An Available Host whose
// acceptance is withdrawn goes back to Inspecting, out of the pool.
func (r *Reconciler) available(ctx context.Context, s *scope) ctrl.Result {
	h := s.host
	switch {
	case h.Status.ConsumerRef != nil:
		h.Status.State = basaltv1.HostStateProvisioning
		return r.provision(ctx, s)
	case !h.Spec.IsAccepted():
		h.Status.State = basaltv1.HostStateInspecting
	}
	return r.watchAgent(ctx, s)
}

// provision brings the claimed Host to Provisioned. Nothing is written to an SSH Host's disk, so
// it is Provisioned as soon as its agent is connected: the Machine's Plan does the rest. A
// network-booted Host with a root image is Provisioned once its agent runs from the image on its
// disk (provisionDisk). A Host released before that goes to Deprovisioning.
func (r *Reconciler) provision(ctx context.Context, s *scope) ctrl.Result {
	if released(s) {
		s.host.Status.State = basaltv1.HostStateDeprovisioning
		return r.deprovision(ctx, s)
	}
	if !agentConnected(s) {
		// The agent's next report (a status write) brings the Host back.
		return ctrl.Result{RequeueAfter: waitForRegistration}
	}
	if r.wantsDisk(s.host) || s.host.Status.Provisioning != nil {
		return r.provisionDisk(ctx, s)
	}
	s.host.Status.State = basaltv1.HostStateProvisioned
	return r.watchAgent(ctx, s)
}

// provisioned keeps the Host with its Machine until the Machine goes.
func (r *Reconciler) provisioned(ctx context.Context, s *scope) ctrl.Result {
	if released(s) {
		s.host.Status.State = basaltv1.HostStateDeprovisioning
		return r.deprovision(ctx, s)
	}
	return r.watchAgent(ctx, s)
}

// released says the Host's Machine let it go or is being deleted.
func released(s *scope) bool {
	return s.host.Status.ConsumerRef == nil || s.consumerDeleting
}

// agentConnected says the agent reported within its deadline.
func agentConnected(s *scope) bool {
	last := s.host.Status.Agent.LastSeen
	return last != nil && time.Since(last.Time) <= s.silentAfter
}

// watchAgent looks again when the agent's report would go stale, so AgentConnected turns False
// for a silent agent even when nothing else changes.
func (r *Reconciler) watchAgent(_ context.Context, s *scope) ctrl.Result {
	if s.host.Status.Agent.LastSeen == nil {
		return ctrl.Result{}
	}
	return ctrl.Result{RequeueAfter: s.silentAfter / 2}
}
