package host

import (
	"context"

	ctrl "sigs.k8s.io/controller-runtime"

	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
)

// stateHandler runs the work of one state and says when to look again. It records facts in the
// scope and may change s.host.Status.State; updateStatus derives the conditions afterwards.
type stateHandler func(r *Reconciler, ctx context.Context, s *scope) ctrl.Result

// stateHandlers maps every HostState to its handler.
var stateHandlers = map[basaltv1.HostState]stateHandler{
	basaltv1.HostStateRegistering:    (*Reconciler).register,
	basaltv1.HostStateInspecting:     (*Reconciler).inspect,
	basaltv1.HostStateAvailable:      (*Reconciler).watchAgent,
	basaltv1.HostStateProvisioning:   (*Reconciler).watchAgent,
	basaltv1.HostStateProvisioned:    (*Reconciler).watchAgent,
	basaltv1.HostStateDeprovisioning: (*Reconciler).watchAgent,
	basaltv1.HostStateError:          (*Reconciler).watchAgent,
}

// register waits for the Host's agent to register, installing it over SSH when the Host is
// reached that way. A network-booted Host registers by itself once PXE exists.
func (r *Reconciler) register(ctx context.Context, s *scope) ctrl.Result {
	if s.host.Status.Agent.LastSeen != nil {
		s.host.Status.State = basaltv1.HostStateInspecting
		return r.inspect(ctx, s)
	}
	if s.host.Spec.SSH == nil {
		return ctrl.Result{}
	}
	return r.installAgent(ctx, s)
}

// inspect waits for the agent's hardware report, then makes the Host Available.
func (r *Reconciler) inspect(ctx context.Context, s *scope) ctrl.Result {
	if s.host.Status.Hardware == nil {
		return ctrl.Result{RequeueAfter: waitForRegistration}
	}
	s.host.Status.State = basaltv1.HostStateAvailable
	return r.watchAgent(ctx, s)
}

// watchAgent looks again when the agent's report would go stale, so AgentConnected turns False
// for a silent agent even when nothing else changes.
func (r *Reconciler) watchAgent(_ context.Context, s *scope) ctrl.Result {
	if s.host.Status.Agent.LastSeen == nil {
		return ctrl.Result{}
	}
	return ctrl.Result{RequeueAfter: s.silentAfter / 2}
}
