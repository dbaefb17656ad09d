package v1alpha1

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// AnnotationEtcdRestore, set on a Cluster, replaces its etcd with a new cluster made from a
// chosen copy of its data (docs/restore.md). The value names the source:
//
//   - <snapshot name>, a snapshot listed in status.etcdBackup.snapshots (fetched from the store
//     and checked again);
//   - member/<machine name>, the data a control-plane Machine's member still has on its disk
//     (etcd quorum lost, that member's data survives: Kubespray's recover-control-plane).
//
// It may end with "#<anything>" to restore the same source again. The Cluster controller serves
// each value once and records it in status.etcdRestore.request; it never removes the
// annotation, so a GitOps tool that keeps applying it asks nothing more.
const AnnotationEtcdRestore = "basalt.dev/etcd-restore"

// EtcdRestoreMemberPrefix starts a restore source that is a Machine's member data.
const EtcdRestoreMemberPrefix = "member/"

// Phases of a restore.
const (
	// RestorePhaseFetching: the snapshot is read back from the store and checked.
	RestorePhaseFetching = "Fetching"
	// RestorePhaseRestoring: the chosen Machine starts a one-member etcd from the data; the
	// other control-plane Machines stopped their members and wait to join it.
	RestorePhaseRestoring = "Restoring"
	// RestorePhaseCompleted: the restored member is healthy; the other control-plane Machines
	// join it as new members.
	RestorePhaseCompleted = "Completed"
	// RestorePhaseFailed: the request cannot be served as written; the message says why.
	// Nothing was changed. Write another value to try again.
	RestorePhaseFailed = "Failed"
)

// ReasonEtcdRestoring (EtcdReady False) says a restore is in progress.
const ReasonEtcdRestoring = "EtcdRestoring"

// EtcdRestoreStatus is the last restore asked for with the basalt.dev/etcd-restore annotation.
type EtcdRestoreStatus struct {
	// request is the annotation value served.
	// +kubebuilder:validation:MaxLength=256
	// +required
	Request string `json:"request"`
	// source is the snapshot name or member/<machine> the data comes from.
	// +kubebuilder:validation:MaxLength=256
	// +optional
	Source string `json:"source,omitempty"`
	// epoch names the restored etcd cluster: its members' data folder and cluster token carry
	// it, so no member of the cluster before the restore can start in it.
	// +kubebuilder:validation:MaxLength=16
	// +optional
	Epoch string `json:"epoch,omitempty"`
	// machine is the control-plane Machine whose member starts the restored cluster.
	// +kubebuilder:validation:MaxLength=253
	// +optional
	Machine string `json:"machine,omitempty"`
	// phase is Fetching, Restoring, Completed or Failed.
	// +kubebuilder:validation:Enum=Fetching;Restoring;Completed;Failed
	// +optional
	Phase string `json:"phase,omitempty"`
	// message says what happens now or what went wrong.
	// +kubebuilder:validation:MaxLength=1024
	// +optional
	Message string `json:"message,omitempty"`
	// snapshot is the snapshot restored (a snapshot source), as checked when it was fetched.
	// +optional
	Snapshot *EtcdSnapshot `json:"snapshot,omitempty"`
	// startedAt is when the request was accepted.
	// +optional
	StartedAt *metav1.Time `json:"startedAt,omitempty"`
	// completedAt is when the restored member was first healthy.
	// +optional
	CompletedAt *metav1.Time `json:"completedAt,omitempty"`
}

// MachineEtcdRestore is what the member that starts a restored cluster seeds its data from.
type MachineEtcdRestore struct {
	// snapshotSHA256 is the sha256 of the snapshot file the agent fetches from the manager;
	// empty for member data.
	// +kubebuilder:validation:MaxLength=64
	// +optional
	SnapshotSHA256 string `json:"snapshotSHA256,omitempty"`
	// snapshotSize is its size in bytes.
	// +optional
	SnapshotSize int64 `json:"snapshotSize,omitempty"`
	// dataEpoch is, for member data, the epoch of the data folder the member ran with before
	// (its database is copied from there).
	// +kubebuilder:validation:MaxLength=16
	// +optional
	DataEpoch string `json:"dataEpoch,omitempty"`
	// fromMemberData is true when the data is the member's own database on its disk.
	// +optional
	FromMemberData bool `json:"fromMemberData,omitempty"`
	// done is set once the restored member was healthy: the Plan no longer carries the
	// snapshot file.
	// +optional
	Done bool `json:"done,omitempty"`
}
