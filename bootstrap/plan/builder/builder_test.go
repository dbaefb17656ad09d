package builder

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/basalt-dev/basalt/bootstrap/artifacts"
	"github.com/basalt-dev/basalt/bootstrap/clusterpki"
	"github.com/basalt-dev/basalt/bootstrap/components"
	"github.com/basalt-dev/basalt/bootstrap/kubeconfig"
	"github.com/basalt-dev/basalt/bootstrap/pki"
	"github.com/basalt-dev/basalt/bootstrap/plan"
)

var t0 = time.Date(2026, 7, 1, 12, 0, 0, 0, time.UTC)

var (
	materialOnce sync.Once
	material     clusterpki.Material
	materialErr  error
)

// testMaterial is the PKI of a cluster with control-plane nodes cp-1, cp-2, cp-3 and worker w-1,
// issued once for all tests.
func testMaterial(t *testing.T) clusterpki.Material {
	t.Helper()
	materialOnce.Do(func() {
		var res *clusterpki.Result
		res, materialErr = clusterpki.Ensure(nil, clusterpki.Input{
			ClusterName: "prod", Endpoint: "api.example.com", ServiceCIDR: "10.96.0.0/12", DNSDomain: "cluster.local",
			ControlPlane: []clusterpki.Node{
				{Name: "cp-1", IPs: []net.IP{net.ParseIP("192.0.2.11")}},
				{Name: "cp-2", IPs: []net.IP{net.ParseIP("192.0.2.12")}},
				{Name: "cp-3", IPs: []net.IP{net.ParseIP("192.0.2.13")}},
			},
			Workers: []clusterpki.Node{{Name: "w-1", IPs: []net.IP{net.ParseIP("192.0.2.21")}}},
		}, t0)
		if materialErr == nil {
			material = res.Material
		}
	})
	if materialErr != nil {
		t.Fatal(materialErr)
	}
	return material
}

func fakeSum(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// testManifest is an artifact set like hack/build-artifacts.sh writes, with made-up checksums.
func testManifest(version string) *artifacts.Manifest {
	m := &artifacts.Manifest{KubernetesVersion: version}
	for i, name := range []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy",
		"etcd", "etcdctl", "etcdutl", "containerd", "containerd-shim-runc-v2", "ctr", "runc", "crictl",
		"cni-bridge", "cni-host-local", "cni-loopback", "cni-portmap"} {
		m.Artifacts = append(m.Artifacts, artifacts.Artifact{Name: name, Version: version, OS: "linux", Arch: "amd64",
			Kind: artifacts.KindBinary, Path: "bin/" + name, SHA256: fakeSum(name + version), Size: int64(1000 + i)})
	}
	m.Artifacts = append(m.Artifacts,
		artifacts.Artifact{Name: "image-pause", Version: "3.10", Kind: artifacts.KindImage, Path: "images/pause.tar",
			SHA256: fakeSum("pause"), Size: 2000, Image: "registry.k8s.io/pause:3.10"},
		artifacts.Artifact{Name: "image-webserver", Version: "v1", Kind: artifacts.KindImage, Path: "images/webserver.tar",
			SHA256: fakeSum("webserver"), Size: 3000, Image: "basalt.dev/webserver:v1"})
	return m
}

func mustNode(t *testing.T, node string, cp bool) clusterpki.NodeCertificates {
	t.Helper()
	c, err := testMaterial(t).ForNode(node, cp)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// firstControlPlane is cp-1, the member that initialises etcd.
func firstControlPlane(t *testing.T) Input {
	return Input{
		ClusterName: "prod", Version: "v1.37.2", Role: RoleControlPlane,
		Node:     Node{Name: "cp-1", IP: "192.0.2.11", PodCIDR: "10.244.0.0/24"},
		Network:  Network{PodCIDR: "10.244.0.0/16", ServiceCIDR: "10.96.0.0/12"},
		Endpoint: "api.example.com",
		Encryption: components.EncryptionParams{Keys: []components.EncryptionKey{
			{Name: "key-1", Secret: []byte(strings.Repeat("k", 32))}}},
		Certificates: mustNode(t, "cp-1", true),
		Artifacts:    testManifest("v1.37.2"),
		HostFacts:    HostFacts{SystemdPID1: true, CgroupV2: true},
		Routes: []plan.Route{{Destination: "10.244.1.0/24", Gateway: "192.0.2.12"},
			{Destination: "10.244.2.0/24", Gateway: "192.0.2.13"}, {Destination: "10.244.3.0/24", Gateway: "192.0.2.21"}},
		APIServers: []string{"192.0.2.11:6443", "192.0.2.12:6443", "192.0.2.13:6443"},
	}
}

// joiningControlPlane is cp-3, added as a learner to the members cp-1 and cp-2.
func joiningControlPlane(t *testing.T) Input {
	in := firstControlPlane(t)
	in.Node = Node{Name: "cp-3", IP: "192.0.2.13", PodCIDR: "10.244.2.0/24"}
	in.Certificates = mustNode(t, "cp-3", true)
	in.Etcd = Etcd{Join: true, Learner: true, Members: []components.EtcdMember{
		{Name: "cp-1", PeerURL: "https://192.0.2.11:2380"},
		{Name: "cp-2", PeerURL: "https://192.0.2.12:2380"},
		{Name: "cp-3", PeerURL: "https://192.0.2.13:2380"},
	}}
	in.Routes = []plan.Route{{Destination: "10.244.0.0/24", Gateway: "192.0.2.11"},
		{Destination: "10.244.1.0/24", Gateway: "192.0.2.12"}, {Destination: "10.244.3.0/24", Gateway: "192.0.2.21"}}
	return in
}

// worker is w-1.
func worker(t *testing.T) Input {
	in := firstControlPlane(t)
	in.Role = RoleWorker
	in.Node = Node{Name: "w-1", IP: "192.0.2.21", PodCIDR: "10.244.3.0/24"}
	in.Certificates = mustNode(t, "w-1", false)
	in.Encryption = components.EncryptionParams{}
	in.HostFacts = HostFacts{InContainer: true}
	in.Routes = []plan.Route{{Destination: "10.244.0.0/24", Gateway: "192.0.2.11"},
		{Destination: "10.244.1.0/24", Gateway: "192.0.2.12"}, {Destination: "10.244.2.0/24", Gateway: "192.0.2.13"}}
	return in
}

func mustBuild(t *testing.T, in Input) *plan.Plan {
	t.Helper()
	p, err := Build(in)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func service(t *testing.T, p *plan.Plan, name string) plan.Service {
	t.Helper()
	for _, s := range p.Services {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("no service %s in %v", name, serviceNames(p))
	return plan.Service{}
}

func serviceNames(p *plan.Plan) []string {
	var names []string
	for _, s := range p.Services {
		names = append(names, s.Name)
	}
	return names
}

func file(t *testing.T, p *plan.Plan, path string) plan.File {
	t.Helper()
	for _, f := range p.Files {
		if f.Path == path {
			return f
		}
	}
	t.Fatalf("no file %s", path)
	return plan.File{}
}

func TestControlPlanePlan(t *testing.T) {
	p := mustBuild(t, firstControlPlane(t))
	order, err := p.StartOrder()
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"containerd", "etcd", "kube-apiserver", "kube-controller-manager", "kube-proxy", "kube-scheduler", "kubelet"}
	if diff := cmp.Diff(want, order); diff != "" {
		t.Errorf("start order (-want +got):\n%s", diff)
	}
	for name, after := range map[string][]string{
		"containerd": nil, "etcd": nil, "kube-proxy": nil, "kubelet": {"containerd"},
		"kube-apiserver": {"etcd"}, "kube-controller-manager": {"kube-apiserver"}, "kube-scheduler": {"kube-apiserver"},
	} {
		if got := service(t, p, name).After; !slices.Equal(got, after) {
			t.Errorf("%s after %v, want %v", name, got, after)
		}
	}
	probes := map[string]string{
		"etcd":                    "https://127.0.0.1:2379/health?serializable=true&exclude=NOSPACE",
		"kube-apiserver":          "https://127.0.0.1:6443/readyz",
		"kube-controller-manager": "https://127.0.0.1:10257/healthz",
		"kube-scheduler":          "https://127.0.0.1:10259/healthz",
		"kubelet":                 "http://127.0.0.1:10248/healthz",
		"kube-proxy":              "http://127.0.0.1:10256/livez",
	}
	for name, url := range probes {
		pr := service(t, p, name).Probe
		if pr == nil || pr.HTTP == nil || pr.HTTP.URL != url {
			t.Errorf("%s probe %+v, want GET %s", name, pr, url)
			continue
		}
		if strings.HasPrefix(url, "https") && pr.HTTP.CAFile == "" {
			t.Errorf("%s: https probe without a CA", name)
		}
	}
	if pr := service(t, p, "etcd").Probe.HTTP; pr.ClientCertFile != "/etc/basalt/pki/etcd/healthcheck-client.crt" ||
		pr.CAFile != "/etc/basalt/pki/etcd/ca.crt" {
		t.Errorf("etcd probe %+v", pr)
	}
	if pr := service(t, p, "containerd").Probe; pr == nil || pr.Exec == nil ||
		!slices.Equal(pr.Exec.Argv, []string{"/opt/basalt/bin/ctr", "--address", "/run/containerd/containerd.sock", "version"}) {
		t.Errorf("containerd probe %+v", pr)
	}

	// Keys and kubeconfigs are root-only, certificates world-readable; no CA key anywhere.
	m := testMaterial(t)
	for _, f := range p.Files {
		wantMode := uint32(0o644)
		if strings.HasSuffix(f.Path, ".key") || strings.HasSuffix(f.Path, ".conf") || strings.HasSuffix(f.Path, "encryption-config.yaml") {
			wantMode = 0o600
		}
		if f.Mode != wantMode {
			t.Errorf("%s mode %o, want %o", f.Path, f.Mode, wantMode)
		}
		for _, ca := range []string{clusterpki.ClusterCA, clusterpki.EtcdCA, clusterpki.FrontProxyCA} {
			if strings.Contains(string(f.Content), strings.TrimSpace(string(m[ca].Key))) {
				t.Errorf("%s holds the private key of %s", f.Path, ca)
			}
		}
	}
	for _, a := range p.Artifacts {
		if !strings.HasPrefix(a.Path, "/opt/basalt/bin/") && !strings.HasPrefix(a.Path, "/opt/cni/bin/") &&
			!strings.HasPrefix(a.Path, "/var/lib/basalt/images/") {
			t.Errorf("artifact %s at %s", a.Name, a.Path)
		}
		if want, _ := testManifest("v1.37.2").Get(a.Name); a.SHA256 != want.SHA256 || a.Size != want.Size {
			t.Errorf("artifact %s: sha256/size %s/%d, want the manifest's", a.Name, a.SHA256, a.Size)
		}
	}
	if a := artifactNamed(t, p, "cni-bridge"); a.Path != "/opt/cni/bin/bridge" || a.Mode != 0o755 {
		t.Errorf("cni-bridge %+v", a)
	}

	// Components on the node reach the API through the load balancer; the controller-manager
	// and scheduler use the local API server.
	for conf, server := range map[string]string{
		"kubelet": "https://127.0.0.1:6444", "kube-proxy": "https://127.0.0.1:6444",
		"controller-manager": "https://127.0.0.1:6443", "scheduler": "https://127.0.0.1:6443",
	} {
		info, err := kubeconfig.Verify(file(t, p, "/etc/basalt/kubeconfig/"+conf+".conf").Content, t0)
		if err != nil || info.Server != server {
			t.Errorf("%s kubeconfig: server %v, err %v; want %s", conf, info, err, server)
		}
	}
	wantLB := []plan.LoadBalancer{{Name: "kube-apiserver", Listen: "127.0.0.1:6444",
		Backends: []string{"192.0.2.11:6443", "192.0.2.12:6443", "192.0.2.13:6443"}}}
	if diff := cmp.Diff(wantLB, p.LoadBalancers); diff != "" {
		t.Errorf("load balancers (-want +got):\n%s", diff)
	}
	if !slices.Equal(p.Images, []string{"image-pause", "image-webserver"}) || p.ImageRuntime != "containerd" {
		t.Errorf("images %v runtime %q", p.Images, p.ImageRuntime)
	}
	if len(p.Routes) != 3 {
		t.Errorf("routes %v", p.Routes)
	}
	// Every service reads its own binary, and the API server its certificates.
	for _, s := range p.Services {
		if !slices.Contains(s.Reads, s.Argv[0]) {
			t.Errorf("%s does not read its binary %s", s.Name, s.Argv[0])
		}
	}
	api := service(t, p, "kube-apiserver").Reads
	for _, f := range []string{"/etc/basalt/pki/apiserver.crt", "/etc/basalt/pki/sa.key", "/etc/basalt/pki/etcd/ca.crt"} {
		if !slices.Contains(api, f) {
			t.Errorf("kube-apiserver does not read %s", f)
		}
	}
	// kube-apiserver reloads its encryption configuration by itself: a key rotation restarts
	// nothing.
	if slices.Contains(api, "/etc/basalt/kube-apiserver/encryption-config.yaml") {
		t.Error("kube-apiserver restarts when its encryption configuration changes")
	}
	if slices.Contains(service(t, p, "etcd").Reads, "/etc/basalt/pki/etcd/healthcheck-client.crt") {
		t.Error("etcd reads the probe's certificate: renewing it would restart etcd for nothing")
	}
}

func artifactNamed(t *testing.T, p *plan.Plan, name string) plan.Artifact {
	t.Helper()
	for _, a := range p.Artifacts {
		if a.Name == name {
			return a
		}
	}
	t.Fatalf("no artifact %s", name)
	return plan.Artifact{}
}

func TestWorkerPlan(t *testing.T) {
	p := mustBuild(t, worker(t))
	if diff := cmp.Diff([]string{"containerd", "kube-proxy", "kubelet"}, serviceNames(p)); diff != "" {
		t.Errorf("services (-want +got):\n%s", diff)
	}
	for _, f := range p.Files {
		for _, forbidden := range []string{"etcd", "sa.key", "apiserver", "front-proxy", "controller-manager", "scheduler"} {
			if strings.Contains(f.Path, forbidden) {
				t.Errorf("a worker gets %s", f.Path)
			}
		}
	}
	for _, a := range p.Artifacts {
		if slices.Contains([]string{"etcd", "etcdctl", "kube-apiserver", "kube-controller-manager", "kube-scheduler"}, a.Name) {
			t.Errorf("a worker gets the artifact %s", a.Name)
		}
	}
	conf := string(file(t, p, "/etc/cni/net.d/10-basalt.conflist").Content)
	if !strings.Contains(conf, `"subnet": "10.244.3.0/24"`) {
		t.Errorf("CNI configuration without the node's range:\n%s", conf)
	}
	kubelet := string(file(t, p, "/etc/basalt/kubelet/config.yaml").Content)
	if !strings.Contains(kubelet, "cgroupDriver: cgroupfs") || !strings.Contains(kubelet, "failSwapOn: false") {
		t.Errorf("kubelet of a container host:\n%s", kubelet)
	}
	if _, err := Build(func() Input { in := worker(t); in.APIServers = nil; return in }()); !isField(err, "apiServers") {
		t.Errorf("worker without API servers: %v", err)
	}
	// What a wipe removes: the kubelet's state and the local volumes, containerd's state, and the
	// containers containerd's shim (Basalt's, by path) leaves running.
	for _, s := range p.Services {
		switch s.Name {
		case "kubelet":
			if diff := cmp.Diff([]string{LocalVolumesDir, KubeletRootDir}, s.StateDirs); diff != "" {
				t.Errorf("kubelet state dirs (-want +got):\n%s", diff)
			}
		case "containerd":
			if diff := cmp.Diff([]string{"/run/containerd", CNIStateDir, "/var/lib/containerd"}, s.StateDirs); diff != "" {
				t.Errorf("containerd state dirs (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff([]string{"/opt/basalt/bin/containerd-shim-runc-v2"}, s.Leaves); diff != "" {
				t.Errorf("containerd leaves (-want +got):\n%s", diff)
			}
		}
	}
}

func TestCNINone(t *testing.T) {
	in := worker(t)
	in.Network.CNI = CNINone
	in.Routes = nil
	p := mustBuild(t, in)
	for _, a := range p.Artifacts {
		if strings.HasPrefix(a.Name, "cni-") {
			t.Errorf("cni none installs %s", a.Name)
		}
	}
	for _, f := range p.Files {
		if strings.HasPrefix(f.Path, "/etc/cni/") {
			t.Errorf("cni none writes %s", f.Path)
		}
	}
}

// A learner runs etcd only; promotion adds the API server, controller-manager and scheduler and
// does not restart etcd.
func TestLearnerThenPromoted(t *testing.T) {
	learner := joiningControlPlane(t)
	p := mustBuild(t, learner)
	if diff := cmp.Diff([]string{"containerd", "etcd", "kube-proxy", "kubelet"}, serviceNames(p)); diff != "" {
		t.Errorf("learner services (-want +got):\n%s", diff)
	}
	etcd := service(t, p, "etcd")
	for _, want := range []string{"--initial-cluster-state=existing",
		"--initial-cluster=cp-1=https://192.0.2.11:2380,cp-2=https://192.0.2.12:2380,cp-3=https://192.0.2.13:2380"} {
		if !slices.Contains(etcd.Argv, want) {
			t.Errorf("etcd argv lacks %s: %v", want, etcd.Argv)
		}
	}
	voter := learner
	voter.Etcd.Learner = false
	q := mustBuild(t, voter)
	if diff := cmp.Diff([]string{"containerd", "etcd", "kube-apiserver", "kube-controller-manager", "kube-proxy", "kube-scheduler", "kubelet"}, serviceNames(q)); diff != "" {
		t.Errorf("promoted services (-want +got):\n%s", diff)
	}
	for _, s := range []string{"etcd", "kubelet", "kube-proxy", "containerd"} {
		before, _ := p.ServiceHash(s)
		after, _ := q.ServiceHash(s)
		if before != after {
			t.Errorf("promotion restarts %s", s)
		}
	}
}

// A member's etcd flags depend only on the member list it was added with, whatever happens to
// the membership later and in whatever order the caller lists members.
func TestEtcdFlagsStableUnderMembershipChanges(t *testing.T) {
	first := firstControlPlane(t)
	first.APIServers = []string{"192.0.2.11:6443"}
	before := mustBuild(t, first)
	grown := first
	grown.APIServers = []string{"192.0.2.11:6443", "192.0.2.12:6443", "192.0.2.13:6443"}
	after := mustBuild(t, grown)
	for _, s := range before.Services {
		h0, _ := before.ServiceHash(s.Name)
		h1, _ := after.ServiceHash(s.Name)
		if h0 != h1 {
			t.Errorf("the cluster growing restarts %s on the first member", s.Name)
		}
	}
	if before.Hash() == after.Hash() {
		t.Error("a new API server backend does not change the Plan")
	}

	joining := joiningControlPlane(t)
	shuffled := joining
	shuffled.Etcd.Members = slices.Clone(joining.Etcd.Members)
	slices.Reverse(shuffled.Etcd.Members)
	if mustBuild(t, joining).Hash() != mustBuild(t, shuffled).Hash() {
		t.Error("the order of etcd members changes the Plan")
	}
}

func TestHashStableUnderOrder(t *testing.T) {
	in := firstControlPlane(t)
	base := mustBuild(t, in)
	b1, _ := json.Marshal(base)
	b2, _ := json.Marshal(mustBuild(t, in))
	if string(b1) != string(b2) {
		t.Fatal("two builds of one input differ")
	}
	perm := firstControlPlane(t)
	slices.Reverse(perm.Routes)
	slices.Reverse(perm.APIServers)
	perm.APIServers = append(perm.APIServers, perm.APIServers[0]) // a duplicate backend
	slices.Reverse(perm.Artifacts.Artifacts)
	if h := mustBuild(t, perm).Hash(); h != base.Hash() {
		t.Errorf("permuted input: hash %s, want %s", h, base.Hash())
	}
}

func TestHashChangesWithEveryRelevantInput(t *testing.T) {
	m := testMaterial(t)
	renewed := func(req pki.CertRequest, caName string) pki.KeyPair {
		ca := m[caName]
		kp, _, err := pki.EnsureCertificate(nil, &ca, req, t0.Add(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		return *kp
	}
	kubeletServing, err := pki.KubeletServingCert("cp-1", net.ParseIP("192.0.2.11"))
	if err != nil {
		t.Fatal(err)
	}
	mutations := map[string]func(in *Input){
		"version": func(in *Input) { in.Version = "v1.36.3"; in.Artifacts = testManifest("v1.36.3") },
		"artifact checksum": func(in *Input) {
			in.Artifacts.Artifacts[3].SHA256 = fakeSum("a patched kubelet")
		},
		"preloaded image": func(in *Input) {
			in.Artifacts.Artifacts = append(in.Artifacts.Artifacts, artifacts.Artifact{Name: "image-extra", Kind: artifacts.KindImage,
				Path: "images/extra.tar", SHA256: fakeSum("extra"), Size: 1, Image: "example.com/extra:v1"})
		},
		"cluster name":     func(in *Input) { in.ClusterName = "staging" },
		"host":             func(in *Input) { in.Host = "rack1-u12" },
		"role":             func(in *Input) { in.Role = RoleWorker },
		"node pod CIDR":    func(in *Input) { in.Node.PodCIDR = "10.244.9.0/24" },
		"pod CIDR":         func(in *Input) { in.Network.PodCIDR = "10.240.0.0/12"; in.Node.PodCIDR = "10.240.0.0/24" },
		"service CIDR":     func(in *Input) { in.Network.ServiceCIDR = "10.112.0.0/12" },
		"node mask":        func(in *Input) { in.Network.NodeCIDRMaskSize = 25; in.Node.PodCIDR = "10.244.0.0/25" },
		"DNS domain":       func(in *Input) { in.Network.DNSDomain = "corp.internal" },
		"cluster DNS IP":   func(in *Input) { in.Network.ClusterDNSIP = "10.96.0.53" },
		"cni none":         func(in *Input) { in.Network.CNI = CNINone; in.Routes = nil },
		"MTU":              func(in *Input) { in.Network.MTU = 1450 },
		"API server port":  func(in *Input) { in.Ports.APIServer = 7443 },
		"LB port":          func(in *Input) { in.Ports.LoadBalancer = 7444 },
		"etcd client port": func(in *Input) { in.Ports.EtcdClient = 12379 },
		"scheduler port":   func(in *Input) { in.Ports.Scheduler = 20259 },
		"encryption key":   func(in *Input) { in.Encryption.Keys[0].Secret = []byte(strings.Repeat("x", 32)) },
		"encryption rotate": func(in *Input) {
			in.Encryption.Keys = append(in.Encryption.Keys, components.EncryptionKey{Name: "key-0", Secret: make([]byte, 32)})
		},
		"encryption aescbc": func(in *Input) { in.Encryption.Provider = components.EncryptionAESCBC },
		"audit":             func(in *Input) { in.Audit.Enabled = true },
		"renewed kubelet serving certificate": func(in *Input) {
			in.Certificates.KubeletServing = renewed(kubeletServing, clusterpki.ClusterCA)
		},
		"renewed scheduler certificate": func(in *Input) {
			in.Certificates.Scheduler = renewed(pki.SchedulerCert(), clusterpki.ClusterCA)
		},
		"cgroup v1 host":  func(in *Input) { in.HostFacts.CgroupV2 = false },
		"container host":  func(in *Input) { in.HostFacts.InContainer = true },
		"resolv.conf":     func(in *Input) { in.HostFacts.ResolvConf = "/run/systemd/resolve/resolv.conf" },
		"route gateway":   func(in *Input) { in.Routes[0].Gateway = "192.0.2.99" },
		"route removed":   func(in *Input) { in.Routes = in.Routes[1:] },
		"API server gone": func(in *Input) { in.APIServers = in.APIServers[:2] },
		"bin dir":         func(in *Input) { in.Paths.BinDir = "/usr/local/bin" },
		"root":            func(in *Input) { in.Root = "/tmp/node" },
	}
	seen := map[string]string{mustBuild(t, firstControlPlane(t)).Hash(): "base"}
	for name, mutate := range mutations {
		in := firstControlPlane(t)
		mutate(&in)
		p, err := Build(in)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if other, dup := seen[p.Hash()]; dup {
			t.Errorf("%s: same hash as %s", name, other)
		}
		seen[p.Hash()] = name
	}

	// The endpoint is validated but nodes reach the API servers through the load balancer:
	// changing it must not restart anything.
	in := firstControlPlane(t)
	in.Endpoint = "192.0.2.10:6443"
	if mustBuild(t, in).Hash() != mustBuild(t, firstControlPlane(t)).Hash() {
		t.Error("the endpoint changes the Plan of a node")
	}
}

// A change restarts exactly the services that read what changed.
func TestServiceHashScope(t *testing.T) {
	m := testMaterial(t)
	issue := func(req pki.CertRequest, err error) pki.KeyPair {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		ca := m[string(req.Issuer)]
		kp, _, err := pki.EnsureCertificate(nil, &ca, req, t0.Add(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		return *kp
	}
	base := mustBuild(t, firstControlPlane(t))
	cases := map[string]struct {
		mutate   func(in *Input)
		restarts []string
	}{
		"scheduler certificate": {func(in *Input) { in.Certificates.Scheduler = issue(pki.SchedulerCert(), nil) }, []string{"kube-scheduler"}},
		"controller-manager serving certificate": {func(in *Input) {
			in.Certificates.ControllerManagerServing = issue(pki.ControllerManagerServingCert(), nil)
		}, []string{"kube-controller-manager"}},
		"etcd peer certificate":   {func(in *Input) { in.Certificates.EtcdPeer = issue(pki.EtcdPeerCert("cp-1", net.ParseIP("192.0.2.11"))) }, []string{"etcd"}},
		"etcd health certificate": {func(in *Input) { in.Certificates.EtcdHealthcheckClient = issue(pki.EtcdHealthcheckClientCert(), nil) }, nil},
		"apiserver-etcd-client":   {func(in *Input) { in.Certificates.APIServerEtcdClient = issue(pki.APIServerEtcdClientCert(), nil) }, []string{"kube-apiserver"}},
		"kubelet client":          {func(in *Input) { in.Certificates.KubeletClient = issue(pki.KubeletClientCert("cp-1")) }, []string{"kubelet"}},
		"kube-proxy client":       {func(in *Input) { in.Certificates.KubeProxy = issue(pki.KubeProxyCert(), nil) }, []string{"kube-proxy"}},
		// kube-apiserver reloads the encryption configuration (a key rotation's steps).
		"encryption key":      {func(in *Input) { in.Encryption.Keys[0].Secret = make([]byte, 32) }, nil},
		"kubelet binary":      {func(in *Input) { in.Artifacts.Artifacts[3].SHA256 = fakeSum("new kubelet") }, []string{"kubelet"}},
		"runc binary":         {func(in *Input) { in.Artifacts.Artifacts[10].SHA256 = fakeSum("new runc") }, nil},
		"route":               {func(in *Input) { in.Routes = in.Routes[1:] }, nil},
		"API server backends": {func(in *Input) { in.APIServers = in.APIServers[:1] }, nil},
		"MTU":                 {func(in *Input) { in.Network.MTU = 1400 }, nil},
		// containerd reads hosts.toml at each pull: a mirror or a rotated password restarts nothing.
		"registries": {func(in *Input) {
			in.Registries = []components.Registry{{Host: "docker.io", Mirrors: []components.RegistryEndpoint{
				{URL: "https://mirror.lan:5000", Username: "u", Password: "p"}}}}
		}, nil},
		"service CIDR": {func(in *Input) { in.Network.ServiceCIDR = "10.112.0.0/12" }, []string{"kube-apiserver", "kube-controller-manager", "kubelet"}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			in := firstControlPlane(t)
			tc.mutate(&in)
			p := mustBuild(t, in)
			var restarted []string
			for _, s := range base.Services {
				h0, _ := base.ServiceHash(s.Name)
				h1, err := p.ServiceHash(s.Name)
				if err != nil || h0 != h1 {
					restarted = append(restarted, s.Name)
				}
			}
			if !slices.Equal(restarted, tc.restarts) {
				t.Errorf("restarts %v, want %v", restarted, tc.restarts)
			}
			if p.Hash() == base.Hash() {
				t.Error("the Plan's hash did not change")
			}
		})
	}
}

func TestRootMovesEveryPath(t *testing.T) {
	in := firstControlPlane(t)
	in.Root = "/tmp/basalt-test"
	p := mustBuild(t, in)
	var paths []string
	for _, f := range p.Files {
		paths = append(paths, f.Path)
	}
	for _, a := range p.Artifacts {
		paths = append(paths, a.Path)
	}
	for _, s := range p.Services {
		paths = append(paths, s.Argv[0])
		for _, a := range s.Argv[1:] {
			if i := strings.Index(a, "=/"); i > 0 {
				paths = append(paths, a[i+1:])
			}
		}
		if pr := s.Probe.HTTP; pr != nil && pr.CAFile != "" {
			paths = append(paths, pr.CAFile)
		}
	}
	for _, p := range paths {
		if !strings.HasPrefix(p, "/tmp/basalt-test/") {
			t.Errorf("%s is outside the root", p)
		}
	}
	for _, f := range p.Files {
		if strings.Contains(string(f.Content), " /etc/") || strings.Contains(string(f.Content), "'/etc/") {
			t.Errorf("%s refers to a path outside the root:\n%s", f.Path, f.Content)
		}
	}
}

func isField(err error, field string) bool {
	var fe *FieldError
	return errors.As(err, &fe) && fe.Field == field
}

func TestErrorsNameTheField(t *testing.T) {
	otherNode := mustNode(t, "cp-2", true)
	cases := []struct {
		name   string
		mutate func(in *Input)
		field  string
	}{
		{"unknown role", func(in *Input) { in.Role = "master" }, "role"},
		{"unsupported version", func(in *Input) { in.Version = "v1.30.1"; in.Artifacts = testManifest("v1.30.1") }, "version"},
		{"malformed version", func(in *Input) { in.Version = "1.37" }, "version"},
		{"version not in the manifest", func(in *Input) { in.Version = "v1.37.3" }, "version"},
		{"no manifest", func(in *Input) { in.Artifacts = nil }, "artifacts"},
		{"missing artifact", func(in *Input) {
			in.Artifacts.Artifacts = slices.DeleteFunc(in.Artifacts.Artifacts, func(a artifacts.Artifact) bool { return a.Name == "kube-scheduler" })
		}, `artifacts["kube-scheduler"]`},
		{"missing checksum", func(in *Input) { in.Artifacts.Artifacts[3].SHA256 = "" }, `artifacts["kubelet"].sha256`},
		{"upper-case checksum", func(in *Input) { in.Artifacts.Artifacts[5].SHA256 = strings.ToUpper(fakeSum("x")) }, `artifacts["etcd"].sha256`},
		{"missing size", func(in *Input) { in.Artifacts.Artifacts[0].Size = 0 }, `artifacts["kube-apiserver"].size`},
		{"image as binary", func(in *Input) { in.Artifacts.Artifacts[0].Kind = artifacts.KindImage }, `artifacts["kube-apiserver"].kind`},
		{"no pause image", func(in *Input) {
			in.Artifacts.Artifacts = slices.DeleteFunc(in.Artifacts.Artifacts, func(a artifacts.Artifact) bool { return a.Name == "image-pause" })
		}, `artifacts["image-pause"]`},
		{"bad pod CIDR", func(in *Input) { in.Network.PodCIDR = "10.244.0.1/16" }, "network.podCIDR"},
		{"bad service CIDR", func(in *Input) { in.Network.ServiceCIDR = "10.96.0.0" }, "network.serviceCIDR"},
		{"node pod CIDR outside", func(in *Input) { in.Node.PodCIDR = "10.245.0.0/24" }, "node.podCIDR"},
		{"bad endpoint", func(in *Input) { in.Endpoint = "https://api" }, "endpoint"},
		{"no endpoint", func(in *Input) { in.Endpoint = "" }, "endpoint"},
		{"bad node IP", func(in *Input) { in.Node.IP = "192.0.2.300" }, "node.ip"},
		{"bad MTU", func(in *Input) { in.Network.MTU = 10 }, "network.mtu"},
		{"unknown CNI", func(in *Input) { in.Network.CNI = "flannel" }, "network.cni"},
		{"route outside the pod CIDR", func(in *Input) { in.Routes[0].Destination = "10.0.0.0/24" }, "routes[0].destination"},
		{"route to own range", func(in *Input) { in.Routes[0].Destination = "10.244.0.0/24" }, "routes[0].destination"},
		{"route host bits", func(in *Input) { in.Routes[1].Destination = "10.244.2.1/24" }, "routes[1].destination"},
		{"route gateway", func(in *Input) { in.Routes[2].Gateway = "gw" }, "routes[2].gateway"},
		{"routes without bridge", func(in *Input) { in.Network.CNI = CNINone }, "routes"},
		{"bad API server", func(in *Input) { in.APIServers[1] = "192.0.2.12" }, "apiServers[1]"},
		{"LB port clash", func(in *Input) { in.Ports.LoadBalancer = 6443 }, "ports.loadBalancer"},
		{"port clash", func(in *Input) { in.Ports.EtcdPeer = 2379 }, "ports.etcdPeer"},
		{"API server port", func(in *Input) { in.Ports.APIServer = 99999 }, "ports.apiServer"},
		{"no encryption key", func(in *Input) { in.Encryption.Keys = nil }, "encryption.keys"},
		{"short encryption key", func(in *Input) { in.Encryption.Keys[0].Secret = []byte("short") }, "encryption.keys[0].secret"},
		{"learner that does not join", func(in *Input) { in.Etcd.Learner = true }, "etcd.learner"},
		{"joining without members", func(in *Input) { in.Etcd.Join = true }, "etcd.members"},
		{"learner without API servers", func(in *Input) { *in = joiningControlPlane(t); in.APIServers = nil }, "apiServers"},
		{"relative root", func(in *Input) { in.Root = "tmp" }, "root"},
		{"relative bin dir", func(in *Input) { in.Paths.BinDir = "bin" }, "paths.binDir"},
		{"missing certificate", func(in *Input) { in.Certificates.EtcdPeer = pki.KeyPair{} }, "certificates.etcdPeer"},
		{"another node's certificate", func(in *Input) { in.Certificates.APIServer = otherNode.APIServer }, "certificates.apiServer"},
		{"another node's kubelet", func(in *Input) { in.Certificates.KubeletClient = otherNode.KubeletClient }, "certificates.kubeletClient"},
		{"key of another certificate", func(in *Input) { in.Certificates.EtcdServer.Key = otherNode.EtcdServer.Key }, "certificates.etcdServer"},
		{"wrong CA", func(in *Input) { in.Certificates.APIServerEtcdClient = in.Certificates.APIServerKubeletClient }, "certificates.apiServerEtcdClient"},
		{"client certificate as scheduler", func(in *Input) { in.Certificates.Scheduler = in.Certificates.ControllerManager }, "certificates.scheduler"},
		{"no CA", func(in *Input) { in.Certificates.CA = nil }, "certificates.ca"},
		{"no service-account key", func(in *Input) { in.Certificates.ServiceAccount = pki.KeyPair{} }, "certificates.serviceAccount.key"},
		{"loopback worker", func(in *Input) {
			in.Role = RoleWorker
			in.Node.IP = "127.0.0.1"
		}, "node.ip"},
		{"loopback with routes", func(in *Input) { in.Node.IP = "127.0.0.1" }, "node.ip"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := firstControlPlane(t)
			tc.mutate(&in)
			_, err := Build(in)
			if !isField(err, tc.field) {
				t.Fatalf("err = %v, want a FieldError for %s", err, tc.field)
			}
			if !strings.HasPrefix(err.Error(), "builder: "+tc.field+": ") {
				t.Errorf("message %q does not start with the field", err)
			}
		})
	}
}
