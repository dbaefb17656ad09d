package apply

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/basalt-dev/basalt/agents/lb"
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
