package components

import (
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"path"
	"regexp"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// SupportedMinors are the Kubernetes minor versions (of major 1) these renderers know: the
// flags and configuration fields they emit exist in all of them.
var SupportedMinors = []int{35, 36, 37}

// FieldError is a validation error; Field is the path of the offending ClusterParams field.
type FieldError struct {
	Field  string
	Detail string
}

func (e *FieldError) Error() string { return "components: " + e.Field + ": " + e.Detail }

func fieldErr(field, format string, args ...any) error {
	return &FieldError{Field: field, Detail: fmt.Sprintf(format, args...)}
}

var (
	// nameRE matches snapshotter and interface names.
	nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)
	// imageRefRE matches registry/repository[:tag][@sha256:digest].
	imageRefRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]+)?(/[a-z0-9]+([._-]+[a-z0-9]+)*)+(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[a-f0-9]{64})?$`)
)

var versionRE = regexp.MustCompile(`^v(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$`)

// Version is a parsed Kubernetes version.
type Version struct{ Major, Minor, Patch int }

// ParseVersion parses "vMAJOR.MINOR.PATCH[-pre][+build]" and checks that the minor is one of
// SupportedMinors.
func ParseVersion(v string) (Version, error) {
	m := versionRE.FindStringSubmatch(v)
	if m == nil {
		return Version{}, fieldErr("version", "%q is not a Kubernetes version like v1.37.2", v)
	}
	var out Version
	for i, dst := range []*int{&out.Major, &out.Minor, &out.Patch} {
		n, err := strconv.Atoi(m[i+1])
		if err != nil {
			return Version{}, fieldErr("version", "%q: %v", v, err)
		}
		*dst = n
	}
	known := out.Major == 1
	if known {
		known = false
		for _, minor := range SupportedMinors {
			known = known || minor == out.Minor
		}
	}
	if !known {
		return Version{}, fieldErr("version", "%s is not supported (supported: v1.%d to v1.%d)",
			v, SupportedMinors[0], SupportedMinors[len(SupportedMinors)-1])
	}
	return out, nil
}

// resolved is a validated ClusterParams with defaults applied and addresses parsed.
type resolved struct {
	ClusterParams
	version      Version
	podCIDR      netip.Prefix
	serviceCIDR  netip.Prefix
	nodeMaskSize int
	nodeIP       netip.Addr
	nodePodCIDR  netip.Prefix // invalid when Node.PodCIDR is empty
	clusterDNSIP netip.Addr
	endpointHost string
	endpointPort int
}

// Validate checks p, including the optional sections (Etcd, APIServer.Encryption, ...) that are
// set, and returns a *FieldError naming the first offending field.
func (p ClusterParams) Validate() error {
	r, err := p.resolve()
	if err != nil {
		return err
	}
	if len(p.Etcd.Members) > 0 {
		if err := r.validateEtcd(); err != nil {
			return err
		}
	}
	if len(p.APIServer.Encryption.Keys) > 0 || p.APIServer.Encryption.Provider != "" {
		if err := r.validateAPIServer(); err != nil {
			return err
		}
	}
	if p.Node.CgroupDriver != "" {
		return r.validateCgroupDriver()
	}
	return nil
}

// resolve validates the fields every renderer needs and applies defaults.
func (p ClusterParams) resolve() (*resolved, error) {
	r := &resolved{ClusterParams: p}
	r.Paths = p.Paths.withDefaults()
	if r.DNSDomain == "" {
		r.DNSDomain = DefaultDNSDomain
	}
	if r.APIServer.Port == 0 {
		r.APIServer.Port = DefaultAPIServerPort
	}
	if errs := validation.IsDNS1123Subdomain(p.ClusterName); len(errs) > 0 {
		return nil, fieldErr("clusterName", "%q: %s", p.ClusterName, strings.Join(errs, "; "))
	}
	var err error
	if r.version, err = ParseVersion(p.Version); err != nil {
		return nil, err
	}
	if r.podCIDR, err = parseCIDR("podCIDR", p.PodCIDR); err != nil {
		return nil, err
	}
	if r.serviceCIDR, err = parseCIDR("serviceCIDR", p.ServiceCIDR); err != nil {
		return nil, err
	}
	if r.podCIDR.Addr().Is4() != r.serviceCIDR.Addr().Is4() {
		return nil, fieldErr("serviceCIDR", "%s and podCIDR %s are of different IP families (dual-stack is not supported)", r.serviceCIDR, r.podCIDR)
	}
	if r.podCIDR.Overlaps(r.serviceCIDR) {
		return nil, fieldErr("serviceCIDR", "%s overlaps podCIDR %s", r.serviceCIDR, r.podCIDR)
	}
	if minBits := map[bool]int{true: 12, false: 108}[r.serviceCIDR.Addr().Is4()]; r.serviceCIDR.Bits() < minBits {
		return nil, fieldErr("serviceCIDR", "%s is too large for kube-apiserver (prefix must be at least /%d)", r.serviceCIDR, minBits)
	}
	if err := r.resolveNodeMask(); err != nil {
		return nil, err
	}
	if errs := validation.IsDNS1123Subdomain(r.DNSDomain); len(errs) > 0 {
		return nil, fieldErr("dnsDomain", "%q: %s", r.DNSDomain, strings.Join(errs, "; "))
	}
	if err := r.resolveDNSIP(); err != nil {
		return nil, err
	}
	if err := r.resolveEndpoint(); err != nil {
		return nil, err
	}
	if err := r.resolveNode(); err != nil {
		return nil, err
	}
	if err := r.resolvePorts(); err != nil {
		return nil, err
	}
	return r, r.validatePaths()
}

// resolvePorts applies the default ports and checks that every port is a TCP port and that no
// two services of a host share one.
func (r *resolved) resolvePorts() error {
	r.Ports = r.Ports.WithDefaults()
	ports := []struct {
		field string
		port  int
	}{
		{"apiServer.port", r.APIServer.Port}, {"ports.etcdClient", r.Ports.EtcdClient},
		{"ports.etcdPeer", r.Ports.EtcdPeer}, {"ports.etcdMetrics", r.Ports.EtcdMetrics},
		{"ports.controllerManager", r.Ports.ControllerManager}, {"ports.scheduler", r.Ports.Scheduler},
		{"ports.kubeletHealthz", r.Ports.KubeletHealthz},
	}
	used := map[int]string{}
	for _, p := range ports {
		if p.port < 1 || p.port > 65535 {
			return fieldErr(p.field, "%d is not a TCP port", p.port)
		}
		if other, dup := used[p.port]; dup {
			return fieldErr(p.field, "%d is also %s", p.port, other)
		}
		used[p.port] = p.field
	}
	return nil
}

func parseCIDR(field, s string) (netip.Prefix, error) {
	pfx, err := netip.ParsePrefix(s)
	if err != nil {
		return pfx, fieldErr(field, "%q is not a CIDR", s)
	}
	if pfx != pfx.Masked() {
		return pfx, fieldErr(field, "%q has host bits set (did you mean %s?)", s, pfx.Masked())
	}
	return pfx, nil
}

// resolveNodeMask checks that PodCIDR can be split into node ranges as kube-controller-manager
// requires: the node mask is longer than the cluster prefix by at most 16 bits, and each range
// holds at least a few pod addresses.
func (r *resolved) resolveNodeMask() error {
	bits := r.podCIDR.Addr().BitLen()
	r.nodeMaskSize = r.NodeCIDRMaskSize
	if r.nodeMaskSize == 0 {
		r.nodeMaskSize = map[bool]int{true: defaultNodeMaskSizeV4, false: defaultNodeMaskSizeV6}[bits == 32]
	}
	lo, hi := r.podCIDR.Bits()+1, bits-2
	if r.nodeMaskSize < lo || r.nodeMaskSize > hi {
		return fieldErr("nodeCIDRMaskSize", "%d cannot split podCIDR %s into node ranges (want %d..%d)", r.nodeMaskSize, r.podCIDR, lo, hi)
	}
	if r.nodeMaskSize-r.podCIDR.Bits() > 16 {
		return fieldErr("nodeCIDRMaskSize", "%d splits podCIDR %s into more than 65536 node ranges (kube-controller-manager allows 16 bits)", r.nodeMaskSize, r.podCIDR)
	}
	return nil
}

func (r *resolved) resolveDNSIP() error {
	if r.ClusterDNSIP == "" {
		ip, err := nthAddr(r.serviceCIDR, 10)
		if err != nil {
			return fieldErr("serviceCIDR", "%s has no 10th address for the cluster DNS Service", r.serviceCIDR)
		}
		r.clusterDNSIP = ip
		r.ClusterDNSIP = ip.String()
		return nil
	}
	ip, err := netip.ParseAddr(r.ClusterDNSIP)
	if err != nil || !r.serviceCIDR.Contains(ip) {
		return fieldErr("clusterDNSIP", "%q is not an address in serviceCIDR %s", r.ClusterDNSIP, r.serviceCIDR)
	}
	r.clusterDNSIP = ip
	return nil
}

// resolveEndpoint accepts "host" or "host:port" with host an IP (IPv6 in brackets with a port)
// or a DNS name.
func (r *resolved) resolveEndpoint() error {
	e := r.Endpoint
	if e == "" {
		return fieldErr("endpoint", "required (an IP or DNS name, with an optional :port)")
	}
	host, port := e, ""
	if h, p, err := net.SplitHostPort(e); err == nil {
		host, port = h, p
	} else if strings.HasPrefix(e, "[") && strings.HasSuffix(e, "]") {
		host = strings.Trim(e, "[]")
	}
	if _, err := netip.ParseAddr(host); err != nil {
		if errs := validation.IsDNS1123Subdomain(host); len(errs) > 0 {
			return fieldErr("endpoint", "%q is neither an IP nor a DNS name", e)
		}
	}
	r.endpointHost, r.endpointPort = host, r.APIServer.Port
	if port != "" {
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 {
			return fieldErr("endpoint", "%q has an invalid port", e)
		}
		r.endpointPort = n
	}
	return nil
}

func (r *resolved) resolveNode() error {
	if errs := validation.IsDNS1123Subdomain(r.Node.Name); len(errs) > 0 {
		return fieldErr("node.name", "%q: %s", r.Node.Name, strings.Join(errs, "; "))
	}
	// A loopback address is accepted: it makes a single-node cluster confined to its host (the
	// Plan builder refuses it as soon as another node is involved).
	ip, err := netip.ParseAddr(r.Node.IP)
	if err != nil || ip.Zone() != "" || ip.IsUnspecified() || ip.IsMulticast() {
		return fieldErr("node.ip", "%q is not a usable unicast IP address", r.Node.IP)
	}
	if ip.Is4In6() {
		ip = ip.Unmap()
	}
	if ip.Is4() != r.podCIDR.Addr().Is4() {
		return fieldErr("node.ip", "%s is not of the cluster's IP family", ip)
	}
	if r.podCIDR.Contains(ip) || r.serviceCIDR.Contains(ip) {
		return fieldErr("node.ip", "%s lies inside podCIDR or serviceCIDR", ip)
	}
	r.nodeIP = ip
	if r.Node.PodCIDR == "" {
		return nil
	}
	if r.nodePodCIDR, err = parseCIDR("node.podCIDR", r.Node.PodCIDR); err != nil {
		return err
	}
	if r.nodePodCIDR.Bits() != r.nodeMaskSize || !r.podCIDR.Contains(r.nodePodCIDR.Addr()) {
		return fieldErr("node.podCIDR", "%s is not a /%d range of podCIDR %s", r.nodePodCIDR, r.nodeMaskSize, r.podCIDR)
	}
	return nil
}

func (r *resolved) validatePaths() error {
	for _, f := range r.Paths.fields() {
		if v := *f.v; !path.IsAbs(v) || path.Clean(v) != v || strings.ContainsAny(v, " ,=\"'\n") {
			return fieldErr("paths."+f.name, "%q is not a clean absolute path", v)
		}
	}
	if r.Node.ResolvConf != "" && (!path.IsAbs(r.Node.ResolvConf) || path.Clean(r.Node.ResolvConf) != r.Node.ResolvConf) {
		return fieldErr("node.resolvConf", "%q is not a clean absolute path", r.Node.ResolvConf)
	}
	return nil
}

func (r *resolved) validateCgroupDriver() error {
	switch r.Node.CgroupDriver {
	case CgroupDriverSystemd, CgroupDriverCgroupfs:
		return nil
	case "":
		return fieldErr("node.cgroupDriver", "required (%s or %s; see CgroupDriverFor)", CgroupDriverSystemd, CgroupDriverCgroupfs)
	}
	return fieldErr("node.cgroupDriver", "%q is neither %s nor %s", r.Node.CgroupDriver, CgroupDriverSystemd, CgroupDriverCgroupfs)
}

// validateEtcd checks the member list: unique names, https peer URLs, this node listed with
// the peer URL of its IP, and only this node when it initialises the cluster.
func (r *resolved) validateEtcd() error {
	ms := r.Etcd.Members
	if len(ms) == 0 {
		return fieldErr("etcd.members", "required: at least this node's member")
	}
	seen := map[string]bool{}
	self := -1
	for i, m := range ms {
		field := fmt.Sprintf("etcd.members[%d]", i)
		if errs := validation.IsDNS1123Subdomain(m.Name); len(errs) > 0 {
			return fieldErr(field+".name", "%q: %s", m.Name, strings.Join(errs, "; "))
		}
		if seen[m.Name] {
			return fieldErr(field+".name", "%q is listed twice", m.Name)
		}
		seen[m.Name] = true
		if err := validatePeerURL(m.PeerURL); err != nil {
			return fieldErr(field+".peerURL", "%v", err)
		}
		if m.Name == r.Node.Name {
			self = i
		}
	}
	if self < 0 {
		return fieldErr("etcd.members", "node %q is not listed", r.Node.Name)
	}
	if want := EtcdPeerURL(r.nodeIP.String(), r.Ports.EtcdPeer); ms[self].PeerURL != want {
		return fieldErr(fmt.Sprintf("etcd.members[%d].peerURL", self), "%q, want %q for node.ip %s", ms[self].PeerURL, want, r.nodeIP)
	}
	if !r.Etcd.Join && len(ms) != 1 {
		return fieldErr("etcd.members", "the initialising member must be the only one listed (others join as learners with etcd.join)")
	}
	if e := r.Etcd.Epoch; e != "" && !validEpoch(e) {
		return fieldErr("etcd.epoch", "%q must be 1 to 16 lowercase letters and digits", e)
	}
	return nil
}

// validEpoch says whether e can end a data dir and a cluster token.
func validEpoch(e string) bool {
	if len(e) == 0 || len(e) > 16 {
		return false
	}
	for _, c := range e {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}

func validatePeerURL(s string) error {
	host, port, ok := strings.Cut(strings.TrimPrefix(s, "https://"), ":")
	if !strings.HasPrefix(s, "https://") || !ok {
		return fmt.Errorf("%q is not https://<ip>:<port>", s)
	}
	if strings.HasPrefix(host, "[") { // IPv6
		h, p, err := net.SplitHostPort(strings.TrimPrefix(s, "https://"))
		if err != nil {
			return fmt.Errorf("%q is not https://<ip>:<port>", s)
		}
		host, port = h, p
	}
	if _, err := netip.ParseAddr(host); err != nil && len(validation.IsDNS1123Subdomain(host)) > 0 {
		return fmt.Errorf("%q has an invalid host", s)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("%q has an invalid port", s)
	}
	return nil
}

func (r *resolved) validateAPIServer() error {
	enc := &r.APIServer.Encryption
	if enc.Provider == "" {
		enc.Provider = DefaultEncryption
	}
	if enc.Provider != EncryptionSecretbox && enc.Provider != EncryptionAESCBC {
		return fieldErr("apiServer.encryption.provider", "%q is neither %s nor %s", enc.Provider, EncryptionSecretbox, EncryptionAESCBC)
	}
	if len(enc.Keys) == 0 {
		return fieldErr("apiServer.encryption.keys", "at least one key is required (secrets encryption at rest is always on)")
	}
	names := map[string]bool{}
	for i, k := range enc.Keys {
		field := fmt.Sprintf("apiServer.encryption.keys[%d]", i)
		if errs := validation.IsDNS1123Label(k.Name); len(errs) > 0 {
			return fieldErr(field+".name", "%q: %s", k.Name, strings.Join(errs, "; "))
		}
		if names[k.Name] {
			return fieldErr(field+".name", "%q is used twice", k.Name)
		}
		names[k.Name] = true
		if len(k.Secret) == 0 {
			return fieldErr(field+".secret", "missing key")
		}
		if len(k.Secret) != 32 {
			return fieldErr(field+".secret", "%d bytes, want 32", len(k.Secret))
		}
	}
	a := r.APIServer.Audit
	if a.MaxAgeDays < 0 || a.MaxBackups < 0 || a.MaxSizeMB < 0 {
		return fieldErr("apiServer.audit", "limits must not be negative")
	}
	return nil
}

// nthAddr returns the network address of p plus n, excluding the last address.
func nthAddr(p netip.Prefix, n int64) (netip.Addr, error) {
	size := new(big.Int).Lsh(big.NewInt(1), uint(p.Addr().BitLen()-p.Bits()))
	if n < 0 || big.NewInt(n).Cmp(new(big.Int).Sub(size, big.NewInt(1))) >= 0 {
		return netip.Addr{}, errors.New("out of range")
	}
	v := new(big.Int).SetBytes(p.Addr().AsSlice())
	v.Add(v, big.NewInt(n))
	a, _ := netip.AddrFromSlice(v.FillBytes(make([]byte, p.Addr().BitLen()/8)))
	return a, nil
}

func joinHostPort(host string, port int) string { return net.JoinHostPort(host, strconv.Itoa(port)) }
