package cluster

import (
	"context"
	"fmt"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
	"github.com/basalt-dev/basalt/bootstrap/addons"
	"github.com/basalt-dev/basalt/bootstrap/components"
	"github.com/basalt-dev/basalt/controllers/topology"
)

// reconcileWorkload writes what a new workload cluster needs once its API is up: the
// ClusterRoleBinding that lets kube-apiserver use the kubelet API (kubectl logs, exec,
// port-forward). It is created once and left alone afterwards (a user may change it); the manager
// remembers per Cluster that it did so, and checks again after a restart.
func (r *Reconciler) reconcileWorkload(ctx context.Context, s *scope) (ctrl.Result, error) {
	c := s.cluster
	if r.Workload == nil || s.material == nil || !s.apiServerUp() {
		return ctrl.Result{}, nil
	}
	res := r.observeVirtualIP(ctx, s)
	if _, done := r.workloadDone.Load(c.UID); done {
		return res, nil
	}
	crb := &rbacv1.ClusterRoleBinding{}
	if err := yaml.UnmarshalStrict(components.KubeletAPIAdminBinding(), crb); err != nil {
		return ctrl.Result{}, fmt.Errorf("decoding the kubelet API binding: %w", err)
	}
	objs := []client.Object{crb}
	vip, err := addons.Decode([]addons.Source{{Key: "virtual IP Lease access", Data: components.VirtualIPLeaseAccess()}})
	if err != nil {
		return ctrl.Result{}, fmt.Errorf("decoding the virtual IP's Lease access: %w", err)
	}
	for _, u := range vip {
		objs = append(objs, u)
	}
	for _, obj := range objs {
		if problem := r.createInWorkload(ctx, c, obj); problem != "" {
			s.workloadProblem = problem
			return ctrl.Result{RequeueAfter: etcdWaitRequeue}, nil
		}
	}
	r.workloadDone.Store(c.UID, true)
	ctrl.LoggerFrom(ctx).Info("Created the workload cluster's kubelet API binding and the virtual IP's Lease access", "cluster", klog.KObj(c), "binding", crb.Name)
	return res, nil
}

// virtualIPRefresh is how often the holder of a Cluster's virtual IP is read into its status.
const virtualIPRefresh = 30 * time.Second

// observeVirtualIP reads the virtual IP's Lease into status.virtualIP, with an event when the
// address moved to another node. A Lease that cannot be read keeps the last status.
func (r *Reconciler) observeVirtualIP(ctx context.Context, s *scope) ctrl.Result {
	c := s.cluster
	v := c.Spec.ControlPlane.VirtualIP
	if v == nil {
		c.Status.VirtualIP = nil
		return ctrl.Result{}
	}
	prev := c.Status.VirtualIP
	st := &basaltv1.VirtualIPStatus{Address: v.Address}
	if prev != nil && prev.Address == v.Address {
		st = prev.DeepCopy()
	}
	c.Status.VirtualIP = st
	wc, err := r.Workload.For(ctx, c)
	if err != nil {
		return ctrl.Result{RequeueAfter: virtualIPRefresh}
	}
	lease := &coordinationv1.Lease{}
	if err := wc.Get(ctx, client.ObjectKey{Namespace: components.VirtualIPLeaseNamespace, Name: components.VirtualIPLeaseName}, lease); err != nil {
		if apierrors.IsNotFound(err) {
			st.Holder, st.RenewedAt = "", nil
		}
		return ctrl.Result{RequeueAfter: virtualIPRefresh}
	}
	holder := ptr.Deref(lease.Spec.HolderIdentity, "")
	if holder != st.Holder && holder != "" {
		from := st.Holder
		if from == "" {
			from = "no node"
		}
		r.Recorder.Eventf(c, nil, corev1.EventTypeNormal, basaltv1.ReasonVirtualIPMoved, "Elect", "The virtual IP %s moved from %s to node %s", v.Address, from, holder)
	}
	st.Holder = holder
	st.Transitions = ptr.Deref(lease.Spec.LeaseTransitions, 0)
	if rt := lease.Spec.RenewTime; rt != nil {
		st.RenewedAt = &metav1.Time{Time: rt.Time}
	}
	return ctrl.Result{RequeueAfter: virtualIPRefresh}
}

// createInWorkload creates obj in c's workload cluster unless it exists, and says why it could
// not.
func (r *Reconciler) createInWorkload(ctx context.Context, c *basaltv1.Cluster, obj client.Object) string {
	wc, err := r.Workload.For(ctx, c)
	if err != nil {
		return err.Error()
	}
	if err := wc.Create(ctx, obj); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Sprintf("creating %s in the workload cluster: %v", obj.GetName(), err)
	}
	return ""
}

// apiServerUp says whether some control-plane Machine's agent reports kube-apiserver healthy.
func (s *scope) apiServerUp() bool {
	for _, m := range s.machines[groupKey{role: basaltv1.RoleControlPlane}] {
		if topology.RunsAPIServer(m) && topology.ComponentHealthy(m, topology.ComponentAPIServer) {
			return true
		}
	}
	return false
}
