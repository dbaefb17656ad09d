// Package framework runs Basalt's manager for the end-to-end suites: a real kube-apiserver and
// etcd (test/envtest), Basalt's controllers and agent API wired by controllers/setup exactly as
// cmd/manager wires them, listening where the test bed's hosts reach them.
package framework

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/basalt-dev/basalt/controllers/setup"
	"github.com/basalt-dev/basalt/test/e2e/bed"
	"github.com/basalt-dev/basalt/test/envtest"
)

// ManagerNamespace is where the manager keeps its agent API CAs and bootstrap tokens.
const ManagerNamespace = "basalt-system"

// Management is a running management plane.
type Management struct {
	// Env is the API server; Env.Client asserts on it.
	Env *envtest.Env
	// Parts are the manager's agent API and artifact cache.
	Parts *setup.Parts
	// AgentAPI is the address hosts reach the agent API at.
	AgentAPI string
}

// StartManagementInput configures StartManagement.
type StartManagementInput struct {
	// Bed is the test bed whose hosts the manager provisions; the agent API listens on its gateway.
	Bed *bed.Bed
	// ArtifactSets are the artifact-set folders the artifact cache serves from.
	ArtifactSets []string
}

// StartManagement starts an API server and a manager with every controller, the agent API and SSH
// provisioning, until the test ends.
func StartManagement(t *testing.T, in StartManagementInput) *Management {
	t.Helper()
	env, err := envtest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ManagerNamespace}}
	if err := env.Client.Create(context.Background(), ns); err != nil {
		t.Fatal(err)
	}
	port, err := freePort(in.Bed.Gateway)
	if err != nil {
		t.Fatalf("finding a free port on the bed's gateway %s: %v", in.Bed.Gateway, err)
	}
	mgr, err := env.NewManager()
	if err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort(in.Bed.Gateway, strconv.Itoa(port))
	parts, err := setup.Setup(mgr, setup.Options{
		Namespace:          ManagerNamespace,
		AgentAPIAddr:       addr,
		AgentAPIAddresses:  []string{in.Bed.Gateway},
		AgentBinary:        AgentBinary(t),
		ArtifactSets:       in.ArtifactSets,
		CacheDir:           t.TempDir(),
		SkipNameValidation: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	envtest.StartManager(t, mgr)
	return &Management{Env: env, Parts: parts, AgentAPI: addr}
}

// SSHKeySecretInput describes the Secret holding the key Basalt logs in to hosts with.
type SSHKeySecretInput struct {
	Namespace, Name string
	PrivateKey      []byte
}

// CreateSSHKeySecret stores the bed's client key as a Host's privateKeySecretRef expects it (key
// "id_ed25519").
func (m *Management) CreateSSHKeySecret(t *testing.T, in SSHKeySecretInput) {
	t.Helper()
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: in.Namespace, Name: in.Name}, Data: map[string][]byte{"id_ed25519": in.PrivateKey}}
	if err := m.Env.Client.Create(context.Background(), s); err != nil {
		t.Fatal(err)
	}
}

var (
	agentOnce sync.Once
	agentPath string
	agentErr  error
)

// AgentBinary builds cmd/agent once per test binary, statically, and returns its path.
func AgentBinary(t *testing.T) string {
	t.Helper()
	agentOnce.Do(func() {
		dir, err := os.MkdirTemp("", "basalt-agent-")
		if err != nil {
			agentErr = err
			return
		}
		agentPath = filepath.Join(dir, "basalt-agent")
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w -X main.version=e2e", "-o", agentPath, "./cmd/agent")
		cmd.Dir = envtest.RepoRoot()
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			agentErr = fmt.Errorf("building cmd/agent: %w\n%s", err, out)
		}
	})
	if agentErr != nil {
		t.Fatal(agentErr)
	}
	return agentPath
}

// Eventually polls check until it returns nil or timeout passes; see envtest.Eventually.
func Eventually(t *testing.T, timeout time.Duration, check func() error) {
	t.Helper()
	envtest.Eventually(t, timeout, check)
}

func freePort(host string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, err
	}
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// ObjectKey is a shorthand for tests.
func ObjectKey(ns, name string) client.ObjectKey { return client.ObjectKey{Namespace: ns, Name: name} }
