package metrics

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
)

// inNamespace lists only one namespace, so the test sees its own objects on the shared API server.
type inNamespace struct {
	client.Reader
	ns string
}

func (r inNamespace) List(ctx context.Context, l client.ObjectList, opts ...client.ListOption) error {
	return r.Reader.List(ctx, l, append(opts, client.InNamespace(r.ns))...)
}

// TestStateGauges: the state metrics are read from the objects as the API server has them: each
// object's info series, one series per condition with its status and reason, the certificate
// expiry and the newest snapshot's time of a Cluster.
func TestStateGauges(t *testing.T) {
	ctx := context.Background()
	ns := env.Namespace(t)
	c := &basaltv1.Cluster{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "prod"}, Spec: basaltv1.ClusterSpec{Version: "v1.37.2"}}
	if err := env.Client.Create(ctx, c); err != nil {
		t.Fatal(err)
	}
	expiry := metav1.NewTime(time.Date(2027, 12, 1, 0, 0, 0, 0, time.UTC))
	c.Status.Phase, c.Status.Version, c.Status.CertificatesExpireAt = basaltv1.ClusterPhaseRunning, "v1.37.2", &expiry
	c.Status.EtcdBackup = &basaltv1.EtcdBackupStatus{Snapshots: []basaltv1.EtcdSnapshot{
		snapshot("a", time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)),
		snapshot("b", time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)),
	}}
	c.Status.Conditions = []metav1.Condition{
		{Type: basaltv1.ConditionReady, Status: metav1.ConditionFalse, Reason: basaltv1.ReasonRemediationLimitReached, Message: "x", LastTransitionTime: metav1.Now()},
		{Type: basaltv1.ConditionStalled, Status: metav1.ConditionTrue, Reason: basaltv1.ReasonRemediationLimitReached, Message: "x", LastTransitionTime: metav1.Now()},
	}
	if err := env.Client.Status().Update(ctx, c); err != nil {
		t.Fatal(err)
	}
	h := &basaltv1.Host{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "h1"},
		Spec: basaltv1.HostSpec{SSH: &basaltv1.SSHSpec{Address: "10.0.0.9", PrivateKeySecretRef: basaltv1.SecretKeyReference{Name: "s", Key: "k"}}}}
	if err := env.Client.Create(ctx, h); err != nil {
		t.Fatal(err)
	}
	h.Status.State, h.Status.Power = basaltv1.HostStateAvailable, basaltv1.PowerOn
	if err := env.Client.Status().Update(ctx, h); err != nil {
		t.Fatal(err)
	}
	m := &basaltv1.Machine{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "prod-cp-a"},
		Spec: basaltv1.MachineSpec{Cluster: "prod", Role: basaltv1.RoleControlPlane}}
	if err := env.Client.Create(ctx, m); err != nil {
		t.Fatal(err)
	}

	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(&State{Reader: inNamespace{env.Client, ns}})
	want := `
# HELP basalt_cluster_certificates_expiry_timestamp_seconds When the Cluster's leaf certificate that expires first expires (status.certificatesExpireAt), Unix seconds.
# TYPE basalt_cluster_certificates_expiry_timestamp_seconds gauge
basalt_cluster_certificates_expiry_timestamp_seconds{name="prod",namespace="NS"} 1.8276192e+09
# HELP basalt_cluster_etcd_snapshot_timestamp_seconds When the Cluster's newest listed etcd snapshot was taken, Unix seconds; absent while it has none.
# TYPE basalt_cluster_etcd_snapshot_timestamp_seconds gauge
basalt_cluster_etcd_snapshot_timestamp_seconds{name="prod",namespace="NS"} 1.7966448e+09
# HELP basalt_cluster_info One per Cluster, with its phase and running version.
# TYPE basalt_cluster_info gauge
basalt_cluster_info{name="prod",namespace="NS",phase="Running",version="v1.37.2"} 1
# HELP basalt_host_info One per Host, with its state and power as the BMC reports it.
# TYPE basalt_host_info gauge
basalt_host_info{name="h1",namespace="NS",power="On",state="Available"} 1
# HELP basalt_machine_info One per Machine, with its Cluster, role and phase.
# TYPE basalt_machine_info gauge
basalt_machine_info{cluster="prod",name="prod-cp-a",namespace="NS",phase="",role="control-plane"} 1
`
	want = strings.ReplaceAll(want, "NS", ns)
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "basalt_cluster_info", "basalt_machine_info", "basalt_host_info",
		"basalt_cluster_certificates_expiry_timestamp_seconds", "basalt_cluster_etcd_snapshot_timestamp_seconds"); err != nil {
		t.Error(err)
	}
	conds := `
# HELP basalt_condition One per condition of every Cluster, Machine and Host: 1, with its status (True, False, Unknown) and reason. Alert on status != "True" for type Ready, or on type Stalled.
# TYPE basalt_condition gauge
basalt_condition{kind="Cluster",name="prod",namespace="NS",reason="RemediationLimitReached",status="False",type="Ready"} 1
basalt_condition{kind="Cluster",name="prod",namespace="NS",reason="RemediationLimitReached",status="True",type="Stalled"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(strings.ReplaceAll(conds, "NS", ns)), "basalt_condition"); err != nil {
		t.Error(err)
	}
	if n, err := testutil.GatherAndCount(reg, "basalt_state_scrape_error"); err != nil || n != 3 {
		t.Errorf("basalt_state_scrape_error series: %d, %v", n, err)
	}
}

func snapshot(name string, at time.Time) basaltv1.EtcdSnapshot {
	return basaltv1.EtcdSnapshot{Name: name, Location: "s3://bucket/" + name, TakenAt: metav1.NewTime(at), Size: 1 << 20, Revision: 42,
		SHA256: strings.Repeat("ab", 32), Trigger: "Scheduled"}
}
