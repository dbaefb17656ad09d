package cli

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
	"github.com/basalt-dev/basalt/bootstrap/atomicfile"
)

// KubeconfigKey is the key of the admin kubeconfig in the Cluster's kubeconfig Secret.
const KubeconfigKey = "value"

func newGetKubeconfig(o *Options) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "kubeconfig CLUSTER",
		Short: "Print a Cluster's admin kubeconfig, or write it to a file (-o) readable only by you",
		Long: `Print the admin kubeconfig of a Cluster, read from the Secret the Cluster names in
status.kubeconfigSecretRef (by default <cluster>-kubeconfig, key "value").

With -o FILE it is written to FILE with mode 0600, replacing FILE atomically.`,
		Example: `  basaltctl get kubeconfig prod > prod.kubeconfig
  basaltctl get kubeconfig prod -o ~/.kube/prod && kubectl --kubeconfig ~/.kube/prod get nodes`,
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
