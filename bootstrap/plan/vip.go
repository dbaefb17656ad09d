package plan

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"path/filepath"

	"k8s.io/apimachinery/pkg/util/validation"
)

// VirtualIP is an address the agent holds on the host while it holds a Lease in the workload
// cluster and its own API server is ready: the control-plane endpoint that survives the loss of
// any one control-plane host (the Cluster's spec.controlPlane.virtualIP). The agent adds it to the
// interface that carries NodeAddress and announces it with gratuitous ARP.
type VirtualIP struct {
	// Address is the IPv4 address held.
	Address string `json:"address"`
	// NodeAddress is the host's own address: the interface that carries it gets Address.
	NodeAddress string `json:"nodeAddress"`
	// Identity is the holder's name in the Lease: the node name.
	Identity string `json:"identity"`
	// Server is the URL of the API servers the Lease is read and written through (the node-local
	// load balancer, so a holder whose own API server stops can still give the Lease up).
	Server string `json:"server"`
	// LeaseNamespace and LeaseName name the Lease.
	LeaseNamespace string `json:"leaseNamespace"`
	LeaseName      string `json:"leaseName"`
	// Health is the URL of the host's own API server's readiness (…/readyz): only a host whose
	// API server is ready holds the address, since that server answers what reaches it.
	Health string `json:"health"`
	// CAFile verifies Server and Health; CertFile and KeyFile are the client certificate the
	// Lease is written with (the Plan's files).
	CAFile   string `json:"caFile"`
	CertFile string `json:"certFile"`
	KeyFile  string `json:"keyFile"`
	// StepDownFor are the Plan's services the address depends on (etcd, kube-apiserver): before
	// the agent restarts or stops one of them, a holder gives the address up and waits briefly
	// for another host to take it, so clients move before the API here goes away.
	StepDownFor []string `json:"stepDownFor,omitempty"`
}

// Validate checks every field.
func (v *VirtualIP) Validate() error {
	var errs []error
	a, err := netip.ParseAddr(v.Address)
	if err != nil || !a.Is4() || a.IsLoopback() || a.IsUnspecified() || a.IsLinkLocalUnicast() || a.IsMulticast() {
		errs = append(errs, fmt.Errorf("virtualIP.address %q must be a unicast IPv4 address", v.Address))
	}
	n, err := netip.ParseAddr(v.NodeAddress)
	if err != nil || !n.Is4() {
		errs = append(errs, fmt.Errorf("virtualIP.nodeAddress %q must be an IPv4 address", v.NodeAddress))
	} else if n == a {
		errs = append(errs, fmt.Errorf("virtualIP.address %s is the node's own address", v.Address))
	}
	if msgs := validation.IsDNS1123Subdomain(v.Identity); len(msgs) > 0 {
		errs = append(errs, fmt.Errorf("virtualIP.identity %q: %v", v.Identity, msgs))
	}
	if msgs := validation.IsDNS1123Label(v.LeaseNamespace); len(msgs) > 0 {
		errs = append(errs, fmt.Errorf("virtualIP.leaseNamespace %q: %v", v.LeaseNamespace, msgs))
	}
	if msgs := validation.IsDNS1123Subdomain(v.LeaseName); len(msgs) > 0 {
		errs = append(errs, fmt.Errorf("virtualIP.leaseName %q: %v", v.LeaseName, msgs))
	}
	for name, u := range map[string]string{"server": v.Server, "health": v.Health} {
		p, err := url.Parse(u)
		if err != nil || p.Scheme != "https" || p.Host == "" {
			errs = append(errs, fmt.Errorf("virtualIP.%s %q must be an https URL", name, u))
		}
	}
	for name, p := range map[string]string{"caFile": v.CAFile, "certFile": v.CertFile, "keyFile": v.KeyFile} {
		if !filepath.IsAbs(p) || filepath.Clean(p) != p {
			errs = append(errs, fmt.Errorf("virtualIP.%s %q must be an absolute clean path", name, p))
		}
	}
	for _, name := range v.StepDownFor {
		if !validServiceName(name) {
			errs = append(errs, fmt.Errorf("virtualIP.stepDownFor: %q is not a service name", name))
		}
	}
	return errors.Join(errs...)
}
