package cluster

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
	"github.com/basalt-dev/basalt/bootstrap/clusterpki"
	"github.com/basalt-dev/basalt/controllers/etcdcluster"
	"github.com/basalt-dev/basalt/controllers/topology"
)

// Requeue delays of the etcd phase.
const (
	// etcdStepRequeue: a membership change is in flight (a learner joining or catching up).
	etcdStepRequeue = 5 * time.Second
	// etcdWaitRequeue: etcd is not reachable yet, or waits for a Machine.
	etcdWaitRequeue = 15 * time.Second
	// etcdHealthRequeue: the membership is what is desired; look at member health again.
	etcdHealthRequeue = time.Minute
	// etcdTimeout bounds one etcd reconcile (observation, one change).
	etcdTimeout = 30 * time.Second
)

// NewEtcdClient is the default Reconciler.EtcdClient: a client over go.etcd.io/etcd/client/v3.
func NewEtcdClient(cfg etcdcluster.Config) (etcdcluster.Client, error) {
	return etcdcluster.NewClient(cfg)
}

// reconcileEtcd forms and grows the cluster's etcd, one membership change per reconcile.
//
// The first control-plane Machine that is ready for a Plan is chosen to initialise etcd
// (status.etcd.join false): it starts a one-member cluster. Every later control-plane Machine is
// added by etcdcluster.Reconcile as a learner once it is ready, and its join list is recorded on
// it (status.etcd.initialCluster) before its Plan runs etcd; when the learner has caught up it is
// promoted (status.etcd.learner false) and its Plan then runs kube-apiserver too. What is
// recorded on a Machine never changes afterwards, except that a record whose member etcd no
// longer has (removed after a join timeout) is cleared.
func (r *Reconciler) reconcileEtcd(ctx context.Context, s *scope) (ctrl.Result, error) {
	cp, _ := s.boundNodes()
	if res, restoring, err := r.reconcileRestore(ctx, s, cp); restoring || err != nil {
		return res, err
	}
	var active []node
	recorded := false
	for _, n := range cp {
		if n.machine.Status.Etcd != nil {
			recorded = true
		}
		if n.machine.DeletionTimestamp.IsZero() {
			active = append(active, n)
		}
	}
	if !recorded {
		return r.chooseInitialMember(ctx, s, active)
	}
	if s.material == nil {
		s.etcdReason, s.etcdMessage = basaltv1.ReasonWaitingForEtcd, "the cluster's certificates are not issued, so the manager cannot talk to etcd"
		return ctrl.Result{}, nil
	}
	var endpoints []string
	var starting []string
	for _, n := range cp {
		e := n.machine.Status.Etcd
		if e == nil || e.Learner {
			continue
		}
		if topology.ComponentHealthy(n.machine, topology.ComponentEtcd) {
			endpoints = append(endpoints, topology.EtcdClientURL(netip.MustParseAddr(n.ip)))
		} else {
			starting = append(starting, n.machine.Name)
		}
	}
	if len(endpoints) == 0 {
		s.etcdReason, s.etcdMessage = basaltv1.ReasonWaitingForEtcd,
			fmt.Sprintf("waiting for the agent of Machine %s to report etcd healthy", starting[0])
		return ctrl.Result{RequeueAfter: etcdWaitRequeue}, nil
	}
	ca, pair := s.material[clusterpki.EtcdCA], s.material[clusterpki.APIServerEtcdClient]
	cli, err := r.etcdClient()(etcdcluster.Config{Endpoints: endpoints, CA: ca.Cert, Cert: pair.Cert, Key: pair.Key})
	if err != nil {
		s.etcdReason, s.etcdMessage = basaltv1.ReasonEtcdUnreachable, err.Error()
		return ctrl.Result{RequeueAfter: etcdWaitRequeue}, nil
	}
	defer func() { _ = cli.Close() }()

	var desired []etcdcluster.DesiredMember
	for _, n := range active {
		d := etcdcluster.DesiredMember{
			Name:    n.machine.Name,
			PeerURL: topology.EtcdPeerURL(netip.MustParseAddr(n.ip)),
			Ready:   n.machine.Status.Etcd != nil || readyForEtcd(n),
		}
		if e := n.machine.Status.Etcd; e != nil && e.Learner && e.AddedAt != nil {
			d.JoiningSince = e.AddedAt.Time
		}
		desired = append(desired, d)
	}
	ectx, cancel := context.WithTimeout(ctx, etcdTimeout)
	defer cancel()
	a, err := etcdcluster.Reconcile(ctrl.LoggerInto(ectx, ctrl.LoggerFrom(ctx)), cli, desired)
	s.etcdAction = &a
	if err != nil {
		transient := errors.Is(err, etcdcluster.ErrLearnerNotReady) || errors.Is(err, etcdcluster.ErrUnhealthy)
		if transient {
			s.etcdReason, s.etcdMessage = a.Reason, fmt.Sprintf("%s; etcd refused it for now: %v", a.Message, err)
			if a.Reason == "" {
				s.etcdReason = basaltv1.ReasonWaitingForEtcd
			}
			return ctrl.Result{RequeueAfter: etcdStepRequeue}, nil
		}
		s.etcdReason, s.etcdMessage = basaltv1.ReasonEtcdUnreachable, fmt.Sprintf(
			"etcd at %v: %v (if most members are gone for good, restore with the basalt.dev/etcd-restore annotation: docs/restore.md)", endpoints, err)
		return ctrl.Result{RequeueAfter: etcdWaitRequeue}, nil
	}
	if a.Changes() {
		r.Recorder.Eventf(s.cluster, nil, corev1.EventTypeNormal, "EtcdMembershipChanged", string(a.Kind), "%s", a.Message)
	}
	if res, err := r.recordMembers(ctx, s, cp, a); err != nil || !res.IsZero() {
		return res, err
	}
	if m, ok := cli.(etcdcluster.Maintainer); ok && (a.Kind == etcdcluster.None || a.Kind == etcdcluster.Wait) {
		if res, done := r.maintainEtcd(ctx, s, cli, m, cp); done {
			return res, nil
		}
	}
	switch a.Kind {
	case etcdcluster.None:
		s.etcdReady = true
		s.etcdMessage = a.Message
		return ctrl.Result{RequeueAfter: etcdHealthRequeue}, nil
	case etcdcluster.Promote, etcdcluster.Remove:
		s.etcdReason, s.etcdMessage = a.Reason, a.Message
		return ctrl.Result{RequeueAfter: time.Second}, nil
	default:
		s.etcdReason, s.etcdMessage = a.Reason, a.Message
		return ctrl.Result{RequeueAfter: etcdStepRequeue}, nil
	}
}

// etcdMaintenanceTimeout bounds one maintenance step (a defragmentation rewrites a member's
// whole database).
const etcdMaintenanceTimeout = 5 * time.Minute

// maintainEtcd makes at most one etcd hygiene step (etcdcluster.NextMaintenance: recovery from
// a NOSPACE alarm, or a routine defragmentation of a fragmented member) among the voters of cp,
// while no membership change is in flight. It reports what it did in an event and, while the
// cluster refuses writes, in EtcdReady; done says the reconcile should end here with res.
func (r *Reconciler) maintainEtcd(ctx context.Context, s *scope, cli etcdcluster.Client, m etcdcluster.Maintainer, cp []node) (res ctrl.Result, done bool) {
	var voters []string
	for _, n := range cp {
		if e := n.machine.Status.Etcd; e != nil && !e.Learner && n.machine.DeletionTimestamp.IsZero() {
			voters = append(voters, topology.EtcdClientURL(netip.MustParseAddr(n.ip)))
		}
	}
	if len(voters) == 0 {
		return ctrl.Result{}, false
	}
	v, _ := r.etcdMaintenance.LoadOrStore(s.cluster.UID, &etcdcluster.MaintenanceState{})
	state := v.(*etcdcluster.MaintenanceState)
	mctx, cancel := context.WithTimeout(ctx, etcdMaintenanceTimeout)
	defer cancel()
	a, err := etcdcluster.Maintain(mctx, cli, m, voters, etcdcluster.MaintenancePolicy{Quota: topology.EtcdQuota(s.cluster)}, state, r.now())
	log := ctrl.LoggerFrom(ctx)
	switch {
	case err != nil:
		log.Error(err, "etcd maintenance step failed", "step", a.Kind, "reason", a.Reason)
		r.Recorder.Eventf(s.cluster, nil, corev1.EventTypeWarning, "EtcdMaintenanceFailed", string(a.Kind), "%s: %v", a.Message, err)
	case a.Kind == etcdcluster.MaintainNone:
		return ctrl.Result{}, false
	case a.Kind != etcdcluster.MaintainWait:
		log.Info("etcd maintenance", "step", a.Kind, "reason", a.Reason, "message", a.Message)
		r.Recorder.Eventf(s.cluster, nil, corev1.EventTypeNormal, "EtcdMaintenance", string(a.Kind), "%s", a.Message)
	}
	if a.Reason == "SpaceExceeded" || a.Reason == "SpaceRecovered" {
		s.etcdReason, s.etcdMessage = basaltv1.ReasonEtcdSpaceExceeded, a.Message
		return ctrl.Result{RequeueAfter: etcdStepRequeue}, true
	}
	return ctrl.Result{}, false
}

// readyForEtcd says whether a control-plane Machine may be given an etcd member now: its agent is
// connected and the Machine controller has everything for its Plan but the etcd record (it says
// so with PlanApplied reason WaitingForEtcdMember). A Machine that could not run etcd at once
// would hold etcd's single learner slot for nothing.
func readyForEtcd(n node) bool {
	if !topology.AgentConnected(n.host) {
		return false
	}
	c := meta.FindStatusCondition(n.machine.Status.Conditions, basaltv1.MachinePlanApplied)
	return c != nil && c.Reason == basaltv1.ReasonWaitingForEtcdMember
}

// chooseInitialMember records, on the oldest control-plane Machine ready for etcd, that it
// initialises the cluster. The Machines are read again from the API server first: the choice is
// made once per cluster, and a record written a moment ago may not be in the cache yet.
func (r *Reconciler) chooseInitialMember(ctx context.Context, s *scope, active []node) (ctrl.Result, error) {
	var first *node
	for i := range active {
		if readyForEtcd(active[i]) {
			first = &active[i]
			break
		}
	}
	if first == nil {
		s.etcdReason, s.etcdMessage = basaltv1.ReasonWaitingForEtcd,
			"no control-plane Machine is ready to run etcd yet (its Host bound and its agent connected, its certificates issued)"
		return ctrl.Result{}, nil
	}
	ml := &basaltv1.MachineList{}
	if err := r.apiReader().List(ctx, ml, client.InNamespace(s.cluster.Namespace), client.MatchingLabels{basaltv1.LabelClusterName: s.cluster.Name}); err != nil {
		return ctrl.Result{}, err
	}
	for i := range ml.Items {
		if ml.Items[i].Status.Etcd != nil {
			return ctrl.Result{RequeueAfter: time.Second}, nil // the cache is behind: look again
		}
	}
	now := metav1.NewTime(r.now().Truncate(time.Second))
	if err := r.patchMachineStatus(ctx, first.machine, func(m *basaltv1.Machine) {
		m.Status.Etcd = &basaltv1.MachineEtcd{Join: false, AddedAt: &now}
	}); err != nil {
		return conflictRequeue(err)
	}
	ctrl.LoggerFrom(ctx).Info("Chose the Machine that initialises etcd", "cluster", klog.KObj(s.cluster), "machine", klog.KObj(first.machine), "reason", "NoEtcdMember")
	r.Recorder.Eventf(s.cluster, first.machine, corev1.EventTypeNormal, "EtcdInitialising", "ChooseInitialMember", "Machine %s initialises etcd", first.machine.Name)
	s.etcdReason, s.etcdMessage = basaltv1.ReasonWaitingForEtcd, fmt.Sprintf("Machine %s initialises etcd", first.machine.Name)
	return ctrl.Result{}, nil
}

// recordMembers brings each control-plane Machine's etcd record in line with the membership
// after action a: a Machine whose learner exists but is not recorded (just added, or added by a
// reconcile that crashed before recording it) gets its join list; a promoted learner is recorded
// as a voter; a joined Machine whose member was removed, and a Machine being deleted whose member
// is gone, lose their record (the latter's deletion waits for that). The member ID is kept in
// status.etcdMemberID.
func (r *Reconciler) recordMembers(ctx context.Context, s *scope, cp []node, a etcdcluster.Action) (ctrl.Result, error) {
	now := metav1.NewTime(r.now().Truncate(time.Second))
	for _, n := range cp {
		self := etcdcluster.DesiredMember{Name: n.machine.Name, PeerURL: topology.EtcdPeerURL(netip.MustParseAddr(n.ip))}
		idx := slices.IndexFunc(a.Members, func(m etcdcluster.Member) bool { return slices.Contains(m.PeerURLs, self.PeerURL) })
		rec := n.machine.Status.Etcd
		deleting := !n.machine.DeletionTimestamp.IsZero()
		var mutate func(*basaltv1.Machine)
		switch {
		case idx < 0 && rec != nil && (deleting || (rec.Join && n.machine.Status.EtcdMemberID != "")):
			mutate = func(m *basaltv1.Machine) { m.Status.Etcd, m.Status.EtcdMemberID = nil, "" }
		case idx < 0 || deleting:
			continue
		case rec == nil:
			member := a.Members[idx]
			initial, err := etcdcluster.InitialCluster(a.Members, self)
			if err != nil {
				s.etcdReason, s.etcdMessage = basaltv1.ReasonWaitingForEtcd, err.Error()
				continue
			}
			var peers []basaltv1.EtcdPeer
			for _, p := range initial {
				peers = append(peers, basaltv1.EtcdPeer{Name: p.Name, PeerURL: p.PeerURL})
			}
			epoch := clusterEpoch(cp)
			mutate = func(m *basaltv1.Machine) {
				m.Status.Etcd = &basaltv1.MachineEtcd{Join: true, InitialCluster: peers, Learner: member.IsLearner, AddedAt: &now, Epoch: epoch}
				m.Status.EtcdMemberID = member.HexID()
			}
		default:
			member := a.Members[idx]
			if (rec.Learner == member.IsLearner || member.IsLearner) && n.machine.Status.EtcdMemberID == member.HexID() {
				continue
			}
			mutate = func(m *basaltv1.Machine) {
				if m.Status.Etcd != nil && !member.IsLearner {
					m.Status.Etcd.Learner = false
				}
				m.Status.EtcdMemberID = member.HexID()
			}
		}
		if err := r.patchMachineStatus(ctx, n.machine, mutate); err != nil {
			return conflictRequeue(err)
		}
		ctrl.LoggerFrom(ctx).Info("Recorded the etcd member of a Machine", "machine", klog.KObj(n.machine), "action", a.String())
	}
	return ctrl.Result{}, nil
}

// patchMachineStatus applies mutate to m's status and patches it with an optimistic lock, so a
// Machine changed since it was read is never overwritten: the caller gets a conflict and looks
// again.
func (r *Reconciler) patchMachineStatus(ctx context.Context, m *basaltv1.Machine, mutate func(*basaltv1.Machine)) error {
	before := m.DeepCopy()
	after := m.DeepCopy()
	mutate(after)
	if err := r.Client.Status().Patch(ctx, after, client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{})); err != nil {
		return err
	}
	after.DeepCopyInto(m)
	return nil
}

// conflictRequeue turns a conflict into a quick requeue (the cache is behind) and returns any
// other error.
func conflictRequeue(err error) (ctrl.Result, error) {
	if apierrors.IsConflict(err) {
		return ctrl.Result{RequeueAfter: 200 * time.Millisecond}, nil
	}
	return ctrl.Result{}, err
}
