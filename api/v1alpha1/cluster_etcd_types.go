package v1alpha1

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// AnnotationEtcdSnapshot, set on a Cluster, asks for one etcd snapshot now (besides the
// schedule). Its value names the request: the backup controller takes one snapshot per new
// value and records the value in status.etcdBackup.lastRequest, and it never removes the
// annotation, so a GitOps tool that keeps applying it asks nothing more. Write a new value
// (e.g. the time) to take another snapshot (docs/backup.md).
const AnnotationEtcdSnapshot = "basalt.dev/etcd-snapshot"

// ClusterBackupReady is True when the latest snapshot attempt succeeded (or none was due yet)
// and the store is reachable; False says why the last attempt failed.
const ClusterBackupReady = "BackupReady"

// Reasons of the BackupReady condition.
const (
	// ReasonSnapshotTaken says the latest snapshot was taken, checked and stored.
	ReasonSnapshotTaken = "SnapshotTaken"
	// ReasonNoSnapshotYet says backups are configured and the store answers, but no snapshot was
	// due yet (the first scheduled time is ahead and none was requested).
	ReasonNoSnapshotYet = "NoSnapshotYet"
	// ReasonSnapshotFailed says taking or checking a snapshot failed; the message says where.
	ReasonSnapshotFailed = "SnapshotFailed"
	// ReasonBackupStoreError says the object store refused or could not be reached (endpoint,
	// bucket, credentials).
	ReasonBackupStoreError = "BackupStoreError"
	// ReasonBackupCredentialsMissing says the Secret spec.etcd.backup.s3.credentialsSecret
	// names is missing or lacks a key.
	ReasonBackupCredentialsMissing = "BackupCredentialsMissing"
	// ReasonInvalidSchedule says spec.etcd.backup.schedule is not a cron expression Basalt can
	// parse.
	ReasonInvalidSchedule = "InvalidSchedule"
	// ReasonWaitingForEtcd (shared with EtcdReady) says no voting etcd member is healthy to take
	// a snapshot from.
)

// Snapshot triggers.
const (
	// SnapshotScheduled is a snapshot taken at a time of spec.etcd.backup.schedule.
	SnapshotScheduled = "Scheduled"
	// SnapshotRequested is a snapshot asked for with the basalt.dev/etcd-snapshot annotation.
	SnapshotRequested = "Requested"
)

// EtcdSpec configures the cluster's etcd beyond its membership, which follows
// spec.controlPlane.
type EtcdSpec struct {
	// quotaBackendBytes is every member's --quota-backend-bytes: the database size at which etcd
	// raises its NOSPACE alarm and refuses writes until compacted and defragmented (Basalt does
	// that and disarms the alarm, docs/etcd.md). Unset: etcd's default, 2 GiB. etcd suggests at
	// most 8 GiB. Changing it changes every control-plane Plan: each member restarts with it.
	// +kubebuilder:validation:Minimum=16777216
	// +kubebuilder:validation:Maximum=107374182400
	// +optional
	QuotaBackendBytes *int64 `json:"quotaBackendBytes,omitempty"`

	// backup takes snapshots of etcd, on a schedule and on request, and keeps them in
	// S3-compatible object storage (docs/backup.md). Without it no snapshot is taken.
	// +optional
	Backup *EtcdBackupSpec `json:"backup,omitempty"`
}

// EtcdBackupSpec says when etcd snapshots are taken and where they are kept.
type EtcdBackupSpec struct {
	// schedule is a cron expression in UTC: five fields (minute hour day-of-month month
	// day-of-week), or @hourly, @daily, @weekly, @monthly, @every <duration>. Empty: snapshots are
	// taken only on request (annotation basalt.dev/etcd-snapshot). A time missed while the
	// manager was down is made up once, not once per missed time.
	// +kubebuilder:validation:MaxLength=128
	// +kubebuilder:validation:XValidation:rule="self == '' || self.matches('^@(hourly|daily|midnight|weekly|monthly|yearly|annually)$') || self.matches('^@every [0-9]+(\\\\.[0-9]+)?(ns|us|ms|s|m|h)([0-9]+(\\\\.[0-9]+)?(ns|us|ms|s|m|h))*$') || self.matches('^[^ ]+ [^ ]+ [^ ]+ [^ ]+ [^ ]+$')",message="spec.etcd.backup.schedule must be a cron expression of five fields separated by single spaces, e.g. '0 */6 * * *', or @hourly, @daily, @weekly, @monthly, @every 6h"
	// +optional
	Schedule string `json:"schedule,omitempty"`

	// retention is how many scheduled snapshots are kept; older ones are deleted from the store
	// after a new one is stored. Requested snapshots are never deleted by Basalt.
	// +kubebuilder:default=7
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000
	// +optional
	Retention int32 `json:"retention,omitempty"`

	// s3 is the S3-compatible bucket the snapshots are written to, under
	// <prefix><namespace>/<cluster>/.
	// +required
	S3 S3Store `json:"s3"`
}

// S3Store is a bucket of an S3-compatible object store.
type S3Store struct {
	// endpoint is host[:port] of the S3 API, without a scheme, e.g. s3.eu-west-1.amazonaws.com
	// or minio.storage.svc:9000.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="!self.contains('://') && !self.contains('/')",message="spec.etcd.backup.s3.endpoint is host[:port] without a scheme or path, e.g. minio.storage.svc:9000; set insecure for plain HTTP"
	// +required
	Endpoint string `json:"endpoint"`

	// bucket is the bucket's name; it must exist.
	// +kubebuilder:validation:MinLength=3
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9][a-z0-9.-]*[a-z0-9]$`
	// +required
	Bucket string `json:"bucket"`

	// prefix is put before every object name, e.g. "basalt/"; empty: none.
	// +kubebuilder:validation:MaxLength=256
	// +kubebuilder:validation:XValidation:rule="self == '' || (!self.startsWith('/') && !self.contains('..'))",message="spec.etcd.backup.s3.prefix must not start with / or contain .."
	// +optional
	Prefix string `json:"prefix,omitempty"`

	// region of the bucket; empty: the store's default (us-east-1 for most).
	// +kubebuilder:validation:MaxLength=64
	// +optional
	Region string `json:"region,omitempty"`

	// credentialsSecret names a Secret in the Cluster's namespace with the keys accessKeyID and
	// secretAccessKey, and optionally ca.crt: a PEM CA bundle that signs the endpoint's
	// certificate (else the manager's system roots are used).
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +required
	CredentialsSecret string `json:"credentialsSecret"`

	// insecure speaks plain HTTP to the endpoint instead of HTTPS. Snapshots hold every Secret of
	// the cluster: use it only for a store on a trusted network (a test bed).
	// +optional
	Insecure bool `json:"insecure,omitempty"`
}

// EtcdBackupStatus is what the backup controller has done.
type EtcdBackupStatus struct {
	// snapshots are the complete snapshots of this Cluster in the store, newest first (at most
	// 32 are listed; the store may hold more).
	// +kubebuilder:validation:MaxItems=32
	// +optional
	Snapshots []EtcdSnapshot `json:"snapshots,omitempty"`

	// lastRequest is the value of the basalt.dev/etcd-snapshot annotation last served (a
	// snapshot was stored for it).
	// +kubebuilder:validation:MaxLength=64
	// +optional
	LastRequest string `json:"lastRequest,omitempty"`

	// lastScheduled is the scheduled time served last (its snapshot was stored).
	// +optional
	LastScheduled *metav1.Time `json:"lastScheduled,omitempty"`

	// nextScheduled is when the next scheduled snapshot is due; empty without a schedule.
	// +optional
	NextScheduled *metav1.Time `json:"nextScheduled,omitempty"`
}

// EtcdSnapshot is one stored snapshot.
type EtcdSnapshot struct {
	// name of the snapshot: its object name without the folder and ".db".
	// +kubebuilder:validation:MaxLength=128
	// +required
	Name string `json:"name"`
	// location is the object's URL, s3://<bucket>/<key>.
	// +kubebuilder:validation:MaxLength=1024
	// +required
	Location string `json:"location"`
	// takenAt is when etcd streamed it.
	// +required
	TakenAt metav1.Time `json:"takenAt"`
	// size in bytes of the snapshot file (etcd's backend database and its sha256 trailer).
	// +required
	Size int64 `json:"size"`
	// revision is the etcd revision the snapshot holds (the highest in its key space).
	// +required
	Revision int64 `json:"revision"`
	// keys is the number of key revisions in the snapshot's key space.
	// +optional
	Keys int64 `json:"keys,omitempty"`
	// sha256 of the whole file, hex; checked again before a restore.
	// +kubebuilder:validation:MaxLength=64
	// +required
	SHA256 string `json:"sha256"`
	// member is the Machine whose etcd member served the snapshot.
	// +kubebuilder:validation:MaxLength=253
	// +optional
	Member string `json:"member,omitempty"`
	// trigger is Scheduled or Requested.
	// +kubebuilder:validation:Enum=Scheduled;Requested
	// +required
	Trigger string `json:"trigger"`
	// request is the annotation value a Requested snapshot answered.
	// +kubebuilder:validation:MaxLength=64
	// +optional
	Request string `json:"request,omitempty"`
}
