package machine

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"time"

	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/basalt-dev/basalt/agents/planstore"
	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
	"github.com/basalt-dev/basalt/controllers/artifactsource"
	"github.com/basalt-dev/basalt/controllers/metrics"
	"github.com/basalt-dev/basalt/controllers/skeleton"
	"github.com/basalt-dev/basalt/controllers/topology"
	"github.com/basalt-dev/basalt/controllers/workload"
)

// hostRequeue is how often a Machine waiting for its Host is looked at again when no watch event
// would bring it back.
const hostRequeue = 15 * time.Second

// conflictRequeue is how soon a Machine is looked at again after a concurrent write.
const conflictRequeue = 200 * time.Millisecond

// Reconciler reconciles Machine objects.
type Reconciler struct {
	// Client reads through the manager's cache and writes to the API server.
	Client client.Client
	// Recorder emits events on phase changes.
	Recorder events.EventRecorder
	// APIReader reads straight from the API server: the cluster's PKI Secrets and the Plan
	// Secrets, which the manager does not cache. Nil means Client.
	APIReader client.Reader
	// Artifacts finds the artifact set of a Machine's version (the manager's own, or the
	// Cluster's mirror). Nil has no set.
	Artifacts *artifactsource.Source
	// Workload gives clients of workload clusters; nil leaves Nodes alone (NodeReady then waits).
	Workload *workload.Clients

	// drainWarned remembers, by Machine UID, that the drain-timeout event was emitted.
	drainWarned sync.Map
	// rollouts serialises the Plans that restart etcd or kube-apiserver, per Cluster.
	rollouts rollouts
}

// +kubebuilder:rbac:groups=basalt.dev,resources=machines,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=basalt.dev,resources=machines/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=basalt.dev,resources=machines/finalizers,verbs=update
// +kubebuilder:rbac:groups=basalt.dev,resources=clusters,verbs=get;list;watch
// +kubebuilder:rbac:groups=basalt.dev,resources=hosts,verbs=get;list;watch
// +kubebuilder:rbac:groups=basalt.dev,resources=hosts/status,verbs=get;update;patch
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;create;update;delete

// scope is what one reconcile of a Machine knows. Phases fill it in; updateStatus reads it.
type scope struct {
	// machine is the object being reconciled; changes to it are patched at the end.
	machine *basaltv1.Machine
	// cluster is the Cluster named by spec.cluster, nil when it does not exist.
	cluster *basaltv1.Cluster
	// host is the Host named by spec.hostRef, nil when unset or missing.
	host *basaltv1.Host
	// hostProblem says why the Host cannot be used, as a condition reason and message.
	hostProblem, hostMessage string

	// nodeIP is the node's address (from the Host), nodeIPErr why there is none.
	nodeIP    netip.Addr
	nodeIPErr error
	// peers are the bound Machines of the cluster with their node IPs, this one included.
	peers []topology.Peer
	// planReason and planMessage say why no Plan was stored this reconcile.
	planReason, planMessage string
	// planHash is the hash of the Plan stored for the Host; planServices its services.
	planHash     string
	planServices []string
	// rolloutWait says why a new Plan that restarts etcd or kube-apiserver waits for another
	// control-plane node (the UpToDate condition); "" when the stored Plan is the current one.
	rolloutWait string
	// learner is true when the stored Plan is a control-plane Plan whose etcd member is a
	// learner: it runs no kube-apiserver yet.
	learner bool
	// nodeRegistered is true when the workload cluster has the Node with the Machine's pod
	// range.
	nodeRegistered bool
	// nodeReady mirrors the Node's Ready condition; nodeReason and nodeMessage say why not, or
	// describe it.
	nodeReady               bool
	nodeReason, nodeMessage string
	// deleteWait says what the deletion of the Machine waits for.
	deleteWait string
}

// hostBound says whether the Host named by spec.hostRef is claimed by this Machine.
func (s *scope) hostBound() bool {
	return s.host != nil && s.host.Status.ConsumerRef != nil && s.host.Status.ConsumerRef.Name == s.machine.Name
}

// machineKind tells the reconcile skeleton how to read a Machine.
var machineKind = &skeleton.Kind[*basaltv1.Machine]{
	Name: "Machine", Word: "phase",
	Phase:              func(m *basaltv1.Machine) string { return string(m.Status.Phase) },
	ObservedGeneration: func(m *basaltv1.Machine) *int64 { return &m.Status.ObservedGeneration },
	Observe:            metrics.ObserveMachine,
	Stalled:            machineStalled,
}

// machineStalled are the Machine condition reasons that need a person (kstatus Stalled): the
// Host's SSH problems it mirrors, and Plan inputs only the user can supply.
var machineStalled = map[string]bool{
	basaltv1.ReasonHostKeyMismatch: true, basaltv1.ReasonHostKeyNotPinned: true, basaltv1.ReasonSSHKeyInvalid: true,
	basaltv1.ReasonPlanInvalid: true, basaltv1.ReasonRegistrySecretInvalid: true, basaltv1.ReasonArtifactSetNotFound: true,
	basaltv1.ReasonHostNotFound: true, basaltv1.ReasonInvalidHostAddress: true, basaltv1.ReasonNotImplemented: true,
}

// Reconcile brings one Machine closer to its desired state. It may be called again at any point
// after a crash: each phase reads the world before it writes. Phases run in order, each checking
// in the scope that what it needs is there; an error stops the ones after it.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	m := &basaltv1.Machine{}
	if err := r.Client.Get(ctx, req.NamespacedName, m); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	s := &scope{machine: m}
	return skeleton.Run(ctx, r.Client, r.Recorder, machineKind, m, time.Now, func() { updateStatus(s) }, func(ctx context.Context) (ctrl.Result, error) {
		if err := r.observeCluster(ctx, s); err != nil {
			return ctrl.Result{}, err
		}
		if !m.DeletionTimestamp.IsZero() {
			return r.reconcileDelete(ctx, s)
		}
		// The finalizer is written with the rest of this reconcile's changes by the deferred patch.
		controllerutil.AddFinalizer(m, basaltv1.MachineFinalizer)
		if s.cluster != nil && s.cluster.Spec.Paused {
			return ctrl.Result{}, nil
		}
		return skeleton.RunPhases(ctx, s, r.reconcileClusterLink, r.reconcileHost, r.observe, r.reconcileNode, r.reconcilePlan)
	})
}

// observe records the node's IP and the cluster's other Machines.
func (r *Reconciler) observe(ctx context.Context, s *scope) (ctrl.Result, error) {
	if s.cluster == nil || !s.hostBound() {
		return ctrl.Result{}, nil
	}
	s.nodeIP, s.nodeIPErr = topology.NodeIP(s.host)
	if err := r.observePeers(ctx, s); err != nil {
		return ctrl.Result{}, fmt.Errorf("listing the Machines of Cluster %s: %w", s.cluster.Name, err)
	}
	return ctrl.Result{}, nil
}

func (r *Reconciler) apiReader() client.Reader {
	if r.APIReader != nil {
		return r.APIReader
	}
	return r.Client
}

// planClient is what StorePlan reads and writes through (planstore.Client).
func (r *Reconciler) planClient() client.Client {
	return planstore.Client(r.Client, r.apiReader())
}

// SetupWithManager registers the controller. Machines are also reconciled when their Host
// changes, when their Cluster's spec or what their Plans use of its status changes, and when
// another Machine of the cluster changes in a way that changes their Plans (its pod range, node
// IP, etcd record, or whether its kube-apiserver is up).
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager, opts controller.Options) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&basaltv1.Machine{}).
		Watches(&basaltv1.Host{}, handler.EnqueueRequestsFromMapFunc(r.hostToMachine)).
		Watches(&basaltv1.Cluster{}, handler.EnqueueRequestsFromMapFunc(r.clusterToMachines), builder.WithPredicates(clusterInputsChanged)).
		Watches(&basaltv1.Machine{}, handler.EnqueueRequestsFromMapFunc(r.peersOf), builder.WithPredicates(peerInputsChanged)).
		WithOptions(opts).
		Named("machine").
		Complete(r)
}

// clusterInputsChanged passes Cluster events that may change its Machines' Plans or Nodes.
var clusterInputsChanged = predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool {
	o, ok1 := e.ObjectOld.(*basaltv1.Cluster)
	n, ok2 := e.ObjectNew.(*basaltv1.Cluster)
	return !ok1 || !ok2 || clusterKey(o) != clusterKey(n)
}}

func clusterKey(c *basaltv1.Cluster) string {
	k := fmt.Sprintf("%d|%v|%s|%v|%v", c.Generation, c.DeletionTimestamp, c.Status.Version, c.Status.KubeconfigSecretRef, c.Status.CertificatesExpireAt)
	if ep := c.Status.ControlPlaneEndpoint; ep != nil {
		k += fmt.Sprintf("|%s:%d", ep.Host, ep.Port)
	}
	if e := c.Status.Encryption; e != nil {
		// A step of an encryption key rotation changes the control-plane Plans.
		k += "|" + strings.Join(e.Keys, ",")
	}
	return k
}

// peerInputsChanged passes Machine events that change what other Machines' Plans or Nodes use.
var peerInputsChanged = predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool {
	o, ok1 := e.ObjectOld.(*basaltv1.Machine)
	n, ok2 := e.ObjectNew.(*basaltv1.Machine)
	return !ok1 || !ok2 || peerKey(o) != peerKey(n)
}}

func peerKey(m *basaltv1.Machine) string {
	k := fmt.Sprintf("%v|%v|%s|%v|%v", m.Spec.HostRef, m.DeletionTimestamp.IsZero(), m.Status.PodCIDR, m.Status.Addresses,
		topology.RunsAPIServer(m) && topology.ComponentHealthy(m, topology.ComponentAPIServer))
	if e := m.Status.Etcd; e != nil {
		k += fmt.Sprintf("|etcd %v %v", e.Join, e.Learner)
	}
	return k
}

// peersOf maps a Machine to the other Machines of its cluster.
func (r *Reconciler) peersOf(ctx context.Context, o client.Object) []reconcile.Request {
	m, ok := o.(*basaltv1.Machine)
	if !ok {
		return nil
	}
	list := &basaltv1.MachineList{}
	if err := r.Client.List(ctx, list, client.InNamespace(m.Namespace), client.MatchingLabels{basaltv1.LabelClusterName: m.Spec.Cluster}); err != nil {
		return nil
	}
	var reqs []reconcile.Request
	for i := range list.Items {
		if list.Items[i].Name != m.Name {
			reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&list.Items[i])})
		}
	}
	return reqs
}

// hostToMachine maps a Host to the Machine that consumes it, or, for a Host nobody consumes, to
// the Machines of its namespace that wait for one (they say why no Host can be bound).
func (r *Reconciler) hostToMachine(ctx context.Context, o client.Object) []reconcile.Request {
	h, ok := o.(*basaltv1.Host)
	if !ok {
		return nil
	}
	if h.Status.ConsumerRef != nil {
		return []reconcile.Request{{NamespacedName: client.ObjectKey{Namespace: h.Namespace, Name: h.Status.ConsumerRef.Name}}}
	}
	list := &basaltv1.MachineList{}
	if err := r.Client.List(ctx, list, client.InNamespace(h.Namespace)); err != nil {
		return nil
	}
	var reqs []reconcile.Request
	for i := range list.Items {
		if list.Items[i].Spec.HostRef == nil {
			reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&list.Items[i])})
		}
	}
	return reqs
}

// clusterToMachines maps a Cluster to its Machines.
func (r *Reconciler) clusterToMachines(ctx context.Context, o client.Object) []reconcile.Request {
	list := &basaltv1.MachineList{}
	if err := r.Client.List(ctx, list, client.InNamespace(o.GetNamespace()), client.MatchingLabels{basaltv1.LabelClusterName: o.GetName()}); err != nil {
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(list.Items))
	for i := range list.Items {
		reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&list.Items[i])})
	}
	return reqs
}

// noArtifacts is the Source of a Reconciler without one: no set of any version.
var noArtifacts = &artifactsource.Source{}

func (r *Reconciler) artifacts() *artifactsource.Source {
	if r.Artifacts == nil {
		return noArtifacts
	}
	return r.Artifacts
}
