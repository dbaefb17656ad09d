package setup

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	hostcontroller "github.com/basalt-dev/basalt/controllers/host"
	"github.com/basalt-dev/basalt/pxe"
	"github.com/basalt-dev/basalt/pxe/dhcp"
	"github.com/basalt-dev/basalt/pxe/httpboot"
	"github.com/basalt-dev/basalt/pxe/tftp"
)

// DHCP modes of PXEOptions.DHCPMode.
const (
	DHCPModeFull  = string(dhcp.ModeFull)
	DHCPModeProxy = string(dhcp.ModeProxy)
	DHCPModeOff   = "off"
)

// PXEOptions configure the manager's network boot services (pxe.Start), run on the leader only.
// They need the agent API: every agent script carries a bootstrap token it issues.
type PXEOptions struct {
	// Interface is the provisioning network's interface; DHCP binds to it. Required.
	Interface string
	// ServerIP is the manager's IPv4 address on Interface: DHCP server identifier, TFTP
	// next-server, and the host of the default HTTPBaseURL. Required.
	ServerIP string
	// DHCPMode is "proxy" (default: beside the site's DHCP server, boot options only), "full"
	// (lease addresses: spec.boot.address, else Pool) or "off" (the site's DHCP points hosts at
	// TFTP and HTTP itself).
	DHCPMode string
	// Pool is full mode's address range for Hosts without spec.boot.address and for discovered
	// machines, as FIRST-LAST/PREFIXLEN, e.g. 192.168.10.100-192.168.10.199/24.
	Pool string
	// PoolGateway is the default router handed out with Pool addresses; optional.
	PoolGateway string
	// Discovery turns unknown netbooting MAC addresses into new Hosts (spec.accepted=false) in
	// DiscoveryNamespace (default: the manager's namespace).
	Discovery          bool
	DiscoveryNamespace string
	// TFTPRoot is the folder of Debian's iPXE binaries (default /usr/lib/ipxe); "-" runs no TFTP.
	TFTPRoot string
	// KernelPath and InitramfsPath are the agent image (make pxe-image). Required: without them
	// hosts cannot boot the agent.
	KernelPath, InitramfsPath string
	// RootImagePath is the OS image written to the local disk of network-booted Hosts when
	// they are provisioned: a whole-disk image (make os-image's disk.raw.gz, booted from the
	// disk) or a root filesystem (make pxe-image's root.img.gz, booted by the network's kernel),
	// told apart by its content. Empty leaves them running from the network (in RAM).
	RootImagePath string
	// HTTPAddr is where HTTP boot listens (default ServerIP:8080; ":8080" listens on every
	// interface); HTTPBaseURL how hosts reach it (default http://ServerIP:<HTTPAddr's port>).
	HTTPAddr, HTTPBaseURL string
	// DHCPAddr and TFTPAddr override where DHCP and TFTP listen (defaults 0.0.0.0:67, since
	// DHCP requests are broadcast and the socket is bound to Interface anyway, and
	// ServerIP:69). HTTP boot and TFTP listen on ServerIP by default so that they are not
	// reachable from the manager node's other networks.
	DHCPAddr, TFTPAddr string
	// AgentArgs are appended to the agent's kernel command line.
	AgentArgs []string
}

// pxeConfig builds the network boot services from o, answered by nb. It validates everything
// pxe.Start would, so that a wrong flag stops the manager before it starts.
func pxeConfig(o *PXEOptions, nb *hostcontroller.NetBoot) (pxe.Config, error) {
	var errs []error
	if o.Interface == "" {
		errs = append(errs, errors.New("pxe: the provisioning network interface is required"))
	}
	ip, err := netip.ParseAddr(o.ServerIP)
	if err != nil || !ip.Is4() {
		errs = append(errs, fmt.Errorf("pxe: server IP %q must be the manager's IPv4 address on the provisioning network", o.ServerIP))
	}
	if o.KernelPath == "" || o.InitramfsPath == "" {
		errs = append(errs, errors.New("pxe: the agent kernel and initramfs are required (build them with make pxe-image)"))
	}
	_, defaultPort, _ := net.SplitHostPort(httpboot.DefaultAddr)
	httpAddr, tftpAddr := o.HTTPAddr, o.TFTPAddr
	if httpAddr == "" && ip.IsValid() {
		httpAddr = net.JoinHostPort(ip.String(), defaultPort)
	}
	if tftpAddr == "" && ip.IsValid() {
		tftpAddr = net.JoinHostPort(ip.String(), "69")
	}
	base := o.HTTPBaseURL
	if base == "" && ip.IsValid() {
		_, port, err := net.SplitHostPort(httpAddr)
		if err != nil {
			errs = append(errs, fmt.Errorf("pxe: HTTP address %q: %w", httpAddr, err))
		}
		base = "http://" + net.JoinHostPort(ip.String(), port)
	}
	if err := errors.Join(errs...); err != nil {
		return pxe.Config{}, err
	}
	cfg := pxe.Config{HTTP: &httpboot.Server{
		Addr: httpAddr, BaseURL: base, Scripts: nb,
		KernelPath: o.KernelPath, InitramfsPath: o.InitramfsPath,
		Log: ctrl.Log.WithName("pxe-http"),
	}}
	switch o.DHCPMode {
	case DHCPModeOff:
	case "", DHCPModeProxy, DHCPModeFull:
		mode := dhcp.Mode(o.DHCPMode)
		if mode == "" {
			mode = dhcp.ModeProxy
		}
		cfg.DHCP = &dhcp.Server{
			Interface: o.Interface, Addr: o.DHCPAddr, Mode: mode, ServerIP: ip,
			Reservations: nb, Discovery: o.Discovery,
			Log: ctrl.Log.WithName("pxe-dhcp"),
		}
		if o.Pool != "" {
			if mode != dhcp.ModeFull {
				return pxe.Config{}, errors.New("pxe: a DHCP pool needs DHCP mode full")
			}
			pool, err := ParsePool(o.Pool, o.PoolGateway)
			if err != nil {
				return pxe.Config{}, err
			}
			cfg.DHCP.Pool = pool
		}
	default:
		return pxe.Config{}, fmt.Errorf("pxe: DHCP mode %q: want full, proxy or off", o.DHCPMode)
	}
	if o.TFTPRoot != "-" {
		cfg.TFTP = &tftp.Server{Addr: tftpAddr, Root: o.TFTPRoot, Log: ctrl.Log.WithName("pxe-tftp")}
	}
	if err := cfg.Validate(); err != nil {
		return pxe.Config{}, err
	}
	return cfg, nil
}

// ParsePool reads a DHCP pool written FIRST-LAST/PREFIXLEN (192.168.10.100-192.168.10.199/24),
// with an optional gateway.
func ParsePool(s, gateway string) (*dhcp.Pool, error) {
	bad := fmt.Errorf("pxe: DHCP pool %q: want FIRST-LAST/PREFIXLEN, e.g. 192.168.10.100-192.168.10.199/24", s)
	rng, bits, ok := strings.Cut(s, "/")
	if !ok {
		return nil, bad
	}
	first, last, ok := strings.Cut(rng, "-")
	if !ok {
		return nil, bad
	}
	start, err1 := netip.ParseAddr(first)
	end, err2 := netip.ParseAddr(last)
	subnet, err3 := netip.ParsePrefix(first + "/" + bits)
	if err1 != nil || err2 != nil || err3 != nil {
		return nil, bad
	}
	p := &dhcp.Pool{Subnet: subnet.Masked(), Start: start, End: end}
	if gateway != "" {
		g, err := netip.ParseAddr(gateway)
		if err != nil {
			return nil, fmt.Errorf("pxe: DHCP pool gateway %q is not an IP address", gateway)
		}
		p.Gateway = g
	}
	return p, nil
}

// addPXE wires the network boot services into mgr: NetBoot answers them from the cache, and
// pxe.Start runs on the leader only (two full-mode DHCP servers would lease from separate pools).
func addPXE(mgr ctrl.Manager, o Options, parts *Parts) error {
	if parts.AgentAPI == nil {
		return errors.New("pxe: PXE needs the agent API (--agent-api-bind-address): agent scripts carry its bootstrap tokens")
	}
	ns := o.PXE.DiscoveryNamespace
	if ns == "" {
		ns = o.Namespace
	}
	nb := &hostcontroller.NetBoot{
		Client:             mgr.GetClient(),
		APIReader:          mgr.GetAPIReader(),
		Bootstrapper:       parts.AgentAPI,
		Discovery:          o.PXE.Discovery,
		DiscoveryNamespace: ns,
		AgentArgs:          o.PXE.AgentArgs,
		Log:                ctrl.Log.WithName("netboot"),
	}
	if err := nb.Validate(); err != nil {
		return err
	}
	cfg, err := pxeConfig(o.PXE, nb)
	if err != nil {
		return err
	}
	parts.PXE = &cfg
	// A RunnableFunc does not implement LeaderElectionRunnable, so it runs on the leader only.
	return mgr.Add(manager.RunnableFunc(func(ctx context.Context) error { return pxe.Start(ctx, cfg) }))
}
