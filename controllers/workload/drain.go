package workload

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Cordon marks the Node unschedulable (or schedulable again, with unschedulable false). A missing
// Node is not an error: there is nothing to cordon.
func Cordon(ctx context.Context, c client.Client, node string, unschedulable bool) error {
	n := &corev1.Node{}
	if err := c.Get(ctx, client.ObjectKey{Name: node}, n); err != nil {
		return client.IgnoreNotFound(err)
	}
	if n.Spec.Unschedulable == unschedulable {
		return nil
	}
	before := n.DeepCopy()
	n.Spec.Unschedulable = unschedulable
	if err := c.Patch(ctx, n, client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{})); err != nil {
		return fmt.Errorf("setting unschedulable=%v on Node %s: %w", unschedulable, node, err)
	}
	return nil
}

// NoEvictionRetry makes clients built from cfg return an eviction refused by a
// PodDisruptionBudget at once. The API server answers 429 with a Retry-After header, which
// client-go obeys by retrying the same request up to ten times (100 s with the server's 10 s);
// a drain pass then blocks on one guarded pod instead of reporting it and coming back later.
func NoEvictionRetry(cfg *rest.Config) {
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper { return evictionNoRetry{rt} })
}

type evictionNoRetry struct{ next http.RoundTripper }

func (e evictionNoRetry) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := e.next.RoundTrip(req)
	if err == nil && resp.StatusCode == http.StatusTooManyRequests && strings.HasSuffix(req.URL.Path, "/eviction") {
		resp.Header.Del("Retry-After")
	}
	return resp, err
}

// DrainStatus is what one pass of Drain saw.
type DrainStatus struct {
	// Remaining lists the pods, as namespace/name, that still have to leave the node: being
	// evicted, terminating, or refused by a PodDisruptionBudget.
	Remaining []string
	// Blocked lists the pods whose eviction a PodDisruptionBudget refused this pass.
	Blocked []string
}

// Done says whether the node has no pod left to evict.
func (s DrainStatus) Done() bool { return len(s.Remaining) == 0 }

// String summarises the status for conditions and events.
func (s DrainStatus) String() string {
	if s.Done() {
		return "drained"
	}
	msg := fmt.Sprintf("%d pod(s) left: %s", len(s.Remaining), clipList(s.Remaining, 5))
	if len(s.Blocked) > 0 {
		msg += fmt.Sprintf("; a PodDisruptionBudget refuses to evict %s", clipList(s.Blocked, 5))
	}
	return msg
}

// Drain runs one pass of a node drain, like `kubectl drain --ignore-daemonsets
// --delete-emptydir-data --force`: every pod bound to the node is asked to leave through the
// Eviction API, which honours PodDisruptionBudgets, except DaemonSet pods (their controller puts
// them back at once), mirror pods of static manifests, and pods that already finished. It does
// not wait: call it again until Done. Pods already terminating are not evicted again.
func Drain(ctx context.Context, c client.Client, node string) (DrainStatus, error) {
	pods := &corev1.PodList{}
	if err := c.List(ctx, pods, client.MatchingFields{"spec.nodeName": node}); err != nil {
		return DrainStatus{}, fmt.Errorf("listing the pods of Node %s: %w", node, err)
	}
	var st DrainStatus
	for i := range pods.Items {
		p := &pods.Items[i]
		if !mustLeave(p) {
			continue
		}
		id := p.Namespace + "/" + p.Name
		st.Remaining = append(st.Remaining, id)
		if !p.DeletionTimestamp.IsZero() {
			continue
		}
		ev := &policyv1.Eviction{ObjectMeta: metav1.ObjectMeta{Namespace: p.Namespace, Name: p.Name}}
		err := c.SubResource("eviction").Create(ctx, p, ev)
		switch {
		case err == nil, apierrors.IsNotFound(err):
		case apierrors.IsTooManyRequests(err):
			// A PodDisruptionBudget does not allow it now; the next pass asks again.
			st.Blocked = append(st.Blocked, id)
		default:
			return st, fmt.Errorf("evicting pod %s from Node %s: %w", id, node, err)
		}
	}
	slices.Sort(st.Remaining)
	slices.Sort(st.Blocked)
	return st, nil
}

// mustLeave says whether a drain evicts p.
func mustLeave(p *corev1.Pod) bool {
	if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
		return false
	}
	if _, mirror := p.Annotations[corev1.MirrorPodAnnotationKey]; mirror {
		return false
	}
	for _, ref := range p.OwnerReferences {
		if ref.Controller != nil && *ref.Controller && ref.Kind == "DaemonSet" {
			return false
		}
	}
	return true
}

func clipList(items []string, n int) string {
	if len(items) <= n {
		return strings.Join(items, ", ")
	}
	return strings.Join(items[:n], ", ") + fmt.Sprintf(" and %d more", len(items)-n)
}
