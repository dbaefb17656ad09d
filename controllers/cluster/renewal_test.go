package cluster_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
	"github.com/basalt-dev/basalt/controllers/pkisecrets"
	"github.com/basalt-dev/basalt/test/envtest"
)

// rolloutState is, for the control-plane Machines of a cluster, which have a stored Plan their
// agent has not applied (a restart in flight) and which wait for their turn.
type rolloutState struct {
	pending, waiting []string
	messages         map[string]string
	hashes           map[string]string
}

func readRollout(ctx context.Context, ns, cluster string) (rolloutState, error) {
	st := rolloutState{messages: map[string]string{}, hashes: map[string]string{}}
	cp, _, err := clusterMachines(ctx, ns, cluster)
	if err != nil {
		return st, err
	}
	for i := range cp {
		m := &cp[i]
		_, hash, err := storedPlan(ctx, m)
		if err != nil {
			return st, err
		}
		st.hashes[m.Name] = hash
		if m.Status.PlanHash != hash {
			st.pending = append(st.pending, m.Name)
		}
		if c, err := envtest.Condition(m.Status.Conditions, basaltv1.MachineUpToDate); err == nil && c.Status == metav1.ConditionFalse {
			if c.Reason != basaltv1.ReasonWaitingForRollout {
				return st, fmt.Errorf("%s: UpToDate False with reason %s", m.Name, c.Reason)
			}
			st.waiting = append(st.waiting, m.Name)
			st.messages[m.Name] = c.Message
		}
	}
	return st, nil
}

// TestRenewalRestartsOneControlPlaneNodeAtATime: basalt.dev/renew-certificates reissues every
// leaf, and the new certificates reach the control-plane nodes one at a time: a node's new Plan
// (which restarts etcd and kube-apiserver) is stored only when no other control-plane node is
// applying a Plan or reports either service unhealthy; the others say why they wait (UpToDate
// False, WaitingForRollout). The renewal is Completed once every node runs certificates issued
// after the request; the same value again asks nothing.
func TestRenewalRestartsOneControlPlaneNodeAtATime(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	h := startControllers(t, ns)
	agents := runAgents(t, ns, h.etcd)
	for i := range 3 {
		createHost(t, ns, hostInput{name: fmt.Sprintf("cp-%d", i), labels: cpLabels, address: fmt.Sprintf("10.0.4.1%d", i), inspected: true})
	}
	createHost(t, ns, hostInput{name: "w-0", labels: workerLabels, address: "10.0.4.20", inspected: true})
	c := newCluster(ns, "renew", 3, 1)
	if err := env.Client.Create(ctx, c); err != nil {
		t.Fatal(err)
	}
	waitClusterReady(t, c, wait)
	cp, _, err := clusterMachines(ctx, ns, "renew")
	if err != nil {
		t.Fatal(err)
	}
	before, err := readRollout(ctx, ns, "renew")
	if err != nil {
		t.Fatal(err)
	}
	adminBefore := pkiData(t, ns, pkisecrets.KubeconfigSecretName("renew"))
	for _, m := range cp {
		agents.Hold(m.Name) // the agents apply nothing until the test lets them
	}

	updateCluster(t, c, func(c *basaltv1.Cluster) {
		c.Annotations = map[string]string{basaltv1.AnnotationRenewCertificates: "r1"}
	})
	// Exactly one control-plane node gets its new Plan; the two others wait, naming it.
	var first string
	envtest.Eventually(t, wait, func() error {
		st, err := readRollout(ctx, ns, "renew")
		if err != nil {
			return err
		}
		if len(st.pending) != 1 || len(st.waiting) != 2 {
			return fmt.Errorf("pending %v, waiting %v", st.pending, st.waiting)
		}
		first = st.pending[0]
		for _, w := range st.waiting {
			if msg := st.messages[w]; !strings.Contains(msg, "Machine "+first+" has not applied its Plan") || !strings.Contains(msg, "restarts etcd and kube-apiserver") {
				return fmt.Errorf("%s waits with %q", w, msg)
			}
			if st.hashes[w] != before.hashes[w] {
				t.Fatalf("the Plan of %s changed while it waits", w)
			}
		}
		return nil
	})
	got, err := get(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	if r := got.Status.CertificateRenewal; r == nil || r.Request != "r1" || r.Phase != basaltv1.RenewalPhaseRenewing {
		t.Fatalf("status.certificateRenewal during the rollout: %+v", r)
	}
	for _, m := range cp {
		if m.Name == first {
			continue // applying its Plan: not Ready until the agent reports it
		}
		mm := &basaltv1.Machine{}
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(&m), mm); err != nil {
			t.Fatal(err)
		}
		if err := conditionIs(mm.Status.Conditions, basaltv1.ConditionReady, metav1.ConditionTrue, ""); err != nil {
			t.Errorf("%s while it waits for its turn: %v", m.Name, err)
		}
	}

	// The first node applies its Plan but its kube-apiserver is not healthy yet: the others keep
	// waiting, now for its health.
	setApplied(ctx, t, ns, first, "kube-apiserver")
	time.Sleep(5 * time.Second) // more than one rollout requeue (3 s)
	envtest.Eventually(t, wait, func() error {
		st, err := readRollout(ctx, ns, "renew")
		if err != nil {
			return err
		}
		if len(st.pending) != 0 || len(st.waiting) != 2 {
			return fmt.Errorf("while %s is unhealthy: pending %v, waiting %v", first, st.pending, st.waiting)
		}
		for _, w := range st.waiting {
			if msg := st.messages[w]; !strings.Contains(msg, "Machine "+first+" is not healthy (kube-apiserver: restarted, starting)") {
				return fmt.Errorf("%s waits with %q", w, msg)
			}
		}
		return nil
	})

	// Healthy again: the next node takes its turn, one only.
	agents.Release(first)
	var second string
	envtest.Eventually(t, wait, func() error {
		st, err := readRollout(ctx, ns, "renew")
		if err != nil {
			return err
		}
		if len(st.pending) != 1 || st.pending[0] == first || len(st.waiting) != 1 {
			return fmt.Errorf("pending %v, waiting %v", st.pending, st.waiting)
		}
		second = st.pending[0]
		return nil
	})
	// A node whose own kube-apiserver is down does not wait: its restart takes nothing away
	// (and waiting could be forever, e.g. when expired certificates keep every member down).
	var third string
	for _, m := range cp {
		if m.Name != first && m.Name != second {
			third = m.Name
		}
	}
	setApplied(ctx, t, ns, third, "kube-apiserver")
	envtest.Eventually(t, wait, func() error {
		st, err := readRollout(ctx, ns, "renew")
		if err != nil {
			return err
		}
		if !slices.Equal(sorted(st.pending...), sorted(second, third)) || len(st.waiting) != 0 {
			return fmt.Errorf("with %s down: pending %v, waiting %v; want %s and %s pending", third, st.pending, st.waiting, second, third)
		}
		return nil
	})
	for _, m := range cp {
		agents.Release(m.Name)
	}
	envtest.Eventually(t, wait, func() error {
		got, err := get(ctx, c)
		if err != nil {
			return err
		}
		r := got.Status.CertificateRenewal
		if r == nil || r.Phase != basaltv1.RenewalPhaseCompleted || r.Nodes != 4 || r.NodesTotal != 4 || r.CompletedAt == nil {
			return fmt.Errorf("status.certificateRenewal %+v", r)
		}
		st, err := readRollout(ctx, ns, "renew")
		if err != nil {
			return err
		}
		if len(st.waiting) != 0 || len(st.pending) != 0 {
			return fmt.Errorf("after the renewal: pending %v, waiting %v", st.pending, st.waiting)
		}
		for name, hash := range st.hashes {
			if hash == before.hashes[name] {
				return fmt.Errorf("the Plan of %s never changed", name)
			}
		}
		return nil
	})
	t.Logf("renewal rolled %s, then %s, then the third control-plane node", first, second)
	if slices.Equal(adminBefore[pkisecrets.KubeconfigKey], pkiData(t, ns, pkisecrets.KubeconfigSecretName("renew"))[pkisecrets.KubeconfigKey]) {
		t.Error("the admin kubeconfig still holds the old certificate")
	}

	// The same value again asks nothing: no Plan changes.
	done, err := readRollout(ctx, ns, "renew")
	if err != nil {
		t.Fatal(err)
	}
	updateCluster(t, c, func(c *basaltv1.Cluster) { c.Labels = map[string]string{"touched": "yes"} })
	time.Sleep(5 * time.Second)
	again, err := readRollout(ctx, ns, "renew")
	if err != nil {
		t.Fatal(err)
	}
	for name, hash := range done.hashes {
		if again.hashes[name] != hash {
			t.Errorf("the Plan of %s changed again without a new request", name)
		}
	}
}

// setApplied writes what an agent reports right after it restarted service: its Plan applied,
// that service not healthy yet.
func setApplied(ctx context.Context, t *testing.T, ns, machine, service string) {
	t.Helper()
	m := &basaltv1.Machine{}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: machine}, m); err != nil {
		t.Fatal(err)
	}
	p, hash, err := storedPlan(ctx, m)
	if err != nil {
		t.Fatal(err)
	}
	before := m.DeepCopy()
	m.Status.PlanHash, m.Status.Components = hash, nil
	for _, s := range p.Services {
		m.Status.Components = append(m.Status.Components, basaltv1.ComponentHealth{Name: s.Name, Healthy: s.Name != service,
			Message: map[bool]string{true: "restarted, starting", false: "ok"}[s.Name == service]})
	}
	slices.SortFunc(m.Status.Components, func(a, b basaltv1.ComponentHealth) int { return strings.Compare(a.Name, b.Name) })
	if err := env.Client.Status().Patch(ctx, m, client.MergeFrom(before)); err != nil {
		t.Fatal(err)
	}
}

func sorted(s ...string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}
