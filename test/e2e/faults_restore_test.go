//go:build faults

package e2e

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
	"github.com/basalt-dev/basalt/test/e2e/bed"
	"github.com/basalt-dev/basalt/test/e2e/framework"
)

// TestFaultQuorumLostRecovered (F6) loses etcd's quorum for good: two of three control-plane
// hosts are powered off and never come back. The API server of the third serves nothing (no
// quorum). The user recovers from the survivor's data with
// basalt.dev/etcd-restore=member/<machine> (Kubespray's recover-control-plane): the survivor's
// member starts a new one-member cluster from its own database, the API answers again with the
// objects written before the loss, the dead Machines are deleted and replaced on spare Hosts,
// which join the restored etcd, and the worker is never replaced and reports to the restored
// cluster. Then the cluster is rolled back to a snapshot with all three members alive.
func TestFaultQuorumLostRecovered(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()
	f := startFaultBed(ctx, t, "f6", 6, 5, etcdTestVersion) // 3 control planes and 2 spares, 1 worker
	cl := f.cluster("f6", etcdTestVersion, 3, 1)
	wc, _, ep := f.createReady(ctx, t, cl)
	c := f.m.Env.Client
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "before-loss"}, Data: map[string]string{"kept": "yes"}}
	if _, err := wc.CoreV1().ConfigMaps("default").Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	ml := &basaltv1.MachineList{}
	if err := c.List(ctx, ml, framework.InNamespace(f.ns)); err != nil {
		t.Fatal(err)
	}
	var survivor, worker string
	var dead []string
	var deadHosts []*bed.Host
	for _, m := range ml.Items {
		switch {
		case m.Spec.Role == basaltv1.RoleWorker:
			worker = m.Name + "/" + string(m.UID)
		case m.Spec.HostRef.Name == ep.Name:
			survivor = m.Name
		default:
			dead = append(dead, m.Name)
			deadHosts = append(deadHosts, f.b.Host(m.Spec.HostRef.Name))
		}
	}
	if survivor == "" || len(dead) != 2 {
		t.Fatalf("survivor %q, others %v", survivor, dead)
	}
	lost := time.Now()
	for _, h := range deadHosts {
		if err := h.Kill(ctx); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("powered off %s and %s: etcd keeps 1 of 3 members", deadHosts[0].Name, deadHosts[1].Name)
	framework.Eventually(t, 2*time.Minute, func() error {
		cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
		defer ccancel()
		probe := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "default", GenerateName: "probe-"}}
		if _, err := wc.CoreV1().ConfigMaps("default").Create(cctx, probe, metav1.CreateOptions{}); err == nil {
			return errors.New("writes still succeed: quorum is not lost yet")
		}
		return nil
	})

	got := &basaltv1.Cluster{}
	if err := c.Get(ctx, framework.ObjectKey(f.ns, cl.Name), got); err != nil {
		t.Fatal(err)
	}
	p := client.MergeFrom(got.DeepCopy())
	request := basaltv1.EtcdRestoreMemberPrefix + survivor
	metav1.SetMetaDataAnnotation(&got.ObjectMeta, basaltv1.AnnotationEtcdRestore, request)
	asked := time.Now()
	if err := c.Patch(ctx, got, p); err != nil {
		t.Fatal(err)
	}
	framework.Eventually(t, 5*time.Minute, func() error {
		if err := c.Get(ctx, framework.ObjectKey(f.ns, cl.Name), got); err != nil {
			return err
		}
		if st := got.Status.EtcdRestore; st == nil || st.Request != request || st.Phase != basaltv1.RestorePhaseCompleted {
			return fmt.Errorf("status.etcdRestore: %+v", st)
		}
		return nil
	})
	restored := time.Since(asked)
	framework.Eventually(t, 2*time.Minute, func() error {
		if _, err := wc.CoreV1().ConfigMaps("default").Get(ctx, "before-loss", metav1.GetOptions{}); err != nil {
			return err
		}
		probe := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "default", GenerateName: "probe-"}}
		_, err := wc.CoreV1().ConfigMaps("default").Create(ctx, probe, metav1.CreateOptions{})
		return err
	})
	serving := time.Since(asked)

	// The dead Machines go (their nodes cannot be drained); the Cluster replaces them on the spares.
	for _, name := range dead {
		m := &basaltv1.Machine{}
		if err := c.Get(ctx, framework.ObjectKey(f.ns, name), m); err != nil {
			t.Fatal(err)
		}
		mp := client.MergeFrom(m.DeepCopy())
		metav1.SetMetaDataAnnotation(&m.ObjectMeta, basaltv1.AnnotationForceDelete, "true")
		if err := c.Patch(ctx, m, mp); err != nil {
			t.Fatal(err)
		}
		if err := c.Delete(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	f.waitReady(ctx, t, cl, 15*time.Minute)
	healed := time.Since(asked)
	f.checkConverged(ctx, t, cl)
	if err := c.List(ctx, ml, framework.InNamespace(f.ns)); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, m := range ml.Items {
		if m.Spec.Role == basaltv1.RoleWorker {
			found = m.Name+"/"+string(m.UID) == worker
		}
	}
	if !found {
		t.Errorf("the worker Machine %s was replaced", worker)
	}
	framework.Eventually(t, 3*time.Minute, func() error { return kubeletsReportSince(ctx, wc, asked, true) })
	t.Logf("F6 summary: quorum lost at %s; recovered from %s's data: restore Completed %s after the request, writes accepted %s after it, "+
		"3 control planes and etcd voters again %s after it (2 Machines replaced on spare Hosts); the worker kept its Machine",
		lost.Format(time.TimeOnly), survivor, restored.Round(100*time.Millisecond), serving.Round(100*time.Millisecond), healed.Round(time.Second))

	// Then a rollback with every member alive: a snapshot to the bed's S3 store, a ConfigMap
	// written after it, and the snapshot restored. One control plane restores it; the other two
	// stop their members of the cluster before the restore and join the restored one as
	// learners, in new data folders.
	snap := checkEtcdSnapshot(ctx, t, c, wc, f.ns, cl.Name)
	rollback := time.Now()
	checkEtcdRestore(ctx, t, c, wc, f.ns, cl.Name, snap, nil)
	f.waitReady(ctx, t, cl, 10*time.Minute)
	f.checkConverged(ctx, t, cl)
	if err := c.Get(ctx, framework.ObjectKey(f.ns, cl.Name), got); err != nil {
		t.Fatal(err)
	}
	if err := c.List(ctx, ml, framework.InNamespace(f.ns)); err != nil {
		t.Fatal(err)
	}
	for _, m := range ml.Items {
		if e := m.Status.Etcd; m.Spec.Role == basaltv1.RoleControlPlane && (e == nil || e.Epoch != got.Status.EtcdRestore.Epoch) {
			t.Errorf("Machine %s etcd record %+v, want the rollback's epoch %s", m.Name, e, got.Status.EtcdRestore.Epoch)
		}
	}
	t.Logf("F6 rollback: snapshot %s restored with all three members alive; 3 control planes and voters of epoch %s again %s after the request",
		snap.Name, got.Status.EtcdRestore.Epoch, time.Since(rollback).Round(time.Second))
}
