package plan

import (
	"strings"
	"testing"
)

const sumA = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"

func examplePlan() *Plan {
	return &Plan{
		Host: "node-1",
		Files: []File{
			{Path: "/etc/basalt/pki/etcd/server.crt", Mode: 0o644, Content: []byte("cert")},
			{Path: "/etc/basalt/etcd.env", Mode: 0o600, Content: []byte("X=1")},
		},
		Artifacts: []Artifact{{Name: "etcd", SHA256: sumA, Size: 3, Path: "/opt/basalt/bin/etcd", Mode: 0o755}},
		Services: []Service{
			{Name: "kube-apiserver", Argv: []string{"/opt/basalt/bin/kube-apiserver", "--v=2"}, After: []string{"etcd"},
				Env: map[string]string{"B": "2", "A": "1", "C": "3"}},
			{Name: "etcd", Argv: []string{"/opt/basalt/bin/etcd", "--name=node-1"},
				Reads: []string{"/opt/basalt/bin/etcd", "/etc/basalt/pki/etcd/server.crt"},
				Probe: &Probe{TCP: &TCPProbe{Address: "127.0.0.1:2379"}}},
		},
		Routes: []Route{{Destination: "10.244.2.0/24", Gateway: "172.28.0.12"}, {Destination: "10.244.1.0/24", Gateway: "172.28.0.11"}},
		LoadBalancers: []LoadBalancer{{Name: "kube-apiserver", Listen: "127.0.0.1:6444",
			Backends: []string{"192.0.2.11:6443", "192.0.2.12:6443"}}},
	}
}

func TestHashStableUnderOrder(t *testing.T) {
	a := examplePlan()
	b := examplePlan()
	// Reverse every list and rebuild the map: the hash must not move.
	b.Files[0], b.Files[1] = b.Files[1], b.Files[0]
	b.Services[0], b.Services[1] = b.Services[1], b.Services[0]
	b.Routes[0], b.Routes[1] = b.Routes[1], b.Routes[0]
	b.LoadBalancers[0].Backends[0], b.LoadBalancers[0].Backends[1] = b.LoadBalancers[0].Backends[1], b.LoadBalancers[0].Backends[0]
	env := map[string]string{}
	for _, k := range []string{"C", "A", "B"} {
		env[k] = a.Services[0].Env[k]
	}
	b.Services[1].Env = env
	for i := 0; i < 20; i++ {
		if a.Hash() != b.Hash() {
			t.Fatalf("hash depends on order: %s vs %s", a.Hash(), b.Hash())
		}
	}
	if len(a.Hash()) != 64 {
		t.Fatalf("hash %q is not a sha256", a.Hash())
	}
}

func TestHashChangesWithEveryRelevantInput(t *testing.T) {
	base := examplePlan().Hash()
	mutations := map[string]func(p *Plan){
		"file content":   func(p *Plan) { p.Files[0].Content = []byte("cert2") },
		"file mode":      func(p *Plan) { p.Files[0].Mode = 0o600 },
		"file path":      func(p *Plan) { p.Files[1].Path = "/etc/basalt/etcd2.env" },
		"artifact sum":   func(p *Plan) { p.Artifacts[0].SHA256 = strings.Repeat("b", 64) },
		"artifact path":  func(p *Plan) { p.Artifacts[0].Path = "/usr/local/bin/etcd" },
		"service flag":   func(p *Plan) { p.Services[1].Argv[1] = "--name=node-2" },
		"service env":    func(p *Plan) { p.Services[0].Env["A"] = "9" },
		"service dep":    func(p *Plan) { p.Services[0].After = nil },
		"probe":          func(p *Plan) { p.Services[1].Probe.TCP.Address = "127.0.0.1:2380" },
		"restart policy": func(p *Plan) { p.Services[0].Restart = RestartOnFailure },
		"route":          func(p *Plan) { p.Routes[0].Gateway = "172.28.0.13" },
		"host":           func(p *Plan) { p.Host = "node-2" },
		"images":         func(p *Plan) { p.Images = []string{"etcd"} },
		"load balancer":  func(p *Plan) { p.LoadBalancers[0].Backends[1] = "192.0.2.13:6443" },
		"lb listen":      func(p *Plan) { p.LoadBalancers[0].Listen = "127.0.0.1:6445" },
		"os image":       func(p *Plan) { p.OS = &OSImage{Name: "basalt-root", SHA256: sumA, Disk: "/dev/vda"} },
		"os disk":        func(p *Plan) { p.OS = &OSImage{Name: "basalt-root", SHA256: sumA, Disk: "/dev/sda"} },
		"os whole disk": func(p *Plan) {
			p.OS = &OSImage{Name: "basalt-os", SHA256: sumA, Disk: "/dev/sda", Format: FormatDisk,
				Network: &OSNetwork{MAC: "52:54:00:00:00:01", Address: "10.0.0.5/24", Gateway: "10.0.0.1", DNS: []string{"10.0.0.1"}}}
		},
	}
	seen := map[string]string{base: "base"}
	for name, mutate := range mutations {
		p := examplePlan()
		mutate(p)
		h := p.Hash()
		if other, dup := seen[h]; dup {
			t.Errorf("%s: hash %s equals the hash of %s", name, h, other)
		}
		seen[h] = name
	}
}

func TestServiceHashOnlyMovesForWhatTheServiceReads(t *testing.T) {
	p := examplePlan()
	etcd0, _ := p.ServiceHash("etcd")
	api0, _ := p.ServiceHash("kube-apiserver")

	p.Files[0].Content = []byte("renewed cert") // etcd reads it, the API server (here) does not
	etcd1, _ := p.ServiceHash("etcd")
	api1, _ := p.ServiceHash("kube-apiserver")
	if etcd1 == etcd0 {
		t.Error("etcd's hash did not change when a file it reads changed")
	}
	if api1 != api0 {
		t.Error("kube-apiserver's hash changed although nothing it reads changed")
	}

	p.Services[1].Argv = append(p.Services[1].Argv, "--quota-backend-bytes=1")
	etcd2, _ := p.ServiceHash("etcd")
	api2, _ := p.ServiceHash("kube-apiserver")
	if etcd2 == etcd1 || api2 != api1 {
		t.Error("a flag of etcd must change etcd's hash and only etcd's")
	}
	if _, err := p.ServiceHash("nope"); err == nil {
		t.Error("unknown service: want an error")
	}
}

func TestStartOrder(t *testing.T) {
	p := &Plan{Host: "h", Services: []Service{
		{Name: "kubelet", Argv: []string{"/k"}, After: []string{"containerd"}},
		{Name: "kube-scheduler", Argv: []string{"/s"}, After: []string{"kube-apiserver"}},
		{Name: "kube-apiserver", Argv: []string{"/a"}, After: []string{"etcd"}},
		{Name: "etcd", Argv: []string{"/e"}},
		{Name: "containerd", Argv: []string{"/c"}},
	}}
	got, err := p.StartOrder()
	if err != nil {
		t.Fatal(err)
	}
	want := "containerd etcd kube-apiserver kube-scheduler kubelet"
	if strings.Join(got, " ") != want {
		t.Fatalf("order %v, want %s", got, want)
	}
}

func TestValidate(t *testing.T) {
	if err := examplePlan().Validate(); err != nil {
		t.Fatalf("valid plan refused: %v", err)
	}
	cases := map[string]struct {
		mutate func(p *Plan)
		want   string
	}{
		"relative path":          {func(p *Plan) { p.Files[0].Path = "etc/x" }, "files[0]: path \"etc/x\" must be absolute and clean"},
		"unclean path":           {func(p *Plan) { p.Files[0].Path = "/etc/../x" }, "must be absolute and clean"},
		"path twice":             {func(p *Plan) { p.Files[1].Path = p.Artifacts[0].Path }, "is also written by"},
		"bad file sum":           {func(p *Plan) { p.Files[0].SHA256 = sumA }, "sha256 does not match the content"},
		"missing sum":            {func(p *Plan) { p.Artifacts[0].SHA256 = "" }, "artifacts[0] (etcd): sha256 \"\" must be 64 lowercase hex digits"},
		"relative argv":          {func(p *Plan) { p.Services[0].Argv[0] = "etcd" }, "argv[0] must be an absolute path"},
		"unknown dep":            {func(p *Plan) { p.Services[0].After = []string{"nope"} }, "after \"nope\", which is not a service"},
		"cycle":                  {func(p *Plan) { p.Services[1].After = []string{"kube-apiserver"} }, "dependency cycle"},
		"reads missing":          {func(p *Plan) { p.Services[0].Reads = []string{"/nope"} }, "reads \"/nope\", which no file or artifact"},
		"two probes":             {func(p *Plan) { p.Services[1].Probe.Exec = &ExecProbe{Argv: []string{"/bin/true"}} }, "exactly one of http, tcp and exec"},
		"duplicate name":         {func(p *Plan) { p.Services[0].Name = "etcd"; p.Services[0].After = nil }, "name is used twice"},
		"bad name":               {func(p *Plan) { p.Services[0].Name = "Kube API" }, "name must be lowercase"},
		"no host":                {func(p *Plan) { p.Host = "" }, "host: must name the Host"},
		"other format":           {func(p *Plan) { p.Format = "v0" }, "format \"v0\""},
		"unknown image":          {func(p *Plan) { p.Images = []string{"pause"}; p.ImageRuntime = "etcd" }, "images[0]: \"pause\" is not an artifact"},
		"image no runtime":       {func(p *Plan) { p.Images = []string{"etcd"} }, "imageRuntime"},
		"state dir /var/lib":     {func(p *Plan) { p.Services[1].StateDirs = []string{"/var/lib"} }, "state dir \"/var/lib\" must be"},
		"state dir root":         {func(p *Plan) { p.Services[1].StateDirs = []string{"/"} }, "state dir \"/\" must be"},
		"state dir relative":     {func(p *Plan) { p.Services[1].StateDirs = []string{"var/lib/etcd"} }, "must be an absolute clean path"},
		"link with a slash":      {func(p *Plan) { p.Services[1].Links = []string{"cni/0"} }, "link \"cni/0\" must be a Linux interface name"},
		"link too long":          {func(p *Plan) { p.Services[1].Links = []string{"a-very-long-bridge"} }, "must be a Linux interface name"},
		"leaves not an artifact": {func(p *Plan) { p.Services[1].Leaves = []string{"/usr/bin/containerd-shim-runc-v2"} }, "must be the path of an artifact of the Plan"},
		"leaves a base name":     {func(p *Plan) { p.Services[1].Leaves = []string{"containerd-shim-runc-v2"} }, "must be the path of an artifact of the Plan"},
		"route host bits":        {func(p *Plan) { p.Routes[0].Destination = "10.244.2.1/24" }, "routes[0]: destination \"10.244.2.1/24\" must be a CIDR"},
		"route gateway":          {func(p *Plan) { p.Routes[0].Gateway = "fd00::1" }, "routes[0]: gateway"},
		"route twice":            {func(p *Plan) { p.Routes[1].Destination = p.Routes[0].Destination }, "routed twice"},
		"lb listen":              {func(p *Plan) { p.LoadBalancers[0].Listen = "localhost:6444" }, "loadBalancers[0] (kube-apiserver): listen \"localhost:6444\" must be ip:port"},
		"lb no backend":          {func(p *Plan) { p.LoadBalancers[0].Backends = nil }, "backends: at least one"},
		"lb bad backend":         {func(p *Plan) { p.LoadBalancers[0].Backends[0] = "192.0.2.11" }, "backends[0]: \"192.0.2.11\" is not host:port"},
		"lb twice":               {func(p *Plan) { p.LoadBalancers = append(p.LoadBalancers, p.LoadBalancers[0]) }, "loadBalancers[1] (kube-apiserver): name must be unique"},
		"os no sum":              {func(p *Plan) { p.OS = &OSImage{Name: "basalt-root", Disk: "/dev/vda"} }, "os.sha256 \"\" must be 64 lowercase hex digits"},
		"os partition":           {func(p *Plan) { p.OS = &OSImage{Name: "basalt-root", SHA256: sumA, Disk: "/dev/vda1/../sda"} }, "os.disk \"/dev/vda1/../sda\" must be a whole disk"},
		"os not under dev":       {func(p *Plan) { p.OS = &OSImage{Name: "basalt-root", SHA256: sumA, Disk: "/etc/passwd"} }, "os.disk"},
		"os bad name":            {func(p *Plan) { p.OS = &OSImage{Name: "Root Image", SHA256: sumA, Disk: "/dev/vda"} }, "os.name"},
		"os bad format":          {func(p *Plan) { p.OS = &OSImage{Name: "os", SHA256: sumA, Disk: "/dev/vda", Format: "qcow2"} }, "os.format \"qcow2\" must be filesystem or disk"},
		"os network on fs image": {func(p *Plan) {
			p.OS = &OSImage{Name: "os", SHA256: sumA, Disk: "/dev/vda", Network: &OSNetwork{MAC: "52:54:00:00:00:01", Address: "10.0.0.5/24"}}
		}, "os.network is only for a whole-disk image"},
		"os network bad mac": {func(p *Plan) {
			p.OS = &OSImage{Name: "os", SHA256: sumA, Disk: "/dev/vda", Format: FormatDisk, Network: &OSNetwork{MAC: "52-54-00-00-00-01", Address: "10.0.0.5/24"}}
		}, "os.network.mac"},
		"os network no prefix": {func(p *Plan) {
			p.OS = &OSImage{Name: "os", SHA256: sumA, Disk: "/dev/vda", Format: FormatDisk, Network: &OSNetwork{MAC: "52:54:00:00:00:01", Address: "10.0.0.5"}}
		}, "os.network.address \"10.0.0.5\" must be an IPv4 address with its prefix length"},
		"os network far gateway": {func(p *Plan) {
			p.OS = &OSImage{Name: "os", SHA256: sumA, Disk: "/dev/vda", Format: FormatDisk, Network: &OSNetwork{MAC: "52:54:00:00:00:01", Address: "10.0.0.5/24", Gateway: "10.0.1.1"}}
		}, "os.network.gateway 10.0.1.1 is outside 10.0.0.0/24"},
		"os network bad dns": {func(p *Plan) {
			p.OS = &OSImage{Name: "os", SHA256: sumA, Disk: "/dev/vda", Format: FormatDisk, Network: &OSNetwork{MAC: "52:54:00:00:00:01", Address: "10.0.0.5/24", DNS: []string{"ns1"}}}
		}, "os.network.dns \"ns1\""},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			p := examplePlan()
			tc.mutate(p)
			err := p.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestNormalizeFillsChecksumsAndDoesNotChangeHash(t *testing.T) {
	p := examplePlan()
	h := p.Hash()
	p.Normalize()
	if p.Files[0].Path != "/etc/basalt/etcd.env" || p.Files[0].SHA256 == "" || p.Services[0].Restart != RestartAlways {
		t.Fatalf("not normalized: %+v", p)
	}
	if p.Hash() != h {
		t.Fatal("Normalize changed the hash")
	}
}
