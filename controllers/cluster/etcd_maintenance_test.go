package cluster_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
	"github.com/basalt-dev/basalt/test/envtest"
)

// TestEtcdNoSpaceIsRecovered: when the cluster's etcd raises NOSPACE (its database at the quota,
// writes refused), EtcdReady says so, and the Cluster controller recovers it step by step —
// compaction, each voter defragmented once and one at a time, the alarm disarmed — after which
// EtcdReady is True again.
func TestEtcdNoSpaceIsRecovered(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	h := startControllers(t, ns)
	runAgents(t, ns, h.etcd)
	for i := range 3 {
		createHost(t, ns, hostInput{name: fmt.Sprintf("cp-%d", i), labels: cpLabels, address: fmt.Sprintf("10.0.5.1%d", i), inspected: true})
	}
	c := newCluster(ns, "full", 3, 0)
	if err := env.Client.Create(ctx, c); err != nil {
		t.Fatal(err)
	}
	envtest.Eventually(t, 2*wait, func() error {
		got, err := get(ctx, c)
		if err != nil {
			return err
		}
		return conditionIs(got.Status.Conditions, basaltv1.ClusterEtcdReady, metav1.ConditionTrue, "")
	})
	before := len(h.etcd.History())

	h.etcd.RaiseNoSpace(2200<<20, 100<<20)
	sawExceeded := false
	envtest.Eventually(t, wait, func() error {
		got, err := get(ctx, c)
		if err != nil {
			return err
		}
		if conditionIs(got.Status.Conditions, basaltv1.ClusterEtcdReady, metav1.ConditionFalse, basaltv1.ReasonEtcdSpaceExceeded) == nil {
			sawExceeded = true
		}
		if !sawExceeded {
			return fmt.Errorf("EtcdReady has not reported the NOSPACE alarm yet: %v", got.Status.Conditions)
		}
		return conditionIs(got.Status.Conditions, basaltv1.ClusterEtcdReady, metav1.ConditionTrue, "")
	})
	steps := h.etcd.History()[before:]
	var kinds []string
	defragmented := map[string]int{}
	for _, s := range steps {
		kind, what, _ := strings.Cut(s, " ")
		if len(kinds) == 0 || kinds[len(kinds)-1] != kind {
			kinds = append(kinds, kind)
		}
		if kind == "Defragment" {
			defragmented[what]++
		}
	}
	if !slices.Equal(kinds, []string{"Compact", "Defragment", "Disarm"}) || len(defragmented) != 3 {
		t.Fatalf("recovery steps %v, want a compaction, each of the 3 members defragmented, then the alarm disarmed", steps)
	}
	for m, n := range defragmented {
		if n != 1 {
			t.Errorf("member %s defragmented %d times during the recovery", m, n)
		}
	}
	t.Logf("Recovery: %v", steps)
}
