package v1alpha1

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// AnnotationRenewCertificates, set on a Cluster, reissues every leaf certificate of the cluster
// now, from the same CAs (docs/rotation.md): kube-apiserver, etcd, kubelet, component and admin
// certificates, as `kubeadm certs renew all` does, e.g. after a leaf's key may have leaked. Its
// value names the request: each new value renews once, recorded in status.certificateRenewal;
// the annotation is never removed, so a GitOps tool that keeps applying it asks nothing more.
// The new certificates reach the nodes in their Plans, one control-plane node at a time
// (Machine condition UpToDate).
const AnnotationRenewCertificates = "basalt.dev/renew-certificates"

// Phases of a requested certificate renewal.
const (
	// RenewalPhaseRenewing: every leaf has been reissued; the nodes' Plans are being applied.
	RenewalPhaseRenewing = "Renewing"
	// RenewalPhaseCompleted: every node runs a Plan whose certificates were issued after the
	// request, applied with every component healthy.
	RenewalPhaseCompleted = "Completed"
)

// Event reasons of a requested certificate renewal.
const (
	ReasonCertificateRenewalStarted = "CertificateRenewalStarted"
	ReasonCertificatesRenewed       = "CertificatesRenewed"
)

// CertificateRenewalStatus is the state of the last renewal asked with
// basalt.dev/renew-certificates.
type CertificateRenewalStatus struct {
	// request is the annotation's value this renewal serves.
	// +kubebuilder:validation:MaxLength=253
	Request string `json:"request"`
	// phase is Renewing or Completed.
	// +kubebuilder:validation:Enum=Renewing;Completed
	Phase string `json:"phase"`
	// requestedAt is when the request was seen: every leaf issued before it is reissued.
	RequestedAt metav1.Time `json:"requestedAt"`
	// completedAt is when every node ran the renewed certificates.
	// +optional
	CompletedAt *metav1.Time `json:"completedAt,omitempty"`
	// nodes counts the nodes that run the renewed certificates, of nodesTotal.
	// +optional
	Nodes int32 `json:"nodes,omitempty"`
	// +optional
	NodesTotal int32 `json:"nodesTotal,omitempty"`
	// message says what the renewal waits for.
	// +kubebuilder:validation:MaxLength=1024
	// +optional
	Message string `json:"message,omitempty"`
}
