package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
	"github.com/basalt-dev/basalt/controllers/etcdbackup"
	"github.com/basalt-dev/basalt/controllers/etcdcluster"
	"github.com/basalt-dev/basalt/test/e2e/bed"
	"github.com/basalt-dev/basalt/test/e2e/framework"
	"github.com/basalt-dev/basalt/test/s3server"
)

// checkEtcdSnapshot turns on backups for a running Cluster and asks for a snapshot: the manager
// takes it from the cluster's real etcd (on a bed host, through the address and certificates it
// uses for membership), checks it and stores it in an S3 store; read back and checked against
// its record, it holds a ConfigMap written through the workload API before the request.
func checkEtcdSnapshot(ctx context.Context, t *testing.T, c client.Client, wc kubernetes.Interface, ns, name string) basaltv1.EtcdSnapshot {
	t.Helper()
	store := s3server.Start(t, "backups")
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "backup-s3"}, Data: map[string][]byte{
		etcdbackup.SecretAccessKeyID: []byte("e2e"), etcdbackup.SecretSecretAccessKey: []byte("e2e-secret")}}
	if err := c.Create(ctx, sec); err != nil {
		t.Fatal(err)
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "before-backup"}, Data: map[string]string{"kept": "yes"}}
	if _, err := wc.CoreV1().ConfigMaps("default").Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cl := &basaltv1.Cluster{}
	if err := c.Get(ctx, framework.ObjectKey(ns, name), cl); err != nil {
		t.Fatal(err)
	}
	p := client.MergeFrom(cl.DeepCopy())
	cl.Spec.Etcd = &basaltv1.EtcdSpec{Backup: &basaltv1.EtcdBackupSpec{Retention: 3, S3: basaltv1.S3Store{
		Endpoint: store.Endpoint, Bucket: store.Bucket, Prefix: "e2e/", Insecure: true, CredentialsSecret: sec.Name}}}
	metav1.SetMetaDataAnnotation(&cl.ObjectMeta, basaltv1.AnnotationEtcdSnapshot, "e2e-1")
	asked := time.Now()
	if err := c.Patch(ctx, cl, p); err != nil {
		t.Fatal(err)
	}
	var snap basaltv1.EtcdSnapshot
	framework.Eventually(t, 3*time.Minute, func() error {
		if err := c.Get(ctx, framework.ObjectKey(ns, name), cl); err != nil {
			return err
		}
		cond := meta.FindStatusCondition(cl.Status.Conditions, basaltv1.ClusterBackupReady)
		if cond == nil || cond.Reason != basaltv1.ReasonSnapshotTaken || cl.Status.EtcdBackup == nil || cl.Status.EtcdBackup.LastRequest != "e2e-1" {
			return fmt.Errorf("BackupReady: %v", cond)
		}
		snap = cl.Status.EtcdBackup.Snapshots[0]
		return nil
	})
	t.Logf("MEASURE etcd snapshot: stored %s after the request: %s, %d bytes, revision %d, from Machine %s",
		time.Since(asked).Round(100*time.Millisecond), snap.Location, snap.Size, snap.Revision, snap.Member)
	st, err := etcdbackup.NewS3(cl.Spec.Etcd.Backup.S3, sec)
	if err != nil {
		t.Fatal(err)
	}
	path, err := etcdbackup.Fetch(ctx, st, etcdbackup.KeyOf(cl, snap), snap, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	keys, err := etcdcluster.SnapshotKeys(path)
	if err != nil {
		t.Fatal(err)
	}
	v, ok := keys["/registry/configmaps/default/before-backup"]
	if !ok || !bytes.Contains(v, []byte("before-backup")) {
		t.Fatalf("the snapshot (%d keys) lacks ConfigMap default/before-backup", len(keys))
	}
	if objs := store.Objects(); len(objs) != 2 {
		t.Fatalf("the store holds %v, want one snapshot and its record", objs)
	}
	return snap
}

// checkEtcdRestore is disaster recovery on the bed: after the snapshot, a ConfigMap is written;
// then destroy (when set) destroys etcd's data, and the basalt.dev/etcd-restore annotation names
// the snapshot: the manager fetches it back from the store, the agent restores it with etcdutl
// into a new data folder and etcd starts from it (the other control-plane members join it). The
// ConfigMap written before the snapshot is back, the one written after it is not, the Cluster
// is Ready again, and every kubelet reports to the restored cluster with no Machine replaced
// and no Host provisioned again.
func checkEtcdRestore(ctx context.Context, t *testing.T, c client.Client, wc kubernetes.Interface, ns, name string, snap basaltv1.EtcdSnapshot, destroy func(context.Context) error) {
	t.Helper()
	after := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "after-backup"}}
	if _, err := wc.CoreV1().ConfigMaps("default").Create(ctx, after, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	ml := &basaltv1.MachineList{}
	if err := c.List(ctx, ml, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	machines := map[string]string{}
	for _, m := range ml.Items {
		machines[m.Name] = string(m.UID)
	}
	if destroy != nil {
		if err := destroy(ctx); err != nil {
			t.Fatal(err)
		}
		framework.Eventually(t, 2*time.Minute, func() error {
			_, err := wc.CoreV1().ConfigMaps("default").Get(ctx, "before-backup", metav1.GetOptions{})
			if err == nil {
				return errors.New("the ConfigMap is still there: etcd's data was not destroyed yet")
			}
			return nil
		})
	}

	cl := &basaltv1.Cluster{}
	if err := c.Get(ctx, framework.ObjectKey(ns, name), cl); err != nil {
		t.Fatal(err)
	}
	p := client.MergeFrom(cl.DeepCopy())
	metav1.SetMetaDataAnnotation(&cl.ObjectMeta, basaltv1.AnnotationEtcdRestore, snap.Name)
	asked := time.Now()
	if err := c.Patch(ctx, cl, p); err != nil {
		t.Fatal(err)
	}
	var st *basaltv1.EtcdRestoreStatus
	framework.Eventually(t, 5*time.Minute, func() error {
		if err := c.Get(ctx, framework.ObjectKey(ns, name), cl); err != nil {
			return err
		}
		if st = cl.Status.EtcdRestore; st == nil || st.Request != snap.Name || st.Phase != basaltv1.RestorePhaseCompleted {
			return fmt.Errorf("status.etcdRestore: %+v", st)
		}
		return nil
	})
	restored := time.Since(asked)
	framework.Eventually(t, 5*time.Minute, func() error {
		if err := c.Get(ctx, framework.ObjectKey(ns, name), cl); err != nil {
			return err
		}
		if !meta.IsStatusConditionTrue(cl.Status.Conditions, basaltv1.ConditionReady) {
			return fmt.Errorf("Cluster not Ready: %s", framework.ConditionSummary(cl.Status.Conditions))
		}
		return nil
	})
	ready := time.Since(asked)
	framework.Eventually(t, 2*time.Minute, func() error {
		if _, err := wc.CoreV1().ConfigMaps("default").Get(ctx, "before-backup", metav1.GetOptions{}); err != nil {
			return fmt.Errorf("ConfigMap written before the snapshot: %w", err)
		}
		switch _, err := wc.CoreV1().ConfigMaps("default").Get(ctx, "after-backup", metav1.GetOptions{}); {
		case err == nil:
			return errors.New("the ConfigMap written after the snapshot is there")
		case !apierrors.IsNotFound(err):
			return fmt.Errorf("ConfigMap written after the snapshot: %w", err)
		}
		return nil
	})
	// Every node's kubelet renews its lease in the restored cluster.
	framework.Eventually(t, 3*time.Minute, func() error { return kubeletsReportSince(ctx, wc, asked, false) })
	if err := c.List(ctx, ml, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	for _, m := range ml.Items {
		if machines[m.Name] != string(m.UID) {
			t.Errorf("Machine %s was replaced during the restore", m.Name)
		}
	}
	if len(ml.Items) != len(machines) {
		t.Errorf("%d Machines after the restore, %d before", len(ml.Items), len(machines))
	}
	t.Logf("MEASURE etcd restore: from snapshot %s (revision %d, %d bytes): Completed %s after the request, Cluster Ready %s after it (epoch %s, Machine %s)",
		snap.Name, snap.Revision, snap.Size, restored.Round(100*time.Millisecond), ready.Round(100*time.Millisecond), st.Epoch, st.Machine)
}

// kubeletsReportSince says whether every node (every worker node, with workersOnly) is Ready
// and its kubelet renewed its lease after since: the kubelets report to the cluster as it is
// now, e.g. after a restore.
func kubeletsReportSince(ctx context.Context, wc kubernetes.Interface, since time.Time, workersOnly bool) error {
	nl, err := wc.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	for _, n := range nl.Items {
		if _, cp := n.Labels["node-role.kubernetes.io/control-plane"]; cp && workersOnly {
			continue
		}
		l, err := wc.CoordinationV1().Leases("kube-node-lease").Get(ctx, n.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if l.Spec.RenewTime == nil || l.Spec.RenewTime.Time.Before(since) || !nodeReady(n) {
			return fmt.Errorf("node %s: lease renewed %v, Ready %v", n.Name, l.Spec.RenewTime, nodeReady(n))
		}
	}
	return nil
}

// destroyEtcdData kills etcd on h and removes its data folder; systemd starts the member again,
// empty (a lost disk).
func destroyEtcdData(h *bed.Host) func(context.Context) error {
	return func(ctx context.Context) error {
		if out, err := h.Run(ctx, "systemctl kill -s KILL basalt-etcd; rm -rf /var/lib/etcd; sleep 1; systemctl restart basalt-etcd; sleep 3; ls /var/lib/etcd"); err != nil {
			return fmt.Errorf("destroying etcd on %s: %w: %s", h.Name, err, out)
		}
		return nil
	}
}
