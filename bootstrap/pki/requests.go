package pki

import (
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// Well-known subjects. Kubernetes maps a client certificate's CN to the user name and its O
// values to groups; these names are what the default RBAC policy and kubeadm expect.
const (
	// ClusterAdminsGroup is the group of the admin kubeconfig. It is system:masters, the
	// group that bypasses RBAC: Basalt hands out the admin kubeconfig before any RBAC object
	// can exist (k0s and RKE2 do the same). See docs/pki.md for why not kubeadm:cluster-admins.
	ClusterAdminsGroup = "system:masters"
	// AdminUser is the CN of the admin kubeconfig.
	AdminUser = "basalt-admin"
	// APIServerKubeletClientUser is the CN kube-apiserver presents to kubelets. As in kubeadm
	// 1.37 it carries no group: the Cluster controller binds it to the
	// KubeletAPIAdminClusterRole with a ClusterRoleBinding.
	APIServerKubeletClientUser = "kube-apiserver-kubelet-client"
	// KubeletAPIAdminClusterRole is the built-in ClusterRole that grants the kubelet API.
	KubeletAPIAdminClusterRole = "system:kubelet-api-admin"
	// APIServerEtcdClientUser is the CN kube-apiserver presents to etcd.
	APIServerEtcdClientUser = "kube-apiserver-etcd-client"
	// EtcdHealthcheckClientUser is the CN the agent's etcd health probe presents.
	EtcdHealthcheckClientUser = "kube-etcd-healthcheck-client"
	// FrontProxyClientUser is the CN kube-apiserver presents to aggregated API servers; it
	// must be listed in --requestheader-allowed-names.
	FrontProxyClientUser = "front-proxy-client"
	// ControllerManagerUser, SchedulerUser and KubeProxyUser are the users the default RBAC
	// policy binds (system:kube-controller-manager, system:kube-scheduler, system:node-proxier).
	ControllerManagerUser = "system:kube-controller-manager"
	SchedulerUser         = "system:kube-scheduler"
	KubeProxyUser         = "system:kube-proxy"
	// VirtualIPUser is the CN the agents on control-plane hosts present to hold the control-plane
	// virtual IP's Lease; a Role lets it read and write that Lease only.
	VirtualIPUser = "basalt:control-plane-vip"
	// NodesGroup is the group of every kubelet; NodeUserPrefix + node name is its user, which
	// the Node authorizer and the NodeRestriction admission plugin require.
	NodesGroup     = "system:nodes"
	NodeUserPrefix = "system:node:"
)

// ClusterCARequest is the request of the cluster CA (CN "kubernetes", as kubeadm).
func ClusterCARequest() CARequest { return CARequest{CommonName: "kubernetes"} }

// EtcdCARequest is the request of the etcd CA.
func EtcdCARequest() CARequest { return CARequest{CommonName: "etcd-ca"} }

// FrontProxyCARequest is the request of the front-proxy (aggregation layer) CA.
func FrontProxyCARequest() CARequest { return CARequest{CommonName: "front-proxy-ca"} }

// APIServerNames are the inputs of the kube-apiserver serving certificate's SANs.
type APIServerNames struct {
	// NodeNames are the host names of the control-plane node(s) the certificate is for.
	NodeNames []string
	// NodeIPs are the addresses the API server is reached at on those nodes.
	NodeIPs []net.IP
	// ServiceCIDR is the cluster's service CIDR; its first address is the kubernetes Service IP.
	ServiceCIDR string
	// DNSDomain is the cluster DNS domain, e.g. "cluster.local".
	DNSDomain string
	// EndpointHost is the host of spec.controlPlane.endpoint: an IP or a DNS name. Optional.
	EndpointHost string
	// ExtraSANs are further DNS names or IPs.
	ExtraSANs []string
}

// APIServerCert is the kube-apiserver serving certificate (Name "apiserver-<node>" when it is for
// one node, as Basalt issues it, "apiserver" otherwise): node names and IPs, the kubernetes
// Service IP and names, the endpoint host, localhost and the loopback addresses (the node-local
// load balancer and probes reach the API server on 127.0.0.1).
func APIServerCert(in APIServerNames) (CertRequest, error) {
	req := CertRequest{Name: "apiserver", Issuer: ClusterCA, CommonName: "kube-apiserver", Usage: UsageServer}
	svcIP, err := FirstIP(in.ServiceCIDR)
	if err != nil {
		return req, fmt.Errorf("%w: apiserver: serviceCIDR: %w", ErrInvalidRequest, err)
	}
	if errs := validation.IsDNS1123Subdomain(in.DNSDomain); len(errs) > 0 {
		return req, fmt.Errorf("%w: apiserver: dnsDomain: %q: %s", ErrInvalidRequest, in.DNSDomain, strings.Join(errs, "; "))
	}
	if len(in.NodeIPs) == 0 {
		return req, fmt.Errorf("%w: apiserver: nodeIPs: at least one node IP is required", ErrInvalidRequest)
	}
	var sans sanSet
	for i, n := range in.NodeNames {
		if err := sans.addDNS(n); err != nil {
			return req, fmt.Errorf("%w: apiserver: nodeNames[%d]: %w", ErrInvalidRequest, i, err)
		}
	}
	if err := sans.addDNS("kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc."+in.DNSDomain, "localhost"); err != nil {
		return req, fmt.Errorf("%w: apiserver: dnsDomain: %w", ErrInvalidRequest, err)
	}
	sans.addIP(svcIP)
	sans.addIP(in.NodeIPs...)
	sans.addIP(net.IPv4(127, 0, 0, 1).To4(), net.IPv6loopback)
	if in.EndpointHost != "" {
		if err := sans.addHost(in.EndpointHost); err != nil {
			return req, fmt.Errorf("%w: apiserver: endpointHost: %w", ErrInvalidRequest, err)
		}
	}
	for i, s := range in.ExtraSANs {
		if err := sans.addHost(s); err != nil {
			return req, fmt.Errorf("%w: apiserver: extraSANs[%d]: %w", ErrInvalidRequest, i, err)
		}
	}
	req.DNSNames, req.IPs = sans.dns, sans.ips
	if len(in.NodeNames) == 1 {
		req.Name = "apiserver-" + sans.dns[0]
	}
	return req, req.Validate()
}

// APIServerKubeletClientCert is the client certificate kube-apiserver uses towards kubelets.
func APIServerKubeletClientCert() CertRequest {
	return CertRequest{Name: "apiserver-kubelet-client", Issuer: ClusterCA,
		CommonName: APIServerKubeletClientUser, Usage: UsageClient}
}

// APIServerEtcdClientCert is the client certificate kube-apiserver uses towards etcd.
func APIServerEtcdClientCert() CertRequest {
	return CertRequest{Name: "apiserver-etcd-client", Issuer: EtcdCA,
		CommonName: APIServerEtcdClientUser, Usage: UsageClient}
}

// FrontProxyClientCert is the client certificate kube-apiserver uses towards aggregated APIs.
func FrontProxyClientCert() CertRequest {
	return CertRequest{Name: "front-proxy-client", Issuer: FrontProxyCA,
		CommonName: FrontProxyClientUser, Usage: UsageClient}
}

// EtcdHealthcheckClientCert is the client certificate of the etcd health probe (and of the
// manager's etcd membership client).
func EtcdHealthcheckClientCert() CertRequest {
	return CertRequest{Name: "etcd-healthcheck-client", Issuer: EtcdCA,
		CommonName: EtcdHealthcheckClientUser, Usage: UsageClient}
}

// EtcdServerCert is the client-facing serving certificate of one etcd member: CN is the node
// name; SANs are the node name, localhost, the node IP and the loopback addresses. Usage is
// peer (server and client), as kubeadm does, so the member's own gateway calls work.
func EtcdServerCert(nodeName string, nodeIP net.IP) (CertRequest, error) {
	return etcdMemberCert("etcd-server-", nodeName, nodeIP)
}

// EtcdPeerCert is the peer certificate of one etcd member, with the same SANs as EtcdServerCert.
func EtcdPeerCert(nodeName string, nodeIP net.IP) (CertRequest, error) {
	return etcdMemberCert("etcd-peer-", nodeName, nodeIP)
}

func etcdMemberCert(prefix, nodeName string, nodeIP net.IP) (CertRequest, error) {
	req := CertRequest{Name: prefix + nodeName, Issuer: EtcdCA, CommonName: nodeName, Usage: UsagePeer}
	var sans sanSet
	if err := sans.addDNS(nodeName); err != nil {
		return req, fmt.Errorf("%w: %s: nodeName: %w", ErrInvalidRequest, req.Name, err)
	}
	if len(nodeIP) == 0 {
		return req, fmt.Errorf("%w: %s: nodeIP: required", ErrInvalidRequest, req.Name)
	}
	_ = sans.addDNS("localhost") // a valid name
	sans.addIP(nodeIP, net.IPv4(127, 0, 0, 1).To4(), net.IPv6loopback)
	req.DNSNames, req.IPs = sans.dns, sans.ips
	return req, req.Validate()
}

// AdminCert is the client certificate of the admin kubeconfig users fetch (O=system:masters).
func AdminCert() CertRequest {
	return CertRequest{Name: "admin", Issuer: ClusterCA, CommonName: AdminUser,
		Organizations: []string{ClusterAdminsGroup}, Usage: UsageClient}
}

// ControllerManagerCert is the client certificate of kube-controller-manager.
func ControllerManagerCert() CertRequest {
	return CertRequest{Name: "controller-manager", Issuer: ClusterCA, CommonName: ControllerManagerUser, Usage: UsageClient}
}

// SchedulerCert is the client certificate of kube-scheduler.
func SchedulerCert() CertRequest {
	return CertRequest{Name: "scheduler", Issuer: ClusterCA, CommonName: SchedulerUser, Usage: UsageClient}
}

// ControllerManagerServingCert is the serving certificate of kube-controller-manager's secure
// port, which listens on loopback only: SANs localhost, 127.0.0.1 and ::1. One certificate serves
// every control-plane host. (kubeadm lets the component generate a self-signed one; Basalt issues
// it so that the agent's health probe verifies TLS like every other probe.)
func ControllerManagerServingCert() CertRequest {
	return loopbackServingCert("controller-manager-serving", "kube-controller-manager")
}

// SchedulerServingCert is the serving certificate of kube-scheduler's secure port, on loopback
// only, like ControllerManagerServingCert.
func SchedulerServingCert() CertRequest {
	return loopbackServingCert("scheduler-serving", "kube-scheduler")
}

// MetricsServerServingCert is the serving certificate of the metrics-server add-on behind the
// aggregated metrics.k8s.io API: kube-apiserver reaches it as the Service
// metrics-server.kube-system and verifies it with the cluster CA (the APIService's caBundle), so
// no insecureSkipTLSVerify is needed.
func MetricsServerServingCert(dnsDomain string) (CertRequest, error) {
	req := CertRequest{Name: "metrics-server-serving", Issuer: ClusterCA, CommonName: "metrics-server", Usage: UsageServer}
	var sans sanSet
	for _, n := range []string{"metrics-server.kube-system.svc", "metrics-server.kube-system.svc." + dnsDomain} {
		if err := sans.addDNS(n); err != nil {
			return req, fmt.Errorf("%w: %s: %w", ErrInvalidRequest, req.Name, err)
		}
	}
	req.DNSNames = sans.dns
	return req, req.Validate()
}

func loopbackServingCert(name, cn string) CertRequest {
	return CertRequest{Name: name, Issuer: ClusterCA, CommonName: cn, Usage: UsageServer,
		DNSNames: []string{"localhost"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1).To4(), net.IPv6loopback}}
}

// VirtualIPCert is the client certificate the agents on control-plane hosts write the virtual
// IP's Lease with (one for every control-plane host, like the controller-manager's).
func VirtualIPCert() CertRequest {
	return CertRequest{Name: "control-plane-vip", Issuer: ClusterCA, CommonName: VirtualIPUser, Usage: UsageClient}
}

// KubeProxyCert is the client certificate of kube-proxy (bound to system:node-proxier by the
// default RBAC policy).
func KubeProxyCert() CertRequest {
	return CertRequest{Name: "kube-proxy", Issuer: ClusterCA, CommonName: KubeProxyUser, Usage: UsageClient}
}

// KubeletClientCert is the client certificate of one node's kubelet (CN=system:node:<name>,
// O=system:nodes), as the Node authorizer requires.
func KubeletClientCert(nodeName string) (CertRequest, error) {
	req := CertRequest{Name: "kubelet-client-" + nodeName, Issuer: ClusterCA,
		CommonName: NodeUserPrefix + nodeName, Organizations: []string{NodesGroup}, Usage: UsageClient}
	if errs := validation.IsDNS1123Subdomain(nodeName); len(errs) > 0 {
		return req, fmt.Errorf("%w: %s: nodeName: %q: %s", ErrInvalidRequest, req.Name, nodeName, strings.Join(errs, "; "))
	}
	return req, req.Validate()
}

// KubeletServingCert is the serving certificate of one node's kubelet (port 10250), signed by
// the cluster CA so kube-apiserver can verify it (--kubelet-certificate-authority). SANs are
// the node name and its IPs.
func KubeletServingCert(nodeName string, nodeIPs ...net.IP) (CertRequest, error) {
	req := CertRequest{Name: "kubelet-serving-" + nodeName, Issuer: ClusterCA,
		CommonName: NodeUserPrefix + nodeName, Organizations: []string{NodesGroup}, Usage: UsageServer}
	var sans sanSet
	if err := sans.addDNS(nodeName); err != nil {
		return req, fmt.Errorf("%w: %s: nodeName: %w", ErrInvalidRequest, req.Name, err)
	}
	if len(nodeIPs) == 0 {
		return req, fmt.Errorf("%w: %s: nodeIPs: at least one node IP is required", ErrInvalidRequest, req.Name)
	}
	sans.addIP(nodeIPs...)
	req.DNSNames, req.IPs = sans.dns, sans.ips
	return req, req.Validate()
}

// FirstIP returns the first usable address of a CIDR (network address + 1), the address
// Kubernetes gives the kubernetes Service.
func FirstIP(cidr string) (net.IP, error) { return NthIP(cidr, 1) }

// NthIP returns the network address of cidr plus n, e.g. the cluster DNS Service IP is
// conventionally NthIP(serviceCIDR, 10).
func NthIP(cidr string, n int64) (net.IP, error) {
	p, err := netip.ParsePrefix(cidr)
	if err != nil {
		return nil, fmt.Errorf("%q is not a CIDR: %w", cidr, err)
	}
	if p != p.Masked() {
		return nil, fmt.Errorf("%q has host bits set (network is %s)", cidr, p.Masked())
	}
	size := new(big.Int).Lsh(big.NewInt(1), uint(p.Addr().BitLen()-p.Bits()))
	if n < 0 || big.NewInt(n).Cmp(new(big.Int).Sub(size, big.NewInt(1))) >= 0 {
		return nil, fmt.Errorf("%q has no address number %d", cidr, n)
	}
	v := new(big.Int).SetBytes(p.Addr().AsSlice())
	v.Add(v, big.NewInt(n))
	b := v.FillBytes(make([]byte, p.Addr().BitLen()/8))
	return net.IP(b), nil
}

// sanSet collects SANs in order, without duplicates.
type sanSet struct {
	dns []string
	ips []net.IP
}

func (s *sanSet) addDNS(names ...string) error {
	for _, n := range names {
		n = strings.ToLower(n)
		if errs := validation.IsDNS1123Subdomain(n); len(errs) > 0 {
			return fmt.Errorf("%q is not a DNS name: %s", n, strings.Join(errs, "; "))
		}
		if !containsString(s.dns, n) {
			s.dns = append(s.dns, n)
		}
	}
	return nil
}

func (s *sanSet) addIP(ips ...net.IP) {
	for _, ip := range ips {
		if v4 := ip.To4(); v4 != nil {
			ip = v4
		}
		dup := false
		for _, have := range s.ips {
			dup = dup || have.Equal(ip)
		}
		if !dup {
			s.ips = append(s.ips, ip)
		}
	}
}

// addHost adds an IP or a DNS name.
func (s *sanSet) addHost(h string) error {
	if ip := net.ParseIP(strings.Trim(h, "[]")); ip != nil {
		s.addIP(ip)
		return nil
	}
	return s.addDNS(h)
}

func containsString(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
