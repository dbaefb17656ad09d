package inspect

import (
	"net/netip"
	"slices"
	"strings"

	"github.com/basalt-dev/basalt/agents/protocol"
)

// ParseNameservers returns the nameserver addresses of a resolv.conf that a pod could reach:
// valid IP addresses, not loopback, without duplicates, in file order, at most
// protocol.MaxNameservers. An IPv6 zone (fe80::1%eth0) is kept off: a zone names an interface of
// the host, not of a pod.
func ParseNameservers(resolvConf string) []string {
	var out []string
	for line := range strings.Lines(resolvConf) {
		fields := strings.Fields(line)
		if len(fields) < 2 || fields[0] != "nameserver" {
			continue
		}
		a, err := netip.ParseAddr(fields[1])
		if err != nil || a.Zone() != "" {
			continue
		}
		// An IPv4-mapped address is judged as the IPv4 address it is (::ffff:127.0.0.1 is loopback).
		if a = a.Unmap(); a.IsLoopback() || a.IsUnspecified() {
			continue
		}
		s := a.String()
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
		if len(out) == protocol.MaxNameservers {
			break
		}
	}
	return out
}
