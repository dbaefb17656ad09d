package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
)

func newHostAccept(o *Options) *cobra.Command {
	return &cobra.Command{
		Use:   "accept NAME",
		Short: "Accept a discovered Host, so it becomes Available to Clusters",
		Long: `Accept a Host: set spec.accepted=true. Hosts the manager discovers (a machine that
PXE-booted with a MAC address no Host had) are created with spec.accepted=false and stay out of
the pool until someone has looked at their hardware (kubectl get host NAME -o yaml, status.hardware)
and accepts them.`,
		Example: `  kubectl get hosts -l basalt.dev/discovered=true
  basaltctl host accept host-52-54-00-12-34-56`,
		Args: exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ns, err := o.Client()
			if err != nil {
				return err
			}
			changed, err := AcceptHost(cmd.Context(), c, ns, args[0])
			if err != nil {
				return err
			}
			if !changed {
				_, err := fmt.Fprintf(o.Out, "Host %s was already accepted\n", args[0])
				return err
			}
			_, err = fmt.Fprintf(o.Out, "Host %s accepted: it becomes Available once inspected\n", args[0])
			return err
		},
	}
}

// AcceptHost sets spec.accepted=true on Host namespace/name and says whether it changed
// anything.
func AcceptHost(ctx context.Context, c client.Client, namespace, name string) (bool, error) {
	h, err := getHost(ctx, c, namespace, name)
	if err != nil {
		return false, err
	}
	if h.Spec.IsAccepted() {
		return false, nil
	}
	before := h.DeepCopy()
	h.Spec.Accepted = ptr.To(true)
	if err := c.Patch(ctx, h, client.MergeFrom(before)); err != nil {
		return false, fmt.Errorf("accepting Host %s/%s: %w", namespace, name, err)
	}
	return true, nil
}

func newHostReprovision(o *Options) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "reprovision NAME",
		Short: "Ask the Host controller to wipe a Host and provision it again",
		Long: `Ask the Host controller to provision a Host again from scratch: it wipes what Basalt
wrote on the host, installs or PXE-boots the agent again and inspects the hardware anew. The
request is the annotation ` + basaltv1.AnnotationReprovision + ` (the time of the request); the
controller acts on each value once (status.lastReprovision).

A Host that runs a Machine is refused unless --force is given: reprovisioning it takes the
Machine's node out of its cluster.`,
		Example: `  basaltctl host reprovision rack1-node4
  basaltctl host reprovision rack1-node4 --force   # even though a Machine runs on it`,
		Args: exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ns, err := o.Client()
			if err != nil {
				return err
			}
			at := o.now().UTC().Format(time.RFC3339)
			if err := ReprovisionHost(cmd.Context(), c, ns, args[0], at, force); err != nil {
				return err
			}
			_, err = fmt.Fprintf(o.Out, "Host %s: reprovisioning requested (%s=%s)\n", args[0], basaltv1.AnnotationReprovision, at)
			return err
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "reprovision even though a Machine runs on the Host")
	return cmd
}

// ReprovisionHost sets the reprovision annotation on Host namespace/name to value. A Host with a
// consumer is refused unless force is set.
func ReprovisionHost(ctx context.Context, c client.Client, namespace, name, value string, force bool) error {
	h, err := getHost(ctx, c, namespace, name)
	if err != nil {
		return err
	}
	if ref := h.Status.ConsumerRef; ref != nil && !force {
		return fmt.Errorf("host %s runs Machine %s: reprovisioning wipes it and takes its node out of the cluster; "+
			"delete the Machine (or scale its Cluster down) first, or pass --force", name, ref.Name)
	}
	if !h.DeletionTimestamp.IsZero() {
		return fmt.Errorf("host %s is being deleted", name)
	}
	return annotateHost(ctx, c, h, basaltv1.AnnotationReprovision, value)
}

func newHostConfirmWiped(o *Options) *cobra.Command {
	return &cobra.Command{
		Use:   "confirm-wiped NAME",
		Short: "Vouch that an Unwiped Host was erased, so it becomes Available again",
		Long: `A Host released while its agent was silent (the machine was off, or its Machine's wipe
timed out) is Unwiped: nothing confirms that its former node's services, etcd data and keys are
gone, so no Cluster can claim it. Power the machine on and its agent wipes it by itself. When that
cannot happen (the disk was replaced, the machine reinstalled by hand), confirm the wipe yourself:
the Host becomes Available (condition Wiped, reason WipeOverridden). The request is the annotation
` + basaltv1.AnnotationConfirmWiped + ` (the time of the request); the controller answers each
value once (status.lastWipeConfirmation).

Only an Unwiped Host, or one whose agent is still wiping, is accepted. Even then an agent that
comes back holding another Cluster's Plan wipes that state before it applies a new one.`,
		Example: `  kubectl get hosts --field-selector status.state=Unwiped   # or: kubectl get hosts
  basaltctl host confirm-wiped rack1-node4`,
		Args: exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ns, err := o.Client()
			if err != nil {
				return err
			}
			at := o.now().UTC().Format(time.RFC3339)
			if err := ConfirmHostWiped(cmd.Context(), c, ns, args[0], at); err != nil {
				return err
			}
			_, err = fmt.Fprintf(o.Out, "Host %s: wipe confirmed (%s=%s); it becomes Available\n", args[0], basaltv1.AnnotationConfirmWiped, at)
			return err
		},
	}
}

// ConfirmHostWiped sets the confirm-wiped annotation on Host namespace/name to value. Only a Host
// that waits for its wipe (Unwiped, or Deprovisioning with no consumer) is accepted.
func ConfirmHostWiped(ctx context.Context, c client.Client, namespace, name, value string) error {
	h, err := getHost(ctx, c, namespace, name)
	if err != nil {
		return err
	}
	state := h.Status.State
	if ref := h.Status.ConsumerRef; ref != nil {
		return fmt.Errorf("host %s runs Machine %s: there is no wipe to confirm", name, ref.Name)
	}
	if state != basaltv1.HostStateUnwiped && state != basaltv1.HostStateDeprovisioning {
		return fmt.Errorf("host %s is %s: only an Unwiped Host (or one whose agent is still wiping) waits for a wipe", name, stateOrNone(state))
	}
	return annotateHost(ctx, c, h, basaltv1.AnnotationConfirmWiped, value)
}

// annotateHost sets annotation key to value on h with a merge patch (the request of a command
// the Host controller acts on).
func annotateHost(ctx context.Context, c client.Client, h *basaltv1.Host, key, value string) error {
	return annotate(ctx, c, h, "Host", key, value)
}

// annotate sets annotation key=value on obj, as read, with a merge patch.
func annotate(ctx context.Context, c client.Client, obj client.Object, kind, key, value string) error {
	before := obj.DeepCopyObject().(client.Object)
	ann := obj.GetAnnotations()
	if ann == nil {
		ann = map[string]string{}
	}
	ann[key] = value
	obj.SetAnnotations(ann)
	if err := c.Patch(ctx, obj, client.MergeFrom(before)); err != nil {
		return fmt.Errorf("annotating %s %s/%s: %w", kind, obj.GetNamespace(), obj.GetName(), err)
	}
	return nil
}

func stateOrNone(s basaltv1.HostState) string {
	if s == "" {
		return "new (no state yet)"
	}
	return string(s)
}

func getHost(ctx context.Context, c client.Reader, namespace, name string) (*basaltv1.Host, error) {
	h := &basaltv1.Host{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, h); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("no Host %q in namespace %q", name, namespace)
		}
		return nil, fmt.Errorf("reading Host %s/%s: %w", namespace, name, err)
	}
	return h, nil
}
