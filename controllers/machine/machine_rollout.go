package machine

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"

	"github.com/basalt-dev/basalt/agents/planstore"
	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
	"github.com/basalt-dev/basalt/bootstrap/plan"
	"github.com/basalt-dev/basalt/controllers/conditions"
	"github.com/basalt-dev/basalt/controllers/topology"
)

// rollingServices are the services a Plan change restarts on one control-plane node at a time:
// two etcd members restarted together lose quorum in a three-member cluster, and API servers
// restarted together stop the API (and the virtual IP has nowhere to go).
var rollingServices = []string{topology.ComponentEtcd, topology.ComponentAPIServer}

// rolloutRequeue is how soon a control-plane Machine whose restart waits for a peer looks again
// (a peer's health flip also wakes it through the peer watch).
const rolloutRequeue = 3 * time.Second

// rollouts hands out, per Cluster, the lock under which a control-plane Machine checks its peers
// and stores a Plan that restarts etcd or kube-apiserver, so that two Machines of one Cluster
// reconciled at once never both pass the check. One manager writes Plans (leader election), so
// a lock in memory is enough; a manager that restarts rebuilds nothing: the check reads the
// stored Plans and what the agents report.
type rollouts struct {
	mu    sync.Mutex
	locks map[types.NamespacedName]*sync.Mutex
}

func (ro *rollouts) lock(c types.NamespacedName) func() {
	ro.mu.Lock()
	if ro.locks == nil {
		ro.locks = map[types.NamespacedName]*sync.Mutex{}
	}
	l, ok := ro.locks[c]
	if !ok {
		l = &sync.Mutex{}
		ro.locks[c] = l
	}
	ro.mu.Unlock()
	l.Lock()
	return l.Unlock
}

// restartedServices lists the rolling services that run under stored and that next would
// restart (their definition or what they read changed). A service that next adds or removes
// is no restart of a running one: a learner's first kube-apiserver, a node fenced by a restore.
func restartedServices(stored, next *plan.Plan) []string {
	var out []string
	for _, name := range rollingServices {
		if !hasService(stored, name) || !hasService(next, name) {
			continue
		}
		h0, err0 := stored.ServiceHash(name)
		h1, err1 := next.ServiceHash(name)
		if err0 != nil || err1 != nil || h0 != h1 {
			out = append(out, name)
		}
	}
	return out
}

func hasService(p *plan.Plan, name string) bool {
	return slices.ContainsFunc(p.Services, func(s plan.Service) bool { return s.Name == name })
}

// rollout is holdRollout's decision about a new control-plane Plan.
type rollout struct {
	// stored is the Plan stored for the Host now and storedHash its hash (nil, "": none).
	stored     *plan.Plan
	storedHash string
	// restarts are the rolling services the new Plan restarts on this node.
	restarts []string
	// wait says why the new Plan must not be stored yet; "" when it may.
	wait string
	// unlock releases the Cluster's rollout lock once the new Plan is stored; never nil.
	unlock func()
}

// holdRollout decides whether the Plan next may replace the one stored for this control-plane
// Machine's Host now. A Plan that restarts etcd or kube-apiserver on this running node waits
// while another control-plane node of the Cluster is in the middle of a change: its agent has
// not applied its stored Plan yet, or one of its rolling services is not healthy again. Peers
// whose agent is not connected do not hold the rollout (their node applies nothing; remediation
// deals with them), nor does anything during an etcd restore, which replaces every member on
// purpose. When next may be stored and restarts something, the Cluster's rollout lock is held
// until unlock.
func (r *Reconciler) holdRollout(ctx context.Context, s *scope, next *plan.Plan) (rollout, error) {
	ro := rollout{unlock: func() {}}
	m, c := s.machine, s.cluster
	if st := c.Status.EtcdRestore; st != nil && st.Phase != basaltv1.RestorePhaseCompleted && st.Phase != basaltv1.RestorePhaseFailed {
		return ro, nil
	}
	var err error
	ro.stored, ro.storedHash, err = planstore.LoadPlan(ctx, r.apiReader(), m.Namespace, s.host.Name)
	if errors.Is(err, planstore.ErrNoPlan) {
		return rollout{unlock: ro.unlock}, nil
	}
	if err != nil {
		return ro, err
	}
	ro.restarts = restartedServices(ro.stored, next)
	if len(ro.restarts) == 0 || !runsHealthy(m, ro.stored) {
		// Nothing restarts; or this node's etcd or kube-apiserver is down already, so its
		// restart takes nothing away, and waiting could wait forever: certificates that
		// expired while the manager was away leave every member unhealthy until each one
		// gets its new Plan.
		return ro, nil
	}
	unlock := r.rollouts.lock(types.NamespacedName{Namespace: c.Namespace, Name: c.Name})
	busy, err := r.rolloutBusy(ctx, s)
	if err != nil || busy != "" {
		unlock()
		ro.wait = busy
		return ro, err
	}
	ro.unlock = unlock
	return ro, nil
}

// rolloutBusy says which other control-plane node of the Cluster is in the middle of a change,
// or "" when none is.
func (r *Reconciler) rolloutBusy(ctx context.Context, s *scope) (string, error) {
	for _, p := range s.peers {
		pm := p.Machine
		if pm.Name == s.machine.Name || pm.Spec.Role != basaltv1.RoleControlPlane || pm.Spec.HostRef == nil {
			continue
		}
		if !conditions.IsTrue(pm, basaltv1.MachineAgentConnected) {
			continue
		}
		ps, hash, err := planstore.LoadPlan(ctx, r.apiReader(), pm.Namespace, pm.Spec.HostRef.Name)
		if errors.Is(err, planstore.ErrNoPlan) {
			continue
		}
		if err != nil {
			return "", err
		}
		if pm.Status.PlanHash != hash || pm.Status.ApplyingPlanHash != "" {
			return fmt.Sprintf("Machine %s has not applied its Plan %s yet", pm.Name, short(hash)), nil
		}
		var bad []string
		for _, name := range rollingServices {
			if !hasService(ps, name) || topology.ComponentHealthy(pm, name) {
				continue
			}
			msg := "not reported yet"
			if i := slices.IndexFunc(pm.Status.Components, func(c basaltv1.ComponentHealth) bool { return c.Name == name }); i >= 0 {
				msg = orDefault(pm.Status.Components[i].Message, "unhealthy")
			}
			bad = append(bad, name+": "+msg)
		}
		if len(bad) > 0 {
			return fmt.Sprintf("Machine %s is not healthy (%s)", pm.Name, clip(strings.Join(bad, "; "), 500)), nil
		}
	}
	return "", nil
}

// runsHealthy says whether every rolling service of Plan p is reported healthy on m.
func runsHealthy(m *basaltv1.Machine, p *plan.Plan) bool {
	for _, name := range rollingServices {
		if hasService(p, name) && !topology.ComponentHealthy(m, name) {
			return false
		}
	}
	return true
}

// rolloutMessage is the UpToDate condition's message of a Machine whose Plan waits.
func rolloutMessage(restarts []string, busy string) string {
	return fmt.Sprintf("the next Plan restarts %s, which restart on one control-plane node at a time: waiting, %s",
		strings.Join(restarts, " and "), busy)
}
