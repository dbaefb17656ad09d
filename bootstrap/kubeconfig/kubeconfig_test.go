package kubeconfig

import (
	"bytes"
	"crypto/x509"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/tools/clientcmd"

	"github.com/basalt-dev/basalt/bootstrap/pki"
)

var now = time.Date(2030, time.March, 1, 12, 0, 0, 0, time.UTC)

type fixture struct {
	ca, otherCA *pki.KeyPair
	certs       map[string]*pki.KeyPair
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ca, _, err := pki.EnsureCA(nil, pki.ClusterCARequest(), now)
	if err != nil {
		t.Fatal(err)
	}
	otherCA, _, err := pki.EnsureCA(nil, pki.ClusterCARequest(), now)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{ca: ca, otherCA: otherCA, certs: map[string]*pki.KeyPair{}}
	k1, _ := pki.KubeletClientCert("node-1")
	k2, _ := pki.KubeletClientCert("node-2")
	for _, req := range []pki.CertRequest{pki.AdminCert(), pki.ControllerManagerCert(), pki.SchedulerCert(), pki.KubeProxyCert(), k1, k2} {
		kp, _, err := pki.EnsureCertificate(nil, ca, req, now)
		if err != nil {
			t.Fatal(err)
		}
		f.certs[req.Name] = kp
	}
	return f
}

func (f *fixture) params(name string) Params {
	return Params{ClusterName: "prod", Server: "https://api.example.com:6443", CA: f.ca.Cert,
		ClientCert: f.certs[name].Cert, ClientKey: f.certs[name].Key}
}

func TestEveryKubeconfigParsesAndTrustsTheClusterCA(t *testing.T) {
	f := newFixture(t)
	lb := func(p Params) Params { p.Server = "https://127.0.0.1:6444"; return p }
	cases := []struct {
		name, user string
		build      func() ([]byte, error)
	}{
		{"admin", "basalt-admin", func() ([]byte, error) { return Admin(f.params("admin")) }},
		{"controller-manager", "system:kube-controller-manager", func() ([]byte, error) { return ControllerManager(lb(f.params("controller-manager"))) }},
		{"scheduler", "system:kube-scheduler", func() ([]byte, error) { return Scheduler(lb(f.params("scheduler"))) }},
		{"kube-proxy", "system:kube-proxy", func() ([]byte, error) { return KubeProxy(lb(f.params("kube-proxy"))) }},
		{"kubelet-client-node-1", "system:node:node-1", func() ([]byte, error) { return Kubelet("node-1", lb(f.params("kubelet-client-node-1"))) }},
		{"kubelet-client-node-2", "system:node:node-2", func() ([]byte, error) { return Kubelet("node-2", lb(f.params("kubelet-client-node-2"))) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			data, err := tc.build()
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := clientcmd.Load(data)
			if err != nil {
				t.Fatalf("clientcmd.Load: %v", err)
			}
			if err := clientcmd.ConfirmUsable(*cfg, ""); err != nil {
				t.Fatalf("not usable: %v", err)
			}
			info, err := Verify(data, now)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if !bytes.Equal(info.CA, f.ca.Cert) || info.User != tc.user || info.ClusterName != "prod" {
				t.Errorf("info: user %q cluster %q, CA is the cluster CA: %v", info.User, info.ClusterName, bytes.Equal(info.CA, f.ca.Cert))
			}
			if err := pki.Verify(info.ClientCert, f.ca.Cert, x509.ExtKeyUsageClientAuth, now); err != nil {
				t.Errorf("client cert does not verify against the cluster CA: %v", err)
			}
			if err := pki.Verify(info.ClientCert, f.otherCA.Cert, x509.ExtKeyUsageClientAuth, now); err == nil {
				t.Error("client cert verifies against an unrelated CA")
			}
			again, _ := tc.build()
			if !bytes.Equal(data, again) {
				t.Error("output is not deterministic")
			}
		})
	}
}

func TestIdentityIsChecked(t *testing.T) {
	f := newFixture(t)
	cases := map[string]func() ([]byte, error){
		"kubelet with another node's cert": func() ([]byte, error) { return Kubelet("node-1", f.params("kubelet-client-node-2")) },
		"admin with the scheduler cert":    func() ([]byte, error) { return Admin(f.params("scheduler")) },
		"scheduler with the admin cert":    func() ([]byte, error) { return Scheduler(f.params("admin")) },
		"kube-proxy with a kubelet cert":   func() ([]byte, error) { return KubeProxy(f.params("kubelet-client-node-1")) },
		"controller-manager with proxy":    func() ([]byte, error) { return ControllerManager(f.params("kube-proxy")) },
	}
	for name, build := range cases {
		if _, err := build(); err == nil || !strings.Contains(err.Error(), "clientCert: identity") {
			t.Errorf("%s: err = %v, want an identity error", name, err)
		}
	}
	// Build takes any identity.
	if _, err := Build(f.params("kubelet-client-node-2")); err != nil {
		t.Errorf("Build: %v", err)
	}
}

func TestInvalidParams(t *testing.T) {
	f := newFixture(t)
	with := func(mod func(*Params)) Params { p := f.params("admin"); mod(&p); return p }
	cases := map[string]Params{
		"clusterName":          with(func(p *Params) { p.ClusterName = "" }),
		"server: \"http":       with(func(p *Params) { p.Server = "http://api:6443" }),
		"server: \"https://a/": with(func(p *Params) { p.Server = "https://a/x" }),
		"server: host":         with(func(p *Params) { p.Server = "https://bad_host:6443" }),
		"ca:":                  with(func(p *Params) { p.CA = []byte("junk") }),
		"clientCert/clientKey": with(func(p *Params) { p.ClientKey = f.certs["scheduler"].Key }),
	}
	for field, p := range cases {
		if _, err := Admin(p); err == nil || !strings.Contains(err.Error(), field) {
			t.Errorf("%s: err = %v", field, err)
		}
	}
	if _, err := Kubelet("Node_1", f.params("kubelet-client-node-1")); err == nil || !strings.Contains(err.Error(), "nodeName") {
		t.Errorf("bad node name: err = %v", err)
	}
	if _, err := Kubelet("node-1", with(func(p *Params) { p.Server = "https://[2001:db8::1]:6443" })); err == nil {
		t.Error("admin cert accepted for a kubelet")
	}
	if _, err := Admin(with(func(p *Params) { p.Server = "https://[2001:db8::1]:6443" })); err != nil {
		t.Errorf("IPv6 server rejected: %v", err)
	}
}

func TestVerifyRejects(t *testing.T) {
	f := newFixture(t)
	good, err := Admin(f.params("admin"))
	if err != nil {
		t.Fatal(err)
	}
	// A kubeconfig whose embedded CA is not the one that signed its client certificate.
	cfg, _ := clientcmd.Load(good)
	for _, c := range cfg.Clusters {
		c.CertificateAuthorityData = f.otherCA.Cert
	}
	wrongCA, _ := clientcmd.Write(*cfg)
	if _, err := Verify(wrongCA, now); err == nil || !strings.Contains(err.Error(), "not trusted") {
		t.Errorf("wrong CA: err = %v", err)
	}
	if _, err := Verify(good, now.Add(2*365*24*time.Hour)); err == nil {
		t.Error("expired client certificate accepted")
	}
	if _, err := Verify([]byte("apiVersion: v1\nkind: Config\n"), now); err == nil {
		t.Error("empty kubeconfig accepted")
	}
	if _, err := Verify([]byte("{not yaml"), now); err == nil {
		t.Error("garbage accepted")
	}
}
