// Package inspect reports the hardware of the host the agent runs on — CPUs, memory, disks, NICs
// and DMI system information — as a protocol.Hardware, read from sysfs and procfs, together with
// the operating system facts a node's Plan depends on (container or machine, systemd as PID 1,
// cgroup version; see Inspector.InspectOS). The root of every file read is injected
// (Inspector.Root), so the code is tested against fake trees.
package inspect

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/basalt-dev/basalt/agents/protocol"
)

// Inspector reads hardware facts.
type Inspector struct {
	// Root holds sys/, proc/ and run/; default "/".
	Root string
	// Addrs returns the addresses (CIDR notation) of a network interface; default reads them
	// from the kernel with net.InterfaceByName. Tests inject a fake.
	Addrs func(name string) ([]string, error)
}

// Inspect reads every fact it can, the OS facts (Hardware.OS) included. A fact that cannot be
// read is left zero; only a host with no readable CPU or memory information is an error.
func (i Inspector) Inspect(ctx context.Context) (*protocol.Hardware, error) {
	return i.inspect(ctx)
}

func (i Inspector) path(elem ...string) string {
	root := i.Root
	if root == "" {
		root = "/"
	}
	return filepath.Join(append([]string{root}, elem...)...)
}

// read returns the trimmed content of a file under Root, or "" when it cannot be read.
func (i Inspector) read(elem ...string) string {
	b, err := os.ReadFile(i.path(elem...))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func (i Inspector) readInt(elem ...string) (int64, bool) {
	v, err := strconv.ParseInt(i.read(elem...), 10, 64)
	return v, err == nil
}

func (i Inspector) addrs(name string) []string {
	f := i.Addrs
	if f == nil {
		f = kernelAddrs
	}
	a, err := f(name)
	if err != nil {
		return nil
	}
	return a
}

func kernelAddrs(name string) ([]string, error) {
	ifc, err := net.InterfaceByName(name)
	if err != nil {
		return nil, err
	}
	addrs, err := ifc.Addrs()
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(addrs))
	for _, a := range addrs {
		out = append(out, a.String())
	}
	return out, nil
}

// parseCPUList counts the CPUs of a kernel CPU list such as "0-3,6,8-9".
func parseCPUList(s string) int {
	n := 0
	for _, part := range strings.Split(strings.TrimSpace(s), ",") {
		if part == "" {
			continue
		}
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			return 0
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a {
				return 0
			}
		}
		if a < 0 || b >= maxCPUs {
			return 0 // no kernel numbers CPUs so (a file Basalt does not control)
		}
		n += b - a + 1
		if n > maxCPUs {
			return 0
		}
	}
	return n
}

// maxCPUs bounds the CPU numbers parseCPUList accepts: far above any kernel's NR_CPUS (8192).
const maxCPUs = 1 << 16

// virtualNIC says whether an interface is plumbing of containers or pod networking rather than
// a NIC of the host: it is left out of the hardware report.
func virtualNIC(name string) bool {
	for _, p := range []string{"lo", "veth", "cni", "flannel", "cali", "docker", "kube-ipvs", "tunl", "dummy"} {
		if name == p || (p != "lo" && strings.HasPrefix(name, p)) {
			return true
		}
	}
	return false
}
