// Package topology is the floor the Cluster, Machine and Host controllers share: it derives from
// Cluster, Machine and Host objects the facts they must agree on, so each rule has one home: a
// node's IP, its etcd URLs, which Machines run a kube-apiserver, the node-local load balancer's
// backends, the routes to the other nodes' pod ranges, a node's pod range by index, the version a
// Machine is built for (MachineVersion), the OS image a Host's Plans carry (OSImage), and the
// host facts a Plan depends on. No controller package imports another; they meet here.
//
// Everything here is a pure function of the objects passed in.
package topology

import (
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
	"github.com/basalt-dev/basalt/bootstrap/components"
	"github.com/basalt-dev/basalt/bootstrap/plan"
	"github.com/basalt-dev/basalt/bootstrap/plan/builder"
)

// Component names the agent reports health for (the Plan's service names).
const (
	ComponentEtcd      = builder.ServiceEtcd
	ComponentAPIServer = builder.ServiceAPIServer
)

// APIServerPort is the port every kube-apiserver of a Basalt cluster listens on.
const APIServerPort = components.DefaultAPIServerPort

// NodeIP is the address the node on h advertises: spec.ssh.address for a Host reached over SSH,
// spec.boot.address (without its prefix length) for a network-booted one; either must be an IP
// address. A DNS name is refused rather than resolved, because the Plan, the certificates and
// the other nodes' routes must all use the same address, and a name may resolve differently for
// each. A network-booted Host without spec.boot.address has no address that is stable across
// reboots (the installed system configures spec.boot.address statically), so it cannot run a
// node.
func NodeIP(h *basaltv1.Host) (netip.Addr, error) {
	var ip netip.Addr
	switch {
	case h.Spec.SSH != nil:
		a, err := netip.ParseAddr(h.Spec.SSH.Address)
		if err != nil {
			return netip.Addr{}, fmt.Errorf("host %s: spec.ssh.address %q is not an IP address; a node needs an IP it advertises to every component", h.Name, h.Spec.SSH.Address)
		}
		ip = a
	case h.Spec.Boot != nil && h.Spec.Boot.Address != "":
		p, err := netip.ParsePrefix(h.Spec.Boot.Address)
		if err != nil {
			return netip.Addr{}, fmt.Errorf("host %s: spec.boot.address %q is not an address with its prefix length", h.Name, h.Spec.Boot.Address)
		}
		ip = p.Addr()
	case h.Spec.Boot != nil:
		return netip.Addr{}, fmt.Errorf("network-booted host %s has no spec.boot.address: a node needs an address that stays the same across reboots; set spec.boot.address (in proxy DHCP mode, the address your DHCP server reserves for its MAC)", h.Name)
	default:
		return netip.Addr{}, fmt.Errorf("host %s has neither spec.ssh nor spec.boot", h.Name)
	}
	ip = ip.Unmap()
	if ip.IsLoopback() || ip.IsUnspecified() || ip.IsMulticast() {
		return netip.Addr{}, fmt.Errorf("host %s: address %s cannot be a node's address", h.Name, ip)
	}
	return ip, nil
}

// EtcdQuota is the Cluster's spec.etcd.quotaBackendBytes; 0 when unset (etcd's default).
func EtcdQuota(c *basaltv1.Cluster) int64 {
	if c.Spec.Etcd == nil || c.Spec.Etcd.QuotaBackendBytes == nil {
		return 0
	}
	return *c.Spec.Etcd.QuotaBackendBytes
}

// EtcdPeerURL is the peer URL of the etcd member on a node with this IP.
func EtcdPeerURL(ip netip.Addr) string { return components.EtcdPeerURL(ip.String(), 0) }

// EtcdClientURL is the client URL of the etcd member on a node with this IP.
func EtcdClientURL(ip netip.Addr) string { return components.EtcdClientURL(ip.String(), 0) }

// APIServerAddress is host:port of the kube-apiserver on a node with this IP.
func APIServerAddress(ip netip.Addr) string {
	return net.JoinHostPort(ip.String(), strconv.Itoa(APIServerPort))
}

// Endpoint is "host:port" of an API endpoint, as clusterpki and the Plan builder take it.
func Endpoint(ep *basaltv1.APIEndpoint) string {
	port := int(ep.Port)
	if port == 0 {
		port = APIServerPort
	}
	return net.JoinHostPort(ep.Host, strconv.Itoa(port))
}

// RunsAPIServer says whether the Plan of m runs kube-apiserver: a control-plane Machine whose
// etcd member initialised the cluster or has been promoted from learner.
func RunsAPIServer(m *basaltv1.Machine) bool {
	return m.Spec.Role == basaltv1.RoleControlPlane && m.Status.Etcd != nil && !m.Status.Etcd.Learner
}

// ComponentHealthy says whether the agent on m's host last reported component name healthy.
func ComponentHealthy(m *basaltv1.Machine, name string) bool {
	for _, c := range m.Status.Components {
		if c.Name == name {
			return c.Healthy
		}
	}
	return false
}

// AgentConnected says whether the Host controller reports h's agent as connected. A Machine
// mirrors this condition rather than judging the agent itself, so an SSH failure the Host
// controller saw (InstallFailed, HostKeyMismatch, ...) reaches the Machine with its reason.
func AgentConnected(h *basaltv1.Host) bool {
	return meta.IsStatusConditionTrue(h.Status.Conditions, basaltv1.HostAgentConnected)
}

// HostFacts are the facts of h a Plan depends on: spec.os wins over what the agent reported in
// status.os; a fact known from neither takes the safe default (not a container; cgroup v1 and
// no systemd, so the cgroupfs driver, which works on every host).
func HostFacts(h *basaltv1.Host) builder.HostFacts {
	var f builder.HostFacts
	for _, os := range []*basaltv1.OSFacts{h.Status.OS, h.Spec.OS} { // later wins
		if os == nil {
			continue
		}
		if os.Container != nil {
			f.InContainer = *os.Container
		}
		if os.SystemdPID1 != nil {
			f.SystemdPID1 = *os.SystemdPID1
		}
		if os.CgroupVersion != 0 {
			f.CgroupV2 = os.CgroupVersion == 2
		}
	}
	return f
}

// Peer is another node of the cluster as the Plan of one node sees it.
type Peer struct {
	// Machine is the peer's Machine.
	Machine *basaltv1.Machine
	// IP is its node IP.
	IP netip.Addr
}

// Peers returns the Machines bound to Hosts that name them as consumer, with the Hosts' node IPs,
// in the order of machines; Machines without such a Host or address are left out. The Peers
// point into machines.
func Peers(machines []basaltv1.Machine, hosts []basaltv1.Host) []Peer {
	byName := map[string]*basaltv1.Host{}
	for i := range hosts {
		byName[hosts[i].Name] = &hosts[i]
	}
	var out []Peer
	for i := range machines {
		m := &machines[i]
		if m.Spec.HostRef == nil {
			continue
		}
		h := byName[m.Spec.HostRef.Name]
		if h == nil || h.Status.ConsumerRef == nil || h.Status.ConsumerRef.Name != m.Name {
			continue
		}
		ip, err := NodeIP(h)
		if err != nil {
			continue
		}
		out = append(out, Peer{Machine: m, IP: ip})
	}
	return out
}

// Routes returns, for a node at self with its own pod range, the host-gw routes to every peer's
// pod range, sorted by destination. Peers without a pod range, at the same IP, or whose range is
// the node's own are left out.
func Routes(self netip.Addr, ownPodCIDR string, peers []Peer) []plan.Route {
	var out []plan.Route
	for _, p := range peers {
		cidr := p.Machine.Status.PodCIDR
		if cidr == "" || cidr == ownPodCIDR || p.IP == self {
			continue
		}
		out = append(out, plan.Route{Destination: cidr, Gateway: p.IP.String()})
	}
	slices.SortFunc(out, func(a, b plan.Route) int { return strings.Compare(a.Destination, b.Destination) })
	return out
}

// APIServers returns host:port of every peer (and self, when included in peers) whose Plan runs
// kube-apiserver, sorted: the backends of the node-local load balancer.
func APIServers(peers []Peer) []string {
	var out []string
	for _, p := range peers {
		if RunsAPIServer(p.Machine) && p.Machine.DeletionTimestamp.IsZero() {
			out = append(out, APIServerAddress(p.IP))
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// MaxNodeRanges is the most per-node ranges a pod CIDR is split into; kube-controller-manager's
// range allocator refuses more.
const MaxNodeRanges = 1 << 16

// NodeRanges returns how many per-node ranges of prefix length bits podCIDR holds (at most
// MaxNodeRanges).
func NodeRanges(podCIDR netip.Prefix, bits int) (uint64, error) {
	if !podCIDR.IsValid() || podCIDR != podCIDR.Masked() {
		return 0, fmt.Errorf("pod CIDR %s is not a network", podCIDR)
	}
	if bits <= podCIDR.Bits() || bits > podCIDR.Addr().BitLen() {
		return 0, fmt.Errorf("node mask /%d does not split pod CIDR %s", bits, podCIDR)
	}
	if d := bits - podCIDR.Bits(); d < 16 {
		return 1 << d, nil
	}
	return MaxNodeRanges, nil
}

// ErrNoRange means the index is past the last range of the pod CIDR.
var ErrNoRange = errors.New("no such node range")

// NodeRange returns the i-th (from 0) per-node range of prefix length bits of podCIDR.
func NodeRange(podCIDR netip.Prefix, bits int, i uint64) (netip.Prefix, error) {
	n, err := NodeRanges(podCIDR, bits)
	if err != nil {
		return netip.Prefix{}, err
	}
	if i >= n {
		return netip.Prefix{}, fmt.Errorf("%w: %d of %d in %s", ErrNoRange, i, n, podCIDR)
	}
	base := new(big.Int).SetBytes(podCIDR.Addr().AsSlice())
	off := new(big.Int).Lsh(new(big.Int).SetUint64(i), uint(podCIDR.Addr().BitLen()-bits))
	sum := base.Add(base, off).Bytes()
	b := make([]byte, podCIDR.Addr().BitLen()/8)
	copy(b[len(b)-len(sum):], sum)
	addr, _ := netip.AddrFromSlice(b)
	return netip.PrefixFrom(addr, bits), nil
}

// NodeRangeIndex returns the index of range r in podCIDR split at bits, and false when r is not
// one of those ranges.
func NodeRangeIndex(podCIDR netip.Prefix, bits int, r netip.Prefix) (uint64, bool) {
	if r.Bits() != bits || r != r.Masked() || !podCIDR.Contains(r.Addr()) {
		return 0, false
	}
	base := new(big.Int).SetBytes(podCIDR.Addr().AsSlice())
	d := new(big.Int).SetBytes(r.Addr().AsSlice())
	d.Sub(d, base).Rsh(d, uint(r.Addr().BitLen()-bits))
	if !d.IsUint64() {
		return 0, false
	}
	n, err := NodeRanges(podCIDR, bits)
	if err != nil || d.Uint64() >= n {
		return 0, false
	}
	return d.Uint64(), true
}

// NodeMaskBits is spec.network.nodeCIDRMaskSize, or the default for the pod CIDR's family.
func NodeMaskBits(c *basaltv1.Cluster, podCIDR netip.Prefix) int {
	if n := int(c.Spec.Network.NodeCIDRMaskSize); n > 0 {
		return n
	}
	if podCIDR.Addr().Is6() {
		return 64
	}
	return 24
}

// OldestFirst orders Machines by creation time, then name.
func OldestFirst(a, b *basaltv1.Machine) int {
	ta, tb := a.CreationTimestamp, b.CreationTimestamp
	switch {
	case ta.Before(&tb):
		return -1
	case tb.Before(&ta):
		return 1
	}
	return strings.Compare(a.Name, b.Name)
}

// HostFailure returns the reason and message of the Host's Wiped condition when the Host is kept
// out of the pool because nobody confirmed its wipe (WipeNotConfirmed), else of its AgentConnected
// condition when it says the agent cannot be brought onto or heard from the host (an SSH failure,
// a host key mismatch, an unusable SSH key, a silent agent), and ok false otherwise (connected, or
// still waiting).
func HostFailure(h *basaltv1.Host) (reason, message string, ok bool) {
	if w := meta.FindStatusCondition(h.Status.Conditions, basaltv1.HostWiped); w != nil && w.Reason == basaltv1.ReasonWipeNotConfirmed {
		return w.Reason, w.Message, true
	}
	c := meta.FindStatusCondition(h.Status.Conditions, basaltv1.HostAgentConnected)
	if c == nil || c.Status == metav1.ConditionTrue {
		return "", "", false
	}
	switch c.Reason {
	case basaltv1.ReasonInstallFailed, basaltv1.ReasonHostKeyMismatch, basaltv1.ReasonHostKeyNotPinned, basaltv1.ReasonSSHKeyInvalid, basaltv1.ReasonAgentSilent:
		return c.Reason, c.Message, true
	}
	return "", "", false
}

// DefaultNodeDrainTimeout applies when spec.nodeDrainTimeout is unset (objects stored before the
// field had a default).
const DefaultNodeDrainTimeout = 5 * time.Minute

// NodeDrainTimeout is c's spec.nodeDrainTimeout, or its default when unset; 0 means no drain.
func NodeDrainTimeout(c *basaltv1.Cluster) time.Duration {
	if c == nil || c.Spec.NodeDrainTimeout == nil {
		return DefaultNodeDrainTimeout
	}
	return c.Spec.NodeDrainTimeout.Duration
}
