package framework

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/crypto/ssh"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/basalt-dev/basalt/test/envtest"
)

func TestContainerdImageName(t *testing.T) {
	for ref, want := range map[string]string{
		"basalt-manager:0123":                 "docker.io/library/basalt-manager:0123",
		"basalt/manager:v1":                   "docker.io/basalt/manager:v1",
		"registry.example/basalt/manager:v1":  "registry.example/basalt/manager:v1",
		"localhost:5000/basalt-manager:dev":   "localhost:5000/basalt-manager:dev",
		"localhost/basalt-manager:dev":        "localhost/basalt-manager:dev",
		"docker.io/library/basalt-manager:x1": "docker.io/library/basalt-manager:x1",
	} {
		got, err := ContainerdImageName(ref)
		if err != nil || got != want {
			t.Errorf("ContainerdImageName(%q) = %q, %v; want %q", ref, got, err, want)
		}
	}
	for _, bad := range []string{"basalt-manager", "localhost:5000/basalt-manager", "basalt-manager:", "basalt-manager@sha256:00", ":tag"} {
		if got, err := ContainerdImageName(bad); err == nil {
			t.Errorf("ContainerdImageName(%q) = %q, want an error", bad, got)
		}
	}
}

func TestChartValues(t *testing.T) {
	in := map[string]any{"image": map[string]any{"tag": "old", "pullPolicy": "Always"}, "replicas": 2}
	got := ChartValues(in, "basalt-manager", "abc")
	want := map[string]any{"image": map[string]any{"repository": "basalt-manager", "tag": "abc", "pullPolicy": "Never"}, "replicas": 2}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
	if in["image"].(map[string]any)["tag"] != "old" {
		t.Error("ChartValues changed its input")
	}
}

// sshNode is an SSH server on loopback that runs each exec request with /bin/sh -c, stdin and
// all, the way sshd does: what LoadImage sends is what a node's shell would get.
type sshNode struct {
	addr   string
	key    ssh.PublicKey
	signer ssh.Signer
	mu     sync.Mutex
	cmds   []string
}

func newSSHNode(t *testing.T) *sshNode {
	t.Helper()
	_, hostPriv, _ := ed25519.GenerateKey(rand.Reader)
	hostKey, err := ssh.NewSignerFromKey(hostPriv)
	if err != nil {
		t.Fatal(err)
	}
	_, clientPriv, _ := ed25519.GenerateKey(rand.Reader)
	clientKey, err := ssh.NewSignerFromKey(clientPriv)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &ssh.ServerConfig{PublicKeyCallback: func(_ ssh.ConnMetadata, k ssh.PublicKey) (*ssh.Permissions, error) {
		if bytes.Equal(k.Marshal(), clientKey.PublicKey().Marshal()) {
			return &ssh.Permissions{}, nil
		}
		return nil, errors.New("unknown key")
	}}
	cfg.AddHostKey(hostKey)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	n := &sshNode{addr: ln.Addr().String(), key: hostKey.PublicKey(), signer: clientKey}
	var wg sync.WaitGroup
	t.Cleanup(func() { _ = ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { n.serve(nc, cfg) })
		}
	})
	return n
}

func (n *sshNode) serve(nc net.Conn, cfg *ssh.ServerConfig) {
	defer func() { _ = nc.Close() }()
	_, chans, reqs, err := ssh.NewServerConn(nc, cfg)
	if err != nil {
		return
	}
	go ssh.DiscardRequests(reqs)
	for nch := range chans {
		ch, chReqs, err := nch.Accept()
		if err != nil {
			continue
		}
		go func() {
			defer func() { _ = ch.Close() }()
			for req := range chReqs {
				if req.Type != "exec" {
					_ = req.Reply(false, nil)
					continue
				}
				var p struct{ Command string }
				_ = ssh.Unmarshal(req.Payload, &p)
				_ = req.Reply(true, nil)
				n.mu.Lock()
				n.cmds = append(n.cmds, p.Command)
				n.mu.Unlock()
				cmd := exec.Command("/bin/sh", "-c", p.Command)
				cmd.Stdin, cmd.Stdout, cmd.Stderr = ch, ch, ch.Stderr()
				status := uint32(0)
				if err := cmd.Run(); err != nil {
					status = 1
					var ee *exec.ExitError
					if errors.As(err, &ee) {
						status = uint32(ee.ExitCode())
					}
				}
				_, _ = ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{status}))
				return
			}
		}()
	}
}

// SSH implements ImageNode, pinning the node's host key.
func (n *sshNode) SSH(ctx context.Context) (*ssh.Client, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", n.addr)
	if err != nil {
		return nil, err
	}
	c, chans, reqs, err := ssh.NewClientConn(nc, n.addr, &ssh.ClientConfig{User: "root", Auth: []ssh.AuthMethod{ssh.PublicKeys(n.signer)}, HostKeyCallback: ssh.FixedHostKey(n.key)})
	if err != nil {
		return nil, err
	}
	return ssh.NewClient(c, chans, reqs), nil
}

// fakeCtr writes a ctr stand-in that keeps what `images import -` reads from stdin in dir/imported
// and lists, for `images ls -q name==X`, the names written in dir/names; it records its arguments.
func fakeCtr(t *testing.T, dir string) string {
	t.Helper()
	script := `#!/bin/sh
echo "$*" >> "` + dir + `/args"
case "$*" in
*"images import -") cat > "` + dir + `/imported" ;;
*"images ls -q name=="*) cat "` + dir + `/names" 2>/dev/null || true ;;
*) echo "unexpected: $*" >&2; exit 2 ;;
esac
`
	p := filepath.Join(dir, "ctr")
	if err := os.WriteFile(p, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadImageStreamsTheTarballIntoCtr(t *testing.T) {
	node := newSSHNode(t)
	dir := t.TempDir()
	ctr := fakeCtr(t, dir)
	tarball := filepath.Join(dir, "image.tar")
	payload := make([]byte, 8<<20+123) // larger than any SSH window
	_, _ = rand.Read(payload)
	if err := os.WriteFile(tarball, payload, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	in := LoadImageInput{Tar: tarball, Image: "basalt-manager:abc", Ctr: ctr, Socket: "/run/test's.sock"}

	// containerd does not list the image: an error that says so.
	err := LoadImage(ctx, node, in)
	if err == nil || !strings.Contains(err.Error(), "does not list docker.io/library/basalt-manager:abc") {
		t.Fatalf("LoadImage without the image listed: %v", err)
	}
	got, err := os.ReadFile(filepath.Join(dir, "imported"))
	if err != nil || sha256.Sum256(got) != sha256.Sum256(payload) {
		t.Fatalf("ctr received %d bytes (%v), want the %d of the tarball", len(got), err, len(payload))
	}
	args, _ := os.ReadFile(filepath.Join(dir, "args"))
	wantArgs := "--address /run/test's.sock -n k8s.io images import -\n--address /run/test's.sock -n k8s.io images ls -q name==docker.io/library/basalt-manager:abc\n"
	if string(args) != wantArgs {
		t.Errorf("ctr ran with\n%s\nwant\n%s", args, wantArgs)
	}

	if err := os.WriteFile(filepath.Join(dir, "names"), []byte("docker.io/library/basalt-manager:abc\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := LoadImage(ctx, node, in); err != nil {
		t.Fatalf("LoadImage: %v", err)
	}

	// A failing import is an error carrying ctr's message.
	in.Ctr = "/nonexistent/ctr"
	if err := LoadImage(ctx, node, in); err == nil || !strings.Contains(err.Error(), "/nonexistent/ctr") {
		t.Errorf("LoadImage with a missing ctr: %v", err)
	}
	in.Tar = filepath.Join(dir, "missing.tar")
	if err := LoadImage(ctx, node, in); err == nil || !strings.Contains(err.Error(), "missing.tar") {
		t.Errorf("LoadImage with a missing tarball: %v", err)
	}
}

// kubeconfigFor writes cfg (envtest's administrator) as a kubeconfig.
func kubeconfigFor(t *testing.T, cfg *rest.Config) []byte {
	t.Helper()
	kc := clientcmdapi.NewConfig()
	kc.Clusters["envtest"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos["admin"] = &clientcmdapi.AuthInfo{ClientCertificateData: cfg.CertData, ClientKeyData: cfg.KeyData, Token: cfg.BearerToken}
	kc.Contexts["envtest"] = &clientcmdapi.Context{Cluster: "envtest", AuthInfo: "admin"}
	kc.CurrentContext = "envtest"
	b, err := clientcmd.Write(*kc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestInstallChartIntoAPIServer installs the chart through InstallChart into a real kube-apiserver
// (no nodes, so no waiting for the pod), then uninstalls it: the objects go, the CRDs stay.
func TestInstallChartIntoAPIServer(t *testing.T) {
	env, err := envtest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	utilruntime.Must(apiextensionsv1.AddToScheme(env.Scheme))
	c, err := client.New(env.Config, client.Options{Scheme: env.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	kubeconfig := kubeconfigFor(t, env.Config)
	// envtest installed the CRDs from config/. Helm takes over existing objects only when they
	// carry its ownership metadata for this release, as `helm install` does for CRDs a user
	// labels before adopting them; deleting them instead would hang on a loaded machine (a CRD
	// goes only once apiextensions' cleanup has run).
	crds := &apiextensionsv1.CustomResourceDefinitionList{}
	if err := c.List(ctx, crds); err != nil {
		t.Fatal(err)
	}
	for i := range crds.Items {
		crd := &crds.Items[i]
		before := crd.DeepCopy()
		if crd.Labels == nil {
			crd.Labels = map[string]string{}
		}
		if crd.Annotations == nil {
			crd.Annotations = map[string]string{}
		}
		crd.Labels["app.kubernetes.io/managed-by"] = "Helm"
		crd.Annotations["meta.helm.sh/release-name"] = "basalt"
		crd.Annotations["meta.helm.sh/release-namespace"] = "basalt-test"
		if err := c.Patch(ctx, crd, client.MergeFrom(before)); err != nil {
			t.Fatal(err)
		}
	}

	rel := InstallChart(ctx, t, InstallChartInput{
		Kubeconfig: kubeconfig, Image: "basalt-manager:0123456789abcdef", Namespace: "basalt-test",
		Values: map[string]any{"rbac": map[string]any{"scope": "Namespace"}}, Keep: true,
	})
	if rel.Info.Status != "deployed" {
		t.Fatalf("release status %s: %s", rel.Info.Status, rel.Info.Description)
	}
	d := &appsv1.Deployment{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: "basalt-test", Name: "basalt"}, d); err != nil {
		t.Fatalf("the manager Deployment: %v", err)
	}
	mc := d.Spec.Template.Spec.Containers[0]
	if mc.Image != "basalt-manager:0123456789abcdef" || mc.ImagePullPolicy != corev1.PullNever {
		t.Errorf("manager image %s pull policy %s", mc.Image, mc.ImagePullPolicy)
	}
	secrets := &corev1.SecretList{}
	if err := c.List(ctx, secrets, client.InNamespace("basalt-test"), client.MatchingLabels{"owner": "helm", "name": "basalt"}); err != nil || len(secrets.Items) != 1 {
		t.Errorf("helm release records: %d (%v), want 1", len(secrets.Items), err)
	}

	if err := UninstallChart(kubeconfig, "basalt-test", "basalt"); err != nil {
		t.Fatal(err)
	}
	if err := c.Get(ctx, client.ObjectKey{Namespace: "basalt-test", Name: "basalt"}, d); !apierrors.IsNotFound(err) {
		t.Errorf("after uninstall the Deployment: %v, want NotFound", err)
	}
	crd := &apiextensionsv1.CustomResourceDefinition{}
	if err := c.Get(ctx, client.ObjectKey{Name: "hosts.basalt.dev"}, crd); err != nil || crd.DeletionTimestamp != nil {
		t.Errorf("after uninstall the Host CRD: %v (deleting %v), want it kept", err, crd.DeletionTimestamp)
	}
	if crd.Annotations["helm.sh/resource-policy"] != "keep" {
		t.Errorf("the Host CRD was not adopted by the release: annotations %v", crd.Annotations)
	}
}

// TestLoadImageIntoContainerd imports an image saved by this machine's Docker into a real
// containerd (the artifact set's containerd and ctr, as on Basalt's nodes) through LoadImage, and
// finds it under the name the kubelet asks for.
func TestLoadImageIntoContainerd(t *testing.T) {
	bin := os.Getenv("KUBEBUILDER_ASSETS")
	for _, b := range []string{"containerd", "ctr"} {
		if _, err := os.Stat(filepath.Join(bin, b)); err != nil {
			t.Fatalf("%s is missing from KUBEBUILDER_ASSETS=%q: build the artifact set with `make test-artifacts`: %v", b, bin, err)
		}
	}
	if os.Geteuid() != 0 {
		t.Fatal("containerd needs root")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// A small image saved by docker, in the format hack/image.sh's tarball has.
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "hello"), []byte("basalt\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM scratch\nCOPY hello /hello\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	image := fmt.Sprintf("basalt-loadimage-test:%d", time.Now().UnixNano())
	runCmd := func(env []string, name string, args ...string) {
		t.Helper()
		cmd := exec.CommandContext(ctx, name, args...)
		cmd.Env = append(os.Environ(), env...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
	}
	runCmd([]string{"DOCKER_BUILDKIT=0"}, "docker", "build", "-q", "-t", image, dir)
	t.Cleanup(func() { _ = exec.Command("docker", "rmi", "-f", image).Run() })
	tarball := filepath.Join(dir, "image.tar")
	runCmd(nil, "docker", "save", "-o", tarball, image)

	root := t.TempDir()
	sock := filepath.Join(root, "containerd.sock")
	cfg := fmt.Sprintf("version = 3\nroot = %q\nstate = %q\n[grpc]\n  address = %q\n", filepath.Join(root, "root"), filepath.Join(root, "state"), sock)
	if err := os.WriteFile(filepath.Join(root, "config.toml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	containerd := exec.Command(filepath.Join(bin, "containerd"), "--config", filepath.Join(root, "config.toml"))
	var logs bytes.Buffer
	containerd.Stdout, containerd.Stderr = &logs, &logs
	if err := containerd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = containerd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = containerd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = containerd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("containerd:\n%s", logs.String())
		}
	})
	ctr := filepath.Join(bin, "ctr")
	envtest.Eventually(t, 30*time.Second, func() error {
		return exec.CommandContext(ctx, ctr, "--address", sock, "version").Run()
	})

	node := newSSHNode(t)
	in := LoadImageInput{Tar: tarball, Image: image, Ctr: ctr, Socket: sock}
	if err := LoadImage(ctx, node, in); err != nil {
		t.Fatalf("LoadImage: %v", err)
	}
	out, err := exec.CommandContext(ctx, ctr, "--address", sock, "-n", "k8s.io", "images", "ls", "-q").Output()
	if err != nil || !strings.Contains(string(out), "docker.io/library/"+image+"\n") {
		t.Errorf("containerd lists %q (%v), want docker.io/library/%s", out, err, image)
	}
	// A tarball that does not hold the image named is an error, not a silent success.
	in.Image = "basalt-loadimage-test:other"
	if err := LoadImage(ctx, node, in); err == nil || !strings.Contains(err.Error(), "does not list docker.io/library/basalt-loadimage-test:other") {
		t.Errorf("LoadImage of an image the tarball lacks: %v", err)
	}
}
