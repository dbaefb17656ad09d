package apply

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strings"
	"syscall"
)

// ProcessKiller kills the process trees services leave behind.
type ProcessKiller interface {
	// KillTrees sends SIGKILL to every process running one of the executables (absolute paths),
	// and to all their descendants, children first; it returns how many it killed.
	KillTrees(exes []string) (int, error)
}

// Unmounter lists and undoes mounts.
type Unmounter interface {
	// Below returns the mount points at or below dir, deepest first.
	Below(dir string) ([]string, error)
	// Unmount detaches the mount at target (lazily: a busy mount goes when its last user does).
	Unmount(target string) error
}

// removeStateDir removes a service's state dir: first the mounts below it (pod volumes, container
// root filesystems, sandbox shm), then its contents. A state dir that is itself a mount point (a
// volume the host owns) is left empty instead of removed.
func (r *run) removeStateDir(p string) error {
	dir := r.path(p)
	mounts, err := r.Mounts.Below(dir)
	if err != nil {
		return fmt.Errorf("listing mounts below %s: %w", dir, err)
	}
	var errs []error
	self := false
	for _, m := range mounts {
		if m == dir {
			self = true
			continue
		}
		if err := r.Mounts.Unmount(m); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("unmounting %s: %w", m, err))
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	if !self {
		return r.removePath(p)
	}
	entries, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	for _, e := range entries {
		if err := os.RemoveAll(dir + "/" + e.Name()); err != nil {
			return err
		}
	}
	return nil
}

// hostProcesses reads /proc.
type hostProcesses struct{}

func (hostProcesses) KillTrees(exes []string) (int, error) {
	procs, err := readProcs("/proc")
	if err != nil {
		return 0, err
	}
	return killTrees(procs, exes, func(pid int) error { return syscall.Kill(pid, syscall.SIGKILL) })
}

// proc is one process: its parent and the path of its executable.
type proc struct {
	pid, ppid int
	exe       string
}

// readProcs lists the processes under root (a procfs mount).
func readProcs(root string) ([]proc, error) {
	entries, err := os.ReadDir(root)
	if err != nil {
		return nil, err
	}
	var out []proc
	for _, e := range entries {
		var pid int
		if _, err := fmt.Sscanf(e.Name(), "%d", &pid); err != nil || fmt.Sprint(pid) != e.Name() {
			continue
		}
		stat, err := os.ReadFile(root + "/" + e.Name() + "/stat")
		if err != nil {
			continue // gone meanwhile
		}
		// The command name is in parentheses and may hold spaces and parentheses: the fields
		// after the last ')' are fixed.
		i := strings.LastIndexByte(string(stat), ')')
		if i < 0 {
			continue
		}
		var state string
		var ppid int
		if _, err := fmt.Sscanf(string(stat[i+1:]), " %s %d", &state, &ppid); err != nil {
			continue
		}
		exe, _ := os.Readlink(root + "/" + e.Name() + "/exe")
		exe = strings.TrimSuffix(exe, " (deleted)")
		out = append(out, proc{pid: pid, ppid: ppid, exe: exe})
	}
	return out, nil
}

// killTrees kills the processes running one of exes and their descendants, deepest first. It is
// a pure function of procs apart from kill, so it is tested on a made-up process table.
func killTrees(procs []proc, exes []string, kill func(pid int) error) (int, error) {
	children := map[int][]int{}
	for _, p := range procs {
		children[p.ppid] = append(children[p.ppid], p.pid)
	}
	var order []int
	seen := map[int]bool{}
	var walk func(pid int)
	walk = func(pid int) {
		if seen[pid] {
			return
		}
		seen[pid] = true
		for _, c := range children[pid] {
			walk(c)
		}
		order = append(order, pid) // after its descendants
	}
	for _, p := range procs {
		if p.exe != "" && slices.Contains(exes, p.exe) && p.pid != os.Getpid() && p.pid > 1 {
			walk(p.pid)
		}
	}
	var errs []error
	n := 0
	for _, pid := range order {
		if pid == os.Getpid() || pid <= 1 {
			continue
		}
		if err := kill(pid); err != nil && !errors.Is(err, syscall.ESRCH) {
			errs = append(errs, fmt.Errorf("killing process %d: %w", pid, err))
			continue
		}
		n++
	}
	return n, errors.Join(errs...)
}
