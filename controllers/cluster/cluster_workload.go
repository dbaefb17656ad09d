package cluster

import (
	"context"
	"fmt"

	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
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
	if _, done := r.workloadDone.Load(c.UID); done {
		return ctrl.Result{}, nil
	}
	crb := &rbacv1.ClusterRoleBinding{}
	if err := yaml.UnmarshalStrict(components.KubeletAPIAdminBinding(), crb); err != nil {
		return ctrl.Result{}, fmt.Errorf("decoding the kubelet API binding: %w", err)
	}
	if problem := r.createInWorkload(ctx, c, crb); problem != "" {
		s.workloadProblem = problem
		return ctrl.Result{RequeueAfter: etcdWaitRequeue}, nil
	}
	r.workloadDone.Store(c.UID, true)
	ctrl.LoggerFrom(ctx).Info("Created the workload cluster's kubelet API binding", "cluster", klog.KObj(c), "binding", crb.Name)
	return ctrl.Result{}, nil
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
