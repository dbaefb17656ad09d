package cli

import (
	"github.com/spf13/cobra"

	"github.com/basalt-dev/basalt/cmd/basaltctl/internal/describe"
)

func newDescribeCluster(o *Options) *cobra.Command {
	return &cobra.Command{
		Use:   "cluster NAME",
		Short: "Show a Cluster as a tree of its Machines and their Hosts, with what each waits for",
		Long: `Show a Cluster as a tree: the Cluster, its Machines grouped by role and worker pool,
and the Host each Machine runs on. Every line has the phase (Hosts: state), version, whether it
is Ready and its age; under it are the conditions that are not True, with reason and message.
The line under the Cluster sums up its progress, e.g.

  control plane 2/3 ready, workers 1/2 ready, etcd 3 voters, version v1.37.2`,
		Example: `  basaltctl describe cluster prod
  kubectl basalt describe cluster prod -n team-a`,
		Args: exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ns, err := o.Client()
			if err != nil {
				return err
			}
			t, err := describe.Load(cmd.Context(), c, ns, args[0])
			if err != nil {
				return err
			}
			return t.Render(o.Out, o.now())
		},
	}
}
