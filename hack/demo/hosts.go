package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"

	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
	"github.com/basalt-dev/basalt/test/e2e/bed"
)

const (
	demoRoleLabel = "basalt.dev/demo-role"
	demoNamespace = "default"
	sshSecretName = "basalt-demo-ssh"
	timeoutCRD    = time.Minute
)

var scheme = func() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(apiextensionsv1.AddToScheme(s))
	utilruntime.Must(basaltv1.AddToScheme(s))
	return s
}()

// demoHost is one local host as the demo records it in hosts.json.
type demoHost struct {
	Name    string `json:"name"`
	IP      string `json:"ip"`
	HostKey string `json:"hostKey"`
	Role    string `json:"role"`
}

// hostsFile is what the hosts stage leaves in the demo dir for later runs and for `down`.
type hostsFile struct {
	RunID     string     `json:"runID"`
	Gateway   string     `json:"gateway"`
	ClientKey []byte     `json:"clientKey"`
	Hosts     []demoHost `json:"hosts"`
}

// startHosts starts the demo's hosts (or reuses those of an earlier run that are still there)
// and registers each as a Host with its SSH address, its pinned host key and the demo's SSH key.
func startHosts(ctx context.Context, cfg *config, st *state) error {
	path := filepath.Join(cfg.dir, "hosts.json")
	hf, err := readHostsFile(path)
	if err != nil {
		return err
	}
	if hf == nil || !runAlive(ctx, hf.RunID) {
		n := cfg.controlPlanes + cfg.workers
		logf("Starting %d hosts (containers with their own addresses, systemd and sshd)", n)
		b, err := bed.New(ctx, bed.Options{Hosts: n, Name: "demo", Persistent: true, Logf: logf})
		if err != nil {
			return err
		}
		hf = &hostsFile{RunID: b.RunID, Gateway: b.Gateway, ClientKey: b.ClientKey.PrivatePEM}
		for i, h := range b.Hosts {
			role := "worker"
			if i < cfg.controlPlanes {
				role = "control-plane"
			}
			hf.Hosts = append(hf.Hosts, demoHost{Name: h.Name, IP: h.IP, HostKey: strings.TrimSpace(string(ssh.MarshalAuthorizedKey(h.HostKey))), Role: role})
		}
		b2, err := json.MarshalIndent(hf, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(path, b2, 0o600); err != nil {
			return err
		}
	} else {
		logf("Reusing the %d hosts of test bed run %s", len(hf.Hosts), hf.RunID)
	}
	st.hosts, st.gateway = hf.Hosts, hf.Gateway

	c, err := newClient(st.kubeconfig)
	if err != nil {
		return err
	}
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: sshSecretName, Namespace: demoNamespace},
		Data:       map[string][]byte{"id_ed25519": hf.ClientKey},
	}
	if err := c.Create(ctx, secret); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating the SSH key Secret: %w", err)
	}
	for _, h := range hf.Hosts {
		host := &basaltv1.Host{
			ObjectMeta: metav1.ObjectMeta{Name: h.Name, Namespace: demoNamespace, Labels: map[string]string{demoRoleLabel: h.Role}},
			Spec: basaltv1.HostSpec{
				SSH: &basaltv1.SSHSpec{
					Address:             h.IP,
					PrivateKeySecretRef: basaltv1.SecretKeyReference{Name: sshSecretName, Key: "id_ed25519"},
					HostKeys:            []string{h.HostKey},
				},
				// The demo's hosts are containers running systemd, on this machine's cgroups.
				OS: &basaltv1.OSFacts{Container: &yes, SystemdPID1: &yes, CgroupVersion: cgroupVersion()},
			},
		}
		if err := c.Create(ctx, host); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating Host %s: %w", h.Name, err)
		}
		logf("Host %s at %s (%s), host key pinned", h.Name, h.IP, h.Role)
	}
	return nil
}

// stopHosts removes the demo's hosts.
func stopHosts(ctx context.Context, cfg *config) error {
	hf, err := readHostsFile(filepath.Join(cfg.dir, "hosts.json"))
	if err != nil || hf == nil {
		return err
	}
	if err := bed.RemoveRun(ctx, hf.RunID); err != nil {
		return fmt.Errorf("removing the demo hosts (run %s): %w; hack/testbed-clean.sh removes every test bed run", hf.RunID, err)
	}
	logf("Removed the demo hosts (test bed run %s)", hf.RunID)
	return nil
}

func readHostsFile(path string) (*hostsFile, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	hf := &hostsFile{}
	if err := json.Unmarshal(b, hf); err != nil {
		return nil, fmt.Errorf("%s: %w (remove it and rerun)", path, err)
	}
	return hf, nil
}

// runAlive says whether every container of a test bed run still exists.
func runAlive(ctx context.Context, runID string) bool {
	rs, err := bed.List(ctx, runID)
	if err != nil {
		return false
	}
	for _, r := range rs {
		if r.Kind == "container" {
			return true
		}
	}
	return false
}

// managerNamespace holds the manager's agent API CAs and bootstrap tokens.
const managerNamespace = "basalt-system"

func ensureNamespace(ctx context.Context, kubeconfig, name string) error {
	c, err := newClient(kubeconfig)
	if err != nil {
		return err
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if err := c.Create(ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating namespace %s: %w", name, err)
	}
	return nil
}

// waitHostsAvailable waits until the manager has installed the agent over SSH on every host and
// each agent has registered and reported its hardware.
func waitHostsAvailable(ctx context.Context, cfg *config, st *state) error {
	c, err := newClient(st.kubeconfig)
	if err != nil {
		return err
	}
	return poll(ctx, 5*time.Minute, func() error {
		for _, h := range st.hosts {
			got := &basaltv1.Host{}
			if err := c.Get(ctx, client.ObjectKey{Namespace: demoNamespace, Name: h.Name}, got); err != nil {
				return err
			}
			if got.Status.State != basaltv1.HostStateAvailable {
				msg := ""
				for _, cond := range got.Status.Conditions {
					if cond.Type == basaltv1.ConditionReady {
						msg = cond.Reason + ": " + cond.Message
					}
				}
				return fmt.Errorf("host %s is %s (%s)", h.Name, got.Status.State, msg)
			}
		}
		for _, h := range st.hosts {
			logf("Host %s is Available: agent installed over SSH with its host key pinned, registered, hardware reported", h.Name)
		}
		return nil
	})
}

var yes = true

// cgroupVersion is this machine's cgroup hierarchy, which its containers share.
func cgroupVersion() int32 {
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		return 2
	}
	return 1
}
