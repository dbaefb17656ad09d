package cli_test

// kstatus compatibility: what kubectl wait, Flux (kstatus) and Argo CD make of Basalt's status.
// These tests live with basaltctl because they run the same real API server and kubectl.

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/controller-runtime/pkg/client"

	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
)

// setReady writes the Ready condition and status.observedGeneration (the generation the status
// was computed from) through the status subresource, the way the controllers do.
func setReady(t *testing.T, obj client.Object, s metav1.ConditionStatus, reason, msg string, observed int64) {
	t.Helper()
	type withConditions interface {
		client.Object
		GetConditions() []metav1.Condition
		SetConditions([]metav1.Condition)
	}
	o := obj.(withConditions)
	conds := o.GetConditions()
	meta.SetStatusCondition(&conds, metav1.Condition{Type: basaltv1.ConditionReady, Status: s, Reason: reason, Message: msg, ObservedGeneration: observed})
	o.SetConditions(conds)
	switch x := obj.(type) {
	case *basaltv1.Cluster:
		x.Status.ObservedGeneration = observed
	case *basaltv1.Machine:
		x.Status.ObservedGeneration = observed
	case *basaltv1.Host:
		x.Status.ObservedGeneration = observed
	}
	if err := env.Client.Status().Update(context.Background(), obj); err != nil {
		t.Fatalf("writing the status of %s: %v", obj.GetName(), err)
	}
}

// kstatusOf reads obj back from the API server as unstructured, the way Flux and kubectl see it,
// and computes its kstatus.
func kstatusOf(t *testing.T, obj client.Object, kind string) *status.Result {
	t.Helper()
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(basaltv1.GroupVersion.WithKind(kind))
	if err := env.Client.Get(context.Background(), client.ObjectKeyFromObject(obj), u); err != nil {
		t.Fatal(err)
	}
	res, err := status.Compute(u)
	if err != nil {
		t.Fatalf("kstatus of %s %s: %v", kind, obj.GetName(), err)
	}
	return res
}

func TestKstatus(t *testing.T) {
	ns := env.Namespace(t)

	t.Run("a new object nobody has reconciled yet is InProgress from the first apply", func(t *testing.T) {
		// The CRDs default status.observedGeneration to 0: behind generation 1 until the
		// manager's first reconcile, so kstatus does not call a fresh object Current.
		c := newCluster(ns, "fresh")
		mustCreate(t, c)
		m := &basaltv1.Machine{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "fresh"},
			Spec: basaltv1.MachineSpec{Cluster: "fresh", Role: basaltv1.RoleWorker}}
		mustCreate(t, m)
		h := &basaltv1.Host{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "fresh"},
			Spec: basaltv1.HostSpec{SSH: &basaltv1.SSHSpec{Address: "10.0.0.8", PrivateKeySecretRef: basaltv1.SecretKeyReference{Name: "s", Key: "k"}}}}
		mustCreate(t, h)
		for kind, obj := range map[string]client.Object{"Cluster": c, "Machine": m, "Host": h} {
			res := kstatusOf(t, obj, kind)
			if res.Status != status.InProgressStatus || !strings.Contains(res.Message, "latest observed generation is 0") {
				t.Errorf("%s: kstatus = %s (%s), want InProgress: generation 1 not observed", kind, res.Status, res.Message)
			}
		}
	})

	t.Run("Stalled is Failed; Paused with Ready True is Current", func(t *testing.T) {
		c := newCluster(ns, "stuck")
		mustCreate(t, c)
		setReady(t, c, metav1.ConditionFalse, basaltv1.ReasonRemediationLimitReached, "3 remediations in 1h", c.Generation)
		conds := c.Status.Conditions
		meta.SetStatusCondition(&conds, metav1.Condition{Type: basaltv1.ConditionStalled, Status: metav1.ConditionTrue,
			Reason: basaltv1.ReasonRemediationLimitReached, Message: "3 remediations in 1h"})
		c.Status.Conditions = conds
		if err := env.Client.Status().Update(context.Background(), c); err != nil {
			t.Fatal(err)
		}
		if res := kstatusOf(t, c, "Cluster"); res.Status != status.FailedStatus || res.Message != "3 remediations in 1h" {
			t.Errorf("kstatus = %s (%s), want Failed", res.Status, res.Message)
		}
		p := newCluster(ns, "paused")
		mustCreate(t, p)
		setReady(t, p, metav1.ConditionTrue, basaltv1.ReasonReady, "", p.Generation)
		conds = p.Status.Conditions
		meta.SetStatusCondition(&conds, metav1.Condition{Type: basaltv1.ConditionPaused, Status: metav1.ConditionTrue, Reason: basaltv1.ReasonPaused})
		p.Status.Conditions = conds
		if err := env.Client.Status().Update(context.Background(), p); err != nil {
			t.Fatal(err)
		}
		if res := kstatusOf(t, p, "Cluster"); res.Status != status.CurrentStatus {
			t.Errorf("paused Ready Cluster: kstatus = %s (%s), want Current", res.Status, res.Message)
		}
	})

	t.Run("Ready Cluster is Current", func(t *testing.T) {
		c := newCluster(ns, "ready")
		mustCreate(t, c)
		setReady(t, c, metav1.ConditionTrue, basaltv1.ReasonReady, "", c.Generation)
		if res := kstatusOf(t, c, "Cluster"); res.Status != status.CurrentStatus {
			t.Fatalf("kstatus = %s (%s), want Current", res.Status, res.Message)
		}
	})

	t.Run("Cluster on its way up is InProgress with Ready's reason", func(t *testing.T) {
		c := newCluster(ns, "coming-up")
		mustCreate(t, c)
		setReady(t, c, metav1.ConditionFalse, basaltv1.ReasonWaitingForHosts, "HostsBound: control plane needs 3 more Available Host(s)", c.Generation)
		res := kstatusOf(t, c, "Cluster")
		if res.Status != status.InProgressStatus || !strings.Contains(res.Message, "needs 3 more Available Host(s)") {
			t.Fatalf("kstatus = %s (%s), want InProgress with Ready's message", res.Status, res.Message)
		}
	})

	t.Run("Ready Cluster whose new spec is not observed yet is InProgress", func(t *testing.T) {
		c := newCluster(ns, "changed")
		mustCreate(t, c)
		setReady(t, c, metav1.ConditionTrue, basaltv1.ReasonReady, "", c.Generation)
		c.Spec.ControlPlane.Replicas = 3
		if err := env.Client.Update(context.Background(), c); err != nil {
			t.Fatal(err)
		}
		res := kstatusOf(t, c, "Cluster")
		if res.Status != status.InProgressStatus || !strings.Contains(res.Message, "latest observed generation is 1") {
			t.Fatalf("kstatus = %s (%s), want InProgress: generation 2 not observed", res.Status, res.Message)
		}
	})

	t.Run("Ready Machine and Host are Current", func(t *testing.T) {
		m := &basaltv1.Machine{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "m"},
			Spec: basaltv1.MachineSpec{Cluster: "ready", Role: basaltv1.RoleWorker}}
		mustCreate(t, m)
		setReady(t, m, metav1.ConditionTrue, basaltv1.ReasonReady, "", m.Generation)
		h := &basaltv1.Host{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "h"},
			Spec: basaltv1.HostSpec{SSH: &basaltv1.SSHSpec{Address: "10.0.0.9", PrivateKeySecretRef: basaltv1.SecretKeyReference{Name: "s", Key: "k"}}}}
		mustCreate(t, h)
		setReady(t, h, metav1.ConditionTrue, basaltv1.ReasonReady, "", h.Generation)
		for kind, obj := range map[string]client.Object{"Machine": m, "Host": h} {
			if res := kstatusOf(t, obj, kind); res.Status != status.CurrentStatus {
				t.Errorf("%s: kstatus = %s (%s), want Current", kind, res.Status, res.Message)
			}
		}
	})
}

// TestKubectlWaitForReady runs `kubectl wait --for=condition=Ready cluster/NAME` from the PATH
// against the API server: it must wait while Ready is False and return once it turns True.
func TestKubectlWaitForReady(t *testing.T) {
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Fatalf("kubectl is not on the PATH; it is needed to prove kubectl wait works: %v", err)
	}
	ns := env.Namespace(t)
	kc := writeKubeconfig(t, env.Config, ns)
	c := newCluster(ns, "prod")
	mustCreate(t, c)
	setReady(t, c, metav1.ConditionFalse, basaltv1.ReasonWaitingForHosts, "HostsBound: waiting", c.Generation)

	// While Ready is False, a short wait times out.
	out, err := exec.Command(kubectl, "--kubeconfig", kc, "wait", "--for=condition=Ready", "cluster/prod", "--timeout=2s").CombinedOutput()
	if err == nil {
		t.Fatalf("kubectl wait returned while Ready=False:\n%s", out)
	}

	// A wait started now returns once the Cluster turns Ready.
	wait := exec.Command(kubectl, "--kubeconfig", kc, "wait", "--for=condition=Ready", "cluster/prod", "--timeout=60s")
	var waitOut strings.Builder
	wait.Stdout, wait.Stderr = &waitOut, &waitOut
	if err := wait.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second) // let kubectl see Ready=False first
	setReady(t, c, metav1.ConditionTrue, basaltv1.ReasonReady, "", c.Generation)
	if err := wait.Wait(); err != nil {
		t.Fatalf("kubectl wait for a Ready Cluster: %v\n%s", err, waitOut.String())
	}
	if !strings.Contains(waitOut.String(), "cluster.basalt.dev/prod condition met") {
		t.Errorf("kubectl wait said %q", waitOut.String())
	}

	// The short name and the fully qualified resource work too (the plain name "cluster" is
	// ambiguous where Cluster API is installed as well).
	for _, ref := range []string{"bcl/prod", "clusters.basalt.dev/prod"} {
		if out, err := exec.Command(kubectl, "--kubeconfig", kc, "wait", "--for=condition=Ready", ref, "--timeout=10s").CombinedOutput(); err != nil {
			t.Errorf("kubectl wait %s: %v\n%s", ref, err, out)
		}
	}
}

// TestKubectlGetColumns: `kubectl get` shows why an object is not Ready (the Reason column) on
// every kind, and a Host's power and, with -o wide, its error.
func TestKubectlGetColumns(t *testing.T) {
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Fatalf("kubectl is not on the PATH: %v", err)
	}
	ns := env.Namespace(t)
	kc := writeKubeconfig(t, env.Config, ns)
	h := &basaltv1.Host{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "h1"},
		Spec: basaltv1.HostSpec{SSH: &basaltv1.SSHSpec{Address: "10.0.0.9", PrivateKeySecretRef: basaltv1.SecretKeyReference{Name: "s", Key: "k"}}}}
	mustCreate(t, h)
	h.Status.Power = basaltv1.PowerOff
	h.Status.ErrorMessage = "inspection timed out"
	setReady(t, h, metav1.ConditionFalse, basaltv1.ReasonHostKeyMismatch, "the host presented another key", h.Generation)
	c := newCluster(ns, "c1")
	mustCreate(t, c)
	setReady(t, c, metav1.ConditionFalse, basaltv1.ReasonWaitingForHosts, "waiting", c.Generation)
	m := &basaltv1.Machine{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "m1"}, Spec: basaltv1.MachineSpec{Cluster: "c1", Role: basaltv1.RoleWorker}}
	mustCreate(t, m)
	setReady(t, m, metav1.ConditionFalse, basaltv1.ReasonWaitingForHost, "waiting", m.Generation)

	get := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(kubectl, append([]string{"--kubeconfig", kc, "get"}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("kubectl get %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"hosts.basalt.dev"}, []string{"POWER", "REASON", "Off", "HostKeyMismatch"}},
		{[]string{"hosts.basalt.dev", "-o", "wide"}, []string{"ERROR", "inspection timed out"}},
		{[]string{"clusters.basalt.dev"}, []string{"REASON", "WaitingForHosts"}},
		{[]string{"machines.basalt.dev", "-o", "wide"}, []string{"REASON", "WaitingForHost", "UP TO DATE"}},
	} {
		out := get(tc.args...)
		for _, w := range tc.want {
			if !strings.Contains(out, w) {
				t.Errorf("kubectl get %v lacks %q:\n%s", tc.args, w, out)
			}
		}
	}
}
