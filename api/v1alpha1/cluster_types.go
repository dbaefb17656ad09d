package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// ClusterFinalizer is set on every Cluster so that its Machines, etcd membership and Secrets are
// torn down before the object goes away.
const ClusterFinalizer = "basalt.dev/cluster"

// Cluster condition types.
const (
	// ClusterCertificatesReady is True when the cluster's CAs, leaf certificates and kubeconfigs
	// exist in Secrets and none is due for renewal.
	ClusterCertificatesReady = "CertificatesReady"
	// ClusterHostsBound is True when every desired Machine is bound to a Host.
	ClusterHostsBound = "HostsBound"
	// ClusterEtcdReady is True when every etcd member is a healthy voter and quorum holds.
	ClusterEtcdReady = "EtcdReady"
	// ClusterControlPlaneReady is True when every control-plane Machine is Running and /readyz is ok.
	ClusterControlPlaneReady = "ControlPlaneReady"
	// ClusterWorkersReady is True when every worker Machine is Running with its node Ready.
	ClusterWorkersReady = "WorkersReady"
	// ClusterUpToDate is True when every Machine runs spec.version. While an in-place upgrade
	// rolls out it is False with reason Upgrading and a message naming the Machine being moved.
	ClusterUpToDate = "UpToDate"
	// ClusterMachinesHealthy is True when no Machine needs remediation; False says which Machine
	// is being remediated, or why one that needs it is not (quorum, retry limit).
	ClusterMachinesHealthy = "MachinesHealthy"
)

// AnnotationDrainStartedAt is set by the Cluster controller on a Machine whose node it cordons and
// drains for an in-place upgrade (RFC 3339 time the drain began). It bounds the drain across
// manager restarts and marks the node as cordoned by Basalt, to be uncordoned once the Machine
// runs the new version.
const AnnotationDrainStartedAt = "basalt.dev/drain-started-at"

// AnnotationRemediatedFor is set on a Machine the Cluster controller deletes to remediate it; the
// value says why (the unhealthy condition and since when).
const AnnotationRemediatedFor = "basalt.dev/remediated-for"

// AnnotationPowerCycledAt is set by the Cluster controller on an unhealthy Machine whose Host it
// asked to power-cycle (annotation basalt.dev/power-cycle on the Host, same value: the RFC 3339
// time of the request), the first step of remediating a Machine whose Host has spec.bmc. The
// Machine's unhealthy timeout counts again from that time before it is replaced; the annotation
// is removed once the Machine is healthy again.
const AnnotationPowerCycledAt = "basalt.dev/power-cycled-at"

// Cluster condition reasons.
const (
	// ReasonWaitingForHosts says fewer Available Hosts match a selector than Machines are wanted.
	ReasonWaitingForHosts = "WaitingForHosts"
	// ReasonHostsBound says every desired Machine has a Host.
	ReasonHostsBound = "HostsBound"
	// ReasonInvalidSelector says a host selector cannot be parsed.
	ReasonInvalidSelector = "InvalidSelector"
	// ReasonWaitingForEndpoint says no control-plane endpoint is known yet: spec.controlPlane.endpoint
	// is empty and no control-plane Machine has a Host.
	ReasonWaitingForEndpoint = "WaitingForEndpoint"
	// ReasonVirtualIPMoved is the event of spec.controlPlane.virtualIP moving to another node.
	ReasonVirtualIPMoved = "VirtualIPMoved"
	// ReasonCertificatesFailed says the cluster's PKI could not be ensured or stored; the message
	// has the error.
	ReasonCertificatesFailed = "CertificatesFailed"
	// ReasonWaitingForEtcd says etcd is not running yet: the initialising member's agent has not
	// reported etcd healthy.
	ReasonWaitingForEtcd = "WaitingForEtcd"
	// ReasonEtcdUnreachable says the manager cannot talk to the cluster's etcd; the message has the
	// error.
	ReasonEtcdUnreachable = "EtcdUnreachable"
	// ReasonEtcdSpaceExceeded says etcd raised its NOSPACE alarm (the database reached
	// --quota-backend-bytes) and refuses writes; the message says which recovery step runs:
	// compaction, defragmentation one member at a time, disarming (docs/etcd.md).
	ReasonEtcdSpaceExceeded = "EtcdSpaceExceeded"
	// ReasonMachinesNotReady says Machines of a role are missing or not Ready, when no Machine
	// gives a more precise reason.
	ReasonMachinesNotReady = "MachinesNotReady"
	// ReasonPodCIDRExhausted says spec.network.podCIDR has no free per-node range left.
	ReasonPodCIDRExhausted = "PodCIDRExhausted"
	// ReasonUpgrading says an in-place upgrade is rolling out; the message names the Machine
	// being drained or moved and how far the rollout is.
	ReasonUpgrading = "Upgrading"
	// ReasonUpgradeBlocked says the upgrade waits for the cluster to be healthy before moving the
	// next Machine; the message says what is not.
	ReasonUpgradeBlocked = "UpgradeBlocked"
	// ReasonRemediating says an unhealthy Machine was deleted to be replaced.
	ReasonRemediating = "Remediating"
	// ReasonPowerCycling says an unhealthy Machine's Host was power-cycled through its BMC and
	// the Machine is given its timeout again before it is replaced.
	ReasonPowerCycling = "PowerCycling"
	// ReasonRemediationBlocked says an unhealthy Machine is not remediated because removing it
	// would risk etcd quorum, or another Machine is being replaced.
	ReasonRemediationBlocked = "RemediationBlocked"
	// ReasonTooManyUnhealthy says more Machines are unhealthy at once than
	// spec.remediation.maxUnhealthy allows, so none is remediated: that many failing together
	// points at a network, power or management problem, which replacing machines would worsen.
	ReasonTooManyUnhealthy = "TooManyUnhealthy"
	// ReasonRemediationLimitReached says spec.remediation.maxRetries remediations happened within
	// spec.remediation.retryPeriod; an operator must look.
	ReasonRemediationLimitReached = "RemediationLimitReached"
	// ReasonDeletionStalled says a deleting Cluster waits on a Machine longer than expected; the
	// message names it and the force-delete annotation.
	ReasonDeletionStalled = "DeletionStalled"
)

// ClusterPhase is a one-word summary of where a Cluster is in its life.
// +kubebuilder:validation:Enum=Pending;Provisioning;Running;Upgrading;Deleting;Failed
type ClusterPhase string

// Cluster phases.
const (
	ClusterPhasePending      ClusterPhase = "Pending"
	ClusterPhaseProvisioning ClusterPhase = "Provisioning"
	ClusterPhaseRunning      ClusterPhase = "Running"
	ClusterPhaseUpgrading    ClusterPhase = "Upgrading"
	ClusterPhaseDeleting     ClusterPhase = "Deleting"
	ClusterPhaseFailed       ClusterPhase = "Failed"
)

// CNI selects the pod network.
// +kubebuilder:validation:Enum=bridge;none
type CNI string

// Pod network choices.
const (
	// CNIBridge is Basalt's default: per-node pod CIDRs on a bridge, routes to the other nodes'
	// pod CIDRs programmed by the agent (host-gw).
	CNIBridge CNI = "bridge"
	// CNINone leaves pod networking to add-ons the user installs.
	CNINone CNI = "none"
)

// UpgradeStrategy says how a Machine moves to a new version.
// +kubebuilder:validation:Enum=InPlace;Replace
type UpgradeStrategy string

// Upgrade strategies.
const (
	// UpgradeInPlace swaps binaries on the same host through a new Plan. It needs no spare host.
	UpgradeInPlace UpgradeStrategy = "InPlace"
	// UpgradeReplace provisions a spare host with the new version, then removes the old Machine.
	UpgradeReplace UpgradeStrategy = "Replace"
)

// ClusterSpec is the desired state of a Cluster.
//
// +kubebuilder:validation:XValidation:rule="!has(self.network) || !has(self.network.podCIDR) || !has(self.network.serviceCIDR) || !(cidr(self.network.podCIDR).containsCIDR(cidr(self.network.serviceCIDR)) || cidr(self.network.serviceCIDR).containsCIDR(cidr(self.network.podCIDR)))",message="spec.network.podCIDR and spec.network.serviceCIDR overlap; choose two ranges that do not overlap, e.g. podCIDR 10.244.0.0/16 and serviceCIDR 10.96.0.0/12"
type ClusterSpec struct {
	// version is the Kubernetes version of the cluster, e.g. v1.37.2. It may only be raised, and by
	// at most one minor version at a time.
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="self.matches('^v(0|[1-9][0-9]{0,3})\\\\.(0|[1-9][0-9]{0,3})\\\\.(0|[1-9][0-9]{0,3})$')",message="spec.version must look like v1.37.2 (v, then major.minor.patch without leading zeros)"
	// +kubebuilder:validation:XValidation:rule="!self.matches('^v(0|[1-9][0-9]{0,3})\\\\.(0|[1-9][0-9]{0,3})\\\\.(0|[1-9][0-9]{0,3})$') || !oldSelf.matches('^v(0|[1-9][0-9]{0,3})\\\\.(0|[1-9][0-9]{0,3})\\\\.(0|[1-9][0-9]{0,3})$') || int(self.substring(1).split('.')[0]) == int(oldSelf.substring(1).split('.')[0])",message="spec.version cannot change its major version; create a new Cluster instead"
	// +kubebuilder:validation:XValidation:rule="!self.matches('^v(0|[1-9][0-9]{0,3})\\\\.(0|[1-9][0-9]{0,3})\\\\.(0|[1-9][0-9]{0,3})$') || !oldSelf.matches('^v(0|[1-9][0-9]{0,3})\\\\.(0|[1-9][0-9]{0,3})\\\\.(0|[1-9][0-9]{0,3})$') || int(self.split('.')[1]) > int(oldSelf.split('.')[1]) || (int(self.split('.')[1]) == int(oldSelf.split('.')[1]) && int(self.split('.')[2]) >= int(oldSelf.split('.')[2]))",message="spec.version cannot be lowered; downgrades are not supported, set it back to the current version or higher"
	// +kubebuilder:validation:XValidation:rule="!self.matches('^v(0|[1-9][0-9]{0,3})\\\\.(0|[1-9][0-9]{0,3})\\\\.(0|[1-9][0-9]{0,3})$') || !oldSelf.matches('^v(0|[1-9][0-9]{0,3})\\\\.(0|[1-9][0-9]{0,3})\\\\.(0|[1-9][0-9]{0,3})$') || int(self.split('.')[1]) <= int(oldSelf.split('.')[1]) + 1",message="spec.version may be raised by at most one minor version at a time; upgrade to the next minor first, then to the one after"
	// +required
	Version string `json:"version"`

	// controlPlane describes the control-plane machines.
	// +kubebuilder:default={}
	// +optional
	ControlPlane ControlPlaneSpec `json:"controlPlane,omitzero"`

	// workers lists the worker pools, each with a unique name.
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:XValidation:rule="self.all(w, self.exists_one(x, x.name == w.name))",message="spec.workers names must be unique; rename the duplicate pool"
	// +optional
	Workers []WorkerPool `json:"workers,omitempty"`

	// network configures pod and service networking.
	// +kubebuilder:default={}
	// +optional
	Network NetworkSpec `json:"network,omitzero"`

	// artifacts says where Kubernetes binaries and images come from.
	// +optional
	Artifacts ArtifactsSpec `json:"artifacts,omitzero"`

	// certificates configures validity and renewal of the cluster's leaf certificates.
	// +kubebuilder:default={}
	// +optional
	Certificates CertificatesSpec `json:"certificates,omitzero"`

	// upgrade configures how version changes roll out.
	// +kubebuilder:default={}
	// +optional
	Upgrade UpgradeSpec `json:"upgrade,omitzero"`

	// nodeDrainTimeout bounds how long a node's pods are evicted before the node is upgraded in
	// place or its Machine removed. After it the operation goes on and a warning event names the
	// pods that were left. 0s skips draining.
	// +kubebuilder:default="5m"
	// +optional
	NodeDrainTimeout *metav1.Duration `json:"nodeDrainTimeout,omitempty"`

	// remediation says when a Machine that stopped working is replaced.
	// +kubebuilder:default={}
	// +optional
	Remediation RemediationSpec `json:"remediation,omitzero"`

	// addons says what Basalt installs into the cluster besides its nodes: the built-in cluster
	// DNS and the user's manifests (docs/addons.md).
	// +kubebuilder:default={}
	// +optional
	Addons AddonsSpec `json:"addons,omitzero"`

	// registries says how every node's container runtime reaches image registries: mirrors, CA
	// certificates and credentials, one entry per registry host (docs/registries.md).
	// +listType=map
	// +listMapKey=host
	// +kubebuilder:validation:MaxItems=16
	// +optional
	Registries []Registry `json:"registries,omitempty"`

	// etcd configures the cluster's etcd: snapshots to object storage (docs/backup.md).
	// +optional
	Etcd *EtcdSpec `json:"etcd,omitempty"`

	// paused stops reconciliation of the Cluster and its Machines. Nothing is created, changed or
	// deleted while it is true; status still reports what is observed.
	// +optional
	Paused bool `json:"paused,omitempty"`
}

// ControlPlaneSpec describes the control plane.
// +kubebuilder:validation:XValidation:rule="!has(self.virtualIP) || !has(self.endpoint) || !isIP(self.endpoint.host) || self.endpoint.host == self.virtualIP.address",message="spec.controlPlane.endpoint.host must be virtualIP.address (or a DNS name that resolves to it) when spec.controlPlane.virtualIP is set; remove endpoint to use the virtual IP"
// +kubebuilder:validation:XValidation:rule="!has(self.virtualIP) || !has(self.endpoint) || !has(self.endpoint.port) || self.endpoint.port == 6443",message="spec.controlPlane.endpoint.port must be 6443 with spec.controlPlane.virtualIP: the virtual IP leads straight to the API servers' port"
type ControlPlaneSpec struct {
	// replicas is the number of control-plane machines: 1, 3, 5 or 7, so etcd keeps quorum.
	// +kubebuilder:default=1
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=7
	// +kubebuilder:validation:XValidation:rule="self % 2 == 1",message="spec.controlPlane.replicas must be odd (1, 3, 5 or 7) so etcd keeps a majority; use 1, 3, 5 or 7"
	// +optional
	Replicas int32 `json:"replicas,omitempty"`

	// hostSelector selects the Hosts control-plane machines may be bound to. Empty selects all.
	// +optional
	HostSelector metav1.LabelSelector `json:"hostSelector,omitzero"`

	// endpoint is where users and nodes reach the API servers: a VIP or DNS name that fronts
	// them. When empty, it is virtualIP.address with port 6443 if virtualIP is set, else the
	// first control-plane host's address.
	// +optional
	Endpoint *APIEndpoint `json:"endpoint,omitempty"`

	// virtualIP makes the agents on the control-plane hosts hold an IPv4 address for the API:
	// one of them at a time, the one that holds the Lease kube-system/basalt-control-plane-vip
	// and whose own API server is ready, adds it to the interface that carries its node address
	// and announces it with gratuitous ARP; when that host or its API server stops, another takes
	// it over within seconds. The address must be free and on the control-plane hosts' subnet.
	// It becomes the endpoint (certificates, admin kubeconfig, the manager's connection) unless
	// endpoint names a DNS name for it. See docs/vip.md.
	// +optional
	VirtualIP *VirtualIPSpec `json:"virtualIP,omitempty"`

	// schedulable says whether ordinary pods may run on the control-plane nodes. false taints
	// them node-role.kubernetes.io/control-plane:NoSchedule (the built-in add-ons tolerate it);
	// true leaves them untainted. Unset: tainted when the Cluster has worker replicas, untainted
	// when it has none, so a small cluster of control-plane nodes only runs workloads. Basalt keeps
	// the taint in step when this or the worker count changes (taking it off or putting it on;
	// NoSchedule evicts nothing that already runs).
	// +optional
	Schedulable *bool `json:"schedulable,omitempty"`
}

// VirtualIPSpec is an address the control-plane hosts' agents hold for the API.
type VirtualIPSpec struct {
	// address is an unused IPv4 address on the control-plane hosts' subnet.
	// +kubebuilder:validation:MaxLength=15
	// +kubebuilder:validation:XValidation:rule="isIP(self) && ip(self).family() == 4 && !ip(self).isLoopback() && !ip(self).isUnspecified() && !ip(self).isLinkLocalUnicast()",message="virtualIP.address must be a routable IPv4 address such as 192.168.1.100 on the control-plane hosts' subnet"
	// +required
	Address string `json:"address"`
}

// VirtualIPStatus says which control-plane node holds the virtual IP.
type VirtualIPStatus struct {
	// address is the virtual IP.
	Address string `json:"address"`
	// holder is the node whose agent holds it, empty while none does.
	// +optional
	Holder string `json:"holder,omitempty"`
	// transitions counts how often it moved from one node to another (the Lease's count).
	// +optional
	Transitions int32 `json:"transitions,omitempty"`
	// renewedAt is the holder's last renewal of the Lease when it was read.
	// +optional
	RenewedAt *metav1.Time `json:"renewedAt,omitempty"`
}

// APIEndpoint is a host and port where the Kubernetes API is served.
type APIEndpoint struct {
	// host is an IP address or a DNS name.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="isIP(self) || self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')",message="endpoint host must be an IP address or a lowercase DNS name such as api.example.com"
	// +required
	Host string `json:"host"`

	// port of the API server endpoint.
	// +kubebuilder:default=6443
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	// +optional
	Port int32 `json:"port,omitempty"`
}

// WorkerPool is a group of identical worker machines.
type WorkerPool struct {
	// name of the pool, a DNS label; Machines of the pool are named after it.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=40
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')",message="worker pool name must be a DNS label: lowercase letters, digits and '-', starting and ending with a letter or digit"
	// +required
	Name string `json:"name"`

	// replicas is the number of workers in the pool.
	// +kubebuilder:default=1
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=1000
	// +optional
	Replicas int32 `json:"replicas"`

	// hostSelector selects the Hosts this pool's machines may be bound to. Empty selects all.
	// +optional
	HostSelector metav1.LabelSelector `json:"hostSelector,omitzero"`

	// nodeLabels are put on the Nodes of the pool, besides the labels Basalt always sets
	// (node-role.kubernetes.io/worker and basalt.dev/pool), and kept in sync: a label removed here
	// is removed from the Nodes. Keys in the kubernetes.io and k8s.io namespaces (but
	// node-role.kubernetes.io/<role>) and in basalt.dev are refused: they belong to Kubernetes
	// and to Basalt. (A list rather than a map so that admission can bound and check every key.)
	// +listType=map
	// +listMapKey=key
	// +kubebuilder:validation:MaxItems=16
	// +optional
	NodeLabels []NodeLabel `json:"nodeLabels,omitempty"`

	// nodeTaints are put on the Nodes of the pool and kept in sync, so only pods that tolerate
	// them run there (a pool of GPU or storage machines). A taint removed here is removed from
	// the Nodes; taints others put (cordon, the node lifecycle controller) are left alone.
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:XValidation:rule="self.all(t, self.exists_one(x, x.key == t.key && x.effect == t.effect))",message="spec.workers[].nodeTaints: one taint per key and effect"
	// +optional
	NodeTaints []NodeTaint `json:"nodeTaints,omitempty"`
}

// NodeLabel is a label Basalt keeps on a pool's Nodes.
type NodeLabel struct {
	// key of the label: an optional DNS prefix and '/', then a name (e.g. example.com/tier).
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=317
	// +kubebuilder:validation:XValidation:rule="self.matches('^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$')",message="node label key must be a label key: an optional DNS prefix and '/', then a name of up to 63 letters, digits, '-', '_' or '.'"
	// +kubebuilder:validation:XValidation:rule="!self.contains('/') || self.startsWith('node-role.kubernetes.io/') || !(self.split('/')[0] == 'kubernetes.io' || self.split('/')[0].endsWith('.kubernetes.io') || self.split('/')[0] == 'k8s.io' || self.split('/')[0].endsWith('.k8s.io') || self.split('/')[0] == 'basalt.dev' || self.split('/')[0].endsWith('.basalt.dev'))",message="node label keys in the kubernetes.io, k8s.io and basalt.dev namespaces are reserved (node-role.kubernetes.io/<role> is allowed)"
	// +required
	Key string `json:"key"`
	// value of the label; may be empty.
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:XValidation:rule="self.matches('^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$')",message="node label value must be a label value: at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
	// +optional
	Value string `json:"value,omitempty"`
}

// NodeTaint is a taint Basalt keeps on a pool's Nodes.
type NodeTaint struct {
	// key of the taint, a label key (e.g. example.com/gpu).
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=317
	// +kubebuilder:validation:XValidation:rule="self.matches('^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$')",message="taint key must be a label key such as example.com/gpu"
	// +kubebuilder:validation:XValidation:rule="!self.contains('/') || self.startsWith('node-role.kubernetes.io/') || !(self.split('/')[0] == 'kubernetes.io' || self.split('/')[0].endsWith('.kubernetes.io') || self.split('/')[0] == 'k8s.io' || self.split('/')[0].endsWith('.k8s.io') || self.split('/')[0] == 'basalt.dev' || self.split('/')[0].endsWith('.basalt.dev'))",message="taint keys in the kubernetes.io, k8s.io and basalt.dev namespaces are reserved: Kubernetes and Basalt set those (node-role.kubernetes.io/<role> is allowed)"
	// +required
	Key string `json:"key"`
	// value of the taint, a label value; may be empty.
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:XValidation:rule="self.matches('^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$')",message="taint value must be a label value: at most 63 letters, digits, '-', '_' or '.'"
	// +optional
	Value string `json:"value,omitempty"`
	// effect is NoSchedule, PreferNoSchedule or NoExecute.
	// +kubebuilder:validation:Enum=NoSchedule;PreferNoSchedule;NoExecute
	// +required
	Effect string `json:"effect"`
}

// NetworkSpec configures the cluster network.
//
// +kubebuilder:validation:XValidation:rule="!has(self.podCIDR) || !has(self.nodeCIDRMaskSize) || cidr(self.podCIDR).prefixLength() < self.nodeCIDRMaskSize",message="spec.network.nodeCIDRMaskSize must be larger than the prefix length of spec.network.podCIDR so the pod range splits into per-node ranges; use a wider podCIDR or a larger nodeCIDRMaskSize"
// +kubebuilder:validation:XValidation:rule="!has(self.podCIDR) || !has(self.nodeCIDRMaskSize) || (cidr(self.podCIDR).ip().family() == 4 ? self.nodeCIDRMaskSize <= 30 : true)",message="spec.network.nodeCIDRMaskSize must be at most 30 for an IPv4 podCIDR, or a node has no room for pods"
type NetworkSpec struct {
	// podCIDR is the range pod IPs are allocated from; each node gets a slice of nodeCIDRMaskSize.
	// +kubebuilder:default="10.244.0.0/16"
	// +kubebuilder:validation:MaxLength=43
	// +kubebuilder:validation:XValidation:rule="isCIDR(self) && cidr(self) == cidr(self).masked()",message="spec.network.podCIDR must be a network in CIDR notation with no host bits set, e.g. 10.244.0.0/16"
	// +optional
	PodCIDR string `json:"podCIDR,omitempty"`

	// serviceCIDR is the range ClusterIP Services are allocated from.
	// +kubebuilder:default="10.96.0.0/12"
	// +kubebuilder:validation:MaxLength=43
	// +kubebuilder:validation:XValidation:rule="isCIDR(self) && cidr(self) == cidr(self).masked()",message="spec.network.serviceCIDR must be a network in CIDR notation with no host bits set, e.g. 10.96.0.0/12"
	// +kubebuilder:validation:XValidation:rule="!isCIDR(self) || (cidr(self).ip().family() == 4 ? cidr(self).prefixLength() >= 12 : cidr(self).prefixLength() >= 108)",message="spec.network.serviceCIDR is too large: use a prefix of /12 or longer for IPv4 (/108 for IPv6)"
	// +optional
	ServiceCIDR string `json:"serviceCIDR,omitempty"`

	// nodeCIDRMaskSize is the prefix length of each node's pod range.
	// +kubebuilder:default=24
	// +kubebuilder:validation:Minimum=8
	// +kubebuilder:validation:Maximum=126
	// +optional
	NodeCIDRMaskSize int32 `json:"nodeCIDRMaskSize,omitempty"`

	// dnsDomain is the cluster's DNS domain.
	// +kubebuilder:default="cluster.local"
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')",message="spec.network.dnsDomain must be a lowercase DNS name such as cluster.local"
	// +optional
	DNSDomain string `json:"dnsDomain,omitempty"`

	// cni selects pod networking: bridge (Basalt programs bridge + routes) or none (bring your own).
	// +kubebuilder:default=bridge
	// +optional
	CNI CNI `json:"cni,omitempty"`
}

// ArtifactsSpec says where Kubernetes binaries and images come from. The manager fetches each
// artifact once, checks its sha256 and serves it to every host from its cache.
//
// Without a mirror the manager serves the artifact sets named by its --artifact-sets flag (chart
// value artifacts.sets). With one it fetches <mirror>/<version>/manifest.json and the files it
// lists (docs/artifacts.md), so a new Kubernetes version needs no manager restart.
// Reserved: overrides are not built yet, and are refused at admission rather than accepted and
// ignored.
//
// +kubebuilder:validation:XValidation:rule="!has(self.overrides)",message="spec.artifacts.overrides is not built yet (it would replace single artifacts of a set): leave it out; publish a set with the artifact you want at spec.artifacts.mirror instead"
type ArtifactsSpec struct {
	// mirror is the base URL of artifact sets laid out as hack/build-artifacts.sh writes them:
	// <mirror>/<version>/manifest.json and the files it lists, relative to it. The manager
	// fetches the manifest of the Cluster's version, then each artifact once, and checks it
	// against the manifest's sha256 before any host gets it.
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="isURL(self) && (url(self).getScheme() == 'https' || url(self).getScheme() == 'http')",message="spec.artifacts.mirror must be an http or https URL such as https://mirror.example.com/basalt"
	// +optional
	Mirror string `json:"mirror,omitempty"`

	// overrides replace single artifacts by name.
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=64
	// +optional
	Overrides []ArtifactOverride `json:"overrides,omitempty"`
}

// ArtifactOverride replaces one artifact of the set.
type ArtifactOverride struct {
	// name of the artifact, e.g. kube-apiserver or cni-bridge.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +required
	Name string `json:"name"`
	// url the artifact is fetched from.
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="isURL(self) && (url(self).getScheme() == 'https' || url(self).getScheme() == 'http')",message="artifact override url must be an http or https URL"
	// +required
	URL string `json:"url"`
	// sha256 of the artifact's bytes, 64 lowercase hex digits. A mismatch is an error.
	// +kubebuilder:validation:XValidation:rule="self.matches('^[0-9a-f]{64}$')",message="artifact override sha256 must be 64 lowercase hex digits"
	// +kubebuilder:validation:MaxLength=64
	// +required
	SHA256 string `json:"sha256"`
}

// CertificatesSpec configures the cluster's leaf certificates. CAs live ten years.
//
// +kubebuilder:validation:XValidation:rule="!has(self.validityDays) || !has(self.renewBeforeDays) || self.renewBeforeDays < self.validityDays",message="spec.certificates.renewBeforeDays must be less than validityDays, or certificates would be renewed on every reconcile"
type CertificatesSpec struct {
	// validityDays is how long a leaf certificate is valid.
	// +kubebuilder:default=365
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=3650
	// +optional
	ValidityDays int32 `json:"validityDays,omitempty"`
	// renewBeforeDays is how long before expiry a leaf certificate is renewed.
	// +kubebuilder:default=30
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=3649
	// +optional
	RenewBeforeDays int32 `json:"renewBeforeDays,omitempty"`
}

// UpgradeSpec configures how version changes roll out.
type UpgradeSpec struct {
	// strategy is InPlace (default on bare metal: swap binaries on the same host). Replace
	// (provision a spare host, then remove the old machine) is reserved and refused at admission
	// until it is built: a field that is accepted must do what it says.
	// +kubebuilder:default=InPlace
	// +kubebuilder:validation:XValidation:rule="self != 'Replace'",message="spec.upgrade.strategy Replace is not built yet (it would provision a spare Host, then remove the old Machine): use InPlace, the default, which upgrades each Machine on its own Host"
	// +optional
	Strategy UpgradeStrategy `json:"strategy,omitempty"`
	// maxUnavailableWorkers bounds how many workers are drained at once.
	// +kubebuilder:default=1
	// +kubebuilder:validation:Minimum=1
	// +optional
	MaxUnavailableWorkers int32 `json:"maxUnavailableWorkers,omitempty"`
}

// RemediationSpec says when a Machine that stopped working is deleted and replaced. A Machine
// whose Host has spec.bmc is first power-cycled and given its timeout again. A control-plane
// Machine is remediated only while the remaining etcd members keep quorum, one at a time.
type RemediationSpec struct {
	// nodeNotReadyTimeout is how long a Machine that ran may have its Node NotReady before it is
	// remediated.
	// +kubebuilder:default="5m"
	// +optional
	NodeNotReadyTimeout *metav1.Duration `json:"nodeNotReadyTimeout,omitempty"`
	// agentSilentTimeout is how long a Machine that ran may have its agent silent before it is
	// remediated.
	// +kubebuilder:default="5m"
	// +optional
	AgentSilentTimeout *metav1.Duration `json:"agentSilentTimeout,omitempty"`
	// maxRetries is how many remediations may start within retryPeriod; past it the Cluster
	// says RemediationLimitReached and waits for an operator. 0 turns remediation off. A
	// remediation starts with a power cycle (Hosts with spec.bmc) or a replacement; the
	// replacement that follows a power cycle is part of the same remediation.
	// +kubebuilder:default=3
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	// +optional
	MaxRetries *int32 `json:"maxRetries,omitempty"`
	// retryPeriod is the window maxRetries counts remediations in.
	// +kubebuilder:default="1h"
	// +optional
	RetryPeriod *metav1.Duration `json:"retryPeriod,omitempty"`
	// maxUnhealthy is how many of the Cluster's Machines may be unhealthy at once (a count, or a
	// percentage of the Machines, rounded up) for remediation to go on; beyond it Basalt
	// remediates none and says TooManyUnhealthy, since so many failing together points at a
	// network, power or management problem that replacing machines would make worse (Cluster
	// API's MachineHealthCheck maxUnhealthy).
	// +kubebuilder:default="40%"
	// +kubebuilder:validation:XIntOrString
	// +kubebuilder:validation:XValidation:rule="type(self) == int ? self >= 0 : self.matches('^(100|[1-9]?[0-9])%$')",message="spec.remediation.maxUnhealthy must be a count (0 or more) or a percentage from 0% to 100%, e.g. 40%"
	// +optional
	MaxUnhealthy *intstr.IntOrString `json:"maxUnhealthy,omitempty"`
}

// RemediationStatus records the Cluster's recent remediations.
type RemediationStatus struct {
	// count is the number of remediations since windowStart.
	Count int32 `json:"count"`
	// windowStart is when the current retry window began.
	// +optional
	WindowStart *metav1.Time `json:"windowStart,omitempty"`
	// lastMachine is the Machine remediated last.
	// +optional
	LastMachine string `json:"lastMachine,omitempty"`
	// lastRemediatedAt is when it was.
	// +optional
	LastRemediatedAt *metav1.Time `json:"lastRemediatedAt,omitempty"`
}

// ClusterStatus is the observed state of a Cluster.
type ClusterStatus struct {
	// phase is a one-word summary; conditions say why.
	// +optional
	Phase ClusterPhase `json:"phase,omitempty"`

	// conditions: Ready, HostsBound, CertificatesReady, EtcdReady, ControlPlaneReady, WorkersReady,
	// UpToDate, MachinesHealthy, AddonsReady, BackupReady (with spec.etcd.backup).
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// observedGeneration is the generation of the spec the status was computed from.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// version is the Kubernetes version every machine runs; it lags spec.version during upgrades.
	// +optional
	Version string `json:"version,omitempty"`

	// controlPlaneEndpoint is the endpoint in use.
	// +optional
	ControlPlaneEndpoint *APIEndpoint `json:"controlPlaneEndpoint,omitempty"`

	// virtualIP is the state of spec.controlPlane.virtualIP, read from its Lease in the cluster.
	// +optional
	VirtualIP *VirtualIPStatus `json:"virtualIP,omitempty"`

	// kubeconfigSecretRef names the Secret holding the admin kubeconfig (key "value").
	// +optional
	KubeconfigSecretRef *LocalObjectReference `json:"kubeconfigSecretRef,omitempty"`

	// controlPlane counts the control-plane machines.
	// +optional
	ControlPlane ReplicaCounts `json:"controlPlane,omitzero"`

	// workers counts all worker machines.
	// +optional
	Workers ReplicaCounts `json:"workers,omitzero"`

	// workerPools counts machines per worker pool.
	// +listType=map
	// +listMapKey=name
	// +optional
	WorkerPools []PoolStatus `json:"workerPools,omitempty"`

	// certificatesExpireAt is the earliest expiry of the cluster's leaf certificates.
	// +optional
	CertificatesExpireAt *metav1.Time `json:"certificatesExpireAt,omitempty"`

	// certificateRenewal is the state of the last renewal asked with the annotation
	// basalt.dev/renew-certificates.
	// +optional
	CertificateRenewal *CertificateRenewalStatus `json:"certificateRenewal,omitempty"`

	// remediation records recent remediations, for spec.remediation.maxRetries.
	// +optional
	Remediation *RemediationStatus `json:"remediation,omitempty"`

	// addons reports each add-on: the built-in dns first, then spec.addons.manifests in order,
	// then removed add-ons whose objects are still being pruned.
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=64
	// +optional
	Addons []AddonStatus `json:"addons,omitempty"`

	// etcdBackup lists the stored etcd snapshots and the requests and schedule served.
	// +optional
	EtcdBackup *EtcdBackupStatus `json:"etcdBackup,omitempty"`

	// etcdRestore is the last restore asked for with the basalt.dev/etcd-restore annotation.
	// +optional
	EtcdRestore *EtcdRestoreStatus `json:"etcdRestore,omitempty"`

	// encryption is the encryption of Secrets at rest: the current key and the last rotation
	// (basalt.dev/rotate-encryption-key).
	// +optional
	Encryption *EncryptionStatus `json:"encryption,omitempty"`
}

// ReplicaCounts counts machines of one role or pool.
type ReplicaCounts struct {
	// desired is the number of machines wanted.
	Desired int32 `json:"desired"`
	// bound is the number of machines bound to a host.
	Bound int32 `json:"bound"`
	// ready is the number of machines Running with their node Ready.
	Ready int32 `json:"ready"`
	// updated is the number of machines at the desired version and plan.
	Updated int32 `json:"updated"`
}

// PoolStatus counts the machines of one worker pool.
type PoolStatus struct {
	// name of the pool.
	Name string `json:"name"`
	// ReplicaCounts of the pool.
	ReplicaCounts `json:",inline"`
}

// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=bcl,categories=basalt
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Version",type=string,JSONPath=`.status.version`
// +kubebuilder:printcolumn:name="Desired",type=string,JSONPath=`.spec.version`,priority=1
// +kubebuilder:printcolumn:name="CP Ready",type=integer,JSONPath=`.status.controlPlane.ready`
// +kubebuilder:printcolumn:name="CP",type=integer,JSONPath=`.spec.controlPlane.replicas`
// +kubebuilder:printcolumn:name="Workers Ready",type=integer,JSONPath=`.status.workers.ready`
// +kubebuilder:printcolumn:name="Workers",type=integer,JSONPath=`.status.workers.desired`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`
// +kubebuilder:printcolumn:name="Last Backup",type=date,JSONPath=`.status.etcdBackup.snapshots[0].takenAt`,priority=1
// +kubebuilder:printcolumn:name="VIP Holder",type=string,JSONPath=`.status.virtualIP.holder`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`

// Cluster is a Kubernetes cluster whose machines Basalt provisions and keeps alive.
type Cluster struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ObjectMeta `json:"metadata,omitzero"`

	// +required
	Spec ClusterSpec `json:"spec"`
	// The default makes a new object's status.observedGeneration 0, behind its generation (1),
	// until the manager first reconciles it: GitOps tools (kstatus) see it InProgress, not
	// Current, from the first apply.
	// +kubebuilder:default={observedGeneration: 0}
	// +optional
	Status ClusterStatus `json:"status,omitzero"`
}

// +kubebuilder:object:root=true

// ClusterList is a list of Clusters.
type ClusterList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitzero"`
	Items           []Cluster `json:"items"`
}

// GetConditions returns the Cluster's conditions.
func (c *Cluster) GetConditions() []metav1.Condition { return c.Status.Conditions }

// SetConditions replaces the Cluster's conditions.
func (c *Cluster) SetConditions(conds []metav1.Condition) { c.Status.Conditions = conds }
