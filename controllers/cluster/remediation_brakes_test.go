package cluster_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
	"github.com/basalt-dev/basalt/test/envtest"
)

// TestRemediationBrakes: remediation never makes things worse. A worker whose agent is silent
// while its Node is Ready is left alone; when more Machines are unhealthy at once than
// spec.remediation.maxUnhealthy allows (40% by default: 2 of 4), none is remediated and the
// Cluster says TooManyUnhealthy; once the others recover, the one still sick is replaced.
func TestRemediationBrakes(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	h := startControllers(t, ns)
	agents := runAgents(t, ns, h.etcd)
	createHost(t, ns, hostInput{name: "cp-0", labels: cpLabels, address: "10.0.7.10", inspected: true})
	hosts := map[string]*basaltv1.Host{}
	for i := range 4 { // three workers and a spare
		name := fmt.Sprintf("w-%d", i)
		hosts[name] = createHost(t, ns, hostInput{name: name, labels: workerLabels, address: fmt.Sprintf("10.0.7.2%d", i), inspected: true})
	}
	c := newCluster(ns, "brakes", 1, 3)
	c.Spec.Remediation = basaltv1.RemediationSpec{
		NodeNotReadyTimeout: &metav1.Duration{Duration: time.Second},
		AgentSilentTimeout:  &metav1.Duration{Duration: time.Second},
	}
	if err := env.Client.Create(ctx, c); err != nil {
		t.Fatal(err)
	}
	waitClusterReady(t, c, 2*wait)
	_, workers, err := clusterMachines(ctx, ns, "brakes")
	if err != nil || len(workers) != 3 {
		t.Fatalf("%d workers (%v)", len(workers), err)
	}
	a, b, d := workers[0], workers[1], workers[2]
	notDeleted := func(names ...string) error {
		for _, name := range names {
			m := &basaltv1.Machine{}
			if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, m); err != nil {
				return fmt.Errorf("Machine %s: %w", name, err)
			}
			if !m.DeletionTimestamp.IsZero() {
				return fmt.Errorf("Machine %s is being deleted (%s)", name, m.Annotations[basaltv1.AnnotationRemediatedFor])
			}
		}
		return nil
	}

	// 1. The agent of worker a goes silent; its Node stays Ready: no remediation.
	agents.Hold(a.Name)
	env.UpdateHostStatus(t, hosts[a.Spec.HostRef.Name], func(h *basaltv1.Host) {
		old := metav1.NewTime(time.Now().Add(-time.Hour))
		h.Status.Agent.LastSeen = &old
	})
	envtest.Eventually(t, wait, func() error {
		m := &basaltv1.Machine{}
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(&a), m); err != nil {
			return err
		}
		return conditionIs(m.Status.Conditions, basaltv1.MachineAgentConnected, metav1.ConditionFalse, basaltv1.ReasonAgentSilent)
	})
	time.Sleep(5 * time.Second) // five times the timeout
	if err := notDeleted(a.Name); err != nil {
		t.Fatalf("a silent agent on a Ready Node was remediated: %v", err)
	}

	// 2. Three of four Machines NotReady at once (a switch died, say): more than maxUnhealthy.
	// Each Machine notices its Node at its own poll (up to a minute apart): with a long
	// nodeNotReadyTimeout until all three have, the Cluster controller sees them turn unhealthy
	// together, as it would the nodes behind one dead switch, and not the first one alone (which
	// it would rightly remediate).
	// Both timeouts: a's agent is silent already, and a silent agent on a NotReady Node counts
	// after agentSilentTimeout, so a alone would be replaced the moment its NotReady is seen.
	updateCluster(t, c, func(c *basaltv1.Cluster) {
		c.Spec.Remediation.NodeNotReadyTimeout = &metav1.Duration{Duration: time.Hour}
		c.Spec.Remediation.AgentSilentTimeout = &metav1.Duration{Duration: time.Hour}
	})
	for _, m := range []basaltv1.Machine{a, b, d} {
		agents.Hold(m.Name)
		setNodeReady(t, m.Name, corev1.ConditionFalse)
	}
	waitNodeReadySeen(t, metav1.ConditionFalse, a, b, d)
	updateCluster(t, c, func(c *basaltv1.Cluster) {
		c.Spec.Remediation.NodeNotReadyTimeout = &metav1.Duration{Duration: time.Second}
		c.Spec.Remediation.AgentSilentTimeout = &metav1.Duration{Duration: time.Second}
	})
	envtest.Eventually(t, 3*wait, func() error {
		got, err := get(ctx, c)
		if err != nil {
			return err
		}
		if err := conditionIs(got.Status.Conditions, basaltv1.ClusterMachinesHealthy, metav1.ConditionFalse, basaltv1.ReasonTooManyUnhealthy); err != nil {
			var states []string
			for _, m := range []basaltv1.Machine{a, b, d} {
				mm := &basaltv1.Machine{}
				if err := env.Client.Get(ctx, client.ObjectKeyFromObject(&m), mm); err == nil {
					if nr := meta.FindStatusCondition(mm.Status.Conditions, basaltv1.MachineNodeReady); nr != nil {
						states = append(states, fmt.Sprintf("%s NodeReady %s/%s", m.Name, nr.Status, nr.Reason))
					}
				}
			}
			return fmt.Errorf("%w (%s)", err, strings.Join(states, "; "))
		}
		if msg := meta.FindStatusCondition(got.Status.Conditions, basaltv1.ClusterMachinesHealthy).Message; !strings.Contains(msg, "3 of 4 Machines are unhealthy") {
			return fmt.Errorf("message %q", msg)
		}
		return nil
	})
	time.Sleep(5 * time.Second)
	if err := notDeleted(a.Name, b.Name, d.Name); err != nil {
		t.Fatalf("remediation went on with 3 of 4 Machines unhealthy: %v", err)
	}

	// 3. Two recover: one unhealthy is within the limit, and it is replaced. (The long timeout
	// again until both Machines have seen their Nodes Ready: with one of them still NotReady, two
	// unhealthy of four are within 40% too, and that one could be replaced first.)
	updateCluster(t, c, func(c *basaltv1.Cluster) {
		c.Spec.Remediation.NodeNotReadyTimeout = &metav1.Duration{Duration: time.Hour}
	})
	for _, m := range []basaltv1.Machine{b, d} {
		agents.Release(m.Name)
		setNodeReady(t, m.Name, corev1.ConditionTrue)
	}
	waitNodeReadySeen(t, metav1.ConditionTrue, b, d)
	updateCluster(t, c, func(c *basaltv1.Cluster) {
		c.Spec.Remediation.NodeNotReadyTimeout = &metav1.Duration{Duration: time.Second}
	})
	envtest.Eventually(t, 3*wait, func() error {
		m := &basaltv1.Machine{}
		err := env.Client.Get(ctx, client.ObjectKeyFromObject(&a), m)
		if err != nil {
			return client.IgnoreNotFound(err)
		}
		if m.DeletionTimestamp.IsZero() {
			got, _ := get(ctx, c)
			return fmt.Errorf("Machine %s not remediated yet: %s", m.Name, readyMessage(got.Status.Conditions))
		}
		return nil
	})
	if err := notDeleted(b.Name, d.Name); err != nil {
		t.Fatal(err)
	}
}

// waitNodeReadySeen waits until every Machine's NodeReady condition has status, nudging the
// Machines that have not polled their Node yet.
func waitNodeReadySeen(t *testing.T, status metav1.ConditionStatus, ms ...basaltv1.Machine) {
	t.Helper()
	envtest.Eventually(t, 2*wait, func() error {
		for _, m := range ms {
			mm := &basaltv1.Machine{}
			if err := env.Client.Get(context.Background(), client.ObjectKeyFromObject(&m), mm); err != nil {
				return err
			}
			if nr := meta.FindStatusCondition(mm.Status.Conditions, basaltv1.MachineNodeReady); nr == nil || nr.Status != status {
				touch(t, mm)
				return fmt.Errorf("Machine %s has not seen NodeReady %s yet: %+v", m.Name, status, nr)
			}
		}
		return nil
	})
}
