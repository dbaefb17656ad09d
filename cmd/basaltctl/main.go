// Command basaltctl looks at and acts on Basalt Clusters, Machines and Hosts: get a Cluster's
// kubeconfig, describe a Cluster as a tree, accept or reprovision a Host. Installed as
// kubectl-basalt on the PATH it is also the kubectl plugin `kubectl basalt`.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/basalt-dev/basalt/cmd/basaltctl/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
