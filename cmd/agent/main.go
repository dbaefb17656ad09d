// Command agent is Basalt's node agent. It registers the host with the manager using its
// one-time bootstrap token, then long-polls for the host's Plan, applies it (files, artifacts,
// services under systemd or its own supervisor, routes, images), reports status and hardware,
// and runs the node-local API server load balancer. See docs/agent.md.
//
// Build it static: CGO_ENABLED=0 go build -ldflags "-X main.version=$(git describe)" ./cmd/agent
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/basalt-dev/basalt/agents/agent"
	"github.com/basalt-dev/basalt/agents/inspect"
	"github.com/basalt-dev/basalt/agents/lb"
	"github.com/basalt-dev/basalt/agents/protocol"
	"github.com/basalt-dev/basalt/agents/vip"
)

// version is set with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	var (
		o                    agent.Options
		backends, logLevel   string
		logMaxMiB            int64
		showVersion, inspOut bool
	)
	flag.StringVar(&o.BootstrapPath, "bootstrap", protocol.BootstrapPath, "Bootstrap file (server, pinned CA, one-time token); deleted after registration.")
	flag.StringVar(&o.StateDir, "state-dir", protocol.StateDir, "State folder: key, certificate, pinned CA, Plan records, service records.")
	flag.StringVar(&o.Runtime, "runtime", agent.RuntimeAuto, "Service runtime: auto (systemd when it is PID 1), systemd or supervisor.")
	flag.StringVar(&o.UnitDir, "unit-dir", "/etc/systemd/system", "Folder of the systemd units (systemd runtime).")
	flag.StringVar(&o.LogDir, "log-dir", "/var/log/basalt", "Folder of the service logs (supervisor runtime).")
	flag.Int64Var(&logMaxMiB, "log-max-size", 10, "Rotate a service log larger than this many MiB (supervisor runtime).")
	flag.IntVar(&o.LogKeep, "log-keep", 5, "Rotated logs kept per service (supervisor runtime).")
	flag.DurationVar(&o.StopGrace, "stop-grace", 0, "Time between SIGTERM and SIGKILL when a service stops (default 10s supervisor, 30s systemd).")
	flag.StringVar(&o.Ctr, "ctr", "", "ctr command for image imports (default: the Plan's artifact named ctr).")
	flag.DurationVar(&o.PlanWait, "plan-wait", 30*time.Second, "Long-poll duration for a new Plan.")
	flag.DurationVar(&o.StatusInterval, "status-interval", 15*time.Second, "Heartbeat period: status with component health and hardware.")
	flag.DurationVar(&o.DependencyTimeout, "dependency-timeout", 2*time.Minute, "How long a service waits for its dependencies' probes before its start fails.")
	flag.DurationVar(&o.BackoffMax, "backoff-max", time.Minute, "Longest delay between retries (registration, polling, applying, service restarts).")
	flag.StringVar(&o.LBConfig, "lb-config", lb.DefaultConfigPath, `Load balancer configuration file the Plan writes ({"listen","backends"}); "-" turns the load balancer off.`)
	flag.StringVar(&o.VIPConfig, "vip-config", vip.DefaultConfigPath, `Control-plane virtual IP configuration file the Plan writes; "-" turns the virtual IP off.`)
	flag.StringVar(&o.LBListen, "lb-listen", lb.DefaultListen, "Load balancer listening address when --lb-backends is set.")
	flag.StringVar(&backends, "lb-backends", "", "Comma-separated API servers (host:port); when set, used instead of --lb-config.")
	flag.StringVar(&logLevel, "log-level", "info", "Log level: debug, info, warn or error.")
	flag.BoolVar(&showVersion, "version", false, "Print the version and exit.")
	flag.BoolVar(&inspOut, "inspect", false, "Print this host's hardware facts as JSON and exit.")
	flag.Parse()

	if showVersion {
		fmt.Println(version)
		return
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(logLevel)); err != nil {
		fmt.Fprintln(os.Stderr, "agent: --log-level:", err)
		os.Exit(2)
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	slog.SetDefault(log)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	if inspOut {
		hw, err := inspect.Inspector{}.Inspect(ctx)
		if err != nil {
			log.Error("Cannot inspect the hardware", "error", err)
			os.Exit(1)
		}
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(hw)
		return
	}

	o.Version = version
	o.LogMaxBytes = logMaxMiB << 20
	if backends != "" {
		o.LBBackends = strings.Split(backends, ",")
	}
	o.Logger = log
	log.Info("Starting basalt-agent", "version", version, "stateDir", o.StateDir, "runtime", o.Runtime)
	if err := agent.Run(ctx, o); err != nil && ctx.Err() == nil {
		log.Error("Agent stopped", "error", err)
		os.Exit(1)
	}
	log.Info("Agent stopped; services keep running")
}
