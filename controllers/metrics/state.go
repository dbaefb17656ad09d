package metrics

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
)

// State exports the state of every Cluster, Machine and Host as gauges, read from the manager's
// cache at each scrape (the way kube-state-metrics does): what alerts need (a Cluster not Ready,
// a Machine stuck, certificates about to expire, a stale backup) from the objects themselves, so
// the figures are right after a manager restart and cost nothing between scrapes.
//
//	basalt_cluster_info{namespace,name,phase,version}                         1
//	basalt_machine_info{namespace,name,cluster,role,phase}                    1
//	basalt_host_info{namespace,name,state,power}                              1
//	basalt_condition{kind,namespace,name,type,status,reason}                  1, one series per condition
//	basalt_cluster_certificates_expiry_timestamp_seconds{namespace,name}     the first leaf's NotAfter
//	basalt_cluster_etcd_snapshot_timestamp_seconds{namespace,name}           the newest snapshot's time
//	basalt_state_scrape_error{kind}                                          1 when listing a kind failed
//
// Remediation stopped is basalt_condition{kind="Cluster",type="Stalled",reason="RemediationLimitReached"}.
type State struct {
	// Reader lists the objects: the manager's cached client.
	Reader client.Reader
	// Timeout bounds one scrape's listing; default 10s.
	Timeout time.Duration
}

var (
	clusterInfo = prometheus.NewDesc("basalt_cluster_info", "One per Cluster, with its phase and running version.",
		[]string{"namespace", "name", "phase", "version"}, nil)
	machineInfo = prometheus.NewDesc("basalt_machine_info", "One per Machine, with its Cluster, role and phase.",
		[]string{"namespace", "name", "cluster", "role", "phase"}, nil)
	hostInfo = prometheus.NewDesc("basalt_host_info", "One per Host, with its state and power as the BMC reports it.",
		[]string{"namespace", "name", "state", "power"}, nil)
	condition = prometheus.NewDesc("basalt_condition",
		"One per condition of every Cluster, Machine and Host: 1, with its status (True, False, Unknown) and reason. Alert on status != \"True\" for type Ready, or on type Stalled.",
		[]string{"kind", "namespace", "name", "type", "status", "reason"}, nil)
	certExpiry = prometheus.NewDesc("basalt_cluster_certificates_expiry_timestamp_seconds",
		"When the Cluster's leaf certificate that expires first expires (status.certificatesExpireAt), Unix seconds.",
		[]string{"namespace", "name"}, nil)
	snapshotTime = prometheus.NewDesc("basalt_cluster_etcd_snapshot_timestamp_seconds",
		"When the Cluster's newest listed etcd snapshot was taken, Unix seconds; absent while it has none.",
		[]string{"namespace", "name"}, nil)
	scrapeErrors = prometheus.NewDesc("basalt_state_scrape_error",
		"1 when the last listing of a kind for these metrics failed (its series are then missing), else 0.",
		[]string{"kind"}, nil)
)

// Describe implements prometheus.Collector.
func (s *State) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{clusterInfo, machineInfo, hostInfo, condition, certExpiry, snapshotTime, scrapeErrors} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (s *State) Collect(ch chan<- prometheus.Metric) {
	timeout := s.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	failed := func(kind string, err error) {
		v := 0.0
		if err != nil {
			v = 1
		}
		gauge(scrapeErrors, v, kind)
	}
	conds := func(kind, ns, name string, cs []metav1.Condition) {
		for _, c := range cs {
			gauge(condition, 1, kind, ns, name, c.Type, string(c.Status), c.Reason)
		}
	}

	var cl basaltv1.ClusterList
	err := s.Reader.List(ctx, &cl)
	failed(KindCluster, err)
	for i := range cl.Items {
		c := &cl.Items[i]
		gauge(clusterInfo, 1, c.Namespace, c.Name, string(c.Status.Phase), c.Status.Version)
		conds(KindCluster, c.Namespace, c.Name, c.Status.Conditions)
		if t := c.Status.CertificatesExpireAt; t != nil {
			gauge(certExpiry, float64(t.Unix()), c.Namespace, c.Name)
		}
		if b := c.Status.EtcdBackup; b != nil {
			var newest time.Time
			for _, sn := range b.Snapshots {
				if sn.TakenAt.After(newest) {
					newest = sn.TakenAt.Time
				}
			}
			if !newest.IsZero() {
				gauge(snapshotTime, float64(newest.Unix()), c.Namespace, c.Name)
			}
		}
	}
	var ml basaltv1.MachineList
	err = s.Reader.List(ctx, &ml)
	failed(KindMachine, err)
	for i := range ml.Items {
		m := &ml.Items[i]
		gauge(machineInfo, 1, m.Namespace, m.Name, m.Spec.Cluster, string(m.Spec.Role), string(m.Status.Phase))
		conds(KindMachine, m.Namespace, m.Name, m.Status.Conditions)
	}
	var hl basaltv1.HostList
	err = s.Reader.List(ctx, &hl)
	failed(KindHost, err)
	for i := range hl.Items {
		h := &hl.Items[i]
		gauge(hostInfo, 1, h.Namespace, h.Name, string(h.Status.State), string(h.Status.Power))
		conds(KindHost, h.Namespace, h.Name, h.Status.Conditions)
	}
}
