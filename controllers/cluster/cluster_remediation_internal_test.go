package cluster

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
)

// TestRemediationCountsOnlyWhatTheManagerKnows: a Node the manager cannot read is no failure, and a
// silent agent is one only while the Node is known not Ready.
func TestRemediationCountsOnlyWhatTheManagerKnows(t *testing.T) {
	long := metav1.NewTime(time.Now().Add(-time.Hour))
	machine := func(conds ...metav1.Condition) *basaltv1.Machine {
		m := &basaltv1.Machine{ObjectMeta: metav1.ObjectMeta{Name: "w-0"}}
		m.Spec.HostRef = &basaltv1.LocalObjectReference{Name: "h"}
		m.Status.NodeName = "w-0"
		for _, c := range conds {
			c.LastTransitionTime = long
			m.Status.Conditions = append(m.Status.Conditions, c)
		}
		return m
	}
	silent := metav1.Condition{Type: basaltv1.MachineAgentConnected, Status: metav1.ConditionFalse, Reason: basaltv1.ReasonAgentSilent}
	nodeReady := metav1.Condition{Type: basaltv1.MachineNodeReady, Status: metav1.ConditionTrue, Reason: "KubeletReady"}
	nodeNotReady := metav1.Condition{Type: basaltv1.MachineNodeReady, Status: metav1.ConditionFalse, Reason: "NodeStatusUnknown"}
	unreachable := metav1.Condition{Type: basaltv1.MachineNodeReady, Status: metav1.ConditionUnknown, Reason: basaltv1.ReasonWorkloadClusterUnreachable}
	c := &basaltv1.Cluster{}
	for _, tc := range []struct {
		name string
		m    *basaltv1.Machine
		want bool
	}{
		{"agent silent, Node Ready", machine(silent, nodeReady), false},
		{"agent silent, workload API unreachable", machine(silent, unreachable), false},
		{"workload API unreachable", machine(unreachable), false},
		{"Node NotReady", machine(nodeNotReady), true},
		{"agent silent, Node NotReady", machine(silent, nodeNotReady), true},
	} {
		u, _ := needsRemediation(c, tc.m, time.Now(), time.Time{})
		if got := u != nil; got != tc.want {
			t.Errorf("%s: needs remediation %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestMaxUnhealthy(t *testing.T) {
	for _, tc := range []struct {
		v     *intstr.IntOrString
		total int
		want  int
	}{
		{nil, 1, 1}, {nil, 2, 1}, {nil, 5, 2}, {nil, 10, 4},
		{&intstr.IntOrString{Type: intstr.Int, IntVal: 0}, 5, 0},
		{&intstr.IntOrString{Type: intstr.String, StrVal: "100%"}, 3, 3},
		{&intstr.IntOrString{Type: intstr.String, StrVal: "not a percentage"}, 5, 2},
	} {
		c := &basaltv1.Cluster{}
		c.Spec.Remediation.MaxUnhealthy = tc.v
		if got := maxUnhealthy(c, tc.total); got != tc.want {
			t.Errorf("maxUnhealthy(%v of %d) = %d, want %d", tc.v, tc.total, got, tc.want)
		}
	}
}
