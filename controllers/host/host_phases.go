package host

import (
	ctrl "sigs.k8s.io/controller-runtime"

	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
)

// stateHandler runs the work of one state and says when to look again. It records facts in the
// scope and may change s.host.Status.State; updateStatus derives the conditions afterwards.
type stateHandler func(s *scope) ctrl.Result

// stateHandlers maps every HostState to its handler. States whose work is not built yet wait
// honestly: they never move on by themselves.
var stateHandlers = map[basaltv1.HostState]stateHandler{
	basaltv1.HostStateRegistering:    waitForAgent,
	basaltv1.HostStateInspecting:     waitForAgent,
	basaltv1.HostStateAvailable:      steady,
	basaltv1.HostStateProvisioning:   steady,
	basaltv1.HostStateProvisioned:    steady,
	basaltv1.HostStateDeprovisioning: steady,
	basaltv1.HostStateError:          steady,
}

// waitForAgent is where a Host stays until its agent registers. Installing the agent over SSH and
// booting it over PXE are not built yet, so nothing moves a Host on from here today; the watch on
// the Host brings it back when something changes.
func waitForAgent(_ *scope) ctrl.Result { return ctrl.Result{} }

// steady states need no periodic work from the Host controller.
func steady(_ *scope) ctrl.Result { return ctrl.Result{} }
