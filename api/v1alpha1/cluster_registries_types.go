package v1alpha1

// Registry says how the container runtime of every node reaches one image registry: the mirrors
// it tries first for pulls, and the CA and credentials it uses for the registry itself. Basalt
// renders it into containerd's hosts.toml (docs/registries.md); changes reach running nodes
// without restarting containerd.
// +kubebuilder:validation:XValidation:rule="!has(self.credentialsSecretRef) || !has(self.server) || self.server.startsWith('https://')",message="spec.registries[].credentialsSecretRef needs an https server: credentials are never sent in clear text; use an https:// server or leave the credentials out"
// +kubebuilder:validation:XValidation:rule="!has(self.caSecretRef) || !has(self.server) || self.server.startsWith('https://')",message="spec.registries[].caSecretRef needs an https server: a CA verifies TLS only; use an https:// server or leave the CA out"
type Registry struct {
	// host names the registry as image references do: "docker.io", "registry.example.com",
	// "10.0.0.5:5000". Lower case, with an optional port.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]{1,5})?$`
	// +required
	Host string `json:"host"`

	// server is the URL of the registry itself, tried after the mirrors. Empty means
	// https://<host> (https://registry-1.docker.io for docker.io).
	// +kubebuilder:validation:MaxLength=512
	// +kubebuilder:validation:XValidation:rule="isURL(self) && (url(self).getScheme() == 'https' || url(self).getScheme() == 'http') && url(self).getHostname() != ''",message="spec.registries[].server must be an http or https URL such as https://registry.example.com:5000"
	// +optional
	Server string `json:"server,omitempty"`

	// mirrors are tried in order for pulls before the registry itself. A mirror serves the same
	// repositories under the same names (/v2/<repository>/...).
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=8
	// +optional
	Mirrors []RegistryMirror `json:"mirrors,omitempty"`

	// caSecretRef names a Secret key holding PEM CA certificates that verify the registry's TLS
	// certificate, in addition to the host's system roots.
	// +optional
	CASecretRef *SecretKeyReference `json:"caSecretRef,omitempty"`

	// credentialsSecretRef names a Secret with "username" and "password" keys (type
	// kubernetes.io/basic-auth) sent to the registry with HTTP basic authentication.
	// +optional
	CredentialsSecretRef *LocalObjectReference `json:"credentialsSecretRef,omitempty"`
}

// RegistryMirror is an endpoint that serves a registry's images.
// +kubebuilder:validation:XValidation:rule="!has(self.credentialsSecretRef) || self.url.startsWith('https://')",message="spec.registries[].mirrors[].credentialsSecretRef needs an https url: credentials are never sent in clear text; use an https:// mirror or leave the credentials out"
// +kubebuilder:validation:XValidation:rule="!has(self.caSecretRef) || self.url.startsWith('https://')",message="spec.registries[].mirrors[].caSecretRef needs an https url: a CA verifies TLS only; use an https:// mirror or leave the CA out"
type RegistryMirror struct {
	// url of the mirror, e.g. https://mirror.example.com:5000. A path is kept as a prefix
	// before /v2.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=512
	// +kubebuilder:validation:XValidation:rule="isURL(self) && (url(self).getScheme() == 'https' || url(self).getScheme() == 'http') && url(self).getHostname() != ''",message="spec.registries[].mirrors[].url must be an http or https URL such as https://mirror.example.com:5000"
	// +required
	URL string `json:"url"`

	// caSecretRef names a Secret key holding PEM CA certificates that verify the mirror's TLS
	// certificate, in addition to the host's system roots.
	// +optional
	CASecretRef *SecretKeyReference `json:"caSecretRef,omitempty"`

	// credentialsSecretRef names a Secret with "username" and "password" keys (type
	// kubernetes.io/basic-auth) sent to the mirror with HTTP basic authentication.
	// +optional
	CredentialsSecretRef *LocalObjectReference `json:"credentialsSecretRef,omitempty"`
}
