package api_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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
			Disks:  []protocol.Disk{{Name: "vda", SizeBytes: 100 << 30, Model: "QEMU HARDDISK", Rotational: true}},
			NICs:   []protocol.NIC{{Name: "eth0", MAC: "52:54:00:AA:BB:CC", Addresses: []string{"10.0.0.1/24", "fe80::1"}, SpeedMbps: -1}},
			System: protocol.SystemInfo{Vendor: "QEMU", Product: "Standard PC", Serial: "S123"},
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
		hw.Disks[0].Model != "QEMU HARDDISK" || !hw.Disks[0].Rotational {
		t.Errorf("hardware = %+v (memory %s)", hw, hw.Memory)
	}
	wantNIC := []basaltv1.NIC{{Name: "eth0", MAC: "52:54:00:aa:bb:cc", Addresses: []string{"10.0.0.1/24", "fe80::1"}}}
	if diff := cmp.Diff(wantNIC, hw.NICs); diff != "" {
		t.Errorf("NICs (-want +got):\n%s", diff)
	}
	if hw.System != (basaltv1.SystemInfo{Vendor: "QEMU", Product: "Standard PC", Serial: "S123"}) {
		t.Errorf("system = %+v", hw.System)
	}

	gotM := &basaltv1.Machine{}
	if err := h.env.Client.Get(ctx, client.ObjectKeyFromObject(m), gotM); err != nil {
		t.Fatal(err)
	}
	if gotM.Status.PlanHash != planHash {
		t.Errorf("Machine planHash %q, want %q", gotM.Status.PlanHash, planHash)
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
