package framework

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/basalt-dev/basalt/test/envtest"
)

// ManagerProcess is Basalt's manager run from its binary (cmd/manager), with leader election as
// the Helm chart runs it, against a Management's API server: a test kills it like a crashing pod
// (SIGKILL, nothing released) and starts it again like the kubelet would.
type ManagerProcess struct {
	bin  string
	args []string
	env  []string
	// Log is the file every run of the process appends its output to.
	Log string

	mu     sync.Mutex
	cmd    *exec.Cmd
	done   chan struct{}
	starts int
	exits  int
	closed bool
}

// StartManagementProcess starts an API server and the manager binary with every controller, the
// agent API and SSH provisioning (no PXE), until the test ends. The returned Management's Process
// kills and restarts the manager; Parts is nil. The artifact cache, agent API CAs and tokens
// survive restarts, as they do in a pod (a volume, Secrets).
func StartManagementProcess(t *testing.T, in StartManagementInput) *Management {
	t.Helper()
	env, err := envtest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	if err := env.Client.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ManagerNamespace}}); err != nil {
		t.Fatal(err)
	}
	gateway := in.Address
	if in.Bed != nil {
		gateway = in.Bed.Gateway
	}
	port, err := freePort(gateway)
	if err != nil {
		t.Fatalf("finding a free port on %s: %v", gateway, err)
	}
	dir := t.TempDir()
	kc, err := env.AdminKubeconfig("basalt-manager")
	if err != nil {
		t.Fatal(err)
	}
	kcPath := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kcPath, kc, 0o600); err != nil {
		t.Fatal(err)
	}
	// The log outlives the test's folders, so a failure can be read afterwards.
	logFile, err := os.CreateTemp("", "basalt-manager-"+strings.ReplaceAll(t.Name(), "/", "_")+"-*.log")
	if err != nil {
		t.Fatal(err)
	}
	_ = logFile.Close()
	addr := net.JoinHostPort(gateway, strconv.Itoa(port))
	p := &ManagerProcess{
		bin: ManagerBinary(t),
		args: []string{
			"--kubeconfig=" + kcPath,
			"--metrics-bind-address=0",
			"--health-probe-bind-address=0",
			"--leader-elect=true",
			"--leader-election-namespace=" + ManagerNamespace,
			"--namespace=" + ManagerNamespace,
			"--agent-api-bind-address=" + addr,
			"--agent-api-addresses=" + gateway,
			"--agent-binary=" + AgentBinary(t),
			"--artifact-sets=" + strings.Join(in.ArtifactSets, ","),
			"--artifact-cache-dir=" + filepath.Join(dir, "cache"),
			"--zap-log-level=info",
		},
		env: os.Environ(),
		Log: logFile.Name(),
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	t.Logf("manager process log: %s", p.Log)
	t.Cleanup(p.Close)
	return &Management{Env: env, Process: p, AgentAPI: addr, Stop: p.Close}
}

// Start starts the manager; it fails if it already runs.
func (p *ManagerProcess) Start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return fmt.Errorf("the manager was closed")
	}
	if p.cmd != nil {
		return fmt.Errorf("the manager already runs (pid %d)", p.cmd.Process.Pid)
	}
	out, err := os.OpenFile(p.Log, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	p.starts++
	_, _ = fmt.Fprintf(out, "==== start %d at %s\n", p.starts, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(p.bin, p.args...)
	cmd.Env = p.env
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		_ = out.Close()
		return err
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		_ = out.Close()
		close(done)
		// Ended by itself (Kill forgets the command first): started again after a pause, as the
		// kubelet restarts a pod's container that exits (e.g. on losing its leader lease).
		p.mu.Lock()
		self := p.cmd == cmd
		if self {
			p.exits++
			p.cmd = nil
		}
		p.mu.Unlock()
		if self {
			time.Sleep(2 * time.Second)
			_ = p.Start()
		}
	}()
	p.cmd, p.done = cmd, done
	return nil
}

// Kill sends SIGKILL to the manager and waits until it is gone; it does nothing if it does not
// run.
func (p *ManagerProcess) Kill() error {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.cmd = nil
	p.mu.Unlock()
	if cmd == nil {
		return nil
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil && !strings.Contains(err.Error(), "process already finished") {
		return err
	}
	<-done
	return nil
}

// Close kills the manager for good: it is not started again.
func (p *ManagerProcess) Close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	_ = p.Kill()
}

// Exits is how many times the manager ended by itself (and was started again).
func (p *ManagerProcess) Exits() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.exits
}

// Starts is how many times the manager was started.
func (p *ManagerProcess) Starts() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.starts
}

// LogLines returns the log's lines that contain any of the words, at most limit of them.
func (p *ManagerProcess) LogLines(limit int, words ...string) ([]string, error) {
	f, err := os.Open(p.Log)
	if err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() && len(out) < limit {
		for _, w := range words {
			if strings.Contains(sc.Text(), w) {
				out = append(out, sc.Text())
				break
			}
		}
	}
	return out, sc.Err()
}

// Leads is how many times a run of the manager took the leader lease, read from the log.
func (p *ManagerProcess) Leads() (int, error) {
	lines, err := p.LogLines(1<<20, `"msg":"Successfully acquired lease"`)
	return len(lines), err
}
