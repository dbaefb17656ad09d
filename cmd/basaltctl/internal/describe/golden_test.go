package describe_test

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
	"github.com/basalt-dev/basalt/cmd/basaltctl/internal/describe"
	"github.com/basalt-dev/basalt/test/envtest"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

var env *envtest.Env

func TestMain(m *testing.M) {
	flag.Parse()
	envtest.Main(m, &env)
}

// cond is a condition for a status written in the test.
func cond(t string, s metav1.ConditionStatus, reason, msg string) metav1.Condition {
	return metav1.Condition{Type: t, Status: s, Reason: reason, Message: msg, LastTransitionTime: metav1.Now()}
}

const (
	tr = metav1.ConditionTrue
	fa = metav1.ConditionFalse
	un = metav1.ConditionUnknown
)

// create creates obj, then writes the status that setStatus puts on it through the status
// subresource, as the controllers and the agent API do.
func create[T client.Object](t *testing.T, obj T, setStatus func(T)) T {
	t.Helper()
	ctx := context.Background()
	if err := env.Client.Create(ctx, obj); err != nil {
		t.Fatalf("creating %s: %v", obj.GetName(), err)
	}
	if setStatus != nil {
		setStatus(obj)
		if err := env.Client.Status().Update(ctx, obj); err != nil {
			t.Fatalf("writing the status of %s: %v", obj.GetName(), err)
		}
	}
	return obj
}

func sshHost(t *testing.T, ns, name, addr string, state basaltv1.HostState, consumer string, conds ...metav1.Condition) *basaltv1.Host {
	h := &basaltv1.Host{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: basaltv1.HostSpec{SSH: &basaltv1.SSHSpec{Address: addr,
			PrivateKeySecretRef: basaltv1.SecretKeyReference{Name: "ssh", Key: "id"}}},
	}
	return create(t, h, func(h *basaltv1.Host) {
		h.Status.State = state
		h.Status.Conditions = conds
		if consumer != "" {
			h.Status.ConsumerRef = &basaltv1.LocalObjectReference{Name: consumer}
		}
		if state == basaltv1.HostStateAvailable {
			h.Status.Agent = basaltv1.AgentStatus{Version: "v0.3.0", LastSeen: ptr.To(metav1.Now())}
			h.Status.Hardware = &basaltv1.Hardware{CPUs: 4, Memory: ptr.To(resource.MustParse("8Gi"))}
		}
	})
}

var hostReady = []metav1.Condition{
	cond(basaltv1.HostAgentConnected, tr, basaltv1.ReasonReady, "agent v0.3.0 is reporting"),
	cond(basaltv1.HostKeyVerified, tr, basaltv1.ReasonReady, "the host presented a pinned key"),
	cond(basaltv1.HostInspected, tr, basaltv1.ReasonReady, "hardware facts reported by the agent"),
	cond(basaltv1.ConditionReady, tr, basaltv1.ReasonReady, ""),
}

var machineReady = []metav1.Condition{
	cond(basaltv1.MachineHostBound, tr, basaltv1.ReasonReady, "Host is reserved for this Machine"),
	cond(basaltv1.MachineAgentConnected, tr, basaltv1.ReasonReady, "agent is reporting"),
	cond(basaltv1.MachinePlanApplied, tr, basaltv1.ReasonReady, "Plan 1a2b3c4d is applied"),
	cond(basaltv1.MachineNodeReady, tr, "KubeletReady", "kubelet is posting ready status"),
	cond(basaltv1.ConditionReady, tr, basaltv1.ReasonReady, ""),
}

func machine(t *testing.T, ns, cluster, name string, role basaltv1.MachineRole, pool, host string, st basaltv1.MachineStatus) *basaltv1.Machine {
	m := &basaltv1.Machine{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{basaltv1.LabelClusterName: cluster}},
		Spec:       basaltv1.MachineSpec{Cluster: cluster, Role: role, Pool: pool, Version: "v1.37.2"},
	}
	if host != "" {
		m.Spec.HostRef = &basaltv1.LocalObjectReference{Name: host}
	}
	return create(t, m, func(m *basaltv1.Machine) { m.Status = st })
}

// buildProvisioningCluster creates, in a real API server, a Cluster half way up: two of three
// control-plane Machines Running and a third whose etcd member is a learner, one worker Running,
// one whose agent cannot be installed over SSH, and a pool with no Host to bind.
func buildProvisioningCluster(t *testing.T, ns string) *basaltv1.Cluster {
	t.Helper()
	cl := create(t, &basaltv1.Cluster{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "prod"},
		Spec: basaltv1.ClusterSpec{
			Version:      "v1.37.2",
			ControlPlane: basaltv1.ControlPlaneSpec{Replicas: 3},
			Workers:      []basaltv1.WorkerPool{{Name: "general", Replicas: 2}, {Name: "gpu", Replicas: 1}},
		},
	}, func(c *basaltv1.Cluster) {
		c.Status = basaltv1.ClusterStatus{
			Phase:                basaltv1.ClusterPhaseProvisioning,
			ObservedGeneration:   c.Generation,
			ControlPlaneEndpoint: &basaltv1.APIEndpoint{Host: "10.0.0.11", Port: 6443},
			KubeconfigSecretRef:  &basaltv1.LocalObjectReference{Name: "prod-kubeconfig"},
			ControlPlane:         basaltv1.ReplicaCounts{Desired: 3, Bound: 3, Ready: 2, Updated: 2},
			Workers:              basaltv1.ReplicaCounts{Desired: 3, Bound: 2, Ready: 1, Updated: 1},
			Conditions: []metav1.Condition{
				cond(basaltv1.ClusterHostsBound, fa, basaltv1.ReasonWaitingForHosts,
					"worker pool gpu needs 1 more Available Host(s) matching spec.workers[gpu].hostSelector"),
				cond(basaltv1.ClusterCertificatesReady, tr, basaltv1.ReasonReady, "leaf certificates valid until 2027-03-01"),
				cond(basaltv1.ClusterEtcdReady, fa, "LearnerCatchingUp", "member prod-cp-c is a learner catching up with the leader"),
				cond(basaltv1.ClusterControlPlaneReady, fa, basaltv1.ReasonWaitingForEtcdMember,
					"2 of 3 control-plane Machines Ready; Machine prod-cp-c: PlanApplied: Plan 9f8e7d6c is applied; the etcd member is a learner"),
				cond(basaltv1.ClusterWorkersReady, fa, basaltv1.ReasonInstallFailed,
					"1 of 3 worker Machines Ready; Machine prod-general-b: AgentConnected: Host w2: dial tcp 10.0.1.12:22: connect: connection refused"),
				cond(basaltv1.ClusterUpToDate, tr, basaltv1.ReasonReady, "every Machine is built for v1.37.2"),
				cond(basaltv1.ConditionReady, fa, basaltv1.ReasonWaitingForHosts,
					"HostsBound: worker pool gpu needs 1 more Available Host(s) matching spec.workers[gpu].hostSelector"),
			},
		}
	})

	for i, name := range []string{"cp1", "cp2", "cp3"} {
		sshHost(t, ns, name, fmt.Sprintf("10.0.0.1%d", i+1), basaltv1.HostStateAvailable, "prod-cp-"+string(rune('a'+i)), hostReady...)
	}
	sshHost(t, ns, "w1", "10.0.1.11", basaltv1.HostStateAvailable, "prod-general-a", hostReady...)
	sshHost(t, ns, "w2", "10.0.1.12", basaltv1.HostStateRegistering, "prod-general-b",
		cond(basaltv1.HostAgentConnected, fa, basaltv1.ReasonInstallFailed, "dial tcp 10.0.1.12:22: connect: connection refused"),
		cond(basaltv1.HostKeyVerified, un, "NotContacted", "no SSH connection has been made yet"),
		cond(basaltv1.HostInspected, fa, basaltv1.ReasonAgentNotInstalled, "no hardware facts reported: the agent has not registered"),
		cond(basaltv1.ConditionReady, fa, basaltv1.ReasonInstallFailed, "AgentConnected: dial tcp 10.0.1.12:22: connect: connection refused"),
	)

	voter := &basaltv1.MachineEtcd{}
	running := func(etcd *basaltv1.MachineEtcd, id string) basaltv1.MachineStatus {
		return basaltv1.MachineStatus{Phase: basaltv1.MachinePhaseRunning, Version: "v1.37.2", Conditions: machineReady,
			Etcd: etcd, EtcdMemberID: id, Addresses: []string{"10.0.0.1"}}
	}
	machine(t, ns, "prod", "prod-cp-a", basaltv1.RoleControlPlane, "", "cp1", running(voter, "8e9e05c52164694d"))
	machine(t, ns, "prod", "prod-cp-b", basaltv1.RoleControlPlane, "", "cp2", running(&basaltv1.MachineEtcd{Join: true}, "91bc3c398fb3c146"))
	machine(t, ns, "prod", "prod-cp-c", basaltv1.RoleControlPlane, "", "cp3", basaltv1.MachineStatus{
		Phase: basaltv1.MachinePhaseBootstrapping, Etcd: &basaltv1.MachineEtcd{Join: true, Learner: true},
		Conditions: []metav1.Condition{
			cond(basaltv1.MachineHostBound, tr, basaltv1.ReasonReady, "Host cp3 is reserved for this Machine"),
			cond(basaltv1.MachineAgentConnected, tr, basaltv1.ReasonReady, "Host cp3: agent v0.3.0 is reporting"),
			cond(basaltv1.MachinePlanApplied, fa, basaltv1.ReasonWaitingForEtcdMember,
				"Plan 9f8e7d6c is applied; the etcd member is a learner, and kube-apiserver starts once it is promoted"),
			cond(basaltv1.MachineNodeReady, un, basaltv1.ReasonNodeNotRegistered, "the kubelet has not reported on Node prod-cp-c yet"),
			cond(basaltv1.ConditionReady, fa, basaltv1.ReasonWaitingForEtcdMember,
				"PlanApplied: Plan 9f8e7d6c is applied; the etcd member is a learner, and kube-apiserver starts once it is promoted"),
		},
	})
	machine(t, ns, "prod", "prod-general-a", basaltv1.RoleWorker, "general", "w1", running(nil, ""))
	machine(t, ns, "prod", "prod-general-b", basaltv1.RoleWorker, "general", "w2", basaltv1.MachineStatus{
		Phase: basaltv1.MachinePhaseProvisioning,
		Conditions: []metav1.Condition{
			cond(basaltv1.MachineHostBound, tr, basaltv1.ReasonReady, "Host w2 is reserved for this Machine"),
			cond(basaltv1.MachineAgentConnected, fa, basaltv1.ReasonInstallFailed, "Host w2: dial tcp 10.0.1.12:22: connect: connection refused"),
			cond(basaltv1.MachinePlanApplied, fa, basaltv1.ReasonWaitingForAgent, "waiting for the agent's hardware report"),
			cond(basaltv1.MachineNodeReady, un, basaltv1.ReasonWaitingForControlPlane, "no kube-apiserver is up yet"),
			cond(basaltv1.ConditionReady, fa, basaltv1.ReasonInstallFailed, "AgentConnected: Host w2: dial tcp 10.0.1.12:22: connect: connection refused"),
		},
	})
	machine(t, ns, "prod", "prod-gpu-a", basaltv1.RoleWorker, "gpu", "", basaltv1.MachineStatus{
		Phase: basaltv1.MachinePhasePending,
		Conditions: []metav1.Condition{
			cond(basaltv1.MachineHostBound, fa, basaltv1.ReasonWaitingForHost, "no Available Host matches spec.workers[gpu].hostSelector"),
			cond(basaltv1.ConditionReady, fa, basaltv1.ReasonWaitingForHost, "HostBound: no Available Host matches spec.workers[gpu].hostSelector"),
		},
	})
	// A Machine of another Cluster in the same namespace is not shown.
	machine(t, ns, "staging", "staging-cp-a", basaltv1.RoleControlPlane, "", "", basaltv1.MachineStatus{Phase: basaltv1.MachinePhasePending})
	return cl
}

// TestDescribeGolden renders a Cluster read back from a real API server and compares the output
// with testdata/describe_provisioning.golden (go test -update rewrites it).
func TestDescribeGolden(t *testing.T) {
	ns := env.Namespace(t)
	cl := buildProvisioningCluster(t, ns)

	tree, err := describe.Load(context.Background(), env.Client, ns, "prod")
	if err != nil {
		t.Fatal(err)
	}
	// Ages from a fixed clock: ten and a half hours after the Cluster was created, so every
	// object (created within seconds of it) shows 10h whatever this machine's speed.
	now := cl.CreationTimestamp.Add(10*time.Hour + 30*time.Minute)
	var out bytes.Buffer
	if err := tree.Render(&out, now); err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "describe_provisioning.golden")
	if *update {
		if err := os.WriteFile(golden, out.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test ./cmd/basaltctl/internal/describe -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), out.String()); diff != "" {
		t.Errorf("describe output differs from %s (-want +got); if the change is intended run go test ./cmd/basaltctl/internal/describe -update and review the diff:\n%s", golden, diff)
	}
}

func TestDescribeMissingCluster(t *testing.T) {
	ns := env.Namespace(t)
	_, err := describe.Load(context.Background(), env.Client, ns, "nope")
	if err == nil || err.Error() != fmt.Sprintf("no Cluster %q in namespace %q", "nope", ns) {
		t.Fatalf("err = %v", err)
	}
}
