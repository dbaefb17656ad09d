package inspect

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/basalt-dev/basalt/agents/protocol"
)

// fakeRoot builds a root from a map of paths to contents; a path ending in "/" is a folder.
func fakeRoot(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for name, content := range files {
		p := filepath.Join(root, name)
		if strings.HasSuffix(name, "/") {
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// cgroupV1 is the legacy hierarchy: one folder per controller, no cgroup.controllers.
var cgroupV1 = map[string]string{"sys/fs/cgroup/memory/": "", "sys/fs/cgroup/cpu,cpuacct/": "", "sys/fs/cgroup/systemd/": ""}

// cgroupV2 is the unified hierarchy.
var cgroupV2 = map[string]string{"sys/fs/cgroup/cgroup.controllers": "cpuset cpu io memory hugetlb pids rdma misc\n"}

// machineV1Cgroup is /proc/1/cgroup of systemd on a machine with the legacy hierarchy.
const machineV1Cgroup = "12:pids:/\n11:memory:/\n4:cpu,cpuacct:/\n1:name=systemd:/init.scope\n0::/init.scope\n"

func with(maps ...map[string]string) map[string]string {
	out := map[string]string{}
	for _, m := range maps {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}

func TestInspectOS(t *testing.T) {
	for _, tc := range []struct {
		name  string
		files map[string]string
		want  protocol.OSFacts
	}{{
		// The test bed's hosts: Docker, --cgroupns=private (PID 1 sees its cgroup as "/"),
		// container=docker, systemd booted by basalt-init, on a cgroup v1 machine.
		name: "test-bed container with systemd on cgroup v1",
		files: with(cgroupV1, map[string]string{
			".dockerenv": "", "run/systemd/system/": "",
			"proc/1/comm":    "systemd\n",
			"proc/1/environ": "container=docker\x00PATH=/usr/sbin:/usr/bin\x00HOME=/\x00",
			"proc/1/cgroup":  "12:pids:/\n11:memory:/\n1:name=systemd:/init.scope\n0::/\n",
		}),
		want: protocol.OSFacts{Container: true, SystemdPID1: true, CgroupVersion: 1},
	}, {
		name: "machine with systemd on cgroup v2",
		files: with(cgroupV2, map[string]string{
			"run/systemd/system/": "",
			"proc/1/comm":         "systemd\n",
			"proc/1/environ":      "HOME=/\x00init=/sbin/init\x00TERM=linux\x00BOOT_IMAGE=/vmlinuz-6.1.0-18-amd64\x00",
			"proc/1/cgroup":       "0::/init.scope\n",
		}),
		want: protocol.OSFacts{SystemdPID1: true, CgroupVersion: 2},
	}, {
		name: "container without systemd (Podman, tini as PID 1)",
		files: with(cgroupV2, map[string]string{
			"run/.containerenv": "engine=\"podman-4.9.3\"\n",
			"proc/1/comm":       "tini\n",
			"proc/1/cgroup":     "0::/\n",
		}),
		want: protocol.OSFacts{Container: true, CgroupVersion: 2},
	}, {
		name: "machine with systemd on cgroup v1",
		files: with(cgroupV1, map[string]string{
			"run/systemd/system/": "", "proc/1/comm": "systemd\n", "proc/1/cgroup": machineV1Cgroup,
		}),
		want: protocol.OSFacts{SystemdPID1: true, CgroupVersion: 1},
	}, {
		// Hybrid: v1 controllers, the unified hierarchy mounted at /sys/fs/cgroup/unified.
		name: "machine with systemd on the hybrid hierarchy",
		files: with(cgroupV1, map[string]string{
			"sys/fs/cgroup/unified/cgroup.controllers": "",
			"run/systemd/system/":                      "", "proc/1/comm": "systemd\n", "proc/1/cgroup": machineV1Cgroup,
		}),
		want: protocol.OSFacts{SystemdPID1: true, CgroupVersion: 1},
	}, {
		name: "machine with OpenRC, environment variables that merely mention container",
		files: with(cgroupV2, map[string]string{
			"proc/1/comm":    "init\n",
			"proc/1/environ": "HOME=/\x00mycontainer=yes\x00CONTAINER=1\x00container=\x00TERM=linux\x00",
			"proc/1/cgroup":  "0::/\n",
		}),
		want: protocol.OSFacts{CgroupVersion: 2},
	}, {
		name: "systemd-nspawn container: only PID 1's environment tells",
		files: with(cgroupV2, map[string]string{
			"run/systemd/system/": "", "proc/1/comm": "systemd\n",
			"proc/1/environ": "PATH=/bin\x00container=systemd-nspawn\x00container_uuid=0d7d\x00",
			"proc/1/cgroup":  "0::/init.scope\n",
		}),
		want: protocol.OSFacts{Container: true, SystemdPID1: true, CgroupVersion: 2},
	}, {
		name: "Docker container sharing the host's cgroup namespace: only the cgroup tells",
		files: with(cgroupV1, map[string]string{
			"proc/1/comm":   "sh\n",
			"proc/1/cgroup": "12:pids:/docker/4f3b2a1c\n11:memory:/docker/4f3b2a1c\n1:name=systemd:/docker/4f3b2a1c\n",
		}),
		want: protocol.OSFacts{Container: true, CgroupVersion: 1},
	}, {
		name: "Kubernetes pod on cgroup v2 with the systemd driver",
		files: with(cgroupV2, map[string]string{
			"proc/1/comm":   "pause\n",
			"proc/1/cgroup": "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1a2b.slice/cri-containerd-9f8e.scope\n",
		}),
		want: protocol.OSFacts{Container: true, CgroupVersion: 2},
	}, {
		name: "systemd installed but not PID 1",
		files: with(cgroupV2, map[string]string{
			"run/systemd/system/": "", "proc/1/comm": "runit\n", "proc/1/cgroup": "0::/\n",
		}),
		want: protocol.OSFacts{CgroupVersion: 2},
	}, {
		name: "systemd as PID 1 that did not boot the host (no /run/systemd/system)",
		files: with(cgroupV2, map[string]string{
			"run/systemd/": "", "proc/1/comm": "systemd\n", "proc/1/cgroup": "0::/init.scope\n",
		}),
		want: protocol.OSFacts{CgroupVersion: 2},
	}, {
		name:  "nothing readable",
		files: map[string]string{},
		want:  protocol.OSFacts{},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Inspector{Root: fakeRoot(t, tc.files)}.InspectOS(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(&tc.want, got); d != "" {
				t.Errorf("OS facts (-want +got):\n%s", d)
			}
		})
	}
}

func TestContainerCgroup(t *testing.T) {
	for in, want := range map[string]bool{
		"":                                    false,
		"0::/\n":                              false,
		"0::/init.scope\n":                    false,
		machineV1Cgroup:                       false,
		"0::/system.slice/dockerd.service":    false, // a daemon's name, not a container's cgroup
		"0::/user.slice/user-1000.slice":      false,
		"0::/../../system.slice/docker-1.x":   false, // outside this cgroup namespace
		"not a cgroup line":                   false,
		"0::/docker/4f3b":                     true,
		"0::/system.slice/docker-4f3b.scope":  true,
		"0::/machine.slice/libpod-4f3b.scope": true,
		"0::/lxc.payload.web1":                true,
		"3:cpu:/kubepods/besteffort/pod1/2":   true,
		"0::/kubepods.slice/kubepods-pod1.slice/crio-2.scope": true,
	} {
		if got := containerCgroup(in); got != want {
			t.Errorf("containerCgroup(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestHasContainerEnv(t *testing.T) {
	for in, want := range map[string]bool{
		"":                                   false,
		"container=docker":                   true,
		"A=1\x00container=lxc\x00":           true,
		"A=1\x00container=\x00":              false,
		"A=container=docker\x00":             false,
		"xcontainer=docker\x00container\x00": false,
	} {
		if got := hasContainerEnv([]byte(in)); got != want {
			t.Errorf("hasContainerEnv(%q) = %v, want %v", in, got, want)
		}
	}
}
