package host_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	cryptossh "golang.org/x/crypto/ssh"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/basalt-dev/basalt/agents/protocol"
	agentssh "github.com/basalt-dev/basalt/agents/ssh"
	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
	"github.com/basalt-dev/basalt/controllers/host"
	"github.com/basalt-dev/basalt/test/envtest"
)

// scriptedInstaller answers every install with the host key it holds and its error (setErr), and
// counts calls.
type scriptedInstaller struct {
	key   cryptossh.PublicKey
	calls atomic.Int32
	mu    sync.Mutex
	err   error
}

func (i *scriptedInstaller) setErr(err error) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.err = err
}

func (i *scriptedInstaller) Install(context.Context, agentssh.InstallInput) (agentssh.InstallResult, error) {
	i.calls.Add(1)
	i.mu.Lock()
	defer i.mu.Unlock()
	return agentssh.InstallResult{HostKey: i.key, Init: agentssh.InitSystemd, BootstrapWritten: true}, i.err
}

type emptyBootstrapper struct{}

func (emptyBootstrapper) Bootstrap(context.Context, *basaltv1.Host) (protocol.Bootstrap, error) {
	return protocol.Bootstrap{}, nil
}

func (emptyBootstrapper) RevokeTokens(context.Context, *basaltv1.Host) error { return nil }

// startSSHController runs the Host controller with an SSH provisioner around in, and creates the
// Secret ssh/id with a usable private key in ns.
func startSSHController(t *testing.T, ns string, in host.AgentInstaller, requirePinned bool, opts ...func(*host.Reconciler)) {
	t.Helper()
	env.CreateSSHKeySecret(t, ns)
	mgr, err := env.NewManager()
	if err != nil {
		t.Fatal(err)
	}
	r := &host.Reconciler{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Recorder: mgr.GetEventRecorder("basalt-host"),
		Provisioner: &host.Provisioner{Installer: in, Bootstrapper: emptyBootstrapper{}, RequirePinnedHostKeys: requirePinned}}
	for _, o := range opts {
		o(r)
	}
	if err := r.SetupWithManager(mgr, envtest.ControllerOptions()); err != nil {
		t.Fatal(err)
	}
	envtest.StartManager(t, mgr)
}

func hostKey(t *testing.T) cryptossh.PublicKey {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, err := cryptossh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestPinnedHostKeysRequired: with --ssh-require-pinned-host-keys an SSH Host without
// spec.ssh.hostKeys is refused (HostKeyNotPinned, saying what to set) and nothing is dialled;
// pinning its key lets the install go on.
func TestPinnedHostKeysRequired(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	key := hostKey(t)
	in := &scriptedInstaller{key: key}
	startSSHController(t, ns, in, true)
	h := sshHost(ns, "tofu")
	if err := env.Client.Create(ctx, h); err != nil {
		t.Fatal(err)
	}
	hostIs(t, h, basaltv1.HostStateRegistering, basaltv1.HostAgentConnected, "False", basaltv1.ReasonHostKeyNotPinned)
	time.Sleep(time.Second)
	if n := in.calls.Load(); n != 0 {
		t.Fatalf("a Host without pinned keys was dialled %d times", n)
	}
	got := &basaltv1.Host{}
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(h), got); err != nil {
		t.Fatal(err)
	}
	got.Spec.SSH.HostKeys = []string{agentssh.MarshalHostKey(key)}
	if err := env.Client.Update(ctx, got); err != nil {
		t.Fatal(err)
	}
	hostIs(t, h, basaltv1.HostStateRegistering, basaltv1.HostAgentConnected, "False", basaltv1.ReasonWaitingForAgent)
	if in.calls.Load() == 0 {
		t.Fatal("the pinned Host was not installed")
	}
}

// TestFailedInstallTrustsNoHostKey: trust on first use records the key a host presented only
// when the install through it succeeded.
func TestFailedInstallTrustsNoHostKey(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	key := hostKey(t)
	in := &scriptedInstaller{key: key}
	in.setErr(errors.New("sudo: a password is required"))
	startSSHController(t, ns, in, false)
	h := sshHost(ns, "fails")
	if err := env.Client.Create(ctx, h); err != nil {
		t.Fatal(err)
	}
	hostIs(t, h, basaltv1.HostStateRegistering, basaltv1.HostAgentConnected, "False", basaltv1.ReasonInstallFailed)
	got := &basaltv1.Host{}
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(h), got); err != nil {
		t.Fatal(err)
	}
	if got.Status.SSHHostKey != "" {
		t.Fatalf("a failed install recorded host key %q", got.Status.SSHHostKey)
	}
	// The install works now (the operator fixed sudo): the key is recorded with it. The
	// controller retries after its backoff; a spec change brings it back at once.
	in.setErr(nil)
	got.Labels = map[string]string{"retry": "now"}
	if err := env.Client.Update(ctx, got); err != nil {
		t.Fatal(err)
	}
	envtest.Eventually(t, wait, func() error {
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(h), got); err != nil {
			return err
		}
		if want := agentssh.MarshalHostKey(key); got.Status.SSHHostKey != want {
			return fmt.Errorf("status.sshHostKey %q, want %q", got.Status.SSHHostKey, want)
		}
		return nil
	})
}

// TestSilentAgentIsInstalledAgain: the registered agent of an SSH Host that has been silent for
// ReviveSilentAfter is installed again (which starts a stopped agent and registers again one
// whose certificate expired); a reporting agent is left alone. (Installs are counted by their
// ReviveAgent events: a reconcile of the Registering Host that a lagging cache still shows may
// install once more after the registration, which is not a revival.)
func TestSilentAgentIsInstalledAgain(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	in := &scriptedInstaller{key: hostKey(t)}
	startSSHController(t, ns, in, false, func(r *host.Reconciler) {
		r.ReviveSilentAfter = 2 * time.Second
		r.Provisioner.RegisterTimeout = time.Second
	})
	h := sshHost(ns, "revive")
	if err := env.Client.Create(ctx, h); err != nil {
		t.Fatal(err)
	}
	hostIs(t, h, basaltv1.HostStateRegistering, basaltv1.HostAgentConnected, "False", basaltv1.ReasonWaitingForAgent)
	// Registered, reporting.
	got := &basaltv1.Host{}
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(h), got); err != nil {
		t.Fatal(err)
	}
	env.UpdateHostStatus(t, got, func(h *basaltv1.Host) {
		now := metav1.Now()
		h.Status.Agent.LastSeen = &now
	})
	time.Sleep(4 * time.Second) // twice ReviveSilentAfter
	if ev, err := hostEvents(ctx, h, "ReviveAgent"); err != nil || len(ev) != 0 {
		t.Fatalf("a reporting agent was installed again: %v %v", ev, err)
	}
	// Silent for an hour: installed again.
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(h), got); err != nil {
		t.Fatal(err)
	}
	installs := in.calls.Load()
	env.UpdateHostStatus(t, got, func(h *basaltv1.Host) {
		old := metav1.NewTime(time.Now().Add(-time.Hour))
		h.Status.Agent.LastSeen = &old
	})
	envtest.Eventually(t, wait, func() error {
		ev, err := hostEvents(ctx, h, "ReviveAgent")
		if err != nil {
			return err
		}
		if len(ev) == 0 || in.calls.Load() <= installs {
			return fmt.Errorf("no ReviveAgent event (%v) or no install (%d, %d before)", ev, in.calls.Load(), installs)
		}
		return nil
	})
}
