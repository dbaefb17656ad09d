package cluster

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/basalt-dev/basalt/agents/planstore"
	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
	"github.com/basalt-dev/basalt/bootstrap/pki"
	"github.com/basalt-dev/basalt/bootstrap/pki/pemcerts"
	"github.com/basalt-dev/basalt/bootstrap/plan"
	"github.com/basalt-dev/basalt/controllers/conditions"
)

// renewalPoll is how often a requested certificate renewal looks at the nodes again while their
// Plans roll out (a Machine's change also wakes the Cluster).
const renewalPoll = 10 * time.Second

// acceptRenewalRequest starts a renewal when basalt.dev/renew-certificates carries a value the
// status has not served yet, and returns the time before which every leaf must be reissued
// (zero: none asked). A new value while a renewal runs starts another from now: it supersedes.
func (r *Reconciler) acceptRenewalRequest(s *scope) time.Time {
	c := s.cluster
	req := c.Annotations[basaltv1.AnnotationRenewCertificates]
	st := c.Status.CertificateRenewal
	if req != "" && (st == nil || st.Request != req) {
		st = &basaltv1.CertificateRenewalStatus{Request: clip(req, 253), Phase: basaltv1.RenewalPhaseRenewing,
			RequestedAt: metav1.NewTime(r.now().Truncate(time.Second))}
		c.Status.CertificateRenewal = st
		r.Recorder.Eventf(c, nil, corev1.EventTypeNormal, basaltv1.ReasonCertificateRenewalStarted, "RenewCertificates",
			"Renewing every leaf certificate (request %q): the control-plane nodes take the new ones one at a time", st.Request)
	}
	if st == nil {
		return time.Time{}
	}
	return st.RequestedAt.Time
}

// reconcileRenewal follows a requested certificate renewal until every node runs a Plan whose
// certificates were all issued after the request, applied with every component healthy; the
// Machine controller rolls the control-plane nodes one at a time meanwhile.
func (r *Reconciler) reconcileRenewal(ctx context.Context, s *scope) (ctrl.Result, error) {
	c := s.cluster
	st := c.Status.CertificateRenewal
	if st == nil || st.Phase != basaltv1.RenewalPhaseRenewing || s.material == nil {
		return ctrl.Result{}, nil
	}
	cp, workers := s.boundNodes()
	var done int32
	var waiting []string
	for _, n := range append(cp, workers...) {
		why, err := r.renewedOn(ctx, n, st.RequestedAt.Time)
		if err != nil {
			return ctrl.Result{}, err
		}
		if why == "" {
			done++
		} else {
			waiting = append(waiting, n.machine.Name+": "+why)
		}
	}
	st.Nodes, st.NodesTotal = done, int32(len(cp)+len(workers))
	if len(waiting) > 0 {
		st.Message = clip(fmt.Sprintf("%d of %d nodes run the renewed certificates; waiting for %s", done, st.NodesTotal, strings.Join(waiting, "; ")), 1000)
		return ctrl.Result{RequeueAfter: renewalPoll}, nil
	}
	now := metav1.NewTime(r.now().Truncate(time.Second))
	st.Phase, st.CompletedAt = basaltv1.RenewalPhaseCompleted, &now
	st.Message = fmt.Sprintf("every node (%d) runs certificates issued after %s", done, st.RequestedAt.UTC().Format(time.RFC3339))
	ctrl.LoggerFrom(ctx).Info("Certificates renewed on every node", "cluster", klog.KObj(c), "request", st.Request,
		"took", now.Sub(st.RequestedAt.Time).String())
	r.Recorder.Eventf(c, nil, corev1.EventTypeNormal, basaltv1.ReasonCertificatesRenewed, "RenewCertificates",
		"Every node (%d) runs the renewed certificates (request %q, %s after it)", done, st.Request, now.Sub(st.RequestedAt.Time).Round(time.Second))
	return ctrl.Result{}, nil
}

// renewedOn says what node n still lacks of a renewal asked at: "" once its agent has applied
// a stored Plan whose certificates were all issued at or after it, with every component healthy.
func (r *Reconciler) renewedOn(ctx context.Context, n node, at time.Time) (string, error) {
	m := n.machine
	p, hash, err := planstore.LoadPlan(ctx, r.apiReader(), m.Namespace, n.host.Name)
	if errors.Is(err, planstore.ErrNoPlan) {
		return "no Plan yet", nil
	}
	if err != nil {
		return "", err
	}
	if old := oldCertificates(p, at); len(old) > 0 {
		if cond := meta.FindStatusCondition(m.Status.Conditions, basaltv1.MachineUpToDate); cond != nil && cond.Reason == basaltv1.ReasonWaitingForRollout {
			return "its Plan waits for its turn", nil
		}
		return fmt.Sprintf("its Plan still has %d older certificate(s), e.g. %s", len(old), old[0]), nil
	}
	if m.Status.PlanHash != hash {
		return "the agent has not applied Plan " + clip(hash, 12) + " yet", nil
	}
	if !conditions.IsTrue(m, basaltv1.MachinePlanApplied) {
		return "its components are not all healthy yet", nil
	}
	return "", nil
}

// oldCertificates lists the Plan's certificate files (*.crt) holding a leaf issued before at.
func oldCertificates(p *plan.Plan, at time.Time) []string {
	var old []string
	for _, f := range p.Files {
		if !strings.HasSuffix(f.Path, ".crt") {
			continue
		}
		certs, err := pemcerts.Parse(f.Content)
		if err != nil {
			continue
		}
		if slices.ContainsFunc(certs, func(c *x509.Certificate) bool { return !c.IsCA && pki.IssuedAt(c).Before(at) }) {
			old = append(old, f.Path)
		}
	}
	return old
}
