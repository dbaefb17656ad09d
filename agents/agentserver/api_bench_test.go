package agentserver

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/basalt-dev/basalt/agents/protocol"
)

// benchStatusReport is what the agent of a control-plane node posts after applying its Plan:
// one step per file (36), artifact (18), load balancer, service (7), route (4) and image (2),
// the health of its 7 services, and its hardware.
func benchStatusReport() []byte {
	const hash = "5f0c6b4b1b0b6bd1c6f1b4e4b1d1d3a0a4f9b0b3e2c6d8a1f0e9d8c7b6a5f4e3"
	st := protocol.Status{AgentVersion: "v0.4.0", PlanHash: hash}
	for i := range 36 {
		st.Steps = append(st.Steps, protocol.StepResult{Step: fmt.Sprintf("file:/etc/basalt/pki/component-%02d.crt", i), OK: true})
	}
	services := []string{"containerd", "etcd", "kube-apiserver", "kube-controller-manager", "kube-proxy", "kube-scheduler", "kubelet"}
	for _, a := range append(services, "etcdctl", "containerd-shim-runc-v2", "ctr", "runc", "crictl",
		"cni-bridge", "cni-host-local", "cni-loopback", "cni-portmap", "image-pause", "image-webserver") {
		st.Steps = append(st.Steps, protocol.StepResult{Step: "artifact:" + a, OK: true})
	}
	st.Steps = append(st.Steps, protocol.StepResult{Step: "loadbalancer:kube-apiserver", OK: true})
	for _, s := range services {
		st.Steps = append(st.Steps, protocol.StepResult{Step: "service:" + s, OK: true})
	}
	for i := 1; i <= 4; i++ {
		st.Steps = append(st.Steps, protocol.StepResult{Step: fmt.Sprintf("route:10.244.%d.0/24", i), OK: true})
	}
	st.Steps = append(st.Steps, protocol.StepResult{Step: "image:image-pause", OK: true}, protocol.StepResult{Step: "image:image-webserver", OK: true})
	probed := time.Date(2026, 7, 1, 12, 0, 0, 0, time.UTC)
	for _, s := range services {
		st.Components = append(st.Components, protocol.ComponentHealth{Name: s, Healthy: true, Message: "GET https://127.0.0.1:6443/readyz: 200 OK", Time: probed})
	}
	st.Hardware = &protocol.Hardware{CPUs: 16, MemoryBytes: 64 << 30,
		Disks: []protocol.Disk{{Name: "nvme0n1", SizeBytes: 960 << 30, Model: "SAMSUNG MZQL2960HCJR-00A07", Serial: "S64FNE0R123456"},
			{Name: "sda", SizeBytes: 4 << 40, Model: "ST4000NM000A-2HZ100", Serial: "WJG0ABCD", Rotational: true}},
		NICs: []protocol.NIC{{Name: "eno1", MAC: "3c:ec:ef:12:34:56", Addresses: []string{"192.0.2.11/24", "fe80::3eec:efff:fe12:3456/64"}, SpeedMbps: 25000},
			{Name: "eno2", MAC: "3c:ec:ef:12:34:57", SpeedMbps: -1},
			{Name: "cni0", MAC: "0a:58:0a:f4:00:01", Addresses: []string{"10.244.0.1/24"}}},
		System: protocol.SystemInfo{Vendor: "Supermicro", Product: "SYS-1029P-WTR", Serial: "S123456X9"}}
	b, err := json.Marshal(st)
	if err != nil {
		panic(err)
	}
	return b
}

// BenchmarkDecodeStatus: the pure part of POST /v1/status, strict JSON decoding and the limits,
// for the report of a control-plane node (MB/s over the body).
func BenchmarkDecodeStatus(b *testing.B) {
	body := benchStatusReport()
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := decodeStatus(bytes.NewReader(body)); err != nil {
			b.Fatal(err)
		}
	}
}

// benchCachedArtifact puts size random bytes in the cache folder dir, as a fetch would have, and
// returns their sha256.
