package etcdbackup_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
	"github.com/basalt-dev/basalt/bootstrap/clusterpki"
	"github.com/basalt-dev/basalt/bootstrap/pki"
	"github.com/basalt-dev/basalt/controllers/etcdbackup"
	"github.com/basalt-dev/basalt/controllers/etcdcluster"
	"github.com/basalt-dev/basalt/controllers/pkisecrets"
	"github.com/basalt-dev/basalt/controllers/topology"
	"github.com/basalt-dev/basalt/test/envtest"
	"github.com/basalt-dev/basalt/test/ports"
	"github.com/basalt-dev/basalt/test/s3server"
)

var env *envtest.Env

func TestMain(m *testing.M) {
	envtest.Main(m, &env)
}

// clock is the Reconciler's clock, moved by the test.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) set(t time.Time) { c.mu.Lock(); defer c.mu.Unlock(); c.t = t }

// etcdMember is one real etcd process serving TLS on loopback with the certificates of the
// cluster's etcd CA, as a control-plane node's etcd does.
type etcdMember struct {
	cmd       *exec.Cmd
	done      chan struct{}
	clientURL string
	log       string
}

// etcdBinary is etcd of the artifact set the integration tests run with (make envtest-assets).
func etcdBinary(t *testing.T) string {
	t.Helper()
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		t.Fatal("KUBEBUILDER_ASSETS is unset: run `make envtest-assets` and set it to the folder it prints")
	}
	bin := filepath.Join(assets, "etcd")
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("etcd is missing at %s: %v", bin, err)
	}
	return bin
}

// startEtcd runs a one-member etcd whose client URL serves a certificate of ca and requires
// client certificates of ca.
func startEtcd(t *testing.T, ca *pki.KeyPair) *etcdMember {
	t.Helper()
	dir := t.TempDir()
	server, _, err := pki.EnsureCertificate(nil, ca, must(pki.EtcdServerCert("m1", net.IPv4(127, 0, 0, 1))), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{"ca.crt": ca.Cert, "server.crt": server.Cert, "server.key": server.Key}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	free := ports.FreeLoopback(t, 2)
	clientURL := "https://127.0.0.1:" + strconv.Itoa(free[0])
	peerURL := "http://127.0.0.1:" + strconv.Itoa(free[1])
	m := &etcdMember{clientURL: clientURL, log: filepath.Join(dir, "etcd.log"), done: make(chan struct{})}
	logf, err := os.Create(m.log)
	if err != nil {
		t.Fatal(err)
	}
	m.cmd = exec.Command(etcdBinary(t), "--name=m1", "--data-dir="+filepath.Join(dir, "data"),
		"--listen-client-urls="+clientURL, "--advertise-client-urls="+clientURL,
		"--listen-peer-urls="+peerURL, "--initial-advertise-peer-urls="+peerURL,
		"--initial-cluster=m1="+peerURL, "--initial-cluster-state=new",
		"--client-cert-auth", "--trusted-ca-file="+filepath.Join(dir, "ca.crt"),
		"--cert-file="+filepath.Join(dir, "server.crt"), "--key-file="+filepath.Join(dir, "server.key"))
	m.cmd.Stdout, m.cmd.Stderr = logf, logf
	if err := m.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = m.cmd.Wait(); _ = logf.Close(); close(m.done) }()
	t.Cleanup(func() {
		m.stop()
		if t.Failed() {
			b, _ := os.ReadFile(m.log)
			lines := strings.Split(strings.TrimSpace(string(b)), "\n")
			t.Logf("Last lines of etcd's log:\n%s", strings.Join(lines[max(0, len(lines)-10):], "\n"))
		}
	})
	return m
}

func (m *etcdMember) stop() {
	select {
	case <-m.done:
	default:
		_ = m.cmd.Process.Kill()
		<-m.done
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// etcdClient is a plain client/v3 client with the cluster's apiserver-etcd-client certificate.
func etcdClient(t *testing.T, url string, ca, pair *pki.KeyPair) *clientv3.Client {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.Cert)
	cert, err := tls.X509KeyPair(pair.Cert, pair.Key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{url}, DialTimeout: 5 * time.Second, Logger: zap.NewNop(),
		TLS: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// bed is one Cluster with a control-plane Machine whose etcd is a real process, an S3 server and
// the Reconciler under test, driven by direct Reconcile calls with a clock the test moves.
type bed struct {
	t       *testing.T
	ctx     context.Context
	ns      string
	cluster *basaltv1.Cluster
	etcd    *etcdMember
	kv      *clientv3.Client
	s3      *s3server.Server
	store   etcdbackup.Store
	clock   *clock
	rec     *etcdbackup.Reconciler
	events  *events.FakeRecorder
}

const bucket = "snapshots"

func newBed(t *testing.T, backup basaltv1.EtcdBackupSpec) *bed {
	t.Helper()
	ctx := ctrl.LoggerInto(context.Background(), ctrl.Log)
	ns := env.Namespace(t)
	b := &bed{t: t, ctx: ctx, ns: ns, clock: &clock{}, events: events.NewFakeRecorder(100)}

	b.s3 = s3server.Start(t, bucket)
	backup.S3.Endpoint = b.s3.Endpoint
	backup.S3.Bucket = bucket
	backup.S3.Insecure = true
	backup.S3.CredentialsSecret = "s3"
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "s3", Namespace: ns},
		Data: map[string][]byte{etcdbackup.SecretAccessKeyID: []byte("basalt"), etcdbackup.SecretSecretAccessKey: []byte("basalt-secret")}}
	if err := env.Client.Create(ctx, sec); err != nil {
		t.Fatal(err)
	}
	store, err := etcdbackup.NewS3(backup.S3, sec)
	if err != nil {
		t.Fatal(err)
	}
	b.store = store

	c := &basaltv1.Cluster{
		ObjectMeta: metav1.ObjectMeta{Name: "prod", Namespace: ns},
		Spec: basaltv1.ClusterSpec{
			Version:      "v1.37.2",
			ControlPlane: basaltv1.ControlPlaneSpec{Replicas: 1, HostSelector: metav1.LabelSelector{MatchLabels: map[string]string{"role": "cp"}}},
			Etcd:         &basaltv1.EtcdSpec{Backup: &backup},
		},
	}
	if err := env.Client.Create(ctx, c); err != nil {
		t.Fatal(err)
	}
	b.cluster = c
	b.clock.set(c.CreationTimestamp.Time)

	// The cluster's etcd CA and the manager's client certificate, stored as the Cluster
	// controller stores them; etcd runs with that CA.
	now := time.Now()
	ca, _, err := pki.EnsureCA(nil, pki.EtcdCARequest(), now)
	if err != nil {
		t.Fatal(err)
	}
	pair, _, err := pki.EnsureCertificate(nil, ca, pki.APIServerEtcdClientCert(), now)
	if err != nil {
		t.Fatal(err)
	}
	stored, err := pkisecrets.Load(ctx, env.Client, c)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := stored.Sync(ctx, env.Client, c, clusterpki.Material{clusterpki.EtcdCA: *ca, clusterpki.APIServerEtcdClient: *pair}, clusterpki.EncryptionKeys{}, nil); err != nil {
		t.Fatal(err)
	}
	b.etcd = startEtcd(t, ca)
	b.kv = etcdClient(t, b.etcd.clientURL, ca, pair)

	// The control-plane Machine on its Host, its member a voter its agent reports healthy.
	h := env.CreateAvailableHost(t, envtest.AvailableHostInput{Namespace: ns, Name: "cp-0", Address: "192.0.2.10"})
	m := &basaltv1.Machine{
		ObjectMeta: metav1.ObjectMeta{Name: "prod-cp-0", Namespace: ns, Labels: map[string]string{basaltv1.LabelClusterName: "prod", basaltv1.LabelRole: string(basaltv1.RoleControlPlane)}},
		Spec:       basaltv1.MachineSpec{Cluster: "prod", Role: basaltv1.RoleControlPlane, HostRef: &basaltv1.LocalObjectReference{Name: h.Name}},
	}
	if err := env.Client.Create(ctx, m); err != nil {
		t.Fatal(err)
	}
	m.Status.Etcd = &basaltv1.MachineEtcd{}
	m.Status.Components = []basaltv1.ComponentHealth{{Name: topology.ComponentEtcd, Healthy: true}}
	if err := env.Client.Status().Update(ctx, m); err != nil {
		t.Fatal(err)
	}

	b.rec = &etcdbackup.Reconciler{
		Client: env.Client, APIReader: env.Client, Recorder: b.events,
		// The node's address is 192.0.2.10; its etcd is the process on loopback.
		EtcdEndpoint: func(ip netip.Addr) string {
			if ip.String() != "192.0.2.10" {
				t.Errorf("the controller asked for the etcd of %s, which is no control-plane node", ip)
			}
			return b.etcd.clientURL
		},
		TempDir: t.TempDir(),
		Now:     b.clock.now,
	}
	// etcd answers before the test goes on.
	envtest.Eventually(t, time.Minute, func() error {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		_, err := b.kv.Put(cctx, "/registry/ready", "yes")
		return err
	})
	return b
}

// reconcile runs one reconcile at the clock's time and returns the Cluster after it.
func (b *bed) reconcile() (ctrl.Result, *basaltv1.Cluster) {
	b.t.Helper()
	res, err := b.rec.Reconcile(b.ctx, ctrl.Request{NamespacedName: client.ObjectKeyFromObject(b.cluster)})
	if err != nil {
		b.t.Fatalf("Reconcile: %v", err)
	}
	c := &basaltv1.Cluster{}
	if err := env.Client.Get(b.ctx, client.ObjectKeyFromObject(b.cluster), c); err != nil {
		b.t.Fatal(err)
	}
	return res, c
}

func (b *bed) annotate(value string) {
	b.t.Helper()
	c := &basaltv1.Cluster{}
	if err := env.Client.Get(b.ctx, client.ObjectKeyFromObject(b.cluster), c); err != nil {
		b.t.Fatal(err)
	}
	p := client.MergeFrom(c.DeepCopy())
	metav1.SetMetaDataAnnotation(&c.ObjectMeta, basaltv1.AnnotationEtcdSnapshot, value)
	if err := env.Client.Patch(b.ctx, c, p); err != nil {
		b.t.Fatal(err)
	}
}

// objects lists the object keys in the bucket.
func (b *bed) objects() []string { return b.s3.Objects() }

func condition(t *testing.T, c *basaltv1.Cluster, status metav1.ConditionStatus, reason string) *metav1.Condition {
	t.Helper()
	cond, err := envtest.Condition(c.Status.Conditions, basaltv1.ClusterBackupReady)
	if err != nil {
		t.Fatal(err)
	}
	if cond.Status != status || cond.Reason != reason {
		t.Fatalf("BackupReady is %s/%s (%s), want %s/%s", cond.Status, cond.Reason, cond.Message, status, reason)
	}
	return cond
}

// download fetches a listed snapshot from the store (etcdbackup.Fetch checks it against the
// status) and returns the keys it holds.
func (b *bed) download(s basaltv1.EtcdSnapshot) map[string][]byte {
	b.t.Helper()
	path, err := etcdbackup.Fetch(b.ctx, b.store, etcdbackup.KeyOf(b.cluster, s), s, b.t.TempDir())
	if err != nil {
		b.t.Fatal(err)
	}
	keys, err := etcdcluster.SnapshotKeys(path)
	if err != nil {
		b.t.Fatal(err)
	}
	return keys
}

// TestSnapshotOnRequest takes a requested snapshot from a real etcd into an S3 server and proves
// what it holds, that a request is served once (also when the status write was lost), and that
// the store and etcd being unavailable are reported, not hidden.
func TestSnapshotOnRequest(t *testing.T) {
	b := newBed(t, basaltv1.EtcdBackupSpec{Retention: 2})

	// Nothing due: the condition says so, and nothing is written.
	_, c := b.reconcile()
	condition(t, c, metav1.ConditionTrue, basaltv1.ReasonNoSnapshotYet)
	if got := b.objects(); len(got) != 0 {
		t.Fatalf("the store holds %v before any snapshot was due", got)
	}

	// Data written before the request is in the snapshot; a later write is not.
	if _, err := b.kv.Put(b.ctx, "/registry/configmaps/default/before", "kept"); err != nil {
		t.Fatal(err)
	}
	b.annotate("2026-12-07T08:00:00Z")
	_, c = b.reconcile()
	if _, err := b.kv.Put(b.ctx, "/registry/configmaps/default/after", "not in it"); err != nil {
		t.Fatal(err)
	}
	cond := condition(t, c, metav1.ConditionTrue, basaltv1.ReasonSnapshotTaken)
	t.Logf("BackupReady: %s", cond.Message)
	st := c.Status.EtcdBackup
	if st == nil || len(st.Snapshots) != 1 || st.LastRequest != "2026-12-07T08:00:00Z" {
		t.Fatalf("status.etcdBackup = %+v, want one snapshot and lastRequest set", st)
	}
	s := st.Snapshots[0]
	if s.Trigger != basaltv1.SnapshotRequested || s.Request != "2026-12-07T08:00:00Z" || s.Member != "prod-cp-0" ||
		!strings.HasPrefix(s.Location, "s3://"+bucket+"/"+b.ns+"/prod/") || s.Revision < 2 || s.Keys < 2 {
		t.Fatalf("snapshot %+v", s)
	}
	keys := b.download(s)
	if string(keys["/registry/configmaps/default/before"]) != "kept" {
		t.Fatalf("the snapshot lacks the key written before it (it holds %d keys)", len(keys))
	}
	if _, ok := keys["/registry/configmaps/default/after"]; ok {
		t.Fatal("the snapshot holds a key written after it")
	}
	// A record that does not describe the object is caught before anything uses the file.
	for name, bad := range map[string]basaltv1.EtcdSnapshot{
		"sha256":   func() basaltv1.EtcdSnapshot { x := s; x.SHA256 = strings.Repeat("0", 64); return x }(),
		"revision": func() basaltv1.EtcdSnapshot { x := s; x.Revision++; return x }(),
	} {
		if _, err := etcdbackup.Fetch(b.ctx, b.store, etcdbackup.KeyOf(b.cluster, s), bad, t.TempDir()); !errors.Is(err, etcdbackup.ErrSnapshotMismatch) {
			t.Errorf("Fetch with a wrong %s in the record: %v, want ErrSnapshotMismatch", name, err)
		}
	}
	if got := b.objects(); len(got) != 2 {
		t.Fatalf("the store holds %v, want the snapshot and its record", got)
	}

	// The same request again, and the same request after a lost status write: served once.
	b.reconcile()
	c.Status.EtcdBackup.LastRequest = ""
	if err := env.Client.Status().Update(b.ctx, c); err != nil {
		t.Fatal(err)
	}
	_, c = b.reconcile()
	if got := b.objects(); len(got) != 2 || c.Status.EtcdBackup.LastRequest != "2026-12-07T08:00:00Z" {
		t.Fatalf("after re-reconciling the served request: objects %v, lastRequest %q", got, c.Status.EtcdBackup.LastRequest)
	}

	// etcd down: a new request waits and says why.
	b.etcd.stop()
	b.annotate("second")
	res, c := b.reconcile()
	cond = condition(t, c, metav1.ConditionFalse, basaltv1.ReasonWaitingForEtcd)
	if res.RequeueAfter <= 0 || c.Status.EtcdBackup.LastRequest == "second" {
		t.Fatalf("with etcd down: requeue %v, lastRequest %q", res.RequeueAfter, c.Status.EtcdBackup.LastRequest)
	}
	t.Logf("BackupReady with etcd down: %s", cond.Message)

	// The credentials Secret gone: said so.
	if err := env.Client.Delete(b.ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "s3", Namespace: b.ns}}); err != nil {
		t.Fatal(err)
	}
	_, c = b.reconcile()
	cond = condition(t, c, metav1.ConditionFalse, basaltv1.ReasonBackupCredentialsMissing)
	if !strings.Contains(cond.Message, "accessKeyID") {
		t.Fatalf("the message does not say what the Secret needs: %s", cond.Message)
	}
}

// TestSnapshotSchedule drives a schedule through time: the first time after the Cluster's
// creation, missed times collapsed into one snapshot, the retention keeping the newest scheduled
// ones and never a requested one.
func TestSnapshotSchedule(t *testing.T) {
	b := newBed(t, basaltv1.EtcdBackupSpec{Schedule: "*/10 * * * *", Retention: 2})
	created := b.cluster.CreationTimestamp.Time
	first := created.Truncate(10 * time.Minute).Add(10 * time.Minute)

	res, c := b.reconcile()
	condition(t, c, metav1.ConditionTrue, basaltv1.ReasonNoSnapshotYet)
	if n := c.Status.EtcdBackup.NextScheduled; n == nil || !n.Time.Equal(first) {
		t.Fatalf("nextScheduled %v, want %v", n, first)
	}
	if want := first.Sub(created); res.RequeueAfter != want {
		t.Fatalf("requeue after %v, want %v (the next scheduled time)", res.RequeueAfter, want)
	}

	// One requested snapshot, which the retention must never delete.
	b.annotate("keep-me")
	b.reconcile()

	// The first scheduled time passes.
	b.clock.set(first.Add(5 * time.Second))
	_, c = b.reconcile()
	names := func(c *basaltv1.Cluster) []string {
		var out []string
		for _, s := range c.Status.EtcdBackup.Snapshots {
			out = append(out, s.Trigger+":"+s.Name)
		}
		return out
	}
	slot := func(t time.Time) string { return t.UTC().Format("20060102T150405Z") + "-scheduled" }
	if got := names(c); len(got) != 2 || got[0] != "Scheduled:"+slot(first) {
		t.Fatalf("snapshots after the first scheduled time: %v", got)
	}
	if l := c.Status.EtcdBackup.LastScheduled; l == nil || !l.Time.Equal(first) {
		t.Fatalf("lastScheduled %v, want %v", l, first)
	}

	// The manager was down for 35 minutes: one snapshot, for the latest missed time.
	b.clock.set(first.Add(35 * time.Minute))
	_, c = b.reconcile()
	latest := first.Add(30 * time.Minute)
	if got := names(c); len(got) != 3 || got[0] != "Scheduled:"+slot(latest) {
		t.Fatalf("snapshots after 35 minutes down: %v", got)
	}

	// Two more times: the retention (2) deletes the oldest scheduled ones, keeps the request.
	for i := 1; i <= 2; i++ {
		b.clock.set(latest.Add(time.Duration(i)*10*time.Minute + time.Second))
		b.reconcile()
	}
	_, c = b.reconcile()
	got := names(c)
	want := []string{"Scheduled:" + slot(latest.Add(20*time.Minute)), "Scheduled:" + slot(latest.Add(10*time.Minute))}
	if len(got) != 3 || got[0] != want[0] || got[1] != want[1] || !strings.HasPrefix(got[2], "Requested:") {
		t.Fatalf("snapshots after the retention: %v, want %v and the requested one", got, want)
	}
	if objs := b.objects(); len(objs) != 6 {
		t.Fatalf("the store holds %d objects (%v), want 3 snapshots and their records", len(objs), objs)
	}
	deleted := 0
	for len(b.events.Events) > 0 {
		if e := <-b.events.Events; strings.Contains(e, "SnapshotDeleted") {
			deleted++
		}
	}
	if deleted != 2 {
		t.Fatalf("%d SnapshotDeleted events, want 2", deleted)
	}
}

// TestInvalidBackupSpecsAreRefused: the API server refuses what the controller could not use,
// with a message that says what to write.
func TestInvalidBackupSpecsAreRefused(t *testing.T) {
	ns := env.Namespace(t)
	for _, tc := range []struct {
		name   string
		mutate func(*basaltv1.EtcdBackupSpec)
		want   string
	}{
		{"schedule", func(s *basaltv1.EtcdBackupSpec) { s.Schedule = "every day" }, "spec.etcd.backup.schedule must be a cron expression"},
		{"endpoint", func(s *basaltv1.EtcdBackupSpec) { s.S3.Endpoint = "https://s3.example.com" }, "without a scheme"},
		{"bucket", func(s *basaltv1.EtcdBackupSpec) { s.S3.Bucket = "Bad_Bucket" }, "spec.etcd.backup.s3.bucket"},
		{"retention", func(s *basaltv1.EtcdBackupSpec) { s.Retention = -1 }, "spec.etcd.backup.retention"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := basaltv1.EtcdBackupSpec{Schedule: "@daily", S3: basaltv1.S3Store{Endpoint: "s3.example.com", Bucket: "backups", CredentialsSecret: "s3"}}
			tc.mutate(&spec)
			c := &basaltv1.Cluster{ObjectMeta: metav1.ObjectMeta{Name: "bad-" + tc.name, Namespace: ns},
				Spec: basaltv1.ClusterSpec{Version: "v1.37.2", Etcd: &basaltv1.EtcdSpec{Backup: &spec},
					ControlPlane: basaltv1.ControlPlaneSpec{Replicas: 1, HostSelector: metav1.LabelSelector{MatchLabels: map[string]string{"role": "cp"}}}}}
			err := env.Client.Create(context.Background(), c)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("creating a Cluster with a bad %s: %v, want an error with %q", tc.name, err, tc.want)
			}
		})
	}
	// The descriptors and @every are accepted.
	for i, s := range []string{"@hourly", "@every 6h", "0 */6 * * *", "30 2 * * 1-5"} {
		c := &basaltv1.Cluster{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("ok-%d", i), Namespace: ns},
			Spec: basaltv1.ClusterSpec{Version: "v1.37.2", Etcd: &basaltv1.EtcdSpec{Backup: &basaltv1.EtcdBackupSpec{Schedule: s,
				S3: basaltv1.S3Store{Endpoint: "s3.example.com:9000", Bucket: "backups", CredentialsSecret: "s3"}}},
				ControlPlane: basaltv1.ControlPlaneSpec{Replicas: 1, HostSelector: metav1.LabelSelector{MatchLabels: map[string]string{"role": "cp"}}}}}
		if err := env.Client.Create(context.Background(), c); err != nil {
			t.Fatalf("schedule %q refused: %v", s, err)
		}
	}
}

// TestEtcdQuotaBounds: spec.etcd.quotaBackendBytes below 16 MiB or above 100 GiB is refused.
func TestEtcdQuotaBounds(t *testing.T) {
	ns := env.Namespace(t)
	for i, tc := range []struct {
		quota int64
		ok    bool
	}{{1 << 20, false}, {200 << 30, false}, {16 << 20, true}, {8 << 30, true}} {
		c := &basaltv1.Cluster{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("quota-%d", i), Namespace: ns},
			Spec: basaltv1.ClusterSpec{Version: "v1.37.2", Etcd: &basaltv1.EtcdSpec{QuotaBackendBytes: &tc.quota},
				ControlPlane: basaltv1.ControlPlaneSpec{Replicas: 1, HostSelector: metav1.LabelSelector{MatchLabels: map[string]string{"role": "cp"}}}}}
		err := env.Client.Create(context.Background(), c)
		switch {
		case tc.ok && err != nil:
			t.Errorf("quota %d refused: %v", tc.quota, err)
		case !tc.ok && (err == nil || !strings.Contains(err.Error(), "spec.etcd.quotaBackendBytes")):
			t.Errorf("quota %d: %v, want a refusal naming spec.etcd.quotaBackendBytes", tc.quota, err)
		}
	}
}

// TestTwoRequestsInOneSecond: a second request served in the same second as the first gets a
// snapshot of its own; neither overwrites the other.
func TestTwoRequestsInOneSecond(t *testing.T) {
	b := newBed(t, basaltv1.EtcdBackupSpec{Retention: 2})
	b.annotate("first")
	b.reconcile()
	b.annotate("second")
	_, c := b.reconcile()
	st := c.Status.EtcdBackup
	if len(st.Snapshots) != 2 || st.Snapshots[0].Name == st.Snapshots[1].Name || len(b.objects()) != 4 {
		t.Fatalf("after two requests in one second: %+v, objects %v", st.Snapshots, b.objects())
	}
	for _, s := range st.Snapshots {
		b.download(s)
	}
}
