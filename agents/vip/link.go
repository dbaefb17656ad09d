package vip

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/basalt-dev/basalt/bootstrap/plan"
)

// Runner runs a command and returns its combined output (service.ExecRunner in the agent).
type Runner interface {
	Run(ctx context.Context, name string, args ...string) ([]byte, error)
}

// Link puts the address on, and takes it off, the interface that carries the node's address.
type Link interface {
	// Add adds the address (idempotent) and announces it.
	Add(ctx context.Context) error
	// Remove takes the address off; an address that is not there is no error.
	Remove(ctx context.Context) error
	// Has says whether the address is on the host.
	Has() (bool, error)
}

// hostLink is the Link of a real host: ip(8) for the address, a raw socket for the
// announcements.
type hostLink struct {
	run     Runner
	addr    netip.Addr
	node    netip.Addr
	ip      string // the ip command; default "ip"
	arp     func(iface *net.Interface, addr netip.Addr) error
	ifaceOf func(node netip.Addr) (*net.Interface, netip.Prefix, error)
}

func newHostLink(run Runner, addr, node netip.Addr) *hostLink {
	return &hostLink{run: run, addr: addr, node: node, ip: "ip", arp: announce, ifaceOf: interfaceOf}
}

// interfaceOf finds the interface that carries node and node's prefix there.
func interfaceOf(node netip.Addr) (*net.Interface, netip.Prefix, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, netip.Prefix{}, err
	}
	for i := range ifs {
		addrs, err := ifs[i].Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			n, ok := a.(*net.IPNet)
			if !ok {
				continue
			}
			ip, ok := netip.AddrFromSlice(n.IP)
			if !ok || ip.Unmap() != node {
				continue
			}
			ones, _ := n.Mask.Size()
			return &ifs[i], netip.PrefixFrom(node, ones).Masked(), nil
		}
	}
	return nil, netip.Prefix{}, fmt.Errorf("no interface carries the node address %s", node)
}

func (l *hostLink) iface() (*net.Interface, error) {
	ifc, subnet, err := l.ifaceOf(l.node)
	if err != nil {
		return nil, err
	}
	if !subnet.Contains(l.addr) {
		return nil, fmt.Errorf("the virtual IP %s is not on %s's subnet %s: choose an address in %s", l.addr, ifc.Name, subnet, subnet)
	}
	return ifc, nil
}

func (l *hostLink) Add(ctx context.Context) error {
	ifc, err := l.iface()
	if err != nil {
		return err
	}
	if out, err := l.run.Run(ctx, l.ip, "-4", "addr", "replace", l.addr.String()+"/32", "dev", ifc.Name); err != nil {
		return fmt.Errorf("adding %s to %s: %w: %s", l.addr, ifc.Name, err, strings.TrimSpace(string(out)))
	}
	if err := l.arp(ifc, l.addr); err != nil {
		return fmt.Errorf("announcing %s on %s: %w", l.addr, ifc.Name, err)
	}
	return nil
}

func (l *hostLink) Remove(ctx context.Context) error {
	has, err := l.Has()
	if err != nil || !has {
		return err
	}
	ifc, _, err := l.ifaceOf(l.node)
	if err != nil {
		return err
	}
	out, err := l.run.Run(ctx, l.ip, "-4", "addr", "del", l.addr.String()+"/32", "dev", ifc.Name)
	if err != nil && !strings.Contains(string(out), "Cannot assign requested address") {
		return fmt.Errorf("removing %s from %s: %w: %s", l.addr, ifc.Name, err, strings.TrimSpace(string(out)))
	}
	return nil
}

func (l *hostLink) Has() (bool, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return false, err
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok && ip.Unmap() == l.addr {
				return true, nil
			}
		}
	}
	return false, nil
}

// Check says whether this host can hold cfg's address: an interface carries its node address,
// on a subnet that contains the virtual IP. The Plan applier fails its step with this error, so
// the Machine shows it instead of an address nobody can hold.
func Check(cfg *plan.VirtualIP) error {
	addr, err := netip.ParseAddr(cfg.Address)
	if err != nil {
		return err
	}
	node, err := netip.ParseAddr(cfg.NodeAddress)
	if err != nil {
		return err
	}
	_, err = newHostLink(nil, addr, node).iface()
	return err
}
