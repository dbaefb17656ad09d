package builder_test

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/basalt-dev/basalt/bootstrap/artifacts"
	"github.com/basalt-dev/basalt/bootstrap/clusterpki"
	"github.com/basalt-dev/basalt/bootstrap/components"
	"github.com/basalt-dev/basalt/bootstrap/plan"
	"github.com/basalt-dev/basalt/bootstrap/plan/builder"
)

// exampleManifest stands for the manifest.json of an artifact set (artifacts.Load).
func exampleManifest() *artifacts.Manifest {
	m := &artifacts.Manifest{KubernetesVersion: "v1.37.2"}
	add := func(name string, kind artifacts.Kind, image string) {
		sum := sha256.Sum256([]byte(name))
		m.Artifacts = append(m.Artifacts, artifacts.Artifact{Name: name, Kind: kind, Path: name,
			SHA256: hex.EncodeToString(sum[:]), Size: 1, Image: image})
	}
	for _, name := range []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy",
		"etcd", "etcdctl", "containerd", "containerd-shim-runc-v2", "ctr", "runc", "crictl",
		"cni-bridge", "cni-host-local", "cni-loopback", "cni-portmap"} {
		add(name, artifacts.KindBinary, "")
	}
	add("image-pause", artifacts.KindImage, "registry.k8s.io/pause:3.10")
	add("image-webserver", artifacts.KindImage, "basalt.dev/webserver:v1")
	return m
}

// The Cluster controller ensures the cluster's PKI, picks a node's part of it and builds the
// node's Plan; the agent on the node converges to it.
func Example() {
	now := time.Date(2026, 7, 1, 12, 0, 0, 0, time.UTC)
	pkiRes, err := clusterpki.Ensure(nil, clusterpki.Input{
		ClusterName: "prod", Endpoint: "api.example.com", ServiceCIDR: "10.96.0.0/12", DNSDomain: "cluster.local",
		ControlPlane: []clusterpki.Node{{Name: "cp-1", IPs: []net.IP{net.ParseIP("192.0.2.11")}}},
		Workers:      []clusterpki.Node{{Name: "w-1", IPs: []net.IP{net.ParseIP("192.0.2.21")}}},
	}, now)
	if err != nil {
		panic(err)
	}
	certs, err := pkiRes.Material.ForNode("cp-1", true)
	if err != nil {
		panic(err)
	}
	p, err := builder.Build(builder.Input{
		ClusterName: "prod", Version: "v1.37.2", Role: builder.RoleControlPlane,
		Node:         builder.Node{Name: "cp-1", IP: "192.0.2.11", PodCIDR: "10.244.0.0/24"},
		Network:      builder.Network{PodCIDR: "10.244.0.0/16", ServiceCIDR: "10.96.0.0/12"},
		Endpoint:     "api.example.com",
		Encryption:   components.EncryptionParams{Keys: []components.EncryptionKey{{Name: "key-1", Secret: make([]byte, 32)}}},
		Certificates: certs,
		Artifacts:    exampleManifest(),
		HostFacts:    builder.HostFacts{SystemdPID1: true, CgroupV2: true},
		Routes:       []plan.Route{{Destination: "10.244.1.0/24", Gateway: "192.0.2.21"}},
		APIServers:   []string{"192.0.2.11:6443"},
	})
	if err != nil {
		panic(err)
	}
	order, _ := p.StartOrder()
	fmt.Println("start order:", strings.Join(order, ", "))
	for _, s := range p.Services {
		probe := ""
		switch {
		case s.Probe.HTTP != nil:
			probe = "GET " + s.Probe.HTTP.URL
		case s.Probe.Exec != nil:
			probe = "exec " + strings.Join(s.Probe.Exec.Argv, " ")
		}
		fmt.Printf("service %s after=%v reads=%d probe=%s\n", s.Name, s.After, len(s.Reads), probe)
	}
	for _, f := range p.Files {
		fmt.Printf("file %04o %s\n", f.Mode, f.Path)
	}
	for _, a := range p.Artifacts {
		fmt.Printf("artifact %04o %s\n", a.Mode, a.Path)
	}
	fmt.Printf("routes %v\nload balancer %+v\nimages %v into %s\n", p.Routes, p.LoadBalancers[0], p.Images, p.ImageRuntime)
	// Output:
	// start order: containerd, etcd, kube-apiserver, kube-controller-manager, kube-proxy, kube-scheduler, kubelet
	// service containerd after=[] reads=2 probe=exec /opt/basalt/bin/ctr --address /run/containerd/containerd.sock version
	// service etcd after=[] reads=6 probe=GET https://127.0.0.1:2379/health?serializable=true&exclude=NOSPACE
	// service kube-apiserver after=[etcd] reads=15 probe=GET https://127.0.0.1:6443/readyz
	// service kube-controller-manager after=[kube-apiserver] reads=7 probe=GET https://127.0.0.1:10257/healthz
	// service kube-proxy after=[] reads=3 probe=GET http://127.0.0.1:10256/livez
	// service kube-scheduler after=[kube-apiserver] reads=5 probe=GET https://127.0.0.1:10259/healthz
	// service kubelet after=[containerd] reads=6 probe=GET http://127.0.0.1:10248/healthz
	// file 0644 /etc/basalt/containerd/config.toml
	// file 0644 /etc/basalt/kube-apiserver/authentication-config.yaml
	// file 0600 /etc/basalt/kube-apiserver/encryption-config.yaml
	// file 0644 /etc/basalt/kube-proxy/config.yaml
	// file 0644 /etc/basalt/kube-scheduler/config.yaml
	// file 0600 /etc/basalt/kubeconfig/controller-manager.conf
	// file 0600 /etc/basalt/kubeconfig/kube-proxy.conf
	// file 0600 /etc/basalt/kubeconfig/kubelet.conf
	// file 0600 /etc/basalt/kubeconfig/scheduler.conf
	// file 0644 /etc/basalt/kubelet/config.yaml
	// file 0644 /etc/basalt/pki/apiserver-etcd-client.crt
	// file 0600 /etc/basalt/pki/apiserver-etcd-client.key
	// file 0644 /etc/basalt/pki/apiserver-kubelet-client.crt
	// file 0600 /etc/basalt/pki/apiserver-kubelet-client.key
	// file 0644 /etc/basalt/pki/apiserver.crt
	// file 0600 /etc/basalt/pki/apiserver.key
	// file 0644 /etc/basalt/pki/ca.crt
	// file 0644 /etc/basalt/pki/controller-manager-serving.crt
	// file 0600 /etc/basalt/pki/controller-manager-serving.key
	// file 0644 /etc/basalt/pki/etcd/ca.crt
	// file 0644 /etc/basalt/pki/etcd/healthcheck-client.crt
	// file 0600 /etc/basalt/pki/etcd/healthcheck-client.key
	// file 0644 /etc/basalt/pki/etcd/peer.crt
	// file 0600 /etc/basalt/pki/etcd/peer.key
	// file 0644 /etc/basalt/pki/etcd/server.crt
	// file 0600 /etc/basalt/pki/etcd/server.key
	// file 0644 /etc/basalt/pki/front-proxy-ca.crt
	// file 0644 /etc/basalt/pki/front-proxy-client.crt
	// file 0600 /etc/basalt/pki/front-proxy-client.key
	// file 0644 /etc/basalt/pki/kubelet.crt
	// file 0600 /etc/basalt/pki/kubelet.key
	// file 0600 /etc/basalt/pki/sa.key
	// file 0644 /etc/basalt/pki/sa.pub
	// file 0644 /etc/basalt/pki/scheduler-serving.crt
	// file 0600 /etc/basalt/pki/scheduler-serving.key
	// file 0644 /etc/cni/net.d/10-basalt.conflist
	// artifact 0755 /opt/basalt/bin/containerd
	// artifact 0755 /opt/basalt/bin/containerd-shim-runc-v2
	// artifact 0755 /opt/basalt/bin/crictl
	// artifact 0755 /opt/basalt/bin/ctr
	// artifact 0755 /opt/basalt/bin/etcd
	// artifact 0755 /opt/basalt/bin/etcdctl
	// artifact 0755 /opt/basalt/bin/kube-apiserver
	// artifact 0755 /opt/basalt/bin/kube-controller-manager
	// artifact 0755 /opt/basalt/bin/kube-proxy
	// artifact 0755 /opt/basalt/bin/kube-scheduler
	// artifact 0755 /opt/basalt/bin/kubelet
	// artifact 0755 /opt/basalt/bin/runc
	// artifact 0755 /opt/cni/bin/bridge
	// artifact 0755 /opt/cni/bin/host-local
	// artifact 0755 /opt/cni/bin/loopback
	// artifact 0755 /opt/cni/bin/portmap
	// artifact 0644 /var/lib/basalt/images/pause.tar
	// artifact 0644 /var/lib/basalt/images/webserver.tar
	// routes [{10.244.1.0/24 192.0.2.21}]
	// load balancer {Name:kube-apiserver Listen:127.0.0.1:6444 Backends:[192.0.2.11:6443]}
	// images [image-pause image-webserver] into containerd
}
