package framework

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/sync/errgroup"
	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/cli"
	"helm.sh/helm/v3/pkg/release"

	basaltchart "github.com/basalt-dev/basalt/charts/basalt"
	"github.com/basalt-dev/basalt/test/envtest"
)

// Where Basalt's node Plans put containerd's client and socket (bootstrap/components defaults).
const (
	DefaultCtr              = "/opt/basalt/bin/ctr"
	DefaultContainerdSocket = "/run/containerd/containerd.sock"
)

// ImageNode is a node reached over SSH as root; *bed.Host is one.
type ImageNode interface {
	SSH(ctx context.Context) (*ssh.Client, error)
}

// LoadImageInput says which image tarball goes into a node's containerd.
type LoadImageInput struct {
	// Tar is a `docker save` tarball (hack/image.sh's IMAGE_TAR) holding Image.
	Tar string
	// Image is the reference the tarball holds, e.g. basalt-manager:0123456789abcdef.
	Image string
	// Ctr and Socket default to DefaultCtr and DefaultContainerdSocket.
	Ctr, Socket string
}

// LoadImage streams the tarball over SSH into `ctr -n k8s.io images import -` on node, no
// registry involved, and checks that containerd then lists the image under the name the kubelet
// will look for. Importing again is harmless.
func LoadImage(ctx context.Context, node ImageNode, in LoadImageInput) error {
	if in.Ctr == "" {
		in.Ctr = DefaultCtr
	}
	if in.Socket == "" {
		in.Socket = DefaultContainerdSocket
	}
	name, err := ContainerdImageName(in.Image)
	if err != nil {
		return err
	}
	f, err := os.Open(in.Tar)
	if err != nil {
		return fmt.Errorf("image tarball: %w", err)
	}
	defer f.Close()
	c, err := node.SSH(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = c.Close() }()
	where := c.RemoteAddr().String()
	ctr := shellQuote(in.Ctr) + " --address " + shellQuote(in.Socket) + " -n k8s.io"
	if _, err := runSSH(ctx, c, f, ctr+" images import -"); err != nil {
		return fmt.Errorf("%s: importing %s: %w", where, in.Tar, err)
	}
	out, err := runSSH(ctx, c, nil, ctr+" images ls -q name=="+shellQuote(name))
	if err != nil {
		return fmt.Errorf("%s: listing images: %w", where, err)
	}
	if !strings.Contains("\n"+out+"\n", "\n"+name+"\n") {
		return fmt.Errorf("%s: containerd does not list %s after the import (the tarball holds another image?); it lists %q", where, name, strings.TrimSpace(out))
	}
	return nil
}

// runSSH runs cmd in a new session of c with stdin and returns its standard output; a failure
// carries the standard error. The session is closed when ctx ends.
func runSSH(ctx context.Context, c *ssh.Client, stdin io.Reader, cmd string) (string, error) {
	s, err := c.NewSession()
	if err != nil {
		return "", err
	}
	defer func() { _ = s.Close() }()
	var stdout, stderr strings.Builder
	s.Stdin, s.Stdout, s.Stderr = stdin, &stdout, &stderr
	done := make(chan error, 1)
	go func() { done <- s.Run(cmd) }()
	select {
	case err = <-done:
	case <-ctx.Done():
		_ = s.Close()
		err = errors.Join(ctx.Err(), <-done)
	}
	if err != nil {
		return stdout.String(), fmt.Errorf("%s: %w: %s", cmd, err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// shellQuote quotes s for a POSIX shell.
func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// SplitImage splits a reference into repository and tag: "basalt-manager:0123" gives
// ("basalt-manager", "0123"); a reference without a tag, or with a digest, is an error, since the
// chart's image.tag must name what was loaded.
func SplitImage(ref string) (repository, tag string, err error) {
	if strings.Contains(ref, "@") {
		return "", "", fmt.Errorf("image %q: a digest reference cannot be loaded by tag", ref)
	}
	i := strings.LastIndex(ref, ":")
	if i <= 0 || strings.Contains(ref[i+1:], "/") || i == len(ref)-1 {
		return "", "", fmt.Errorf("image %q has no tag", ref)
	}
	return ref[:i], ref[i+1:], nil
}

// ContainerdImageName is the fully qualified name containerd stores ref under and the kubelet
// asks for: a reference without a registry is on docker.io, and a single-name repository there is
// under library/ (basalt-manager:x is docker.io/library/basalt-manager:x).
func ContainerdImageName(ref string) (string, error) {
	repo, tag, err := SplitImage(ref)
	if err != nil {
		return "", err
	}
	first, _, found := strings.Cut(repo, "/")
	switch {
	case found && (strings.ContainsAny(first, ".:") || first == "localhost"):
		// first is a registry.
	case found:
		repo = "docker.io/" + repo
	default:
		repo = "docker.io/library/" + repo
	}
	return repo + ":" + tag, nil
}

// InstallChartInput says where and how the chart is installed.
type InstallChartInput struct {
	// Kubeconfig is an administrator's kubeconfig of the cluster the chart goes into.
	Kubeconfig []byte
	// Nodes get the image imported into their containerd first; none when the image is there.
	Nodes []ImageNode
	// ImageTar and Image are hack/image.sh's IMAGE_TAR and IMAGE. The chart's image values are
	// set to Image with pullPolicy Never, so the pod runs the loaded image or fails visibly
	// (ErrImageNeverPull), never reaching for a registry.
	ImageTar, Image string
	// Ctr and ContainerdSocket on the nodes (defaults DefaultCtr, DefaultContainerdSocket).
	Ctr, ContainerdSocket string
	// ReleaseName defaults to "basalt", Namespace to "basalt-system" (created when missing).
	ReleaseName, Namespace string
	// Values are the chart values; image.* are set from Image.
	Values map[string]any
	// Wait waits until the release's resources are ready (the manager Deployment available),
	// at most Timeout (default 5 minutes).
	Wait    bool
	Timeout time.Duration
	// Keep leaves the release installed when the test ends; otherwise it is uninstalled.
	Keep bool
}

// InstallChart loads the image into every node's containerd (in parallel), then installs
// charts/basalt with the Helm SDK, as `helm install --create-namespace [--wait]` would, and
// returns the release. It fails the test on any error, naming the node or the Helm step.
func InstallChart(ctx context.Context, t *testing.T, in InstallChartInput) *release.Release {
	t.Helper()
	if in.Image == "" {
		t.Fatal("InstallChart: no image")
	}
	repo, tag, err := SplitImage(in.Image)
	if err != nil {
		t.Fatal(err)
	}
	if len(in.Nodes) > 0 {
		g, gctx := errgroup.WithContext(ctx)
		for _, n := range in.Nodes {
			g.Go(func() error {
				return LoadImage(gctx, n, LoadImageInput{Tar: in.ImageTar, Image: in.Image, Ctr: in.Ctr, Socket: in.ContainerdSocket})
			})
		}
		if err := g.Wait(); err != nil {
			t.Fatalf("loading %s into the nodes: %v", in.Image, err)
		}
	}
	vals := ChartValues(in.Values, repo, tag)
	rel, err := installChart(ctx, in, vals, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	if !in.Keep {
		t.Cleanup(func() {
			if err := UninstallChart(in.Kubeconfig, rel.Namespace, rel.Name); err != nil {
				t.Errorf("uninstalling release %s: %v", rel.Name, err)
			}
		})
	}
	return rel
}

// ChartValues returns a copy of vals with image.repository and image.tag set and the pull
// policy Never.
func ChartValues(vals map[string]any, repository, tag string) map[string]any {
	out := make(map[string]any, len(vals)+1)
	for k, v := range vals {
		out[k] = v
	}
	img := map[string]any{}
	if m, ok := vals["image"].(map[string]any); ok {
		for k, v := range m {
			img[k] = v
		}
	}
	img["repository"], img["tag"], img["pullPolicy"] = repository, tag, "Never"
	out["image"] = img
	return out
}

// helmConfig returns a Helm action configuration for the cluster of kubeconfig, keeping release
// records in Secrets of namespace, as the helm CLI does. The kubeconfig is written into dir.
func helmConfig(kubeconfig []byte, namespace, dir string, logf func(string, ...any)) (*action.Configuration, error) {
	if len(kubeconfig) == 0 {
		return nil, errors.New("no kubeconfig")
	}
	f, err := os.CreateTemp(dir, "kubeconfig-")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if _, err := f.Write(kubeconfig); err != nil {
		return nil, err
	}
	settings := cli.New()
	settings.KubeConfig = f.Name()
	settings.SetNamespace(namespace)
	cfg := new(action.Configuration)
	if err := cfg.Init(settings.RESTClientGetter(), namespace, "secret", logf); err != nil {
		return nil, fmt.Errorf("helm configuration: %w", err)
	}
	return cfg, nil
}

func installChart(ctx context.Context, in InstallChartInput, vals map[string]any, logf func(string, ...any)) (*release.Release, error) {
	name, ns := withDefault(in.ReleaseName, "basalt"), withDefault(in.Namespace, "basalt-system")
	dir, err := os.MkdirTemp("", "basalt-helm-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	cfg, err := helmConfig(in.Kubeconfig, ns, dir, logf)
	if err != nil {
		return nil, err
	}
	c, err := basaltchart.Load()
	if err != nil {
		return nil, err
	}
	inst := action.NewInstall(cfg)
	inst.ReleaseName, inst.Namespace, inst.CreateNamespace = name, ns, true
	inst.Wait = in.Wait
	inst.Timeout = in.Timeout
	if inst.Timeout == 0 {
		inst.Timeout = 5 * time.Minute
	}
	rel, err := inst.RunWithContext(ctx, c, vals)
	if err != nil {
		return rel, fmt.Errorf("helm install %s into namespace %s: %w", name, ns, err)
	}
	return rel, nil
}

// UninstallChart uninstalls release name from namespace, as `helm uninstall --wait` does; the CRDs
// stay when the chart's crds.keep is true (the default).
func UninstallChart(kubeconfig []byte, namespace, name string) error {
	dir, err := os.MkdirTemp("", "basalt-helm-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	cfg, err := helmConfig(kubeconfig, namespace, dir, func(string, ...any) {})
	if err != nil {
		return err
	}
	u := action.NewUninstall(cfg)
	u.Wait, u.Timeout = true, 2*time.Minute
	if _, err := u.Run(name); err != nil {
		return fmt.Errorf("helm uninstall %s: %w", name, err)
	}
	return nil
}

func withDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// BuildImage runs hack/image.sh (make image: the manager image from scratch, no registry) and
// returns its IMAGE and IMAGE_TAR.
func BuildImage(t testing.TB) (image, tarball string) {
	t.Helper()
	cmd := exec.Command(filepath.Join(envtest.RepoRoot(), "hack", "image.sh"))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("hack/image.sh: %v\n%s", err, stderr.String())
	}
	for _, l := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(l, "IMAGE="); ok {
			image = v
		}
		if v, ok := strings.CutPrefix(l, "IMAGE_TAR="); ok {
			tarball = v
		}
	}
	if image == "" || tarball == "" {
		t.Fatalf("hack/image.sh printed no IMAGE= or IMAGE_TAR=:\n%s", out)
	}
	return image, tarball
}
