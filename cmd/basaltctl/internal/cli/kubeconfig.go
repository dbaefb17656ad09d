package cli

import (
	"context"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
	"github.com/basalt-dev/basalt/bootstrap/atomicfile"
	"github.com/basalt-dev/basalt/controllers/access"
)

// KubeconfigKey is the key of the admin kubeconfig in the Cluster's kubeconfig Secret.
const KubeconfigKey = "value"

func newGetKubeconfig(o *Options) *cobra.Command {
	var output, user string
	var ttl time.Duration
	cmd := &cobra.Command{
		Use:   "kubeconfig CLUSTER",
		Short: "Print a Cluster's admin kubeconfig, or a revocable short-lived one (--user); -o writes a file readable only by you",
		Long: `Print the admin kubeconfig of a Cluster, read from the Secret the Cluster names in
status.kubeconfigSecretRef (by default <cluster>-kubeconfig, key "value"). Its certificate is in
system:masters: it cannot be revoked. Keep it for break-glass use.

With --user NAME, print instead a kubeconfig for the Kubernetes user basalt-admin:NAME:<grant>,
valid for --ttl (default 8h, 10m to 168h): its key is made here, its certificate requested and
approved through the workload cluster's CertificateSigningRequest API (signer
basalt.dev/admin-access) and signed by the Basalt manager with the cluster CA (the Cluster's
basalt.dev/admin-access-requested annotation tells it to); it carries no group; a ClusterRoleBinding
of that name (cluster-admin) is what lets it act. "access revoke CLUSTER NAME" deletes the
bindings of every grant to NAME; "access list CLUSTER" shows the grants.

With -o FILE it is written to FILE with mode 0600, replacing FILE atomically.`,
		Example: `  basaltctl get kubeconfig prod > prod.kubeconfig
  basaltctl get kubeconfig prod -o ~/.kube/prod && kubectl --kubeconfig ~/.kube/prod get nodes
  basaltctl get kubeconfig prod --user alice --ttl 2h -o alice.kubeconfig
  basaltctl access revoke prod alice`,
		Args: exactArgs("CLUSTER"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ns, err := o.Client()
			if err != nil {
				return err
			}
			data, err := Kubeconfig(cmd.Context(), c, ns, args[0])
			if err != nil {
				return err
			}
			if user != "" {
				nudge := func(ctx context.Context) error { return requestSigning(ctx, c, ns, args[0]) }
				g, err := grant(cmd.Context(), data, args[0], user, ttl, nudge)
				if err != nil {
					return err
				}
				data = g.Kubeconfig
				_, _ = fmt.Fprintf(o.ErrOut, "Kubeconfig of user %s on Cluster %s, valid until %s; revoke it with: access revoke %s %s\n",
					g.User, args[0], g.NotAfter.UTC().Format(time.RFC3339), args[0], user)
			}
			if output == "" || output == "-" {
				_, err := o.Out.Write(data)
				return err
			}
			if err := WritePrivateFile(output, data); err != nil {
				return err
			}
			_, err = fmt.Fprintf(o.ErrOut, "Wrote the kubeconfig of Cluster %s to %s\n", args[0], output)
			return err
		},
	}
	cmd.Flags().StringVarP(&output, "output-file", "o", "", "write the kubeconfig to this file (mode 0600) instead of standard output")
	cmd.Flags().StringVar(&user, "user", "", "a revocable kubeconfig for the user basalt-admin:USER instead of the admin kubeconfig")
	cmd.Flags().DurationVar(&ttl, "ttl", access.DefaultTTL, "with --user: how long the kubeconfig is valid (10m to 168h)")
	return cmd
}

// grant makes a kubeconfig for user through the admin kubeconfig adminKC of the cluster.
func grant(ctx context.Context, adminKC []byte, cluster, user string, ttl time.Duration, nudge func(context.Context) error) (*access.Grant, error) {
	cfg, err := clientcmd.RESTConfigFromKubeConfig(adminKC)
	if err != nil {
		return nil, fmt.Errorf("the admin kubeconfig of Cluster %s: %w", cluster, err)
	}
	cfg.Timeout = 30 * time.Second
	return access.GrantAccess(ctx, cfg, cluster, user, ttl, nudge)
}

// requestSigning changes basalt.dev/admin-access-requested on the Cluster, which has the
// manager sign the approved requests of the cluster (it holds the CA key).
func requestSigning(ctx context.Context, c client.Client, namespace, name string) error {
	cl := &basaltv1.Cluster{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, cl); err != nil {
		return err
	}
	patch := client.MergeFrom(cl.DeepCopy())
	if cl.Annotations == nil {
		cl.Annotations = map[string]string{}
	}
	cl.Annotations[basaltv1.AnnotationAdminAccessRequested] = time.Now().UTC().Format(time.RFC3339Nano)
	return c.Patch(ctx, cl, patch)
}

// newAccess is "access revoke" and "access list": the users of the kubeconfigs get kubeconfig
// --user made.
func newAccess(o *Options) *cobra.Command {
	cmd := &cobra.Command{Use: "access", Short: "List or revoke the users of a Cluster's revocable kubeconfigs (get kubeconfig --user)"}
	workload := func(ctx context.Context, cluster string) (*rest.Config, error) {
		c, ns, err := o.Client()
		if err != nil {
			return nil, err
		}
		data, err := Kubeconfig(ctx, c, ns, cluster)
		if err != nil {
			return nil, err
		}
		cfg, err := clientcmd.RESTConfigFromKubeConfig(data)
		if err != nil {
			return nil, fmt.Errorf("the admin kubeconfig of Cluster %s: %w", cluster, err)
		}
		cfg.Timeout = 30 * time.Second
		return cfg, nil
	}
	revoke := &cobra.Command{
		Use:   "revoke CLUSTER USER",
		Short: "Delete the ClusterRoleBindings of USER's grants: every kubeconfig granted to USER is refused from now on",
		Args:  exactArgs("CLUSTER", "USER"),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := workload(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			n, err := access.RevokeAccess(cmd.Context(), cfg, args[1])
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(o.Out, "Revoked %d grant(s) of %s on Cluster %s: their kubeconfigs authenticate but may do nothing\n", n, args[1], args[0])
			return err
		},
	}
	list := &cobra.Command{
		Use:   "list CLUSTER",
		Short: "List the grants of get kubeconfig --user that have not expired",
		Args:  exactArgs("CLUSTER"),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := workload(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			grants, err := access.ListAccess(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			w := tabwriter.NewWriter(o.Out, 0, 4, 2, ' ', 0)
			_, _ = fmt.Fprintln(w, "USER\tKUBERNETES USER\tEXPIRES")
			for _, g := range grants {
				_, _ = fmt.Fprintf(w, "%s\t%s\t%s\n", g.User, g.Subject, g.ExpiresAt.UTC().Format(time.RFC3339))
			}
			return w.Flush()
		},
	}
	group(cmd, revoke, list)
	return cmd
}

// Kubeconfig returns the admin kubeconfig of Cluster namespace/name: the "value" key of the
// Secret its status.kubeconfigSecretRef names, or of <name>-kubeconfig before the Cluster
// controller has set that field. Its errors say what is missing and what to look at.
func Kubeconfig(ctx context.Context, c client.Reader, namespace, name string) ([]byte, error) {
	cl := &basaltv1.Cluster{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, cl); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("no Cluster %q in namespace %q", name, namespace)
		}
		return nil, fmt.Errorf("reading Cluster %s/%s: %w", namespace, name, err)
	}
	secretName := name + "-kubeconfig"
	if ref := cl.Status.KubeconfigSecretRef; ref != nil && ref.Name != "" {
		secretName = ref.Name
	}
	s := &corev1.Secret{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: secretName}, s); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("cluster %s has no kubeconfig yet: Secret %s/%s does not exist; Basalt writes it once the "+
				"cluster's certificates are issued, which needs a control-plane endpoint (see `describe cluster %s`)",
				name, namespace, secretName, name)
		}
		return nil, fmt.Errorf("reading Secret %s/%s: %w", namespace, secretName, err)
	}
	data := s.Data[KubeconfigKey]
	if len(data) == 0 {
		return nil, fmt.Errorf("secret %s/%s has no key %q: it is not a kubeconfig Secret written by Basalt", namespace, secretName, KubeconfigKey)
	}
	return data, nil
}

// WritePrivateFile writes data to path with mode 0600: to a new file in the same folder, then
// renamed over path, so a reader never sees half a file and an existing file with wider
// permissions is replaced rather than rewritten in place.
func WritePrivateFile(path string, data []byte) error {
	if err := atomicfile.Write(path, data, 0o600); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}
