package apply

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/basalt-dev/basalt/agents/lb"
	"github.com/basalt-dev/basalt/agents/vip"
	"github.com/basalt-dev/basalt/bootstrap/plan"
)

// TestLoadBalancerConfigFollowsThePlan: the Plan's load balancer reaches the agent's proxy through
// its configuration file; a change of backends rewrites it, a Plan without one removes it.
func TestLoadBalancerConfigFollowsThePlan(t *testing.T) {
	e := newEnv(t)
	p := basePlan(e)
	p.LoadBalancers = []plan.LoadBalancer{{Name: "kube-apiserver", Listen: "127.0.0.1:6444", Backends: []string{"192.0.2.11:6443"}}}
	e.mustApply(t, p)
	var got lb.Config
	if err := json.Unmarshal([]byte(e.read(t, lb.DefaultConfigPath)), &got); err != nil {
		t.Fatal(err)
	}
	if got.Listen != "127.0.0.1:6444" || len(got.Backends) != 1 || got.Backends[0] != "192.0.2.11:6443" {
		t.Fatalf("load balancer config %+v", got)
	}

	p.LoadBalancers[0].Backends = append(p.LoadBalancers[0].Backends, "192.0.2.12:6443")
	steps := e.mustApply(t, p)
	if s, ok := stepErr(steps, "loadbalancer:kube-apiserver"); !ok || !s.OK {
		t.Fatalf("loadbalancer step %+v", s)
	}
	if err := json.Unmarshal([]byte(e.read(t, lb.DefaultConfigPath)), &got); err != nil || len(got.Backends) != 2 {
		t.Fatalf("backends not updated: %+v %v", got, err)
	}

	p.LoadBalancers = nil
	e.mustApply(t, p)
	if e.exists(lb.DefaultConfigPath) {
		t.Fatal("the load balancer config outlived the Plan that asked for it")
	}
}

// testVirtualIP is a control-plane node's virtual IP as the builder makes it.
func testVirtualIP() *plan.VirtualIP {
	return &plan.VirtualIP{Address: "192.0.2.250", NodeAddress: "192.0.2.11", Identity: "cp-1",
		Server: "https://127.0.0.1:6444", Health: "https://127.0.0.1:6443/readyz", LeaseNamespace: "kube-system", LeaseName: "basalt-control-plane-vip",
		CAFile: "/etc/basalt/pki/ca.crt", CertFile: "/etc/basalt/pki/control-plane-vip.crt", KeyFile: "/etc/basalt/pki/control-plane-vip.key",
		StepDownFor: []string{"etcd", "kube-apiserver"}}
}

// TestVirtualIPConfigFollowsThePlan: the Plan's virtual IP reaches the agent's elector through
// its file; an address this host cannot carry fails the step with the reason and nothing
// campaigns; a Plan without one removes the file.
func TestVirtualIPConfigFollowsThePlan(t *testing.T) {
	e := newEnv(t)
	var refuse error
	e.a.CheckVirtualIP = func(*plan.VirtualIP) error { return refuse }
	p := basePlan(e)
	p.VirtualIP = testVirtualIP()
	e.mustApply(t, p)
	var got plan.VirtualIP
	if err := json.Unmarshal([]byte(e.read(t, vip.DefaultConfigPath)), &got); err != nil {
		t.Fatal(err)
	}
	if got.Address != "192.0.2.250" || got.Identity != "cp-1" || len(got.StepDownFor) != 2 {
		t.Fatalf("virtual IP config %+v", got)
	}

	refuse = errors.New("the virtual IP 192.0.2.250 is not on eth0's subnet 10.0.0.0/24: choose an address in 10.0.0.0/24")
	steps, err := e.apply(t, p)
	if err == nil {
		t.Fatal("a virtual IP this host cannot carry was applied")
	}
	if s, ok := stepErr(steps, "virtualip:192.0.2.250"); !ok || s.OK || !strings.Contains(s.Error, "choose an address") {
		t.Fatalf("virtualip step %+v", s)
	}
	if e.exists(vip.DefaultConfigPath) {
		t.Fatal("the elector's config stayed for an address this host cannot carry")
	}

	refuse = nil
	e.mustApply(t, p)
	p.VirtualIP = nil
	e.mustApply(t, p)
	if e.exists(vip.DefaultConfigPath) {
		t.Fatal("the virtual IP config outlived the Plan that asked for it")
	}
}

// TestVirtualIPOutlivesTheServicesItNeeds: a Plan that drops the virtual IP and kube-apiserver
// together stops kube-apiserver while the elector still runs (so it hands the address over
// first), and only then removes the elector's file.
func TestVirtualIPOutlivesTheServicesItNeeds(t *testing.T) {
	e := newEnv(t)
	p := basePlan(e)
	p.VirtualIP = testVirtualIP()
	e.mustApply(t, p)
	var seen []bool
	e.a.BeforeDisrupt = func(_ context.Context, name string) { seen = append(seen, e.exists(vip.DefaultConfigPath)) }
	p.VirtualIP = nil
	p.Services = p.Services[:1] // kube-apiserver leaves with it
	e.mustApply(t, p)
	if len(seen) != 1 || !seen[0] {
		t.Fatalf("the elector's file when kube-apiserver stopped: %v, want [true]", seen)
	}
	if e.exists(vip.DefaultConfigPath) {
		t.Fatal("the virtual IP config outlived the Plan that asked for it")
	}
}

// TestStateDirsGoWithTheirService: a service's state dir survives Plans that keep the service
// and is removed, with its content, by the first Plan without it.
func TestStateDirsGoWithTheirService(t *testing.T) {
	e := newEnv(t)
	p := basePlan(e)
	p.Services[0].StateDirs = []string{"/var/lib/etcd"}
	e.mustApply(t, p)
	if err := os.MkdirAll(filepath.Join(e.root, "var/lib/etcd/member/snap"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(e.root, "var/lib/etcd/member/snap/db"), []byte("data"), 0o600); err != nil {
		t.Fatal(err)
	}
	e.mustApply(t, p)
	if !e.exists("/var/lib/etcd/member/snap/db") {
		t.Fatal("a kept service lost its state")
	}
	p.Services = p.Services[1:]
	p.Services[0].After = nil
	e.mustApply(t, p)
	if e.exists("/var/lib/etcd") {
		t.Fatal("the state dir outlived its service")
	}
}
