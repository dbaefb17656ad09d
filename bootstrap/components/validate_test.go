package components

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

type renderFunc func(ClusterParams) error

func asRender(f func(ClusterParams) (Component, error)) renderFunc {
	return func(p ClusterParams) error { _, err := f(p); return err }
}

var (
	vEtcd       = asRender(Etcd)
	vAPIServer  = asRender(APIServer)
	vKubelet    = asRender(Kubelet)
	vContainerd = asRender(Containerd)
	vCNI        = func(p ClusterParams) error { _, err := CNI(p); return err }
	vValidate   = func(p ClusterParams) error { return p.Validate() }
	// vAll are the renderers every common field is checked by.
	vAll = []renderFunc{vEtcd, vAPIServer, asRender(ControllerManager), asRender(Scheduler), vKubelet,
		asRender(KubeProxy), vContainerd, vCNI, vValidate}
)

func TestValidationErrorsNameTheField(t *testing.T) {
	cases := []struct {
		name  string
		mod   func(*ClusterParams)
		field string
		only  []renderFunc // nil: every renderer must reject it
	}{
		{"malformed version", func(p *ClusterParams) { p.Version = "1.37.2" }, "version", nil},
		{"version without patch", func(p *ClusterParams) { p.Version = "v1.37" }, "version", nil},
		{"unknown old version", func(p *ClusterParams) { p.Version = "v1.30.4" }, "version", nil},
		{"unknown future version", func(p *ClusterParams) { p.Version = "v1.38.0" }, "version", nil},
		{"major 2", func(p *ClusterParams) { p.Version = "v2.37.0" }, "version", nil},
		{"empty cluster name", func(p *ClusterParams) { p.ClusterName = "" }, "clusterName", nil},
		{"pod CIDR host bits", func(p *ClusterParams) { p.PodCIDR = "10.244.0.1/16" }, "podCIDR", nil},
		{"pod CIDR garbage", func(p *ClusterParams) { p.PodCIDR = "10.244.0.0" }, "podCIDR", nil},
		{"service CIDR overlaps", func(p *ClusterParams) { p.ServiceCIDR = "10.244.128.0/20" }, "serviceCIDR", nil},
		{"service CIDR family", func(p *ClusterParams) { p.ServiceCIDR = "fd00::/112" }, "serviceCIDR", nil},
		{"service CIDR too large", func(p *ClusterParams) {
			p.ServiceCIDR = "10.0.0.0/8"
			p.PodCIDR = "192.168.0.0/16"
			p.Node.PodCIDR = "192.168.0.0/24"
		}, "serviceCIDR", nil},
		{"service CIDR without a DNS IP", func(p *ClusterParams) { p.ServiceCIDR = "10.96.0.0/29" }, "serviceCIDR", nil},
		{"node mask shorter than the pod CIDR", func(p *ClusterParams) { p.NodeCIDRMaskSize = 8 }, "nodeCIDRMaskSize", nil},
		{"node mask equal to the pod CIDR", func(p *ClusterParams) { p.NodeCIDRMaskSize = 16 }, "nodeCIDRMaskSize", nil},
		{"node mask too long", func(p *ClusterParams) { p.NodeCIDRMaskSize = 31 }, "nodeCIDRMaskSize", nil},
		{"more than 2^16 node ranges", func(p *ClusterParams) {
			p.PodCIDR = "10.0.0.0/8"
			p.ServiceCIDR = "172.16.0.0/16"
			p.NodeCIDRMaskSize = 25
		}, "nodeCIDRMaskSize", nil},
		{"default node mask on a /24 pod CIDR", func(p *ClusterParams) { p.PodCIDR = "10.244.0.0/24" }, "nodeCIDRMaskSize", nil},
		{"bad DNS domain", func(p *ClusterParams) { p.DNSDomain = "Corp_Local" }, "dnsDomain", nil},
		{"cluster DNS IP outside", func(p *ClusterParams) { p.ClusterDNSIP = "10.244.0.10" }, "clusterDNSIP", nil},
		{"cluster DNS IP garbage", func(p *ClusterParams) { p.ClusterDNSIP = "dns" }, "clusterDNSIP", nil},
		{"missing endpoint", func(p *ClusterParams) { p.Endpoint = "" }, "endpoint", nil},
		{"endpoint URL", func(p *ClusterParams) { p.Endpoint = "https://api.example.com" }, "endpoint", nil},
		{"endpoint underscore", func(p *ClusterParams) { p.Endpoint = "api_1.example.com:6443" }, "endpoint", nil},
		{"endpoint port 0", func(p *ClusterParams) { p.Endpoint = "api.example.com:0" }, "endpoint", nil},
		{"endpoint named port", func(p *ClusterParams) { p.Endpoint = "api.example.com:https" }, "endpoint", nil},
		{"endpoint malformed IPv6", func(p *ClusterParams) { p.Endpoint = "2001:db8::1::6443" }, "endpoint", nil},
		{"missing node name", func(p *ClusterParams) { p.Node.Name = "" }, "node.name", nil},
		{"missing node IP", func(p *ClusterParams) { p.Node.IP = "" }, "node.ip", nil},
		{"unspecified node IP", func(p *ClusterParams) { p.Node.IP = "0.0.0.0" }, "node.ip", nil},
		{"multicast node IP", func(p *ClusterParams) { p.Node.IP = "224.0.0.1" }, "node.ip", nil},
		{"node IP in pod CIDR", func(p *ClusterParams) { p.Node.IP = "10.244.3.4" }, "node.ip", nil},
		{"node IP of the other family", func(p *ClusterParams) { p.Node.IP = "2001:db8::11" }, "node.ip", nil},
		{"node pod CIDR outside", func(p *ClusterParams) { p.Node.PodCIDR = "10.245.0.0/24" }, "node.podCIDR", nil},
		{"node pod CIDR of the wrong size", func(p *ClusterParams) { p.Node.PodCIDR = "10.244.0.0/25" }, "node.podCIDR", nil},
		{"node pod CIDR host bits", func(p *ClusterParams) { p.Node.PodCIDR = "10.244.0.1/24" }, "node.podCIDR", nil},
		{"API server port", func(p *ClusterParams) { p.APIServer.Port = 70000 }, "apiServer.port", nil},
		{"negative etcd port", func(p *ClusterParams) { p.Ports.EtcdClient = -1 }, "ports.etcdClient", nil},
		{"two services on one port", func(p *ClusterParams) { p.Ports.Scheduler = 10257 }, "ports.scheduler", nil},
		{"scheduler on the API server port", func(p *ClusterParams) { p.Ports.Scheduler = 6443 }, "ports.scheduler", nil},
		{"relative image dir", func(p *ClusterParams) { p.Paths.ImageDir = "images" }, "paths.imageDir", nil},
		{"relative bin dir", func(p *ClusterParams) { p.Paths.BinDir = "opt/bin" }, "paths.binDir", nil},
		{"unclean PKI dir", func(p *ClusterParams) { p.Paths.PKIDir = "/etc/../pki" }, "paths.pkiDir", nil},
		{"relative resolv.conf", func(p *ClusterParams) { p.Node.ResolvConf = "resolv.conf" }, "node.resolvConf", nil},

		{"no cgroup driver", func(p *ClusterParams) { p.Node.CgroupDriver = "" }, "node.cgroupDriver", []renderFunc{vKubelet, vContainerd}},
		{"unknown cgroup driver", func(p *ClusterParams) { p.Node.CgroupDriver = "docker" }, "node.cgroupDriver", []renderFunc{vKubelet, vContainerd, vValidate}},

		{"no etcd members", func(p *ClusterParams) { p.Etcd.Members = nil }, "etcd.members", []renderFunc{vEtcd}},
		{"self not listed", func(p *ClusterParams) { p.Etcd.Members[0].Name = "cp-9" }, "etcd.members", []renderFunc{vEtcd, vValidate}},
		{"self with another peer URL", func(p *ClusterParams) { p.Etcd.Members[0].PeerURL = "https://192.0.2.99:2380" }, "etcd.members[0].peerURL", []renderFunc{vEtcd, vValidate}},
		{"http peer URL", func(p *ClusterParams) { p.Etcd.Members[0].PeerURL = "http://192.0.2.11:2380" }, "etcd.members[0].peerURL", []renderFunc{vEtcd, vValidate}},
		{"peer URL without port", func(p *ClusterParams) { p.Etcd.Members[0].PeerURL = "https://192.0.2.11" }, "etcd.members[0].peerURL", []renderFunc{vEtcd}},
		{"duplicate member", func(p *ClusterParams) {
			p.Etcd.Join = true
			p.Etcd.Members = append(p.Etcd.Members, p.Etcd.Members[0])
		}, "etcd.members[1].name", []renderFunc{vEtcd, vValidate}},
		{"bad member name", func(p *ClusterParams) { p.Etcd.Members[0].Name = "CP 1" }, "etcd.members[0].name", []renderFunc{vEtcd}},
		{"initialising with others listed", func(p *ClusterParams) {
			p.Etcd.Members = append(p.Etcd.Members, EtcdMember{Name: "cp-2", PeerURL: "https://192.0.2.12:2380"})
		}, "etcd.members", []renderFunc{vEtcd, vValidate}},

		{"no encryption key", func(p *ClusterParams) { p.APIServer.Encryption.Keys = nil }, "apiServer.encryption.keys", []renderFunc{vAPIServer}},
		{"missing key secret", func(p *ClusterParams) { p.APIServer.Encryption.Keys[0].Secret = nil }, "apiServer.encryption.keys[0].secret", []renderFunc{vAPIServer, vValidate}},
		{"short key", func(p *ClusterParams) { p.APIServer.Encryption.Keys[0].Secret = key(1)[:16] }, "apiServer.encryption.keys[0].secret", []renderFunc{vAPIServer}},
		{"unnamed key", func(p *ClusterParams) { p.APIServer.Encryption.Keys[0].Name = "" }, "apiServer.encryption.keys[0].name", []renderFunc{vAPIServer}},
		{"duplicate key name", func(p *ClusterParams) {
			p.APIServer.Encryption.Keys = append(p.APIServer.Encryption.Keys, EncryptionKey{Name: "key-1", Secret: key(9)})
		}, "apiServer.encryption.keys[1].name", []renderFunc{vAPIServer}},
		{"unknown provider", func(p *ClusterParams) { p.APIServer.Encryption.Provider = "aesgcm" }, "apiServer.encryption.provider", []renderFunc{vAPIServer, vValidate}},
		{"negative audit limit", func(p *ClusterParams) { p.APIServer.Audit = AuditParams{Enabled: true, MaxSizeMB: -1} }, "apiServer.audit", []renderFunc{vAPIServer}},

		{"bad sandbox image", func(p *ClusterParams) { p.Runtime.SandboxImage = "pause 3.10" }, "runtime.sandboxImage", []renderFunc{vContainerd}},
		{"quote in sandbox image", func(p *ClusterParams) { p.Runtime.SandboxImage = "registry.k8s.io/pause:3.10'" }, "runtime.sandboxImage", []renderFunc{vContainerd}},
		{"bad snapshotter", func(p *ClusterParams) { p.Runtime.Snapshotter = "overlay fs" }, "runtime.snapshotter", []renderFunc{vContainerd}},
		{"long bridge name", func(p *ClusterParams) { p.Runtime.BridgeName = "a-very-long-bridge-name" }, "runtime.bridgeName", []renderFunc{vCNI}},
		{"bad MTU", func(p *ClusterParams) { p.Runtime.MTU = 100 }, "runtime.mtu", []renderFunc{vCNI}},
		{"no node pod CIDR", func(p *ClusterParams) { p.Node.PodCIDR = "" }, "node.podCIDR", []renderFunc{vCNI}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			renders := tc.only
			if renders == nil {
				renders = vAll
			}
			for i, render := range renders {
				p := firstControlPlane()
				tc.mod(&p)
				err := render(p)
				var fe *FieldError
				if !errors.As(err, &fe) || fe.Field != tc.field {
					t.Errorf("renderer %d: err = %v, want a FieldError for %q", i, err, tc.field)
					continue
				}
				if !strings.Contains(err.Error(), tc.field+": ") {
					t.Errorf("message %q does not name %q", err, tc.field)
				}
			}
		})
	}
}

func TestValidParamsPass(t *testing.T) {
	for name, p := range map[string]ClusterParams{
		"first": firstControlPlane(), "joining": joiningControlPlane(), "worker": containerWorker(), "ipv6": ipv6ControlPlane(),
	} {
		if err := p.Validate(); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	p := firstControlPlane()
	for _, e := range []string{"api.example.com", "192.0.2.10", "192.0.2.10:443", "[2001:db8::1]", "[2001:db8::1]:443"} {
		p.Endpoint = e
		if err := p.Validate(); err != nil {
			t.Errorf("endpoint %q: %v", e, err)
		}
	}
}

func TestCgroupDriverFor(t *testing.T) {
	for _, tc := range []struct {
		systemd, v2 bool
		want        CgroupDriver
	}{{true, true, CgroupDriverSystemd}, {true, false, CgroupDriverCgroupfs}, {false, true, CgroupDriverCgroupfs}, {false, false, CgroupDriverCgroupfs}} {
		if got := CgroupDriverFor(tc.systemd, tc.v2); got != tc.want {
			t.Errorf("CgroupDriverFor(%v, %v) = %s, want %s", tc.systemd, tc.v2, got, tc.want)
		}
	}
}

func TestParseVersion(t *testing.T) {
	for v, want := range map[string]Version{
		"v1.37.2": {1, 37, 2}, "v1.35.0": {1, 35, 0}, "v1.36.3-rc.1": {1, 36, 3}, "v1.37.0+basalt.1": {1, 37, 0},
	} {
		if got, err := ParseVersion(v); err != nil || got != want {
			t.Errorf("ParseVersion(%s) = %v, %v", v, got, err)
		}
	}
	for _, v := range []string{"", "v1.37.02", "V1.37.2", "v1.37.2.1", "latest", "v1.34.9"} {
		if _, err := ParseVersion(v); err == nil {
			t.Errorf("ParseVersion(%q) accepted", v)
		}
	}
}

func TestPathsDefaults(t *testing.T) {
	var zero Paths
	if got := zero.CACert(); got != "/etc/basalt/pki/ca.crt" {
		t.Errorf("zero Paths CACert = %q", got)
	}
	if got := zero.Kubeconfig("kubelet"); got != "/etc/basalt/kubeconfig/kubelet.conf" {
		t.Errorf("zero Paths Kubeconfig = %q", got)
	}
	custom := Paths{PKIDir: "/srv/pki"}
	if got := custom.EtcdPeer(); got != (CertPaths{"/srv/pki/etcd/peer.crt", "/srv/pki/etcd/peer.key"}) {
		t.Errorf("EtcdPeer = %+v", got)
	}
}

// TestFailCgroupV1FollowsTheHost: the kubelet keeps its strict default (refuse cgroup v1) on a
// cgroup v2 host and turns it off only on a cgroup v1 host, where it would not start.
func TestFailCgroupV1FollowsTheHost(t *testing.T) {
	for _, v2 := range []bool{true, false} {
		p := containerWorker()
		p.Node.CgroupV2 = v2
		c, err := Kubelet(p)
		if err != nil {
			t.Fatal(err)
		}
		want := fmt.Sprintf("failCgroupV1: %v\n", v2)
		found := false
		for _, f := range c.Files {
			if strings.Contains(string(f.Content), want) {
				found = true
			}
		}
		if !found {
			t.Errorf("cgroup v2 %v: no kubelet configuration file has %q", v2, want)
		}
	}
}
