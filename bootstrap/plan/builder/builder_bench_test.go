package builder_test

import (
	"crypto/sha256"
	"encoding/hex"
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

// The PKI of a 3 control-plane + 2 worker cluster, issued once for every benchmark.
var (
	benchPKIOnce sync.Once
	benchPKI     clusterpki.Material
	benchPKIErr  error
)

func benchMaterial(b *testing.B) clusterpki.Material {
	b.Helper()
	benchPKIOnce.Do(func() {
		ip := func(s string) []net.IP { return []net.IP{net.ParseIP(s)} }
		var res *clusterpki.Result
		res, benchPKIErr = clusterpki.Ensure(nil, clusterpki.Input{
			ClusterName: "prod", Endpoint: "api.example.com", ServiceCIDR: "10.96.0.0/12", DNSDomain: "cluster.local",
			ControlPlane: []clusterpki.Node{{Name: "cp-1", IPs: ip("192.0.2.11")}, {Name: "cp-2", IPs: ip("192.0.2.12")}, {Name: "cp-3", IPs: ip("192.0.2.13")}},
			Workers:      []clusterpki.Node{{Name: "w-1", IPs: ip("192.0.2.21")}, {Name: "w-2", IPs: ip("192.0.2.22")}},
		}, time.Date(2026, 7, 1, 12, 0, 0, 0, time.UTC))
		if benchPKIErr == nil {
			benchPKI = res.Material
		}
	})
	if benchPKIErr != nil {
		b.Fatal(benchPKIErr)
	}
	return benchPKI
}

// benchArtifactSet is an artifact set like hack/build-artifacts.sh writes (made-up checksums,
// realistic sizes).
func benchArtifactSet() *artifacts.Manifest {
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

// benchInput is the Input of node n (cp-1..cp-3 at .11-.13, w-1, w-2 at .21, .22): routes to
// the four other nodes' pod ranges, the three API servers behind the node-local load balancer.
func benchInput(b *testing.B, node string, cp bool) builder.Input {
	b.Helper()
	nodes := []struct{ name, ip, podCIDR string }{
		{"cp-1", "192.0.2.11", "10.244.0.0/24"}, {"cp-2", "192.0.2.12", "10.244.1.0/24"}, {"cp-3", "192.0.2.13", "10.244.2.0/24"},
		{"w-1", "192.0.2.21", "10.244.3.0/24"}, {"w-2", "192.0.2.22", "10.244.4.0/24"},
	}
	in := builder.Input{
		ClusterName: "prod", Version: "v1.37.2", Role: builder.RoleWorker,
		Network:    builder.Network{PodCIDR: "10.244.0.0/16", ServiceCIDR: "10.96.0.0/12"},
		Endpoint:   "api.example.com",
		Artifacts:  benchArtifactSet(),
		HostFacts:  builder.HostFacts{SystemdPID1: true, CgroupV2: true},
		APIServers: []string{"192.0.2.11:6443", "192.0.2.12:6443", "192.0.2.13:6443"},
	}
	for _, n := range nodes {
		if n.name == node {
			in.Node = builder.Node{Name: n.name, IP: n.ip, PodCIDR: n.podCIDR}
			continue
		}
		in.Routes = append(in.Routes, plan.Route{Destination: n.podCIDR, Gateway: n.ip})
	}
	certs, err := benchMaterial(b).ForNode(node, cp)
	if err != nil {
		b.Fatal(err)
	}
	in.Certificates = certs
	if cp {
		in.Role = builder.RoleControlPlane
		in.Encryption = components.EncryptionParams{Keys: []components.EncryptionKey{{Name: "key-1", Secret: []byte(strings.Repeat("k", 32))}}}
	}
	return in
}

// BenchmarkBuild: the Cluster controller builds every node's Plan on each reconcile (the first
// control plane, which runs every component, and a worker).
func BenchmarkBuild(b *testing.B) {
	for _, tc := range []struct {
		name, node string
		cp         bool
	}{{"control-plane", "cp-1", true}, {"worker", "w-1", false}} {
		b.Run(tc.name, func(b *testing.B) {
			in := benchInput(b, tc.node, tc.cp)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := builder.Build(in); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
