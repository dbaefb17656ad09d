package envtest

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"testing"

	"golang.org/x/crypto/ssh"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
)

// AvailableHostInput describes a Host the way it looks once its agent has registered and been
// inspected.
type AvailableHostInput struct {
	Namespace string
	Name      string
	Labels    map[string]string
	Address   string
}

// CreateAvailableHost creates an SSH Host and moves its status to Available, standing in for the
// agent that does this in a real deployment.
func (e *Env) CreateAvailableHost(t testing.TB, in AvailableHostInput) *basaltv1.Host {
	t.Helper()
	ctx := context.Background()
	if in.Address == "" {
		in.Address = "10.0.0.1"
	}
	h := &basaltv1.Host{
		ObjectMeta: metav1.ObjectMeta{Name: in.Name, Namespace: in.Namespace, Labels: in.Labels},
		Spec: basaltv1.HostSpec{SSH: &basaltv1.SSHSpec{
			Address:             in.Address,
			PrivateKeySecretRef: basaltv1.SecretKeyReference{Name: "ssh", Key: "id"},
		}},
	}
	if err := e.Client.Create(ctx, h); err != nil {
		t.Fatalf("creating Host %s: %v", in.Name, err)
	}
	return e.UpdateHostStatus(t, h, func(h *basaltv1.Host) {
		now := metav1.Now()
		h.Status.State = basaltv1.HostStateAvailable
		h.Status.Agent = basaltv1.AgentStatus{Version: "test", LastSeen: &now}
	})
}

// UpdateHostStatus re-reads h, applies mutate to it and writes its status, retrying on conflict:
// the Host controller writes the same object concurrently, as the agent API will.
func (e *Env) UpdateHostStatus(t testing.TB, h *basaltv1.Host, mutate func(*basaltv1.Host)) *basaltv1.Host {
	t.Helper()
	ctx := context.Background()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := e.Client.Get(ctx, client.ObjectKeyFromObject(h), h); err != nil {
			return err
		}
		mutate(h)
		return e.Client.Status().Update(ctx, h)
	})
	if err != nil {
		t.Fatalf("updating the status of Host %s: %v", h.Name, err)
	}
	return h
}

// CreateSSHKeySecret stores a fresh SSH private key in Secret ssh (key id) of namespace ns, as the
// fixtures' Hosts reference it (spec.ssh.privateKeySecretRef).
func (e *Env) CreateSSHKeySecret(t testing.TB, ns string) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "ssh", Namespace: ns}, Data: map[string][]byte{"id": pem.EncodeToMemory(block)}}
	if err := e.Client.Create(context.Background(), sec); err != nil {
		t.Fatal(err)
	}
}
