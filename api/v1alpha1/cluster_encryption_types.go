package v1alpha1

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// AnnotationRotateEncryptionKey, set on a Cluster, rotates the key that encrypts its Secrets in
// etcd (docs/rotation.md). Its value names the request: each new value starts one rotation (a new
// key is handed to every kube-apiserver, made the write key, every Secret is rewritten with it
// and checked in etcd, then the old key is removed), recorded in status.encryption.rotation; the
// annotation is never removed, so a GitOps tool that keeps applying it asks nothing more. A new
// value written while a rotation runs starts another once it is done.
const AnnotationRotateEncryptionKey = "basalt.dev/rotate-encryption-key"

// Phases of an encryption key rotation.
const (
	// EncryptionPhaseAddingKey: the new key is in every control-plane Plan, read-only; the
	// rotation waits until every kube-apiserver has loaded it.
	EncryptionPhaseAddingKey = "AddingKey"
	// EncryptionPhaseRewriting: the new key encrypts writes (once every kube-apiserver loaded
	// that); every Secret is rewritten and etcd is read until none is left under the old key.
	EncryptionPhaseRewriting = "Rewriting"
	// EncryptionPhaseRemovingKey: the old key is gone from the Plans; the rotation waits until
	// every kube-apiserver has loaded that.
	EncryptionPhaseRemovingKey = "RemovingKey"
	// EncryptionPhaseCompleted: every Secret is encrypted with the new key, the only one left.
	EncryptionPhaseCompleted = "Completed"
)

// Event reasons of an encryption key rotation.
const (
	ReasonEncryptionKeyRotationStarted = "EncryptionKeyRotationStarted"
	ReasonEncryptionKeyPromoted        = "EncryptionKeyPromoted"
	ReasonSecretsReencrypted           = "SecretsReencrypted"
	ReasonEncryptionKeyRotated         = "EncryptionKeyRotated"
	ReasonEncryptionKeyRotationWaiting = "EncryptionKeyRotationWaiting"
)

// EncryptionStatus is the state of the cluster's encryption of Secrets at rest.
type EncryptionStatus struct {
	// keyName is the key new writes of Secrets are encrypted with (key-1, key-2, ...; the name
	// is written before every value it encrypts in etcd).
	// +optional
	KeyName string `json:"keyName,omitempty"`

	// keys are the keys every kube-apiserver is given, the write key first.
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=2
	// +optional
	Keys []string `json:"keys,omitempty"`

	// rotation is the key rotation in progress, or the last one.
	// +optional
	Rotation *EncryptionRotationStatus `json:"rotation,omitempty"`
}

// EncryptionRotationStatus is one encryption key rotation.
type EncryptionRotationStatus struct {
	// request is the basalt.dev/rotate-encryption-key value it serves.
	// +kubebuilder:validation:MaxLength=64
	Request string `json:"request"`

	// phase is AddingKey, Rewriting, RemovingKey or Completed.
	// +kubebuilder:validation:Enum=AddingKey;Rewriting;RemovingKey;Completed
	Phase string `json:"phase"`

	// startedAt is when the new key was issued.
	// +optional
	StartedAt *metav1.Time `json:"startedAt,omitempty"`

	// completedAt is when every kube-apiserver was found with the new key alone.
	// +optional
	CompletedAt *metav1.Time `json:"completedAt,omitempty"`

	// rewritten counts the Secrets written back in the Rewriting phase.
	// +optional
	Rewritten int32 `json:"rewritten,omitempty"`

	// remaining counts the Secrets etcd still held under another key at the last check.
	// +optional
	Remaining int32 `json:"remaining,omitempty"`

	// message says what the rotation waits for.
	// +kubebuilder:validation:MaxLength=1024
	// +optional
	Message string `json:"message,omitempty"`
}

// AnnotationAdminAccessRequested, changed on a Cluster (basaltctl get kubeconfig --user sets it
// to the time), has the manager sign the approved CertificateSigningRequests of the signer
// basalt.dev/admin-access in the workload cluster: the revocable administrator kubeconfigs
// (docs/cli.md). Any value; a change is what counts.
const AnnotationAdminAccessRequested = "basalt.dev/admin-access-requested"
