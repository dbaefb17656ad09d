package agentserver_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/basalt-dev/basalt/agents/protocol"
	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
)

const planHash = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func TestStatusLandsInHostAndMachine(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	host := h.createHost("node-1")
	a := h.register(host)
	m := &basaltv1.Machine{
		ObjectMeta: metav1.ObjectMeta{Name: "cp-1", Namespace: h.hostNS},
		Spec: basaltv1.MachineSpec{Cluster: "c1", Role: basaltv1.RoleControlPlane,
			HostRef: &basaltv1.LocalObjectReference{Name: "node-1"}},
	}
	if err := h.env.Client.Create(ctx, m); err != nil {
		t.Fatal(err)
	}
	h.env.UpdateHostStatus(t, host, func(hh *basaltv1.Host) {
		hh.Status.ConsumerRef = &basaltv1.LocalObjectReference{Name: "cp-1"}
	})

	probe := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	st := protocol.Status{
		AgentVersion: "v0.2.0",
		PlanHash:     planHash,
		Steps:        []protocol.StepResult{{Step: "file:/etc/x", OK: true}, {Step: "service:kubelet", Error: "exit 1"}},
		Components: []protocol.ComponentHealth{
			{Name: "kubelet", Healthy: false, Message: "connection refused", Time: probe},
			{Name: "etcd", Healthy: true, Time: probe},
		},
		Hardware: &protocol.Hardware{
			CPUs: 8, MemoryBytes: 8 << 30,
			Disks: []protocol.Disk{{Name: "vda", SizeBytes: 100 << 30, Model: "QEMU HARDDISK", Rotational: true,
				Serial: "QM00005", WWN: "0x5000c500a1b2c3d4", ByPath: "pci-0000:00:05.0-scsi-0:0:0:0"}},
			NICs:   []protocol.NIC{{Name: "eth0", MAC: "52:54:00:AA:BB:CC", Addresses: []string{"10.0.0.1/24", "fe80::1"}, SpeedMbps: -1}},
			System: protocol.SystemInfo{Vendor: "QEMU", Product: "Standard PC", Serial: "S123"},
			OS:     &protocol.OSFacts{Container: true, SystemdPID1: true, CgroupVersion: 1},
		},
	}
	if code, body := post(t, a.client, h.url+protocol.PathStatus, st); code != http.StatusNoContent {
		t.Fatalf("status: %d %s", code, body)
	}

	got := h.getHost("node-1")
	if got.Status.Agent.Version != "v0.2.0" || got.Status.Agent.LastSeen == nil {
		t.Errorf("Host status.agent = %+v", got.Status.Agent)
	}
	hw := got.Status.Hardware
	if hw == nil {
		t.Fatal("Host status.hardware is not set")
	}
	if hw.CPUs != 8 || hw.Memory.String() != "8Gi" || len(hw.Disks) != 1 || hw.Disks[0].Size.String() != "100Gi" ||
		hw.Disks[0].Model != "QEMU HARDDISK" || !hw.Disks[0].Rotational || hw.Disks[0].Serial != "QM00005" ||
		hw.Disks[0].WWN != "0x5000c500a1b2c3d4" || hw.Disks[0].ByPath != "pci-0000:00:05.0-scsi-0:0:0:0" {
		t.Errorf("hardware = %+v (memory %s)", hw, hw.Memory)
	}
	wantNIC := []basaltv1.NIC{{Name: "eth0", MAC: "52:54:00:aa:bb:cc", Addresses: []string{"10.0.0.1/24", "fe80::1"}}}
	if diff := cmp.Diff(wantNIC, hw.NICs); diff != "" {
		t.Errorf("NICs (-want +got):\n%s", diff)
	}
	if hw.System != (basaltv1.SystemInfo{Vendor: "QEMU", Product: "Standard PC", Serial: "S123"}) {
		t.Errorf("system = %+v", hw.System)
	}
	wantOS := &basaltv1.OSFacts{Container: ptr.To(true), SystemdPID1: ptr.To(true), CgroupVersion: 1}
	if diff := cmp.Diff(wantOS, got.Status.OS); diff != "" {
		t.Errorf("Host status.os (-want +got):\n%s", diff)
	}

	gotM := &basaltv1.Machine{}
	if err := h.env.Client.Get(ctx, client.ObjectKeyFromObject(m), gotM); err != nil {
		t.Fatal(err)
	}
	if gotM.Status.PlanHash != planHash {
		t.Errorf("Machine planHash %q, want %q", gotM.Status.PlanHash, planHash)
	}
	wantFailed := []basaltv1.PlanStepError{{Step: "service:kubelet", Error: "exit 1"}}
	if diff := cmp.Diff(wantFailed, gotM.Status.FailedSteps); diff != "" {
		t.Errorf("Machine failedSteps (-want +got):\n%s", diff)
	}
	if gotM.Status.ApplyingPlanHash != "" {
		t.Errorf("Machine applyingPlanHash %q for an idle agent", gotM.Status.ApplyingPlanHash)
	}
	pt := metav1.NewTime(probe)
	wantComponents := []basaltv1.ComponentHealth{
		{Name: "etcd", Healthy: true, LastProbeTime: &pt},
		{Name: "kubelet", Healthy: false, Message: "connection refused", LastProbeTime: &pt},
	}
	if diff := cmp.Diff(wantComponents, gotM.Status.Components, cmp.Comparer(func(a, b metav1.Time) bool { return a.Equal(&b) })); diff != "" {
		t.Errorf("Machine components (-want +got):\n%s", diff)
	}

	// The same report again within StatusWriteInterval writes nothing.
	rvHost, rvMachine := got.ResourceVersion, gotM.ResourceVersion
	if code, body := post(t, a.client, h.url+protocol.PathStatus, st); code != http.StatusNoContent {
		t.Fatalf("status: %d %s", code, body)
	}
	if h.getHost("node-1").ResourceVersion != rvHost {
		t.Errorf("an identical report rewrote the Host")
	}
	if err := h.env.Client.Get(ctx, client.ObjectKeyFromObject(m), gotM); err != nil || gotM.ResourceVersion != rvMachine {
		t.Errorf("an identical report rewrote the Machine (%v)", err)
	}
	// After the interval, lastSeen moves.
	last := h.getHost("node-1").Status.Agent.LastSeen.Time
	h.clock.Advance(time.Minute)
	if code, body := post(t, a.client, h.url+protocol.PathStatus, st); code != http.StatusNoContent {
		t.Fatalf("status: %d %s", code, body)
	}
	if now := h.getHost("node-1").Status.Agent.LastSeen.Time; !now.After(last) {
		t.Errorf("lastSeen %s did not move past %s after the write interval", now, last)
	}

	// An agent running from a root filesystem Basalt wrote says so; back on the network, it
	// does not.
	st.Root = &protocol.Root{Image: strings.Repeat("e", 64), Disk: "/dev/vda", Host: h.hostNS + "/node-1"}
	if code, body := post(t, a.client, h.url+protocol.PathStatus, st); code != http.StatusNoContent {
		t.Fatalf("status: %d %s", code, body)
	}
	if r := h.getHost("node-1").Status.Agent.Root; r == nil || *r != (basaltv1.AgentRoot{Image: strings.Repeat("e", 64), Disk: "/dev/vda"}) {
		t.Errorf("status.agent.root %+v", r)
	}
	st.Root = nil
	if code, body := post(t, a.client, h.url+protocol.PathStatus, st); code != http.StatusNoContent {
		t.Fatalf("status: %d %s", code, body)
	}
	if r := h.getHost("node-1").Status.Agent.Root; r != nil {
		t.Errorf("status.agent.root %+v after a report from the network", r)
	}

	// The agent in RAM that has just written a whole-disk image says so before its reboot;
	// the next report, without it, clears it.
	st.Written = &protocol.Root{Image: strings.Repeat("f", 64), Disk: "/dev/nvme0n1", Host: h.hostNS + "/node-1"}
	if code, body := post(t, a.client, h.url+protocol.PathStatus, st); code != http.StatusNoContent {
		t.Fatalf("status: %d %s", code, body)
	}
	if w := h.getHost("node-1").Status.Agent.Written; w == nil || *w != (basaltv1.AgentRoot{Image: strings.Repeat("f", 64), Disk: "/dev/nvme0n1"}) {
		t.Errorf("status.agent.written %+v", w)
	}
	st.Written = nil
	if code, body := post(t, a.client, h.url+protocol.PathStatus, st); code != http.StatusNoContent {
		t.Fatalf("status: %d %s", code, body)
	}
	if w := h.getHost("node-1").Status.Agent.Written; w != nil {
		t.Errorf("status.agent.written %+v after a report without it", w)
	}
}

func TestStatusRefusesBadBodies(t *testing.T) {
	h := newHarness(t)
	a := h.register(h.createHost("node-1"))
	dup := `{"agentVersion":"v1","components":[{"name":"etcd","healthy":true,"time":"2026-01-01T00:00:00Z"},{"name":"etcd","healthy":false,"time":"2026-01-01T00:00:00Z"}]}`
	for _, tc := range []struct {
		name string
		body string
		want int
	}{
		{"oversized", `{"agentVersion":"v1","steps":[{"step":"` + strings.Repeat("a", protocol.MaxRequestBytes) + `","ok":true}]}`, http.StatusRequestEntityTooLarge},
		{"malformed", `{"agentVersion":"v1",`, http.StatusBadRequest},
		{"not an object", `[1,2,3]`, http.StatusBadRequest},
		{"unknown field", `{"agentVersion":"v1","host":"node-2"}`, http.StatusBadRequest},
		{"unknown nested field", `{"agentVersion":"v1","hardware":{"cpus":1,"gpu":true}}`, http.StatusBadRequest},
		{"trailing data", `{"agentVersion":"v1"} {"agentVersion":"v2"}`, http.StatusBadRequest},
		{"empty", ``, http.StatusBadRequest},
		{"null", `null`, http.StatusBadRequest},
		{"no version", `{}`, http.StatusBadRequest},
		{"bad plan hash", `{"agentVersion":"v1","planHash":"../../etc"}`, http.StatusBadRequest},
		{"duplicate component", dup, http.StatusBadRequest},
		{"bad component name", `{"agentVersion":"v1","components":[{"name":"Etcd Server","healthy":true,"time":"2026-01-01T00:00:00Z"}]}`, http.StatusBadRequest},
		{"negative memory", `{"agentVersion":"v1","hardware":{"cpus":1,"memoryBytes":-1,"system":{}}}`, http.StatusBadRequest},
		{"bad MAC", `{"agentVersion":"v1","hardware":{"cpus":1,"memoryBytes":1,"nics":[{"name":"eth0","mac":"zz"}],"system":{}}}`, http.StatusBadRequest},
		{"wrong type", `{"agentVersion":1}`, http.StatusBadRequest},
		{"huge number", `{"agentVersion":"v1","hardware":{"cpus":99999999999999999999}}`, http.StatusBadRequest},
		{"cgroup version 3", `{"agentVersion":"v1","hardware":{"cpus":1,"memoryBytes":1,"system":{},"os":{"container":false,"systemdPID1":true,"cgroupVersion":3}}}`, http.StatusBadRequest},
		{"unknown OS fact", `{"agentVersion":"v1","hardware":{"cpus":1,"memoryBytes":1,"system":{},"os":{"selinux":true}}}`, http.StatusBadRequest},
		{"step error too long", `{"agentVersion":"v1","steps":[{"step":"service:kubelet","ok":false,"error":"` + strings.Repeat("x", 4097) + `"}]}`, http.StatusBadRequest},
		{"root without image", `{"agentVersion":"v1","root":{"image":"","disk":"/dev/vda"}}`, http.StatusBadRequest},
		{"root image not a digest", `{"agentVersion":"v1","root":{"image":"../x","disk":"/dev/vda"}}`, http.StatusBadRequest},
		{"root disk not a disk", `{"agentVersion":"v1","root":{"image":"` + strings.Repeat("a", 64) + `","disk":"/etc/passwd"}}`, http.StatusBadRequest},
		{"written disk not a disk", `{"agentVersion":"v1","written":{"image":"` + strings.Repeat("a", 64) + `","disk":"/dev/../etc/shadow"}}`, http.StatusBadRequest},
		{"written image not a digest", `{"agentVersion":"v1","written":{"image":"x","disk":"/dev/vda"}}`, http.StatusBadRequest},
		{"root unknown field", `{"agentVersion":"v1","root":{"image":"` + strings.Repeat("a", 64) + `","disk":"/dev/vda","partition":1}}`, http.StatusBadRequest},
	} {
		code, body := post(t, a.client, h.url+protocol.PathStatus, []byte(tc.body))
		if code != tc.want {
			t.Errorf("%s: %d %s, want %d", tc.name, code, body, tc.want)
		}
	}
	if v := h.getHost("node-1").Status.Agent.Version; v != "v0.1.0-test" {
		t.Errorf("a refused report changed the Host: version %q", v)
	}
	if n := metricValue(t, "basalt_agent_api_rejected_requests_total", map[string]string{"path": protocol.PathStatus, "reason": "too_large"}); n < 1 {
		t.Errorf("rejected_requests_total{reason=too_large} = %v, want at least 1", n)
	}
	if n := metricValue(t, "basalt_agent_api_requests_total", map[string]string{"path": protocol.PathStatus, "code": "400"}); n < 1 {
		t.Errorf("requests_total{path=/v1/status,code=400} = %v, want at least 1", n)
	}
}

// TestStatusApplyProgressOnMachine: the Machine shows the Plan being applied and the failed
// steps of the last apply; a successful apply clears both; OS facts stay until reported again.
func TestStatusApplyProgressOnMachine(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	host := h.createHost("node-1")
	a := h.register(host)
	m := &basaltv1.Machine{
		ObjectMeta: metav1.ObjectMeta{Name: "w-1", Namespace: h.hostNS},
		Spec: basaltv1.MachineSpec{Cluster: "c1", Role: basaltv1.RoleWorker,
			HostRef: &basaltv1.LocalObjectReference{Name: "node-1"}},
	}
	if err := h.env.Client.Create(ctx, m); err != nil {
		t.Fatal(err)
	}
	h.env.UpdateHostStatus(t, host, func(hh *basaltv1.Host) {
		hh.Status.ConsumerRef = &basaltv1.LocalObjectReference{Name: "w-1"}
	})
	report := func(st protocol.Status) *basaltv1.Machine {
		t.Helper()
		st.AgentVersion = "v0.2.0"
		if code, body := post(t, a.client, h.url+protocol.PathStatus, st); code != http.StatusNoContent {
			t.Fatalf("status: %d %s", code, body)
		}
		got := &basaltv1.Machine{}
		if err := h.env.Client.Get(ctx, client.ObjectKeyFromObject(m), got); err != nil {
			t.Fatal(err)
		}
		return got
	}
	const next = "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"

	// The first apply of a bare-metal worker on cgroup v2 starts.
	bare := &protocol.Hardware{CPUs: 4, MemoryBytes: 4 << 30, OS: &protocol.OSFacts{SystemdPID1: true, CgroupVersion: 2}}
	got := report(protocol.Status{ApplyingHash: planHash, Hardware: bare})
	if got.Status.ApplyingPlanHash != planHash || got.Status.PlanHash != "" || got.Status.FailedSteps != nil {
		t.Errorf("while applying: applyingPlanHash %q, planHash %q, failedSteps %v", got.Status.ApplyingPlanHash, got.Status.PlanHash, got.Status.FailedSteps)
	}
	wantOS := &basaltv1.OSFacts{Container: ptr.To(false), SystemdPID1: ptr.To(true), CgroupVersion: 2}
	if diff := cmp.Diff(wantOS, h.getHost("node-1").Status.OS); diff != "" {
		t.Errorf("Host status.os (-want +got):\n%s", diff)
	}

	// It fails: 40 steps fail, one with a long multi-byte error text; only failed steps are
	// kept, in order, at most 32.
	long := strings.Repeat("é", 2047) + "x" // 4095 bytes: within the protocol's limit
	steps := []protocol.StepResult{{Step: "file:/etc/basalt/kubelet.conf", OK: true}, {Step: "artifact:kubelet", Error: long}}
	for i := range 39 {
		steps = append(steps, protocol.StepResult{Step: fmt.Sprintf("route:10.244.%d.0/24", i), Error: "network unreachable"})
	}
	steps = append(steps, protocol.StepResult{Step: "service:kubelet", OK: false})
	got = report(protocol.Status{Steps: steps})
	failed := got.Status.FailedSteps
	if len(failed) != 32 || failed[0].Step != "artifact:kubelet" || failed[0].Error != long ||
		failed[1] != (basaltv1.PlanStepError{Step: "route:10.244.0.0/24", Error: "network unreachable"}) ||
		failed[31].Step != "route:10.244.30.0/24" {
		t.Errorf("failedSteps: %d entries, first %q, last %+v", len(failed), failed[0].Step, failed[len(failed)-1])
	}
	if got.Status.ApplyingPlanHash != "" || got.Status.PlanHash != "" {
		t.Errorf("after a failed apply: applyingPlanHash %q, planHash %q", got.Status.ApplyingPlanHash, got.Status.PlanHash)
	}

	// The retry starts: the failures of the last apply stay visible while it runs.
	got = report(protocol.Status{ApplyingHash: planHash, Steps: steps})
	if got.Status.ApplyingPlanHash != planHash || len(got.Status.FailedSteps) != 32 {
		t.Errorf("retrying: applyingPlanHash %q, %d failedSteps", got.Status.ApplyingPlanHash, len(got.Status.FailedSteps))
	}

	// A failed step without error text still says something.
	got = report(protocol.Status{Steps: []protocol.StepResult{{Step: "service:kubelet"}}})
	if diff := cmp.Diff([]basaltv1.PlanStepError{{Step: "service:kubelet", Error: "failed (the agent gave no error text)"}}, got.Status.FailedSteps); diff != "" {
		t.Errorf("failedSteps (-want +got):\n%s", diff)
	}

	// The apply succeeds: failedSteps is cleared, planHash moves. A report without OS facts
	// keeps the Host's.
	got = report(protocol.Status{PlanHash: planHash, Steps: []protocol.StepResult{{Step: "service:kubelet", OK: true}},
		Hardware: &protocol.Hardware{CPUs: 4, MemoryBytes: 4 << 30}})
	if got.Status.FailedSteps != nil || got.Status.ApplyingPlanHash != "" || got.Status.PlanHash != planHash {
		t.Errorf("after a successful apply: failedSteps %v, applyingPlanHash %q, planHash %q", got.Status.FailedSteps, got.Status.ApplyingPlanHash, got.Status.PlanHash)
	}
	if diff := cmp.Diff(wantOS, h.getHost("node-1").Status.OS); diff != "" {
		t.Errorf("Host status.os after a report without OS facts (-want +got):\n%s", diff)
	}

	// The next Plan is being applied on top of the applied one.
	got = report(protocol.Status{PlanHash: planHash, ApplyingHash: next})
	if got.Status.ApplyingPlanHash != next || got.Status.PlanHash != planHash {
		t.Errorf("applying the next Plan: applyingPlanHash %q, planHash %q", got.Status.ApplyingPlanHash, got.Status.PlanHash)
	}
}
