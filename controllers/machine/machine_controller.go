package machine

import (
	"context"
	"errors"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
	"github.com/basalt-dev/basalt/controllers/patch"
)

// hostRequeue is how often a Machine waiting for its Host is looked at again when no watch event
// would bring it back.
const hostRequeue = 15 * time.Second

// Reconciler reconciles Machine objects.
type Reconciler struct {
	// Client reads through the manager's cache and writes to the API server.
	Client client.Client
	// Recorder emits events on phase changes.
	Recorder events.EventRecorder
}

// +kubebuilder:rbac:groups=basalt.dev,resources=machines,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=basalt.dev,resources=machines/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=basalt.dev,resources=machines/finalizers,verbs=update
// +kubebuilder:rbac:groups=basalt.dev,resources=clusters,verbs=get;list;watch
// +kubebuilder:rbac:groups=basalt.dev,resources=hosts,verbs=get;list;watch
// +kubebuilder:rbac:groups=basalt.dev,resources=hosts/status,verbs=get;update;patch

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
}

// phase is one step of a Machine reconcile. Phases run in order; one that returns a non-zero
// Result or an error stops the ones after it.
type phase func(ctx context.Context, s *scope) (ctrl.Result, error)

// Reconcile brings one Machine closer to its desired state. It may be called again at any point
// after a crash: each phase reads the world before it writes.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (_ ctrl.Result, reterr error) {
	m := &basaltv1.Machine{}
	if err := r.Client.Get(ctx, req.NamespacedName, m); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	log := ctrl.LoggerFrom(ctx)
	helper := patch.NewHelper(m, r.Client)
	oldPhase := m.Status.Phase
	s := &scope{machine: m}
	defer func() {
		updateStatus(s)
		if reterr == nil {
			m.Status.ObservedGeneration = m.Generation
		}
		if err := helper.Patch(ctx, m); err != nil && !apierrors.IsNotFound(err) {
			reterr = errors.Join(reterr, err)
			return
		}
		if m.Status.Phase != oldPhase && reterr == nil {
			log.Info("Machine changed phase", "machine", klog.KObj(m), "from", oldPhase, "to", m.Status.Phase)
			r.Recorder.Eventf(m, nil, "Normal", "PhaseChanged", "Reconcile", "Machine moved from %q to %q", oldPhase, m.Status.Phase)
		}
	}()

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

	var res ctrl.Result
	var errs []error
	for _, p := range []phase{r.reconcileClusterLink, r.reconcileHost} {
		pr, err := p(ctx, s)
		if err != nil {
			errs = append(errs, err)
			break
		}
		if !pr.IsZero() {
			res = pr
			break
		}
	}
	return res, errors.Join(errs...)
}

// SetupWithManager registers the controller. Machines are also reconciled when their Host or
// Cluster changes.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager, opts controller.Options) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&basaltv1.Machine{}).
		Watches(&basaltv1.Host{}, handler.EnqueueRequestsFromMapFunc(hostToMachine)).
		Watches(&basaltv1.Cluster{}, handler.EnqueueRequestsFromMapFunc(r.clusterToMachines)).
		WithOptions(opts).
		Named("machine").
		Complete(r)
}

// hostToMachine maps a Host to the Machine that consumes it.
func hostToMachine(_ context.Context, o client.Object) []reconcile.Request {
	h, ok := o.(*basaltv1.Host)
	if !ok || h.Status.ConsumerRef == nil {
		return nil
	}
	return []reconcile.Request{{NamespacedName: client.ObjectKey{Namespace: h.Namespace, Name: h.Status.ConsumerRef.Name}}}
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
