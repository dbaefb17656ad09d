package cluster

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"

	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
	"github.com/basalt-dev/basalt/bootstrap/clusterpki"
	"github.com/basalt-dev/basalt/controllers/access"
)

// reconcileAdminAccess signs the revocable administrator kubeconfigs asked for in the workload
// cluster (access.SignApproved), each time basalt.dev/admin-access-requested changes (and once
// after the manager starts): the cluster CA key stays with the manager. A failure is logged and
// retried on the next change, which the waiting basaltctl makes.
func (r *Reconciler) reconcileAdminAccess(ctx context.Context, s *scope) (ctrl.Result, error) {
	c := s.cluster
	value, asked := c.Annotations[basaltv1.AnnotationAdminAccessRequested]
	if !asked || r.Workload == nil || s.material == nil || !s.apiServerUp() {
		return ctrl.Result{}, nil
	}
	if done, ok := r.accessServed.Load(c.UID); ok && done.(string) == value {
		return ctrl.Result{}, nil
	}
	log := ctrl.LoggerFrom(ctx).WithValues("cluster", klog.KObj(c))
	cfg, err := r.Workload.RESTConfig(ctx, c)
	var res access.SignResult
	if err == nil {
		ca := s.material[clusterpki.ClusterCA]
		res, err = access.SignApproved(ctx, cfg, ca.Cert, ca.Key, r.now())
	}
	if err != nil {
		log.Error(err, "Cannot sign the administrator kubeconfigs asked for")
		return ctrl.Result{}, nil
	}
	r.accessServed.Store(c.UID, value)
	if res.Signed+res.Refused > 0 {
		log.Info("Signed administrator kubeconfigs", "signed", res.Signed, "refused", res.Refused)
		r.Recorder.Eventf(c, nil, corev1.EventTypeNormal, "AdminAccessSigned", "SignAdminAccess",
			"Signed %d administrator certificate request(s) of %s, refused %d", res.Signed, access.SignerName, res.Refused)
	}
	return ctrl.Result{}, nil
}
