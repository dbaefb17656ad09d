package dhcp

import (
	"context"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

// pxeVendorClass starts the vendor class (option 60) of every PXE client, iPXE included:
// "PXEClient:Arch:00000:UNDI:002001".
const pxeVendorClass = "PXEClient"

// pxeDiscoveryControl is option 43 for PXE clients: sub-option 6 (PXE_DISCOVERY_CONTROL) = 8,
// "if a boot file name is in the offer, download it; no boot server discovery, no menu".
var pxeDiscoveryControl = []byte{6, 1, 8, 255}

// bootKind is what a client is sent.
type bootKind string

const (
	bootNone bootKind = ""     // no boot options (not netbooting)
	bootBIOS bootKind = "bios" // BIOSBootFile over TFTP
	bootUEFI bootKind = "uefi" // UEFIBootFile over TFTP
	bootIPXE bootKind = "ipxe" // the per-MAC script over HTTP
)

// optIPXEEncap is iPXE's encapsulated options (175); ipxeNoProxyDHCP is its sub-option 176
// (no-pxedhcp) set to 1: "ignore ProxyDHCP", so iPXE neither waits for ProxyDHCP offers nor asks
// port 4011 after the ACK.
var (
	optIPXEEncap    = dhcpv4.GenericOptionCode(175)
	ipxeNoProxyDHCP = []byte{176, 1, 1}
)

// client is what a request says about its sender.
type client struct {
	pxe  bool // vendor class starts with "PXEClient"
	ipxe bool // user class "iPXE"
	arch iana.Arch
}

func (c client) netboot() bool { return c.pxe || c.ipxe }

func classify(req *dhcpv4.DHCPv4) client {
	c := client{pxe: strings.HasPrefix(req.ClassIdentifier(), pxeVendorClass)}
	for _, uc := range req.UserClass() {
		if uc == "iPXE" {
			c.ipxe = true
		}
	}
	if archs := req.ClientArch(); len(archs) > 0 {
		c.arch = archs[0]
	} else if a, ok := archFromVendorClass(req.ClassIdentifier()); ok {
		// Clients without option 93 may still say it in their vendor class.
		c.arch = a
	}
	return c
}

// archFromVendorClass reads the architecture from a vendor class "PXEClient:Arch:00007:..."
// (PXE 2.1). A PXE client that says neither this nor option 93 is taken for BIOS (0).
func archFromVendorClass(vc string) (iana.Arch, bool) {
	rest, ok := strings.CutPrefix(vc, pxeVendorClass+":Arch:")
	if !ok || len(rest) < 5 {
		return 0, false
	}
	n, err := strconv.ParseUint(rest[:5], 10, 16)
	if err != nil {
		return 0, false
	}
	return iana.Arch(n), true
}

// boot chooses the boot file of c: the file name (or URL) and its kind; ok is false when c is
// netbooting on an architecture the server has no file for.
func (s *Server) boot(c client, mac net.HardwareAddr) (file string, kind bootKind, ok bool) {
	switch {
	case c.ipxe:
		return ScriptURL(s.HTTPBaseURL, mac), bootIPXE, true
	case !c.pxe:
		return "", bootNone, true
	}
	switch c.arch {
	case iana.INTEL_X86PC:
		return orDefault(s.BIOSBootFile, DefaultBIOSBootFile), bootBIOS, true
	case iana.EFI_X86_64, iana.EFI_BC: // IANA types 7 and 9 are both x86-64 UEFI
		return orDefault(s.UEFIBootFile, DefaultUEFIBootFile), bootUEFI, true
	}
	return "", bootNone, false
}

// Handle decides the reply to one request: the packet to send (nil for none) and the reason,
// one of the Reason* constants. It has no side effect but the pool's lease table and the
// addresses ClientAddress reports; the caller
// sends the reply (see ListenAndServe for where). It never panics, whatever the packet holds.
func (s *Server) Handle(req *dhcpv4.DHCPv4) (*dhcpv4.DHCPv4, string) {
	return s.handle(context.Background(), req)
}

func (s *Server) handle(ctx context.Context, req *dhcpv4.DHCPv4) (*dhcpv4.DHCPv4, string) {
	if err := s.init(); err != nil {
		return nil, ReasonMisconfigured
	}
	if req == nil || req.Options == nil {
		return nil, ReasonMalformed
	}
	if req.OpCode != dhcpv4.OpcodeBootRequest {
		return nil, ReasonNotRequest
	}
	if req.HWType != iana.HWTypeEthernet || len(req.ClientHWAddr) != 6 {
		return nil, ReasonBadHardwareAddress
	}
	mt := req.MessageType()
	switch mt {
	case dhcpv4.MessageTypeDiscover, dhcpv4.MessageTypeRequest:
	case dhcpv4.MessageTypeRelease, dhcpv4.MessageTypeDecline:
		s.addresses.forget(req.ClientHWAddr.String())
		if s.leases != nil && s.mode() == ModeFull {
			if mt == dhcpv4.MessageTypeDecline {
				if a, ok := netip.AddrFromSlice(req.RequestedIPAddress().To4()); ok {
					s.leases.decline(req.ClientHWAddr.String(), a, s.now(), s.leaseTime())
					return nil, ReasonReleased
				}
			}
			s.leases.release(req.ClientHWAddr.String())
		}
		return nil, ReasonReleased
	case dhcpv4.MessageTypeNone:
		return nil, ReasonNotRequest
	default:
		return nil, ReasonUnsupportedMessage
	}

	mac := req.ClientHWAddr
	c := classify(req)
	lctx, cancel := context.WithTimeout(ctx, lookupTimeout)
	res, known, err := s.Reservations.Reservation(lctx, mac)
	cancel()
	switch {
	case err != nil:
		s.log().Error(err, "Cannot look up the reservation", "mac", mac.String(), "reason", ReasonLookupError)
		return nil, ReasonLookupError
	case !known && !s.Discovery:
		return nil, ReasonUnknownMAC
	case !known && !c.netboot():
		// Discovery is for netbooting hosts only, not for every device on the segment.
		return nil, ReasonNotNetboot
	}
	file, kind, ok := s.boot(c, mac)
	if !ok {
		if !known || s.mode() == ModeProxy {
			return nil, ReasonUnsupportedArch
		}
		// A known host still gets its address; it just cannot boot from us on this firmware.
		kind = bootNone
	}
	if s.mode() == ModeProxy {
		return s.proxy(req, mt, c, file, kind)
	}
	return s.full(req, mt, res, known, c, file, kind)
}

// proxy answers in proxy mode: boot options, no address.
func (s *Server) proxy(req *dhcpv4.DHCPv4, mt dhcpv4.MessageType, c client, file string, kind bootKind) (*dhcpv4.DHCPv4, string) {
	if kind == bootNone {
		return nil, ReasonNotNetboot
	}
	reply, reason := dhcpv4.MessageTypeOffer, ReasonProxyOffer
	if mt == dhcpv4.MessageTypeRequest {
		s.recordProxyRequest(req)
		// A REQUEST reaches the proxy either broadcast to the site server (it names that server,
		// or has no address yet) or on the proxy port (it has its address and names us, or no one).
		sid := req.ServerIdentifier().To4()
		ci := req.ClientIPAddr.To4()
		if (sid != nil && !sid.Equal(s.ServerIP.AsSlice())) || ci == nil || ci.IsUnspecified() {
			return nil, ReasonOtherServer
		}
		reply, reason = dhcpv4.MessageTypeAck, ReasonProxyAck
	}
	resp, err := dhcpv4.NewReplyFromRequest(req,
		dhcpv4.WithMessageType(reply),
		dhcpv4.WithYourIP(net.IPv4zero),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(s.ServerIP.AsSlice())),
	)
	if err != nil {
		return nil, ReasonMalformed
	}
	s.bootOptions(resp, req, c, file)
	return resp, reason
}

// recordProxyRequest remembers the address a netbooting client's REQUEST names (see
// ClientAddress): ciaddr when it has one (iPXE's REQUEST to the proxy port after the site
// server's ACK), else the address it asks the site server for (option 50). The REQUEST is
// recorded whichever server it names: the site server's reply is not seen here.
func (s *Server) recordProxyRequest(req *dhcpv4.DHCPv4) {
	a, ok := netip.AddrFromSlice(req.ClientIPAddr.To4())
	if !ok || a.IsUnspecified() {
		a, ok = netip.AddrFromSlice(req.RequestedIPAddress().To4())
	}
	// Never an address of the manager's own node: a process there would get the host's token.
	if !ok || a.IsUnspecified() || a.IsLoopback() || a.IsMulticast() || a == s.ServerIP || a == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
		return
	}
	s.addresses.record(req.ClientHWAddr.String(), a, s.now().Add(ProxyAddressTTL))
}

// full answers in full mode: the client's address, and the boot options when it netboots.
func (s *Server) full(req *dhcpv4.DHCPv4, mt dhcpv4.MessageType, res Reservation, known bool, c client, file string, kind bootKind) (*dhcpv4.DHCPv4, string) {
	macKey := req.ClientHWAddr.String()
	now := s.now()
	fromPool := !known || !res.Address.IsValid()
	if !fromPool && (!res.Address.Addr().Is4() || res.Address.Bits() < 1 || res.Address.Bits() > 32) {
		s.log().Info("Ignoring a reservation that is not an IPv4 prefix", "mac", macKey, "address", res.Address.String(), "reason", ReasonBadReservation)
		return nil, ReasonBadReservation
	}
	if fromPool {
		if s.leases == nil {
			return nil, ReasonNoAddress
		}
		if gi, ok := netip.AddrFromSlice(req.GatewayIPAddr.To4()); ok && !gi.IsUnspecified() && !s.Pool.Subnet.Contains(gi) {
			// Relayed from another subnet: the pool's addresses would not work there.
			return nil, ReasonNoAddress
		}
	}

	var addr netip.Addr
	reply, reason := dhcpv4.MessageTypeOffer, ReasonOffer
	switch mt {
	case dhcpv4.MessageTypeDiscover:
		if fromPool {
			a, ok := s.leases.offer(macKey, now)
			if !ok {
				return nil, ReasonNoAddress
			}
			addr = a
		} else {
			addr = res.Address.Addr()
		}
	case dhcpv4.MessageTypeRequest:
		if sid := req.ServerIdentifier().To4(); sid != nil && !sid.Equal(s.ServerIP.AsSlice()) {
			if fromPool {
				s.leases.release(macKey) // it took another server's offer
			}
			return nil, ReasonOtherServer
		}
		want, ok := netip.AddrFromSlice(req.RequestedIPAddress().To4())
		if !ok || want.IsUnspecified() {
			want, ok = netip.AddrFromSlice(req.ClientIPAddr.To4())
		}
		if !ok || want.IsUnspecified() {
			return nil, ReasonNoRequestedAddress
		}
		granted := false
		if fromPool {
			granted = s.leases.request(macKey, want, now, s.leaseTime())
		} else {
			granted = want == res.Address.Addr()
		}
		if !granted {
			return s.nak(req)
		}
		addr = want
		reply, reason = dhcpv4.MessageTypeAck, ReasonAck
		s.addresses.record(macKey, addr, now.Add(s.leaseTime()))
	}

	mask, gw := net.CIDRMask(res.Address.Bits(), 32), res.Gateway
	if fromPool {
		mask, gw = net.CIDRMask(s.Pool.Subnet.Bits(), 32), s.Pool.Gateway
	}
	mods := []dhcpv4.Modifier{
		dhcpv4.WithMessageType(reply),
		dhcpv4.WithYourIP(addr.AsSlice()),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(s.ServerIP.AsSlice())),
		dhcpv4.WithOption(dhcpv4.OptIPAddressLeaseTime(s.leaseTime())),
		dhcpv4.WithOption(dhcpv4.OptSubnetMask(mask)),
	}
	if gw.Is4() {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptRouter(gw.AsSlice())))
	}
	if len(s.DNS) > 0 {
		dns := make([]net.IP, 0, len(s.DNS))
		for _, d := range s.DNS {
			dns = append(dns, d.AsSlice())
		}
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptDNS(dns...)))
	}
	if s.DomainName != "" {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptDomainName(s.DomainName)))
	}
	if known && res.Hostname != "" {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptHostName(res.Hostname)))
	}
	resp, err := dhcpv4.NewReplyFromRequest(req, mods...)
	if err != nil {
		return nil, ReasonMalformed
	}
	if kind != bootNone {
		if c.ipxe {
			// iPXE takes any offer with vendor class PXEClient as a ProxyDHCP offer too, and
			// after the ACK asks that server on port 4011, which full mode does not serve,
			// until it gives up; without PXEClient it waits for ProxyDHCP offers before its
			// REQUEST instead. It needs no PXE options (the script URL is all it boots from),
			// and its no-pxedhcp setting tells it there is no ProxyDHCP to wait for.
			c.pxe = false
			resp.UpdateOption(dhcpv4.OptGeneric(optIPXEEncap, ipxeNoProxyDHCP))
		}
		s.bootOptions(resp, req, c, file)
	}
	return resp, reason
}

// nak refuses a REQUEST. It is broadcast (or relayed, with the broadcast bit set, RFC 2131
// §4.3.2), so that a client with a wrong address hears it.
func (s *Server) nak(req *dhcpv4.DHCPv4) (*dhcpv4.DHCPv4, string) {
	resp, err := dhcpv4.NewReplyFromRequest(req,
		dhcpv4.WithMessageType(dhcpv4.MessageTypeNak),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(s.ServerIP.AsSlice())),
		dhcpv4.WithOption(dhcpv4.OptMessage("requested address is not this client's")),
	)
	if err != nil {
		return nil, ReasonMalformed
	}
	if gi := req.GatewayIPAddr.To4(); gi != nil && !gi.IsUnspecified() {
		resp.SetBroadcast()
	}
	return resp, ReasonNak
}

// bootOptions adds what a netbooting client needs: next-server and file (also as option 67),
// and for PXE clients the PXE vendor options and their UUID back.
func (s *Server) bootOptions(resp, req *dhcpv4.DHCPv4, c client, file string) {
	resp.ServerIPAddr = s.ServerIP.AsSlice()
	resp.BootFileName = file
	resp.UpdateOption(dhcpv4.OptBootFileName(file))
	if c.pxe {
		resp.UpdateOption(dhcpv4.OptClassIdentifier(pxeVendorClass))
		resp.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionVendorSpecificInformation, pxeDiscoveryControl))
	}
	if uuid := req.GetOneOption(dhcpv4.OptionClientMachineIdentifier); uuid != nil {
		resp.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionClientMachineIdentifier, uuid))
	}
}
