package components

import (
	"path"
	"strconv"
)

// ControllerManager renders kube-controller-manager: leader election on, one service account
// per controller, node pod ranges allocated from PodCIDR with the node mask size, the
// service-account signing key and root CA for token controllers, secure port on loopback only
// with the serving certificate Basalt issues (so the agent probes /healthz there over verified
// TLS), profiling off. The CSR signer gets the cluster CA key only
// when ControllerManager.CSRSigning is set.
func ControllerManager(p ClusterParams) (Component, error) {
	r, err := p.resolve()
	if err != nil {
		return Component{}, err
	}
	pk := r.Paths
	kubeconfig := pk.Kubeconfig("controller-manager")
	a := newArgv(pk.BinDir, "kube-controller-manager")
	a.flag("kubeconfig", kubeconfig)
	a.flag("authentication-kubeconfig", kubeconfig)
	a.flag("authorization-kubeconfig", kubeconfig)
	a.flag("bind-address", loopbackOf(r))
	a.flag("secure-port", strconv.Itoa(r.Ports.ControllerManager))
	a.flag("tls-cert-file", pk.ControllerManagerServing().Cert)
	a.flag("tls-private-key-file", pk.ControllerManagerServing().Key)
	a.flag("leader-elect", "true")
	a.flag("use-service-account-credentials", "true")
	a.flag("cluster-name", r.ClusterName)
	a.flag("client-ca-file", pk.CACert())
	a.flag("requestheader-client-ca-file", pk.FrontProxyCACert())
	a.flag("root-ca-file", pk.CACert())
	a.flag("service-account-private-key-file", pk.ServiceAccountKey())
	a.flag("service-cluster-ip-range", r.serviceCIDR.String())
	a.flag("allocate-node-cidrs", "true")
	a.flag("cluster-cidr", r.podCIDR.String())
	a.flag("node-cidr-mask-size", strconv.Itoa(r.nodeMaskSize))
	if r.ControllerManager.CSRSigning {
		a.flag("cluster-signing-cert-file", pk.CACert())
		a.flag("cluster-signing-key-file", pk.CAKey())
	}
	a.flag("profiling", "false")
	return Component{Name: "kube-controller-manager", Args: a}, nil
}

type schedulerConfiguration struct {
	typeMeta         `yaml:",inline"`
	ClientConnection struct {
		Kubeconfig string `yaml:"kubeconfig"`
	} `yaml:"clientConnection"`
	LeaderElection struct {
		LeaderElect bool `yaml:"leaderElect"`
	} `yaml:"leaderElection"`
	EnableProfiling           bool `yaml:"enableProfiling"`
	EnableContentionProfiling bool `yaml:"enableContentionProfiling"`
}

// Scheduler renders kube-scheduler with a KubeSchedulerConfiguration file (its --kubeconfig and
// --profiling flags are deprecated): leader election on, profiling off, secure port on loopback
// with the serving certificate Basalt issues.
func Scheduler(p ClusterParams) (Component, error) {
	r, err := p.resolve()
	if err != nil {
		return Component{}, err
	}
	pk := r.Paths
	kubeconfig := pk.Kubeconfig("scheduler")
	c := schedulerConfiguration{typeMeta: typeMeta{APIVersion: "kubescheduler.config.k8s.io/v1", Kind: "KubeSchedulerConfiguration"}}
	c.ClientConnection.Kubeconfig = kubeconfig
	c.LeaderElection.LeaderElect = true
	content, err := marshalYAML(c)
	if err != nil {
		return Component{}, err
	}
	file := File{Path: path.Join(pk.ConfigDir, "kube-scheduler", "config.yaml"), Mode: 0o644, Content: content}
	a := newArgv(pk.BinDir, "kube-scheduler")
	a.flag("config", file.Path)
	a.flag("authentication-kubeconfig", kubeconfig)
	a.flag("authorization-kubeconfig", kubeconfig)
	a.flag("bind-address", loopbackOf(r))
	a.flag("secure-port", strconv.Itoa(r.Ports.Scheduler))
	a.flag("tls-cert-file", pk.SchedulerServing().Cert)
	a.flag("tls-private-key-file", pk.SchedulerServing().Key)
	return Component{Name: "kube-scheduler", Args: a, Files: []File{file}}, nil
}

// loopbackOf is the loopback address of the cluster's IP family.
func loopbackOf(r *resolved) string {
	if r.nodeIP.Is6() {
		return "::1"
	}
	return "127.0.0.1"
}
