// Package components renders how every part of a workload cluster runs on one host: the argv of
// etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kube-proxy and
// containerd, and the configuration files they read (EncryptionConfiguration,
// AuthenticationConfiguration, audit policy, KubeSchedulerConfiguration, KubeletConfiguration,
// KubeProxyConfiguration, containerd's config.toml and the CNI conflist).
//
// Every function is pure: it takes a ClusterParams and returns a Component (argv plus files) or
// a File, and the same input always gives the same bytes, so a Plan built from them hashes the
// same on every reconcile and the agent restarts only what really changed. Nothing here reads
// the host, the clock or the network.
//
// Every function validates its input first (ClusterParams.Validate) and returns an error that
// names the offending field, such as
//
//	components: version: "1.37" is not a Kubernetes version like v1.37.2
//	components: nodeCIDRMaskSize: 8 cannot split podCIDR 10.244.0.0/16 into node ranges (want 17..32)
//	components: endpoint: "https://api" is neither an IP nor a DNS name
//	components: apiServer.encryption.keys: at least one key is required
//
// Certificates, keys and kubeconfigs are not rendered here (see bootstrap/pki and
// bootstrap/kubeconfig); Paths says where the Plan must write them so that the argv rendered
// here finds them. Files that hold key material have Secret set, so the Plan can carry them as a
// secret reference rather than inline content.
//
// The choices behind the defaults (anonymous auth limited to health endpoints, secretbox
// encryption, cgroup driver selection, failCgroupV1, certificate rotation off, ...) are written
// down in docs/components.md.
package components
