package basalt_test

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/tls"
	"debug/elf"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"

	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
	"github.com/basalt-dev/basalt/test/e2e/framework"
	"github.com/basalt-dev/basalt/test/envtest"
	"github.com/basalt-dev/basalt/test/ports"
)

// buildImage runs hack/image.sh (make image) and returns IMAGE and IMAGE_TAR.
func buildImage(t *testing.T) (image, tarball string) { return framework.BuildImage(t) }

func docker(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("docker", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestManagerImage builds the image, checks what is in it, runs the manager's --help from it,
// then runs the manager from it against a real kube-apiserver: it becomes ready, takes the
// leader lease, serves the agent API and reconciles a Host.
func TestManagerImage(t *testing.T) {
	image, tarball := buildImage(t)
	if fi, err := os.Stat(tarball); err != nil || fi.Size() == 0 {
		t.Fatalf("image tarball %s: %v", tarball, err)
	}

	t.Run("config", func(t *testing.T) {
		var cfg []struct {
			Config struct {
				User       string
				Entrypoint []string
			}
		}
		if err := json.Unmarshal([]byte(docker(t, "image", "inspect", image)), &cfg); err != nil || len(cfg) != 1 {
			t.Fatalf("docker image inspect: %v", err)
		}
		if cfg[0].Config.User != "65532:65532" || !slices.Equal(cfg[0].Config.Entrypoint, []string{"/usr/local/bin/basalt-manager"}) {
			t.Errorf("user %q entrypoint %v", cfg[0].Config.User, cfg[0].Config.Entrypoint)
		}
	})

	t.Run("contents", func(t *testing.T) {
		id := strings.TrimSpace(docker(t, "create", image))
		defer func() { _ = exec.Command("docker", "rm", "-f", id).Run() }()
		cmd := exec.Command("docker", "export", id)
		r, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		files := map[string]int64{}
		tr := tar.NewReader(r)
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			name := "/" + strings.TrimPrefix(h.Name, "./")
			files[name] = h.Size
			if h.Typeflag == tar.TypeReg && strings.HasPrefix(name, "/usr/local/bin/") {
				b, err := io.ReadAll(tr)
				if err != nil {
					t.Fatal(err)
				}
				if err := checkStatic(b); err != nil {
					t.Errorf("%s: %v", name, err)
				}
			}
		}
		if err := cmd.Wait(); err != nil {
			t.Fatal(err)
		}
		for _, f := range []string{"/usr/local/bin/basalt-manager", "/usr/local/bin/basalt-agent", "/usr/lib/ipxe/ipxe.efi",
			"/usr/lib/ipxe/snponly.efi", "/usr/lib/ipxe/undionly.kpxe", "/usr/share/basalt/pxe/vmlinuz",
			"/usr/share/basalt/pxe/initramfs", "/usr/share/basalt/pxe/root.img.gz", "/etc/ssl/certs/ca-certificates.crt", "/etc/passwd", "/etc/group"} {
			if files[f] <= 0 {
				t.Errorf("the image has no %s (or it is empty)", f)
			}
		}
		for f := range files {
			if strings.HasPrefix(f, "/bin/") || f == "/bin/sh" || strings.HasPrefix(f, "/lib/") {
				t.Errorf("the image carries %s: it should hold nothing but Basalt's files", f)
			}
		}
	})

	t.Run("help", func(t *testing.T) {
		out := docker(t, "run", "--rm", image, "--help")
		for _, f := range []string{"-watch-namespace", "-agent-binary", "-pxe-interface", "-pxe-root-image", "-leader-elect"} {
			if !strings.Contains(out, f) {
				t.Errorf("--help from the image does not list %s:\n%s", f, out)
			}
		}
	})

	t.Run("runs against an API server", func(t *testing.T) { runImageAgainstEnvtest(t, image) })
}

// checkStatic fails for an ELF executable that asks for a dynamic loader or shared libraries.
func checkStatic(b []byte) error {
	f, err := elf.NewFile(bytes.NewReader(b))
	if err != nil {
		return err
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("dynamically linked (PT_INTERP)")
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		return fmt.Errorf("needs %v", libs)
	}
	return nil
}

func writeKubeconfig(t *testing.T, cfg *rest.Config) string {
	t.Helper()
	kc := clientcmdapi.NewConfig()
	kc.Clusters["envtest"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos["admin"] = &clientcmdapi.AuthInfo{ClientCertificateData: cfg.CertData, ClientKeyData: cfg.KeyData, Token: cfg.BearerToken}
	kc.Contexts["envtest"] = &clientcmdapi.Context{Cluster: "envtest", AuthInfo: "admin"}
	kc.CurrentContext = "envtest"
	p := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*kc, p); err != nil {
		t.Fatal(err)
	}
	// The image runs as UID 65532.
	if err := os.Chmod(p, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func runImageAgainstEnvtest(t *testing.T, image string) {
	env, err := envtest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c := env.Client
	const ns = "basalt-system"
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}

	free := ports.FreeLoopback(t, 2)
	health, agentAPI := free[0], free[1]
	name := "basalt-image-test-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	// The API server listens on loopback: the container shares the host's network. The root
	// filesystem is read-only, as the chart runs it.
	docker(t, "run", "-d", "--name", name, "--network", "host", "--read-only", "--tmpfs", "/tmp",
		"-v", writeKubeconfig(t, env.Config)+":/etc/basalt/kubeconfig:ro", "-e", "KUBECONFIG=/etc/basalt/kubeconfig",
		"-e", "POD_NAMESPACE="+ns, image,
		"--leader-elect=true", "--leader-election-namespace="+ns, "--watch-namespace="+ns,
		"--health-probe-bind-address=127.0.0.1:"+strconv.Itoa(health), "--metrics-bind-address=0",
		"--agent-api-bind-address=127.0.0.1:"+strconv.Itoa(agentAPI), "--agent-api-addresses=127.0.0.1",
		"--agent-binary=/usr/local/bin/basalt-agent", "--artifact-cache-dir=/tmp/cache")
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := exec.Command("docker", "logs", "--tail", "60", name).CombinedOutput()
			t.Logf("manager logs:\n%s", out)
		}
		_ = exec.Command("docker", "rm", "-f", name).Run()
	})

	envtest.Eventually(t, 90*time.Second, func() error {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/readyz", health))
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/readyz: %s", resp.Status)
		}
		return nil
	})
	envtest.Eventually(t, 60*time.Second, func() error {
		l := &coordinationv1.Lease{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "basalt-manager.basalt.dev"}, l); err != nil {
			return err
		}
		if l.Spec.HolderIdentity == nil || *l.Spec.HolderIdentity == "" {
			return fmt.Errorf("lease has no holder")
		}
		return nil
	})
	// The agent API serves TLS with the address hosts are told.
	envtest.Eventually(t, 60*time.Second, func() error {
		conn, err := tls.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(agentAPI)), &tls.Config{InsecureSkipVerify: true}) // only the SANs are checked
		if err != nil {
			return err
		}
		defer func() { _ = conn.Close() }()
		cert := conn.ConnectionState().PeerCertificates[0]
		if !slices.ContainsFunc(cert.IPAddresses, func(ip net.IP) bool { return ip.Equal(net.IPv4(127, 0, 0, 1)) }) {
			return fmt.Errorf("agent API certificate IPs %v lack 127.0.0.1", cert.IPAddresses)
		}
		return nil
	})
	// A Host in the watched namespace is reconciled by the manager in the container; one created
	// before it in another namespace is not (--watch-namespace, the chart's namespaced mode).
	host := func(namespace string) *basaltv1.Host {
		h := &basaltv1.Host{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: "h1"}, Spec: basaltv1.HostSpec{SSH: &basaltv1.SSHSpec{
			Address: "127.0.0.1", Port: 1, PrivateKeySecretRef: basaltv1.SecretKeyReference{Name: "ssh", Key: "id_ed25519"}}}}
		if err := c.Create(ctx, h); err != nil {
			t.Fatal(err)
		}
		return h
	}
	outside := host(env.Namespace(t))
	h := host(ns)
	envtest.Eventually(t, 60*time.Second, func() error {
		got := &basaltv1.Host{}
		if err := c.Get(ctx, client.ObjectKeyFromObject(h), got); err != nil {
			return err
		}
		if !slices.Contains(got.Finalizers, basaltv1.HostFinalizer) {
			return fmt.Errorf("no finalizer yet: %v", got.Finalizers)
		}
		if _, err := envtest.Condition(got.Status.Conditions, basaltv1.ConditionReady); err != nil {
			return err
		}
		return nil
	})
	got := &basaltv1.Host{}
	if err := c.Get(ctx, client.ObjectKeyFromObject(outside), got); err != nil {
		t.Fatal(err)
	}
	if len(got.Finalizers) > 0 || len(got.Status.Conditions) > 0 {
		t.Errorf("a Host outside the watched namespace was reconciled: finalizers %v, conditions %v", got.Finalizers, got.Status.Conditions)
	}
}
