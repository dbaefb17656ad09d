// Package routes programs a Plan's node routes (pod CIDRs of other nodes through those nodes'
// addresses, host-gw) into the host's main routing table with the ip command, through an
// injected command runner.
package routes

import (
	"context"
	"fmt"
	"net/netip"
	"strings"

	"github.com/basalt-dev/basalt/bootstrap/plan"
)

// Runner runs a command and returns its combined output (service.ExecRunner in the agent).
type Runner interface {
	Run(ctx context.Context, name string, args ...string) ([]byte, error)
}

// Programmer adds and removes routes.
type Programmer struct {
	// Run runs ip.
	Run Runner
	// IP is the ip command; default "ip".
	IP string
}

func (p Programmer) ip() string {
	if p.IP == "" {
		return "ip"
	}
	return p.IP
}

// Check parses r: a CIDR destination without host bits and a gateway of the same family.
func Check(r plan.Route) (netip.Prefix, netip.Addr, error) {
	dst, err := netip.ParsePrefix(r.Destination)
	if err != nil {
		return netip.Prefix{}, netip.Addr{}, fmt.Errorf("route %s: destination: %w", r.Destination, err)
	}
	if dst.Masked() != dst {
		return netip.Prefix{}, netip.Addr{}, fmt.Errorf("route %s: destination has host bits set", r.Destination)
	}
	gw, err := netip.ParseAddr(r.Gateway)
	if err != nil {
		return netip.Prefix{}, netip.Addr{}, fmt.Errorf("route %s: gateway: %w", r.Destination, err)
	}
	if gw.Is4() != dst.Addr().Is4() {
		return netip.Prefix{}, netip.Addr{}, fmt.Errorf("route %s: gateway %s is of another address family", r.Destination, r.Gateway)
	}
	return dst, gw, nil
}

// Replace programs r with `ip route replace DST via GW`: it creates the route or changes its
// gateway, and does nothing when it is already there, so it may be repeated after a crash.
func (p Programmer) Replace(ctx context.Context, r plan.Route) error {
	dst, gw, err := Check(r)
	if err != nil {
		return err
	}
	_, err = p.Run.Run(ctx, p.ip(), family(dst), "route", "replace", dst.String(), "via", gw.String())
	return err
}

// Delete removes the route to r.Destination through r.Gateway; a route that is already gone is
// not an error.
func (p Programmer) Delete(ctx context.Context, r plan.Route) error {
	dst, gw, err := Check(r)
	if err != nil {
		return err
	}
	out, err := p.Run.Run(ctx, p.ip(), family(dst), "route", "del", dst.String(), "via", gw.String())
	if err != nil && (strings.Contains(string(out), "No such process") || strings.Contains(err.Error(), "No such process")) {
		// ESRCH: there is no such route (removed already, e.g. before a crash).
		return nil
	}
	return err
}

func family(p netip.Prefix) string {
	if p.Addr().Is4() {
		return "-4"
	}
	return "-6"
}

// DeleteLink deletes the network interface name (ip link delete); one that does not exist is
// no error (deleted before a crash, or never made: no pod ever ran).
func (p Programmer) DeleteLink(ctx context.Context, name string) error {
	out, err := p.Run.Run(ctx, p.ip(), "link", "delete", name)
	if err != nil && (strings.Contains(string(out), "Cannot find device") || strings.Contains(err.Error(), "Cannot find device")) {
		return nil
	}
	return err
}
