package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// MachineFinalizer is set on every Machine so that its node is drained, its etcd member removed
// and what Basalt wrote on the host wiped before the host is released.
const MachineFinalizer = "basalt.dev/machine"

// Machine condition types.
const (
	// MachineHostBound is True when spec.hostRef names an existing Host that is reserved for
	// this Machine.
	MachineHostBound = "HostBound"
	// MachineAgentConnected is True when the host's agent has reported within its deadline.
	MachineAgentConnected = "AgentConnected"
	// MachinePlanApplied is True when the agent reports the current Plan hash applied.
	MachinePlanApplied = "PlanApplied"
	// MachineNodeReady mirrors the workload cluster's Node Ready condition.
	MachineNodeReady = "NodeReady"
	// MachineUpToDate is True when the Plan stored for the Machine's Host is the one built from
	// the current inputs, False (WaitingForRollout) while a new Plan that restarts etcd or
	// kube-apiserver waits for another control-plane node to finish its change. It is not part
	// of Ready: the node keeps running its applied Plan meanwhile.
	MachineUpToDate = "UpToDate"
)

// Machine condition reasons.
const (
	// ReasonWaitingForHost says no Host is bound yet.
	ReasonWaitingForHost = "WaitingForHost"
	// ReasonHostNotFound says spec.hostRef names a Host that does not exist.
	ReasonHostNotFound = "HostNotFound"
	// ReasonHostInUse says the Host named by spec.hostRef is consumed by another Machine.
	ReasonHostInUse = "HostInUse"
	// ReasonHostNotAvailable says the Host named by spec.hostRef is not in state Available.
	ReasonHostNotAvailable = "HostNotAvailable"
	// ReasonClusterNotFound says spec.cluster names a Cluster that does not exist.
	ReasonClusterNotFound = "ClusterNotFound"

	// ReasonAgentNotReported says the Host controller has not yet said whether the Host's agent
	// reports.
	ReasonAgentNotReported = "AgentNotReported"
	// ReasonInvalidHostAddress says the Host has no IP address a node can advertise
	// (spec.ssh.address must be an IP address).
	ReasonInvalidHostAddress = "InvalidHostAddress"
	// ReasonWaitingForPodCIDR says the Cluster controller has not allocated the Machine's pod range
	// (status.podCIDR) yet.
	ReasonWaitingForPodCIDR = "WaitingForPodCIDR"
	// ReasonArtifactSetNotFound says the manager has no artifact set for the Machine's version.
	ReasonArtifactSetNotFound = "ArtifactSetNotFound"
	// ReasonWaitingForCertificates says the Cluster controller has not issued the node's
	// certificates yet.
	ReasonWaitingForCertificates = "WaitingForCertificates"
	// ReasonWaitingForEtcdMember says a control-plane Machine waits for the Cluster controller to
	// make it the initialising etcd member or to add it to etcd as a learner.
	ReasonWaitingForEtcdMember = "WaitingForEtcdMember"
	// ReasonWaitingForControlPlane says no kube-apiserver is known yet for the node-local load
	// balancer, or the workload cluster's API is not up yet.
	ReasonWaitingForControlPlane = "WaitingForControlPlane"
	// ReasonRegistrySecretInvalid says a Secret that spec.registries of the Cluster names is
	// missing or does not hold a CA bundle or username and password; the message names it.
	ReasonRegistrySecretInvalid = "RegistrySecretInvalid"
	// ReasonPlanInvalid says the node's Plan cannot be built from the Cluster, Machine and Host;
	// the message names the field at fault.
	ReasonPlanInvalid = "PlanInvalid"
	// ReasonApplying says the agent has not applied the current Plan yet.
	ReasonApplying = "Applying"
	// ReasonWaitingForRollout says a new Plan restarts etcd or kube-apiserver and waits until
	// no other control-plane node of the Cluster is applying a Plan or unhealthy.
	ReasonWaitingForRollout = "WaitingForRollout"
	// ReasonUpToDate says the stored Plan is built from the current inputs.
	ReasonUpToDate = "UpToDate"
	// ReasonApplyFailed says a step of the agent's last apply failed (a checksum mismatch, a file
	// that cannot be written, a service that does not start); the message has the agent's error.
	ReasonApplyFailed = "ApplyFailed"
	// ReasonComponentUnhealthy says a component of the applied Plan fails its health probe; the
	// message has the agent's probe result.
	ReasonComponentUnhealthy = "ComponentUnhealthy"
	// ReasonWorkloadClusterUnreachable says the workload cluster's API server could not be asked
	// about the Node; the message has the error.
	ReasonWorkloadClusterUnreachable = "WorkloadClusterUnreachable"
	// ReasonNodeNotRegistered says the Node exists (Basalt created it with its pod range) but the
	// kubelet has not reported on it yet.
	ReasonNodeNotRegistered = "NodeNotRegistered"
	// ReasonPodCIDRConflict says the workload cluster's Node has another pod range than
	// status.podCIDR.
	ReasonPodCIDRConflict = "PodCIDRConflict"
)

// MachineRole is what a Machine does in its cluster.
// +kubebuilder:validation:Enum=control-plane;worker
type MachineRole string

// Machine roles.
const (
	RoleControlPlane MachineRole = "control-plane"
	RoleWorker       MachineRole = "worker"
)

// MachinePhase is a one-word summary of where a Machine is in its life.
// +kubebuilder:validation:Enum=Pending;Provisioning;Bootstrapping;Running;Deleting;Failed
type MachinePhase string

// Machine phases:
//
//	Pending → Provisioning → Bootstrapping → Running → Deleting
//	            (any) ──────────────────────────────→ Failed (with reason)
const (
	MachinePhasePending       MachinePhase = "Pending"
	MachinePhaseProvisioning  MachinePhase = "Provisioning"
	MachinePhaseBootstrapping MachinePhase = "Bootstrapping"
	MachinePhaseRunning       MachinePhase = "Running"
	MachinePhaseDeleting      MachinePhase = "Deleting"
	MachinePhaseFailed        MachinePhase = "Failed"
)

// AnnotationForceDelete, set to "true" on a Machine being deleted, skips the waits of its
// deletion: for its node to be drained, for its etcd member to be removed and for its agent to
// wipe the host. Use it for a host that is gone for good. Set on a Cluster being deleted, the
// Cluster controller sets it on every Machine of the Cluster.
const AnnotationForceDelete = "basalt.dev/force-delete"

// Labels Basalt sets on Machines it creates.
const (
	// LabelClusterName is the name of the Cluster a Machine belongs to.
	LabelClusterName = "basalt.dev/cluster"
	// LabelRole is the MachineRole of a Machine.
	LabelRole = "basalt.dev/role"
	// LabelPool is the worker pool of a worker Machine.
	LabelPool = "basalt.dev/pool"
)

// EtcdPeer is one etcd member by name and peer URL.
type EtcdPeer struct {
	// name is the member's name, the node name of its Machine.
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
	// peerURL is the member's peer URL, https://<node IP>:2380.
	// +kubebuilder:validation:MaxLength=2048
	PeerURL string `json:"peerURL"`
}

// MachineEtcd is what the Cluster controller recorded about a control-plane Machine's etcd member.
// The node's etcd flags are rendered from it and never change afterwards (etcd reads its
// --initial-* flags only on its first start).
type MachineEtcd struct {
	// join is false for the member that initialised the cluster (--initial-cluster-state=new)
	// and true for a member added to the running cluster as a learner.
	// +optional
	Join bool `json:"join,omitempty"`
	// initialCluster is the member list a joining member started with, itself included. Empty
	// for the initialising member.
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=16
	// +optional
	InitialCluster []EtcdPeer `json:"initialCluster,omitempty"`
	// learner is true until the member is promoted to a voter. A learner's Plan runs etcd but not
	// kube-apiserver, kube-controller-manager and kube-scheduler.
	// +optional
	Learner bool `json:"learner,omitempty"`
	// addedAt is when the member was chosen to initialise the cluster or added as a learner.
	// +optional
	AddedAt *metav1.Time `json:"addedAt,omitempty"`
	// epoch is the restore the member's etcd cluster comes from (status.etcdRestore.epoch of the
	// Cluster); empty for the cluster the Cluster was created with. The member's data folder
	// and cluster token carry it.
	// +kubebuilder:validation:MaxLength=16
	// +optional
	Epoch string `json:"epoch,omitempty"`
	// restore is set on the member that starts a restored cluster: its data is seeded from a
	// snapshot or from its former database before etcd first starts.
	// +optional
	Restore *MachineEtcdRestore `json:"restore,omitempty"`
}

// PlanStepError is one failed step of the agent's last Plan apply.
type PlanStepError struct {
	// step names it: "artifact:etcd", "file:/etc/basalt/pki/ca.crt", "service:kubelet".
	// +kubebuilder:validation:MaxLength=1024
	Step string `json:"step"`
	// error is the agent's error text.
	// +kubebuilder:validation:MaxLength=4096
	Error string `json:"error"`
}

// MachineSpec is the desired state of a Machine.
//
// +kubebuilder:validation:XValidation:rule="!has(oldSelf.hostRef) || (has(self.hostRef) && self.hostRef.name == oldSelf.hostRef.name)",message="spec.hostRef cannot change once bound; delete this Machine to release its host and create a new one"
// +kubebuilder:validation:XValidation:rule="self.role == 'worker' || !has(self.pool)",message="spec.pool is only for workers; remove it from a control-plane Machine"
type MachineSpec struct {
	// cluster is the name of the Cluster, in the same namespace, this Machine belongs to.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="spec.cluster is immutable; delete this Machine and create one in the other cluster"
	// +required
	Cluster string `json:"cluster"`

	// role of the Machine in its cluster.
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="spec.role is immutable; delete this Machine and create one with the other role"
	// +required
	Role MachineRole `json:"role"`

	// pool is the worker pool a worker belongs to.
	// +kubebuilder:validation:MaxLength=40
	// +optional
	Pool string `json:"pool,omitempty"`

	// version is the Kubernetes version this Machine runs; set by the Cluster controller during
	// rollouts. Empty means the Cluster's version.
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="self.matches('^v(0|[1-9][0-9]{0,3})\\\\.(0|[1-9][0-9]{0,3})\\\\.(0|[1-9][0-9]{0,3})$')",message="spec.version must look like v1.37.2 (v, then major.minor.patch without leading zeros)"
	// +optional
	Version string `json:"version,omitempty"`

	// hostRef is the Host this Machine runs on. Set by the Cluster controller when it binds a Host,
	// or by hand; immutable once set.
	// +optional
	HostRef *LocalObjectReference `json:"hostRef,omitempty"`
}

// ComponentHealth is the health of one component on the Machine's host, as the agent reports it.
type ComponentHealth struct {
	// name of the component, e.g. etcd or kubelet.
	Name string `json:"name"`
	// healthy is the last probe result.
	Healthy bool `json:"healthy"`
	// message says why a probe failed.
	// +optional
	Message string `json:"message,omitempty"`
	// lastProbeTime is when the probe ran.
	// +optional
	LastProbeTime *metav1.Time `json:"lastProbeTime,omitempty"`
}

// MachineStatus is the observed state of a Machine.
type MachineStatus struct {
	// phase is a one-word summary; conditions say why.
	// +optional
	Phase MachinePhase `json:"phase,omitempty"`

	// conditions: Ready, HostBound, AgentConnected, PlanApplied, NodeReady.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// observedGeneration is the generation of the spec the status was computed from.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// nodeName is the name of the Node this Machine registered as.
	// +optional
	NodeName string `json:"nodeName,omitempty"`

	// addresses of the Machine's host.
	// +listType=atomic
	// +optional
	Addresses []string `json:"addresses,omitempty"`

	// version is the Kubernetes version the Machine's components report.
	// +optional
	Version string `json:"version,omitempty"`

	// etcdMemberID is the hex ID of this Machine's etcd member, for control-plane machines.
	// +optional
	EtcdMemberID string `json:"etcdMemberID,omitempty"`

	// planHash is the hash of the Plan the agent last applied.
	// +optional
	PlanHash string `json:"planHash,omitempty"`

	// components is the health of each component as last reported.
	// +listType=map
	// +listMapKey=name
	// +optional
	Components []ComponentHealth `json:"components,omitempty"`

	// applyingPlanHash is the hash of the Plan the agent is applying now; empty when it is idle.
	// +optional
	ApplyingPlanHash string `json:"applyingPlanHash,omitempty"`

	// failedSteps are the steps of the agent's last apply that failed, as the agent reported them;
	// empty when the last apply succeeded.
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=32
	// +optional
	FailedSteps []PlanStepError `json:"failedSteps,omitempty"`

	// podCIDR is the node's pod range, a slice of the Cluster's spec.network.podCIDR allocated by
	// the Cluster controller once and never changed; the workload Node's spec.podCIDR, the CNI
	// configuration and the other nodes' routes use it.
	// +kubebuilder:validation:MaxLength=43
	// +optional
	PodCIDR string `json:"podCIDR,omitempty"`

	// etcd is what the Cluster controller recorded about this control-plane Machine's etcd member.
	// +optional
	Etcd *MachineEtcd `json:"etcd,omitempty"`

	// failureReason and failureMessage say why the Machine is Failed.
	// +optional
	FailureReason string `json:"failureReason,omitempty"`
	// +optional
	FailureMessage string `json:"failureMessage,omitempty"`
}

// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=bm,categories=basalt
// +kubebuilder:printcolumn:name="Cluster",type=string,JSONPath=`.spec.cluster`
// +kubebuilder:printcolumn:name="Role",type=string,JSONPath=`.spec.role`
// +kubebuilder:printcolumn:name="Host",type=string,JSONPath=`.spec.hostRef.name`
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Version",type=string,JSONPath=`.status.version`
// +kubebuilder:printcolumn:name="Node",type=string,JSONPath=`.status.nodeName`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`
// +kubebuilder:printcolumn:name="Up To Date",type=string,JSONPath=`.status.conditions[?(@.type=="UpToDate")].status`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`

// Machine is one Host's membership in one Cluster.
type Machine struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ObjectMeta `json:"metadata,omitzero"`

	// +required
	Spec MachineSpec `json:"spec"`
	// The default makes a new object's status.observedGeneration 0, behind its generation (1),
	// until the manager first reconciles it: GitOps tools (kstatus) see it InProgress, not
	// Current, from the first apply.
	// +kubebuilder:default={observedGeneration: 0}
	// +optional
	Status MachineStatus `json:"status,omitzero"`
}

// +kubebuilder:object:root=true

// MachineList is a list of Machines.
type MachineList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitzero"`
	Items           []Machine `json:"items"`
}

// GetConditions returns the Machine's conditions.
func (m *Machine) GetConditions() []metav1.Condition { return m.Status.Conditions }

// SetConditions replaces the Machine's conditions.
func (m *Machine) SetConditions(conds []metav1.Condition) { m.Status.Conditions = conds }
