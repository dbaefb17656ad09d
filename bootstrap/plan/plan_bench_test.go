package plan_test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/basalt-dev/basalt/bootstrap/artifacts"
	"github.com/basalt-dev/basalt/bootstrap/clusterpki"
	"github.com/basalt-dev/basalt/bootstrap/components"
	"github.com/basalt-dev/basalt/bootstrap/plan"
	"github.com/basalt-dev/basalt/bootstrap/plan/builder"
)

// The Plan the benchmarks hash is the real one of cp-1 in a 3 control-plane + 2 worker cluster,
// built by bootstrap/plan/builder from the cluster's PKI: 36 files (certificates, keys,
// kubeconfigs, component configs), 18 artifacts, 7 services, 4 routes, one load balancer.
var (
	benchPlanOnce sync.Once
	benchPlanVal  *plan.Plan
	benchPlanErr  error
)

func benchControlPlanePlan(b *testing.B) *plan.Plan {
	b.Helper()
	benchPlanOnce.Do(func() { benchPlanVal, benchPlanErr = buildBenchPlan() })
	if benchPlanErr != nil {
		b.Fatal(benchPlanErr)
	}
	return benchPlanVal
}

func buildBenchPlan() (*plan.Plan, error) {
	ip := func(s string) []net.IP { return []net.IP{net.ParseIP(s)} }
	res, err := clusterpki.Ensure(nil, clusterpki.Input{
		ClusterName: "prod", Endpoint: "api.example.com", ServiceCIDR: "10.96.0.0/12", DNSDomain: "cluster.local",
		ControlPlane: []clusterpki.Node{{Name: "cp-1", IPs: ip("192.0.2.11")}, {Name: "cp-2", IPs: ip("192.0.2.12")}, {Name: "cp-3", IPs: ip("192.0.2.13")}},
		Workers:      []clusterpki.Node{{Name: "w-1", IPs: ip("192.0.2.21")}, {Name: "w-2", IPs: ip("192.0.2.22")}},
	}, time.Date(2026, 7, 1, 12, 0, 0, 0, time.UTC))
	if err != nil {
		return nil, err
	}
	certs, err := res.Material.ForNode("cp-1", true)
	if err != nil {
		return nil, err
	}
	return builder.Build(builder.Input{
		ClusterName: "prod", Version: "v1.37.2", Role: builder.RoleControlPlane,
		Node:         builder.Node{Name: "cp-1", IP: "192.0.2.11", PodCIDR: "10.244.0.0/24"},
		Network:      builder.Network{PodCIDR: "10.244.0.0/16", ServiceCIDR: "10.96.0.0/12"},
		Endpoint:     "api.example.com",
		Encryption:   components.EncryptionParams{Keys: []components.EncryptionKey{{Name: "key-1", Secret: []byte(strings.Repeat("k", 32))}}},
		Certificates: certs,
		Artifacts:    benchManifest(),
		HostFacts:    builder.HostFacts{SystemdPID1: true, CgroupV2: true},
		Routes: []plan.Route{{Destination: "10.244.1.0/24", Gateway: "192.0.2.12"}, {Destination: "10.244.2.0/24", Gateway: "192.0.2.13"},
			{Destination: "10.244.3.0/24", Gateway: "192.0.2.21"}, {Destination: "10.244.4.0/24", Gateway: "192.0.2.22"}},
		APIServers: []string{"192.0.2.11:6443", "192.0.2.12:6443", "192.0.2.13:6443"},
	})
}

// benchManifest is an artifact set like hack/build-artifacts.sh writes (made-up checksums,
// realistic sizes).
func benchManifest() *artifacts.Manifest {
	m := &artifacts.Manifest{KubernetesVersion: "v1.37.2"}
	add := func(name string, kind artifacts.Kind, size int64, image string) {
		s := sha256.Sum256([]byte(name))
		m.Artifacts = append(m.Artifacts, artifacts.Artifact{Name: name, Version: "v1.37.2", OS: "linux", Arch: "amd64",
			Kind: kind, Path: "bin/" + name, SHA256: hex.EncodeToString(s[:]), Size: size, Image: image})
	}
	for name, mib := range map[string]int64{"kube-apiserver": 92, "kube-controller-manager": 85, "kube-scheduler": 62,
		"kubelet": 78, "kube-proxy": 55, "etcd": 24, "etcdctl": 18, "containerd": 40, "containerd-shim-runc-v2": 12,
		"ctr": 20, "runc": 11, "crictl": 37, "cni-bridge": 4, "cni-host-local": 3, "cni-loopback": 3, "cni-portmap": 4} {
		add(name, artifacts.KindBinary, mib<<20, "")
	}
	add("image-pause", artifacts.KindImage, 300<<10, "registry.k8s.io/pause:3.10")
	add("image-webserver", artifacts.KindImage, 4<<20, "basalt.dev/webserver:v1")
	return m
}

// BenchmarkPlanHash: the manager hashes every Plan it stores and the agent every Plan it
// receives. MB/s is over the Plan's JSON encoding.
func BenchmarkPlanHash(b *testing.B) {
	p := benchControlPlanePlan(b)
	enc, err := json.Marshal(p)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(enc)))
	b.ReportAllocs()
	for b.Loop() {
		if len(p.Hash()) != 64 {
			b.Fatal("not a sha256")
		}
	}
}

// BenchmarkServiceHash: kube-apiserver alone (16 inputs), and every service of the Plan, which
// is what one apply computes to decide what to restart.
func BenchmarkServiceHash(b *testing.B) {
	p := benchControlPlanePlan(b)
	b.Run("kube-apiserver", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := p.ServiceHash(builder.ServiceAPIServer); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("all-7-services", func(b *testing.B) {
		if len(p.Services) != 7 {
			b.Fatalf("the control-plane Plan has %d services, want 7", len(p.Services))
		}
		b.ReportAllocs()
		for b.Loop() {
			for _, s := range p.Services {
				if _, err := p.ServiceHash(s.Name); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
}

// BenchmarkPlanValidate: the agent validates every Plan before applying it.
func BenchmarkPlanValidate(b *testing.B) {
	p := benchControlPlanePlan(b)
	b.ReportAllocs()
	for b.Loop() {
		if err := p.Validate(); err != nil {
			b.Fatal(err)
		}
	}
}
