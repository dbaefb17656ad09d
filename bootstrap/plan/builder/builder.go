package builder

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path"
	"slices"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/basalt-dev/basalt/bootstrap/artifacts"
	"github.com/basalt-dev/basalt/bootstrap/clusterpki"
	"github.com/basalt-dev/basalt/bootstrap/components"
	"github.com/basalt-dev/basalt/bootstrap/plan"
)

// Role is what a node does in its cluster.
type Role string

// Roles.
const (
	RoleControlPlane Role = "control-plane"
	RoleWorker       Role = "worker"
)

// CNI selects the pod network.
type CNI string

// Pod networks.
const (
	// CNIBridge is Basalt's bridge + host-local + host-gw routes (the default).
	CNIBridge CNI = "bridge"
	// CNINone installs no CNI plugin or configuration and programs no route.
	CNINone CNI = "none"
)

// Service names in a Plan.
const (
	ServiceContainerd        = "containerd"
	ServiceKubelet           = "kubelet"
	ServiceKubeProxy         = "kube-proxy"
	ServiceEtcd              = "etcd"
	ServiceAPIServer         = "kube-apiserver"
	ServiceControllerManager = "kube-controller-manager"
	ServiceScheduler         = "kube-scheduler"
)

// LoadBalancerAPIServer is the name of the node-local load balancer in front of the API servers.
const LoadBalancerAPIServer = "kube-apiserver"

// DefaultLoadBalancerPort is the port of the node-local API server load balancer on loopback.
// It is not 6443 because a control-plane node's own kube-apiserver listens there.
const DefaultLoadBalancerPort = 6444

// Input is everything the Plan of one host depends on.
type Input struct {
	// ClusterName is the Cluster's name.
	ClusterName string
	// Version is the Kubernetes version, e.g. v1.37.2; it must be the version of Artifacts and
	// one of components.SupportedMinors.
	Version string
	// Role is control-plane or worker.
	Role Role
	// Host is the name of the Host object the Plan is for; empty means Node.Name.
	Host string
	// Node is the Kubernetes node the host becomes.
	Node Node
	// Network is the cluster network.
	Network Network
	// Endpoint is spec.controlPlane.endpoint, "host" or "host:port". It is validated but does not
	// change the Plan: components on nodes reach the API servers through the node-local load
	// balancer (APIServers), and the endpoint is a SAN of the certificates already.
	Endpoint string
	// VirtualIP is spec.controlPlane.virtualIP.address: the agent of a control-plane node that
	// runs kube-apiserver campaigns for it (plan.VirtualIP). Empty: none.
	VirtualIP string
	// Ports of the host services; zero fields take the defaults.
	Ports Ports
	// Etcd is this node's etcd member (control-plane nodes).
	Etcd Etcd
	// Encryption configures Secrets encryption at rest (control-plane nodes): the cluster's keys,
	// first one encrypting.
	Encryption components.EncryptionParams
	// Audit configures kube-apiserver's audit log (control-plane nodes).
	Audit components.AuditParams
	// Certificates are the node's certificates and keys (clusterpki.Material.ForNode).
	Certificates clusterpki.NodeCertificates
	// Artifacts is the manifest of the artifact set of Version.
	Artifacts *artifacts.Manifest
	// HostFacts are what the agent reported about the host.
	HostFacts HostFacts
	// Routes send the other nodes' pod ranges to those nodes (host-gw); network.cni bridge only.
	Routes []plan.Route
	// Registries say how containerd reaches image registries (spec.registries of the Cluster, its
	// Secrets read): hosts.toml files that need no containerd restart when they change.
	Registries []components.Registry
	// APIServers are the backends of the node-local load balancer, host:port of every
	// kube-apiserver. Empty on a control-plane node that runs one means its own API server only.
	APIServers []string
	// Paths overrides the host layout (components.DefaultPaths).
	Paths components.Paths
	// Root moves every path of the Plan under this directory (tests; empty on real hosts).
	Root string
}

// Node is the Kubernetes node the host becomes.
type Node struct {
	// Name is the node name (and etcd member name).
	Name string
	// IP is the address components advertise and listen on. A loopback address is allowed for a
	// single-node cluster only (no other etcd member, route or API server).
	IP string
	// PodCIDR is this node's pod range (network.cni bridge), the Node's spec.podCIDR.
	PodCIDR string
}

// Network is the cluster network.
type Network struct {
	PodCIDR     string
	ServiceCIDR string
	// NodeCIDRMaskSize is the prefix length of node pod ranges; 0 means /24 (IPv4), /64 (IPv6).
	NodeCIDRMaskSize int
	// DNSDomain is the cluster DNS domain; empty means cluster.local.
	DNSDomain string
	// ClusterDNSIP is the DNS Service IP; empty means the 10th address of ServiceCIDR.
	ClusterDNSIP string
	// CNI is bridge (default) or none.
	CNI CNI
	// MTU of pod interfaces; 0 leaves the bridge plugin's default.
	MTU int
}

// Ports are the ports of a host's services; zero fields take the defaults.
type Ports struct {
	// APIServer is kube-apiserver's secure port (6443).
	APIServer int
	// LoadBalancer is the node-local API server load balancer's port on loopback (6444).
	LoadBalancer int
	// etcd, kube-controller-manager, kube-scheduler and kubelet health ports.
	components.Ports
}

// Etcd is this node's etcd member.
type Etcd struct {
	// Members is the member list this member started with, itself included: record it when the
	// member is added and pass the same list on every later build, so that membership changes
	// elsewhere never change this member's flags (etcd reads them only on first start anyway).
	// Empty for the member that initialises the cluster (it lists only itself).
	Members []components.EtcdMember
	// Join is true for every member but the first: the manager added it to the cluster (as a
	// learner) before its first start.
	Join bool
	// Learner is true while the manager has not promoted the member. The Plan then runs etcd
	// but not kube-apiserver, kube-controller-manager and kube-scheduler: a learner serves no
	// client requests, so an API server on top of it would never be ready.
	Learner bool
	// QuotaBackendBytes is --quota-backend-bytes; 0 leaves etcd's default.
	QuotaBackendBytes int64
	// Epoch is the restore the member's cluster comes from (components.EtcdParams.Epoch).
	Epoch string
	// Restore seeds the data of the member that starts a restored cluster (Join false, Epoch
	// set) before etcd first starts with it.
	Restore *EtcdRestore
}

// EtcdRestore is where the member that starts a restored cluster takes its data from: a
// snapshot the agent fetches from the manager, or the database of its own former data dir.
type EtcdRestore struct {
	// SnapshotSHA256 and SnapshotSize identify the snapshot in the manager's artifact cache;
	// empty for member data.
	SnapshotSHA256 string
	SnapshotSize   int64
	// FetchSnapshot puts the snapshot file in the Plan; false once the member is restored (the
	// file is then removed from the host; the data dir exists, so the restore never runs again).
	FetchSnapshot bool
	// FromMemberData copies the database of the data dir of DataEpoch instead.
	FromMemberData bool
	DataEpoch      string
}

// EtcdSnapshotDir holds snapshot files fetched for a restore on the host.
const EtcdSnapshotDir = "/var/lib/basalt/etcd-snapshots"

// EtcdRevisionBump is how far a restore moves etcd's revision past the snapshot's (etcdutl
// --bump-revision, with --mark-compacted): every revision a client saw before the restore is
// below the restored cluster's, so watches of kube-apiserver, kubelets and controllers are told
// their revision is compacted and list again, instead of waiting for revisions the restored
// data will reuse for other writes. A billion is etcd's suggestion for Kubernetes.
const EtcdRevisionBump = 1_000_000_000

// HostFacts are what the agent found on the host.
type HostFacts struct {
	// SystemdPID1 and CgroupV2 select the cgroup driver (systemd only with both).
	SystemdPID1 bool
	CgroupV2    bool
	// InContainer is set when the host is a container (e2e hosts).
	InContainer bool
	// ResolvConf is the resolv.conf for pods with dnsPolicy Default, when not /etc/resolv.conf
	// (e.g. /run/systemd/resolve/resolv.conf with systemd-resolved).
	ResolvConf string
}

// FieldError is a Build error; Field is the path of the Input field at fault.
type FieldError struct {
	Field  string
	Detail string
}

func (e *FieldError) Error() string { return "builder: " + e.Field + ": " + e.Detail }

func fieldErr(field, format string, args ...any) error {
	return &FieldError{Field: field, Detail: fmt.Sprintf(format, args...)}
}

// componentFields maps components.ClusterParams field paths to Input field paths.
var componentFields = []struct{ from, to string }{
	{"podCIDR", "network.podCIDR"}, {"serviceCIDR", "network.serviceCIDR"},
	{"nodeCIDRMaskSize", "network.nodeCIDRMaskSize"}, {"dnsDomain", "network.dnsDomain"},
	{"clusterDNSIP", "network.clusterDNSIP"}, {"runtime.mtu", "network.mtu"},
	{"apiServer.port", "ports.apiServer"}, {"apiServer.encryption", "encryption"},
	{"apiServer.audit", "audit"}, {"node.resolvConf", "hostFacts.resolvConf"},
	{"runtime.sandboxImage", `artifacts["image-pause"].image`},
}

// translate turns a components.FieldError into a FieldError naming the Input field.
func translate(err error) error {
	var fe *components.FieldError
	if !errors.As(err, &fe) {
		return err
	}
	field := fe.Field
	for _, m := range componentFields {
		if field == m.from || strings.HasPrefix(field, m.from+".") || strings.HasPrefix(field, m.from+"[") {
			field = m.to + strings.TrimPrefix(field, m.from)
			break
		}
	}
	return &FieldError{Field: field, Detail: fe.Detail}
}

// resolved is a checked Input with everything derived from it.
type resolved struct {
	Input
	cp       bool // control-plane node
	apiUp    bool // kube-apiserver, controller-manager and scheduler run here
	params   components.ClusterParams
	paths    components.Paths
	ports    Ports
	nodeIP   netip.Addr
	loopback string // loopback address of the cluster's family
}

// Build returns the Plan of the host described by in, normalized and validated. See the
// package comment.
func Build(in Input) (*plan.Plan, error) {
	r, err := resolve(in)
	if err != nil {
		return nil, err
	}
	b := &planBuilder{r: r, p: &plan.Plan{Format: plan.FormatVersion, Host: r.Host}}
	steps := []func() error{b.runtime, b.node, b.network}
	if r.cp {
		steps = append(steps, b.etcd)
		if r.apiUp {
			steps = append(steps, b.apiServer, b.controllerManager, b.scheduler, b.virtualIP)
		}
	}
	steps = append(steps, b.loadBalancer, b.images)
	for _, step := range steps {
		if err := step(); err != nil {
			return nil, translate(err)
		}
	}
	b.p.Normalize()
	if err := b.p.Validate(); err != nil {
		// Build's own checks come first; this is a bug in the builder, not in the input.
		return nil, fmt.Errorf("builder: the Plan is invalid: %w", err)
	}
	return b.p, nil
}

func resolve(in Input) (*resolved, error) {
	r := &resolved{Input: in}
	switch in.Role {
	case RoleControlPlane:
		r.cp = true
	case RoleWorker:
	default:
		return nil, fieldErr("role", "%q is neither %s nor %s", in.Role, RoleControlPlane, RoleWorker)
	}
	if r.Host == "" {
		r.Host = in.Node.Name
	}
	if errs := validation.IsDNS1123Subdomain(r.Host); len(errs) > 0 {
		return nil, fieldErr("host", "%q: %s", r.Host, strings.Join(errs, "; "))
	}
	if err := r.checkVersion(); err != nil {
		return nil, err
	}
	switch r.Network.CNI {
	case "":
		r.Network.CNI = CNIBridge
	case CNIBridge, CNINone:
	default:
		return nil, fieldErr("network.cni", "%q is neither %s nor %s", r.Network.CNI, CNIBridge, CNINone)
	}
	if err := r.resolvePorts(); err != nil {
		return nil, err
	}
	r.paths = in.Paths.UnderRoot(in.Root)
	if in.Root != "" && (!path.IsAbs(in.Root) || path.Clean(in.Root) != in.Root) {
		return nil, fieldErr("root", "%q is not a clean absolute path", in.Root)
	}
	if r.Etcd.Learner && !r.Etcd.Join {
		return nil, fieldErr("etcd.learner", "only a joining member (etcd.join) can be a learner")
	}
	r.apiUp = r.cp && !r.Etcd.Learner

	r.params = components.ClusterParams{
		ClusterName: in.ClusterName, Version: in.Version,
		PodCIDR: in.Network.PodCIDR, ServiceCIDR: in.Network.ServiceCIDR,
		NodeCIDRMaskSize: in.Network.NodeCIDRMaskSize, DNSDomain: in.Network.DNSDomain,
		ClusterDNSIP: in.Network.ClusterDNSIP, Endpoint: in.Endpoint,
		Node: components.NodeParams{Name: in.Node.Name, IP: in.Node.IP, PodCIDR: in.Node.PodCIDR,
			CgroupDriver: components.CgroupDriverFor(in.HostFacts.SystemdPID1, in.HostFacts.CgroupV2),
			CgroupV2:     in.HostFacts.CgroupV2,
			InContainer:  in.HostFacts.InContainer, ResolvConf: in.HostFacts.ResolvConf},
		APIServer: components.APIServerParams{Port: r.ports.APIServer, Encryption: in.Encryption, Audit: in.Audit},
		Runtime:   components.RuntimeParams{MTU: in.Network.MTU, Registries: in.Registries},
		Ports:     r.ports.Ports,
		Paths:     r.paths,
	}
	if err := r.params.Validate(); err != nil {
		return nil, translate(err)
	}
	r.nodeIP = netip.MustParseAddr(in.Node.IP).Unmap() // validated above
	r.loopback = "127.0.0.1"
	if r.nodeIP.Is6() {
		r.loopback = "::1"
	}
	if r.cp {
		if err := r.resolveEtcd(); err != nil {
			return nil, err
		}
	}
	if err := r.resolveBackends(); err != nil {
		return nil, err
	}
	if err := r.checkRoutes(); err != nil {
		return nil, err
	}
	if r.nodeIP.IsLoopback() {
		if err := r.checkSingleNode(); err != nil {
			return nil, err
		}
	}
	return r, r.checkCertificates()
}

func (r *resolved) checkVersion() error {
	if _, err := components.ParseVersion(r.Version); err != nil {
		return translate(err)
	}
	if r.Artifacts == nil {
		return fieldErr("artifacts", "the manifest of the artifact set of %s is required", r.Version)
	}
	if r.Artifacts.KubernetesVersion != r.Version {
		return fieldErr("version", "%q is not the version of the artifact set (%s)", r.Version, r.Artifacts.KubernetesVersion)
	}
	return nil
}

func (r *resolved) resolvePorts() error {
	r.ports = r.Ports
	r.ports.Ports = r.ports.WithDefaults()
	if r.ports.APIServer == 0 {
		r.ports.APIServer = components.DefaultAPIServerPort
	}
	if r.ports.LoadBalancer == 0 {
		r.ports.LoadBalancer = DefaultLoadBalancerPort
	}
	lb := r.ports.LoadBalancer
	if lb < 1 || lb > 65535 {
		return fieldErr("ports.loadBalancer", "%d is not a TCP port", lb)
	}
	p := r.ports
	for _, other := range []int{p.APIServer, p.EtcdClient, p.EtcdPeer, p.EtcdMetrics, p.ControllerManager, p.Scheduler, p.KubeletHealthz} {
		if lb == other {
			return fieldErr("ports.loadBalancer", "%d is also the port of another service of the host", lb)
		}
	}
	return nil // the other ports are checked by components
}

// resolveEtcd fills in the member list of the initialising member and sorts it, so the order
// the caller lists members in does not matter.
func (r *resolved) resolveEtcd() error {
	self := components.EtcdPeerURL(r.nodeIP.String(), r.ports.EtcdPeer)
	members := slices.Clone(r.Etcd.Members)
	if len(members) == 0 {
		if r.Etcd.Join {
			return fieldErr("etcd.members", "a joining member needs the member list it was added with")
		}
		members = []components.EtcdMember{{Name: r.Node.Name, PeerURL: self}}
	}
	slices.SortFunc(members, func(a, b components.EtcdMember) int { return strings.Compare(a.Name, b.Name) })
	r.params.Etcd = components.EtcdParams{Members: members, Join: r.Etcd.Join, QuotaBackendBytes: r.Etcd.QuotaBackendBytes, Epoch: r.Etcd.Epoch}
	return r.params.Validate()
}

// resolveBackends checks and defaults the API server backends of the node-local load balancer.
func (r *resolved) resolveBackends() error {
	if len(r.APIServers) == 0 {
		if !r.apiUp {
			return fieldErr("apiServers", "at least one kube-apiserver (host:port) is required for the node-local load balancer")
		}
		r.APIServers = []string{net.JoinHostPort(r.nodeIP.String(), strconv.Itoa(r.ports.APIServer))}
	}
	for i, b := range r.APIServers {
		host, port, err := net.SplitHostPort(b)
		n, perr := strconv.Atoi(port)
		if err != nil || perr != nil || n < 1 || n > 65535 {
			return fieldErr(fmt.Sprintf("apiServers[%d]", i), "%q is not host:port", b)
		}
		if _, err := netip.ParseAddr(host); err != nil && len(validation.IsDNS1123Subdomain(host)) > 0 {
			return fieldErr(fmt.Sprintf("apiServers[%d]", i), "%q: host is neither an IP nor a DNS name", b)
		}
	}
	return nil
}

// checkRoutes accepts routes to other nodes' pod ranges inside the cluster pod CIDR.
func (r *resolved) checkRoutes() error {
	if len(r.Routes) > 0 && r.Network.CNI != CNIBridge {
		return fieldErr("routes", "only network.cni %s programs routes", CNIBridge)
	}
	cluster := netip.MustParsePrefix(r.Network.PodCIDR) // validated by components
	own, _ := netip.ParsePrefix(r.Node.PodCIDR)
	for i, rt := range r.Routes {
		field := fmt.Sprintf("routes[%d]", i)
		dst, err := netip.ParsePrefix(rt.Destination)
		if err != nil || dst != dst.Masked() {
			return fieldErr(field+".destination", "%q is not a CIDR without host bits", rt.Destination)
		}
		if dst.Bits() < cluster.Bits() || !cluster.Contains(dst.Addr()) {
			return fieldErr(field+".destination", "%s is not inside network.podCIDR %s", dst, cluster)
		}
		if own.IsValid() && own.Overlaps(dst) {
			return fieldErr(field+".destination", "%s overlaps this node's pod range %s", dst, own)
		}
		gw, err := netip.ParseAddr(rt.Gateway)
		if err != nil || gw.Is4() != r.nodeIP.Is4() || gw == r.nodeIP || !gw.IsGlobalUnicast() {
			return fieldErr(field+".gateway", "%q is not another node's IP of the cluster's family", rt.Gateway)
		}
	}
	return nil
}

// checkSingleNode refuses a loopback node IP when another node is involved.
func (r *resolved) checkSingleNode() error {
	bad := func(what string) error {
		return fieldErr("node.ip", "%s is a loopback address, allowed only for a single-node cluster, but %s", r.Node.IP, what)
	}
	switch {
	case !r.cp:
		return bad("the node is a worker")
	case r.Etcd.Join:
		return bad("etcd.join is set")
	case len(r.Routes) > 0:
		return bad("routes are given")
	}
	for _, b := range r.APIServers {
		if host, _, _ := net.SplitHostPort(b); host != r.Node.IP {
			return bad("apiServers lists " + b)
		}
	}
	return nil
}

// planBuilder adds the parts of a Plan.
type planBuilder struct {
	r *resolved
	p *plan.Plan
}

// artifact adds the artifact name of the set at dst and returns dst.
func (b *planBuilder) artifact(name, dst string, kind artifacts.Kind) (string, error) {
	field := fmt.Sprintf("artifacts[%q]", name)
	a, ok := b.r.Artifacts.Get(name)
	switch {
	case !ok:
		return "", fieldErr(field, "missing from the artifact set of %s", b.r.Artifacts.KubernetesVersion)
	case !artifacts.IsSHA256(a.SHA256):
		return "", fieldErr(field+".sha256", "%q is not 64 lowercase hex digits", a.SHA256)
	case a.Size <= 0:
		return "", fieldErr(field+".size", "%d: the size is required", a.Size)
	case a.Kind != kind:
		return "", fieldErr(field+".kind", "%q, want %q", a.Kind, kind)
	}
	mode := uint32(0o755)
	if kind == artifacts.KindImage {
		mode = 0o644
	}
	b.p.Artifacts = append(b.p.Artifacts, plan.Artifact{Name: name, SHA256: a.SHA256, Size: a.Size, Path: dst, Mode: mode})
	return dst, nil
}

// binary adds a binary of the set to the bin dir and returns its path.
func (b *planBuilder) binary(name string) (string, error) {
	return b.artifact(name, path.Join(b.r.paths.BinDir, name), artifacts.KindBinary)
}

// optionalBinary adds a tool (crictl, etcdctl) when the set has it.
func (b *planBuilder) optionalBinary(name string) error {
	if _, ok := b.r.Artifacts.Get(name); !ok {
		return nil
	}
	_, err := b.binary(name)
	return err
}

// file adds a file, once, and returns its path.
func (b *planBuilder) file(p string, mode uint32, content []byte) string {
	for _, f := range b.p.Files {
		if f.Path == p {
			mustBeSame(f, mode, content)
			return p
		}
	}
	b.p.Files = append(b.p.Files, plan.File{Path: p, Mode: mode, Content: content})
	return p
}

// componentFiles adds the files of a rendered component and returns the paths whose change
// restarts it (all but the files it reloads by itself).
func (b *planBuilder) componentFiles(c components.Component) []string {
	var paths []string
	for _, f := range c.Files {
		p := b.file(f.Path, uint32(f.Mode.Perm()), f.Content)
		if !f.Reloaded {
			paths = append(paths, p)
		}
	}
	return paths
}

func (b *planBuilder) service(c components.Component, after []string, reads []string, probe *plan.Probe) {
	b.p.Services = append(b.p.Services, plan.Service{
		Name: c.Name, Argv: c.Args, After: after, Reads: reads, Probe: probe, Restart: plan.RestartAlways,
	})
}

// url is scheme://loopback:port/path.
func (b *planBuilder) url(scheme string, port int, p string) string {
	return scheme + "://" + joinHostPort(b.r.loopback, port) + p
}

func joinHostPort(host string, port int) string { return net.JoinHostPort(host, strconv.Itoa(port)) }
