package bed

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
)

// SubnetPool is where the bed picks each run's /24: 172.28.0.0/16, 256 networks.
var SubnetPool = netip.MustParsePrefix("172.28.0.0/16")

// candidateSubnets lists the /24s of pool that overlap none of used, starting at index start
// (so concurrent runs tend to try different ones first) and wrapping around.
func candidateSubnets(pool netip.Prefix, used []netip.Prefix, start int) []netip.Prefix {
	pool = pool.Masked()
	if pool.Bits() > 24 || !pool.Addr().Is4() {
		return nil
	}
	n := 1 << (24 - pool.Bits())
	base := pool.Addr().As4()
	first := binary.BigEndian.Uint32(base[:])
	var out []netip.Prefix
	for i := range n {
		var a [4]byte
		binary.BigEndian.PutUint32(a[:], first+uint32(((start+i)%n+n)%n)<<8)
		p := netip.PrefixFrom(netip.AddrFrom4(a), 24)
		free := true
		for _, u := range used {
			if u.Overlaps(p) {
				free = false
				break
			}
		}
		if free {
			out = append(out, p)
		}
	}
	return out
}

// hostAddr is the address with the given last octet in a /24.
func hostAddr(subnet netip.Prefix, last byte) netip.Addr {
	a := subnet.Masked().Addr().As4()
	a[3] = last
	return netip.AddrFrom4(a)
}

// usedSubnets returns the IPv4 subnets of every Docker network and every route of this machine.
func usedSubnets(ctx context.Context) ([]netip.Prefix, error) {
	ids, err := docker(ctx, "network", "ls", "--quiet", "--no-trunc")
	if err != nil {
		return nil, err
	}
	var used []netip.Prefix
	if ids := lines(ids); len(ids) > 0 {
		out, err := docker(ctx, append([]string{"network", "inspect", "--format",
			"{{range .IPAM.Config}}{{.Subnet}}\n{{end}}"}, ids...)...)
		if err != nil && !isNotFound(err) { // a network removed meanwhile is fine
			return nil, err
		}
		for _, l := range lines(out) {
			if p, err := netip.ParsePrefix(l); err == nil && p.Addr().Is4() {
				used = append(used, p)
			}
		}
	}
	routes, err := kernelRoutes()
	if err != nil {
		return nil, err
	}
	return append(used, routes...), nil
}

// kernelRoutes reads the IPv4 routes of this machine from /proc/net/route, default route excluded.
func kernelRoutes() ([]netip.Prefix, error) {
	f, err := os.Open("/proc/net/route")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []netip.Prefix
	sc := bufio.NewScanner(f)
	sc.Scan() // header
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 8 {
			continue
		}
		dst, err1 := hex.DecodeString(fields[1])
		mask, err2 := hex.DecodeString(fields[7])
		if err1 != nil || err2 != nil || len(dst) != 4 || len(mask) != 4 {
			continue
		}
		// /proc/net/route prints addresses in host (little-endian) byte order.
		d := netip.AddrFrom4([4]byte{dst[3], dst[2], dst[1], dst[0]})
		ones := 0
		for _, b := range mask {
			for ; b != 0; b &= b - 1 {
				ones++
			}
		}
		if ones == 0 {
			continue
		}
		out = append(out, netip.PrefixFrom(d, ones).Masked())
	}
	return out, sc.Err()
}

// createNetwork creates the run's bridge network on the first free /24 of SubnetPool. Two runs
// racing for one subnet cannot both win: Docker refuses overlapping pools, and the loser moves on.
func createNetwork(ctx context.Context, name, runID string, labels []string) (netip.Prefix, error) {
	used, err := usedSubnets(ctx)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("list subnets in use: %w", err)
	}
	start := 0
	if b, err := hex.DecodeString(runID[:2]); err == nil {
		start = int(b[0])
	}
	var lastErr error
	for i, subnet := range candidateSubnets(SubnetPool, used, start) {
		if i == 8 {
			break
		}
		args := []string{"network", "create", "--driver", "bridge",
			"--subnet", subnet.String(), "--gateway", hostAddr(subnet, 1).String(),
			"--opt", "com.docker.network.bridge.name=btb-" + runID}
		for _, l := range labels {
			args = append(args, "--label", l)
		}
		if _, err := docker(ctx, append(args, name)...); err != nil {
			lastErr = err
			if strings.Contains(err.Error(), "overlap") {
				continue
			}
			return netip.Prefix{}, err
		}
		if err := isolate(ctx, runID); err != nil {
			return netip.Prefix{}, err // the caller's cleanup removes the network
		}
		return subnet, nil
	}
	if lastErr == nil {
		lastErr = fmt.Errorf("every /24 of %s is in use", SubnetPool)
	}
	return netip.Prefix{}, fmt.Errorf("create network %s: %w", name, lastErr)
}

// isolationRule is the host firewall rule (a DOCKER-USER rule of iptables) that keeps run runID's
// traffic on this machine: whatever a bed host sends into its bridge towards another interface
// is rejected. The machine's own addresses (the gateway: the manager, the agent API, artifact
// mirrors) stay reachable, as that is local delivery and not forwarding, and so does everything
// on the bridge itself (hosts, the registry, PXE-booted VMs). A real isolated network drops such
// packets too. Without the rule, a packet for an address no node owns, e.g. a Service IP on a
// port the Service does not have, left through the machine's default route and something outside
// answered it: the conformance test "should serve endpoints on same port and different
// protocols" saw an HTTP answer from outside the cluster (docs/conformance.md).
func isolationRule(runID string) []string {
	bridge := "btb-" + runID
	return []string{"DOCKER-USER", "-i", bridge, "!", "-o", bridge,
		"-m", "comment", "--comment", "basalt-tb-" + runID + ": nothing leaves the test bed", "-j", "REJECT"}
}

// isolate installs run runID's isolation rule once.
func isolate(ctx context.Context, runID string) error {
	rule := isolationRule(runID)
	if exec.CommandContext(ctx, "iptables", append([]string{"-w", "-C"}, rule...)...).Run() == nil {
		return nil
	}
	if out, err := exec.CommandContext(ctx, "iptables", append([]string{"-w", "-I"}, rule...)...).CombinedOutput(); err != nil {
		return fmt.Errorf("isolating the bed's network (iptables -I %s): %w: %s", strings.Join(rule, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// unisolate removes run runID's isolation rule; a rule already gone is not an error.
func unisolate(ctx context.Context, runID string) error {
	rule := isolationRule(runID)
	for exec.CommandContext(ctx, "iptables", append([]string{"-w", "-C"}, rule...)...).Run() == nil {
		if out, err := exec.CommandContext(ctx, "iptables", append([]string{"-w", "-D"}, rule...)...).CombinedOutput(); err != nil {
			return fmt.Errorf("iptables -D %s: %w: %s", strings.Join(rule, " "), err, strings.TrimSpace(string(out)))
		}
	}
	return nil
}
