// Command demo runs Basalt's main job on this machine: a local management plane (etcd and
// kube-apiserver built from Go modules, Basalt's CRDs, the manager), local hosts (containers with
// their own addresses and sshd, from the node image), the hosts registered as Host objects, and
// then a Cluster applied and waited for.
//
//	go run ./hack/demo up     # what `make demo` runs
//	go run ./hack/demo down   # what `make demo-down` runs
//
// Each stage reuses what a previous run finished, and a failed stage names itself and how to
// retry. Stages that Basalt cannot do yet are not faked: the demo stops there and says so.
package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
)

// config is what the demo is run with, from the environment.
type config struct {
	// root is the repository root.
	root string
	// dir holds the demo's state: certificates, data, logs, pid files, kubeconfig.
	dir string
	// cache is $BASALT_CACHE.
	cache string
	// version is the Kubernetes version of the workload cluster.
	version string
	// controlPlanes and workers size the demo cluster; hosts = controlPlanes + workers.
	controlPlanes, workers int
}

func loadConfig() (*config, error) {
	root, err := os.Getwd()
	if err != nil {
		return nil, err
	}
	c := &config{
		root:          root,
		dir:           envOr("BASALT_DEMO_DIR", filepath.Join(root, ".demo")),
		cache:         envOr("BASALT_CACHE", filepath.Join(os.Getenv("HOME"), ".cache", "basalt")),
		version:       envOr("KUBE_VERSION", "v1.37.2"),
		controlPlanes: 1,
		workers:       1,
	}
	if c.controlPlanes, err = strconv.Atoi(envOr("DEMO_CONTROL_PLANES", "1")); err != nil || c.controlPlanes%2 == 0 || c.controlPlanes < 1 {
		return nil, fmt.Errorf("DEMO_CONTROL_PLANES must be 1, 3, 5 or 7, not %q", os.Getenv("DEMO_CONTROL_PLANES"))
	}
	if c.workers, err = strconv.Atoi(envOr("DEMO_WORKERS", "1")); err != nil || c.workers < 0 {
		return nil, fmt.Errorf("DEMO_WORKERS must be a number of workers, not %q", os.Getenv("DEMO_WORKERS"))
	}
	return c, nil
}

func main() {
	if len(os.Args) != 2 || (os.Args[1] != "up" && os.Args[1] != "down") {
		fmt.Fprintln(os.Stderr, "usage: go run ./hack/demo up|down")
		os.Exit(2)
	}
	cfg, err := loadConfig()
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(2)
	}
	ctrllog.SetLogger(logr.Discard())
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	if os.Args[1] == "down" {
		err = down(ctx, cfg)
	} else {
		err = up(ctx, cfg)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

// stage is one step of the demo.
type stage struct {
	name string
	run  func(ctx context.Context, cfg *config, st *state) error
}

// state carries what earlier stages produced to later ones.
type state struct {
	kubeconfig string
	hosts      []demoHost
	// gateway is this machine's address on the hosts' network: where they reach the agent API.
	gateway string
	// workloadKubeconfig is the demo cluster's admin kubeconfig, once it is Ready.
	workloadKubeconfig string
	// clusterReadyAfter is how long the Cluster took from applied to Ready.
	clusterReadyAfter time.Duration
}

func up(ctx context.Context, cfg *config) error {
	start := time.Now()
	if err := os.MkdirAll(cfg.dir, 0o755); err != nil {
		return err
	}
	st := &state{}
	stages := []stage{
		{"artifacts", buildArtifacts},
		{"node image", buildNodeImage},
		{"management plane", func(ctx context.Context, cfg *config, st *state) error {
			var err error
			st.kubeconfig, err = startManagementPlane(ctx, cfg.dir, filepath.Join(cfg.cache, "artifacts", cfg.version, "bin"))
			return err
		}},
		{"CRDs", installCRDs},
		{"hosts", startHosts},
		{"manager", startManager},
		{"agents", waitHostsAvailable},
		{"cluster", applyCluster},
	}
	for i, s := range stages {
		t := time.Now()
		logf("== Stage %d/%d: %s", i+1, len(stages), s.name)
		if err := s.run(ctx, cfg, st); err != nil {
			var ny notYet
			if errors.As(err, &ny) {
				logf("%v", err)
				printUsage(cfg, st, time.Since(start))
				return nil
			}
			return fmt.Errorf("stage %q failed: %w\nRerun `make demo` to retry: finished stages are reused", s.name, err)
		}
		logf("Stage %s done in %s", s.name, time.Since(t).Round(100*time.Millisecond))
	}
	printUsage(cfg, st, time.Since(start))
	return nil
}

// notYet is returned by a stage Basalt cannot do yet; the demo stops there, successfully and
// honestly.
type notYet string

func (n notYet) Error() string { return string(n) }

func buildArtifacts(ctx context.Context, cfg *config, _ *state) error {
	return run(ctx, cfg.root, filepath.Join(cfg.root, "hack", "build-artifacts.sh"), cfg.version)
}

func buildNodeImage(ctx context.Context, cfg *config, _ *state) error {
	return run(ctx, cfg.root, filepath.Join(cfg.root, "hack", "node-image.sh"))
}

func startManager(ctx context.Context, cfg *config, st *state) error {
	bin := filepath.Join(cfg.dir, "bin", "manager")
	agent := filepath.Join(cfg.dir, "bin", "basalt-agent")
	for out, pkg := range map[string]string{bin: "./cmd/manager", agent: "./cmd/agent"} {
		cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", "-s -w", "-o", out, pkg)
		cmd.Dir, cmd.Stdout, cmd.Stderr = cfg.root, os.Stdout, os.Stderr
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("building %s: %w", pkg, err)
		}
	}
	if err := ensureNamespace(ctx, st.kubeconfig, managerNamespace); err != nil {
		return err
	}
	if pid, ok := running(cfg.dir, "manager"); ok {
		// A rebuilt manager must replace the running one.
		logf("Restarting the manager (pid %d) with the fresh build", pid)
		if err := stopDetached(cfg.dir, "manager"); err != nil {
			return err
		}
	}
	if err := startDetached(cfg.dir, "manager", bin,
		"--kubeconfig="+st.kubeconfig, "--leader-elect=false",
		"--health-probe-bind-address=127.0.0.1:"+strconv.Itoa(managerProbe),
		"--metrics-bind-address=127.0.0.1:"+strconv.Itoa(managerMetrics),
		"--namespace="+managerNamespace,
		"--agent-api-bind-address="+net.JoinHostPort(st.gateway, strconv.Itoa(agentAPIPort)),
		"--agent-api-addresses="+st.gateway,
		"--agent-binary="+agent,
		"--artifact-sets="+filepath.Join(cfg.cache, "artifacts", cfg.version),
		"--artifact-cache-dir="+filepath.Join(cfg.dir, "artifact-cache"),
	); err != nil {
		return err
	}
	return poll(ctx, time.Minute, func() error {
		resp, err := http.Get("http://127.0.0.1:" + strconv.Itoa(managerProbe) + "/readyz")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("manager /readyz: %s (log: %s)", resp.Status, filepath.Join(cfg.dir, "logs", "manager.log"))
		}
		return nil
	})
}

func down(ctx context.Context, cfg *config) error {
	var errs []error
	if err := stopHosts(ctx, cfg); err != nil {
		errs = append(errs, err)
	}
	for _, name := range []string{"manager", "kube-apiserver", "etcd"} {
		if err := stopDetached(cfg.dir, name); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) == 0 {
		if err := os.RemoveAll(cfg.dir); err != nil {
			errs = append(errs, err)
		}
		logf("Removed %s; the demo is gone (artifacts and the node image stay cached in %s)", cfg.dir, cfg.cache)
	}
	return errors.Join(errs...)
}

func printUsage(cfg *config, st *state, took time.Duration) {
	if st.kubeconfig == "" {
		return
	}
	fmt.Printf(`
The management plane is up (%s in all). Look around:

  export KUBECONFIG=%s
  kubectl get basalt                 # Clusters, Machines and Hosts
  kubectl get hosts -o wide
  kubectl get host %s -o yaml     # conditions say what happens next, and why
`, took.Round(time.Second), st.kubeconfig, firstHost(st))
	if st.workloadKubeconfig != "" {
		fmt.Printf(`
Cluster %s was Ready %s after it was applied. Use it:

  kubectl --kubeconfig %s get nodes -o wide
  kubectl --kubeconfig %s run web --image=basalt.dev/webserver:v1 --image-pull-policy=Never
`, demoCluster, st.clusterReadyAfter.Round(time.Second), st.workloadKubeconfig, st.workloadKubeconfig)
	}
	fmt.Printf("\nLogs: %s/logs   Remove everything: make demo-down\n", cfg.dir)
}

func run(ctx context.Context, dir, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir, cmd.Stdout, cmd.Stderr = dir, os.Stdout, os.Stderr
	return cmd.Run()
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func logf(format string, args ...any) {
	fmt.Printf("%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

func firstHost(st *state) string {
	if len(st.hosts) == 0 {
		return "NAME"
	}
	return st.hosts[0].Name
}
