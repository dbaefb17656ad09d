package apply

import (
	"bufio"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestKillTreesKillsDescendantsFirstAndOnlyThem(t *testing.T) {
	procs := []proc{
		{pid: 1, ppid: 0, exe: "/sbin/init"},
		{pid: 10, ppid: 1, exe: "/opt/basalt/bin/containerd-shim-runc-v2"},
		{pid: 11, ppid: 10, exe: "/pause"},
		{pid: 12, ppid: 10, exe: "/webserver"},
		{pid: 13, ppid: 12, exe: "/bin/sh"},
		{pid: 20, ppid: 1, exe: "/usr/bin/containerd-shim-runc-v2"}, // another engine's shim
		{pid: 21, ppid: 20, exe: "/usr/bin/dockerd-child"},
		{pid: 30, ppid: 1, exe: "/opt/basalt/bin/containerd-shim-runc-v2 (deleted)"[:len("/opt/basalt/bin/containerd-shim-runc-v2")]},
	}
	var killed []int
	n, err := killTrees(procs, []string{"/opt/basalt/bin/containerd-shim-runc-v2"}, func(pid int) error {
		killed = append(killed, pid)
		return nil
	})
	if err != nil || n != 5 {
		t.Fatalf("killTrees = %d, %v; want 5 killed", n, err)
	}
	for _, pid := range []int{20, 21, 1} {
		if slices.Contains(killed, pid) {
			t.Errorf("killed %d, which is not under Basalt's shim", pid)
		}
	}
	pos := func(pid int) int { return slices.Index(killed, pid) }
	if pos(13) > pos(12) || pos(12) > pos(10) || pos(11) > pos(10) {
		t.Errorf("kill order %v: descendants must go before their parents", killed)
	}
}

// TestHostProcessesKillsARealTree starts a process tree from a copy of sh at a path of its own
// and checks KillTrees ends all of it, and nothing else.
func TestHostProcessesKillsARealTree(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(t.TempDir(), "fake-shim")
	copyFile(t, sh, exe)
	pidFile := filepath.Join(t.TempDir(), "child.pid")
	cmd := exec.Command(exe, "-c", "sleep 300 & echo $! > "+pidFile+"; wait")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	bystander := exec.Command("sleep", "300")
	if err := bystander.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = bystander.Process.Kill(); _ = bystander.Wait(); _ = cmd.Process.Kill() })
	var child int
	deadline := time.Now().Add(10 * time.Second)
	for child == 0 && time.Now().Before(deadline) {
		b, _ := os.ReadFile(pidFile)
		child, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		time.Sleep(20 * time.Millisecond)
	}
	if child == 0 {
		t.Fatal("the child did not start")
	}
	n, err := hostProcesses{}.KillTrees([]string{exe})
	if err != nil || n != 2 {
		t.Fatalf("KillTrees = %d, %v; want the shell and its child", n, err)
	}
	_ = cmd.Wait()
	deadline = time.Now().Add(10 * time.Second)
	for alive(child) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if alive(child) {
		t.Errorf("child %d still runs", child)
	}
	if !alive(bystander.Process.Pid) {
		t.Errorf("a process that does not run %s was killed", exe)
	}
}

// alive says whether pid runs (a zombie does not).
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(b), ')')
	return i > 0 && !strings.HasPrefix(string(b[i+1:]), " Z") && !strings.HasPrefix(string(b[i+1:]), " X")
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestMountsBelowDeepestFirst(t *testing.T) {
	info := `22 1 0:21 / / rw - overlay overlay rw
30 22 0:40 / /var/lib/kubelet rw - ext4 /dev/vdb rw
31 30 0:41 / /var/lib/kubelet/pods/uid/volumes/kubernetes.io~projected/token rw - tmpfs tmpfs rw
32 22 0:42 / /var/lib/kubeletx rw - tmpfs tmpfs rw
33 22 0:43 / /run/containerd/io.containerd.runtime.v2.task/k8s.io/abc/rootfs rw - overlay overlay rw
34 30 0:44 / /var/lib/kubelet/with\040space rw - tmpfs tmpfs rw
35 30 0:41 / /var/lib/kubelet/pods/uid/volumes/kubernetes.io~projected/token rw - tmpfs tmpfs rw
`
	got, err := mountsBelow(bufio.NewScanner(strings.NewReader(info)), "/var/lib/kubelet/")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"/var/lib/kubelet/pods/uid/volumes/kubernetes.io~projected/token", "/var/lib/kubelet/with space", "/var/lib/kubelet"}
	if !slices.Equal(got, want) {
		t.Errorf("mountsBelow = %q, want %q", got, want)
	}
}

type recordingMounts struct {
	below     []string
	unmounted []string
}

func (m *recordingMounts) Below(string) ([]string, error) { return m.below, nil }
func (m *recordingMounts) Unmount(target string) error {
	m.unmounted = append(m.unmounted, target)
	return nil
}

// TestRemoveStateDirKeepsAMountPoint: a state dir that is itself a mount point (a volume) is
// emptied, not removed; the mounts below it are undone first.
func TestRemoveStateDirKeepsAMountPoint(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "var/lib/kubelet")
	if err := os.MkdirAll(filepath.Join(dir, "pods/uid"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "pods/uid/f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	m := &recordingMounts{below: []string{filepath.Join(dir, "pods/uid"), dir}}
	a := &Applier{Root: root, StateDir: t.TempDir(), Mounts: m}
	a.init()
	r := &run{Applier: a}
	if err := r.removeStateDir("/var/lib/kubelet"); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(m.unmounted, []string{filepath.Join(dir, "pods/uid")}) {
		t.Errorf("unmounted %q, want only the mount below the state dir", m.unmounted)
	}
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) != 0 {
		t.Errorf("state dir after removal: %v entries, %v; want it kept and empty", len(entries), err)
	}
	// Not a mount point: removed whole.
	m.below = nil
	if err := r.removeStateDir("/var/lib/kubelet"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("state dir still there: %v", err)
	}
}
