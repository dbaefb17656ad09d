package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
)

// demoCluster is the name of the Cluster the demo applies.
const demoCluster = "demo"

// applyCluster applies the demo Cluster (DEMO_CONTROL_PLANES control-plane machines and a pool of
// DEMO_WORKERS workers, on the hosts labelled for each role), waits until it is Ready, and writes
// its admin kubeconfig next to the management plane's.
func applyCluster(ctx context.Context, cfg *config, st *state) error {
	c, err := newClient(st.kubeconfig)
	if err != nil {
		return err
	}
	cl := &basaltv1.Cluster{
		ObjectMeta: metav1.ObjectMeta{Namespace: demoNamespace, Name: demoCluster},
		Spec: basaltv1.ClusterSpec{
			Version: cfg.version,
			ControlPlane: basaltv1.ControlPlaneSpec{
				Replicas:     int32(cfg.controlPlanes),
				HostSelector: metav1.LabelSelector{MatchLabels: map[string]string{demoRoleLabel: "control-plane"}},
			},
		},
	}
	if cfg.workers > 0 {
		cl.Spec.Workers = []basaltv1.WorkerPool{{Name: "workers", Replicas: int32(cfg.workers),
			HostSelector: metav1.LabelSelector{MatchLabels: map[string]string{demoRoleLabel: "worker"}}}}
	}
	start := time.Now()
	if err := c.Create(ctx, cl); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("applying Cluster %s: %w", demoCluster, err)
	}
	logf("Applied Cluster %s (%d control plane, %d workers, Kubernetes %s); waiting for Ready", demoCluster, cfg.controlPlanes, cfg.workers, cfg.version)
	last := ""
	err = poll(ctx, 15*time.Minute, func() error {
		got := &basaltv1.Cluster{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: demoNamespace, Name: demoCluster}, got); err != nil {
			return err
		}
		ready := meta.FindStatusCondition(got.Status.Conditions, basaltv1.ConditionReady)
		if ready == nil || ready.Status != metav1.ConditionTrue {
			msg := "no Ready condition yet"
			if ready != nil {
				msg = ready.Reason + ": " + ready.Message
			}
			if msg != last {
				logf("Cluster %s is %s: %s", demoCluster, got.Status.Phase, msg)
				last = msg
			}
			return fmt.Errorf("cluster %s: %s", demoCluster, msg)
		}
		return nil
	})
	if err != nil {
		return err
	}
	st.clusterReadyAfter = time.Since(start)
	logf("Cluster %s is Ready, %s after it was applied", demoCluster, st.clusterReadyAfter.Round(time.Second))
	sec := &corev1.Secret{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: demoNamespace, Name: demoCluster + "-kubeconfig"}, sec); err != nil {
		return fmt.Errorf("reading the kubeconfig Secret: %w", err)
	}
	st.workloadKubeconfig = filepath.Join(cfg.dir, "demo.kubeconfig")
	return os.WriteFile(st.workloadKubeconfig, sec.Data["value"], 0o600)
}
