package machine

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
	"github.com/basalt-dev/basalt/controllers/hostclaim"
)

// observeCluster reads the Cluster named by spec.cluster into the scope.
func (r *Reconciler) observeCluster(ctx context.Context, s *scope) error {
	c := &basaltv1.Cluster{}
	err := r.Client.Get(ctx, client.ObjectKey{Namespace: s.machine.Namespace, Name: s.machine.Spec.Cluster}, c)
	switch {
	case apierrors.IsNotFound(err):
		return nil
	case err != nil:
		return err
	}
	s.cluster = c
	return nil
}

// reconcileClusterLink labels the Machine with its cluster and makes the Cluster an owner, so
// that `kubectl get machines -l basalt.dev/cluster=NAME` works and deleting the Cluster cascades
// to Machines created by hand too.
func (r *Reconciler) reconcileClusterLink(_ context.Context, s *scope) (ctrl.Result, error) {
	m := s.machine
	if m.Labels == nil {
		m.Labels = map[string]string{}
	}
	m.Labels[basaltv1.LabelClusterName] = m.Spec.Cluster
	m.Labels[basaltv1.LabelRole] = string(m.Spec.Role)
	if s.cluster == nil {
		return ctrl.Result{RequeueAfter: hostRequeue}, nil
	}
	for _, o := range m.OwnerReferences {
		if o.UID == s.cluster.UID {
			return ctrl.Result{}, nil
		}
	}
	m.OwnerReferences = append(m.OwnerReferences, metav1.OwnerReference{
		APIVersion: basaltv1.GroupVersion.String(),
		Kind:       "Cluster",
		Name:       s.cluster.Name,
		UID:        s.cluster.UID,
	})
	return ctrl.Result{}, nil
}

// reconcileHost makes sure the Host named by spec.hostRef is claimed by this Machine. A Host is
// claimed by writing status.consumerRef with an optimistic lock, so two Machines racing for one
// Host can never both win: the loser gets a conflict, re-reads, and sees HostInUse.
func (r *Reconciler) reconcileHost(ctx context.Context, s *scope) (ctrl.Result, error) {
	m := s.machine
	if m.Spec.HostRef == nil {
		s.hostProblem, s.hostMessage = basaltv1.ReasonWaitingForHost, "no Host is bound yet; the Cluster controller binds an Available Host that matches the selector"
		return ctrl.Result{}, nil
	}
	h := &basaltv1.Host{}
	if err := r.Client.Get(ctx, client.ObjectKey{Namespace: m.Namespace, Name: m.Spec.HostRef.Name}, h); err != nil {
		if apierrors.IsNotFound(err) {
			s.hostProblem, s.hostMessage = basaltv1.ReasonHostNotFound, fmt.Sprintf("Host %q does not exist", m.Spec.HostRef.Name)
			return ctrl.Result{RequeueAfter: hostRequeue}, nil
		}
		return ctrl.Result{}, err
	}
	s.host = h
	switch {
	case h.Status.ConsumerRef != nil && h.Status.ConsumerRef.Name == m.Name:
		return ctrl.Result{}, nil
	case h.Status.ConsumerRef != nil:
		s.hostProblem, s.hostMessage = basaltv1.ReasonHostInUse, fmt.Sprintf("Host %q is used by Machine %q", h.Name, h.Status.ConsumerRef.Name)
		return ctrl.Result{}, nil
	case !h.DeletionTimestamp.IsZero():
		s.hostProblem, s.hostMessage = basaltv1.ReasonHostNotFound, fmt.Sprintf("Host %q is being deleted", h.Name)
		return ctrl.Result{}, nil
	case h.Status.State != basaltv1.HostStateAvailable:
		s.hostProblem, s.hostMessage = basaltv1.ReasonHostNotAvailable, fmt.Sprintf("Host %q is %s; waiting for it to become Available", h.Name, stateOrUnknown(h.Status.State))
		return ctrl.Result{}, nil
	}
	if err := hostclaim.Claim(ctx, r.Client, h, m.Name); err != nil {
		return ctrl.Result{}, err
	}
	ctrl.LoggerFrom(ctx).Info("Claimed Host", "machine", klog.KObj(m), "host", klog.KObj(h), "reason", "HostRefSet")
	return ctrl.Result{}, nil
}

// reconcileDelete releases the Machine's Host and lets the Machine go. Nothing has been installed
// on a Host yet at this stage of Basalt, so there is nothing to drain or wipe.
func (r *Reconciler) reconcileDelete(ctx context.Context, s *scope) (ctrl.Result, error) {
	m := s.machine
	if m.Spec.HostRef != nil {
		h := &basaltv1.Host{}
		err := r.Client.Get(ctx, client.ObjectKey{Namespace: m.Namespace, Name: m.Spec.HostRef.Name}, h)
		switch {
		case apierrors.IsNotFound(err):
		case err != nil:
			return ctrl.Result{}, err
		default:
			if err := hostclaim.Release(ctx, r.Client, h, m.Name); err != nil {
				return ctrl.Result{}, err
			}
		}
	}
	controllerutil.RemoveFinalizer(m, basaltv1.MachineFinalizer)
	return ctrl.Result{}, nil
}

func stateOrUnknown(s basaltv1.HostState) string {
	if s == "" {
		return "not yet registered"
	}
	return string(s)
}
