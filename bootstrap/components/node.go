package components

import "path"

type kubeletConfiguration struct {
	typeMeta       `yaml:",inline"`
	Authentication struct {
		Anonymous struct {
			Enabled bool `yaml:"enabled"`
		} `yaml:"anonymous"`
		Webhook struct {
			Enabled bool `yaml:"enabled"`
		} `yaml:"webhook"`
		X509 struct {
			ClientCAFile string `yaml:"clientCAFile"`
		} `yaml:"x509"`
	} `yaml:"authentication"`
	Authorization struct {
		Mode string `yaml:"mode"`
	} `yaml:"authorization"`
	TLSCertFile                 string            `yaml:"tlsCertFile"`
	TLSPrivateKeyFile           string            `yaml:"tlsPrivateKeyFile"`
	TLSMinVersion               string            `yaml:"tlsMinVersion"`
	RotateCertificates          bool              `yaml:"rotateCertificates"`
	ServerTLSBootstrap          bool              `yaml:"serverTLSBootstrap"`
	ReadOnlyPort                int               `yaml:"readOnlyPort"`
	CgroupDriver                CgroupDriver      `yaml:"cgroupDriver"`
	FailCgroupV1                bool              `yaml:"failCgroupV1"`
	ContainerRuntimeEndpoint    string            `yaml:"containerRuntimeEndpoint"`
	ClusterDomain               string            `yaml:"clusterDomain"`
	ClusterDNS                  []string          `yaml:"clusterDNS"`
	ResolvConf                  string            `yaml:"resolvConf,omitempty"`
	HealthzBindAddress          string            `yaml:"healthzBindAddress"`
	HealthzPort                 int               `yaml:"healthzPort"`
	FailSwapOn                  *bool             `yaml:"failSwapOn,omitempty"`
	ImageGCHighThresholdPercent *int              `yaml:"imageGCHighThresholdPercent,omitempty"`
	EvictionHard                map[string]string `yaml:"evictionHard,omitempty"`
}

// Kubelet renders the kubelet of any host. Its KubeletConfiguration: no anonymous access,
// webhook authentication and authorization (the API server decides who may use the kubelet
// API), clients verified against the cluster CA; the serving certificate Basalt issued (so
// rotateCertificates and serverTLSBootstrap are off: Basalt renews both kubelet certificates
// and rewrites the files); no read-only port; cgroupDriver from Node.CgroupDriver and
// failCgroupV1 set for the host: true (the kubelet's default) on a cgroup v2 host, false on a
// cgroup v1 host, where kubelet 1.35+ would refuse to start; no staticPodPath, since nothing runs
// as a static pod.
func Kubelet(p ClusterParams) (Component, error) {
	r, err := p.resolve()
	if err != nil {
		return Component{}, err
	}
	if err := r.validateCgroupDriver(); err != nil {
		return Component{}, err
	}
	pk := r.Paths
	c := kubeletConfiguration{typeMeta: typeMeta{APIVersion: "kubelet.config.k8s.io/v1beta1", Kind: "KubeletConfiguration"}}
	c.Authentication.Webhook.Enabled = true
	c.Authentication.X509.ClientCAFile = pk.CACert()
	c.Authorization.Mode = "Webhook"
	c.TLSCertFile, c.TLSPrivateKeyFile = pk.KubeletServing().Cert, pk.KubeletServing().Key
	c.TLSMinVersion = "VersionTLS12"
	c.CgroupDriver = r.Node.CgroupDriver
	c.FailCgroupV1 = r.Node.CgroupV2
	c.ContainerRuntimeEndpoint = "unix://" + pk.ContainerdSocket
	c.ClusterDomain = r.DNSDomain
	c.ClusterDNS = []string{r.clusterDNSIP.String()}
	c.ResolvConf = r.Node.ResolvConf
	c.HealthzBindAddress, c.HealthzPort = loopbackOf(r), r.Ports.KubeletHealthz
	if r.Node.InContainer {
		// The "host" shares its disk with the real host and others: disk-pressure eviction
		// and image GC would act on numbers that are not this node's.
		f, hundred := false, 100
		c.FailSwapOn = &f
		c.ImageGCHighThresholdPercent = &hundred
		c.EvictionHard = map[string]string{"imagefs.available": "0%", "nodefs.available": "0%", "nodefs.inodesFree": "0%"}
	}
	content, err := marshalYAML(c)
	if err != nil {
		return Component{}, err
	}
	file := File{Path: path.Join(pk.ConfigDir, "kubelet", "config.yaml"), Mode: 0o644, Content: content}
	a := newArgv(pk.BinDir, "kubelet")
	a.flag("config", file.Path)
	a.flag("kubeconfig", pk.Kubeconfig("kubelet"))
	a.flag("hostname-override", r.Node.Name)
	a.flag("node-ip", r.nodeIP.String())
	return Component{Name: "kubelet", Args: a, Files: []File{file}}, nil
}

type kubeProxyConfiguration struct {
	typeMeta         `yaml:",inline"`
	ClientConnection struct {
		Kubeconfig string `yaml:"kubeconfig"`
	} `yaml:"clientConnection"`
	HostnameOverride string `yaml:"hostnameOverride"`
	Mode             string `yaml:"mode"`
	ClusterCIDR      string `yaml:"clusterCIDR"`
	Conntrack        *struct {
		MaxPerCore            int    `yaml:"maxPerCore"`
		TCPEstablishedTimeout string `yaml:"tcpEstablishedTimeout"`
		TCPCloseWaitTimeout   string `yaml:"tcpCloseWaitTimeout"`
	} `yaml:"conntrack,omitempty"`
}

// KubeProxy renders kube-proxy in iptables mode with the cluster's pod CIDR (traffic from
// outside it to a Service is masqueraded) and this node's name, so it finds its Node object.
// In a container it leaves the conntrack sysctls alone, as they belong to the real host.
func KubeProxy(p ClusterParams) (Component, error) {
	r, err := p.resolve()
	if err != nil {
		return Component{}, err
	}
	pk := r.Paths
	c := kubeProxyConfiguration{typeMeta: typeMeta{APIVersion: "kubeproxy.config.k8s.io/v1alpha1", Kind: "KubeProxyConfiguration"}}
	c.ClientConnection.Kubeconfig = pk.Kubeconfig("kube-proxy")
	c.HostnameOverride = r.Node.Name
	c.Mode = "iptables"
	c.ClusterCIDR = r.podCIDR.String()
	if r.Node.InContainer {
		c.Conntrack = &struct {
			MaxPerCore            int    `yaml:"maxPerCore"`
			TCPEstablishedTimeout string `yaml:"tcpEstablishedTimeout"`
			TCPCloseWaitTimeout   string `yaml:"tcpCloseWaitTimeout"`
		}{0, "0s", "0s"}
	}
	content, err := marshalYAML(c)
	if err != nil {
		return Component{}, err
	}
	file := File{Path: path.Join(pk.ConfigDir, "kube-proxy", "config.yaml"), Mode: 0o644, Content: content}
	a := newArgv(pk.BinDir, "kube-proxy")
	a.flag("config", file.Path)
	return Component{Name: "kube-proxy", Args: a, Files: []File{file}}, nil
}
