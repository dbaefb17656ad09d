package cluster_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
	"github.com/basalt-dev/basalt/bootstrap/plan"
	"github.com/basalt-dev/basalt/test/envtest"
)

// fakeStager stands for etcdbackup.Stager: it "fetches" a snapshot (its sha256 and size are
// the record's) and fails while failing is set.
type fakeStager struct {
	mu      sync.Mutex
	staged  []string
	failing error
}

func (f *fakeStager) Stage(_ context.Context, _ *basaltv1.Cluster, s basaltv1.EtcdSnapshot) (string, int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failing != nil {
		return "", 0, f.failing
	}
	f.staged = append(f.staged, s.Name)
	return s.SHA256, s.Size, nil
}

func (f *fakeStager) fail(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failing = err
}

// TestEtcdRestore drives the restore decisions on a real API server, with simulated agents and
// etcd: a request that names nothing is refused with nothing changed; a snapshot restore waits
// while the snapshot cannot be fetched, then switches the seed Machine to a new epoch seeded
// from the snapshot and clears the other members, completes when the seed's etcd answers with
// the restored member's ID, and the others join the restored cluster in the new epoch; a
// restore from a member's own data then moves to another epoch reading the former one's
// database.
func TestEtcdRestore(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	h := startControllers(t, ns)
	runAgents(t, ns, h.etcd)
	for i := range 3 {
		createHost(t, ns, hostInput{name: fmt.Sprintf("cp-%d", i), labels: cpLabels, address: fmt.Sprintf("10.0.6.1%d", i), inspected: true})
	}
	c := newCluster(ns, "restore", 3, 0)
	if err := env.Client.Create(ctx, c); err != nil {
		t.Fatal(err)
	}
	etcdReady := func() error {
		got, err := get(ctx, c)
		if err != nil {
			return err
		}
		return conditionIs(got.Status.Conditions, basaltv1.ClusterEtcdReady, metav1.ConditionTrue, "")
	}
	envtest.Eventually(t, 2*wait, etcdReady)

	// The backup controller's listing (not running here).
	sum := sha256.Sum256([]byte("snapshot"))
	snap := basaltv1.EtcdSnapshot{Name: "20261207T060000Z-scheduled", Location: "s3://b/x", TakenAt: metav1.Now(), Size: 4096,
		Revision: 42, SHA256: hex.EncodeToString(sum[:]), Trigger: basaltv1.SnapshotScheduled}
	got, err := get(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	before := got.DeepCopy()
	got.Status.EtcdBackup = &basaltv1.EtcdBackupStatus{Snapshots: []basaltv1.EtcdSnapshot{snap}}
	if err := env.Client.Status().Patch(ctx, got, client.MergeFrom(before)); err != nil {
		t.Fatal(err)
	}
	annotate := func(v string) {
		t.Helper()
		got, err := get(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		before := got.DeepCopy()
		if got.Annotations == nil {
			got.Annotations = map[string]string{}
		}
		got.Annotations[basaltv1.AnnotationEtcdRestore] = v
		if err := env.Client.Patch(ctx, got, client.MergeFrom(before)); err != nil {
			t.Fatal(err)
		}
	}
	restoreIs := func(request, phase string) func() error {
		return func() error {
			got, err := get(ctx, c)
			if err != nil {
				return err
			}
			st := got.Status.EtcdRestore
			if st == nil || st.Request != request || st.Phase != phase {
				return fmt.Errorf("status.etcdRestore = %+v, want %s %s", st, request, phase)
			}
			return nil
		}
	}
	records := func() map[string]*basaltv1.MachineEtcd {
		ml := &basaltv1.MachineList{}
		if err := env.Client.List(ctx, ml, client.InNamespace(ns)); err != nil {
			t.Fatal(err)
		}
		out := map[string]*basaltv1.MachineEtcd{}
		for i := range ml.Items {
			out[ml.Items[i].Name] = ml.Items[i].Status.Etcd
		}
		return out
	}

	// Refused: nothing changes.
	historyBefore := len(h.etcd.History())
	annotate("no-such-snapshot")
	envtest.Eventually(t, wait, restoreIs("no-such-snapshot", basaltv1.RestorePhaseFailed))
	if got, _ := get(ctx, c); !strings.Contains(got.Status.EtcdRestore.Message, "not listed in status.etcdBackup.snapshots") {
		t.Errorf("message %q does not say what to change", got.Status.EtcdRestore.Message)
	}
	for name, rec := range records() {
		if rec == nil || rec.Epoch != "" {
			t.Errorf("a refused restore changed Machine %s's etcd record: %+v", name, rec)
		}
	}

	// From the snapshot; the store fails first.
	h.stager.fail(errors.New("store unreachable"))
	annotate(snap.Name)
	envtest.Eventually(t, wait, func() error {
		got, err := get(ctx, c)
		if err != nil {
			return err
		}
		if err := restoreIs(snap.Name, basaltv1.RestorePhaseFetching)(); err != nil {
			return err
		}
		if !strings.Contains(got.Status.EtcdRestore.Message, "store unreachable") {
			return fmt.Errorf("message %q", got.Status.EtcdRestore.Message)
		}
		return conditionIs(got.Status.Conditions, basaltv1.ClusterEtcdReady, metav1.ConditionFalse, basaltv1.ReasonEtcdRestoring)
	})
	for name, rec := range records() {
		if rec == nil || rec.Epoch != "" {
			t.Errorf("a restore whose snapshot could not be fetched changed Machine %s's etcd record: %+v", name, rec)
		}
	}
	h.stager.fail(nil)
	envtest.Eventually(t, 2*wait, restoreIs(snap.Name, basaltv1.RestorePhaseCompleted))
	got, _ = get(ctx, c)
	st := got.Status.EtcdRestore
	seed, epoch := st.Machine, st.Epoch
	if !strings.HasPrefix(epoch, "r") || st.CompletedAt == nil || st.Snapshot == nil || st.Snapshot.SHA256 != snap.SHA256 {
		t.Errorf("status.etcdRestore = %+v", st)
	}
	if !slices.Contains(h.etcd.History()[historyBefore:], "Restore "+seed) {
		t.Errorf("etcd history %v: the seed was never restored", h.etcd.History()[historyBefore:])
	}
	envtest.Eventually(t, 2*wait, func() error {
		if err := etcdReady(); err != nil {
			return err
		}
		for name, rec := range records() {
			if rec == nil || rec.Epoch != epoch || rec.Learner {
				return fmt.Errorf("Machine %s: record %+v, want a voter of epoch %s", name, rec, epoch)
			}
		}
		if n := len(h.etcd.Names()); n != 3 {
			return fmt.Errorf("etcd members %v", h.etcd.Names())
		}
		return nil
	})
	rec := records()[seed]
	if rec.Join || rec.Restore == nil || !rec.Restore.Done || rec.Restore.SnapshotSHA256 != snap.SHA256 {
		t.Errorf("seed record %+v", rec)
	}
	// The seed's Plan keeps seeding from the snapshot (its data dir exists, the command never
	// runs again) but no longer carries the snapshot file.
	sm := &basaltv1.Machine{}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: seed}, sm); err != nil {
		t.Fatal(err)
	}
	p, _, err := storedPlan(ctx, sm)
	if err != nil {
		t.Fatal(err)
	}
	etcd := p.Services[slices.IndexFunc(p.Services, func(s plan.Service) bool { return s.Name == "etcd" })]
	if etcd.Init == nil || etcd.Init.Creates != "/var/lib/etcd-"+epoch {
		t.Errorf("seed etcd init %+v", etcd.Init)
	}
	if slices.ContainsFunc(p.Artifacts, func(a plan.Artifact) bool { return a.SHA256 == snap.SHA256 }) {
		t.Error("the seed's Plan still carries the snapshot after the restore")
	}

	// Applied again by a GitOps tool: nothing more happens.
	restores := strings.Count(strings.Join(h.etcd.History(), "\n"), "Restore ")
	annotate(snap.Name)

	// From a member's data: another epoch, reading the former epoch's database.
	var other string
	for name := range records() {
		if name != seed && (other == "" || name < other) {
			other = name
		}
	}
	annotate(basaltv1.EtcdRestoreMemberPrefix + other)
	envtest.Eventually(t, 2*wait, restoreIs(basaltv1.EtcdRestoreMemberPrefix+other, basaltv1.RestorePhaseCompleted))
	got, _ = get(ctx, c)
	if got.Status.EtcdRestore.Machine != other || got.Status.EtcdRestore.Epoch == epoch {
		t.Errorf("status.etcdRestore = %+v", got.Status.EtcdRestore)
	}
	rec = records()[other]
	if rec.Restore == nil || !rec.Restore.FromMemberData || rec.Restore.DataEpoch != epoch {
		t.Errorf("member-data seed record %+v, want data of epoch %s", rec, epoch)
	}
	if n := strings.Count(strings.Join(h.etcd.History(), "\n"), "Restore "); n != restores+1 {
		t.Errorf("%d restores after the snapshot's, want 1 (the same request applied again restores nothing)", n-restores)
	}
	envtest.Eventually(t, 2*wait, etcdReady)
}
