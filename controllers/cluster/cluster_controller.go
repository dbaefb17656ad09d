package cluster

import (
	"context"
	"sync"
	"time"

	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
	"github.com/basalt-dev/basalt/bootstrap/clusterpki"
	"github.com/basalt-dev/basalt/controllers/artifactsource"
	"github.com/basalt-dev/basalt/controllers/etcdcluster"
	"github.com/basalt-dev/basalt/controllers/metrics"
	"github.com/basalt-dev/basalt/controllers/skeleton"
	"github.com/basalt-dev/basalt/controllers/workload"
)

// waitRequeue is how often a Cluster waiting on the outside world (Hosts to become Available,
// Machines to go away) is looked at again when no watch event brings it back.
const waitRequeue = 15 * time.Second

// deleteStallAfter is how long a Cluster may wait for its Machines to go before its Ready
// condition says the deletion stalled and names the Machine holding it.
const deleteStallAfter = 12 * time.Minute

// Reconciler reconciles Cluster objects.
type Reconciler struct {
	// Client reads through the manager's cache and writes to the API server.
	Client client.Client
	// Recorder emits events on phase changes and on Machines created or deleted.
	Recorder events.EventRecorder
	// APIReader reads straight from the API server: Secrets (never cached by the manager) and
	// the Machines when a pod range or the initial etcd member is chosen, where a lagging cache
	// could hand out one range twice. Nil means Client.
	APIReader client.Reader
	// Workload gives clients of workload clusters; nil leaves the workload cluster alone.
	Workload *workload.Clients
	// EtcdClient connects to a workload cluster's etcd; nil means NewEtcdClient.
	EtcdClient func(etcdcluster.Config) (etcdcluster.Client, error)
	// Now is the clock certificates are issued and renewed by; nil means time.Now.
	Now func() time.Time
	// Artifacts finds the artifact sets of versions (the manager's own, or a Cluster's mirror).
	// An upgrade to a version without a set moves no Machine; a manager without local sets and a
	// Cluster without a mirror are not checked. Nil has no set.
	Artifacts *artifactsource.Source
	// Snapshots hands stored etcd snapshots to the agent that restores one; nil refuses
	// restores from snapshots (restores from a member's data still work).
	Snapshots SnapshotStager

	// workloadDone remembers, by Cluster UID, that the workload cluster got what
	// reconcileWorkload writes.
	workloadDone sync.Map
	// etcdMaintenance holds, by Cluster UID, the *etcdcluster.MaintenanceState of its etcd
	// hygiene (compaction and defragmentation done).
	etcdMaintenance sync.Map
	// accessServed holds, by Cluster UID, the basalt.dev/admin-access-requested value last
	// served.
	accessServed sync.Map
}

// +kubebuilder:rbac:groups=basalt.dev,resources=clusters,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=basalt.dev,resources=clusters/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=basalt.dev,resources=clusters/finalizers,verbs=update
// +kubebuilder:rbac:groups=basalt.dev,resources=machines,verbs=get;list;watch;create;delete
// +kubebuilder:rbac:groups=basalt.dev,resources=machines,verbs=update;patch
// +kubebuilder:rbac:groups=basalt.dev,resources=hosts,verbs=get;list;watch
// +kubebuilder:rbac:groups=basalt.dev,resources=hosts/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=basalt.dev,resources=machines/status,verbs=get;update;patch
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;create;update;delete;deletecollection
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
// +kubebuilder:rbac:groups="",resources=configmaps,verbs=get

// scope is what one reconcile of a Cluster knows. Phases fill it in; updateStatus reads it.
type scope struct {
	// cluster is the object being reconciled; changes to it are patched at the end.
	cluster *basaltv1.Cluster
	// machines are the Cluster's Machines, grouped by role and pool.
	machines machineSet
	// hosts are all Hosts in the Cluster's namespace.
	hosts []basaltv1.Host
	// shortfall counts, per group, how many more Available Hosts matching its selector are
	// needed to bind every Machine of the group.
	shortfall map[groupKey]int32
	// selectorErrors says, per group, why its host selector could not be used.
	selectorErrors map[groupKey]string
	// failingHosts lists, per group short of Hosts, the matching Hosts that cannot become
	// Available and why.
	failingHosts map[groupKey][]hostProblem

	// endpoint is the control-plane endpoint in use, nil while none is known.
	endpoint *basaltv1.APIEndpoint
	// material is the cluster's PKI as stored, nil when it could not be ensured.
	material clusterpki.Material
	// encryption is the stored encryption key set, read by reconcileCertificates (Write.Secret
	// nil when it did not get that far).
	encryption clusterpki.EncryptionKeys
	// pkiReason and pkiMessage say why the PKI is not ready (reason empty when it is), or
	// describe it when it is.
	pkiReason, pkiMessage string
	// podCIDRProblem says why a bound Machine has no pod range.
	podCIDRProblem string
	// etcdReady is true when every desired control-plane Machine is a healthy etcd voter;
	// etcdReason and etcdMessage say why not, or describe it.
	etcdReady               bool
	etcdReason, etcdMessage string
	// etcdRestoring is true while an etcd restore runs (status.etcdRestore): the membership,
	// remediation and upgrade phases leave etcd and the control plane alone.
	etcdRestoring bool
	// etcdAction is the last membership action, nil when etcd was not reached.
	etcdAction *etcdcluster.Action
	// workloadProblem says why the workload cluster could not be set up.
	workloadProblem string
	// addonsRan is true when reconcileAddons looked at the add-ons this reconcile; addonsReady
	// says they are all applied and DNS answers, else addonsReason and addonsMessage say why not.
	addonsRan                   bool
	addonsReady                 bool
	addonsReason, addonsMessage string
	// upgradeReason and upgradeMessage say how the rollout to spec.version goes; empty when no
	// Machine is behind or the rollout did not run this reconcile.
	upgradeReason, upgradeMessage string
	// remediationReason and remediationMessage say what remediation did or why it could not;
	// empty when every Machine is healthy.
	remediationReason, remediationMessage string
	// deleteStalled says why a deleting Cluster has waited on its Machines longer than expected.
	deleteStalled string
	// remediationRan is true when reconcileRemediation looked at the Machines this reconcile.
	remediationRan bool
}

// clusterKind tells the reconcile skeleton how to read a Cluster.
var clusterKind = &skeleton.Kind[*basaltv1.Cluster]{
	Name: "Cluster", Word: "phase",
	Phase:              func(c *basaltv1.Cluster) string { return string(c.Status.Phase) },
	ObservedGeneration: func(c *basaltv1.Cluster) *int64 { return &c.Status.ObservedGeneration },
	Observe:            metrics.ObserveCluster,
	Stalled:            clusterStalled,
}

// clusterStalled are the Cluster condition reasons that need a person (kstatus Stalled).
var clusterStalled = map[string]bool{
	basaltv1.ReasonRemediationLimitReached: true, basaltv1.ReasonInvalidSelector: true, basaltv1.ReasonPodCIDRExhausted: true,
	basaltv1.ReasonPodCIDRConflict: true, basaltv1.ReasonDeletionStalled: true, basaltv1.ReasonInvalidSchedule: true,
	basaltv1.ReasonBackupCredentialsMissing: true, basaltv1.ReasonPlanInvalid: true, basaltv1.ReasonArtifactSetNotFound: true,
	basaltv1.ReasonRegistrySecretInvalid: true, basaltv1.ReasonNotImplemented: true,
}

// Reconcile brings one Cluster closer to its desired state. It may be called again at any point
// after a crash: each phase reads the world before it writes, and Machines and Host claims made
// before a crash are found and adopted.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	c := &basaltv1.Cluster{}
	if err := r.Client.Get(ctx, req.NamespacedName, c); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	s := &scope{cluster: c, shortfall: map[groupKey]int32{}, selectorErrors: map[groupKey]string{}, failingHosts: map[groupKey][]hostProblem{}}
	return skeleton.Run(ctx, r.Client, r.Recorder, clusterKind, c, r.now, func() { updateStatus(s) }, func(ctx context.Context) (ctrl.Result, error) {
		if err := r.observe(ctx, s); err != nil {
			return ctrl.Result{}, err
		}
		if !c.DeletionTimestamp.IsZero() {
			return r.reconcileDelete(ctx, s)
		}
		// The finalizer is written with the rest of this reconcile's changes by the deferred patch.
		controllerutil.AddFinalizer(c, basaltv1.ClusterFinalizer)
		if c.Spec.Paused {
			return ctrl.Result{}, nil
		}
		return skeleton.RunPhases(ctx, s, r.reconcileMachines, r.reconcileBindings, r.reconcilePodCIDRs, r.reconcileCertificates,
			r.reconcileEtcd, r.reconcileRemediation, r.reconcileUpgrade, r.reconcileWorkload, r.reconcileAddons, r.reconcileEncryption, r.reconcileAdminAccess, r.reconcileRenewal)
	})
}

// SetupWithManager registers the controller. A Cluster is reconciled again when one of its
// Machines changes, and when any Host in its namespace changes (a Host becoming Available may be
// what a waiting Cluster needs).
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager, opts controller.Options) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&basaltv1.Cluster{}, builder.WithPredicates(predicate.Or(predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{}, predicate.LabelChangedPredicate{}))).
		Watches(&basaltv1.Machine{}, handler.EnqueueRequestsFromMapFunc(machineToCluster)).
		Watches(&basaltv1.Host{}, handler.EnqueueRequestsFromMapFunc(r.hostToClusters)).
		WithOptions(opts).
		Named("cluster").
		Complete(r)
}

func machineToCluster(_ context.Context, o client.Object) []reconcile.Request {
	m, ok := o.(*basaltv1.Machine)
	if !ok {
		return nil
	}
	return []reconcile.Request{{NamespacedName: client.ObjectKey{Namespace: m.Namespace, Name: m.Spec.Cluster}}}
}

// hostToClusters maps a Host to every Cluster in its namespace that is still missing Hosts.
func (r *Reconciler) hostToClusters(ctx context.Context, o client.Object) []reconcile.Request {
	list := &basaltv1.ClusterList{}
	if err := r.Client.List(ctx, list, client.InNamespace(o.GetNamespace())); err != nil {
		return nil
	}
	var reqs []reconcile.Request
	for i := range list.Items {
		reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&list.Items[i])})
	}
	return reqs
}

func (r *Reconciler) apiReader() client.Reader {
	if r.APIReader != nil {
		return r.APIReader
	}
	return r.Client
}

func (r *Reconciler) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

func (r *Reconciler) etcdClient() func(etcdcluster.Config) (etcdcluster.Client, error) {
	if r.EtcdClient != nil {
		return r.EtcdClient
	}
	return NewEtcdClient
}

// noArtifacts is the Source of a Reconciler without one: no set of any version.
var noArtifacts = &artifactsource.Source{}

func (r *Reconciler) artifacts() *artifactsource.Source {
	if r.Artifacts == nil {
		return noArtifacts
	}
	return r.Artifacts
}
