package clusterpki

import (
	"bytes"
	"crypto/x509"
	"errors"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/basalt-dev/basalt/bootstrap/kubeconfig"
	"github.com/basalt-dev/basalt/bootstrap/pki"
)

var t0 = time.Date(2026, 7, 1, 12, 0, 0, 0, time.UTC)

func ips(s ...string) []net.IP {
	var out []net.IP
	for _, v := range s {
		out = append(out, net.ParseIP(v))
	}
	return out
}

func testInput() Input {
	return Input{
		ClusterName: "prod", Endpoint: "api.example.com", ServiceCIDR: "10.96.0.0/12", DNSDomain: "cluster.local",
		ControlPlane: []Node{{Name: "cp-1", IPs: ips("192.0.2.11")}, {Name: "cp-2", IPs: ips("192.0.2.12")}},
		Workers:      []Node{{Name: "w-1", IPs: ips("192.0.2.21")}},
		Validity:     90 * 24 * time.Hour, RenewBefore: 10 * 24 * time.Hour,
	}
}

func mustEnsure(t *testing.T, existing Material, in Input, now time.Time) *Result {
	t.Helper()
	res, err := Ensure(existing, in, now)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func names(cs []Change) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Name)
	}
	return out
}

// every name a three-node cluster (cp-1, cp-2, w-1) holds, with the CA that signs it and its usage.
var wantLeaves = map[string]struct {
	ca    string
	usage x509.ExtKeyUsage
}{
	"apiserver-cp-1": {ClusterCA, x509.ExtKeyUsageServerAuth}, "apiserver-cp-2": {ClusterCA, x509.ExtKeyUsageServerAuth},
	"etcd-server-cp-1": {EtcdCA, x509.ExtKeyUsageServerAuth}, "etcd-server-cp-2": {EtcdCA, x509.ExtKeyUsageServerAuth},
	"etcd-peer-cp-1": {EtcdCA, x509.ExtKeyUsageClientAuth}, "etcd-peer-cp-2": {EtcdCA, x509.ExtKeyUsageClientAuth},
	"kubelet-client-cp-1": {ClusterCA, x509.ExtKeyUsageClientAuth}, "kubelet-client-cp-2": {ClusterCA, x509.ExtKeyUsageClientAuth},
	"kubelet-client-w-1": {ClusterCA, x509.ExtKeyUsageClientAuth}, "kubelet-serving-cp-1": {ClusterCA, x509.ExtKeyUsageServerAuth},
	"kubelet-serving-cp-2": {ClusterCA, x509.ExtKeyUsageServerAuth}, "kubelet-serving-w-1": {ClusterCA, x509.ExtKeyUsageServerAuth},
	APIServerKubeletClient: {ClusterCA, x509.ExtKeyUsageClientAuth}, APIServerEtcdClient: {EtcdCA, x509.ExtKeyUsageClientAuth},
	FrontProxyClient: {FrontProxyCA, x509.ExtKeyUsageClientAuth}, EtcdHealthcheckClient: {EtcdCA, x509.ExtKeyUsageClientAuth},
	Admin: {ClusterCA, x509.ExtKeyUsageClientAuth}, ControllerManager: {ClusterCA, x509.ExtKeyUsageClientAuth},
	Scheduler: {ClusterCA, x509.ExtKeyUsageClientAuth}, KubeProxy: {ClusterCA, x509.ExtKeyUsageClientAuth},
	ControllerManagerServing: {ClusterCA, x509.ExtKeyUsageServerAuth}, SchedulerServing: {ClusterCA, x509.ExtKeyUsageServerAuth},
	MetricsServerServing: {ClusterCA, x509.ExtKeyUsageServerAuth}, VirtualIP: {ClusterCA, x509.ExtKeyUsageClientAuth},
}

func TestEnsureCreatesEverythingThenNothing(t *testing.T) {
	res := mustEnsure(t, nil, testInput(), t0)
	if len(res.Material) != len(wantLeaves)+4 {
		t.Errorf("%d entries, want %d", len(res.Material), len(wantLeaves)+4)
	}
	for name, want := range wantLeaves {
		kp, ok := res.Material[name]
		if !ok {
			t.Errorf("no %s", name)
			continue
		}
		if err := pki.Verify(kp.Cert, res.Material[want.ca].Cert, want.usage, t0); err != nil {
			t.Errorf("%s does not verify against %s: %v", name, want.ca, err)
		}
		for _, other := range []string{ClusterCA, EtcdCA, FrontProxyCA} {
			if other != want.ca && pki.Verify(kp.Cert, res.Material[other].Cert, x509.ExtKeyUsageAny, t0) == nil {
				t.Errorf("%s also verifies against %s", name, other)
			}
		}
		if na, _ := pki.Expiry(kp.Cert); na.After(t0.Add(90 * 24 * time.Hour)) {
			t.Errorf("%s valid until %s, longer than the validity", name, na)
		}
	}
	if len(res.Changed) != len(res.Material) || len(res.Stale) != 0 {
		t.Errorf("changed %v stale %v, want every entry changed", names(res.Changed), res.Stale)
	}
	for _, c := range res.Changed {
		if c.Reason != "missing" {
			t.Errorf("%s: reason %q", c.Name, c.Reason)
		}
	}
	if pub, err := pki.ServiceAccountPublicKey(res.Material[ServiceAccount].Key); err != nil || !bytes.Equal(pub, res.Material[ServiceAccount].Cert) {
		t.Errorf("service-account key pair inconsistent: %v", err)
	}
	info, err := kubeconfig.Verify(res.AdminKubeconfig, t0)
	if err != nil || info.Server != "https://api.example.com:6443" || info.User != pki.AdminUser {
		t.Errorf("admin kubeconfig %+v, %v", info, err)
	}
	wantExpiry := t0.Add(-5 * time.Minute).Add(90 * 24 * time.Hour)
	if !res.NextExpiry.Equal(wantExpiry) || res.NextExpiryName == "" || !res.RenewAt.Equal(wantExpiry.Add(-10*24*time.Hour)) {
		t.Errorf("next expiry %s (%s), renew at %s; want %s", res.NextExpiry, res.NextExpiryName, res.RenewAt, wantExpiry)
	}
	if res.CAExpiry.Before(t0.Add(9 * 365 * 24 * time.Hour)) {
		t.Errorf("CA expiry %s", res.CAExpiry)
	}

	// A second call, even a day later, changes nothing and gives the same bytes.
	again := mustEnsure(t, res.Material, testInput(), t0.Add(24*time.Hour))
	if len(again.Changed) != 0 || len(again.Stale) != 0 {
		t.Errorf("second Ensure changed %v, stale %v", names(again.Changed), again.Stale)
	}
	for name, kp := range res.Material {
		if !ptr(again.Material[name]).Equal(&kp) {
			t.Errorf("%s changed on the second Ensure", name)
		}
	}
	if !bytes.Equal(again.AdminKubeconfig, res.AdminKubeconfig) {
		t.Error("the admin kubeconfig is not deterministic")
	}
}

func TestEnsureRenewsLeavesInsideTheWindow(t *testing.T) {
	in := testInput()
	res := mustEnsure(t, nil, in, t0)
	later := res.RenewAt.Add(time.Minute)
	renewed := mustEnsure(t, res.Material, in, later)
	if len(renewed.Changed) != len(wantLeaves) {
		t.Errorf("renewed %v, want every leaf", names(renewed.Changed))
	}
	for _, c := range renewed.Changed {
		if _, leaf := wantLeaves[c.Name]; !leaf || !strings.HasPrefix(c.Reason, "expires at ") {
			t.Errorf("%s renewed (%q)", c.Name, c.Reason)
		}
	}
	for _, ca := range []string{ClusterCA, EtcdCA, FrontProxyCA, ServiceAccount} {
		kp := res.Material[ca]
		if !ptr(renewed.Material[ca]).Equal(&kp) {
			t.Errorf("%s changed", ca)
		}
	}
	for name, want := range wantLeaves {
		if err := pki.Verify(renewed.Material[name].Cert, res.Material[want.ca].Cert, want.usage, later); err != nil {
			t.Errorf("renewed %s does not verify against the unchanged %s: %v", name, want.ca, err)
		}
	}
	if !renewed.RenewAt.After(later) {
		t.Errorf("renew at %s is not after %s", renewed.RenewAt, later)
	}
	if bytes.Equal(renewed.AdminKubeconfig, res.AdminKubeconfig) {
		t.Error("the admin kubeconfig still holds the old certificate")
	}
}

// A renewal the user asks for reissues every leaf issued before the request, once: the same
// request again (every reconcile until the Cluster's status moves on) keeps what it issued.
func TestEnsureRenewsEveryLeafIssuedBeforeARequest(t *testing.T) {
	in := testInput()
	res := mustEnsure(t, nil, in, t0)
	asked := t0.Add(time.Hour)
	in.RenewIssuedBefore = asked
	renewed := mustEnsure(t, res.Material, in, asked)
	if len(renewed.Changed) != len(wantLeaves) {
		t.Errorf("renewed %v, want every leaf", names(renewed.Changed))
	}
	for _, c := range renewed.Changed {
		if _, leaf := wantLeaves[c.Name]; !leaf || c.Reason != "renewal requested at 2026-07-01T13:00:00Z" {
			t.Errorf("%s renewed (%q)", c.Name, c.Reason)
		}
	}
	for _, ca := range []string{ClusterCA, EtcdCA, FrontProxyCA, ServiceAccount} {
		kp := res.Material[ca]
		if !ptr(renewed.Material[ca]).Equal(&kp) {
			t.Errorf("%s changed", ca)
		}
	}
	for _, now := range []time.Time{asked, asked.Add(time.Second), asked.Add(24 * time.Hour)} {
		if again := mustEnsure(t, renewed.Material, in, now); len(again.Changed) != 0 {
			t.Errorf("at %s the same request renewed %v again", now, names(again.Changed))
		}
	}
}

func TestEnsureFollowsTheCluster(t *testing.T) {
	in := testInput()
	res := mustEnsure(t, nil, in, t0)

	// A new worker: only its kubelet certificates.
	grown := testInput()
	grown.Workers = append(grown.Workers, Node{Name: "w-2", IPs: ips("192.0.2.22")})
	r := mustEnsure(t, res.Material, grown, t0)
	if got := names(r.Changed); !slices.Equal(got, []string{"kubelet-client-w-2", "kubelet-serving-w-2"}) {
		t.Errorf("new worker: changed %v", got)
	}

	// A node leaves: its entries are stale, nothing is re-issued.
	shrunk := testInput()
	shrunk.ControlPlane = shrunk.ControlPlane[:1]
	r = mustEnsure(t, res.Material, shrunk, t0)
	if len(r.Changed) != 0 || !slices.Equal(r.Stale, []string{"apiserver-cp-2", "etcd-peer-cp-2", "etcd-server-cp-2", "kubelet-client-cp-2", "kubelet-serving-cp-2"}) {
		t.Errorf("node left: changed %v, stale %v", names(r.Changed), r.Stale)
	}

	// A node's address changes: its serving certificates only.
	moved := testInput()
	moved.ControlPlane[1].IPs = ips("192.0.2.42")
	r = mustEnsure(t, res.Material, moved, t0)
	if got := names(r.Changed); !slices.Equal(got, []string{"apiserver-cp-2", "etcd-peer-cp-2", "etcd-server-cp-2", "kubelet-serving-cp-2"}) {
		t.Errorf("new IP: changed %v", got)
	}

	// A new endpoint: every API server certificate (SAN) and the admin kubeconfig.
	newEndpoint := testInput()
	newEndpoint.Endpoint = "[2001:db8::10]:443"
	r = mustEnsure(t, res.Material, newEndpoint, t0)
	if got := names(r.Changed); !slices.Equal(got, []string{"apiserver-cp-1", "apiserver-cp-2"}) {
		t.Errorf("new endpoint: changed %v", got)
	}
	if info, err := kubeconfig.Verify(r.AdminKubeconfig, t0); err != nil || info.Server != "https://[2001:db8::10]:443" {
		t.Errorf("admin kubeconfig after a new endpoint: %+v, %v", info, err)
	}
}

func TestEnsureNeverReplacesAnUnusableCA(t *testing.T) {
	res := mustEnsure(t, nil, testInput(), t0)
	broken := Material{}
	for k, v := range res.Material {
		broken[k] = v
	}
	broken[EtcdCA] = pki.KeyPair{Cert: res.Material[EtcdCA].Cert, Key: res.Material[ClusterCA].Key}
	if _, err := Ensure(broken, testInput(), t0); !errors.Is(err, pki.ErrCAUnusable) {
		t.Errorf("mismatched CA key: err %v, want ErrCAUnusable", err)
	}
	if _, err := Ensure(res.Material, testInput(), t0.Add(11*365*24*time.Hour)); !errors.Is(err, pki.ErrCAUnusable) {
		t.Errorf("expired CA: err %v, want ErrCAUnusable", err)
	}
}

func TestInputErrorsNameTheField(t *testing.T) {
	cases := map[string]struct {
		mutate func(in *Input)
		want   string
	}{
		"cluster name":       {func(in *Input) { in.ClusterName = "Prod" }, "clusterName:"},
		"no endpoint":        {func(in *Input) { in.Endpoint = "" }, "endpoint:"},
		"endpoint URL":       {func(in *Input) { in.Endpoint = "https://api" }, "endpoint:"},
		"endpoint port":      {func(in *Input) { in.Endpoint = "api:0" }, "endpoint:"},
		"node name":          {func(in *Input) { in.Workers[0].Name = "W_1" }, "workers[0].name:"},
		"duplicate node":     {func(in *Input) { in.Workers[0].Name = "cp-1" }, `workers[0].name: "cp-1" is also controlPlane[0]`},
		"no IP":              {func(in *Input) { in.ControlPlane[1].IPs = nil }, "controlPlane[1].ips:"},
		"bad service CIDR":   {func(in *Input) { in.ServiceCIDR = "10.96.0.1/12" }, "serviceCIDR"},
		"renew too late":     {func(in *Input) { in.RenewBefore = in.Validity }, "renewBefore"},
		"negative validity":  {func(in *Input) { in.Validity = -time.Hour }, "validity"},
		"unknown key":        {func(in *Input) { in.Key = "dsa" }, "unknown algorithm"},
		"bad API port":       {func(in *Input) { in.APIServerPort = 70000 }, "apiServerPort:"},
		"bad extra SAN":      {func(in *Input) { in.ExtraSANs = []string{"a b"} }, "extraSANs[0]"},
		"bad DNS domain":     {func(in *Input) { in.DNSDomain = "_local" }, "dnsDomain"},
		"unparseable nodeIP": {func(in *Input) { in.Workers[0].IPs = []net.IP{{1, 2}} }, "workers[0].ips[0]"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			in := testInput()
			tc.mutate(&in)
			_, err := Ensure(nil, in, t0)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestForNode(t *testing.T) {
	m := mustEnsure(t, nil, testInput(), t0).Material
	cp, err := m.ForNode("cp-2", true)
	if err != nil {
		t.Fatal(err)
	}
	if !cp.APIServer.Equal(ptr(m["apiserver-cp-2"])) || !cp.EtcdPeer.Equal(ptr(m["etcd-peer-cp-2"])) ||
		!bytes.Equal(cp.EtcdCA, m[EtcdCA].Cert) || !cp.Scheduler.Equal(ptr(m[Scheduler])) {
		t.Error("control-plane certificates not taken from the material")
	}
	w, err := m.ForNode("w-1", false)
	if err != nil {
		t.Fatal(err)
	}
	if len(w.EtcdCA) != 0 || len(w.ServiceAccount.Key) != 0 || len(w.APIServer.Cert) != 0 || !w.KubeletServing.Equal(ptr(m["kubelet-serving-w-1"])) {
		t.Error("a worker gets control-plane material, or not its own")
	}
	for _, nc := range []NodeCertificates{cp, w} {
		for _, ca := range []string{ClusterCA, EtcdCA, FrontProxyCA} {
			if bytes.Contains(asBytes(nc), m[ca].Key) {
				t.Errorf("the private key of %s is handed to a node", ca)
			}
		}
	}
	if _, err := m.ForNode("w-1", true); err == nil || !strings.Contains(err.Error(), "apiserver-w-1") {
		t.Errorf("a worker as control plane: %v", err)
	}
	if _, err := m.ForNode("w-9", false); err == nil || !strings.Contains(err.Error(), "kubelet-client-w-9") {
		t.Errorf("unknown node: %v", err)
	}
}

func asBytes(nc NodeCertificates) []byte {
	var b bytes.Buffer
	b.Write(nc.CA)
	b.Write(nc.EtcdCA)
	b.Write(nc.FrontProxyCA)
	for _, kp := range []pki.KeyPair{nc.KubeletClient, nc.KubeletServing, nc.KubeProxy, nc.ServiceAccount, nc.APIServer,
		nc.APIServerKubeletClient, nc.APIServerEtcdClient, nc.FrontProxyClient, nc.EtcdServer, nc.EtcdPeer,
		nc.EtcdHealthcheckClient, nc.ControllerManager, nc.Scheduler, nc.ControllerManagerServing, nc.SchedulerServing} {
		b.Write(kp.Cert)
		b.Write(kp.Key)
	}
	return b.Bytes()
}

func ptr[T any](v T) *T { return &v }
