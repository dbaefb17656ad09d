package cli_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
	"github.com/basalt-dev/basalt/cmd/basaltctl/internal/cli"
	"github.com/basalt-dev/basalt/test/envtest"
)

var env *envtest.Env

func TestMain(m *testing.M) {
	envtest.Main(m, &env)
}

// writeKubeconfig writes a kubeconfig file for cfg whose current context works in namespace, plus
// a context "elsewhere" that points at a server nobody listens on.
func writeKubeconfig(t *testing.T, cfg *rest.Config, namespace string) string {
	t.Helper()
	kc := clientcmdapi.NewConfig()
	kc.Clusters["envtest"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.Clusters["nowhere"] = &clientcmdapi.Cluster{Server: "https://127.0.0.1:1", CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos["admin"] = &clientcmdapi.AuthInfo{ClientCertificateData: cfg.CertData, ClientKeyData: cfg.KeyData, Token: cfg.BearerToken}
	kc.Contexts["envtest"] = &clientcmdapi.Context{Cluster: "envtest", AuthInfo: "admin", Namespace: namespace}
	kc.Contexts["elsewhere"] = &clientcmdapi.Context{Cluster: "nowhere", AuthInfo: "admin", Namespace: namespace}
	kc.CurrentContext = "envtest"
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		t.Fatal(err)
	}
	return path
}

type result struct {
	code        int
	out, errOut string
}

// run runs basaltctl with args, as the binary would.
func run(args ...string) result {
	var out, errOut bytes.Buffer
	code := cli.Main(context.Background(), append([]string{"basaltctl"}, args...), &out, &errOut)
	return result{code, out.String(), errOut.String()}
}

func mustCreate(t *testing.T, obj client.Object) {
	t.Helper()
	if err := env.Client.Create(context.Background(), obj); err != nil {
		t.Fatalf("creating %s: %v", obj.GetName(), err)
	}
}

func newCluster(ns, name string) *basaltv1.Cluster {
	return &basaltv1.Cluster{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: basaltv1.ClusterSpec{Version: "v1.37.2"}}
}

const adminKubeconfig = "apiVersion: v1\nkind: Config\nclusters:\n- name: prod\n  cluster:\n    server: https://10.0.0.11:6443\n"

func TestGetKubeconfig(t *testing.T) {
	ns := env.Namespace(t)
	kc := writeKubeconfig(t, env.Config, ns)
	mustCreate(t, newCluster(ns, "prod"))
	mustCreate(t, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "prod-kubeconfig"},
		Data: map[string][]byte{"value": []byte(adminKubeconfig)}})

	t.Run("stdout", func(t *testing.T) {
		r := run("--kubeconfig", kc, "get", "kubeconfig", "prod")
		if r.code != 0 || r.out != adminKubeconfig {
			t.Fatalf("exit %d, stdout %q, stderr %q", r.code, r.out, r.errOut)
		}
	})
	t.Run("file is private and replaced atomically", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "prod.kubeconfig")
		if err := os.WriteFile(path, []byte("old, world-readable"), 0o644); err != nil {
			t.Fatal(err)
		}
		r := run("--kubeconfig", kc, "get", "kubeconfig", "prod", "-o", path)
		if r.code != 0 || r.out != "" {
			t.Fatalf("exit %d, stdout %q, stderr %q", r.code, r.out, r.errOut)
		}
		got, err := os.ReadFile(path)
		if err != nil || string(got) != adminKubeconfig {
			t.Fatalf("file holds %q (%v)", got, err)
		}
		fi, _ := os.Stat(path)
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("mode %v, want 0600", fi.Mode().Perm())
		}
		if left, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".*tmp*")); len(left) > 0 {
			t.Errorf("temporary files left: %v", left)
		}
	})
	t.Run("secret named in status", func(t *testing.T) {
		c := newCluster(ns, "renamed")
		mustCreate(t, c)
		c.Status.KubeconfigSecretRef = &basaltv1.LocalObjectReference{Name: "custom"}
		if err := env.Client.Status().Update(context.Background(), c); err != nil {
			t.Fatal(err)
		}
		mustCreate(t, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "custom"},
			Data: map[string][]byte{"value": []byte("custom")}})
		if r := run("--kubeconfig", kc, "get", "kubeconfig", "renamed"); r.code != 0 || r.out != "custom" {
			t.Fatalf("exit %d, stdout %q, stderr %q", r.code, r.out, r.errOut)
		}
	})
	t.Run("errors", func(t *testing.T) {
		mustCreate(t, newCluster(ns, "young"))
		mustCreate(t, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "odd-kubeconfig"},
			Data: map[string][]byte{"kubeconfig": []byte("x")}})
		mustCreate(t, newCluster(ns, "odd"))
		for _, tc := range []struct {
			args []string
			code int
			want string
		}{
			{[]string{"get", "kubeconfig", "nope"}, 1, fmt.Sprintf(`no Cluster "nope" in namespace %q`, ns)},
			{[]string{"get", "kubeconfig", "young"}, 1, "cluster young has no kubeconfig yet: Secret " + ns + "/young-kubeconfig does not exist"},
			{[]string{"get", "kubeconfig", "odd"}, 1, `has no key "value"`},
			{[]string{"get", "kubeconfig"}, 2, "basaltctl get kubeconfig takes 1 argument(s), CLUSTER; got 0"},
			{[]string{"get", "kubeconfig", "prod", "-o", "/nonexistent-dir/x"}, 1, "writing /nonexistent-dir/x"},
			{[]string{"--context", "elsewhere", "get", "kubeconfig", "prod"}, 1, "127.0.0.1:1"},
			{[]string{"--context", "missing", "get", "kubeconfig", "prod"}, 1, `context "missing" does not exist`},
		} {
			r := run(append([]string{"--kubeconfig", kc, "--request-timeout", "5s"}, tc.args...)...)
			if r.code != tc.code || !strings.Contains(r.errOut, tc.want) {
				t.Errorf("%v: exit %d, stderr %q; want exit %d and %q", tc.args, r.code, r.errOut, tc.code, tc.want)
			}
		}
	})
}

func TestNamespaceFlagWinsOverContext(t *testing.T) {
	ns, other := env.Namespace(t), env.Namespace(t)
	kc := writeKubeconfig(t, env.Config, other) // the context's namespace has no Cluster
	mustCreate(t, newCluster(ns, "prod"))
	mustCreate(t, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "prod-kubeconfig"},
		Data: map[string][]byte{"value": []byte(adminKubeconfig)}})
	if r := run("--kubeconfig", kc, "get", "kubeconfig", "prod"); r.code != 1 {
		t.Fatalf("found a Cluster in the context's namespace %s: exit %d", other, r.code)
	}
	if r := run("--kubeconfig", kc, "-n", ns, "get", "kubeconfig", "prod"); r.code != 0 || r.out != adminKubeconfig {
		t.Fatalf("-n %s: exit %d, stderr %q", ns, r.code, r.errOut)
	}
	// KUBECONFIG is read like kubectl reads it.
	t.Setenv("KUBECONFIG", kc)
	if r := run("--namespace", ns, "get", "kubeconfig", "prod"); r.code != 0 || r.out != adminKubeconfig {
		t.Fatalf("KUBECONFIG: exit %d, stderr %q", r.code, r.errOut)
	}
}

func TestHostAccept(t *testing.T) {
	ns := env.Namespace(t)
	kc := writeKubeconfig(t, env.Config, ns)
	h := &basaltv1.Host{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "host-52-54-00-12-34-56", Labels: map[string]string{basaltv1.LabelDiscovered: "true"}},
		Spec: basaltv1.HostSpec{Accepted: ptr.To(false),
			Boot: &basaltv1.BootSpec{MACAddresses: []string{"52:54:00:12:34:56"}}},
	}
	mustCreate(t, h)

	r := run("--kubeconfig", kc, "host", "accept", h.Name)
	if r.code != 0 || !strings.Contains(r.out, "accepted") {
		t.Fatalf("exit %d, stdout %q, stderr %q", r.code, r.out, r.errOut)
	}
	got := &basaltv1.Host{}
	if err := env.Client.Get(context.Background(), client.ObjectKeyFromObject(h), got); err != nil {
		t.Fatal(err)
	}
	if !got.Spec.IsAccepted() || got.Spec.Accepted == nil {
		t.Fatalf("spec.accepted = %v after accept", got.Spec.Accepted)
	}
	if r := run("--kubeconfig", kc, "host", "accept", h.Name); r.code != 0 || !strings.Contains(r.out, "already accepted") {
		t.Fatalf("second accept: exit %d, stdout %q", r.code, r.out)
	}
	if r := run("--kubeconfig", kc, "host", "accept", "nope"); r.code != 1 || !strings.Contains(r.errOut, `no Host "nope"`) {
		t.Fatalf("missing host: exit %d, stderr %q", r.code, r.errOut)
	}
}

func TestHostReprovision(t *testing.T) {
	ns := env.Namespace(t)
	kc := writeKubeconfig(t, env.Config, ns)
	h := &basaltv1.Host{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "rack1-node4"},
		Spec: basaltv1.HostSpec{SSH: &basaltv1.SSHSpec{Address: "10.0.0.4",
			PrivateKeySecretRef: basaltv1.SecretKeyReference{Name: "ssh", Key: "id"}}},
	}
	mustCreate(t, h)
	h.Status.ConsumerRef = &basaltv1.LocalObjectReference{Name: "prod-cp-a"}
	if err := env.Client.Status().Update(context.Background(), h); err != nil {
		t.Fatal(err)
	}

	if r := run("--kubeconfig", kc, "host", "reprovision", h.Name); r.code != 1 || !strings.Contains(r.errOut, "runs Machine prod-cp-a") {
		t.Fatalf("a Host in use was not refused: exit %d, stderr %q", r.code, r.errOut)
	}
	annotation := func() string {
		got := &basaltv1.Host{}
		if err := env.Client.Get(context.Background(), client.ObjectKeyFromObject(h), got); err != nil {
			t.Fatal(err)
		}
		return got.Annotations[basaltv1.AnnotationReprovision]
	}
	if a := annotation(); a != "" {
		t.Fatalf("refused request left annotation %q", a)
	}

	// The request is stamped with the command's clock.
	var out, errOut bytes.Buffer
	o := &cli.Options{Streams: cli.Streams{Out: &out, ErrOut: &errOut},
		Now: func() time.Time { return time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC) }}
	cmd := cli.NewCommand("basaltctl", o)
	cmd.SetArgs([]string{"--kubeconfig", kc, "host", "reprovision", h.Name, "--force"})
	if err := cmd.ExecuteContext(context.Background()); err != nil {
		t.Fatalf("reprovision --force: %v (%s)", err, errOut.String())
	}
	if a := annotation(); a != "2026-03-01T12:00:00Z" {
		t.Fatalf("annotation %s = %q, want the request time", basaltv1.AnnotationReprovision, a)
	}
	if !strings.Contains(out.String(), "reprovisioning requested") {
		t.Errorf("stdout %q", out.String())
	}
}

// TestHostConfirmWiped: only a Host that waits for its wipe takes the confirmation, stamped with
// the command's clock; a Host in use or Available is refused with the reason.
func TestHostConfirmWiped(t *testing.T) {
	ns := env.Namespace(t)
	kc := writeKubeconfig(t, env.Config, ns)
	h := &basaltv1.Host{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "rack1-node5"},
		Spec: basaltv1.HostSpec{SSH: &basaltv1.SSHSpec{Address: "10.0.0.5",
			PrivateKeySecretRef: basaltv1.SecretKeyReference{Name: "ssh", Key: "id"}}},
	}
	mustCreate(t, h)
	setStatus := func(state basaltv1.HostState, consumer string) {
		t.Helper()
		if err := env.Client.Get(context.Background(), client.ObjectKeyFromObject(h), h); err != nil {
			t.Fatal(err)
		}
		h.Status.State, h.Status.ConsumerRef = state, nil
		if consumer != "" {
			h.Status.ConsumerRef = &basaltv1.LocalObjectReference{Name: consumer}
		}
		if err := env.Client.Status().Update(context.Background(), h); err != nil {
			t.Fatal(err)
		}
	}
	setStatus(basaltv1.HostStateProvisioned, "prod-w-a")
	if r := run("--kubeconfig", kc, "host", "confirm-wiped", h.Name); r.code != 1 || !strings.Contains(r.errOut, "runs Machine prod-w-a") {
		t.Fatalf("a Host in use was not refused: exit %d, stderr %q", r.code, r.errOut)
	}
	setStatus(basaltv1.HostStateAvailable, "")
	if r := run("--kubeconfig", kc, "host", "confirm-wiped", h.Name); r.code != 1 || !strings.Contains(r.errOut, "is Available: only an Unwiped Host") {
		t.Fatalf("an Available Host was not refused: exit %d, stderr %q", r.code, r.errOut)
	}
	setStatus(basaltv1.HostStateUnwiped, "")
	var out, errOut bytes.Buffer
	o := &cli.Options{Streams: cli.Streams{Out: &out, ErrOut: &errOut},
		Now: func() time.Time { return time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC) }}
	cmd := cli.NewCommand("basaltctl", o)
	cmd.SetArgs([]string{"--kubeconfig", kc, "host", "confirm-wiped", h.Name})
	if err := cmd.ExecuteContext(context.Background()); err != nil {
		t.Fatalf("confirm-wiped: %v (%s)", err, errOut.String())
	}
	got := &basaltv1.Host{}
	if err := env.Client.Get(context.Background(), client.ObjectKeyFromObject(h), got); err != nil {
		t.Fatal(err)
	}
	if a := got.Annotations[basaltv1.AnnotationConfirmWiped]; a != "2026-03-01T12:00:00Z" {
		t.Fatalf("annotation %s = %q, want the request time", basaltv1.AnnotationConfirmWiped, a)
	}
	if !strings.Contains(out.String(), "wipe confirmed") {
		t.Errorf("stdout %q", out.String())
	}
}

func TestDisplayName(t *testing.T) {
	for argv0, want := range map[string]string{
		"basaltctl":                     "basaltctl",
		"/usr/local/bin/basaltctl":      "basaltctl",
		"/usr/local/bin/kubectl-basalt": "kubectl basalt",
		"kubectl-basalt.exe":            "kubectl basalt",
	} {
		if got := cli.DisplayName(argv0); got != want {
			t.Errorf("DisplayName(%q) = %q, want %q", argv0, got, want)
		}
	}
}

// TestKubectlPlugin builds basaltctl, installs it as kubectl-basalt on the PATH and runs it
// through the kubectl on the PATH, as a user would: `kubectl basalt describe cluster`.
func TestKubectlPlugin(t *testing.T) {
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Fatalf("kubectl is not on the PATH; it is needed to prove basaltctl works as a kubectl plugin: %v", err)
	}
	ns := env.Namespace(t)
	kc := writeKubeconfig(t, env.Config, ns)
	mustCreate(t, newCluster(ns, "prod"))

	bin := t.TempDir()
	build := exec.Command("go", "build", "-o", filepath.Join(bin, cli.PluginName), "github.com/basalt-dev/basalt/cmd/basaltctl")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building basaltctl: %v\n%s", err, out)
	}
	kubectlRun := func(args ...string) (string, error) {
		cmd := exec.Command(kubectl, args...)
		cmd.Env = append(os.Environ(), "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"), "KUBECONFIG="+kc)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := kubectlRun("basalt", "describe", "cluster", "prod")
	if err != nil || !strings.HasPrefix(out, "Cluster prod  -  v1.37.2 (pending)") {
		t.Fatalf("kubectl basalt describe cluster: %v\n%s", err, out)
	}
	out, err = kubectlRun("basalt", "--help")
	if err != nil || !strings.Contains(out, "kubectl basalt [command]") {
		t.Fatalf("kubectl basalt --help does not call itself kubectl basalt: %v\n%s", err, out)
	}
}

// TestRequestsAreAnnotations: host power-cycle and cluster renew-certificates /
// rotate-encryption-key write their request annotation with the command's clock; a Host without
// a BMC and a missing Cluster are refused with a message and exit 1, writing nothing.
func TestRequestsAreAnnotations(t *testing.T) {
	ns := env.Namespace(t)
	kc := writeKubeconfig(t, env.Config, ns)
	noBMC := &basaltv1.Host{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "plain"},
		Spec: basaltv1.HostSpec{SSH: &basaltv1.SSHSpec{Address: "10.0.0.5", PrivateKeySecretRef: basaltv1.SecretKeyReference{Name: "ssh", Key: "id"}}}}
	mustCreate(t, noBMC)
	withBMC := &basaltv1.Host{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "rack1-node5"},
		Spec: basaltv1.HostSpec{SSH: &basaltv1.SSHSpec{Address: "10.0.0.6", PrivateKeySecretRef: basaltv1.SecretKeyReference{Name: "ssh", Key: "id"}},
			BMC: &basaltv1.BMCSpec{Protocol: basaltv1.BMCIPMI, Address: "10.0.1.6", CredentialsSecretRef: basaltv1.LocalObjectReference{Name: "bmc"}}}}
	mustCreate(t, withBMC)
	mustCreate(t, newCluster(ns, "prod"))

	at := time.Date(2026, 12, 7, 18, 30, 0, 0, time.UTC)
	exec := func(args ...string) (string, error) {
		var out, errOut bytes.Buffer
		o := &cli.Options{Streams: cli.Streams{Out: &out, ErrOut: &errOut}, Now: func() time.Time { return at }}
		cmd := cli.NewCommand("basaltctl", o)
		cmd.SetArgs(append([]string{"--kubeconfig", kc}, args...))
		err := cmd.ExecuteContext(context.Background())
		return out.String(), err
	}
	annotations := func(obj client.Object) map[string]string {
		if err := env.Client.Get(context.Background(), client.ObjectKeyFromObject(obj), obj); err != nil {
			t.Fatal(err)
		}
		return obj.GetAnnotations()
	}

	if r := run("--kubeconfig", kc, "host", "power-cycle", "plain"); r.code != 1 || !strings.Contains(r.errOut, "has no spec.bmc") {
		t.Errorf("power-cycle of a Host without a BMC: exit %d, stderr %q", r.code, r.errOut)
	}
	if a := annotations(noBMC)[basaltv1.AnnotationPowerCycle]; a != "" {
		t.Errorf("a refused power cycle wrote %q", a)
	}
	if out, err := exec("host", "power-cycle", "rack1-node5"); err != nil || !strings.Contains(out, "power cycle requested") {
		t.Fatalf("power-cycle: %v %q", err, out)
	}
	if a := annotations(withBMC)[basaltv1.AnnotationPowerCycle]; a != "2026-12-07T18:30:00Z" {
		t.Errorf("%s = %q, want the request time", basaltv1.AnnotationPowerCycle, a)
	}

	c := newCluster(ns, "prod")
	for cmd, key := range map[string]string{"renew-certificates": basaltv1.AnnotationRenewCertificates, "rotate-encryption-key": basaltv1.AnnotationRotateEncryptionKey} {
		if out, err := exec("cluster", cmd, "prod"); err != nil || !strings.Contains(out, cmd+" requested") {
			t.Fatalf("cluster %s: %v %q", cmd, err, out)
		}
		if a := annotations(c)[key]; a != "2026-12-07T18:30:00Z" {
			t.Errorf("cluster %s: %s = %q, want the request time", cmd, key, a)
		}
		if r := run("--kubeconfig", kc, "cluster", cmd, "nope"); r.code != 1 || !strings.Contains(r.errOut, `no Cluster "nope"`) {
			t.Errorf("cluster %s of a missing Cluster: exit %d, stderr %q", cmd, r.code, r.errOut)
		}
	}
	if r := run("--kubeconfig", kc, "cluster", "renew-certificates"); r.code != 2 {
		t.Errorf("cluster renew-certificates without NAME: exit %d, want 2 (usage)", r.code)
	}
}

// TestUnknownCommandsAreUsageErrors: a group run without a subcommand or with one it does not
// have, an unknown command and an unknown flag exit 2 with a message naming what exists, never
// cobra's help with exit 0 that a script would take for success.
func TestUnknownCommandsAreUsageErrors(t *testing.T) {
	for args, want := range map[string]string{
		"describe machine": `basaltctl describe has no "machine"; it has: cluster`,
		"describe":         "basaltctl describe needs one of: cluster",
		"host":             "basaltctl host needs one of: accept, confirm-wiped, power-cycle, reprovision",
		"cluster nuke":     `basaltctl cluster has no "nuke"`,
		"frobnicate":       `unknown command "frobnicate"`,
		"get --bogus":      "unknown flag: --bogus",
	} {
		r := run(strings.Fields(args)...)
		if r.code != 2 || !strings.Contains(r.errOut, want) || r.out != "" {
			t.Errorf("basaltctl %s: exit %d, stdout %q, stderr %q; want exit 2 and %q", args, r.code, r.out, r.errOut, want)
		}
	}
	if r := run("describe", "--help"); r.code != 0 || !strings.Contains(r.out, "Available Commands") {
		t.Errorf("describe --help: exit %d, stdout %q", r.code, r.out)
	}
}
