// Package clusterpki keeps the whole PKI of one workload cluster in one call: Ensure takes what
// the Cluster controller has stored (a map name → key pair, one Secret each) and the cluster's
// facts, and returns the complete set that must be stored, what changed and why, the admin
// kubeconfig, and when the next certificate expires.
//
//	res, err := clusterpki.Ensure(stored, clusterpki.Input{...}, time.Now())
//	for _, c := range res.Changed { write res.Material[c.Name] to its Secret }   // c.Reason for the event
//	for _, name := range res.Stale { delete its Secret }                           // a node went away
//	requeue after time.Until(res.RenewAt)
//	certs, err := res.Material.ForNode("cp-1", true)                             // → the Plan builder
//
// Ensure is idempotent: called again with its own output and the same input it returns the
// same material and no change, so the controller may call it on every reconcile and after a
// crash at any point. It re-issues a leaf when pki.EnsureCertificate would (missing, wrong
// identity or SANs, not signed by the current CA, inside RenewBefore of expiry, ...), keeps
// CAs and the service-account key forever, and never replaces an unusable CA (the error wraps
// pki.ErrCAUnusable). Nothing here reads the clock: now is an argument.
package clusterpki

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/basalt-dev/basalt/bootstrap/kubeconfig"
	"github.com/basalt-dev/basalt/bootstrap/pki"
)

// Names of the cluster-wide material in a Material map. Per-node names come from APIServerName,
// EtcdServerName, EtcdPeerName, KubeletClientName and KubeletServingName.
const (
	ClusterCA    = "ca"
	EtcdCA       = "etcd-ca"
	FrontProxyCA = "front-proxy-ca"
	// ServiceAccount is the service-account key: Key is the private key, Cert holds the PEM
	// public key (not a certificate; there is none).
	ServiceAccount = "sa"

	APIServerKubeletClient   = "apiserver-kubelet-client"
	APIServerEtcdClient      = "apiserver-etcd-client"
	FrontProxyClient         = "front-proxy-client"
	EtcdHealthcheckClient    = "etcd-healthcheck-client"
	Admin                    = "admin"
	ControllerManager        = "controller-manager"
	Scheduler                = "scheduler"
	KubeProxy                = "kube-proxy"
	ControllerManagerServing = "controller-manager-serving"
	SchedulerServing         = "scheduler-serving"
	// VirtualIP is the client certificate of the control-plane virtual IP's elector.
	VirtualIP = "control-plane-vip"
	// MetricsServerServing is the serving certificate of the metrics-server add-on.
	MetricsServerServing = "metrics-server-serving"
)

// APIServerName is the name of a control-plane node's kube-apiserver serving certificate.
func APIServerName(node string) string { return "apiserver-" + node }

// EtcdServerName is the name of a control-plane node's etcd serving certificate.
func EtcdServerName(node string) string { return "etcd-server-" + node }

// EtcdPeerName is the name of a control-plane node's etcd peer certificate.
func EtcdPeerName(node string) string { return "etcd-peer-" + node }

// KubeletClientName is the name of a node's kubelet client certificate.
func KubeletClientName(node string) string { return "kubelet-client-" + node }

// KubeletServingName is the name of a node's kubelet serving certificate.
func KubeletServingName(node string) string { return "kubelet-serving-" + node }

// Material is a cluster's stored PKI: name → PEM key pair.
type Material map[string]pki.KeyPair

// DefaultAPIServerPort is the port of the admin kubeconfig's server when Endpoint has none.
const DefaultAPIServerPort = 6443

// Input is what the cluster's PKI depends on.
type Input struct {
	// ClusterName names the cluster entry of the admin kubeconfig.
	ClusterName string
	// Endpoint is where users reach the API servers, "host" or "host:port" (host an IP or a DNS
	// name): the admin kubeconfig's server and a SAN of every API server certificate.
	Endpoint string
	// APIServerPort is the port used when Endpoint has none; 0 means 6443.
	APIServerPort int
	// ServiceCIDR and DNSDomain give the kubernetes Service's IP and names (API server SANs).
	ServiceCIDR string
	DNSDomain   string
	// ExtraSANs are further DNS names or IPs of every API server certificate.
	ExtraSANs []string
	// ControlPlane and Workers are the nodes of the cluster. A control-plane node gets API
	// server, etcd server and etcd peer certificates; every node gets kubelet certificates.
	ControlPlane []Node
	Workers      []Node
	// Validity and RenewBefore apply to every leaf (spec.certificates); zero means the pki
	// defaults (one year, 30 days). CAs live pki.DefaultCAValidity.
	Validity    time.Duration
	RenewBefore time.Duration
	// Key is the algorithm of new keys; zero means ECDSA P-256.
	Key pki.KeyAlgorithm
	// RenewIssuedBefore, when set, reissues every leaf issued before it (a renewal the user
	// asked for, basalt.dev/renew-certificates). Leaves issued at or after it are kept, so
	// Ensure stays idempotent while it is set.
	RenewIssuedBefore time.Time
}

// Node is one node of the cluster.
type Node struct {
	// Name is the node name (and etcd member name).
	Name string
	// IPs are its addresses; the first is the one components advertise.
	IPs []net.IP
}

// Change is one key pair Ensure created or re-issued.
type Change struct {
	// Name is the Material key.
	Name string
	// Reason says why, for logs and events ("missing", "expires at ...", "IPs are ...").
	Reason string
}

// Result is the outcome of Ensure.
type Result struct {
	// Material is the complete PKI to store: the input's entries that are still valid and the
	// new ones.
	Material Material
	// Changed lists the entries that differ from the input, by name.
	Changed []Change
	// Stale lists input entries no longer needed (nodes that left); the caller may delete them.
	Stale []string
	// AdminKubeconfig is the kubeconfig users fetch (server https://Endpoint, user basalt-admin
	// in system:masters). It is a pure function of Material and Input: compare it with the stored
	// bytes to decide whether to write it.
	AdminKubeconfig []byte
	// NextExpiry is the earliest NotAfter of all leaves, and NextExpiryName the leaf's name.
	NextExpiry     time.Time
	NextExpiryName string
	// RenewAt is the earliest time a leaf enters its renewal window: call Ensure again then.
	RenewAt time.Time
	// CAExpiry is the earliest NotAfter of the three CAs (CA rotation is not automatic).
	CAExpiry time.Time
}

// leaf is one leaf certificate to ensure.
type leaf struct {
	req pki.CertRequest
	ca  string
}

// Ensure returns the cluster's complete PKI at now. See the package comment for its guarantees.
func Ensure(existing Material, in Input, now time.Time) (*Result, error) {
	if err := in.validate(); err != nil {
		return nil, err
	}
	res := &Result{Material: Material{}}
	for _, ca := range []struct {
		name string
		req  pki.CARequest
	}{{ClusterCA, pki.ClusterCARequest()}, {EtcdCA, pki.EtcdCARequest()}, {FrontProxyCA, pki.FrontProxyCARequest()}} {
		ca.req.Key = in.Key
		kp, changed, err := pki.EnsureCA(stored(existing, ca.name), ca.req, now)
		if err != nil {
			return nil, fmt.Errorf("clusterpki: %s: %w", ca.name, err)
		}
		res.Material[ca.name] = *kp
		if changed {
			res.Changed = append(res.Changed, Change{ca.name, "missing"})
		}
		notAfter, _ := pki.Expiry(kp.Cert)
		if res.CAExpiry.IsZero() || notAfter.Before(res.CAExpiry) {
			res.CAExpiry = notAfter
		}
	}
	sa, changed, err := pki.EnsureServiceAccountKey(existing[ServiceAccount].Key, in.Key)
	if err != nil {
		return nil, fmt.Errorf("clusterpki: %s: %w", ServiceAccount, err)
	}
	res.Material[ServiceAccount] = pki.KeyPair{Cert: sa.PublicKey, Key: sa.PrivateKey}
	switch {
	case changed:
		res.Changed = append(res.Changed, Change{ServiceAccount, "missing"})
	case !slices.Equal(existing[ServiceAccount].Cert, sa.PublicKey):
		res.Changed = append(res.Changed, Change{ServiceAccount, "public key missing or not of the private key"})
	}

	leaves, err := in.leaves()
	if err != nil {
		return nil, err
	}
	for _, l := range leaves {
		ca := res.Material[l.ca]
		reason, err := pki.ReissueReason(stored(existing, l.req.Name), &ca, l.req, now)
		if err != nil {
			return nil, fmt.Errorf("clusterpki: %w", err)
		}
		kp := stored(existing, l.req.Name)
		if reason == "" && !in.RenewIssuedBefore.IsZero() {
			if c, err := pki.ParseCertificate(kp.Cert); err == nil && pki.IssuedAt(c).Before(in.RenewIssuedBefore) {
				reason = "renewal requested at " + in.RenewIssuedBefore.UTC().Format(time.RFC3339)
			}
		}
		if reason != "" {
			if kp, _, err = pki.EnsureCertificate(nil, &ca, l.req, now); err != nil {
				return nil, fmt.Errorf("clusterpki: %w", err)
			}
			res.Changed = append(res.Changed, Change{l.req.Name, reason})
		}
		res.Material[l.req.Name] = *kp
		notAfter, err := pki.Expiry(kp.Cert)
		if err != nil {
			return nil, fmt.Errorf("clusterpki: %s: %w", l.req.Name, err)
		}
		if res.NextExpiry.IsZero() || notAfter.Before(res.NextExpiry) {
			res.NextExpiry, res.NextExpiryName = notAfter, l.req.Name
		}
		renewBefore := l.req.RenewBefore
		if renewBefore == 0 {
			renewBefore = pki.DefaultRenewBefore
		}
		if at := notAfter.Add(-renewBefore); res.RenewAt.IsZero() || at.Before(res.RenewAt) {
			res.RenewAt = at
		}
	}
	for name := range existing {
		if _, ok := res.Material[name]; !ok {
			res.Stale = append(res.Stale, name)
		}
	}
	slices.Sort(res.Stale)
	slices.SortFunc(res.Changed, func(a, b Change) int { return strings.Compare(a.Name, b.Name) })

	host, port, _ := splitEndpoint(in.Endpoint, in.apiServerPort())
	admin := res.Material[Admin]
	res.AdminKubeconfig, err = kubeconfig.Admin(kubeconfig.Params{
		ClusterName: in.ClusterName, Server: "https://" + net.JoinHostPort(host, strconv.Itoa(port)),
		CA: res.Material[ClusterCA].Cert, ClientCert: admin.Cert, ClientKey: admin.Key,
	})
	if err != nil {
		return nil, fmt.Errorf("clusterpki: admin kubeconfig: %w", err)
	}
	return res, nil
}

// stored returns a copy of the stored pair, or nil.
func stored(m Material, name string) *pki.KeyPair {
	kp, ok := m[name]
	if !ok {
		return nil
	}
	return &kp
}

func (in Input) apiServerPort() int {
	if in.APIServerPort == 0 {
		return DefaultAPIServerPort
	}
	return in.APIServerPort
}

// leaves lists every leaf of the cluster with its CA, validity applied.
func (in Input) leaves() ([]leaf, error) {
	endpointHost, _, _ := splitEndpoint(in.Endpoint, in.apiServerPort())
	out := []leaf{
		{pki.APIServerKubeletClientCert(), ClusterCA},
		{pki.APIServerEtcdClientCert(), EtcdCA},
		{pki.FrontProxyClientCert(), FrontProxyCA},
		{pki.EtcdHealthcheckClientCert(), EtcdCA},
		{pki.AdminCert(), ClusterCA},
		{pki.ControllerManagerCert(), ClusterCA},
		{pki.SchedulerCert(), ClusterCA},
		{pki.KubeProxyCert(), ClusterCA},
		{pki.ControllerManagerServingCert(), ClusterCA},
		{pki.SchedulerServingCert(), ClusterCA},
		{pki.VirtualIPCert(), ClusterCA},
	}
	add := func(ca string, req pki.CertRequest, err error) error {
		if err != nil {
			return fmt.Errorf("clusterpki: %w", err)
		}
		out = append(out, leaf{req, ca})
		return nil
	}
	req, err := pki.MetricsServerServingCert(in.DNSDomain)
	if err := add(ClusterCA, req, err); err != nil {
		return nil, err
	}
	for _, n := range in.ControlPlane {
		req, err := pki.APIServerCert(pki.APIServerNames{NodeNames: []string{n.Name}, NodeIPs: n.IPs,
			ServiceCIDR: in.ServiceCIDR, DNSDomain: in.DNSDomain, EndpointHost: endpointHost, ExtraSANs: in.ExtraSANs})
		if err := add(ClusterCA, req, err); err != nil {
			return nil, err
		}
		// Issued per node under fixed names, whatever name the pki builder gives.
		out[len(out)-1].req.Name = APIServerName(n.Name)
		req, err = pki.EtcdServerCert(n.Name, n.IPs[0])
		if err := add(EtcdCA, req, err); err != nil {
			return nil, err
		}
		out[len(out)-1].req.Name = EtcdServerName(n.Name)
		req, err = pki.EtcdPeerCert(n.Name, n.IPs[0])
		if err := add(EtcdCA, req, err); err != nil {
			return nil, err
		}
		out[len(out)-1].req.Name = EtcdPeerName(n.Name)
	}
	for _, n := range slices.Concat(in.ControlPlane, in.Workers) {
		req, err := pki.KubeletClientCert(n.Name)
		if err := add(ClusterCA, req, err); err != nil {
			return nil, err
		}
		out[len(out)-1].req.Name = KubeletClientName(n.Name)
		req, err = pki.KubeletServingCert(n.Name, n.IPs...)
		if err := add(ClusterCA, req, err); err != nil {
			return nil, err
		}
		out[len(out)-1].req.Name = KubeletServingName(n.Name)
	}
	for i := range out {
		out[i].req.Validity, out[i].req.RenewBefore, out[i].req.Key = in.Validity, in.RenewBefore, in.Key
		if err := out[i].req.Validate(); err != nil {
			return nil, fmt.Errorf("clusterpki: %w", err)
		}
	}
	return out, nil
}

func (in Input) validate() error {
	if errs := validation.IsDNS1123Subdomain(in.ClusterName); len(errs) > 0 {
		return fmt.Errorf("clusterpki: clusterName: %q: %s", in.ClusterName, strings.Join(errs, "; "))
	}
	if _, _, err := splitEndpoint(in.Endpoint, in.apiServerPort()); err != nil {
		return fmt.Errorf("clusterpki: endpoint: %w", err)
	}
	if errs := validation.IsDNS1123Subdomain(in.DNSDomain); len(errs) > 0 {
		return fmt.Errorf("clusterpki: dnsDomain: %q: %s", in.DNSDomain, strings.Join(errs, "; "))
	}
	if in.APIServerPort < 0 || in.APIServerPort > 65535 {
		return fmt.Errorf("clusterpki: apiServerPort: %d is not a TCP port", in.APIServerPort)
	}
	if in.Validity < 0 || in.RenewBefore < 0 {
		return errors.New("clusterpki: validity, renewBefore: must not be negative")
	}
	seen := map[string]string{}
	for _, group := range []struct {
		field string
		nodes []Node
	}{{"controlPlane", in.ControlPlane}, {"workers", in.Workers}} {
		for i, n := range group.nodes {
			field := fmt.Sprintf("%s[%d]", group.field, i)
			if errs := validation.IsDNS1123Subdomain(n.Name); len(errs) > 0 {
				return fmt.Errorf("clusterpki: %s.name: %q: %s", field, n.Name, strings.Join(errs, "; "))
			}
			if other, dup := seen[n.Name]; dup {
				return fmt.Errorf("clusterpki: %s.name: %q is also %s", field, n.Name, other)
			}
			seen[n.Name] = field
			if len(n.IPs) == 0 {
				return fmt.Errorf("clusterpki: %s.ips: at least one IP is required", field)
			}
			for j, ip := range n.IPs {
				if len(ip) != net.IPv4len && len(ip) != net.IPv6len {
					return fmt.Errorf("clusterpki: %s.ips[%d]: not an IP address", field, j)
				}
			}
		}
	}
	return nil
}

// splitEndpoint parses "host" or "host:port" (IPv6 in brackets with a port) with host an IP or a
// DNS name; a missing port is defaultPort.
func splitEndpoint(e string, defaultPort int) (string, int, error) {
	if e == "" {
		return "", 0, errors.New("required (an IP or DNS name, with an optional :port)")
	}
	host, port := e, defaultPort
	if h, p, err := net.SplitHostPort(e); err == nil {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return "", 0, fmt.Errorf("%q has an invalid port", e)
		}
		host, port = h, n
	} else if strings.HasPrefix(e, "[") && strings.HasSuffix(e, "]") {
		host = strings.Trim(e, "[]")
	}
	if _, err := netip.ParseAddr(host); err != nil && len(validation.IsDNS1123Subdomain(host)) > 0 {
		return "", 0, fmt.Errorf("%q is neither an IP nor a DNS name", e)
	}
	return host, port, nil
}
