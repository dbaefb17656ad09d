// Package cli is basaltctl: the commands, their flags and what they do. The same binary works as
// `basaltctl` and, installed as kubectl-basalt on the PATH, as the kubectl plugin `kubectl
// basalt`; it reads kubeconfig files and takes the standard kubeconfig flags (--kubeconfig,
// --context, -n/--namespace, --server, --token, ...) the way kubectl does.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	kruntime "k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
)

// PluginName is the file name under which kubectl finds basaltctl as a plugin.
const PluginName = "kubectl-basalt"

// Streams are where a command reads and writes.
type Streams struct {
	Out, ErrOut io.Writer
}

// Options is what every command shares: how to reach the API server, and the clock.
type Options struct {
	Streams
	// loadingRules and overrides hold the kubeconfig flags.
	loadingRules *clientcmd.ClientConfigLoadingRules
	overrides    *clientcmd.ConfigOverrides
	// Now is the clock ages are computed against; nil means time.Now.
	Now func() time.Time
	// config is the client configuration the kubeconfig flags and files make, loaded lazily.
	config clientcmd.ClientConfig
}

func (o *Options) now() time.Time {
	if o.Now != nil {
		return o.Now()
	}
	return time.Now()
}

// Client returns a client for the API server the flags and kubeconfig name, and the namespace
// to work in (--namespace, else the context's namespace, else "default").
func (o *Options) Client() (client.Client, string, error) {
	cfg, err := o.config.ClientConfig()
	if err != nil {
		return nil, "", fmt.Errorf("loading the kubeconfig: %w", err)
	}
	ns, _, err := o.config.Namespace()
	if err != nil {
		return nil, "", fmt.Errorf("finding the namespace: %w", err)
	}
	scheme := kruntime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(basaltv1.AddToScheme(scheme))
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, "", fmt.Errorf("connecting to %s: %w", cfg.Host, err)
	}
	return c, ns, nil
}

// DisplayName is how the program calls itself in help and errors: "kubectl basalt" when run as
// the kubectl plugin (kubectl runs kubectl-basalt with its path as argv[0]), else "basaltctl".
func DisplayName(argv0 string) string {
	base := strings.TrimSuffix(filepath.Base(argv0), ".exe")
	if strings.HasPrefix(base, "kubectl-") {
		return "kubectl " + strings.ReplaceAll(strings.TrimPrefix(base, "kubectl-"), "_", "-")
	}
	return "basaltctl"
}

// NewCommand returns the root command. name is DisplayName's answer.
func NewCommand(name string, o *Options) *cobra.Command {
	root := &cobra.Command{
		Use:   "basaltctl",
		Short: "Look at and act on Basalt Clusters, Machines and Hosts",
		Long: `Look at and act on Basalt Clusters, Machines and Hosts.

It reads your kubeconfig like kubectl does and takes the same connection flags. Installed as
kubectl-basalt on the PATH, it also runs as "kubectl basalt".`,
		Annotations:   map[string]string{cobra.CommandDisplayNameAnnotation: name},
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(o.Out)
	root.SetErr(o.ErrOut)

	o.loadingRules = clientcmd.NewDefaultClientConfigLoadingRules()
	o.overrides = &clientcmd.ConfigOverrides{}
	flags := root.PersistentFlags()
	flags.StringVar(&o.loadingRules.ExplicitPath, clientcmd.RecommendedConfigPathFlag, "",
		"Path to the kubeconfig file to use (default: $KUBECONFIG, else ~/.kube/config)")
	clientcmd.BindOverrideFlags(o.overrides, flags, clientcmd.RecommendedConfigOverrideFlags(""))
	o.config = clientcmd.NewNonInteractiveDeferredLoadingClientConfig(o.loadingRules, o.overrides)

	root.AddCommand(
		group(&cobra.Command{Use: "get", Short: "Get a Cluster's credentials"}, newGetKubeconfig(o)),
		group(&cobra.Command{Use: "describe", Short: "Show an object with what it is made of and what it waits for"}, newDescribeCluster(o)),
		group(&cobra.Command{Use: "host", Short: "Act on Hosts"}, newHostAccept(o), newHostReprovision(o), newHostConfirmWiped(o), newHostPowerCycle(o)),
		newCluster(o), newAccess(o))
	return root
}

// group makes cmd a command that only holds subs: run without one, or with one it does not
// have (`describe machine`), it is a usage mistake (exit 2) that names what it has, rather than
// cobra's help with exit 0, which a script would take for success.
func group(cmd *cobra.Command, subs ...*cobra.Command) *cobra.Command {
	cmd.AddCommand(subs...)
	cmd.Args = cobra.ArbitraryArgs
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		var names []string
		for _, c := range cmd.Commands() {
			if c.IsAvailableCommand() {
				names = append(names, c.Name())
			}
		}
		if len(args) == 0 {
			return usageError{fmt.Errorf("%s needs one of: %s (see --help)", cmd.CommandPath(), strings.Join(names, ", "))}
		}
		return usageError{fmt.Errorf("%s has no %q; it has: %s (see --help)", cmd.CommandPath(), args[0], strings.Join(names, ", "))}
	}
	return cmd
}

// Main runs the command line args (args[0] is the program) and returns the exit code.
func Main(ctx context.Context, args []string, out, errOut io.Writer) int {
	name := DisplayName(args[0])
	cmd := NewCommand(name, &Options{Streams: Streams{Out: out, ErrOut: errOut}})
	cmd.SetArgs(args[1:])
	if err := cmd.ExecuteContext(ctx); err != nil {
		_, _ = fmt.Fprintf(errOut, "error: %v\n", err) // nowhere left to report a failed write
		var ue usageError
		if errors.As(err, &ue) || strings.HasPrefix(err.Error(), "unknown command ") || strings.HasPrefix(err.Error(), "unknown flag") {
			return 2 // cobra's own usage mistakes too
		}
		return 1
	}
	return 0
}

// usageError is a mistake on the command line.
type usageError struct{ error }

// exactArgs accepts exactly the named arguments and says which are missing.
func exactArgs(names ...string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != len(names) {
			return usageError{fmt.Errorf("%s takes %d argument(s), %s; got %d (see --help)",
				cmd.CommandPath(), len(names), strings.Join(names, " "), len(args))}
		}
		return nil
	}
}
