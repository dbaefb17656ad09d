package inspect

import (
	"bufio"
	"context"
	"errors"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/basalt-dev/basalt/agents/protocol"
)

func (i Inspector) inspect(ctx context.Context) (*protocol.Hardware, error) {
	hw := &protocol.Hardware{
		CPUs:        i.cpus(),
		MemoryBytes: i.memory(),
		System: protocol.SystemInfo{
			Vendor:  i.read("sys/class/dmi/id/sys_vendor"),
			Product: i.read("sys/class/dmi/id/product_name"),
			Serial:  i.read("sys/class/dmi/id/product_serial"),
		},
	}
	if hw.CPUs == 0 && hw.MemoryBytes == 0 {
		return nil, errors.New("inspect: neither CPU nor memory information is readable under " + i.path())
	}
	hw.Disks = i.Disks()
	hw.NICs = i.nics()
	hw.OS, _ = i.InspectOS(ctx) // never fails on Linux
	return hw, nil
}

// cpus counts the online CPUs (sys/devices/system/cpu/online), or the processors listed in
// /proc/cpuinfo when that is missing.
func (i Inspector) cpus() int32 {
	if n := parseCPUList(i.read("sys/devices/system/cpu/online")); n > 0 {
		return int32(n)
	}
	n := 0
	for _, line := range strings.Split(i.read("proc/cpuinfo"), "\n") {
		if k, _, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "processor" {
			n++
		}
	}
	return int32(n)
}

// memory is MemTotal from /proc/meminfo, in bytes.
func (i Inspector) memory() int64 {
	f, err := os.Open(i.path("proc/meminfo"))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "MemTotal:" {
			kb, err := strconv.ParseInt(fields[1], 10, 64)
			if err != nil {
				return 0
			}
			if len(fields) >= 3 && fields[2] != "kB" {
				return kb
			}
			return kb * 1024
		}
	}
	return 0
}

// nics lists /sys/class/net, leaving out loopback and container or pod plumbing. A link whose
// speed is unknown (down, or virtual) has speed 0.
func (i Inspector) nics() []protocol.NIC {
	entries, err := os.ReadDir(i.path("sys/class/net"))
	if err != nil {
		return nil
	}
	var out []protocol.NIC
	for _, e := range entries {
		name := e.Name()
		if virtualNIC(name) {
			continue
		}
		// Only Ethernet (1) and InfiniBand (32) links are NICs; loopback, tunnels (ipip, sit,
		// gre, ip6tnl) and tun devices are not, and their "addresses" are no MAC.
		if t := i.read("sys/class/net", name, "type"); t != "" && t != "1" && t != "32" {
			continue
		}
		n := protocol.NIC{Name: name}
		if mac, err := net.ParseMAC(i.read("sys/class/net", name, "address")); err == nil {
			n.MAC = mac.String()
		}
		if s, ok := i.readInt("sys/class/net", name, "speed"); ok && s > 0 && s < 1<<31 {
			n.SpeedMbps = int32(s)
		}
		n.Addresses = i.addrs(name)
		out = append(out, n)
	}
	slices.SortFunc(out, func(a, b protocol.NIC) int { return strings.Compare(a.Name, b.Name) })
	return out
}
