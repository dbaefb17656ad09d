package e2e

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
	"github.com/basalt-dev/basalt/controllers/etcdbackup"
	"github.com/basalt-dev/basalt/controllers/etcdcluster"
	"github.com/basalt-dev/basalt/test/e2e/framework"
	"github.com/basalt-dev/basalt/test/s3server"
)

// checkEtcdSnapshot turns on backups for a running Cluster and asks for a snapshot: the manager
// takes it from the cluster's real etcd (on a bed host, through the address and certificates it
// uses for membership), checks it and stores it in an S3 store; read back and checked against
// its record, it holds a ConfigMap written through the workload API before the request.
func checkEtcdSnapshot(ctx context.Context, t *testing.T, c client.Client, wc kubernetes.Interface, ns, name string) {
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
}
