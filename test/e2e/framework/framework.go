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
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
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
	// Parts are the manager's agent API and artifact cache (nil when the manager runs as a
	// process).
	Parts *setup.Parts
	// Process is the manager's process when StartManagementProcess started it.
	Process *ManagerProcess
	// AgentAPI is the address hosts reach the agent API at.
	AgentAPI string
	// Stop stops the manager (controllers, agent API, PXE services); the API server keeps
	// running. The test's end stops it too.
	Stop func()
}

// StartManagementInput configures StartManagement.
type StartManagementInput struct {
	// Bed is the test bed whose hosts the manager provisions; the agent API listens on its gateway.
	Bed *bed.Bed
	// Address is where the agent API listens when there is no Bed (e.g. a PXE network's server
	// address).
	Address string
	// PXE, when set, runs the manager's PXE services with these options.
	PXE *setup.PXEOptions
	// ArtifactSets are the artifact-set folders the artifact cache serves from.
	ArtifactSets []string
	// AgentCertValidity is the validity of agent certificates; default the manager's (a year).
	AgentCertValidity time.Duration
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
	gateway := in.Address
	if in.Bed != nil {
		gateway = in.Bed.Gateway
	}
	port, err := freePort(gateway)
	if err != nil {
		t.Fatalf("finding a free port on %s: %v", gateway, err)
	}
	mgr, err := env.NewManager()
	if err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort(gateway, strconv.Itoa(port))
	parts, err := setup.Setup(mgr, setup.Options{
		Namespace:          ManagerNamespace,
		AgentAPIAddr:       addr,
		AgentAPIAddresses:  []string{gateway},
		AgentBinary:        AgentBinary(t),
		AgentCertValidity:  in.AgentCertValidity,
		ArtifactSets:       in.ArtifactSets,
		CacheDir:           t.TempDir(),
		PXE:                in.PXE,
		SkipNameValidation: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	stop := envtest.StartManager(t, mgr)
	return &Management{Env: env, Parts: parts, AgentAPI: addr, Stop: stop}
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

// AgentBinary builds cmd/agent once per test binary, statically, and returns its path.
func AgentBinary(t *testing.T) string {
	t.Helper()
	return binary(t, "basalt-agent", "./cmd/agent")
}

// ManagerBinary builds cmd/manager once per test binary and returns its path.
func ManagerBinary(t *testing.T) string {
	t.Helper()
	return binary(t, "basalt-manager", "./cmd/manager")
}

type built struct {
	once sync.Once
	path string
	err  error
}

var binaries sync.Map // package → *built

// binary builds pkg once per test binary, statically, as name, and returns its path.
func binary(t *testing.T, name, pkg string) string {
	t.Helper()
	v, _ := binaries.LoadOrStore(pkg, &built{})
	b := v.(*built)
	b.once.Do(func() {
		dir, err := os.MkdirTemp("", name+"-")
		if err != nil {
			b.err = err
			return
		}
		b.path = filepath.Join(dir, name)
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w -X main.version=e2e", "-o", b.path, pkg)
		cmd.Dir = envtest.RepoRoot()
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			b.err = fmt.Errorf("building %s: %w\n%s", pkg, err, out)
		}
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
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

// NewBed starts a test bed and removes it when the test ends.
func NewBed(ctx context.Context, t *testing.T, opts bed.Options) *bed.Bed {
	t.Helper()
	if opts.Logf == nil {
		opts.Logf = t.Logf
	}
	b, err := bed.New(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := b.Close(context.WithoutCancel(ctx)); err != nil {
			t.Errorf("closing the bed: %v", err)
		}
	})
	return b
}

// SSHHostsInput says which Hosts CreateSSHHosts registers.
type SSHHostsInput struct {
	// Namespace of the Hosts and their SSH key Secret.
	Namespace string
	// Bed provides the hosts, their host keys and the client key.
	Bed *bed.Bed
	// TrustOnFirstUse is how many of the last hosts get no pinned host key, so the key seen on
	// first contact is recorded; the others are pinned.
	TrustOnFirstUse int
	// Labels, when set, gives the labels of each host, by index.
	Labels []map[string]string
	// OS, when set, is every Host's spec.os.
	OS *basaltv1.OSFacts
}

// SSHKeySecret is the name of the Secret CreateSSHHosts stores the bed's client key in.
const SSHKeySecret = "ssh"

// CreateSSHHosts stores the bed's client key in a Secret and creates one SSH Host per bed host,
// named like it.
func (m *Management) CreateSSHHosts(ctx context.Context, t *testing.T, in SSHHostsInput) {
	t.Helper()
	m.CreateSSHKeySecret(t, SSHKeySecretInput{Namespace: in.Namespace, Name: SSHKeySecret, PrivateKey: in.Bed.ClientKey.PrivatePEM})
	for i, h := range in.Bed.Hosts {
		host := SSHHost(in.Namespace, h.Name, h.IP)
		if i < len(in.Bed.Hosts)-in.TrustOnFirstUse {
			host.Spec.SSH.HostKeys = []string{AuthorizedKey(h.HostKey)}
		}
		if i < len(in.Labels) {
			host.Labels = in.Labels[i]
		}
		host.Spec.OS = in.OS
		if err := m.Env.Client.Create(ctx, host); err != nil {
			t.Fatal(err)
		}
	}
}

// SSHHost is a Host reached over SSH at ip with the key in SSHKeySecret.
func SSHHost(ns, name, ip string) *basaltv1.Host {
	return &basaltv1.Host{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: basaltv1.HostSpec{SSH: &basaltv1.SSHSpec{
			Address:             ip,
			PrivateKeySecretRef: basaltv1.SecretKeyReference{Name: SSHKeySecret, Key: "id_ed25519"},
		}},
	}
}

// AuthorizedKey is k in authorized_keys format, as spec.ssh.hostKeys holds it.
func AuthorizedKey(k ssh.PublicKey) string {
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k)))
}

// WaitHostsAvailable waits until every named Host is Available with its hardware reported and
// Ready, AgentConnected, HostKeyVerified and Inspected True.
func (m *Management) WaitHostsAvailable(ctx context.Context, t *testing.T, ns string, names []string, timeout time.Duration) {
	t.Helper()
	Eventually(t, timeout, func() error {
		for _, name := range names {
			got := &basaltv1.Host{}
			if err := m.Env.Client.Get(ctx, ObjectKey(ns, name), got); err != nil {
				return err
			}
			if got.Status.State != basaltv1.HostStateAvailable {
				return fmt.Errorf("host %s is %s: %s", name, got.Status.State, ConditionSummary(got.Status.Conditions))
			}
			hw := got.Status.Hardware
			if hw == nil || hw.CPUs < 1 || hw.Memory == nil || hw.Memory.IsZero() || len(hw.NICs) == 0 {
				return fmt.Errorf("host %s hardware %+v", name, hw)
			}
			for _, cond := range []string{basaltv1.ConditionReady, basaltv1.HostAgentConnected, basaltv1.HostKeyVerified, basaltv1.HostInspected} {
				if cc, err := envtest.Condition(got.Status.Conditions, cond); err != nil || cc.Status != metav1.ConditionTrue {
					return fmt.Errorf("host %s %s: %v %w", name, cond, cc, err)
				}
			}
		}
		return nil
	})
}

// ConditionSummary lists the conditions that are not True, for failure messages.
func ConditionSummary(conds []metav1.Condition) string {
	var parts []string
	for _, c := range conds {
		if c.Status != metav1.ConditionTrue {
			parts = append(parts, c.Type+"="+string(c.Status)+"/"+c.Reason+": "+c.Message)
		}
	}
	return strings.Join(parts, "; ")
}

// InNamespace is a shorthand for client.InNamespace.
func InNamespace(ns string) client.InNamespace { return client.InNamespace(ns) }

// WaitForClusterReadyInput says which Cluster WaitForClusterReady waits for.
type WaitForClusterReadyInput struct {
	Namespace, Name string
	// ControlPlanes and Workers are the Ready machine counts the Cluster must report.
	ControlPlanes, Workers int32
	// Timeout bounds the wait.
	Timeout time.Duration
}

// WaitForClusterReady waits until the Cluster is Ready with the wanted counts, logging each new
// reason it is not, and returns how long that took.
func (m *Management) WaitForClusterReady(ctx context.Context, t *testing.T, in WaitForClusterReadyInput) time.Duration {
	t.Helper()
	start, last := time.Now(), ""
	Eventually(t, in.Timeout, func() error {
		got := &basaltv1.Cluster{}
		if err := m.Env.Client.Get(ctx, ObjectKey(in.Namespace, in.Name), got); err != nil {
			return err
		}
		ready, err := envtest.Condition(got.Status.Conditions, basaltv1.ConditionReady)
		if err != nil {
			return err
		}
		if ready.Status != metav1.ConditionTrue {
			if msg := ready.Reason + ": " + ready.Message; msg != last {
				t.Logf("%s: Cluster %s %s", time.Since(start).Round(time.Second), in.Name, msg)
				last = msg
			}
			return fmt.Errorf("cluster %s: Ready=%s %s: %s", in.Name, ready.Status, ready.Reason, ready.Message)
		}
		if got.Status.ControlPlane.Ready != in.ControlPlanes || got.Status.Workers.Ready != in.Workers {
			return fmt.Errorf("cluster %s: control plane %+v workers %+v", in.Name, got.Status.ControlPlane, got.Status.Workers)
		}
		return nil
	})
	return time.Since(start)
}

// WorkloadClient returns a client for the workload cluster from the kubeconfig Secret Basalt
// wrote for it, and the REST config it uses.
func (m *Management) WorkloadClient(ctx context.Context, t *testing.T, ns, cluster string) (*kubernetes.Clientset, *rest.Config) {
	t.Helper()
	kc := &corev1.Secret{}
	if err := m.Env.Client.Get(ctx, ObjectKey(ns, cluster+"-kubeconfig"), kc); err != nil {
		t.Fatal(err)
	}
	rc, err := clientcmd.RESTConfigFromKubeConfig(kc.Data["value"])
	if err != nil {
		t.Fatal(err)
	}
	rc.Timeout = 10 * time.Second
	return kubernetes.NewForConfigOrDie(rc), rc
}
