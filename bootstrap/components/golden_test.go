package components

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

// key returns a deterministic 32-byte test key.
func key(seed byte) []byte { return bytes.Repeat([]byte{seed}, 32) }

// firstControlPlane is the host that initialises the cluster.
func firstControlPlane() ClusterParams {
	return ClusterParams{
		ClusterName: "prod",
		Version:     "v1.37.2",
		PodCIDR:     "10.244.0.0/16",
		ServiceCIDR: "10.96.0.0/12",
		Endpoint:    "api.example.com:6443",
		Node: NodeParams{Name: "cp-1", IP: "192.0.2.11", PodCIDR: "10.244.0.0/24",
			CgroupDriver: CgroupDriverFor(true, true)},
		Etcd: EtcdParams{Members: []EtcdMember{{Name: "cp-1", PeerURL: "https://192.0.2.11:2380"}}},
		APIServer: APIServerParams{Encryption: EncryptionParams{
			Keys: []EncryptionKey{{Name: "key-1", Secret: key(1)}}}},
	}
}

// joiningControlPlane is the third control-plane host, joining as a learner, with every option on.
func joiningControlPlane() ClusterParams {
	p := firstControlPlane()
	p.Node = NodeParams{Name: "cp-3", IP: "192.0.2.13", PodCIDR: "10.244.2.0/24",
		CgroupDriver: CgroupDriverFor(true, false), ResolvConf: "/run/systemd/resolve/resolv.conf"}
	p.Etcd = EtcdParams{Join: true, Members: []EtcdMember{
		{Name: "cp-1", PeerURL: "https://192.0.2.11:2380"},
		{Name: "cp-2", PeerURL: "https://192.0.2.12:2380"},
		{Name: "cp-3", PeerURL: "https://192.0.2.13:2380"},
	}, QuotaBackendBytes: 8 << 30}
	p.APIServer = APIServerParams{
		Port: 7443,
		Encryption: EncryptionParams{Provider: EncryptionAESCBC, Keys: []EncryptionKey{
			{Name: "key-2", Secret: key(2)}, {Name: "key-1", Secret: key(1)}}},
		Audit: AuditParams{Enabled: true, MaxAgeDays: 7},
	}
	p.ControllerManager.CSRSigning = true
	p.DNSDomain = "corp.internal"
	p.ClusterDNSIP = "10.96.0.53"
	return p
}

// containerWorker is a worker that is really a container (the e2e harness), with custom paths.
func containerWorker() ClusterParams {
	return ClusterParams{
		ClusterName: "e2e", Version: "v1.36.3", PodCIDR: "10.32.0.0/12", ServiceCIDR: "10.0.0.0/16",
		NodeCIDRMaskSize: 20, Endpoint: "172.18.0.10",
		Node: NodeParams{Name: "worker-1", IP: "172.18.0.21", PodCIDR: "10.32.16.0/20",
			CgroupDriver: CgroupDriverFor(false, false), InContainer: true},
		Runtime: RuntimeParams{Snapshotter: "native", BridgeName: "basalt0", MTU: 1450,
			SandboxImage: "registry.k8s.io/pause:3.10@sha256:" + strings.Repeat("ab", 32)},
		Paths: Paths{BinDir: "/usr/local/bin", CNIBinDir: "/usr/lib/cni"},
	}
}

// ipv6ControlPlane is a single-stack IPv6 first control-plane host.
func ipv6ControlPlane() ClusterParams {
	return ClusterParams{
		ClusterName: "v6", Version: "v1.35.0", PodCIDR: "fd00:10:244::/56", ServiceCIDR: "fd00:10:96::/112",
		Endpoint: "[2001:db8::10]:6443",
		Node: NodeParams{Name: "cp-1", IP: "2001:db8::11", PodCIDR: "fd00:10:244:1::/64",
			CgroupDriver: CgroupDriverSystemd},
		Etcd: EtcdParams{Members: []EtcdMember{{Name: "cp-1", PeerURL: "https://[2001:db8::11]:2380"}}},
		APIServer: APIServerParams{Encryption: EncryptionParams{
			Keys: []EncryptionKey{{Name: "key-1", Secret: key(6)}}}},
	}
}

// loopbackControlPlane is a single-node cluster confined to its host, as the integration test
// runs it: node IP 127.0.0.1, every port moved, every path under a root directory.
func loopbackControlPlane() ClusterParams {
	p := firstControlPlane()
	p.Node.IP, p.Endpoint = "127.0.0.1", "127.0.0.1:16443"
	p.Etcd.Members[0].PeerURL = "https://127.0.0.1:12380"
	p.APIServer.Port = 16443
	p.Ports = Ports{EtcdClient: 12379, EtcdPeer: 12380, EtcdMetrics: 12381, ControllerManager: 20257,
		Scheduler: 20259, KubeletHealthz: 20248}
	p.Paths = Paths{}.UnderRoot("/tmp/basalt-root")
	return p
}

type renderer struct {
	name   string
	render func(ClusterParams) (string, error)
}

func component(f func(ClusterParams) (Component, error)) func(ClusterParams) (string, error) {
	return func(p ClusterParams) (string, error) {
		c, err := f(p)
		if err != nil {
			return "", err
		}
		return formatComponent(c), nil
	}
}

var (
	rEtcd              = renderer{"etcd", component(Etcd)}
	rAPIServer         = renderer{"kube-apiserver", component(APIServer)}
	rControllerManager = renderer{"kube-controller-manager", component(ControllerManager)}
	rScheduler         = renderer{"kube-scheduler", component(Scheduler)}
	rKubelet           = renderer{"kubelet", component(Kubelet)}
	rKubeProxy         = renderer{"kube-proxy", component(KubeProxy)}
	rContainerd        = renderer{"containerd", component(Containerd)}
	rCNI               = renderer{"cni", func(p ClusterParams) (string, error) {
		f, err := CNI(p)
		return formatFile(f), err
	}}
	everything = []renderer{rEtcd, rAPIServer, rControllerManager, rScheduler, rKubelet, rKubeProxy, rContainerd, rCNI}
	nodeOnly   = []renderer{rKubelet, rKubeProxy, rContainerd, rCNI}
)

// formatComponent prints argv one argument per line, then every file.
func formatComponent(c Component) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# component %s\n", c.Name)
	for _, a := range c.Args {
		b.WriteString(a + "\n")
	}
	for _, f := range c.Files {
		b.WriteString(formatFile(f))
	}
	return b.String()
}

func formatFile(f File) string {
	return fmt.Sprintf("\n# file %s mode %04o secret %v\n%s", f.Path, f.Mode, f.Secret, f.Content)
}

func TestGolden(t *testing.T) {
	cases := []struct {
		name      string
		params    ClusterParams
		renderers []renderer
	}{
		{"first-control-plane", firstControlPlane(), everything},
		{"joining-control-plane", joiningControlPlane(), everything},
		{"container-worker", containerWorker(), nodeOnly},
		{"ipv6-control-plane", ipv6ControlPlane(), everything},
		{"loopback-control-plane", loopbackControlPlane(), everything},
	}
	for _, tc := range cases {
		for _, r := range tc.renderers {
			t.Run(tc.name+"/"+r.name, func(t *testing.T) {
				got, err := r.render(tc.params)
				if err != nil {
					t.Fatal(err)
				}
				again, _ := r.render(tc.params)
				if got != again {
					t.Fatal("output is not deterministic")
				}
				golden := filepath.Join("testdata", tc.name+"."+r.name+".golden")
				if *update {
					if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
						t.Fatal(err)
					}
					return
				}
				want, err := os.ReadFile(golden)
				if err != nil {
					t.Fatalf("%v (run go test -update to create it)", err)
				}
				if got != string(want) {
					t.Errorf("%s differs (run go test ./bootstrap/components -update and review the diff)\n--- got\n%s", golden, got)
				}
			})
		}
	}
	t.Run("rbac", func(t *testing.T) {
		golden := filepath.Join("testdata", "kubelet-api-admin-binding.golden")
		got := KubeletAPIAdminBinding()
		if *update {
			if err := os.WriteFile(golden, got, 0o644); err != nil {
				t.Fatal(err)
			}
			return
		}
		if want, err := os.ReadFile(golden); err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s differs or is missing (%v)", golden, err)
		}
	})
}
