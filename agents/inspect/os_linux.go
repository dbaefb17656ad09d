package inspect

import (
	"bytes"
	"context"
	"os"
	"strings"

	"github.com/basalt-dev/basalt/agents/protocol"
)

// InspectOS reads what a node's Plan depends on about the operating system: whether the host is
// a container, whether systemd is PID 1, and which cgroup hierarchy it runs. Each fact comes from
// files under Root; a file that cannot be read counts as absent, so a fact that cannot be
// established takes the answer of a plain machine (not a container, no systemd, cgroup version 0
// when /sys/fs/cgroup is missing altogether). It never fails on Linux.
func (i Inspector) InspectOS(ctx context.Context) (*protocol.OSFacts, error) {
	return &protocol.OSFacts{
		Container:     i.container(),
		SystemdPID1:   i.systemdPID1(),
		CgroupVersion: i.cgroupVersion(),
		Nameservers:   i.nameservers(),
	}, nil
}

// nameservers returns the non-loopback nameservers of systemd-resolved's upstream list when the
// host has one, else of /etc/resolv.conf (see protocol.OSFacts.Nameservers).
func (i Inspector) nameservers() []string {
	for _, f := range []string{"run/systemd/resolve/resolv.conf", "etc/resolv.conf"} {
		b, err := os.ReadFile(i.path(f))
		if err != nil {
			continue
		}
		return ParseNameservers(string(b))
	}
	return nil
}

// container says whether the host is a container. Only positive evidence counts, so a machine
// is never taken for a container:
//   - /.dockerenv (Docker) or /run/.containerenv (Podman, CRI-O) exists;
//   - PID 1's environment holds container=<runtime> (systemd-nspawn, LXC, Podman, and the
//     convention systemd documents for every container manager);
//   - PID 1 sits in a cgroup a container runtime made (/docker/<id>, /kubepods/…, /lxc/<name>,
//     …). On a machine PID 1 is in the root cgroup or /init.scope. A container with a private
//     cgroup namespace shows "/" too, so this only adds to the other two.
func (i Inspector) container() bool {
	if i.exists(".dockerenv") || i.exists("run/.containerenv") {
		return true
	}
	if environ, err := os.ReadFile(i.path("proc/1/environ")); err == nil && hasContainerEnv(environ) {
		return true
	}
	return containerCgroup(i.read("proc/1/cgroup"))
}

// hasContainerEnv says whether a NUL-separated environment (/proc/<pid>/environ) sets container
// to a non-empty value.
func hasContainerEnv(environ []byte) bool {
	for _, kv := range bytes.Split(environ, []byte{0}) {
		if v, ok := bytes.CutPrefix(kv, []byte("container=")); ok && len(v) > 0 {
			return true
		}
	}
	return false
}

// containerRuntimes name the cgroups container runtimes create, as a path element or its prefix
// up to '-', '.', '_' or ':' (docker, docker-<id>.scope, kubepods.slice, kubepods-burstable…,
// libpod-<id>.scope, lxc.payload.<name>, crio-<id>.scope, cri-containerd-<id>.scope).
var containerRuntimes = []string{"docker", "kubepods", "libpod", "lxc", "crio", "cri-containerd", "containerd", "podman", "actions_job"}

// containerCgroup says whether /proc/1/cgroup ("<id>:<controllers>:<path>" per line) places
// PID 1 in a cgroup a container runtime made. Paths outside the reader's cgroup namespace
// ("/../…") are not evidence either way.
func containerCgroup(cgroup string) bool {
	for _, line := range strings.Split(cgroup, "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 || strings.HasPrefix(parts[2], "/..") {
			continue
		}
		for _, elem := range strings.Split(parts[2], "/") {
			for _, rt := range containerRuntimes {
				rest, ok := strings.CutPrefix(elem, rt)
				if ok && (rest == "" || strings.ContainsRune("-._:", rune(rest[0]))) {
					return true
				}
			}
		}
	}
	return false
}

// systemdPID1 is systemd's own test (sd_booted: /run/systemd/system is a directory) and PID 1
// being systemd, as service.SystemdRunning decides which runtime the agent uses.
func (i Inspector) systemdPID1() bool {
	fi, err := os.Stat(i.path("run/systemd/system"))
	return err == nil && fi.IsDir() && i.read("proc/1/comm") == "systemd"
}

// cgroupVersion is 2 when /sys/fs/cgroup is the unified hierarchy (it has cgroup.controllers),
// 1 when it is the legacy or hybrid one, and 0 when /sys/fs/cgroup cannot be seen.
func (i Inspector) cgroupVersion() int {
	switch {
	case i.exists("sys/fs/cgroup/cgroup.controllers"):
		return 2
	case i.exists("sys/fs/cgroup"):
		return 1
	}
	return 0
}

func (i Inspector) exists(elem ...string) bool {
	_, err := os.Stat(i.path(elem...))
	return err == nil
}
