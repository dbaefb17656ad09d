// Package etcdbackup takes snapshots of a workload cluster's etcd and keeps them in
// S3-compatible object storage (spec.etcd.backup, docs/backup.md).
//
// The Reconciler watches Clusters. A snapshot is due when the schedule's latest time has passed
// and has no snapshot yet, or when the basalt.dev/etcd-snapshot annotation holds a value not yet
// served. The manager streams the snapshot from one healthy voting member (a follower when there
// is one, so the leader is not loaded) over the mutual TLS it already uses for membership
// changes, into a temporary file; checks it (the sha256 trailer etcd appends, the database
// readable, its revision); uploads it with its record; deletes scheduled snapshots beyond
// spec.etcd.backup.retention; and lists what the store holds in status.etcdBackup. S3
// credentials never leave the management cluster.
//
// Every decision is taken again from the store's contents on each reconcile: a snapshot's name
// is derived from its schedule time, and a requested one carries its request, so a manager that
// crashes after the upload and before the status write finds the snapshot there and does not
// take it again.
package etcdbackup

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path"
	"slices"
	"time"

	"github.com/robfig/cron/v3"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
	"github.com/basalt-dev/basalt/bootstrap/clusterpki"
	"github.com/basalt-dev/basalt/controllers/etcdcluster"
	"github.com/basalt-dev/basalt/controllers/patch"
	"github.com/basalt-dev/basalt/controllers/pkisecrets"
	"github.com/basalt-dev/basalt/controllers/topology"
)

// Timing.
const (
	// refresh is the longest the controller goes without looking at the store (to list
	// snapshots written or deleted by others and to notice a store that stopped answering).
	refresh = 30 * time.Minute
	// retryAfter is when a failed attempt is tried again.
	retryAfter = time.Minute
	// waitEtcd is when a due snapshot looks for a healthy member again.
	waitEtcd = 20 * time.Second
	// snapshotTimeout bounds one snapshot: stream, check and upload.
	snapshotTimeout = 30 * time.Minute
	// storeTimeout bounds one listing or deletion round.
	storeTimeout = time.Minute
)

// maxStatusSnapshots bounds status.etcdBackup.snapshots.
const maxStatusSnapshots = 32

// maxRequestLen bounds the annotation value (status.etcdBackup.lastRequest).
const maxRequestLen = 64

// Snapshotter is what the controller asks of etcd.
type Snapshotter interface {
	Health(ctx context.Context, endpoint string) (etcdcluster.Health, error)
	Snapshot(ctx context.Context, endpoint, path string) (etcdcluster.SnapshotInfo, error)
	Close() error
}

// Reconciler takes the snapshots of Clusters with spec.etcd.backup.
type Reconciler struct {
	Client client.Client
	// APIReader reads Secrets (credentials and the cluster's PKI) from the API server.
	APIReader client.Reader
	Recorder  events.EventRecorder

	// NewStore opens the store a Cluster names; nil: NewS3.
	NewStore func(spec basaltv1.S3Store, sec *corev1.Secret) (Store, error)
	// NewEtcd connects to a cluster's etcd; nil: etcdcluster.NewClient.
	NewEtcd func(cfg etcdcluster.Config) (Snapshotter, error)
	// EtcdEndpoint is the client URL of the member on a node with this IP; nil:
	// topology.EtcdClientURL. Tests map nodes to the etcd they run on loopback.
	EtcdEndpoint func(ip netip.Addr) string
	// TempDir holds snapshots between etcd and the store; empty: os.TempDir().
	TempDir string
	// Now is the clock; nil: time.Now.
	Now func() time.Time
}

// +kubebuilder:rbac:groups=basalt.dev,resources=clusters,verbs=get;list;watch
// +kubebuilder:rbac:groups=basalt.dev,resources=clusters/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=basalt.dev,resources=machines;hosts,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// SetupWithManager registers the controller. It wakes on spec and annotation changes only (the
// Cluster controller's status writes are not its business) and on its own timers.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager, opts controller.Options) error {
	return ctrl.NewControllerManagedBy(mgr).
		Named("etcdbackup").
		For(&basaltv1.Cluster{}, builder.WithPredicates(predicate.Or(predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{}))).
		WithOptions(opts).
		Complete(r)
}

func (r *Reconciler) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// Folder is where a Cluster's snapshots are kept in its store: <prefix><namespace>/<name>/.
func Folder(c *basaltv1.Cluster) string {
	return c.Spec.Etcd.Backup.S3.Prefix + c.Namespace + "/" + c.Name + "/"
}

// outcome is what one reconcile found, for the condition.
type outcome struct {
	status  metav1.ConditionStatus
	reason  string
	message string
}

// Reconcile implements reconcile.Reconciler.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	c := &basaltv1.Cluster{}
	if err := r.Client.Get(ctx, req.NamespacedName, c); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if c.Spec.Paused || !c.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil
	}
	ph := patch.NewHelper(c, r.Client)
	if c.Spec.Etcd == nil || c.Spec.Etcd.Backup == nil {
		if meta.RemoveStatusCondition(&c.Status.Conditions, basaltv1.ClusterBackupReady) && c.Status.EtcdBackup != nil {
			c.Status.EtcdBackup.NextScheduled = nil
		}
		return ctrl.Result{}, ph.Patch(ctx, c)
	}
	if c.Status.EtcdBackup == nil {
		c.Status.EtcdBackup = &basaltv1.EtcdBackupStatus{}
	}
	res, o := r.reconcile(ctx, c)
	cond := metav1.Condition{Type: basaltv1.ClusterBackupReady, Status: o.status, Reason: o.reason, Message: o.message, ObservedGeneration: c.Generation}
	meta.SetStatusCondition(&c.Status.Conditions, cond)
	if err := ph.Patch(ctx, c); err != nil {
		if apierrors.IsConflict(err) {
			return ctrl.Result{RequeueAfter: time.Second}, nil
		}
		return ctrl.Result{}, err
	}
	return res, nil
}

// reconcile does the work; the caller writes the condition it returns.
func (r *Reconciler) reconcile(ctx context.Context, c *basaltv1.Cluster) (ctrl.Result, outcome) {
	spec := c.Spec.Etcd.Backup
	st := c.Status.EtcdBackup
	now := r.now()

	var sched cron.Schedule
	if spec.Schedule != "" {
		s, err := cron.ParseStandard(spec.Schedule)
		if err != nil {
			st.NextScheduled = nil
			return ctrl.Result{}, outcome{metav1.ConditionFalse, basaltv1.ReasonInvalidSchedule,
				fmt.Sprintf("spec.etcd.backup.schedule %q: %v; use five cron fields such as '0 */6 * * *', or @daily", spec.Schedule, err)}
		}
		sched = s
	}
	store, o := r.store(ctx, c)
	if store == nil {
		return ctrl.Result{RequeueAfter: retryAfter}, o
	}
	folder := Folder(c)
	recs, err := r.list(ctx, store, folder)
	if err != nil {
		return ctrl.Result{RequeueAfter: retryAfter}, outcome{metav1.ConditionFalse, basaltv1.ReasonBackupStoreError, err.Error()}
	}

	// What is due: the request first (a user is waiting for it), then the schedule.
	type due struct {
		name, trigger, request string
		slot                   time.Time
	}
	var todo *due
	if v := c.Annotations[basaltv1.AnnotationEtcdSnapshot]; v != "" && v != st.LastRequest {
		if len(v) > maxRequestLen {
			return ctrl.Result{}, outcome{metav1.ConditionFalse, basaltv1.ReasonSnapshotFailed,
				fmt.Sprintf("annotation %s is %d characters long; use at most %d (e.g. the time)", basaltv1.AnnotationEtcdSnapshot, len(v), maxRequestLen)}
		}
		if i := slices.IndexFunc(recs, func(x Record) bool { return x.Snapshot.Request == v }); i >= 0 {
			st.LastRequest = v // stored by an attempt whose status write was lost
		} else {
			todo = &due{name: requestedName(now, v), trigger: basaltv1.SnapshotRequested, request: v}
		}
	}
	var slot, next time.Time
	if sched != nil {
		slot, next = lastSlot(sched, anchor(c), now)
		st.NextScheduled = &metav1.Time{Time: next}
		if !slot.IsZero() {
			name := slot.UTC().Format("20060102T150405Z") + "-scheduled"
			if slices.ContainsFunc(recs, func(x Record) bool { return x.Snapshot.Name == name }) {
				st.LastScheduled = &metav1.Time{Time: slot}
			} else if todo == nil {
				todo = &due{name: name, trigger: basaltv1.SnapshotScheduled, slot: slot}
			}
		}
	} else {
		st.NextScheduled = nil
	}
	requeue := refresh
	if !next.IsZero() {
		requeue = min(requeue, max(next.Sub(now), time.Second))
	}

	if todo != nil {
		rec, o := r.take(ctx, c, store, folder+todo.name, todo.name, todo.trigger, todo.request)
		if rec == nil {
			listInStatus(st, recs)
			wait := retryAfter
			if o.reason == basaltv1.ReasonWaitingForEtcd {
				wait = waitEtcd
			}
			return ctrl.Result{RequeueAfter: wait}, o
		}
		recs = append(recs, *rec)
		if todo.trigger == basaltv1.SnapshotRequested {
			st.LastRequest = todo.request
		} else {
			st.LastScheduled = &metav1.Time{Time: todo.slot}
		}
		// More may be due (a request and a schedule time at once): come back at once.
		requeue = time.Second
	}
	recs = r.prune(ctx, c, store, folder, recs)
	listInStatus(st, recs)
	if len(st.Snapshots) == 0 {
		msg := "no snapshot was due yet"
		if st.NextScheduled != nil {
			msg += "; the first scheduled one is at " + st.NextScheduled.UTC().Format(time.RFC3339)
		}
		return ctrl.Result{RequeueAfter: requeue}, outcome{metav1.ConditionTrue, basaltv1.ReasonNoSnapshotYet, msg}
	}
	latest := st.Snapshots[0]
	msg := fmt.Sprintf("latest snapshot %s (revision %d, %d bytes) taken %s from Machine %s, stored at %s; %d snapshots in the store",
		latest.Name, latest.Revision, latest.Size, latest.TakenAt.UTC().Format(time.RFC3339), latest.Member, latest.Location, len(recs))
	return ctrl.Result{RequeueAfter: requeue}, outcome{metav1.ConditionTrue, basaltv1.ReasonSnapshotTaken, msg}
}

// requestedName names the snapshot of request v taken at now. The request's hash is part of it:
// two requests served within one second must not overwrite each other's object.
func requestedName(now time.Time, v string) string {
	sum := sha256.Sum256([]byte(v))
	return now.UTC().Format("20060102T150405Z") + "-requested-" + hex.EncodeToString(sum[:4])
}

// anchor is the time the schedule counts from: the last scheduled time served, else the
// Cluster's creation.
func anchor(c *basaltv1.Cluster) time.Time {
	if t := c.Status.EtcdBackup.LastScheduled; t != nil {
		return t.Time
	}
	return c.CreationTimestamp.Time
}

// lastSlot returns the latest time of sched after from and at or before now (zero when none),
// and the first time after now. Times missed while the manager was down collapse into the
// latest one.
func lastSlot(sched cron.Schedule, from, now time.Time) (slot, next time.Time) {
	t := sched.Next(from)
	for i := 0; !t.IsZero() && !t.After(now); i++ {
		slot = t
		t = sched.Next(t)
		if i > 1_000_000 { // a tiny interval over a long outage: skip ahead
			t = sched.Next(now.Add(-time.Second))
			if !t.After(now) {
				slot = t
				t = sched.Next(t)
			}
			break
		}
	}
	return slot, t
}

// store opens the Cluster's store with its credentials Secret.
func (r *Reconciler) store(ctx context.Context, c *basaltv1.Cluster) (Store, outcome) {
	spec := c.Spec.Etcd.Backup.S3
	sec := &corev1.Secret{}
	if err := r.APIReader.Get(ctx, client.ObjectKey{Namespace: c.Namespace, Name: spec.CredentialsSecret}, sec); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, outcome{metav1.ConditionFalse, basaltv1.ReasonBackupCredentialsMissing,
				fmt.Sprintf("Secret %s/%s (spec.etcd.backup.s3.credentialsSecret) does not exist; create it with the keys %s and %s", c.Namespace, spec.CredentialsSecret, SecretAccessKeyID, SecretSecretAccessKey)}
		}
		return nil, outcome{metav1.ConditionFalse, basaltv1.ReasonBackupStoreError, fmt.Sprintf("reading Secret %s: %v", spec.CredentialsSecret, err)}
	}
	newStore := r.NewStore
	if newStore == nil {
		newStore = func(spec basaltv1.S3Store, sec *corev1.Secret) (Store, error) { return NewS3(spec, sec) }
	}
	s, err := newStore(spec, sec)
	if err != nil {
		reason := basaltv1.ReasonBackupStoreError
		if errors.Is(err, ErrCredentials) {
			reason = basaltv1.ReasonBackupCredentialsMissing
		}
		return nil, outcome{metav1.ConditionFalse, reason, err.Error()}
	}
	return s, outcome{}
}

func (r *Reconciler) list(ctx context.Context, store Store, folder string) ([]Record, error) {
	lctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	return store.List(lctx, folder)
}

// listInStatus writes recs into the status, newest first, at most maxStatusSnapshots.
func listInStatus(st *basaltv1.EtcdBackupStatus, recs []Record) {
	snaps := make([]basaltv1.EtcdSnapshot, 0, len(recs))
	for _, rec := range recs {
		snaps = append(snaps, rec.Snapshot)
	}
	slices.SortFunc(snaps, func(a, b basaltv1.EtcdSnapshot) int {
		return cmp.Or(b.TakenAt.Compare(a.TakenAt.Time), cmp.Compare(b.Name, a.Name))
	})
	st.Snapshots = snaps[:min(len(snaps), maxStatusSnapshots)]
	if len(st.Snapshots) == 0 {
		st.Snapshots = nil
	}
}

// prune deletes the scheduled snapshots beyond the retention, oldest first, and returns what is
// left. A deletion that fails is tried again on the next reconcile.
func (r *Reconciler) prune(ctx context.Context, c *basaltv1.Cluster, store Store, folder string, recs []Record) []Record {
	keep := int(cmp.Or(c.Spec.Etcd.Backup.Retention, 7))
	var scheduled []Record
	for _, rec := range recs {
		if rec.Snapshot.Trigger == basaltv1.SnapshotScheduled {
			scheduled = append(scheduled, rec)
		}
	}
	if len(scheduled) <= keep {
		return recs
	}
	slices.SortFunc(scheduled, func(a, b Record) int { return b.Snapshot.TakenAt.Compare(a.Snapshot.TakenAt.Time) })
	dctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	gone := map[string]bool{}
	for _, rec := range scheduled[keep:] {
		if err := store.Delete(dctx, folder+rec.Snapshot.Name); err != nil {
			ctrl.LoggerFrom(ctx).Error(err, "Deleting a snapshot beyond the retention", "snapshot", rec.Snapshot.Name)
			break
		}
		gone[rec.Snapshot.Name] = true
		r.Recorder.Eventf(c, nil, corev1.EventTypeNormal, "SnapshotDeleted", "Retention",
			"deleted scheduled snapshot %s: spec.etcd.backup.retention keeps %d", rec.Snapshot.Name, keep)
	}
	return slices.DeleteFunc(recs, func(x Record) bool { return gone[x.Snapshot.Name] })
}

// member is a voting member a snapshot may come from.
type member struct {
	machine  string
	endpoint string
}

// voters lists the Cluster's control-plane Machines whose etcd member votes and whose agent
// reports etcd healthy, with their client URLs.
func (r *Reconciler) voters(ctx context.Context, c *basaltv1.Cluster) ([]member, error) {
	ml := &basaltv1.MachineList{}
	if err := r.Client.List(ctx, ml, client.InNamespace(c.Namespace), client.MatchingLabels{basaltv1.LabelClusterName: c.Name}); err != nil {
		return nil, err
	}
	endpoint := r.EtcdEndpoint
	if endpoint == nil {
		endpoint = topology.EtcdClientURL
	}
	var out []member
	for i := range ml.Items {
		m := &ml.Items[i]
		if m.Spec.Role != basaltv1.RoleControlPlane || m.Spec.HostRef == nil || m.Status.Etcd == nil || m.Status.Etcd.Learner ||
			!m.DeletionTimestamp.IsZero() || !topology.ComponentHealthy(m, topology.ComponentEtcd) {
			continue
		}
		h := &basaltv1.Host{}
		if err := r.Client.Get(ctx, client.ObjectKey{Namespace: c.Namespace, Name: m.Spec.HostRef.Name}, h); err != nil {
			continue
		}
		ip, err := topology.NodeIP(h)
		if err != nil {
			continue
		}
		out = append(out, member{machine: m.Name, endpoint: endpoint(ip)})
	}
	slices.SortFunc(out, func(a, b member) int { return cmp.Compare(a.machine, b.machine) })
	return out, nil
}

// take streams a snapshot from a healthy voter, checks it and stores it as key. It returns the
// stored record, or nil and why not.
func (r *Reconciler) take(ctx context.Context, c *basaltv1.Cluster, store Store, key, name, trigger, request string) (*Record, outcome) {
	log := ctrl.LoggerFrom(ctx).WithValues("snapshot", name)
	voters, err := r.voters(ctx, c)
	if err != nil {
		return nil, outcome{metav1.ConditionFalse, basaltv1.ReasonSnapshotFailed, err.Error()}
	}
	if len(voters) == 0 {
		return nil, outcome{metav1.ConditionFalse, basaltv1.ReasonWaitingForEtcd,
			fmt.Sprintf("snapshot %s is due, but no voting etcd member is reported healthy", name)}
	}
	stored, err := pkisecrets.Load(ctx, r.APIReader, c)
	if err != nil {
		return nil, outcome{metav1.ConditionFalse, basaltv1.ReasonSnapshotFailed, err.Error()}
	}
	ca, pair := stored.Material[clusterpki.EtcdCA], stored.Material[clusterpki.APIServerEtcdClient]
	if len(ca.Cert) == 0 || len(pair.Cert) == 0 {
		return nil, outcome{metav1.ConditionFalse, basaltv1.ReasonWaitingForEtcd, "the cluster's etcd certificates are not issued yet"}
	}
	eps := make([]string, 0, len(voters))
	for _, v := range voters {
		eps = append(eps, v.endpoint)
	}
	newEtcd := r.NewEtcd
	if newEtcd == nil {
		newEtcd = func(cfg etcdcluster.Config) (Snapshotter, error) { return etcdcluster.NewClient(cfg) }
	}
	cli, err := newEtcd(etcdcluster.Config{Endpoints: eps, CA: ca.Cert, Cert: pair.Cert, Key: pair.Key})
	if err != nil {
		return nil, outcome{metav1.ConditionFalse, basaltv1.ReasonSnapshotFailed, err.Error()}
	}
	defer func() { _ = cli.Close() }()
	sctx, cancel := context.WithTimeout(ctx, snapshotTimeout)
	defer cancel()
	from, ok := pickMember(sctx, cli, voters)
	if !ok {
		return nil, outcome{metav1.ConditionFalse, basaltv1.ReasonWaitingForEtcd,
			fmt.Sprintf("snapshot %s is due, but none of the %d voting etcd members answers healthy", name, len(voters))}
	}
	f, err := os.CreateTemp(r.TempDir, "etcd-snapshot-*.db")
	if err != nil {
		return nil, outcome{metav1.ConditionFalse, basaltv1.ReasonSnapshotFailed, err.Error()}
	}
	tmp := f.Name()
	_ = f.Close()
	defer func() { _ = os.Remove(tmp) }()

	begin, start := r.now(), time.Now()
	info, err := cli.Snapshot(sctx, from.endpoint, tmp)
	if err != nil {
		observeFailure(c)
		r.Recorder.Eventf(c, nil, corev1.EventTypeWarning, "SnapshotFailed", "Snapshot", "snapshot %s from Machine %s: %v", name, from.machine, err)
		return nil, outcome{metav1.ConditionFalse, basaltv1.ReasonSnapshotFailed, fmt.Sprintf("snapshot %s from Machine %s: %v", name, from.machine, err)}
	}
	rec := Record{Format: RecordFormat, ClusterUID: string(c.UID), EtcdVersion: info.Version, Snapshot: basaltv1.EtcdSnapshot{
		Name: name, Location: store.Location(key), TakenAt: metav1.NewTime(begin.UTC().Truncate(time.Second)),
		Size: info.Size, Revision: info.Revision, Keys: info.Keys, SHA256: info.SHA256,
		Member: from.machine, Trigger: trigger, Request: request,
	}}
	if err := store.Put(sctx, key, tmp, rec); err != nil {
		observeFailure(c)
		r.Recorder.Eventf(c, nil, corev1.EventTypeWarning, "SnapshotFailed", "Upload", "snapshot %s: %v", name, err)
		return nil, outcome{metav1.ConditionFalse, basaltv1.ReasonBackupStoreError, fmt.Sprintf("snapshot %s: %v", name, err)}
	}
	took := time.Since(start)
	observeSuccess(c, rec.Snapshot, took)
	log.Info("Stored an etcd snapshot", "member", from.machine, "revision", info.Revision, "bytes", info.Size, "location", rec.Snapshot.Location, "took", took.Round(time.Millisecond))
	r.Recorder.Eventf(c, nil, corev1.EventTypeNormal, "SnapshotStored", trigger,
		"snapshot %s (revision %d, %d bytes) from Machine %s stored at %s in %s", name, info.Revision, info.Size, from.machine, rec.Snapshot.Location, took.Round(time.Millisecond))
	return &rec, outcome{}
}

// pickMember returns a healthy follower, or the healthy leader when no follower is healthy.
func pickMember(ctx context.Context, cli Snapshotter, voters []member) (member, bool) {
	var leader *member
	for i, v := range voters {
		hctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		h, err := cli.Health(hctx, v.endpoint)
		cancel()
		if err != nil || !h.Healthy || h.IsLearner {
			continue
		}
		if h.MemberID != h.Leader {
			return v, true
		}
		leader = &voters[i]
	}
	if leader != nil {
		return *leader, true
	}
	return member{}, false
}

// KeyOf is the object key of a listed snapshot of c: the folder and the snapshot's name.
func KeyOf(c *basaltv1.Cluster, s basaltv1.EtcdSnapshot) string { return path.Join(Folder(c), s.Name) }
