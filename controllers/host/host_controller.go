package host

import (
	"context"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
	"github.com/basalt-dev/basalt/controllers/metrics"
	"github.com/basalt-dev/basalt/controllers/skeleton"
)

// releaseRequeue is how often a Host waiting on its consumer, or holding a claim whose Machine is
// missing, is looked at again.
const releaseRequeue = 10 * time.Second

// Reconciler reconciles Host objects.
type Reconciler struct {
	// Client reads through the manager's cache and writes to the API server.
	Client client.Client
	// APIReader reads straight from the API server; used where a stale cache could release a
	// Host that a Machine has just claimed.
	APIReader client.Reader
	// Recorder emits events on state changes.
	Recorder events.EventRecorder
	// Provisioner installs agents on SSH Hosts; nil leaves them in Registering, saying so.
	Provisioner *Provisioner
	// NetBoot is true when the manager runs its PXE services (NetBoot answers them), so
	// network-booted Hosts get their agent by booting; it only changes what their conditions say.
	NetBoot bool
	// InspectTimeout is how long a registered agent may take to report hardware facts before
	// the Host goes to Error. Default 10 minutes.
	InspectTimeout time.Duration
	// AgentSilentAfter is how long an agent may go without reporting before AgentConnected turns
	// False. Default 2 minutes.
	AgentSilentAfter time.Duration
	// BMC reaches Hosts' baseboard management controllers (spec.bmc); nil uses bmc.ForHost with
	// the defaults (see host_bmc.go).
	BMC *BMCAccess
	// RootImage, when set, is written to the local disk of every network-booted Host when it is
	// provisioned (see provisionDisk); nil leaves them running from the network.
	RootImage *RootImage
	// ReviveSilentAfter is how long a registered agent of an SSH Host may be silent before the
	// agent is installed again (and how long between attempts): the install starts an agent
	// that stopped, and registers again one whose certificate expired. Default 5 minutes.
	ReviveSilentAfter time.Duration

	// inspectingSince remembers, by Host UID, when this manager first saw the Host waiting for
	// its hardware report.
	inspectingSince sync.Map
	// revivedAt remembers, by Host UID, when this manager last installed a silent agent again.
	revivedAt sync.Map
}

// +kubebuilder:rbac:groups=basalt.dev,resources=hosts,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=basalt.dev,resources=hosts/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=basalt.dev,resources=hosts/finalizers,verbs=update
// +kubebuilder:rbac:groups=basalt.dev,resources=machines,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;create;update;patch

// scope is what one reconcile of a Host knows.
type scope struct {
	// host is the object being reconciled; changes to it are patched at the end.
	host *basaltv1.Host
	// consumerGone is true when status.consumerRef names a Machine that does not exist.
	consumerGone bool
	// consumerDeleting is true when the consuming Machine exists and is being deleted.
	consumerDeleting bool
	// installed is true when the agent is installed and its registration is awaited.
	installed bool
	// hostKeyVerified is true when the host presented an accepted SSH host key this reconcile.
	hostKeyVerified bool
	// hostKeyMismatch is the refusal, naming both fingerprints, when the host presented another key.
	hostKeyMismatch string
	// installProblem and installMessage say why the agent could not be installed.
	installProblem, installMessage string
	// silentAfter is the agent deadline in force.
	silentAfter time.Duration
	// netBoot is true when the manager serves PXE (Reconciler.NetBoot).
	netBoot bool
	// diskReason and diskMessage say what the root filesystem on disk waits for.
	diskReason, diskMessage string
	// wiped is the reason the Host became Available after a release this reconcile
	// (WipeConfirmed, WipeOverridden); empty otherwise.
	wiped string
}

// hostKind tells the reconcile skeleton how to read a Host.
var hostKind = &skeleton.Kind[*basaltv1.Host]{
	Name: "Host", Word: "state",
	Phase:              func(h *basaltv1.Host) string { return string(h.Status.State) },
	ObservedGeneration: func(h *basaltv1.Host) *int64 { return &h.Status.ObservedGeneration },
	Observe:            metrics.ObserveHost,
	Stalled:            hostStalled,
}

// hostStalled are the Host condition reasons that need a person (kstatus Stalled): a key, an
// address, a credential or a disk to fix, a discovered Host to accept, a wipe to confirm.
var hostStalled = map[string]bool{
	basaltv1.ReasonHostKeyMismatch: true, basaltv1.ReasonHostKeyNotPinned: true, basaltv1.ReasonSSHKeyInvalid: true,
	basaltv1.ReasonInspectionFailed: true, basaltv1.ReasonNoRootDisk: true, basaltv1.ReasonWipeNotConfirmed: true,
	basaltv1.ReasonNetBootDisabled: true, basaltv1.ReasonNotAccepted: true, basaltv1.ReasonNotImplemented: true,
	basaltv1.ReasonBMCCertificateInvalid: true, basaltv1.ReasonBMCAddressInvalid: true,
	basaltv1.ReasonBMCCredentialsInvalid: true, basaltv1.ReasonBMCAuthFailed: true,
}

// Reconcile moves one Host through its state machine. It may be called again at any point after
// a crash: every step reads the world before it writes.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	host := &basaltv1.Host{}
	if err := r.Client.Get(ctx, req.NamespacedName, host); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	s := &scope{host: host, silentAfter: r.AgentSilentAfter, netBoot: r.NetBoot}
	if s.silentAfter == 0 {
		s.silentAfter = 2 * time.Minute
	}
	return skeleton.Run(ctx, r.Client, r.Recorder, hostKind, host, time.Now, func() { updateStatus(s) }, func(ctx context.Context) (ctrl.Result, error) {
		return r.reconcile(ctx, s)
	})
}

// reconcile is the body of Reconcile: deletion, or one step of the state machine, then the
// requests that apply in every state (reprovision, wipe confirmation, power cycle, power state).
func (r *Reconciler) reconcile(ctx context.Context, s *scope) (ctrl.Result, error) {
	host := s.host
	if err := r.observeConsumer(ctx, s); err != nil {
		return ctrl.Result{}, err
	}
	if !host.DeletionTimestamp.IsZero() {
		return r.reconcileDelete(ctx, s)
	}
	// The finalizer is written with the rest of this reconcile's changes by the deferred patch.
	controllerutil.AddFinalizer(host, basaltv1.HostFinalizer)

	var res ctrl.Result
	if s.consumerGone {
		ctrl.LoggerFrom(ctx).Info("Releasing Host whose consumer is gone", "host", klog.KObj(host), "machine", host.Status.ConsumerRef.Name, "reason", "ConsumerNotFound")
		host.Status.ConsumerRef = nil
	}
	if host.Status.State == "" {
		host.Status.State = basaltv1.HostStateRegistering
	}
	if wait, ok := r.reprovision(ctx, s); ok {
		res = ctrl.Result{RequeueAfter: wait}
	}
	r.overrideWipe(ctx, s)
	handler, ok := stateHandlers[host.Status.State]
	if !ok {
		return ctrl.Result{}, fmt.Errorf("host %s: unknown state %q", klog.KObj(host), host.Status.State)
	}
	res = skeleton.Sooner(res, handler(r, ctx, s))
	res = skeleton.Sooner(res, r.reviveSilentAgent(ctx, s))
	res = skeleton.Sooner(res, r.powerCycleOnRequest(ctx, host))
	if next := r.refreshPower(ctx, host); next > 0 {
		res = skeleton.Sooner(res, ctrl.Result{RequeueAfter: next})
	}
	return res, nil
}

// reprovision acts on the annotation basalt.dev/reprovision (basaltctl host reprovision): a Host no
// Machine uses goes back to Registering with its agent and hardware facts forgotten, so its agent
// is installed (SSH) or network-booted (BMC) again, registers and is inspected anew. Each value is
// acted on once: it is recorded in status.lastReprovision with the reset, and the annotation
// stays (a GitOps tool may keep it). With no Plan stored, an agent that applied one is served the
// empty Plan, which wipes what Basalt wrote. A Host still used by a Machine keeps the request
// until the Machine lets it go (ok true: look again after wait).
func (r *Reconciler) reprovision(ctx context.Context, s *scope) (wait time.Duration, ok bool) {
	h := s.host
	requested := h.Annotations[basaltv1.AnnotationReprovision]
	if requested == "" || (h.Status.LastReprovision != nil && h.Status.LastReprovision.Request == requested) {
		return 0, false
	}
	if h.Status.ConsumerRef != nil {
		ctrl.LoggerFrom(ctx).Info("Reprovisioning waits for the Host's Machine to let it go", "host", klog.KObj(h), "machine", h.Status.ConsumerRef.Name, "requested", requested)
		return waitForConsumer, true
	}
	h.Status.State = basaltv1.HostStateRegistering
	h.Status.ErrorMessage = ""
	h.Status.Hardware = nil
	h.Status.Agent.LastSeen = nil
	h.Status.Agent.InstalledAt = nil
	h.Status.LastReprovision = &basaltv1.RequestRecord{Request: clip(requested, 64), Time: metav1.Now()}
	ctrl.LoggerFrom(ctx).Info("Reprovisioning Host", "host", klog.KObj(h), "requested", requested, "reason", "Reprovision")
	r.Recorder.Eventf(h, nil, corev1.EventTypeNormal, "Reprovisioning", "Reprovision",
		"Provisioning the Host again (requested %s): its agent registers and is inspected anew", requested)
	return 0, false
}

// clip cuts s to at most n bytes (a request value longer than a status field holds).
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// observeConsumer records whether the Machine named by status.consumerRef still exists. It reads
// from the API server, not the cache: a Machine that has just claimed this Host may not be in the
// cache yet, and releasing its claim would let a second Machine take the same Host.
func (r *Reconciler) observeConsumer(ctx context.Context, s *scope) error {
	ref := s.host.Status.ConsumerRef
	if ref == nil {
		return nil
	}
	m := &basaltv1.Machine{}
	err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: s.host.Namespace, Name: ref.Name}, m)
	switch {
	case apierrors.IsNotFound(err):
		s.consumerGone = true
	case err != nil:
		return err
	default:
		s.consumerDeleting = !m.DeletionTimestamp.IsZero()
	}
	return nil
}

// reconcileDelete lets a Host go only when no Machine uses it. A Host still consumed waits for its
// Machine to be deleted and release it.
func (r *Reconciler) reconcileDelete(_ context.Context, s *scope) (ctrl.Result, error) {
	if s.host.Status.ConsumerRef != nil && !s.consumerGone {
		return ctrl.Result{RequeueAfter: releaseRequeue}, nil
	}
	s.host.Status.ConsumerRef = nil
	r.forgetBMC(s.host)
	controllerutil.RemoveFinalizer(s.host, basaltv1.HostFinalizer)
	return ctrl.Result{}, nil
}

// SetupWithManager registers the controller. A Host is also reconciled when the Machine bound to
// it changes, so a Host waiting on its Machine's deletion goes as soon as the Machine does.
// It also registers MACIndex, which NetBoot reads through.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager, opts controller.Options) error {
	if err := IndexHostsByMAC(context.Background(), mgr.GetFieldIndexer()); err != nil {
		return fmt.Errorf("indexing Hosts by MAC address: %w", err)
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&basaltv1.Host{}).
		Watches(&basaltv1.Machine{}, handler.EnqueueRequestsFromMapFunc(machineToHost)).
		WithOptions(opts).
		Named("host").
		Complete(r)
}

// machineToHost maps a Machine to the Host it names.
func machineToHost(_ context.Context, o client.Object) []reconcile.Request {
	m, ok := o.(*basaltv1.Machine)
	if !ok || m.Spec.HostRef == nil {
		return nil
	}
	return []reconcile.Request{{NamespacedName: client.ObjectKey{Namespace: m.Namespace, Name: m.Spec.HostRef.Name}}}
}
