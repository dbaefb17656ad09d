package bed

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// Labels on everything a run creates.
const (
	// LabelRun carries the run ID; every container, network and volume of a run has it.
	LabelRun = "basalt.dev/testbed"
	// LabelLease names the lease file the run's process holds locked while it lives.
	LabelLease = "basalt.dev/testbed-lease"
	// LabelHost names the host a container or volume belongs to.
	LabelHost = "basalt.dev/testbed-host"
	// LabelOwner records which process made the run (pid@hostname), for people reading docker ps.
	LabelOwner = "basalt.dev/testbed-owner"
)

// CacheDir is the cache root the bed and the hack/ scripts share: $BASALT_CACHE, by default
// $HOME/.cache/basalt.
func CacheDir() string {
	if d := os.Getenv("BASALT_CACHE"); d != "" {
		return d
	}
	home, err := os.UserHomeDir()
	if err != nil {
		home = os.TempDir()
	}
	return filepath.Join(home, ".cache", "basalt")
}

// lease is a file a live run keeps locked with flock: the kernel drops the lock when the process
// dies however it dies, which is how New tells a crashed run's leftovers from a live run's hosts.
type lease struct {
	path string
	f    *os.File
}

func acquireLease(runID string) (*lease, error) {
	dir := filepath.Join(CacheDir(), "testbed", "runs")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	p := filepath.Join(dir, runID+".lock")
	f, err := os.OpenFile(p, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", p, err)
	}
	// The pid is for people; the lock is what counts.
	if err := f.Truncate(0); err == nil {
		_, _ = fmt.Fprintf(f, "%d\n", os.Getpid())
	}
	return &lease{path: p, f: f}, nil
}

// persistentLease is the lease label of a Persistent run: no process holds it, and it counts as
// held, so only RemoveRun, Cleanup or hack/testbed-clean.sh remove such a run.
const persistentLease = "persistent"

func (l *lease) release() {
	if l == nil || l.f == nil {
		return
	}
	os.Remove(l.path)
	l.f.Close()
	l.f = nil
}

// leaseHeld reports whether some live process holds the lease file at path.
func leaseHeld(path string) bool {
	if path == persistentLease {
		return true
	}
	if path == "" {
		return false
	}
	f, err := os.Open(path)
	if err != nil {
		return !errors.Is(err, fs.ErrNotExist) // unreadable: assume alive, never remove by guess
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB); err != nil {
		return true
	}
	_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN) // closing the file unlocks it as well
	return false
}

// Resource is one Docker object of a test bed run.
type Resource struct {
	// Kind is "container", "network" or "volume".
	Kind  string
	Name  string
	RunID string
	// Lease is the lease file of the run that made it.
	Lease string
}

func (r Resource) String() string { return r.Kind + " " + r.Name + " (run " + r.RunID + ")" }

// List returns the containers, networks and volumes of run runID, or of every run when runID is
// empty.
func List(ctx context.Context, runID string) ([]Resource, error) {
	filter := "label=" + LabelRun
	if runID != "" {
		filter += "=" + runID
	}
	tail := fmt.Sprintf(`\t{{.Label %q}}\t{{.Label %q}}`, LabelRun, LabelLease)
	var out []Resource
	for _, q := range []struct {
		kind string
		args []string
	}{
		{"container", []string{"ps", "--all", "--filter", filter, "--format", "{{.Names}}" + tail}},
		{"network", []string{"network", "ls", "--filter", filter, "--format", "{{.Name}}" + tail}},
		{"volume", []string{"volume", "ls", "--filter", filter, "--format", "{{.Name}}" + tail}},
	} {
		s, err := docker(ctx, q.args...)
		if err != nil {
			return nil, err
		}
		for _, l := range lines(s) {
			f := strings.Split(l, "\t")
			for len(f) < 3 {
				f = append(f, "")
			}
			out = append(out, Resource{Kind: q.kind, Name: f[0], RunID: f[1], Lease: f[2]})
		}
	}
	return out, nil
}

// remove deletes resources: containers first (with their anonymous volumes), then networks, then
// volumes. Objects already gone are not an error.
func remove(ctx context.Context, rs []Resource) error {
	var errs []error
	for _, kind := range []string{"container", "network", "volume"} {
		var names []string
		for _, r := range rs {
			if r.Kind == kind {
				names = append(names, r.Name)
			}
		}
		if len(names) == 0 {
			continue
		}
		var args []string
		switch kind {
		case "container":
			args = []string{"rm", "--force", "--volumes"}
		case "network":
			args = []string{"network", "rm"}
		case "volume":
			args = []string{"volume", "rm", "--force"}
		}
		for _, n := range names { // one at a time, so one missing object does not hide the others
			if _, err := docker(ctx, append(slices.Clone(args), n)...); err != nil && !isNotFound(err) {
				errs = append(errs, err)
			}
		}
		if kind == "network" {
			for _, r := range rs {
				if r.Kind == kind && r.RunID != "" {
					if err := unisolate(ctx, r.RunID); err != nil {
						errs = append(errs, err)
					}
				}
			}
		}
	}
	return errors.Join(errs...)
}

// Cleanup removes every container, network and volume of every test bed run, live or not. It is
// for after an interrupted run (hack/testbed-clean.sh does the same from a shell); a run still in
// progress loses its hosts.
func Cleanup(ctx context.Context) error {
	rs, err := List(ctx, "")
	if err != nil {
		return err
	}
	if err := remove(ctx, rs); err != nil {
		return err
	}
	for _, r := range rs {
		if r.Lease != "" && r.Lease != persistentLease {
			os.Remove(r.Lease)
		}
	}
	return nil
}

// CleanupDead removes what runs whose process has died left behind, and returns the IDs of those
// runs. Runs of live processes (this one's included) are left alone.
func CleanupDead(ctx context.Context) ([]string, error) {
	rs, err := List(ctx, "")
	if err != nil {
		return nil, err
	}
	alive := map[string]bool{}
	var dead []Resource
	var runs []string
	for _, r := range rs {
		held, seen := alive[r.RunID]
		if !seen {
			held = leaseHeld(r.Lease)
			alive[r.RunID] = held
			if !held {
				runs = append(runs, r.RunID)
			}
		}
		if !held {
			dead = append(dead, r)
		}
	}
	if err := remove(ctx, dead); err != nil {
		return runs, err
	}
	for _, r := range dead {
		if r.Lease != "" && !leaseHeld(r.Lease) {
			os.Remove(r.Lease)
		}
	}
	return runs, nil
}

func ownerLabel() string {
	h, _ := os.Hostname()
	return strconv.Itoa(os.Getpid()) + "@" + h
}
