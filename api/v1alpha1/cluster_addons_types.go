package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// ClusterAddonsReady is True when every add-on of the Cluster (the built-in ones that are on and
// those of spec.addons.manifests) is applied at its current revision, and the cluster DNS has a
// ready server behind the kube-dns Service. A Cluster is Ready only with it.
const ClusterAddonsReady = "AddonsReady"

// Add-on reasons (condition AddonsReady and status.addons).
const (
	// ReasonAddonsApplied says every add-on is applied at its current revision and ready.
	ReasonAddonsApplied = "AddonsApplied"
	// ReasonAddonApplyFailed says an add-on could not be read, rendered or applied; the message
	// names the add-on and the error.
	ReasonAddonApplyFailed = "AddonApplyFailed"
	// ReasonDNSNotReady says the CoreDNS add-on is applied but no CoreDNS server is ready behind
	// the kube-dns Service yet.
	ReasonDNSNotReady = "DNSNotReady"
	// ReasonMetricsNotReady says the metrics-server add-on is applied but the metrics.k8s.io API
	// is not Available yet.
	ReasonMetricsNotReady = "MetricsNotReady"
	// ReasonStorageNotReady says the storage add-on is applied but its provisioner is not
	// available yet.
	ReasonStorageNotReady = "StorageNotReady"
	// ReasonWaitingForAPIServer says no kube-apiserver of the Cluster is up yet to apply add-ons to.
	ReasonWaitingForAPIServer = "WaitingForAPIServer"
)

// Names of the built-in add-ons in status.addons.
const (
	// AddonDNS is the cluster DNS (CoreDNS).
	AddonDNS = "dns"
	// AddonMetrics is the resource metrics API (metrics-server), for kubectl top and autoscalers.
	AddonMetrics = "metrics"
	// AddonStorage is the default StorageClass on node-local volumes (local-path-provisioner).
	AddonStorage = "storage"
)

// AddonsSpec says what Basalt installs into the cluster besides its nodes: the built-in cluster
// DNS, and the user's own manifests. See docs/addons.md.
//
// +kubebuilder:validation:XValidation:rule="!has(self.manifests) || self.manifests.all(m, m.name != 'dns' && m.name != 'metrics' && m.name != 'storage')",message="spec.addons.manifests: the names dns, metrics and storage are the built-in add-ons; choose another name"
// +kubebuilder:validation:XValidation:rule="!has(self.charts) || self.charts.all(c, c.name != 'dns' && c.name != 'metrics' && c.name != 'storage' && (!has(self.manifests) || self.manifests.all(m, m.name != c.name)))",message="spec.addons.charts: a chart add-on needs a name of its own, not dns, metrics or storage (the built-in add-ons) nor that of a manifests add-on"
type AddonsSpec struct {
	// dns configures the built-in cluster DNS (CoreDNS) add-on.
	// +kubebuilder:default={}
	// +optional
	DNS DNSAddonSpec `json:"dns,omitzero"`

	// metrics configures the built-in resource metrics (metrics-server) add-on.
	// +optional
	Metrics MetricsAddonSpec `json:"metrics,omitzero"`

	// storage configures the built-in local storage add-on: a StorageClass on node-local volumes.
	// +kubebuilder:default={}
	// +optional
	Storage StorageAddonSpec `json:"storage,omitzero"`

	// manifests are the user's add-ons: each names a ConfigMap or Secret in the Cluster's
	// namespace whose data values are Kubernetes manifests (YAML or JSON, several documents per
	// value allowed), applied into the cluster with server-side apply (field manager
	// basalt-addons) in the order listed, after the built-in add-ons, and applied again when the
	// data changes.
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=32
	// +optional
	Manifests []ManifestAddon `json:"manifests,omitempty"`

	// charts are Helm charts installed into the cluster as releases with the Helm SDK, after
	// the manifests, and upgraded when the chart or its values change.
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=16
	// +optional
	Charts []ChartAddon `json:"charts,omitempty"`
}

// ChartAddon is a Helm chart installed as a release named after the add-on.
type ChartAddon struct {
	// name of the add-on and of its Helm release, a DNS label.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=53
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')",message="chart add-on name must be a DNS label of at most 53 characters (a Helm release name)"
	// +required
	Name string `json:"name"`

	// namespace the release is installed into, created when missing.
	// +kubebuilder:default=default
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')",message="chart add-on namespace must be a DNS label"
	// +optional
	Namespace string `json:"namespace,omitempty"`

	// chart says where the packaged chart is (the .tgz `helm package` writes).
	// +required
	Chart ChartSource `json:"chart"`

	// values are the chart's values, as `helm install --values` takes them.
	// +kubebuilder:pruning:PreserveUnknownFields
	// +kubebuilder:validation:Type=object
	// +optional
	Values *runtime.RawExtension `json:"values,omitempty"`

	// prune uninstalls the release when the add-on is removed from the list. Without it the
	// release stays.
	// +optional
	Prune bool `json:"prune,omitempty"`
}

// ChartSource is a packaged Helm chart held in a ConfigMap (binaryData) or a Secret of the
// Cluster's namespace: no chart repository is needed.
//
// +kubebuilder:validation:XValidation:rule="has(self.configMapRef) != has(self.secretRef)",message="a chart names exactly one of configMapRef and secretRef"
type ChartSource struct {
	// configMapRef names a ConfigMap whose binaryData holds the chart.
	// +optional
	ConfigMapRef *LocalObjectReference `json:"configMapRef,omitempty"`
	// secretRef names a Secret whose data holds the chart.
	// +optional
	SecretRef *LocalObjectReference `json:"secretRef,omitempty"`
	// key of the chart archive in the ConfigMap's binaryData or the Secret's data.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +required
	Key string `json:"key"`
}

// DNSAddonSpec configures the built-in CoreDNS add-on: a Deployment in kube-system behind the
// kube-dns Service on the cluster DNS address (the tenth address of spec.network.serviceCIDR),
// serving spec.network.dnsDomain.
type DNSAddonSpec struct {
	// disabled turns the built-in DNS off: Basalt applies nothing for it, does not wait for it to
	// be Ready, and leaves what it applied before in place. Bring your own DNS on the cluster DNS
	// address.
	// +optional
	Disabled bool `json:"disabled,omitempty"`

	// replicas is the number of CoreDNS pods, spread over nodes, with a PodDisruptionBudget that
	// keeps all but one available during drains.
	// +kubebuilder:default=2
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=10
	// +optional
	Replicas int32 `json:"replicas,omitempty"`

	// upstreams are the DNS servers names outside the cluster domain are forwarded to: IP
	// addresses, optionally with a port (192.0.2.53, 192.0.2.53:5353, [2001:db8::53]:53). When
	// empty, the nameservers of the control-plane Hosts (their status.os.nameservers, as the
	// agents read them from the hosts' resolver configuration, loopback stubs left out); with
	// none known, names outside the cluster domain do not resolve.
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=3
	// +kubebuilder:validation:items:MaxLength=64
	// +kubebuilder:validation:XValidation:rule="self.all(u, isIP(u) || (u.matches('^[0-9.]+:[0-9]{1,5}$') && isIP(u.split(':')[0])) || (u.matches('^\\\\[[0-9a-fA-F:.]+\\\\]:[0-9]{1,5}$') && isIP(u.substring(1, u.lastIndexOf(']')))))",message="spec.addons.dns.upstreams must be IP addresses, optionally with a port: 192.0.2.53, 192.0.2.53:5353 or [2001:db8::53]:53"
	// +optional
	Upstreams []string `json:"upstreams,omitempty"`
}

// MetricsAddonSpec configures the built-in metrics-server add-on: the metrics.k8s.io API behind
// kubectl top and the autoscalers, served with a certificate of the cluster CA and reading every
// kubelet over TLS verified with that CA.
type MetricsAddonSpec struct {
	// disabled turns the built-in metrics-server off: Basalt applies nothing for it, does not wait
	// for it, and leaves what it applied before in place.
	// +optional
	Disabled bool `json:"disabled,omitempty"`
}

// StorageAddonSpec configures the built-in local storage add-on: local-path-provisioner and the
// local-path StorageClass, whose volumes are folders under /var/lib/basalt-volumes on the node a
// volume's first pod runs on. They survive reboots, stay on their node (a pod using one is
// scheduled there), and are wiped with the node when its Host is released.
type StorageAddonSpec struct {
	// disabled turns the built-in storage off: Basalt applies nothing for it, does not wait for
	// it, and leaves what it applied before in place (bring a CSI driver as an add-on instead).
	// +optional
	Disabled bool `json:"disabled,omitempty"`

	// defaultClass makes local-path the cluster's default StorageClass, so a claim that names no
	// class binds from it.
	// +kubebuilder:default=true
	// +optional
	DefaultClass *bool `json:"defaultClass,omitempty"`
}

// ManifestAddon is one user add-on: the manifests held in a ConfigMap or a Secret.
//
// +kubebuilder:validation:XValidation:rule="has(self.configMapRef) != has(self.secretRef)",message="an add-on of spec.addons.manifests names exactly one of configMapRef and secretRef"
type ManifestAddon struct {
	// name of the add-on, a DNS label, as reported in status.addons.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')",message="add-on name must be a DNS label: lowercase letters, digits and '-'"
	// +required
	Name string `json:"name"`

	// configMapRef names a ConfigMap in the Cluster's namespace; every data value is manifests.
	// +optional
	ConfigMapRef *LocalObjectReference `json:"configMapRef,omitempty"`

	// secretRef names a Secret in the Cluster's namespace; every data value is manifests (for
	// add-ons that carry credentials).
	// +optional
	SecretRef *LocalObjectReference `json:"secretRef,omitempty"`

	// prune deletes from the cluster the objects this add-on applied before and no longer holds
	// (also all of them when the add-on is removed from the list). Without it they stay.
	// +optional
	Prune bool `json:"prune,omitempty"`
}

// AddonStatus is what Basalt applied of one add-on.
type AddonStatus struct {
	// name of the add-on: dns for the built-in cluster DNS, else the name in spec.addons.manifests.
	Name string `json:"name"`
	// revision is a digest of the rendered manifests last applied in full.
	// +optional
	Revision string `json:"revision,omitempty"`
	// appliedAt is when that revision was applied.
	// +optional
	AppliedAt *metav1.Time `json:"appliedAt,omitempty"`
	// objects lists what that revision holds.
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=256
	// +optional
	Objects []AddonObject `json:"objects,omitempty"`
	// prune is the add-on's prune setting when it was last applied.
	// +optional
	Prune bool `json:"prune,omitempty"`
	// release is the Helm release of a chart add-on, as last installed or upgraded.
	// +optional
	Release *AddonRelease `json:"release,omitempty"`
	// lastError is why the last attempt to read, render or apply the add-on failed; empty when it
	// succeeded.
	// +optional
	LastError string `json:"lastError,omitempty"`
}

// AddonObject names one object an add-on applied.
type AddonObject struct {
	// apiVersion of the object, e.g. apps/v1.
	APIVersion string `json:"apiVersion"`
	// kind of the object, e.g. Deployment.
	Kind string `json:"kind"`
	// namespace of the object; empty when it is cluster-scoped.
	// +optional
	Namespace string `json:"namespace,omitempty"`
	// name of the object.
	Name string `json:"name"`
}

// AddonRelease is the Helm release of a chart add-on.
type AddonRelease struct {
	// namespace of the release.
	Namespace string `json:"namespace"`
	// version is the release's revision number in Helm's history.
	Version int32 `json:"version"`
	// chart is the chart's name and version, e.g. podinfo-6.5.0.
	// +optional
	Chart string `json:"chart,omitempty"`
}
