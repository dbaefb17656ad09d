package builder

import (
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/basalt-dev/basalt/bootstrap/artifacts"
	"github.com/basalt-dev/basalt/bootstrap/components"
	"github.com/basalt-dev/basalt/bootstrap/kubeconfig"
	"github.com/basalt-dev/basalt/bootstrap/pki"
	"github.com/basalt-dev/basalt/bootstrap/plan"
)

// Modes of the files the Plan writes: as kubeadm, certificates are world-readable and keys,
// kubeconfigs (which embed a key) and the encryption configuration are root-only.
const (
	modePublic  = 0o644
	modePrivate = 0o600
)

// CNIPlugins are the CNI plugins a bridge node gets (artifact names cni-<plugin>).
var CNIPlugins = []string{"bridge", "host-local", "loopback", "portmap"}

// runtime adds containerd with its shim, runc and ctr. Its probe asks containerd for its version
// over its socket with ctr, which checks the gRPC API answers, not just that a socket exists.
func (b *planBuilder) runtime() error {
	pause, ok := b.r.Artifacts.Get("image-pause")
	if !ok {
		return fieldErr(`artifacts["image-pause"]`, "missing from the artifact set of %s (the sandbox image; no registry is reachable)", b.r.Version)
	}
	if pause.Image == "" {
		return fieldErr(`artifacts["image-pause"].image`, "required: the sandbox image reference containerd pins")
	}
	b.r.params.Runtime.SandboxImage = pause.Image
	c, err := components.Containerd(b.r.params)
	if err != nil {
		return err
	}
	bin, err := b.binary("containerd")
	if err != nil {
		return err
	}
	// containerd runs the shim and runc by absolute path for each new container; replacing them
	// needs no restart, so the service does not read them.
	var shim string
	for _, name := range []string{"containerd-shim-runc-v2", "runc"} {
		p, err := b.binary(name)
		if err != nil {
			return err
		}
		if name == "containerd-shim-runc-v2" {
			shim = p
		}
	}
	ctr, err := b.binary("ctr")
	if err != nil {
		return err
	}
	if err := b.optionalBinary("crictl"); err != nil {
		return err
	}
	reads := append([]string{bin}, b.componentFiles(c)...)
	// containerd reads hosts.toml at each pull: not among the files whose change restarts it.
	regs, err := components.Registries(b.r.params)
	if err != nil {
		return err
	}
	for _, f := range regs {
		b.file(f.Path, uint32(f.Mode.Perm()), f.Content)
	}
	b.service(c, nil, reads, &plan.Probe{Exec: &plan.ExecProbe{
		Argv: []string{ctr, "--address", b.r.paths.ContainerdSocket, "version"}}})
	// Containers outlive containerd (their shims keep them running), and so do their images,
	// snapshots and mounts: a host that leaves the cluster keeps none of them.
	svc := &b.p.Services[len(b.p.Services)-1]
	svc.StateDirs = []string{b.r.paths.ContainerdRoot, b.r.paths.ContainerdState, CNIStateDir}
	if b.r.Network.CNI == CNIBridge {
		// The bridge plugin makes it for the pods; it goes with containerd (docs/lifecycle.md).
		bridge := b.r.params.Runtime.BridgeName
		if bridge == "" {
			bridge = components.DefaultBridgeName
		}
		svc.Links = []string{bridge}
	}
	svc.Leaves = []string{shim}
	return nil
}

// Directories of node state outside the configurable paths: the kubelet's root (pod volumes,
// its checkpoints) and the CNI plugins' IP allocations.
const (
	KubeletRootDir = "/var/lib/kubelet"
	CNIStateDir    = "/var/lib/cni"
	// LocalVolumesDir holds the volumes of the local storage add-on (docs/addons.md): on the
	// node's disk, so they survive reboots, and a state dir of the kubelet, so they are wiped
	// with the node when its Host is released.
	LocalVolumesDir = "/var/lib/basalt-volumes"
)

// node adds the kubelet and kube-proxy, both reaching the API servers through the node-local
// load balancer.
func (b *planBuilder) node() error {
	r, certs := b.r, b.r.Certificates
	lb := "https://" + joinHostPort(r.loopback, r.ports.LoadBalancer)
	kubelet, err := components.Kubelet(r.params)
	if err != nil {
		return err
	}
	bin, err := b.binary("kubelet")
	if err != nil {
		return err
	}
	kc, err := kubeconfig.Kubelet(r.Node.Name, b.kubeconfigParams(lb, certs.KubeletClient))
	if err != nil {
		return fieldErr("certificates.kubeletClient", "%v", err)
	}
	reads := append([]string{bin, b.file(r.paths.Kubeconfig("kubelet"), modePrivate, kc),
		b.file(r.paths.CACert(), modePublic, certs.CA)}, b.componentFiles(kubelet)...)
	// The kubelet is restarted for a new serving certificate too, so no version-dependent reload
	// behaviour matters.
	reads = append(reads, b.pair(r.paths.KubeletServing(), certs.KubeletServing)...)
	b.service(kubelet, []string{ServiceContainerd}, reads, &plan.Probe{HTTP: &plan.HTTPProbe{
		URL: b.url("http", r.ports.KubeletHealthz, "/healthz")}})
	b.p.Services[len(b.p.Services)-1].StateDirs = []string{KubeletRootDir, LocalVolumesDir}

	proxy, err := components.KubeProxy(r.params)
	if err != nil {
		return err
	}
	if bin, err = b.binary("kube-proxy"); err != nil {
		return err
	}
	if kc, err = kubeconfig.KubeProxy(b.kubeconfigParams(lb, certs.KubeProxy)); err != nil {
		return fieldErr("certificates.kubeProxy", "%v", err)
	}
	reads = append([]string{bin, b.file(r.paths.Kubeconfig("kube-proxy"), modePrivate, kc)}, b.componentFiles(proxy)...)
	// kube-proxy's health server listens on 0.0.0.0:10256; /livez is its liveness (its /healthz
	// also turns 503 while the node is being deleted, for external load balancers).
	b.service(proxy, nil, reads, &plan.Probe{HTTP: &plan.HTTPProbe{URL: "http://127.0.0.1:10256/livez"}})
	return nil
}

// network adds the CNI plugins, the bridge configuration and the routes (network.cni bridge).
func (b *planBuilder) network() error {
	if b.r.Network.CNI != CNIBridge {
		return nil
	}
	conf, err := components.CNI(b.r.params)
	if err != nil {
		return err
	}
	b.file(conf.Path, uint32(conf.Mode.Perm()), conf.Content)
	for _, p := range CNIPlugins {
		if _, err := b.artifact("cni-"+p, path.Join(b.r.paths.CNIBinDir, p), artifacts.KindBinary); err != nil {
			return err
		}
	}
	b.p.Routes = slices.Clone(b.r.Routes)
	return nil
}

// etcd adds the etcd member. Its probe is GET /health?serializable=true&exclude=NOSPACE on the
// client port with the health-check client certificate: it verifies TLS and the member's local
// health without needing quorum, so losing other members does not mark every member unhealthy;
// and a NOSPACE alarm (the database at its quota: the member serves reads and deletes) does not
// mark every member down either, which would hide the cluster from the manager's recovery and
// count every control-plane Machine as unhealthy; EtcdReady reports the alarm instead.
func (b *planBuilder) etcd() error {
	r, certs := b.r, b.r.Certificates
	c, err := components.Etcd(r.params)
	if err != nil {
		return err
	}
	bin, err := b.binary("etcd")
	if err != nil {
		return err
	}
	if err := b.optionalBinary("etcdctl"); err != nil {
		return err
	}
	ca := b.file(r.paths.EtcdCACert(), modePublic, certs.EtcdCA)
	reads := []string{bin, ca}
	reads = append(reads, b.pair(r.paths.EtcdServer(), certs.EtcdServer)...)
	reads = append(reads, b.pair(r.paths.EtcdPeer(), certs.EtcdPeer)...)
	probe := b.pair(r.paths.EtcdHealthcheckClient(), certs.EtcdHealthcheckClient)
	b.service(c, nil, reads, &plan.Probe{HTTP: &plan.HTTPProbe{
		URL:    b.url("https", r.ports.EtcdClient, "/health?serializable=true&exclude=NOSPACE"),
		CAFile: ca, ClientCertFile: probe[0], ClientKeyFile: probe[1]}})
	// The member's data goes with it: a host that leaves the cluster must not start an old member
	// when it joins another one.
	svc := &b.p.Services[len(b.p.Services)-1]
	svc.StateDirs = []string{components.EtcdDataDirOf(r.paths.EtcdDataDir, r.Etcd.Epoch)}
	if r.Etcd.Restore != nil {
		in, err := b.etcdRestore(svc.StateDirs[0])
		if err != nil {
			return err
		}
		svc.Init = in
	}
	return nil
}

// etcdRestore is the init command that writes the restored member's data dir with etcdutl
// (docs/restore.md): from the snapshot fetched from the manager (its sha256 trailer checked by
// etcdutl too), or from the database of the member's former data dir (no trailer there:
// --skip-hash-check, as etcd documents for a copied data dir). The member is alone in the new
// cluster, with the epoch's cluster token; the revision is bumped past every revision clients
// have seen.
func (b *planBuilder) etcdRestore(dataDir string) (*plan.Init, error) {
	r, rs := b.r, b.r.Etcd.Restore
	switch {
	case r.Etcd.Join || r.Etcd.Epoch == "":
		return nil, fieldErr("etcd.restore", "only the member that starts a restored cluster (etcd.join false, etcd.epoch set) is restored")
	case rs.FromMemberData == artifacts.IsSHA256(rs.SnapshotSHA256):
		return nil, fieldErr("etcd.restore", "exactly one of a snapshot (sha256) and member data is the source")
	case rs.FromMemberData && rs.DataEpoch == r.Etcd.Epoch:
		return nil, fieldErr("etcd.restore.dataEpoch", "%q: the member data must come from an earlier epoch than the restore's", rs.DataEpoch)
	}
	util, err := b.artifact("etcdutl", path.Join(r.paths.BinDir, "etcdutl"), artifacts.KindBinary)
	if err != nil {
		return nil, fieldErr("etcd.restore", "the artifact set has no etcdutl, which restores etcd data; rebuild it with hack/build-artifacts.sh: %v", err)
	}
	self := r.params.Etcd.Members[0]
	src := path.Join(components.EtcdDataDirOf(r.paths.EtcdDataDir, rs.DataEpoch), "member", "snap", "db")
	if !rs.FromMemberData {
		src = path.Join(EtcdSnapshotDir, r.Etcd.Epoch+".db")
		if rs.FetchSnapshot {
			b.p.Artifacts = append(b.p.Artifacts, plan.Artifact{Name: plan.PrivateArtifactPrefix + r.Etcd.Epoch, SHA256: rs.SnapshotSHA256, Size: rs.SnapshotSize, Path: src, Mode: 0o600})
		}
	}
	argv := EtcdRestoreArgv(util, src, rs.FromMemberData, dataDir+plan.InitSuffix, self, components.EtcdClusterToken(r.ClusterName, r.Etcd.Epoch))
	return &plan.Init{Argv: argv, Creates: dataDir}, nil
}

// apiServer adds kube-apiserver, after etcd; probe GET /readyz (anonymous is allowed there).
func (b *planBuilder) apiServer() error {
	r, certs, pk := b.r, b.r.Certificates, b.r.paths
	c, err := components.APIServer(r.params)
	if err != nil {
		return err
	}
	bin, err := b.binary("kube-apiserver")
	if err != nil {
		return err
	}
	saPub, err := pki.ServiceAccountPublicKey(certs.ServiceAccount.Key)
	if err != nil {
		return fieldErr("certificates.serviceAccount.key", "%v", err)
	}
	reads := []string{bin,
		b.file(pk.CACert(), modePublic, certs.CA),
		b.file(pk.EtcdCACert(), modePublic, certs.EtcdCA),
		b.file(pk.FrontProxyCACert(), modePublic, certs.FrontProxyCA),
		b.file(pk.ServiceAccountKey(), modePrivate, certs.ServiceAccount.Key),
		b.file(pk.ServiceAccountPub(), modePublic, saPub),
	}
	reads = append(reads, b.pair(pk.APIServer(), certs.APIServer)...)
	reads = append(reads, b.pair(pk.APIServerKubeletClient(), certs.APIServerKubeletClient)...)
	reads = append(reads, b.pair(pk.APIServerEtcdClient(), certs.APIServerEtcdClient)...)
	reads = append(reads, b.pair(pk.FrontProxyClient(), certs.FrontProxyClient)...)
	reads = append(reads, b.componentFiles(c)...)
	b.service(c, []string{ServiceEtcd}, reads, &plan.Probe{HTTP: &plan.HTTPProbe{
		URL: b.url("https", r.ports.APIServer, "/readyz"), CAFile: pk.CACert()}})
	return nil
}

// localAPIServer is the URL of this node's own kube-apiserver, which the controller-manager and
// the scheduler use (as kubeadm does): they run next to it and leader election covers its loss.
func (b *planBuilder) localAPIServer() string {
	return "https://" + joinHostPort(b.r.loopback, b.r.ports.APIServer)
}

// controllerManager adds kube-controller-manager, after kube-apiserver.
func (b *planBuilder) controllerManager() error {
	r, certs, pk := b.r, b.r.Certificates, b.r.paths
	c, err := components.ControllerManager(r.params)
	if err != nil {
		return err
	}
	bin, err := b.binary("kube-controller-manager")
	if err != nil {
		return err
	}
	kc, err := kubeconfig.ControllerManager(b.kubeconfigParams(b.localAPIServer(), certs.ControllerManager))
	if err != nil {
		return fieldErr("certificates.controllerManager", "%v", err)
	}
	reads := []string{bin, b.file(pk.Kubeconfig("controller-manager"), modePrivate, kc),
		b.file(pk.CACert(), modePublic, certs.CA), b.file(pk.FrontProxyCACert(), modePublic, certs.FrontProxyCA),
		b.file(pk.ServiceAccountKey(), modePrivate, certs.ServiceAccount.Key)}
	reads = append(reads, b.pair(pk.ControllerManagerServing(), certs.ControllerManagerServing)...)
	reads = append(reads, b.componentFiles(c)...)
	b.service(c, []string{ServiceAPIServer}, reads, &plan.Probe{HTTP: &plan.HTTPProbe{
		URL: b.url("https", r.ports.ControllerManager, "/healthz"), CAFile: pk.CACert()}})
	return nil
}

// scheduler adds kube-scheduler, after kube-apiserver.
func (b *planBuilder) scheduler() error {
	r, certs, pk := b.r, b.r.Certificates, b.r.paths
	c, err := components.Scheduler(r.params)
	if err != nil {
		return err
	}
	bin, err := b.binary("kube-scheduler")
	if err != nil {
		return err
	}
	kc, err := kubeconfig.Scheduler(b.kubeconfigParams(b.localAPIServer(), certs.Scheduler))
	if err != nil {
		return fieldErr("certificates.scheduler", "%v", err)
	}
	reads := []string{bin, b.file(pk.Kubeconfig("scheduler"), modePrivate, kc)}
	reads = append(reads, b.pair(pk.SchedulerServing(), certs.SchedulerServing)...)
	reads = append(reads, b.componentFiles(c)...)
	b.service(c, []string{ServiceAPIServer}, reads, &plan.Probe{HTTP: &plan.HTTPProbe{
		URL: b.url("https", r.ports.Scheduler, "/healthz"), CAFile: pk.CACert()}})
	b.file(pk.CACert(), modePublic, certs.CA) // the probe's CA
	return nil
}

// virtualIP has the agent campaign for the control-plane virtual IP: it holds the address while
// it holds the Lease (written through the node-local load balancer) and its own kube-apiserver
// is ready.
func (b *planBuilder) virtualIP() error {
	r, certs, pk := b.r, b.r.Certificates, b.r.paths
	if r.VirtualIP == "" {
		return nil
	}
	if len(certs.VirtualIP.Cert) == 0 || len(certs.VirtualIP.Key) == 0 {
		return fieldErr("certificates.virtualIP", "required with virtualIP")
	}
	at := pk.VirtualIPClient()
	b.pair(at, certs.VirtualIP)
	b.file(pk.CACert(), modePublic, certs.CA)
	b.p.VirtualIP = &plan.VirtualIP{
		Address: r.VirtualIP, NodeAddress: r.nodeIP.String(), Identity: r.Node.Name,
		Server:         "https://" + joinHostPort(r.loopback, r.ports.LoadBalancer),
		LeaseNamespace: components.VirtualIPLeaseNamespace, LeaseName: components.VirtualIPLeaseName,
		Health: b.url("https", r.ports.APIServer, "/readyz"),
		CAFile: pk.CACert(), CertFile: at.Cert, KeyFile: at.Key,
		StepDownFor: []string{ServiceEtcd, ServiceAPIServer},
	}
	if err := b.p.VirtualIP.Validate(); err != nil {
		return fieldErr("virtualIP", "%v", err)
	}
	return nil
}

// loadBalancer adds the node-local load balancer in front of every kube-apiserver.
func (b *planBuilder) loadBalancer() error {
	b.p.LoadBalancers = []plan.LoadBalancer{{
		Name:     LoadBalancerAPIServer,
		Listen:   joinHostPort(b.r.loopback, b.r.ports.LoadBalancer),
		Backends: slices.Clone(b.r.APIServers),
	}}
	return nil
}

// images places every image of the artifact set (the pause image and any preloaded one) and
// has the agent import them into containerd once it is healthy.
func (b *planBuilder) images() error {
	var names []string
	for _, a := range b.r.Artifacts.Artifacts {
		if a.Kind == artifacts.KindImage {
			names = append(names, a.Name)
		}
	}
	slices.Sort(names)
	for _, name := range names {
		dst := path.Join(b.r.paths.ImageDir, strings.TrimPrefix(name, "image-")+".tar")
		if _, err := b.artifact(name, dst, artifacts.KindImage); err != nil {
			return err
		}
		b.p.Images = append(b.p.Images, name)
	}
	b.p.ImageRuntime = ServiceContainerd
	return nil
}

// pair adds a certificate (public) and its key (private) and returns both paths.
func (b *planBuilder) pair(at components.CertPaths, kp pki.KeyPair) []string {
	return []string{b.file(at.Cert, modePublic, kp.Cert), b.file(at.Key, modePrivate, kp.Key)}
}

func (b *planBuilder) kubeconfigParams(server string, kp pki.KeyPair) kubeconfig.Params {
	return kubeconfig.Params{ClusterName: b.r.ClusterName, Server: server, CA: b.r.Certificates.CA,
		ClientCert: kp.Cert, ClientKey: kp.Key}
}

// mustBeSame guards the file helper: two parts of the builder writing one path must agree.
func mustBeSame(f plan.File, mode uint32, content []byte) {
	if f.Mode != mode || string(f.Content) != string(content) {
		panic(fmt.Sprintf("builder: %s is written twice with different content", f.Path))
	}
}

// EtcdRestoreArgv is the etcdutl command that writes, into the new folder dataDir, the data of a
// one-member cluster (self, with the cluster token) from src: a snapshot file (its sha256
// trailer checked) or, fromMemberData, a member's backend database (member/snap/db, no trailer),
// with the revision bumped by EtcdRevisionBump and marked compacted.
func EtcdRestoreArgv(etcdutl, src string, fromMemberData bool, dataDir string, self components.EtcdMember, token string) []string {
	argv := []string{etcdutl, "snapshot", "restore", src}
	if fromMemberData {
		argv = append(argv, "--skip-hash-check")
	}
	return append(argv,
		"--data-dir", dataDir,
		"--name", self.Name,
		"--initial-cluster", self.Name+"="+self.PeerURL,
		"--initial-advertise-peer-urls", self.PeerURL,
		"--initial-cluster-token", token,
		"--bump-revision", strconv.Itoa(EtcdRevisionBump), "--mark-compacted")
}
