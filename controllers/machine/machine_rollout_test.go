package machine

import (
	"slices"
	"testing"

	"github.com/basalt-dev/basalt/bootstrap/plan"
)

func TestRestartedServices(t *testing.T) {
	svc := func(name string, argv ...string) plan.Service {
		return plan.Service{Name: name, Argv: append([]string{"/opt/basalt/bin/" + name}, argv...)}
	}
	base := &plan.Plan{Services: []plan.Service{svc("etcd"), svc("kube-apiserver"), svc("kubelet")}}
	cases := map[string]struct {
		next *plan.Plan
		want []string
	}{
		"nothing changed":      {&plan.Plan{Services: []plan.Service{svc("etcd"), svc("kube-apiserver"), svc("kubelet")}}, nil},
		"kubelet only":         {&plan.Plan{Services: []plan.Service{svc("etcd"), svc("kube-apiserver"), svc("kubelet", "--v=2")}}, nil},
		"etcd flag":            {&plan.Plan{Services: []plan.Service{svc("etcd", "--snapshot-count=1"), svc("kube-apiserver"), svc("kubelet")}}, []string{"etcd"}},
		"both":                 {&plan.Plan{Services: []plan.Service{svc("etcd", "-x"), svc("kube-apiserver", "-y"), svc("kubelet")}}, []string{"etcd", "kube-apiserver"}},
		"kube-apiserver added": {&plan.Plan{Services: []plan.Service{svc("etcd"), svc("kube-apiserver", "-y"), svc("kube-scheduler")}}, []string{"kube-apiserver"}},
		"kube-apiserver gone":  {&plan.Plan{Services: []plan.Service{svc("etcd"), svc("kubelet")}}, nil},
	}
	for name, tc := range cases {
		if got := restartedServices(base, tc.next); !slices.Equal(got, tc.want) {
			t.Errorf("%s: restarts %v, want %v", name, got, tc.want)
		}
	}
	learner := &plan.Plan{Services: []plan.Service{svc("etcd"), svc("kubelet")}}
	if got := restartedServices(learner, base); len(got) != 0 {
		t.Errorf("a learner's first kube-apiserver counts as a restart of %v", got)
	}
}
