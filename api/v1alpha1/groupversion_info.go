// Package v1alpha1 contains the Basalt API: Cluster, Machine and Host in the basalt.dev group.
//
// A Cluster declares a Kubernetes cluster (version, control plane, worker pools, network); the
// Cluster controller binds Machines to Hosts that match its selectors; each Machine is one Host's
// membership in one Cluster. Every kind carries a top-level Ready condition and
// status.observedGeneration, so `kubectl wait --for=condition=Ready` and kstatus-based tools work.
//
// Validation lives in the schema and in CEL rules next to the fields they guard; every rule's
// message says what to change.
//
// This package imports only the standard library and apimachinery.
//
// +kubebuilder:object:generate=true
// +groupName=basalt.dev
package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var (
	// GroupVersion is the group and version of the Basalt API.
	GroupVersion = schema.GroupVersion{Group: "basalt.dev", Version: "v1alpha1"}

	schemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)

	// AddToScheme adds the Basalt types to a scheme.
	AddToScheme = schemeBuilder.AddToScheme
)

func addKnownTypes(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion,
		&Cluster{}, &ClusterList{},
		&Machine{}, &MachineList{},
		&Host{}, &HostList{},
	)
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}

// ConditionReady is the top-level condition every Basalt kind carries. It is True only when the
// object is fully serving its purpose; its reason says what is missing otherwise.
const ConditionReady = "Ready"

// Conditions for GitOps tools, on every kind, in the kstatus convention (sigs.k8s.io/cli-utils
// kstatus, which Flux and Argo CD health checks follow). They are derived from the others by
// the reconcile skeleton, never set on their own (docs/observability.md, "GitOps health").
const (
	// ConditionReconciling is True while the object is not Ready and Basalt is working on it;
	// its reason and message are Ready's.
	ConditionReconciling = "Reconciling"
	// ConditionStalled is True while the object cannot get Ready without a person: one of its
	// conditions has a reason that no retry fixes (a host key mismatch, the remediation limit
	// reached, an invalid selector, ...). Its reason and message are that condition's.
	ConditionStalled = "Stalled"
	// ConditionPaused is True while reconciliation is paused (the Cluster's spec.paused, for the
	// Cluster and its Machines). Ready keeps its last reconciled value meanwhile.
	ConditionPaused = "Paused"
)

// Reasons shared by every kind.
const (
	// ReasonNotImplemented says a capability this condition depends on is not built yet. It is the
	// honest answer of an early release, never a fake Ready.
	ReasonNotImplemented = "NotImplemented"
	// ReasonPaused says reconciliation is paused by spec.paused or the paused annotation.
	ReasonPaused = "Paused"
	// ReasonDeleting says the object is being deleted.
	ReasonDeleting = "Deleting"
	// ReasonReady says the condition holds.
	ReasonReady = "Ready"
)

// SecretKeyReference names a key in a Secret in the object's namespace.
type SecretKeyReference struct {
	// name of the Secret.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +required
	Name string `json:"name"`
	// key inside the Secret's data.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +required
	Key string `json:"key"`
}

// LocalObjectReference names an object in the same namespace.
// +structType=atomic
type LocalObjectReference struct {
	// name of the object.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +required
	Name string `json:"name"`
}
