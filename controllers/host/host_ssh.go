package host

import (
	"context"
	"errors"
	"fmt"
	"time"

	cryptossh "golang.org/x/crypto/ssh"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/basalt-dev/basalt/agents/protocol"
	agentssh "github.com/basalt-dev/basalt/agents/ssh"
	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
)

// AgentInstaller puts the node agent onto a host over SSH. *agentssh.Installer satisfies it.
type AgentInstaller interface {
	Install(ctx context.Context, in agentssh.InstallInput) (agentssh.InstallResult, error)
}

// Bootstrapper issues what a new agent needs to register: the agent API's URL, the CA to pin and a
// one-time token. *api.Server satisfies it.
type Bootstrapper interface {
	Bootstrap(ctx context.Context, host *basaltv1.Host) (protocol.Bootstrap, error)
	RevokeTokens(ctx context.Context, host *basaltv1.Host) error
}

// Provisioner is what the Host controller needs to bring an agent onto SSH hosts. A nil
// Provisioner leaves SSH Hosts in Registering, saying so.
type Provisioner struct {
	// Installer installs the agent over SSH.
	Installer AgentInstaller
	// Bootstrapper issues bootstrap tokens.
	Bootstrapper Bootstrapper
	// Agent is the agent executable to install.
	Agent agentssh.Binary
	// RegisterTimeout is how long to wait for an installed agent to register before installing
	// again with a fresh token. Default 2 minutes.
	RegisterTimeout time.Duration
	// RequirePinnedHostKeys refuses SSH Hosts without spec.ssh.hostKeys (no trust on first use):
	// their condition says so and nothing is dialled.
	RequirePinnedHostKeys bool
}

// Requeue intervals of SSH provisioning.
const (
	waitForRegistration = 3 * time.Second
	retryInstall        = 30 * time.Second
	retryHostKey        = time.Minute
)

// installAgent brings the agent onto an SSH Host that has none registered yet. It is idempotent:
// the installer uploads and restarts only what changed. A host key that matches neither the
// pinned keys nor the key recorded on first contact stops here, before anything is sent.
func (r *Reconciler) installAgent(ctx context.Context, s *scope) ctrl.Result {
	h := s.host
	p := r.Provisioner
	if p == nil {
		s.installProblem, s.installMessage = basaltv1.ReasonNotImplemented,
			"this manager runs without an agent binary (--agent-binary), so it cannot install agents over SSH"
		return ctrl.Result{}
	}
	timeout := p.RegisterTimeout
	if timeout == 0 {
		timeout = 2 * time.Minute
	}
	if at := h.Status.Agent.InstalledAt; at != nil && time.Since(at.Time) < timeout {
		s.installed = true
		return ctrl.Result{RequeueAfter: waitForRegistration}
	}

	pinned, err := agentssh.ParseHostKeys(h.Spec.SSH.HostKeys)
	if err != nil {
		s.installProblem, s.installMessage = basaltv1.ReasonHostKeyMismatch, "spec.ssh."+err.Error()
		return ctrl.Result{}
	}
	if len(pinned) == 0 && p.RequirePinnedHostKeys {
		s.installProblem, s.installMessage = basaltv1.ReasonHostKeyNotPinned,
			"this manager requires pinned SSH host keys (--ssh-require-pinned-host-keys) and spec.ssh.hostKeys is empty: "+
				"set it to the host's public keys, read on the host itself or from a trusted inventory (ssh-keyscan alone trusts the network)"
		return ctrl.Result{}
	}
	signer, err := r.sshSigner(ctx, h)
	if err != nil {
		s.installProblem, s.installMessage = basaltv1.ReasonSSHKeyInvalid, err.Error()
		return ctrl.Result{RequeueAfter: retryInstall}
	}
	target := agentssh.Target{Address: h.Spec.SSH.Address, Port: int(h.Spec.SSH.Port), User: h.Spec.SSH.User, Signer: signer, PinnedKeys: pinned}
	if len(pinned) == 0 && h.Status.SSHHostKey != "" {
		if target.RecordedKey, err = agentssh.ParseHostKey(h.Status.SSHHostKey); err != nil {
			s.installProblem, s.installMessage = basaltv1.ReasonHostKeyMismatch, "status.sshHostKey: "+err.Error()
			return ctrl.Result{}
		}
	}
	boot, err := p.Bootstrapper.Bootstrap(ctx, h)
	if err != nil {
		s.installProblem, s.installMessage = basaltv1.ReasonInstallFailed, "issuing a bootstrap token: "+err.Error()
		return ctrl.Result{RequeueAfter: retryInstall}
	}
	res, err := p.Installer.Install(ctx, agentssh.InstallInput{Target: target, Agent: p.Agent, Bootstrap: boot})
	var mismatch *agentssh.HostKeyMismatchError
	if err == nil {
		// The install went through with the key the host proved. Record that now (a key seen
		// on first contact only now: a failed install trusts nothing), in a write of its own:
		// the agent may register (and write this Host) before this reconcile's final status
		// patch, which would then conflict and lose what the install established.
		if rerr := r.recordContact(ctx, h, res.HostKey, len(pinned) == 0, err == nil); rerr != nil {
			s.installProblem, s.installMessage = basaltv1.ReasonInstallFailed, rerr.Error()
			return ctrl.Result{RequeueAfter: waitForRegistration}
		}
	}
	switch {
	case errors.As(err, &mismatch):
		s.hostKeyMismatch = mismatch.Error()
		ctrl.LoggerFrom(ctx).Info("Refused SSH host: host key mismatch", "host", klog.KObj(h), "presented", mismatch.Presented, "expected", mismatch.Expected, "reason", basaltv1.ReasonHostKeyMismatch)
		r.Recorder.Eventf(h, nil, corev1.EventTypeWarning, basaltv1.ReasonHostKeyMismatch, "InstallAgent", "%s", mismatch.Error())
		return ctrl.Result{RequeueAfter: retryHostKey}
	case err != nil:
		s.installProblem, s.installMessage = basaltv1.ReasonInstallFailed, err.Error()
		r.Recorder.Eventf(h, nil, corev1.EventTypeWarning, basaltv1.ReasonInstallFailed, "InstallAgent", "Installing the agent over SSH failed: %v", err)
		return ctrl.Result{RequeueAfter: retryInstall}
	}
	s.hostKeyVerified = true
	if !res.BootstrapWritten {
		// The agent had registered already: the new token is not needed.
		if err := p.Bootstrapper.RevokeTokens(ctx, h); err != nil {
			ctrl.LoggerFrom(ctx).Error(err, "Revoking an unused bootstrap token", "host", klog.KObj(h))
		}
	}
	s.installed = true
	ctrl.LoggerFrom(ctx).Info("Installed the agent over SSH", "host", klog.KObj(h), "init", res.Init, "uploaded", res.Uploaded, "reason", "AgentNotRegistered")
	r.Recorder.Eventf(h, nil, corev1.EventTypeNormal, "AgentInstalled", "InstallAgent", "Installed the agent over SSH (%s); waiting for it to register", res.Init)
	return ctrl.Result{RequeueAfter: waitForRegistration}
}

// sshSigner reads the Host's SSH private key from its Secret (uncached: Secrets are not watched).
func (r *Reconciler) sshSigner(ctx context.Context, h *basaltv1.Host) (cryptossh.Signer, error) {
	ref := h.Spec.SSH.PrivateKeySecretRef
	sec := &corev1.Secret{}
	if err := r.APIReader.Get(ctx, client.ObjectKey{Namespace: h.Namespace, Name: ref.Name}, sec); err != nil {
		return nil, fmt.Errorf("reading Secret %s (spec.ssh.privateKeySecretRef): %w", ref.Name, err)
	}
	data, ok := sec.Data[ref.Key]
	if !ok {
		return nil, fmt.Errorf("secret %s has no key %q (spec.ssh.privateKeySecretRef.key)", ref.Name, ref.Key)
	}
	signer, err := agentssh.SignerFromSecretData(data)
	if err != nil {
		return nil, fmt.Errorf("secret %s key %q: %w", ref.Name, ref.Key, err)
	}
	return signer, nil
}

// recordContact writes what an SSH contact established straight to the Host, retrying on
// conflict: the host key seen on first contact (trust on first use; enforced from then on), and,
// when the agent was installed, the install time. h is updated to match.
func (r *Reconciler) recordContact(ctx context.Context, h *basaltv1.Host, key cryptossh.PublicKey, tofu, installed bool) error {
	now := metav1.Now()
	mutate := func(o *basaltv1.Host) {
		if tofu && key != nil && o.Status.SSHHostKey == "" {
			o.Status.SSHHostKey = agentssh.MarshalHostKey(key)
		}
		if installed {
			o.Status.Agent.InstalledAt = &now
		}
	}
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		fresh := &basaltv1.Host{}
		if err := r.APIReader.Get(ctx, client.ObjectKeyFromObject(h), fresh); err != nil {
			return err
		}
		mutate(fresh)
		return r.Client.Status().Update(ctx, fresh)
	})
	if err != nil {
		return fmt.Errorf("recording the SSH contact: %w", err)
	}
	mutate(h)
	return nil
}

// reviveSilentAgent installs the agent of an SSH Host again once its registered agent has been
// silent for ReviveSilentAfter, at most once per ReviveSilentAfter. The install is idempotent:
// it starts an agent that is not running, and writes a new bootstrap token for one whose
// certificate expired or is unreadable (it was off past its renewal), which then registers
// again with a new key. A host that cannot be reached fails the install (an event) and is
// tried again later.
func (r *Reconciler) reviveSilentAgent(ctx context.Context, s *scope) ctrl.Result {
	h := s.host
	last := h.Status.Agent.LastSeen
	if r.Provisioner == nil || h.Spec.SSH == nil || last == nil || agentConnected(s) {
		r.revivedAt.Delete(h.UID)
		return ctrl.Result{}
	}
	after := r.ReviveSilentAfter
	if after <= 0 {
		after = 5 * time.Minute
	}
	if wait := after - time.Since(last.Time); wait > 0 {
		return ctrl.Result{RequeueAfter: wait}
	}
	if v, ok := r.revivedAt.Load(h.UID); ok {
		if wait := after - time.Since(v.(time.Time)); wait > 0 {
			return ctrl.Result{RequeueAfter: wait}
		}
	}
	r.revivedAt.Store(h.UID, time.Now())
	ctrl.LoggerFrom(ctx).Info("Installing the agent again", "host", klog.KObj(h), "reason", basaltv1.ReasonAgentSilent, "lastSeen", last.UTC().Format(time.RFC3339))
	r.Recorder.Eventf(h, nil, corev1.EventTypeNormal, "ReviveAgent", "InstallAgent", "The agent has been silent since %s: installing it again over SSH", last.UTC().Format(time.RFC3339))
	r.installAgent(ctx, s)
	return ctrl.Result{RequeueAfter: after}
}
