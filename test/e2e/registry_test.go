package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
	"github.com/basalt-dev/basalt/test/e2e/bed"
	"github.com/basalt-dev/basalt/test/e2e/framework"
)

// Names of the registry e2e: an image that exists only in the bed's registry, reached as a
// docker.io image through a mirror.
const (
	registryRepository = "basalt-e2e/hello"
	registryTag        = "v1"
	registryImage      = "docker.io/" + registryRepository + ":" + registryTag
)

// registrySetup starts the bed's registry on reg, pushes the test image, and returns the
// Cluster's spec.registries: docker.io mirrored by the registry (its CA and the right
// credentials from Secrets), and the registry's own address with a wrong password.
func registrySetup(ctx context.Context, t *testing.T, c client.Client, ns string, reg *bed.Host, version string) (*framework.Registry, []basaltv1.Registry) {
	t.Helper()
	r := framework.StartRegistry(ctx, t, framework.StartRegistryInput{Host: reg, Version: version})
	r.Push(ctx, t, framework.BuildTestImage(ctx, t, "hello", registryImage), registryRepository, registryTag)
	for _, s := range []*corev1.Secret{
		{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "registry-ca"}, Data: map[string][]byte{"ca.crt": r.CA}},
		{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "registry-auth"}, Type: corev1.SecretTypeBasicAuth,
			Data: map[string][]byte{"username": []byte(r.Username), "password": []byte(r.Password)}},
		{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "registry-wrong"}, Type: corev1.SecretTypeBasicAuth,
			Data: map[string][]byte{"username": []byte(r.Username), "password": []byte("not-" + r.Password)}},
	} {
		if err := c.Create(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	ca := &basaltv1.SecretKeyReference{Name: "registry-ca", Key: "ca.crt"}
	return r, []basaltv1.Registry{
		{Host: "docker.io", Mirrors: []basaltv1.RegistryMirror{{URL: "https://" + r.Addr, CASecretRef: ca,
			CredentialsSecretRef: &basaltv1.LocalObjectReference{Name: "registry-auth"}}}},
		{Host: r.Addr, CASecretRef: ca, CredentialsSecretRef: &basaltv1.LocalObjectReference{Name: "registry-wrong"}},
	}
}

// checkRegistryPull proves a node pulls an image that only the bed's registry has, through the
// docker.io mirror of spec.registries (TLS verified with the CA from the Secret, basic auth),
// and that a wrong credential is a clear event on the pod within a minute, not a hang.
func checkRegistryPull(ctx context.Context, t *testing.T, wc *kubernetes.Clientset, r *framework.Registry, node string, nodeHost, from *bed.Host) {
	t.Helper()
	if out, err := nodeHost.Run(ctx, "/opt/basalt/bin/ctr -n k8s.io images ls -q"); err != nil || strings.Contains(out, registryRepository) {
		t.Fatalf("node %s has %s before any pull, or ctr failed (%v):\n%s", node, registryRepository, err, out)
	}
	pod := func(name, image string) *corev1.Pod {
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
			Spec: corev1.PodSpec{
				NodeSelector: map[string]string{"kubernetes.io/hostname": node},
				Containers:   []corev1.Container{{Name: "hello", Image: image, ImagePullPolicy: corev1.PullAlways}},
			},
		}
	}
	start := time.Now()
	if _, err := wc.CoreV1().Pods("default").Create(ctx, pod("pulled", registryImage), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var podIP string
	framework.Eventually(t, 3*time.Minute, func() error {
		p, err := wc.CoreV1().Pods("default").Get(ctx, "pulled", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if p.Status.Phase != corev1.PodRunning || p.Status.PodIP == "" {
			return fmt.Errorf("pod pulled: %s %s", p.Status.Phase, podMessage(p))
		}
		podIP = p.Status.PodIP
		return nil
	})
	framework.Eventually(t, time.Minute, func() error {
		out, err := from.Run(ctx, "curl -fsS --max-time 3 http://"+podIP+":8080/")
		if err != nil || !strings.Contains(out, "podIP="+podIP) {
			return fmt.Errorf("pod pulled at %s: %q %w", podIP, out, err)
		}
		return nil
	})
	pulled := podEvent(ctx, t, wc, "pulled", "Pulled")
	t.Logf("Image %s pulled from the bed registry through the docker.io mirror and Running %s after the pod was created; kubelet: %s",
		registryImage, time.Since(start).Round(time.Second), pulled)

	// The registry's own address is configured with a wrong password: the pull fails at once,
	// and the pod's event says the registry refused the authorization.
	denied := r.Addr + "/" + registryRepository + ":" + registryTag
	if _, err := wc.CoreV1().Pods("default").Create(ctx, pod("denied", denied), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var msg string
	framework.Eventually(t, time.Minute, func() error {
		msg = podEventMessage(ctx, wc, "denied", "Failed", "Failed to pull image")
		if msg == "" {
			return fmt.Errorf("no Failed event on pod denied yet")
		}
		return nil
	})
	low := strings.ToLower(msg)
	if !strings.Contains(low, "401") && !strings.Contains(low, "unauthorized") && !strings.Contains(low, "authoriz") {
		t.Errorf("the failed pull with a wrong password does not say so: %s", msg)
	}
	t.Logf("Wrong registry password: event %q", msg)
	for _, name := range []string{"pulled", "denied"} {
		if err := wc.CoreV1().Pods("default").Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
			t.Error(err)
		}
	}
}

// podEvent waits for an event of reason on pod and returns its message.
func podEvent(ctx context.Context, t *testing.T, wc *kubernetes.Clientset, pod, reason string) string {
	t.Helper()
	var msg string
	framework.Eventually(t, time.Minute, func() error {
		if msg = podEventMessage(ctx, wc, pod, reason, ""); msg == "" {
			return fmt.Errorf("no %s event on pod %s", reason, pod)
		}
		return nil
	})
	return msg
}

// podEventMessage returns the message of the latest event of reason on pod whose message starts
// with prefix, or "".
func podEventMessage(ctx context.Context, wc *kubernetes.Clientset, pod, reason, prefix string) string {
	el, err := wc.CoreV1().Events("default").List(ctx, metav1.ListOptions{
		FieldSelector: fields.Set{"involvedObject.name": pod, "involvedObject.kind": "Pod", "reason": reason}.String()})
	if err != nil {
		return ""
	}
	for i := len(el.Items) - 1; i >= 0; i-- {
		if strings.HasPrefix(el.Items[i].Message, prefix) {
			return el.Items[i].Message
		}
	}
	return ""
}
