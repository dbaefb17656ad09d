package topology_test

import (
	"errors"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
	"github.com/basalt-dev/basalt/bootstrap/plan"
	"github.com/basalt-dev/basalt/bootstrap/plan/builder"
	"github.com/basalt-dev/basalt/controllers/topology"
)

func TestNodeRange(t *testing.T) {
	for _, tc := range []struct {
		pod  string
		bits int
		i    uint64
		want string
		n    uint64
	}{
		{"10.244.0.0/16", 24, 0, "10.244.0.0/24", 256},
		{"10.244.0.0/16", 24, 1, "10.244.1.0/24", 256},
		{"10.244.0.0/16", 24, 255, "10.244.255.0/24", 256},
		{"10.0.0.0/8", 26, 5, "10.0.1.64/26", 1 << 16},
		{"fd00:10:244::/56", 64, 3, "fd00:10:244:3::/64", 256},
		{"fd00::/48", 120, 65535, "fd00::ff:ff00/120", 1 << 16},
	} {
		p := netip.MustParsePrefix(tc.pod)
		n, err := topology.NodeRanges(p, tc.bits)
		if err != nil || n != tc.n {
			t.Errorf("NodeRanges(%s, %d) = %d, %v; want %d", p, tc.bits, n, err, tc.n)
		}
		got, err := topology.NodeRange(p, tc.bits, tc.i)
		if err != nil || got.String() != tc.want {
			t.Errorf("NodeRange(%s, %d, %d) = %s, %v; want %s", p, tc.bits, tc.i, got, err, tc.want)
			continue
		}
		if idx, ok := topology.NodeRangeIndex(p, tc.bits, got); !ok || idx != tc.i {
			t.Errorf("NodeRangeIndex(%s) = %d, %v; want %d", got, idx, ok, tc.i)
		}
	}
	if _, err := topology.NodeRange(netip.MustParsePrefix("10.244.0.0/16"), 24, 256); !errors.Is(err, topology.ErrNoRange) {
		t.Errorf("range 256 of a /16 split in /24: %v", err)
	}
	for _, r := range []string{"10.245.0.0/24", "10.244.1.0/25", "10.244.1.128/24"} {
		if _, ok := topology.NodeRangeIndex(netip.MustParsePrefix("10.244.0.0/16"), 24, netip.MustParsePrefix(r)); ok {
			t.Errorf("%s counted as a node range of 10.244.0.0/16", r)
		}
	}
	if _, err := topology.NodeRanges(netip.MustParsePrefix("10.244.0.0/24"), 24); err == nil {
		t.Error("a /24 split into /24 accepted")
	}
}

func TestNodeIP(t *testing.T) {
	host := func(addr string) *basaltv1.Host {
		return &basaltv1.Host{ObjectMeta: metav1.ObjectMeta{Name: "h"}, Spec: basaltv1.HostSpec{SSH: &basaltv1.SSHSpec{Address: addr}}}
	}
	if ip, err := topology.NodeIP(host("172.28.0.11")); err != nil || ip.String() != "172.28.0.11" {
		t.Errorf("NodeIP = %s, %v", ip, err)
	}
	for _, bad := range []string{"node-1.example.com", "127.0.0.1", "0.0.0.0"} {
		if _, err := topology.NodeIP(host(bad)); err == nil {
			t.Errorf("NodeIP(%s) accepted", bad)
		}
	}
	// A network-booted Host runs a node at spec.boot.address, and without one it cannot: its
	// address could change at the next boot.
	boot := func(addr string) *basaltv1.Host {
		return &basaltv1.Host{ObjectMeta: metav1.ObjectMeta{Name: "m"}, Spec: basaltv1.HostSpec{Boot: &basaltv1.BootSpec{MACAddresses: []string{"52:54:00:00:00:01"}, Address: addr}}}
	}
	if ip, err := topology.NodeIP(boot("10.1.2.200/24")); err != nil || ip.String() != "10.1.2.200" {
		t.Errorf("NodeIP of a network-booted Host = %s, %v", ip, err)
	}
	if _, err := topology.NodeIP(boot("")); err == nil || !strings.Contains(err.Error(), "has no spec.boot.address") {
		t.Errorf("a network-booted Host without an address: %v", err)
	}
	if _, err := topology.NodeIP(boot("127.0.0.5/8")); err == nil {
		t.Error("a loopback boot address accepted")
	}
}

func TestOSImageOfAWholeDiskHostCarriesItsAddress(t *testing.T) {
	h := &basaltv1.Host{Spec: basaltv1.HostSpec{Boot: &basaltv1.BootSpec{MACAddresses: []string{"52:54:00:00:00:01", "52:54:00:00:00:02"}, Address: "10.1.2.200/24", Gateway: "10.1.2.1"}}}
	if topology.OSImage(h) != nil {
		t.Error("an OS image without status.provisioning")
	}
	sum := strings.Repeat("a", 64)
	h.Status.Provisioning = &basaltv1.HostProvisioning{Image: basaltv1.OSImageRef{Name: "basalt-os", SHA256: sum}, Disk: "/dev/vda", Format: basaltv1.OSImageFormatDisk}
	img := topology.OSImage(h)
	want := &plan.OSImage{Name: "basalt-os", SHA256: sum, Disk: "/dev/vda", Format: plan.FormatDisk,
		Network: &plan.OSNetwork{MAC: "52:54:00:00:00:01", Address: "10.1.2.200/24", Gateway: "10.1.2.1"}}
	if !reflect.DeepEqual(img, want) {
		t.Errorf("OSImage = %+v (network %+v), want %+v", img, img.Network, want)
	}
	if err := img.Validate(); err != nil {
		t.Error(err)
	}
	h.Status.Provisioning.Format = basaltv1.OSImageFormatFilesystem
	if img := topology.OSImage(h); img.Format != "" || img.Network != nil {
		t.Errorf("a filesystem image carries %q %+v", img.Format, img.Network)
	}
}

func TestHostFacts(t *testing.T) {
	h := &basaltv1.Host{}
	if got := topology.HostFacts(h); got != (builder.HostFacts{}) {
		t.Errorf("no facts: %+v, want the safe defaults", got)
	}
	h.Status.OS = &basaltv1.OSFacts{SystemdPID1: ptr.To(true), CgroupVersion: 2, Container: ptr.To(true)}
	if got := topology.HostFacts(h); got != (builder.HostFacts{SystemdPID1: true, CgroupV2: true, InContainer: true}) {
		t.Errorf("reported facts: %+v", got)
	}
	h.Spec.OS = &basaltv1.OSFacts{CgroupVersion: 1, Container: ptr.To(false)}
	if got := topology.HostFacts(h); got != (builder.HostFacts{SystemdPID1: true, CgroupV2: false, InContainer: false}) {
		t.Errorf("spec.os wins field by field: %+v", got)
	}
}

func TestRoutesAndAPIServers(t *testing.T) {
	m := func(name, cidr string, etcd *basaltv1.MachineEtcd) *basaltv1.Machine {
		role := basaltv1.RoleWorker
		if etcd != nil {
			role = basaltv1.RoleControlPlane
		}
		return &basaltv1.Machine{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: basaltv1.MachineSpec{Role: role},
			Status: basaltv1.MachineStatus{PodCIDR: cidr, Etcd: etcd}}
	}
	peers := []topology.Peer{
		{Machine: m("cp-1", "10.244.0.0/24", &basaltv1.MachineEtcd{}), IP: netip.MustParseAddr("10.0.0.11")},
		{Machine: m("cp-2", "10.244.2.0/24", &basaltv1.MachineEtcd{Join: true, Learner: true}), IP: netip.MustParseAddr("10.0.0.12")},
		{Machine: m("w-1", "10.244.1.0/24", nil), IP: netip.MustParseAddr("10.0.0.21")},
		{Machine: m("w-2", "", nil), IP: netip.MustParseAddr("10.0.0.22")},
	}
	got := topology.Routes(netip.MustParseAddr("10.0.0.21"), "10.244.1.0/24", peers)
	want := []plan.Route{{Destination: "10.244.0.0/24", Gateway: "10.0.0.11"}, {Destination: "10.244.2.0/24", Gateway: "10.0.0.12"}}
	if !slices.Equal(got, want) {
		t.Errorf("Routes = %v, want %v", got, want)
	}
	if got := topology.APIServers(peers); !slices.Equal(got, []string{"10.0.0.11:6443"}) {
		t.Errorf("APIServers = %v: a learner runs no API server, a worker none", got)
	}
}

// TestHostFailureNamesAnUnconfirmedWipe: a Host kept out of the pool for want of a confirmed wipe
// says so (its agent is silent too, but the wipe is what the operator must act on).
func TestHostFailureNamesAnUnconfirmedWipe(t *testing.T) {
	h := &basaltv1.Host{}
	h.Status.Conditions = []metav1.Condition{
		{Type: basaltv1.HostAgentConnected, Status: metav1.ConditionFalse, Reason: basaltv1.ReasonAgentSilent, Message: "silent"},
		{Type: basaltv1.HostWiped, Status: metav1.ConditionFalse, Reason: basaltv1.ReasonWipeNotConfirmed, Message: "released unwiped"},
	}
	if reason, msg, ok := topology.HostFailure(h); !ok || reason != basaltv1.ReasonWipeNotConfirmed || msg != "released unwiped" {
		t.Errorf("HostFailure = %q %q %v", reason, msg, ok)
	}
	h.Status.Conditions[1].Reason = basaltv1.ReasonWiping
	if reason, _, ok := topology.HostFailure(h); !ok || reason != basaltv1.ReasonAgentSilent {
		t.Errorf("HostFailure while wiping = %q %v, want the silent agent", reason, ok)
	}
}
