// Package pxenet builds the provisioning network of the PXE end-to-end suite and boots QEMU VMs
// on it:
//
//	root network namespace                 │ namespace basalt-pxe-<pid>
//	manager (DHCP, TFTP, HTTP boot,        │
//	agent API) on bpxh<n> 10.213.N.1/24 ═══╪═ bpxn<n> ─┐
//	                                       │           br0 ── tap0 ── QEMU VM (virtio-net, PXE)
//
// The VM's only link is the tap in the namespace; the namespace's only way out is the veth pair
// whose root end carries the manager's address, so the VM sees the manager's DHCP and nothing
// else, and the manager runs in the test process (in the root namespace) like on a real
// provisioning network. Everything is removed when the test ends, and a run killed before its
// cleanup is removed by the next run (Stale).
//
// It needs root (network namespaces, tap devices), iproute2 and qemu-system-x86_64.
package pxenet

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Prefix starts the name of every namespace this package creates; the creator's pid follows.
const Prefix = "basalt-pxe-"

// subnetBase is where networks are taken from: 10.213.0.0/16, one /24 per run.
var subnetBase = netip.MustParseAddr("10.213.0.0")

// Network is a provisioning network: a namespace with a bridge, a tap for a VM, and a veth pair
// whose root end (HostIf, ServerIP) is where the manager serves.
type Network struct {
	// Namespace is the network namespace holding Bridge and Tap.
	Namespace string
	// Bridge and Tap are the bridge and the VM's tap device, inside Namespace.
	Bridge, Tap string
	// HostIf is the root-namespace end of the veth pair: the manager's interface.
	HostIf string
	// Subnet is the network; ServerIP (.1) is the manager's address on HostIf.
	Subnet   netip.Prefix
	ServerIP netip.Addr
	// Logf receives progress messages.
	Logf func(format string, args ...any)
}

func run(ctx context.Context, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return nil
}

// New creates a provisioning network. Call Close when done (also after a failure).
func New(ctx context.Context, logf func(string, ...any)) (*Network, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("pxenet: needs root for network namespaces and tap devices")
	}
	if logf == nil {
		logf = func(string, ...any) {}
	}
	if removed, err := Stale(ctx); err != nil {
		return nil, err
	} else if len(removed) > 0 {
		logf("Removed PXE networks left by dead runs: %v", removed)
	}
	pid := os.Getpid()
	subnet, err := freeSubnet(pid)
	if err != nil {
		return nil, err
	}
	id := strconv.Itoa(pid % 1000000)
	n := &Network{
		Namespace: Prefix + strconv.Itoa(pid),
		Bridge:    "br0", Tap: "tap0",
		HostIf:   "bpxh" + id,
		Subnet:   subnet,
		ServerIP: subnet.Addr().Next(),
		Logf:     logf,
	}
	nsIf := "bpxn" + id
	steps := [][]string{
		{"netns", "add", n.Namespace},
		{"link", "add", n.HostIf, "type", "veth", "peer", "name", nsIf},
		{"link", "set", nsIf, "netns", n.Namespace},
		{"-n", n.Namespace, "link", "add", n.Bridge, "type", "bridge", "stp_state", "0", "forward_delay", "0"},
		{"-n", n.Namespace, "link", "set", nsIf, "master", n.Bridge},
		{"-n", n.Namespace, "tuntap", "add", "dev", n.Tap, "mode", "tap"},
		{"-n", n.Namespace, "link", "set", n.Tap, "master", n.Bridge},
		{"-n", n.Namespace, "link", "set", "lo", "up"},
		{"-n", n.Namespace, "link", "set", nsIf, "up"},
		{"-n", n.Namespace, "link", "set", n.Tap, "up"},
		{"-n", n.Namespace, "link", "set", n.Bridge, "up"},
		{"addr", "add", netip.PrefixFrom(n.ServerIP, subnet.Bits()).String(), "dev", n.HostIf},
		{"link", "set", n.HostIf, "up"},
	}
	for _, s := range steps {
		if err := run(ctx, "ip", s...); err != nil {
			_ = n.Close()
			return nil, fmt.Errorf("pxenet: %w", err)
		}
	}
	if err := waitAddress(ctx, n.ServerIP); err != nil {
		_ = n.Close()
		return nil, err
	}
	logf("PXE network %s: %s on %s, VM tap %s/%s", n.Namespace, n.ServerIP, n.HostIf, n.Namespace, n.Tap)
	return n, nil
}

// AddBridgeAddress gives the bridge inside the namespace the address with the last octet last
// (e.g. 2), for a service that runs in the namespace (a reference DHCP server), and returns it.
func (n *Network) AddBridgeAddress(ctx context.Context, last byte) (netip.Addr, error) {
	a := n.Subnet.Addr().As4()
	a[3] = last
	ip := netip.AddrFrom4(a)
	if err := run(ctx, "ip", "-n", n.Namespace, "addr", "add", netip.PrefixFrom(ip, n.Subnet.Bits()).String(), "dev", n.Bridge); err != nil {
		return netip.Addr{}, fmt.Errorf("pxenet: %w", err)
	}
	return ip, nil
}

// Command is cmd run inside the namespace (ip netns exec).
func (n *Network) Command(name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", n.Namespace, name}, args...)...)
}

// waitAddress waits until ip can be bound (IPv4 addresses are usable at once, but be sure).
func waitAddress(ctx context.Context, ip netip.Addr) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		l, err := net.Listen("tcp", net.JoinHostPort(ip.String(), "0"))
		if err == nil {
			return l.Close()
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("pxenet: %s never became usable: %w", ip, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// freeSubnet picks a /24 of 10.213.0.0/16 that no interface of this machine is on, starting at
// one derived from pid so that concurrent runs tend to differ.
func freeSubnet(pid int) (netip.Prefix, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return netip.Prefix{}, err
	}
	var used []netip.Prefix
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil {
			used = append(used, p.Masked())
		}
	}
	base := subnetBase.As4()
	for i := range 256 {
		b := base
		b[2] = byte((pid + i) % 256)
		p := netip.PrefixFrom(netip.AddrFrom4(b), 24)
		free := true
		for _, u := range used {
			if u.Overlaps(p) {
				free = false
				break
			}
		}
		if free {
			return p, nil
		}
	}
	return netip.Prefix{}, errors.New("pxenet: no free /24 in 10.213.0.0/16")
}

// Close removes the network: every process still in the namespace (VMs this package started)
// is killed, then the namespace goes, taking the bridge, the tap and the veth pair with it.
func (n *Network) Close() error {
	if n.Namespace == "" {
		if _, err := os.Stat(filepath.Join("/sys/class/net", n.Tap)); errors.Is(err, os.ErrNotExist) {
			return nil // already gone
		}
		return run(context.Background(), "ip", "link", "del", n.Tap)
	}
	return removeNamespace(context.Background(), n.Namespace)
}

// tapPrefix starts the name of a tap OnBridge creates in the root namespace; the creator's pid
// (modulo 10^6) follows.
const tapPrefix = "bpxt"

// OnBridge puts VMs on an existing bridge of the root namespace (e.g. a Docker network's, so a
// VM shares the L2 segment of the test bed's containers): it creates a tap on bridge, and the
// manager serves on the bridge itself at serverIP (the bridge's own address) in subnet. Close
// removes the tap (QEMU must be stopped first).
func OnBridge(ctx context.Context, bridge string, subnet netip.Prefix, serverIP netip.Addr, logf func(string, ...any)) (*Network, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("pxenet: needs root for tap devices")
	}
	if logf == nil {
		logf = func(string, ...any) {}
	}
	if removed, err := Stale(ctx); err != nil {
		return nil, err
	} else if len(removed) > 0 {
		logf("Removed PXE networks left by dead runs: %v", removed)
	}
	n := &Network{Bridge: bridge, Tap: tapPrefix + strconv.Itoa(os.Getpid()%1000000), HostIf: bridge, Subnet: subnet, ServerIP: serverIP, Logf: logf}
	_ = n.Close() // a tap of an earlier network of this process
	for _, s := range [][]string{
		{"tuntap", "add", "dev", n.Tap, "mode", "tap"},
		{"link", "set", n.Tap, "master", bridge},
		{"link", "set", n.Tap, "up"},
	} {
		if err := run(ctx, "ip", s...); err != nil {
			_ = n.Close()
			return nil, fmt.Errorf("pxenet: %w", err)
		}
	}
	logf("VM tap %s on bridge %s (%s, server %s)", n.Tap, bridge, subnet, serverIP)
	return n, nil
}

func removeNamespace(ctx context.Context, ns string) error {
	killNamespacePids(ctx, ns)
	var errs []error
	if _, err := os.Stat(filepath.Join("/run/netns", ns)); err == nil {
		if err := run(ctx, "ip", "netns", "del", ns); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// killNamespacePids kills the processes running in ns: only VMs of this package run there.
func killNamespacePids(ctx context.Context, ns string) {
	out, err := exec.CommandContext(ctx, "ip", "netns", "pids", ns).Output()
	if err != nil {
		return
	}
	for _, f := range strings.Fields(string(out)) {
		if pid, err := strconv.Atoi(f); err == nil && pid > 1 {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	time.Sleep(200 * time.Millisecond)
}

// Stale removes the namespaces of runs whose process is gone (a test killed before its cleanup)
// and returns their names.
func Stale(ctx context.Context) ([]string, error) {
	entries, err := os.ReadDir("/run/netns")
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var removed []string
	// Taps OnBridge left in the root namespace.
	links, _ := os.ReadDir("/sys/class/net")
	for _, l := range links {
		pid, err := strconv.Atoi(strings.TrimPrefix(l.Name(), tapPrefix))
		if !strings.HasPrefix(l.Name(), tapPrefix) || err != nil || pid == os.Getpid()%1000000 || pidAlive(pid) {
			continue
		}
		if err := run(ctx, "ip", "link", "del", l.Name()); err != nil {
			return removed, err
		}
		removed = append(removed, l.Name())
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(strings.TrimPrefix(e.Name(), Prefix))
		if !strings.HasPrefix(e.Name(), Prefix) || err != nil {
			continue
		}
		if pid == os.Getpid() || pidAlive(pid) {
			continue // its run is alive
		}
		if err := removeNamespace(ctx, e.Name()); err != nil {
			return removed, err
		}
		removed = append(removed, e.Name())
	}
	return removed, nil
}

// pidAlive says whether a process with this pid runs. Taps carry the pid modulo 10^6, which on
// this machine's pid range (at most 4194304) may name another process: then the tap is kept
// until that one ends too, never removed from under a live run.
func pidAlive(pid int) bool {
	for p := pid; p <= 4194304; p += 1000000 {
		if syscall.Kill(p, 0) == nil {
			return true
		}
	}
	return false
}
