package cli

import (
	"context"
	"fmt"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/spf13/cobra"

	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
)

// Requests that are one annotation on an object, its value the time of the request: the
// controllers act on each new value once, so a repeated command asks again and a GitOps tool
// that keeps the annotation asks nothing more.

func newHostPowerCycle(o *Options) *cobra.Command {
	return &cobra.Command{
		Use:   "power-cycle NAME",
		Short: "Power-cycle a Host through its BMC",
		Long: `Ask the Host controller to power-cycle a Host through its BMC (spec.bmc): a hard reset of
a machine that is on, power on of one that is off. The request is the annotation
` + basaltv1.AnnotationPowerCycle + ` (the time of the request); the outcome is in
status.lastPowerCycle. A Host without spec.bmc is refused here.`,
		Example: `  basaltctl host power-cycle rack1-node4`,
		Args:    exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ns, err := o.Client()
			if err != nil {
				return err
			}
			h, err := getHost(cmd.Context(), c, ns, args[0])
			if err != nil {
				return err
			}
			if h.Spec.BMC == nil {
				return fmt.Errorf("host %s has no spec.bmc: Basalt cannot reach its power; power-cycle it by hand, or add spec.bmc (docs/bmc.md)", args[0])
			}
			at := o.now().UTC().Format(time.RFC3339)
			if err := annotateHost(cmd.Context(), c, h, basaltv1.AnnotationPowerCycle, at); err != nil {
				return err
			}
			_, err = fmt.Fprintf(o.Out, "Host %s: power cycle requested (%s=%s); see status.lastPowerCycle\n", args[0], basaltv1.AnnotationPowerCycle, at)
			return err
		},
	}
}

func newCluster(o *Options) *cobra.Command {
	cmd := &cobra.Command{Use: "cluster", Short: "Act on Clusters"}
	request := func(use, short, long, annotation, done string) *cobra.Command {
		return &cobra.Command{
			Use:     use + " NAME",
			Short:   short,
			Long:    long + "\n\nThe request is the annotation " + annotation + " (the time of the request); each new value is served once.",
			Example: "  basaltctl cluster " + use + " prod",
			Args:    exactArgs("NAME"),
			RunE: func(cmd *cobra.Command, args []string) error {
				c, ns, err := o.Client()
				if err != nil {
					return err
				}
				at := o.now().UTC().Format(time.RFC3339)
				if err := annotateCluster(cmd.Context(), c, ns, args[0], annotation, at); err != nil {
					return err
				}
				_, err = fmt.Fprintf(o.Out, "Cluster %s: %s requested (%s=%s); follow it in %s\n", args[0], use, annotation, at, done)
				return err
			},
		}
	}
	return group(cmd,
		request("renew-certificates", "Reissue every leaf certificate of a Cluster now",
			"Reissue every leaf certificate of the Cluster from the same CAs, as kubeadm certs renew all does;\n"+
				"control-plane nodes take theirs one at a time (docs/rotation.md).",
			basaltv1.AnnotationRenewCertificates, "status.certificateRenewal"),
		request("rotate-encryption-key", "Rotate the key that encrypts the Cluster's Secrets in etcd",
			"Add a new secrets-at-rest key, make it the write key, rewrite every Secret with it and remove the\n"+
				"old key, each step once every kube-apiserver has loaded the previous one (docs/rotation.md).",
			basaltv1.AnnotationRotateEncryptionKey, "status.encryption.rotation"),
	)
}

// annotateCluster sets annotation key=value on Cluster namespace/name.
func annotateCluster(ctx context.Context, c client.Client, namespace, name, key, value string) error {
	cl := &basaltv1.Cluster{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, cl); err != nil {
		if apierrors.IsNotFound(err) {
			return fmt.Errorf("no Cluster %q in namespace %q", name, namespace)
		}
		return fmt.Errorf("reading Cluster %s/%s: %w", namespace, name, err)
	}
	if !cl.DeletionTimestamp.IsZero() {
		return fmt.Errorf("cluster %s is being deleted", name)
	}
	return annotate(ctx, c, cl, "Cluster", key, value)
}
