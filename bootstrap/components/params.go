package components

import (
	"io/fs"
	"path"
)

// Defaults of ClusterParams fields left empty.
const (
	DefaultDNSDomain      = "cluster.local"
	DefaultAPIServerPort  = 6443
	DefaultSandboxImage   = "registry.k8s.io/pause:3.10"
	DefaultSnapshotter    = "overlayfs"
	DefaultBridgeName     = "cni0"
	DefaultEncryption     = EncryptionSecretbox
	defaultNodeMaskSizeV4 = 24
	defaultNodeMaskSizeV6 = 64
)

// ClusterParams is everything the renderers need about one cluster and one host in it.
type ClusterParams struct {
	// ClusterName is the Cluster object's name (etcd --initial-cluster-token, --cluster-name).
	ClusterName string
	// Version is the Kubernetes version, e.g. "v1.37.2"; see SupportedMinors.
	Version string
	// PodCIDR is the cluster's pod network, e.g. "10.244.0.0/16".
	PodCIDR string
	// ServiceCIDR is the cluster's Service network, e.g. "10.96.0.0/12".
	ServiceCIDR string
	// NodeCIDRMaskSize is the prefix length of each node's pod range; 0 means 24 (IPv4) or
	// 64 (IPv6). It must split PodCIDR into at most 2^16 ranges.
	NodeCIDRMaskSize int
	// DNSDomain is the cluster DNS domain; empty means "cluster.local".
	DNSDomain string
	// ClusterDNSIP is the cluster DNS Service IP the kubelet hands to pods; empty means the
	// 10th address of ServiceCIDR (kubeadm's convention).
	ClusterDNSIP string
	// Endpoint is spec.controlPlane.endpoint as "host" or "host:port", host an IP or DNS name.
	Endpoint string

	// Node is the host being rendered.
	Node NodeParams
	// Etcd is this host's etcd member (control-plane hosts only).
	Etcd EtcdParams
	// APIServer holds kube-apiserver options (control-plane hosts only).
	APIServer APIServerParams
	// ControllerManager holds kube-controller-manager options.
	ControllerManager ControllerManagerParams
	// Runtime holds containerd and CNI options.
	Runtime RuntimeParams
	// Ports are the ports of etcd, kube-controller-manager, kube-scheduler and the kubelet's
	// health endpoint; zero fields take DefaultPorts' values. (kube-apiserver's is APIServer.Port.)
	Ports Ports
	// Paths says where things live on the host; zero fields take DefaultPaths' values.
	Paths Paths
}

// Ports are TCP ports of host services. All members of one etcd cluster must use the same
// ports: a member's peer URL is derived from its IP and EtcdPeer.
type Ports struct {
	// EtcdClient, EtcdPeer and EtcdMetrics are etcd's client (TLS), peer (TLS) and metrics
	// (plain HTTP, loopback only) ports; defaults 2379, 2380, 2381.
	EtcdClient  int
	EtcdPeer    int
	EtcdMetrics int
	// ControllerManager and Scheduler are the secure (HTTPS, loopback only) ports of
	// kube-controller-manager and kube-scheduler; defaults 10257 and 10259.
	ControllerManager int
	Scheduler         int
	// KubeletHealthz is the kubelet's plain-HTTP health port on loopback; default 10248.
	KubeletHealthz int
}

// DefaultPorts returns the upstream default ports.
func DefaultPorts() Ports {
	return Ports{EtcdClient: 2379, EtcdPeer: 2380, EtcdMetrics: 2381,
		ControllerManager: 10257, Scheduler: 10259, KubeletHealthz: 10248}
}

// WithDefaults returns p with zero fields set from DefaultPorts.
func (p Ports) WithDefaults() Ports {
	d := DefaultPorts()
	for _, f := range []struct{ v, d *int }{
		{&p.EtcdClient, &d.EtcdClient}, {&p.EtcdPeer, &d.EtcdPeer}, {&p.EtcdMetrics, &d.EtcdMetrics},
		{&p.ControllerManager, &d.ControllerManager}, {&p.Scheduler, &d.Scheduler},
		{&p.KubeletHealthz, &d.KubeletHealthz},
	} {
		if *f.v == 0 {
			*f.v = *f.d
		}
	}
	return p
}

// NodeParams describes the host being rendered.
type NodeParams struct {
	// Name is the Kubernetes node name (and the etcd member name on control-plane hosts).
	Name string
	// IP is the node's address: kubelet --node-ip, the apiserver advertise address, etcd URLs.
	IP string
	// PodCIDR is this node's pod range inside ClusterParams.PodCIDR; it must be the range in
	// the Node's spec.podCIDR (see docs/components.md).
	PodCIDR string
	// CgroupDriver is the kubelet and containerd cgroup driver; see CgroupDriverFor.
	CgroupDriver CgroupDriver
	// CgroupV2 says the host runs the unified cgroup hierarchy: the kubelet then refuses to
	// start on cgroup v1 (failCgroupV1 true, its default), which only a v1 host must turn off.
	CgroupV2 bool
	// InContainer is set when the "host" is a container (the e2e harness): the kubelet stops
	// evicting on shared-disk pressure, kube-proxy leaves the host's conntrack sysctls alone, and
	// containerd restricts containers' OOM score to its own (restrict_oom_score_adj).
	InContainer bool
	// ResolvConf is the resolv.conf the kubelet gives pods with dnsPolicy Default; empty
	// keeps the kubelet default (/etc/resolv.conf). Hosts running systemd-resolved need
	// /run/systemd/resolve/resolv.conf.
	ResolvConf string
}

// CgroupDriver is the cgroup manager of kubelet and runc.
type CgroupDriver string

// Cgroup drivers.
const (
	CgroupDriverSystemd  CgroupDriver = "systemd"
	CgroupDriverCgroupfs CgroupDriver = "cgroupfs"
)

// CgroupDriverFor picks the driver for a host from facts the agent reports: systemd only where
// systemd is PID 1 and the host runs the unified cgroup v2 hierarchy, cgroupfs otherwise
// (containers, initramfs hosts, cgroup v1 hosts).
func CgroupDriverFor(systemdIsPID1, cgroupV2 bool) CgroupDriver {
	if systemdIsPID1 && cgroupV2 {
		return CgroupDriverSystemd
	}
	return CgroupDriverCgroupfs
}

// EtcdParams describes this host's etcd member.
type EtcdParams struct {
	// Members is the cluster as this member must know it when it starts for the first time,
	// including itself (matched by Node.Name). The first member lists only itself.
	Members []EtcdMember
	// Join is false for the member that initialises the cluster (--initial-cluster-state=new)
	// and true for a member the manager has added as a learner (--initial-cluster-state=existing).
	Join bool
	// QuotaBackendBytes is --quota-backend-bytes; 0 leaves etcd's default (2 GiB) and the flag
	// out.
	QuotaBackendBytes int64
	// Epoch names the etcd cluster the member belongs to after a restore ("" before any): the
	// data dir is EtcdDataDir-<Epoch> and the cluster token <cluster>-<Epoch>, so a host still
	// holding a member of the cluster before the restore never starts it in the new one.
	Epoch string
}

// EtcdDataDirOf is the data dir of a member of epoch under the base data dir.
func EtcdDataDirOf(base, epoch string) string {
	if epoch == "" {
		return base
	}
	return base + "-" + epoch
}

// EtcdMember is one etcd member.
type EtcdMember struct {
	// Name is the member name, the node name of its host.
	Name string
	// PeerURL is its peer URL, https://<node IP>:2380.
	PeerURL string
}

// EtcdPeerURL is the peer URL of the member on a host with the given IP and etcd peer port
// (0 means the default, 2380).
func EtcdPeerURL(nodeIP string, port int) string {
	return "https://" + joinHostPort(nodeIP, orDefault(port, DefaultPorts().EtcdPeer))
}

// EtcdClientURL is the client URL of the member on a host with the given IP and etcd client
// port (0 means the default, 2379).
func EtcdClientURL(nodeIP string, port int) string {
	return "https://" + joinHostPort(nodeIP, orDefault(port, DefaultPorts().EtcdClient))
}

// APIServerParams holds kube-apiserver options.
type APIServerParams struct {
	// Port is the secure port; 0 means 6443.
	Port int
	// Encryption configures secrets encryption at rest. Required: encryption is always on.
	Encryption EncryptionParams
	// Audit configures the audit log; off unless Enabled.
	Audit AuditParams
}

// EncryptionProvider is the EncryptionConfiguration provider for Secrets.
type EncryptionProvider string

// Encryption providers.
const (
	EncryptionSecretbox EncryptionProvider = "secretbox"
	EncryptionAESCBC    EncryptionProvider = "aescbc"
)

// EncryptionParams configures secrets encryption at rest.
type EncryptionParams struct {
	// Provider is secretbox (default) or aescbc.
	Provider EncryptionProvider
	// Keys are the encryption keys, 32 random bytes each. The first encrypts new writes; the
	// others only decrypt, which is how a key is rotated in.
	Keys []EncryptionKey
}

// EncryptionKey is one named key.
type EncryptionKey struct {
	Name   string
	Secret []byte
}

// AuditParams configures the audit log.
type AuditParams struct {
	// Enabled turns on the audit log with Basalt's policy (metadata level; secrets and tokens
	// never logged with bodies; health checks and watches not logged).
	Enabled bool
	// MaxAgeDays, MaxBackups and MaxSizeMB bound the log files; zero means 30, 10 and 100.
	MaxAgeDays int
	MaxBackups int
	MaxSizeMB  int
}

// ControllerManagerParams holds kube-controller-manager options.
type ControllerManagerParams struct {
	// CSRSigning gives kube-controller-manager the cluster CA key so the certificates API can
	// sign CSRs (--cluster-signing-*). Off by default: Basalt issues every node certificate
	// itself, and the CA key then never leaves the manager.
	CSRSigning bool
}

// RuntimeParams holds containerd and CNI options.
type RuntimeParams struct {
	// SandboxImage is the pause image; empty means registry.k8s.io/pause:3.10. It must be
	// imported from the artifact set, as no registry is reachable.
	SandboxImage string
	// Snapshotter is containerd's snapshotter; empty means overlayfs.
	Snapshotter string
	// BridgeName is the CNI bridge; empty means cni0.
	BridgeName string
	// MTU of the pod interfaces; 0 leaves the bridge plugin's default.
	MTU int
	// Registries say how containerd reaches image registries (mirrors, CAs, credentials); see
	// Registries. containerd reads them from Paths.RegistryCertsDir() in any case.
	Registries []Registry
}

// Paths says where things live on the host.
type Paths struct {
	// BinDir holds the component binaries (default /opt/basalt/bin).
	BinDir string
	// PKIDir holds certificates and keys (default /etc/basalt/pki); see the PKI methods.
	PKIDir string
	// KubeconfigDir holds the component kubeconfigs (default /etc/basalt/kubeconfig).
	KubeconfigDir string
	// ConfigDir holds component configuration files (default /etc/basalt).
	ConfigDir string
	// EtcdDataDir is etcd's data directory (default /var/lib/etcd).
	EtcdDataDir string
	// AuditLog is the audit log file (default /var/log/basalt/kube-apiserver-audit.log).
	AuditLog string
	// ContainerdRoot, ContainerdState and ContainerdSocket are containerd's directories and
	// socket (defaults /var/lib/containerd, /run/containerd, /run/containerd/containerd.sock).
	ContainerdRoot   string
	ContainerdState  string
	ContainerdSocket string
	// CNIBinDir and CNIConfDir are the CNI plugin and configuration directories
	// (defaults /opt/cni/bin, /etc/cni/net.d).
	CNIBinDir  string
	CNIConfDir string
	// ImageDir holds the OCI image tarballs the agent imports into containerd (default
	// /var/lib/basalt/images). No renderer reads it; the Plan places image artifacts there.
	ImageDir string
}

// DefaultPaths returns the default host layout.
func DefaultPaths() Paths {
	return Paths{
		BinDir:           "/opt/basalt/bin",
		PKIDir:           "/etc/basalt/pki",
		KubeconfigDir:    "/etc/basalt/kubeconfig",
		ConfigDir:        "/etc/basalt",
		EtcdDataDir:      "/var/lib/etcd",
		AuditLog:         "/var/log/basalt/kube-apiserver-audit.log",
		ContainerdRoot:   "/var/lib/containerd",
		ContainerdState:  "/run/containerd",
		ContainerdSocket: "/run/containerd/containerd.sock",
		CNIBinDir:        "/opt/cni/bin",
		CNIConfDir:       "/etc/cni/net.d",
		ImageDir:         "/var/lib/basalt/images",
	}
}

// fields lists every path field with its default, in declaration order.
func (p *Paths) fields() []struct {
	name string
	v    *string
	d    string
} {
	d := DefaultPaths()
	return []struct {
		name string
		v    *string
		d    string
	}{
		{"binDir", &p.BinDir, d.BinDir}, {"pkiDir", &p.PKIDir, d.PKIDir},
		{"kubeconfigDir", &p.KubeconfigDir, d.KubeconfigDir}, {"configDir", &p.ConfigDir, d.ConfigDir},
		{"etcdDataDir", &p.EtcdDataDir, d.EtcdDataDir}, {"auditLog", &p.AuditLog, d.AuditLog},
		{"containerdRoot", &p.ContainerdRoot, d.ContainerdRoot}, {"containerdState", &p.ContainerdState, d.ContainerdState},
		{"containerdSocket", &p.ContainerdSocket, d.ContainerdSocket}, {"cniBinDir", &p.CNIBinDir, d.CNIBinDir},
		{"cniConfDir", &p.CNIConfDir, d.CNIConfDir}, {"imageDir", &p.ImageDir, d.ImageDir},
	}
}

// WithDefaults returns p with empty fields set from DefaultPaths.
func (p Paths) WithDefaults() Paths { return p.withDefaults() }

func (p Paths) withDefaults() Paths {
	for _, f := range p.fields() {
		if *f.v == "" {
			*f.v = f.d
		}
	}
	return p
}

// UnderRoot returns p with defaults applied and every path moved under root (root + path), for
// running a host's services inside a directory, e.g. in tests. An empty root returns p with
// defaults applied.
func (p Paths) UnderRoot(root string) Paths {
	p = p.withDefaults()
	if root == "" {
		return p
	}
	for _, f := range p.fields() {
		*f.v = path.Join(root, *f.v)
	}
	return p
}

// CertPaths are the files of one certificate and its key.
type CertPaths struct{ Cert, Key string }

// The methods below say where the Plan writes each PKI file (kubeadm's names under PKIDir) and
// each kubeconfig; the rendered argv refers to the same paths. Empty fields of p take
// DefaultPaths' values, so they may be called on the ClusterParams.Paths given to a renderer.

func (p Paths) pkiFile(name string) string { return path.Join(p.withDefaults().PKIDir, name) }

func (p Paths) pair(name string) CertPaths {
	return CertPaths{Cert: p.pkiFile(name + ".crt"), Key: p.pkiFile(name + ".key")}
}

// CACert is the cluster CA certificate.
func (p Paths) CACert() string { return p.pkiFile("ca.crt") }

// CAKey is the cluster CA key, on hosts only with ControllerManagerParams.CSRSigning.
func (p Paths) CAKey() string { return p.pkiFile("ca.key") }

// FrontProxyCACert is the front-proxy CA certificate.
func (p Paths) FrontProxyCACert() string { return p.pkiFile("front-proxy-ca.crt") }

// EtcdCACert is the etcd CA certificate.
func (p Paths) EtcdCACert() string { return p.pkiFile("etcd/ca.crt") }

// ServiceAccountKey is the service-account private key (control-plane hosts).
func (p Paths) ServiceAccountKey() string { return p.pkiFile("sa.key") }

// ServiceAccountPub is the service-account public key (control-plane hosts).
func (p Paths) ServiceAccountPub() string { return p.pkiFile("sa.pub") }

// ControllerManagerServing is kube-controller-manager's serving certificate (its secure port).
func (p Paths) ControllerManagerServing() CertPaths { return p.pair("controller-manager-serving") }

// SchedulerServing is kube-scheduler's serving certificate (its secure port).
func (p Paths) SchedulerServing() CertPaths { return p.pair("scheduler-serving") }

// APIServer is kube-apiserver's serving certificate.
func (p Paths) APIServer() CertPaths { return p.pair("apiserver") }

// APIServerKubeletClient is kube-apiserver's client certificate towards kubelets.
func (p Paths) APIServerKubeletClient() CertPaths { return p.pair("apiserver-kubelet-client") }

// APIServerEtcdClient is kube-apiserver's client certificate towards etcd.
func (p Paths) APIServerEtcdClient() CertPaths { return p.pair("apiserver-etcd-client") }

// FrontProxyClient is kube-apiserver's client certificate towards aggregated API servers.
func (p Paths) FrontProxyClient() CertPaths { return p.pair("front-proxy-client") }

// EtcdServer is this member's etcd serving certificate.
func (p Paths) EtcdServer() CertPaths { return p.pair("etcd/server") }

// EtcdPeer is this member's etcd peer certificate.
func (p Paths) EtcdPeer() CertPaths { return p.pair("etcd/peer") }

// EtcdHealthcheckClient is the etcd client certificate of the agent's health probe.
func (p Paths) EtcdHealthcheckClient() CertPaths { return p.pair("etcd/healthcheck-client") }

// KubeletServing is this node's kubelet serving certificate.
func (p Paths) KubeletServing() CertPaths { return p.pair("kubelet") }

// VirtualIPClient is the client certificate the agent writes the virtual IP's Lease with.
func (p Paths) VirtualIPClient() CertPaths { return p.pair("control-plane-vip") }

// Kubeconfig is the kubeconfig file of a component: "controller-manager", "scheduler",
// "kubelet", "kube-proxy" (or "admin", which Basalt does not put on hosts).
func (p Paths) Kubeconfig(component string) string {
	return path.Join(p.withDefaults().KubeconfigDir, component+".conf")
}

// Component is how one host service runs.
type Component struct {
	// Name is the service name: etcd, kube-apiserver, ...
	Name string
	// Args is the argv; Args[0] is the absolute path of the binary.
	Args []string
	// Files are the configuration files the component reads, in a fixed order.
	Files []File
}

// File is a file a component reads.
type File struct {
	// Path is absolute.
	Path string
	// Mode is 0600 for files with key material, 0644 otherwise.
	Mode fs.FileMode
	// Content is the exact file content.
	Content []byte
	// Secret is true when Content holds key material (store it in a Secret, never log it).
	Secret bool
	// Reloaded is true when the component reads the file again by itself when it changes
	// (kube-apiserver's encryption configuration): a change does not restart the component.
	Reloaded bool
}
