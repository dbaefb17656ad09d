package etcdbackup

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
)

var (
	snapshotsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "basalt_etcd_snapshots_total",
		Help: "etcd snapshots attempted by the backup controller, by result (stored, failed).",
	}, []string{"namespace", "cluster", "result"})
	snapshotDuration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "basalt_etcd_snapshot_duration_seconds",
		Help:    "Time to stream, check and store one etcd snapshot.",
		Buckets: []float64{0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800},
	})
	lastSnapshot = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "basalt_etcd_snapshot_last_success_timestamp_seconds",
		Help: "When the latest etcd snapshot of a Cluster that this manager stored was taken (Unix time); alert on its age.",
	}, []string{"namespace", "cluster"})
	lastSnapshotBytes = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "basalt_etcd_snapshot_last_size_bytes",
		Help: "Size of the latest etcd snapshot of a Cluster that this manager stored.",
	}, []string{"namespace", "cluster"})
)

func init() {
	crmetrics.Registry.MustRegister(snapshotsTotal, snapshotDuration, lastSnapshot, lastSnapshotBytes)
}

func observeSuccess(c *basaltv1.Cluster, s basaltv1.EtcdSnapshot, took time.Duration) {
	snapshotsTotal.WithLabelValues(c.Namespace, c.Name, "stored").Inc()
	snapshotDuration.Observe(took.Seconds())
	lastSnapshot.WithLabelValues(c.Namespace, c.Name).Set(float64(s.TakenAt.Unix()))
	lastSnapshotBytes.WithLabelValues(c.Namespace, c.Name).Set(float64(s.Size))
}

func observeFailure(c *basaltv1.Cluster) {
	snapshotsTotal.WithLabelValues(c.Namespace, c.Name, "failed").Inc()
}
