package describe

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
)

var created = metav1.NewTime(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))

func TestRenderUpgradingClusterWithLeftovers(t *testing.T) {
	deleting := metav1.NewTime(created.Add(time.Hour))
	c := &basaltv1.Cluster{
		ObjectMeta: metav1.ObjectMeta{Name: "edge", CreationTimestamp: created},
		Spec: basaltv1.ClusterSpec{Version: "v1.37.2", Paused: true,
			ControlPlane: basaltv1.ControlPlaneSpec{Replicas: 1}},
		Status: basaltv1.ClusterStatus{Phase: basaltv1.ClusterPhaseUpgrading, Version: "v1.36.3",
			ControlPlane: basaltv1.ReplicaCounts{Desired: 1, Ready: 1},
			Conditions: []metav1.Condition{
				{Type: basaltv1.ClusterUpToDate, Status: metav1.ConditionTrue, Reason: "Ready"},
				{Type: basaltv1.ConditionReady, Status: metav1.ConditionFalse, Reason: basaltv1.ReasonPaused, Message: "spec.paused is true"},
			}},
	}
	nodes := []MachineNode{
		{Machine: &basaltv1.Machine{
			ObjectMeta: metav1.ObjectMeta{Name: "edge-cp-x", CreationTimestamp: created},
			Spec: basaltv1.MachineSpec{Cluster: "edge", Role: basaltv1.RoleControlPlane, Version: "v1.37.2",
				HostRef: &basaltv1.LocalObjectReference{Name: "gone"}},
			Status: basaltv1.MachineStatus{Phase: basaltv1.MachinePhaseRunning, Version: "v1.36.3", NodeName: "n1",
				Etcd:       &basaltv1.MachineEtcd{},
				Conditions: []metav1.Condition{{Type: basaltv1.ConditionReady, Status: metav1.ConditionTrue, Reason: "Ready"}}},
		}},
		{
			Machine: &basaltv1.Machine{
				ObjectMeta: metav1.ObjectMeta{Name: "edge-old-a", CreationTimestamp: created, DeletionTimestamp: &deleting},
				Spec: basaltv1.MachineSpec{Cluster: "edge", Role: basaltv1.RoleWorker, Pool: "old",
					HostRef: &basaltv1.LocalObjectReference{Name: "pxe1"}},
				Status: basaltv1.MachineStatus{Phase: basaltv1.MachinePhaseDeleting, FailureReason: "Drain", FailureMessage: "pods left"},
			},
			Host: &basaltv1.Host{
				ObjectMeta: metav1.ObjectMeta{Name: "pxe1", CreationTimestamp: created},
				Spec:       basaltv1.HostSpec{Accepted: ptr.To(false), Boot: &basaltv1.BootSpec{MACAddresses: []string{"52:54:00:00:00:01", "52:54:00:00:00:02"}}},
				Status:     basaltv1.HostStatus{State: basaltv1.HostStateError, ErrorMessage: "disk wipe failed"},
			},
		},
	}
	var b strings.Builder
	if err := Build(c, nodes).Render(&b, created.Add(3*24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	want := `Cluster edge  Upgrading  v1.36.3 → v1.37.2  paused  not ready  age 3d
│  control plane 1/1 ready, no workers, etcd 1 voter, version v1.36.3, upgrading to v1.37.2
│  ! Ready=False Paused: spec.paused is true
├─ control plane: 1 desired, 1 ready
│  └─ Machine edge-cp-x  Running  v1.36.3 → v1.37.2  ready  node n1  etcd voter  age 3d
│     └─ Host gone  not found
└─ pool old: not in spec, 1 Machine(s) left
   └─ Machine edge-old-a  Deleting  -  ready unknown  age 3d
      │  ! failed: Drain: pods left
      └─ Host pxe1  Error  pxe 52:54:00:00:00:01 (+1)  not accepted  ready unknown  age 3d
            ! error: disk wipe failed
`
	if diff := cmp.Diff(want, b.String()); diff != "" {
		t.Errorf("render (-want +got):\n%s", diff)
	}
}

func TestProgressLine(t *testing.T) {
	c := &basaltv1.Cluster{
		Spec: basaltv1.ClusterSpec{Version: "v1.37.2", ControlPlane: basaltv1.ControlPlaneSpec{Replicas: 3},
			Workers: []basaltv1.WorkerPool{{Name: "a", Replicas: 1}, {Name: "b", Replicas: 1}}},
		Status: basaltv1.ClusterStatus{Version: "v1.37.2",
			ControlPlane: basaltv1.ReplicaCounts{Ready: 2}, Workers: basaltv1.ReplicaCounts{Ready: 1}},
	}
	var nodes []MachineNode
	for _, name := range []string{"a", "b", "c"} {
		nodes = append(nodes, MachineNode{Machine: &basaltv1.Machine{ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: basaltv1.MachineSpec{Role: basaltv1.RoleControlPlane}, Status: basaltv1.MachineStatus{Etcd: &basaltv1.MachineEtcd{}}}})
	}
	got := Build(c, nodes).Progress()
	if want := "control plane 2/3 ready, workers 1/2 ready, etcd 3 voters, version v1.37.2"; got != want {
		t.Errorf("Progress() = %q, want %q", got, want)
	}
}

func TestAddonsLine(t *testing.T) {
	if got := addonsLine(nil); got != "" {
		t.Errorf("no add-ons: %q", got)
	}
	got := addonsLine([]basaltv1.AddonStatus{{Name: "dns", Revision: "9b1f0c3e2a7d4c55"}, {Name: "metrics"},
		{Name: "app", Revision: "51aa07e9c3d2b810", LastError: "ConfigMap app key b.yaml, document 3: an object needs apiVersion and kind"}})
	want := "add-ons: dns 9b1f0c3e2a7d4c55, metrics not applied yet, app FAILED: ConfigMap app key b.yaml, document 3: an object needs apiVersion and kind"
	if got != want {
		t.Errorf("addonsLine:\n got %s\nwant %s", got, want)
	}
}
