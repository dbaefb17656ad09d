package dhcp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/server4"
	"golang.org/x/sync/errgroup"
	ctrl "sigs.k8s.io/controller-runtime"
)

// Mode is how the server shares the network with other DHCP servers.
type Mode string

// Modes.
const (
	// ModeFull leases addresses to the hosts the server knows, with the boot options.
	ModeFull Mode = "full"
	// ModeProxy answers netbooting hosts with boot options only, beside a site DHCP server that
	// leases the addresses (proxyDHCP).
	ModeProxy Mode = "proxy"
)

// Defaults of Server.
const (
	// DefaultAddr is where the server listens for DHCP requests.
	DefaultAddr = "0.0.0.0:67"
	// DefaultProxyAddr is where proxy mode listens for PXE requests sent to the proxy itself.
	DefaultProxyAddr = "0.0.0.0:4011"
	// DefaultLeaseTime is the lease time of full mode.
	DefaultLeaseTime = time.Hour
	// DefaultBIOSBootFile is what BIOS PXE ROMs load over TFTP: iPXE with the UNDI driver, which
	// drives any NIC through its PXE ROM.
	DefaultBIOSBootFile = "undionly.kpxe"
	// DefaultUEFIBootFile is what x86-64 UEFI PXE clients load over TFTP: iPXE with its own NIC
	// drivers (virtio-net, e1000, Intel, Broadcom, Mellanox, ...). For a NIC iPXE has no driver
	// for, set UEFIBootFile to "snponly.efi", which drives the NIC through the firmware's
	// UEFI network stack (SNP) instead.
	DefaultUEFIBootFile = "ipxe.efi"
	// DefaultClientPort is the port clients listen on (68).
	DefaultClientPort = dhcpv4.ClientPort
	// DefaultRelayPort is the port relay agents listen on (67).
	DefaultRelayPort = dhcpv4.ServerPort
	// MaxPacketSize is the largest datagram handled: a DHCP packet larger than an Ethernet
	// frame's payload would be IP-fragmented, which no PXE ROM does. Larger ones are dropped
	// as ReasonOversized.
	MaxPacketSize = 1500
	// ScriptPathPrefix and ScriptPathSuffix frame the MAC address in the path of a host's iPXE
	// script, under HTTPBaseURL: /boot/52:54:00:12:34:56.ipxe. pxe/httpboot serves that path.
	ScriptPathPrefix = "/boot/"
	ScriptPathSuffix = ".ipxe"
	// maxFileField is the size of the BOOTP file field, less its terminating NUL.
	maxFileField = 127
	// lookupTimeout bounds one Reservations lookup.
	lookupTimeout = 5 * time.Second
	// maxInFlight bounds the packets handled at once.
	maxInFlight = 32
)

// Server is the PXE DHCP server. See the package documentation for what it answers.
//
// Fields must not change after the first call to Handle or ListenAndServe.
type Server struct {
	// Interface is the network interface to serve, e.g. "eth1": the sockets are bound to it and
	// broadcast replies leave through it. Required.
	Interface string
	// Addr is the address to listen on for DHCP requests. Default DefaultAddr. Requests are
	// broadcast, so a production server listens on 0.0.0.0.
	Addr string
	// ProxyAddr is where proxy mode also listens for requests sent to the proxy itself (PXE
	// "boot server" requests; iPXE sends one after a proxyDHCP offer). Default
	// DefaultProxyAddr; "-" turns it off. Unused in full mode.
	ProxyAddr string

	// Mode is ModeFull or ModeProxy. Default ModeProxy, which never leases an address.
	Mode Mode
	// ServerIP is the server's address on Interface as hosts reach it: the DHCP server
	// identifier (option 54) and the TFTP server of the boot files (siaddr, "next-server").
	// Required.
	ServerIP netip.Addr

	// Reservations says which MAC addresses belong to Hosts, and their addresses. Required.
	Reservations Reservations
	// Discovery answers netbooting hosts whose MAC no Host has: they boot like known hosts (the
	// HTTP side decides what their script does). In full mode they need Pool.
	Discovery bool
	// Pool leases addresses, in full mode, to hosts without a reserved address. Optional.
	Pool *Pool

	// BIOSBootFile is the TFTP file for BIOS clients. Default DefaultBIOSBootFile.
	BIOSBootFile string
	// UEFIBootFile is the TFTP file for x86-64 UEFI clients. Default DefaultUEFIBootFile.
	UEFIBootFile string
	// HTTPBaseURL is where hosts reach pxe/httpboot, e.g. http://192.168.10.1:8080; iPXE
	// clients are sent to HTTPBaseURL + "/boot/<mac>.ipxe". At most 99 characters, so that the
	// script URL fits the BOOTP file field. Required.
	HTTPBaseURL string

	// LeaseTime is the lease time of full mode. Default DefaultLeaseTime.
	LeaseTime time.Duration
	// DNS servers (option 6) sent in full mode; optional.
	DNS []netip.Addr
	// DomainName (option 15) sent in full mode; optional.
	DomainName string

	// ClientPort is where replies to clients are sent. Default DefaultClientPort; other values
	// are for tests.
	ClientPort int
	// RelayPort is where replies to relay agents are sent. Default DefaultRelayPort; other
	// values are for tests and relays listening elsewhere.
	RelayPort int

	// Log receives the server's logs. Default ctrl.Log.WithName("pxe-dhcp").
	Log logr.Logger
	// Now is the clock. Default time.Now.
	Now func() time.Time

	initOnce  sync.Once
	initErr   error
	leases    *leases
	addresses *addresses
}

// Validate reports whether the fields, with their defaults, make a working server.
func (s *Server) Validate() error {
	var errs []error
	if s.Interface == "" {
		errs = append(errs, errors.New("dhcp: Interface is required (replies are broadcast on it)"))
	}
	switch s.Mode {
	case "", ModeProxy, ModeFull:
	default:
		errs = append(errs, fmt.Errorf("dhcp: Mode %q is neither %q nor %q", s.Mode, ModeFull, ModeProxy))
	}
	if !s.ServerIP.Is4() {
		errs = append(errs, errors.New("dhcp: ServerIP must be an IPv4 address"))
	}
	if s.Reservations == nil {
		errs = append(errs, errors.New("dhcp: Reservations is required (use StaticReservations{} for discovery only)"))
	}
	if s.Pool != nil {
		if err := s.Pool.validate(); err != nil {
			errs = append(errs, fmt.Errorf("dhcp: %w", err))
		} else if s.Pool.contains(s.ServerIP) {
			errs = append(errs, fmt.Errorf("dhcp: ServerIP %s is inside the pool", s.ServerIP))
		}
	}
	if s.mode() == ModeFull && s.Discovery && s.Pool == nil {
		errs = append(errs, errors.New("dhcp: Discovery in full mode needs a Pool"))
	}
	if err := validateBaseURL(s.HTTPBaseURL); err != nil {
		errs = append(errs, err)
	}
	for _, f := range []string{s.BIOSBootFile, s.UEFIBootFile} {
		if len(f) > maxFileField || strings.ContainsAny(f, "\x00") {
			errs = append(errs, fmt.Errorf("dhcp: boot file %q is longer than %d bytes or holds a NUL", f, maxFileField))
		}
	}
	if s.LeaseTime < 0 || s.LeaseTime > 365*24*time.Hour {
		errs = append(errs, fmt.Errorf("dhcp: LeaseTime %s is out of range", s.LeaseTime))
	}
	for _, d := range s.DNS {
		if !d.Is4() {
			errs = append(errs, fmt.Errorf("dhcp: DNS server %s is not IPv4", d))
		}
	}
	if s.ClientPort < 0 || s.ClientPort > 65535 || s.RelayPort < 0 || s.RelayPort > 65535 {
		errs = append(errs, errors.New("dhcp: ClientPort and RelayPort must be ports"))
	}
	return errors.Join(errs...)
}

func validateBaseURL(base string) error {
	u, err := url.Parse(base)
	switch {
	case base == "":
		return errors.New("dhcp: HTTPBaseURL is required")
	case err != nil:
		return fmt.Errorf("dhcp: HTTPBaseURL: %w", err)
	case u.Scheme != "http" && u.Scheme != "https", u.Host == "", u.RawQuery != "", u.Fragment != "":
		return fmt.Errorf("dhcp: HTTPBaseURL %q must be http(s)://host[:port][/path]", base)
	case len(strings.TrimRight(base, "/"))+len(ScriptPathPrefix+"00:00:00:00:00:00"+ScriptPathSuffix) > maxFileField:
		return fmt.Errorf("dhcp: HTTPBaseURL %q is too long: the script URL must fit in %d bytes", base, maxFileField)
	}
	return nil
}

func (s *Server) init() error {
	s.initOnce.Do(func() {
		if s.initErr = s.Validate(); s.initErr != nil {
			return
		}
		if s.Pool != nil {
			s.leases = newLeases(s.Pool)
		}
		s.addresses = newAddresses(maxAddresses)
	})
	return s.initErr
}

func (s *Server) mode() Mode {
	if s.Mode == "" {
		return ModeProxy
	}
	return s.Mode
}

func (s *Server) log() logr.Logger {
	if s.Log.GetSink() == nil {
		return ctrl.Log.WithName("pxe-dhcp")
	}
	return s.Log
}

func (s *Server) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func (s *Server) leaseTime() time.Duration {
	if s.LeaseTime > 0 {
		return s.LeaseTime
	}
	return DefaultLeaseTime
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

func portOr(p, def int) int {
	if p == 0 {
		return def
	}
	return p
}

// ScriptURL is the URL of the iPXE script of mac under base (an HTTPBaseURL).
func ScriptURL(base string, mac net.HardwareAddr) string {
	return strings.TrimRight(base, "/") + ScriptPathPrefix + mac.String() + ScriptPathSuffix
}

// ListenAndServe listens on Addr (and, in proxy mode, ProxyAddr) on Interface and answers
// requests until ctx ends; then it closes its sockets and returns nil. It returns an error when
// the fields do not validate or a socket cannot be opened (port 67 needs CAP_NET_BIND_SERVICE).
func (s *Server) ListenAndServe(ctx context.Context) error {
	if err := s.init(); err != nil {
		return err
	}
	addrs := []string{orDefault(s.Addr, DefaultAddr)}
	if s.mode() == ModeProxy && s.ProxyAddr != "-" {
		addrs = append(addrs, orDefault(s.ProxyAddr, DefaultProxyAddr))
	}
	conns := make([]net.PacketConn, 0, len(addrs))
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	for _, a := range addrs {
		ua, err := net.ResolveUDPAddr("udp4", a)
		if err != nil {
			return fmt.Errorf("dhcp: %w", err)
		}
		c, err := server4.NewIPv4UDPConn(s.Interface, ua)
		if err != nil {
			return fmt.Errorf("dhcp: listening on %s (%s): %w", a, s.Interface, err)
		}
		conns = append(conns, c)
	}
	g, gctx := errgroup.WithContext(ctx)
	for i, c := range conns {
		proxyPort := i == 1
		g.Go(func() error { return s.Serve(gctx, c, proxyPort) })
	}
	return g.Wait()
}

// Serve answers the requests that arrive on conn until ctx ends, then closes conn and returns
// nil. proxyPort says that conn is the proxy port (ProxyAddr): replies then go back to the
// sender. ListenAndServe opens the sockets and calls Serve; tests may call it with their own.
func (s *Server) Serve(ctx context.Context, conn net.PacketConn, proxyPort bool) error {
	if err := s.init(); err != nil {
		return err
	}
	log := s.log().WithValues("interface", s.Interface, "addr", conn.LocalAddr().String())
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	sem := make(chan struct{}, maxInFlight)
	log.Info("Serving DHCP", "mode", s.mode(), "serverIP", s.ServerIP, "discovery", s.Discovery, "proxyPort", proxyPort)
	for {
		buf := make([]byte, MaxPacketSize+1)
		n, peer, err := conn.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			_ = conn.Close()
			return fmt.Errorf("dhcp: reading from %s: %w", conn.LocalAddr(), err)
		}
		if n > MaxPacketSize {
			count(ReasonOversized)
			log.V(1).Info("Dropped an oversized packet", "peer", peer.String(), "reason", ReasonOversized)
			continue
		}
		req, err := dhcpv4.FromBytes(buf[:n])
		if err != nil {
			count(ReasonMalformed)
			log.V(1).Info("Dropped a malformed packet", "peer", peer.String(), "reason", ReasonMalformed, "error", err.Error())
			continue
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			s.answer(ctx, log, conn, peer, req, proxyPort)
		}()
	}
}

// answer handles one parsed request and sends the reply, if any.
func (s *Server) answer(ctx context.Context, log logr.Logger, conn net.PacketConn, peer net.Addr, req *dhcpv4.DHCPv4, proxyPort bool) {
	resp, reason := s.handle(ctx, req)
	count(reason)
	log = log.WithValues("mac", req.ClientHWAddr.String(), "xid", req.TransactionID.String(), "type", req.MessageType().String(), "reason", reason)
	if resp == nil {
		log.V(2).Info("Not answering")
		return
	}
	dst := s.replyAddr(req, resp, peer, proxyPort)
	if _, err := conn.WriteTo(resp.ToBytes(), dst); err != nil {
		if ctx.Err() == nil {
			log.Error(err, "Cannot send the reply", "to", dst.String())
		}
		return
	}
	log.V(1).Info("Answered", "to", dst.String(), "yiaddr", resp.YourIPAddr.String(), "bootFile", resp.BootFileName)
}

// replyAddr says where resp to req goes (RFC 2131 §4.1): to the relay agent when one forwarded
// the request; back to the sender on the proxy port; to the client's address when it has one
// (never for a NAK); otherwise broadcast on Interface.
func (s *Server) replyAddr(req, resp *dhcpv4.DHCPv4, peer net.Addr, proxyPort bool) *net.UDPAddr {
	if gi := req.GatewayIPAddr.To4(); gi != nil && !gi.IsUnspecified() {
		return &net.UDPAddr{IP: gi, Port: portOr(s.RelayPort, DefaultRelayPort)}
	}
	if up, ok := peer.(*net.UDPAddr); ok && proxyPort && up.IP.To4() != nil && !up.IP.IsUnspecified() {
		return up
	}
	cport := portOr(s.ClientPort, DefaultClientPort)
	if ci := req.ClientIPAddr.To4(); ci != nil && !ci.IsUnspecified() && resp.MessageType() != dhcpv4.MessageTypeNak {
		return &net.UDPAddr{IP: ci, Port: cport}
	}
	return &net.UDPAddr{IP: net.IPv4bcast, Port: cport}
}
