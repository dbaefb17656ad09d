// Package envtest starts a real kube-apiserver and etcd, built from Go modules by
// hack/build-artifacts.sh, with Basalt's CRDs installed, for integration tests.
//
// The binaries are found through KUBEBUILDER_ASSETS, which `make test` sets to the artifact set's
// bin folder. Nothing is ever downloaded: a missing binary fails the test with the command that
// builds it.
package envtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kruntime "k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	crenvtest "sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
)

// Env is a running API server with Basalt's CRDs.
type Env struct {
	// Config reaches the API server as an administrator.
	Config *rest.Config
	// Client is an uncached client for assertions.
	Client client.Client
	// Scheme knows the core and Basalt types.
	Scheme *kruntime.Scheme

	env     *crenvtest.Environment
	certDir string
}

// RepoRoot returns the root of the Basalt repository.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// Main is a test package's TestMain: it starts the API server into *env, runs the tests, stops it
// and exits with the tests' code. A start failure exits 1 with the reason (never a skip).
func Main(m *testing.M, env **Env) {
	e, err := Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	*env = e
	code := m.Run()
	if err := e.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "stopping envtest:", err)
	}
	os.Exit(code)
}

// Start starts kube-apiserver and etcd with the CRDs from config/crd/bases installed. Call Stop
// when done (TestMain).
func Start() (*Env, error) {
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		return nil, fmt.Errorf("KUBEBUILDER_ASSETS is not set: run the tests with `make test`, or build the binaries with `make envtest-assets` and set KUBEBUILDER_ASSETS to the bin folder it prints")
	}
	for _, b := range []string{"kube-apiserver", "etcd"} {
		if _, err := os.Stat(filepath.Join(assets, b)); err != nil {
			return nil, fmt.Errorf("%s is missing from KUBEBUILDER_ASSETS=%s: run `make envtest-assets`: %w", b, assets, err)
		}
	}
	ctrl.SetLogger(zap.New(zap.UseDevMode(true), zap.WriteTo(os.Stderr)))
	scheme := kruntime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(basaltv1.AddToScheme(scheme))

	env := &crenvtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join(RepoRoot(), "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
		BinaryAssetsDirectory: assets,
		Scheme:                scheme,
	}
	// The Clusters the tests make use the default service range, and their add-ons apply the
	// kube-dns Service at its tenth address into this API server (their "workload cluster").
	env.ControlPlane.GetAPIServer().Configure().Set("service-cluster-ip-range", "10.96.0.0/12")
	// A certificate folder of our own, which the API server does not replace when it restarts, so
	// that RestartAPIServer keeps its serving certificate and the clients it trusts.
	certDir, err := os.MkdirTemp("", "basalt-envtest-apiserver-")
	if err != nil {
		return nil, err
	}
	env.ControlPlane.GetAPIServer().CertDir = certDir
	cfg, err := env.Start()
	if err != nil {
		_ = os.RemoveAll(certDir)
		return nil, fmt.Errorf("starting kube-apiserver and etcd from %s: %w", assets, err)
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		_ = env.Stop()
		_ = os.RemoveAll(certDir)
		return nil, err
	}
	return &Env{Config: cfg, Client: c, Scheme: scheme, env: env, certDir: certDir}, nil
}

// Stop stops the API server and etcd.
func (e *Env) Stop() error {
	err := e.env.Stop()
	if rerr := os.RemoveAll(e.certDir); err == nil {
		err = rerr
	}
	return err
}

// RestartAPIServer crashes kube-apiserver (SIGKILL: no request is drained, no watch closed
// cleanly) and starts it again on the same address, certificates and etcd; clients keep working
// once it answers again. (A graceful SIGTERM stop did not finish within 2 minutes while a manager
// was creating a Cluster through it, so the restart a test can rely on is the crash.)
func (e *Env) RestartAPIServer() error {
	pid, err := e.apiServerPID()
	if err != nil {
		return err
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		return fmt.Errorf("killing kube-apiserver (pid %d): %w", pid, err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; {
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("kube-apiserver (pid %d) survived SIGKILL for 30 s", pid)
		}
		time.Sleep(50 * time.Millisecond)
	}
	api := e.env.ControlPlane.GetAPIServer()
	_ = api.Stop() // the process is gone: this only resets envtest's bookkeeping
	if err := api.Start(); err != nil {
		return fmt.Errorf("starting kube-apiserver again: %w", err)
	}
	return nil
}

// apiServerPID finds this Env's kube-apiserver by its certificate folder, which only it uses.
func (e *Env) apiServerPID() (int, error) {
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	want := "--cert-dir=" + e.certDir
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", p.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(cmdline), "\x00")
		if len(args) > 0 && filepath.Base(args[0]) == "kube-apiserver" && slices.Contains(args, want) {
			return pid, nil
		}
	}
	return 0, fmt.Errorf("no kube-apiserver process with %s", want)
}

// AdminKubeconfig is a kubeconfig of a new system:masters user named name, for a program that runs
// outside the test's process (a manager started from its binary).
func (e *Env) AdminKubeconfig(name string) ([]byte, error) {
	u, err := e.env.AddUser(crenvtest.User{Name: name, Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return nil, err
	}
	return u.KubeConfig()
}

// NewManager returns a manager for e with metrics and probes off, ready for controllers to be
// added; start it with StartManager.
func (e *Env) NewManager() (ctrl.Manager, error) {
	return ctrl.NewManager(e.Config, ctrl.Options{
		Scheme:                 e.Scheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
	})
}

// StartManager runs mgr until the test ends, or until stop is called (it waits for the
// manager to stop; calling it again does nothing).
func StartManager(t testing.TB, mgr ctrl.Manager) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("manager stopped with an error: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// Namespace creates a fresh namespace for one test and returns its name.
func (e *Env) Namespace(t testing.TB) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "t-"}}
	if err := e.Client.Create(context.Background(), ns); err != nil {
		t.Fatalf("creating a namespace: %v", err)
	}
	return ns.Name
}

// Eventually polls check every 100ms until it returns nil or timeout passes, then fails the test
// with the last error. The timeout bounds a wait on a real server, it asserts no speed.
func Eventually(t testing.TB, timeout time.Duration, check func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met after %s: %v", timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Condition returns condition t of obj, or an error saying it is missing.
func Condition(conds []metav1.Condition, t string) (*metav1.Condition, error) {
	c := meta.FindStatusCondition(conds, t)
	if c == nil {
		return nil, fmt.Errorf("condition %s is not set (have %v)", t, conds)
	}
	return c, nil
}

// ControllerOptions are the controller options for tests: several managers in one test binary
// register controllers with the same names, which controller-runtime refuses unless told.
func ControllerOptions() controller.Options {
	return controller.Options{SkipNameValidation: ptr.To(true)}
}

// Gone returns a check for Eventually that passes once obj no longer exists.
func (e *Env) Gone(obj client.Object) func() error {
	return func() error {
		err := e.Client.Get(context.Background(), client.ObjectKeyFromObject(obj), obj.DeepCopyObject().(client.Object))
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return err
		}
		return fmt.Errorf("%s %s still exists", obj.GetObjectKind().GroupVersionKind().Kind, obj.GetName())
	}
}
