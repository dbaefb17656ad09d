package host

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"strings"
	"sync"

	"github.com/go-logr/logr"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/basalt-dev/basalt/agents/protocol"
	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
	"github.com/basalt-dev/basalt/pxe/dhcp"
	"github.com/basalt-dev/basalt/pxe/httpboot"
)

// MACIndex is the cache field index of Hosts by spec.boot.macAddresses (one entry per address).
// SetupWithManager registers it; NetBoot reads through it.
const MACIndex = "spec.boot.macAddresses"

// DefaultMaxDiscovered bounds the discovered Hosts waiting for acceptance in the discovery
// namespace, so a segment full of netbooting machines cannot fill the API server.
const DefaultMaxDiscovered = 64

// +kubebuilder:rbac:groups=basalt.dev,resources=hosts,verbs=create

// IndexHostsByMAC registers MACIndex with the manager's cache. Call it once per manager, before
// the manager starts.
func IndexHostsByMAC(ctx context.Context, indexer client.FieldIndexer) error {
	return indexer.IndexField(ctx, &basaltv1.Host{}, MACIndex, func(o client.Object) []string {
		h, ok := o.(*basaltv1.Host)
		if !ok || h.Spec.Boot == nil {
			return nil
		}
		out := make([]string, 0, len(h.Spec.Boot.MACAddresses))
		for _, m := range h.Spec.Boot.MACAddresses {
			out = append(out, strings.ToLower(m))
		}
		return out
	})
}

// NetBoot answers the PXE services for the Hosts of the management cluster: it is pxe/dhcp's
// Reservations and pxe/httpboot's Scripts. Lookups go through the manager's cache (MACIndex), so
// a DHCP packet or a script request never reaches the API server unless it creates something:
// a bootstrap token, or, with Discovery, a Host.
//
// What a Host boots, by status.state:
//
//	Registering, Inspecting, Available,      the agent, with a new one-time bootstrap token each
//	Provisioning, Deprovisioning             time httpboot admits a script request (from the
//	                                         host's address, within its rate limit); earlier
//	                                         tokens are not revoked here, but when one is used
//	Provisioned, with status.provisioning    the agent image with basalt.root=basalt-root and no
//	                                         token: /init switches to the root filesystem on
//	                                         disk, whose agent has its identity
//	Provisioned, without                     its installed system is the agent image with its
//	                                         Plan, from the network (httpboot's Diskless); never
//	                                         a loop, since the agent does not reboot the host
//	  (any state above with status.provisioning also passes basalt.root=, with the token)
//	Error, or deleting and unused            nothing (the script waits and asks again)
type NetBoot struct {
	// Client reads Hosts through the manager's cache (with MACIndex) and creates discovered
	// Hosts. Required.
	Client client.Client
	// APIReader reads a discovered Host straight from the API server when its creation raced
	// with another. Required with Discovery.
	APIReader client.Reader
	// Bootstrapper issues the one-time tokens on the agent's kernel command line. Required.
	Bootstrapper Bootstrapper
	// Discovery makes a Host for a netbooting machine whose MAC address no Host has: named
	// after the MAC (DiscoveredHostName), labelled basalt.dev/discovered=true, with
	// spec.accepted=false, so it is inspected but never Available until accepted.
	Discovery bool
	// DiscoveryNamespace is where discovered Hosts are created. Required with Discovery.
	DiscoveryNamespace string
	// MaxDiscovered bounds the discovered Hosts in DiscoveryNamespace that are not accepted yet;
	// beyond it unknown machines are told to wait. Default DefaultMaxDiscovered.
	MaxDiscovered int
	// AgentArgs are appended to the agent's kernel command line (e.g. basalt.debug).
	AgentArgs []string
	// Log receives NetBoot's logs. Default ctrl.Log.WithName("netboot").
	Log logr.Logger

	// discoverMu serialises discoveries, so the MaxDiscovered check and the create are one step.
	discoverMu sync.Mutex
}

var (
	_ dhcp.Reservations = (*NetBoot)(nil)
	_ httpboot.Scripts  = (*NetBoot)(nil)
)

// Validate reports whether the fields make a working NetBoot.
func (n *NetBoot) Validate() error {
	var errs []error
	if n.Client == nil {
		errs = append(errs, errors.New("netboot: Client is required"))
	}
	if n.Bootstrapper == nil {
		errs = append(errs, errors.New("netboot: Bootstrapper is required (PXE needs the agent API)"))
	}
	if n.Discovery && (n.DiscoveryNamespace == "" || n.APIReader == nil) {
		errs = append(errs, errors.New("netboot: Discovery needs DiscoveryNamespace and APIReader"))
	}
	return errors.Join(errs...)
}

func (n *NetBoot) log() logr.Logger {
	if n.Log.GetSink() == nil {
		return ctrl.Log.WithName("netboot")
	}
	return n.Log
}

// ErrDuplicateMAC says two Hosts list one MAC address: neither is booted until one lets go.
var ErrDuplicateMAC = errors.New("MAC address listed by more than one Host")

// hostByMAC returns the Host whose spec.boot.macAddresses has mac (lowercase), nil when none.
func (n *NetBoot) hostByMAC(ctx context.Context, mac string) (*basaltv1.Host, error) {
	var hl basaltv1.HostList
	if err := n.Client.List(ctx, &hl, client.MatchingFields{MACIndex: mac}); err != nil {
		return nil, fmt.Errorf("listing Hosts by MAC address %s: %w", mac, err)
	}
	switch len(hl.Items) {
	case 0:
		return nil, nil
	case 1:
		return &hl.Items[0], nil
	}
	names := make([]string, 0, len(hl.Items))
	for i := range hl.Items {
		names = append(names, klog.KObj(&hl.Items[i]).String())
	}
	return nil, fmt.Errorf("%w: %s is in spec.boot.macAddresses of %s", ErrDuplicateMAC, mac, strings.Join(names, ", "))
}

// Reservation implements dhcp.Reservations: the Host with mac, with spec.boot.address and
// spec.boot.gateway when set, and its name as hostname when that is a valid DNS label.
func (n *NetBoot) Reservation(ctx context.Context, mac net.HardwareAddr) (dhcp.Reservation, bool, error) {
	h, err := n.hostByMAC(ctx, strings.ToLower(mac.String()))
	if err != nil || h == nil {
		return dhcp.Reservation{}, false, err
	}
	return reservationOf(h)
}

var dnsLabelRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)

func reservationOf(h *basaltv1.Host) (dhcp.Reservation, bool, error) {
	var r dhcp.Reservation
	if dnsLabelRE.MatchString(h.Name) {
		r.Hostname = h.Name
	}
	b := h.Spec.Boot
	if b.Address != "" {
		p, err := netip.ParsePrefix(b.Address)
		if err != nil || !p.Addr().Is4() {
			return dhcp.Reservation{}, false, fmt.Errorf("host %s: spec.boot.address %q is not an IPv4 address with prefix length", klog.KObj(h), b.Address)
		}
		r.Address = p
	}
	if b.Gateway != "" {
		g, err := netip.ParseAddr(b.Gateway)
		if err != nil || !g.Is4() {
			return dhcp.Reservation{}, false, fmt.Errorf("host %s: spec.boot.gateway %q is not an IPv4 address", klog.KObj(h), b.Gateway)
		}
		r.Gateway = g
	}
	return r, true, nil
}

// Target implements httpboot.Scripts (see NetBoot for what each state boots). With Discovery, an
// unknown MAC address becomes a new Host in Registering, booted like any other.
func (n *NetBoot) Target(ctx context.Context, mac string) (httpboot.Target, error) {
	h, err := n.hostByMAC(ctx, mac)
	if err != nil {
		return httpboot.Target{}, err
	}
	if h == nil {
		if !n.Discovery {
			return httpboot.Target{}, nil
		}
		if h, err = n.discover(ctx, mac); err != nil {
			return httpboot.Target{}, err
		}
	}
	state := h.Status.State
	if state == "" {
		state = basaltv1.HostStateRegistering
	}
	t := httpboot.Target{Known: true, Host: klog.KObj(h).String(), State: state, Diskless: true}
	if r, _, err := reservationOf(h); err != nil {
		return httpboot.Target{}, err
	} else if r.Address.IsValid() {
		t.Address = r.Address.Addr()
	}
	if !bootsAgent(h, state) {
		return t, nil
	}
	if bootsFromDisk(h) {
		// A whole-disk image with its own boot loader: the disk is the host's system, and the
		// network only hands over to it (no kernel, no token).
		t.Diskless, t.LocalDisk = false, true
		n.log().V(1).Info("Booting the local disk", "host", klog.KObj(h), "mac", mac, "disk", h.Status.Provisioning.Disk)
		return t, nil
	}
	if h.Status.Provisioning != nil && h.Status.Provisioning.Format != basaltv1.OSImageFormatDisk {
		// Its system is (or is being) written to its disk: /init switches to that root
		// filesystem when it is finished, where the agent has its identity. A Provisioned Host
		// gets no token at all; while the image is written or wiped, the token lets the agent
		// start from RAM when the disk holds no finished root.
		t.Diskless, t.Root = false, httpboot.RootLabel
		if state == basaltv1.HostStateProvisioned {
			t.Agent = &httpboot.AgentBoot{ExtraArgs: n.AgentArgs}
			n.log().V(1).Info("Booting the root filesystem on disk", "host", klog.KObj(h), "mac", mac, "disk", h.Status.Provisioning.Disk)
			return t, nil
		}
	}
	// The token is issued only if httpboot admits the request (the host's own address, within
	// its rate limit). Earlier tokens stay valid: this request may not come from the machine
	// that runs them, so fetching a script must not end them. The agent API revokes them when
	// one is used (and the token store keeps at most a few per Host).
	t.Agent = &httpboot.AgentBoot{ExtraArgs: n.AgentArgs, NewBootstrap: func(ctx context.Context) (protocol.Bootstrap, error) {
		boot, err := n.Bootstrapper.Bootstrap(ctx, h)
		if err != nil {
			return protocol.Bootstrap{}, fmt.Errorf("issuing a bootstrap token for %s: %w", klog.KObj(h), err)
		}
		n.log().V(1).Info("Booting the agent", "host", klog.KObj(h), "mac", mac, "state", state)
		return boot, nil
	}}
	return t, nil
}

// bootsAgent says whether a Host in state boots the agent image.
func bootsAgent(h *basaltv1.Host, state basaltv1.HostState) bool {
	if !h.DeletionTimestamp.IsZero() && h.Status.ConsumerRef == nil {
		return false
	}
	return state != basaltv1.HostStateError
}

// DiscoveredHostName is the name of the Host discovery makes for mac: "mac-" and the MAC address
// with dashes, e.g. mac-52-54-00-12-34-56.
func DiscoveredHostName(mac string) string {
	return "mac-" + strings.ReplaceAll(strings.ToLower(mac), ":", "-")
}

// discover creates the Host of an unknown netbooting machine, or returns it when it exists
// already (a retry, or the cache has not seen it yet).
func (n *NetBoot) discover(ctx context.Context, mac string) (*basaltv1.Host, error) {
	n.discoverMu.Lock()
	defer n.discoverMu.Unlock()
	key := client.ObjectKey{Namespace: n.DiscoveryNamespace, Name: DiscoveredHostName(mac)}
	h := &basaltv1.Host{}
	err := n.APIReader.Get(ctx, key, h)
	switch {
	case err == nil:
		return discovered(h, mac)
	case !apierrors.IsNotFound(err):
		return nil, fmt.Errorf("reading discovered Host %s: %w", key, err)
	}
	maxN := n.MaxDiscovered
	if maxN == 0 {
		maxN = DefaultMaxDiscovered
	}
	var hl basaltv1.HostList
	if err := n.Client.List(ctx, &hl, client.InNamespace(n.DiscoveryNamespace), client.MatchingLabels{basaltv1.LabelDiscovered: "true"}); err != nil {
		return nil, fmt.Errorf("counting discovered Hosts: %w", err)
	}
	waiting := 0
	for i := range hl.Items {
		if !hl.Items[i].Spec.IsAccepted() {
			waiting++
		}
	}
	if waiting >= maxN {
		return nil, fmt.Errorf("not discovering %s: %d discovered Hosts in %s wait for acceptance (the limit); accept or delete some", mac, waiting, n.DiscoveryNamespace)
	}
	h = &basaltv1.Host{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: key.Namespace, Name: key.Name,
			Labels: map[string]string{basaltv1.LabelDiscovered: "true"},
		},
		Spec: basaltv1.HostSpec{
			Boot:     &basaltv1.BootSpec{MACAddresses: []string{mac}},
			Accepted: ptr.To(false),
		},
	}
	if err := n.Client.Create(ctx, h); err != nil {
		if !apierrors.IsAlreadyExists(err) {
			return nil, fmt.Errorf("creating discovered Host %s: %w", key, err)
		}
		if err := n.APIReader.Get(ctx, key, h); err != nil {
			return nil, fmt.Errorf("reading discovered Host %s: %w", key, err)
		}
		return discovered(h, mac)
	}
	n.log().Info("Discovered a netbooting machine", "host", klog.KObj(h), "mac", mac, "reason", "UnknownMAC")
	return h, nil
}

// discovered checks that the Host found under mac's discovery name is that machine's.
func discovered(h *basaltv1.Host, mac string) (*basaltv1.Host, error) {
	if h.Spec.Boot != nil {
		for _, m := range h.Spec.Boot.MACAddresses {
			if strings.EqualFold(m, mac) {
				return h, nil
			}
		}
	}
	return nil, fmt.Errorf("host %s exists but does not list MAC address %s in spec.boot.macAddresses; not discovering it", klog.KObj(h), mac)
}
