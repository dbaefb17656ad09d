// Package service runs the long-running processes of a Plan (etcd, kube-apiserver, containerd,
// kubelet, ...) behind one interface, Runtime, with two implementations:
//
//   - Systemd, where systemd is PID 1 (real hosts and the systemd containers of the test bed):
//     one unit /etc/systemd/system/basalt-<name>.service per service, driven with systemctl
//     through an injected Runner;
//   - Supervisor, the agent's own process supervisor where there is no systemd (initramfs,
//     plain containers): process groups, restart with capped exponential backoff, size-rotated
//     logs in /var/log/basalt, SIGTERM then SIGKILL, and adoption of the processes a previous
//     agent process started.
//
// Both record the hash a service was started with only once the (re)start succeeded, so an
// agent killed at any point restarts, on its next Ensure, exactly the services that do not yet
// run their current definition, and never starts a second copy of one that does.
package service

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"github.com/basalt-dev/basalt/bootstrap/atomicfile"
	"github.com/basalt-dev/basalt/bootstrap/plan"
)

// Runtime runs services. Implementations are safe for use by one caller at a time for Ensure and
// Stop; Status and Installed may be called concurrently with them.
type Runtime interface {
	// Ensure makes the service run the definition svc, identified by hash (Plan.ServiceHash).
	// A service already running hash is left alone and Ensure returns false; a service running
	// another definition is restarted, and one not running is started (true). The hash is
	// recorded only after the (re)start succeeded. May be called again after a crash.
	Ensure(ctx context.Context, svc plan.Service, hash string) (changed bool, err error)
	// Stop stops the service and forgets it. Stopping a service the runtime does not know is
	// not an error.
	Stop(ctx context.Context, name string) error
	// Status reports what the runtime knows of one service; a service it does not know has a
	// zero State.
	Status(ctx context.Context, name string) (State, error)
	// Installed lists every service the runtime manages, including those a crash left behind,
	// so that services no longer in the Plan can be stopped.
	Installed(ctx context.Context) ([]Installed, error)
}

// State is a runtime's view of one service.
type State struct {
	// Hash is the service hash the running definition was started with; empty when unknown
	// (never started, or a crash happened between writing and starting the definition).
	Hash string
	// Active is true while the service's process runs.
	Active bool
	// PID of the main process, when known.
	PID int
	// Message says more, e.g. "restarting in 4s after exit status 1".
	Message string
}

// Installed is one service a runtime manages.
type Installed struct {
	Name string
	// Hash it was last started with; empty when unknown.
	Hash string
	// After are the services it was started after; it is stopped before them.
	After []string
}

// Runner runs a command and returns its combined output. It is how the systemd runtime (and the
// agent's route and image steps) reach the OS, so tests can inject a fake.
type Runner interface {
	Run(ctx context.Context, name string, args ...string) ([]byte, error)
}

// ExecRunner runs commands with os/exec.
type ExecRunner struct{}

// Run runs name with args and returns the combined output; a non-zero exit is an error that
// carries the output.
func (ExecRunner) Run(ctx context.Context, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	err := cmd.Run()
	if err != nil {
		return out.Bytes(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return out.Bytes(), nil
}

// ReservedName is the service name a Plan may not use: basalt-agent.service is the agent's own
// unit.
const ReservedName = "agent"

// writeFileAtomic writes data to path through a temporary file in the same folder, fsynced and
// renamed into place, then fsyncs the folder: after a crash the path holds the old or the new
// bytes, never a mix.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	return atomicfile.WriteFrom(path, mode, atomicfile.Options{DirMode: 0o700, TempPattern: "." + filepath.Base(path) + ".basalt-tmp-*"},
		atomicfile.Content(data))
}

// Environ returns the environment of a service's process: a default PATH (unless the service
// sets one) and the service's Env, in a stable order.
func Environ(svc plan.Service) []string {
	env := []string{}
	if _, ok := svc.Env["PATH"]; !ok {
		env = append(env, "PATH="+DefaultPath)
	}
	for _, k := range sortedKeys(svc.Env) {
		env = append(env, k+"="+svc.Env[k])
	}
	return env
}

// DefaultPath is the PATH of a service that does not set one.
const DefaultPath = "/opt/basalt/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

func sortedKeys(m map[string]string) []string { return slices.Sorted(maps.Keys(m)) }

// validEnvName says whether k can be an environment variable name.
func validEnvName(k string) bool {
	if k == "" {
		return false
	}
	for i, c := range k {
		switch {
		case c == '_', c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z':
		case c >= '0' && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// checkService rejects what neither runtime can run.
func checkService(svc plan.Service) error {
	if svc.Name == ReservedName {
		return fmt.Errorf("service %q: the name is reserved for the agent itself", svc.Name)
	}
	if len(svc.Argv) == 0 || !filepath.IsAbs(svc.Argv[0]) {
		return fmt.Errorf("service %q: argv[0] must be an absolute path", svc.Name)
	}
	for k, v := range svc.Env {
		if !validEnvName(k) {
			return fmt.Errorf("service %q: env name %q is not a valid variable name", svc.Name, k)
		}
		if strings.ContainsRune(v, 0) {
			return fmt.Errorf("service %q: env %s contains a NUL byte", svc.Name, k)
		}
	}
	for i, a := range svc.Argv {
		if strings.ContainsRune(a, 0) {
			return fmt.Errorf("service %q: argv[%d] contains a NUL byte", svc.Name, i)
		}
	}
	return nil
}
