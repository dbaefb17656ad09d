package cluster

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"

	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
	"github.com/basalt-dev/basalt/bootstrap/clusterpki"
	"github.com/basalt-dev/basalt/bootstrap/components"
	"github.com/basalt-dev/basalt/controllers/etcdcluster"
	"github.com/basalt-dev/basalt/controllers/topology"
)

// SnapshotStager hands a stored snapshot to the agent that restores it (etcdbackup.Stager).
type SnapshotStager interface {
	// Stage reads the snapshot back from the Cluster's store, checks it and makes it fetchable
	// by sha256 from the agent API; it returns that sha256 and the size.
	Stage(ctx context.Context, c *basaltv1.Cluster, s basaltv1.EtcdSnapshot) (string, int64, error)
}

const (
	// restoreRequeue: a restore is in progress.
	restoreRequeue = 5 * time.Second
	// restoreRetry: fetching the snapshot failed; try again.
	restoreRetry = 30 * time.Second
	// maxRestoreRequest bounds the annotation's value.
	maxRestoreRequest = 256
)

// restoreEpoch names the etcd cluster a restore request makes: the same request of the same
// Cluster always gets the same epoch, so a manager that crashed half way through switching the
// Machines' records finds them switched to the epoch it computes again.
func restoreEpoch(c *basaltv1.Cluster, request string) string {
	h := sha256.Sum256([]byte(string(c.UID) + "/" + request))
	return "r" + hex.EncodeToString(h[:4])
}

// restoreSource is the source part of a request: the value without a "#..." suffix.
func restoreSource(request string) string {
	src, _, _ := strings.Cut(request, "#")
	return src
}

// reconcileRestore serves the basalt.dev/etcd-restore annotation (docs/restore.md). A new value
// is accepted (or refused, phase Failed, with nothing changed); a snapshot is fetched and
// checked (Fetching); then the chosen Machine's etcd record is replaced by one of a new epoch
// that seeds its data from the snapshot or from its own former database, and every other
// control-plane Machine's record is cleared (Restoring): their members belong to the cluster
// before the restore, and they join the restored one as new learners once it runs, with empty
// data folders of the new epoch. The restore is Completed when the chosen Machine's etcd
// answers with the member ID the restore gives it. While it is not, restoring says so and the
// membership, remediation and upgrade phases leave etcd alone.
func (r *Reconciler) reconcileRestore(ctx context.Context, s *scope, cp []node) (res ctrl.Result, restoring bool, err error) {
	c := s.cluster
	if v, ok := c.Annotations[basaltv1.AnnotationEtcdRestore]; ok && v != "" && (c.Status.EtcdRestore == nil || c.Status.EtcdRestore.Request != truncate(v, maxRestoreRequest)) {
		r.acceptRestore(ctx, s, cp, v)
		if st := c.Status.EtcdRestore; st.Phase == basaltv1.RestorePhaseFetching || st.Phase == basaltv1.RestorePhaseRestoring {
			// Recorded by this reconcile's status patch before any Machine is touched, so a
			// crash or a conflict here never leaves two choices of seed in one epoch.
			s.etcdRestoring, s.etcdReason, s.etcdMessage = true, basaltv1.ReasonEtcdRestoring, st.Message
			return ctrl.Result{RequeueAfter: time.Second}, true, nil
		}
	}
	st := c.Status.EtcdRestore
	if st == nil || (st.Phase != basaltv1.RestorePhaseFetching && st.Phase != basaltv1.RestorePhaseRestoring) {
		return ctrl.Result{}, false, nil
	}
	s.etcdRestoring = true
	s.etcdReason = basaltv1.ReasonEtcdRestoring
	// Machines being deleted leave the old cluster at once (their members are not restored), so
	// their deletion does not wait on a membership change that cannot happen.
	for _, n := range cp {
		if n.machine.Status.Etcd != nil && !n.machine.DeletionTimestamp.IsZero() {
			if err := r.patchMachineStatus(ctx, n.machine, func(m *basaltv1.Machine) { m.Status.Etcd, m.Status.EtcdMemberID = nil, "" }); err != nil {
				res, err := conflictRequeue(err)
				return res, true, err
			}
		}
	}
	seed := slices.IndexFunc(cp, func(n node) bool { return n.machine.Name == st.Machine && n.machine.DeletionTimestamp.IsZero() })
	if seed < 0 && st.Snapshot == nil {
		r.failRestore(s, fmt.Sprintf("Machine %s, whose member data was to be restored, is gone or being deleted; restore from a snapshot instead", st.Machine))
		return ctrl.Result{}, false, nil
	}
	if seed < 0 {
		// A snapshot goes onto any control-plane Machine: the chosen one is gone (or none had a
		// connected agent yet), so choose again, and fetch again for it.
		seed = slices.IndexFunc(cp, func(n node) bool { return n.machine.DeletionTimestamp.IsZero() && topology.AgentConnected(n.host) })
		if seed < 0 {
			st.Machine, st.Phase = "", basaltv1.RestorePhaseFetching
			st.Message = "waiting for a control-plane Machine with a connected agent to restore onto (delete the Machines whose Hosts are gone: the Cluster replaces them on free Hosts)"
			s.etcdMessage = st.Message
			return ctrl.Result{RequeueAfter: restoreRetry}, true, nil
		}
		st.Machine, st.Phase = cp[seed].machine.Name, basaltv1.RestorePhaseFetching
	}
	seedRec := cp[seed].machine.Status.Etcd
	switched := seedRec != nil && seedRec.Epoch == st.Epoch && seedRec.Restore != nil
	var want *basaltv1.MachineEtcdRestore
	if st.Snapshot != nil && (!switched || !seedRec.Restore.Done) {
		// Staged on every pass until the seed has its data: the manager's cache may have lost
		// the file (a restart on an emptyDir), and staging again makes it private again.
		if r.Snapshots == nil {
			r.failRestore(s, "this manager cannot restore snapshots: it runs without the agent API")
			return ctrl.Result{}, false, nil
		}
		sha, size, err := r.Snapshots.Stage(ctx, c, *st.Snapshot)
		if err != nil {
			st.Message = fmt.Sprintf("fetching snapshot %s: %v (retried in %s)", st.Snapshot.Name, err, restoreRetry)
			s.etcdMessage = st.Message
			return ctrl.Result{RequeueAfter: restoreRetry}, true, nil
		}
		want = &basaltv1.MachineEtcdRestore{SnapshotSHA256: sha, SnapshotSize: size}
	}
	if st.Phase == basaltv1.RestorePhaseFetching {
		// Recorded before the fence, so the Machines taken out see the restore when they build
		// their fenced Plans.
		st.Phase, st.Message = basaltv1.RestorePhaseRestoring, fmt.Sprintf("snapshot %s fetched and checked", st.Snapshot.Name)
		s.etcdMessage = st.Message
		return ctrl.Result{RequeueAfter: time.Second}, true, nil
	}
	if !switched {
		// Fence first: the other members leave the old cluster (their Plans stop etcd and the
		// API server) before the seed starts the new one, so no API server serves the old data
		// beside the restored one.
		if err := r.fenceOthers(ctx, s, cp, seed); err != nil {
			res, err := conflictRequeue(err)
			return res, true, err
		}
		if running := stillRunningEtcd(cp, seed, r.now()); len(running) > 0 {
			st.Message = fmt.Sprintf("waiting for Machines %s to stop their etcd members of the cluster before the restore", strings.Join(running, ", "))
			s.etcdMessage = st.Message
			return ctrl.Result{RequeueAfter: restoreRequeue}, true, nil
		}
		if err := r.switchSeed(ctx, s, cp[seed], want); err != nil {
			res, err := conflictRequeue(err)
			return res, true, err
		}
	}
	done, msg := r.restored(ctx, s, cp[seed])
	if !done {
		st.Message = msg
		s.etcdMessage = msg
		return ctrl.Result{RequeueAfter: restoreRequeue}, true, nil
	}
	if err := r.patchMachineStatus(ctx, cp[seed].machine, func(m *basaltv1.Machine) {
		if m.Status.Etcd != nil && m.Status.Etcd.Restore != nil {
			m.Status.Etcd.Restore.Done = true
		}
	}); err != nil {
		res, err := conflictRequeue(err)
		return res, true, err
	}
	now := metav1.NewTime(r.now().Truncate(time.Second))
	st.Phase, st.CompletedAt = basaltv1.RestorePhaseCompleted, &now
	st.Message = fmt.Sprintf("etcd runs on Machine %s from %s; the other control-plane Machines join it as new members", st.Machine, st.Source)
	ctrl.LoggerFrom(ctx).Info("Restored etcd", "cluster", klog.KObj(c), "machine", st.Machine, "source", st.Source, "epoch", st.Epoch,
		"took", now.Sub(st.StartedAt.Time).String())
	r.Recorder.Eventf(c, cp[seed].machine, corev1.EventTypeNormal, "EtcdRestored", "RestoreEtcd", "%s", st.Message)
	return ctrl.Result{RequeueAfter: time.Second}, true, nil
}

// acceptRestore records request v in status.etcdRestore: Fetching (a snapshot), Restoring
// (member data) or Failed with what to change.
func (r *Reconciler) acceptRestore(ctx context.Context, s *scope, cp []node, v string) {
	c := s.cluster
	now := metav1.NewTime(r.now().Truncate(time.Second))
	st := &basaltv1.EtcdRestoreStatus{Request: v, StartedAt: &now}
	c.Status.EtcdRestore = st
	fail := func(format string, args ...any) {
		st.Phase, st.Message = basaltv1.RestorePhaseFailed, fmt.Sprintf(format, args...)
		ctrl.LoggerFrom(ctx).Info("Refused an etcd restore", "cluster", klog.KObj(c), "request", v, "reason", st.Message)
		r.Recorder.Eventf(c, nil, corev1.EventTypeWarning, "EtcdRestoreRefused", "RestoreEtcd", "%s", st.Message)
	}
	if len(v) > maxRestoreRequest {
		st.Request = truncate(v, maxRestoreRequest)
		fail("the value of %s is longer than %d characters", basaltv1.AnnotationEtcdRestore, maxRestoreRequest)
		return
	}
	st.Source, st.Epoch = restoreSource(v), restoreEpoch(c, v)
	active := slices.DeleteFunc(slices.Clone(cp), func(n node) bool { return !n.machine.DeletionTimestamp.IsZero() })
	if m, ok := strings.CutPrefix(st.Source, basaltv1.EtcdRestoreMemberPrefix); ok {
		i := slices.IndexFunc(active, func(n node) bool { return n.machine.Name == m })
		switch {
		case i < 0:
			fail("%s names no bound control-plane Machine of this Cluster", st.Source)
			return
		case active[i].machine.Status.Etcd == nil:
			fail("Machine %s has no etcd member, so no data to restore from", m)
			return
		}
		st.Machine, st.Phase = m, basaltv1.RestorePhaseRestoring
		st.Message = fmt.Sprintf("Machine %s starts a new etcd cluster from its own data", m)
	} else {
		var snap *basaltv1.EtcdSnapshot
		if b := c.Status.EtcdBackup; b != nil {
			if i := slices.IndexFunc(b.Snapshots, func(x basaltv1.EtcdSnapshot) bool { return x.Name == st.Source }); i >= 0 {
				snap = b.Snapshots[i].DeepCopy()
			}
		}
		if snap == nil {
			fail("snapshot %q is not listed in status.etcdBackup.snapshots; name one listed there, or member/<machine> to restore from a member's data", st.Source)
			return
		}
		st.Snapshot, st.Phase = snap, basaltv1.RestorePhaseFetching
		if i := slices.IndexFunc(active, func(n node) bool { return topology.AgentConnected(n.host) }); i >= 0 {
			st.Machine = active[i].machine.Name
		}
		st.Message = fmt.Sprintf("fetching snapshot %s (revision %d)", snap.Name, snap.Revision)
	}
	ctrl.LoggerFrom(ctx).Info("Accepted an etcd restore", "cluster", klog.KObj(c), "request", v, "source", st.Source, "machine", st.Machine, "epoch", st.Epoch)
	r.Recorder.Eventf(c, nil, corev1.EventTypeNormal, "EtcdRestoreStarted", "RestoreEtcd", "Restoring etcd from %s onto Machine %s (epoch %s)", st.Source, st.Machine, st.Epoch)
}

func (r *Reconciler) failRestore(s *scope, msg string) {
	st := s.cluster.Status.EtcdRestore
	st.Phase, st.Message = basaltv1.RestorePhaseFailed, msg
	s.etcdRestoring = false
	r.Recorder.Eventf(s.cluster, nil, corev1.EventTypeWarning, "EtcdRestoreFailed", "RestoreEtcd", "%s", msg)
}

// fenceOthers clears the etcd record of every control-plane Machine but the seed that is not a
// member of the restore's epoch yet (or that was chosen as a seed before): their Plans then run
// no etcd and no API server (the Machine controller's fence during a restore), and they join the
// restored cluster as learners once it runs. Idempotent.
func (r *Reconciler) fenceOthers(ctx context.Context, s *scope, cp []node, seed int) error {
	st := s.cluster.Status.EtcdRestore
	for i, n := range cp {
		rec := n.machine.Status.Etcd
		if i == seed || rec == nil || (rec.Epoch == st.Epoch && rec.Restore == nil) {
			continue
		}
		if err := r.patchMachineStatus(ctx, n.machine, func(m *basaltv1.Machine) { m.Status.Etcd, m.Status.EtcdMemberID = nil, "" }); err != nil {
			return err
		}
		ctrl.LoggerFrom(ctx).Info("Took a Machine out of etcd for the restore", "machine", klog.KObj(n.machine), "epoch", st.Epoch)
	}
	return nil
}

// fenceReportWindow is how recently an agent must have reported for the fence to wait for it:
// a live agent reports every 15 s (and when an apply ends), while a host that is gone would be
// waited for until its agent counts as silent (2 minutes).
const fenceReportWindow = 30 * time.Second

// stillRunningEtcd lists the other control-plane Machines whose agents, reporting, still report
// an etcd service: their fence Plan is not applied yet. An agent that has not reported within
// fenceReportWindow is not waited for (its host is gone, or it applies the fence when it comes
// back; its member could not join the restored cluster anyway: another folder, another token).
func stillRunningEtcd(cp []node, seed int, now time.Time) []string {
	var out []string
	for i, n := range cp {
		last := n.host.Status.Agent.LastSeen
		if i == seed || !n.machine.DeletionTimestamp.IsZero() || last == nil || now.Sub(last.Time) > fenceReportWindow {
			continue
		}
		if slices.ContainsFunc(n.machine.Status.Components, func(c basaltv1.ComponentHealth) bool { return c.Name == topology.ComponentEtcd }) {
			out = append(out, n.machine.Name)
		}
	}
	return out
}

// switchSeed gives the seed Machine the record of the member that starts the restored cluster:
// from the snapshot (want), or from its own former data (want nil).
func (r *Reconciler) switchSeed(ctx context.Context, s *scope, seed node, want *basaltv1.MachineEtcdRestore) error {
	st := s.cluster.Status.EtcdRestore
	restore := want
	if restore == nil {
		rec := seed.machine.Status.Etcd
		if rec == nil {
			return fmt.Errorf("machine %s has no etcd record to restore from", seed.machine.Name)
		}
		restore = &basaltv1.MachineEtcdRestore{FromMemberData: true, DataEpoch: rec.Epoch}
	}
	now := metav1.NewTime(r.now().Truncate(time.Second))
	if err := r.patchMachineStatus(ctx, seed.machine, func(m *basaltv1.Machine) {
		m.Status.Etcd = &basaltv1.MachineEtcd{Join: false, AddedAt: &now, Epoch: st.Epoch, Restore: restore}
		m.Status.EtcdMemberID = ""
	}); err != nil {
		return err
	}
	ctrl.LoggerFrom(ctx).Info("Recorded the member that starts the restored etcd", "machine", klog.KObj(seed.machine), "epoch", st.Epoch)
	return nil
}

// truncate cuts s to at most n bytes at a character boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// restored says whether the seed's etcd is the restored member: it answers on its client URL
// with the member ID the restore's token gives its peer URL (the member the host ran before has
// another ID, even with the same name and URL, so a stale health report cannot complete it).
func (r *Reconciler) restored(ctx context.Context, s *scope, seed node) (bool, string) {
	st := s.cluster.Status.EtcdRestore
	waiting := fmt.Sprintf("Machine %s restores etcd from %s (epoch %s)", st.Machine, st.Source, st.Epoch)
	if fs := seed.machine.Status.FailedSteps; len(fs) > 0 {
		waiting += fmt.Sprintf("; its agent reports %s failed: %s", fs[0].Step, fs[0].Error)
	}
	// etcd is asked directly, not through the agent's health report: the report of the restarted
	// member may come a heartbeat (15 s) later, and the member ID is the proof either way.
	if s.material == nil {
		return false, waiting
	}
	ip := netip.MustParseAddr(seed.ip)
	ca, pair := s.material[clusterpki.EtcdCA], s.material[clusterpki.APIServerEtcdClient]
	cli, err := r.etcdClient()(etcdcluster.Config{Endpoints: []string{topology.EtcdClientURL(ip)}, CA: ca.Cert, Cert: pair.Cert, Key: pair.Key})
	if err != nil {
		return false, waiting
	}
	defer func() { _ = cli.Close() }()
	ectx, cancel := context.WithTimeout(ctx, etcdcluster.DefaultProbeTimeout)
	defer cancel()
	ms, err := cli.Members(ectx)
	if err != nil {
		return false, waiting
	}
	want := etcdcluster.MemberIDOf([]string{topology.EtcdPeerURL(ip)}, components.EtcdClusterToken(s.cluster.Name, st.Epoch))
	return slices.ContainsFunc(ms, func(m etcdcluster.Member) bool { return m.ID == want }), waiting
}

// clusterEpoch is the epoch of the cluster's current etcd: the one its voting members' records
// share ("" before any restore). A Machine added as a learner joins it.
func clusterEpoch(cp []node) string {
	for _, n := range cp {
		if e := n.machine.Status.Etcd; e != nil && !e.Learner && n.machine.DeletionTimestamp.IsZero() {
			return e.Epoch
		}
	}
	return ""
}
