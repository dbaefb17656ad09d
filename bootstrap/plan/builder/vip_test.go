package builder

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/basalt-dev/basalt/bootstrap/plan"
)

func TestVirtualIP(t *testing.T) {
	in := firstControlPlane(t)
	in.VirtualIP = "192.0.2.250"
	p := mustBuild(t, in)
	want := &plan.VirtualIP{
		Address: "192.0.2.250", NodeAddress: "192.0.2.11", Identity: "cp-1",
		Server: "https://127.0.0.1:6444", LeaseNamespace: "kube-system", LeaseName: "basalt-control-plane-vip",
		Health: "https://127.0.0.1:6443/readyz",
		CAFile: "/etc/basalt/pki/ca.crt", CertFile: "/etc/basalt/pki/control-plane-vip.crt", KeyFile: "/etc/basalt/pki/control-plane-vip.key",
		StepDownFor: []string{"etcd", "kube-apiserver"},
	}
	if d := cmp.Diff(want, p.VirtualIP); d != "" {
		t.Fatalf("virtualIP (-want +got):\n%s", d)
	}
	if f := file(t, p, want.KeyFile); f.Mode != 0o600 || len(f.Content) == 0 {
		t.Errorf("%s: mode %o, %d bytes", f.Path, f.Mode, len(f.Content))
	}
	file(t, p, want.CertFile)
	if p.Hash() == mustBuild(t, firstControlPlane(t)).Hash() {
		t.Error("the virtual IP does not change the Plan's hash")
	}

	// Workers do not campaign.
	w := worker(t)
	w.VirtualIP = "192.0.2.250"
	if got := mustBuild(t, w).VirtualIP; got != nil {
		t.Errorf("a worker's Plan holds %+v", got)
	}
	bad := firstControlPlane(t)
	bad.VirtualIP = "192.0.2.11" // the node's own address
	if _, err := Build(bad); err == nil || !strings.Contains(err.Error(), "node's own address") {
		t.Errorf("the node's own address as virtual IP: %v", err)
	}
}
