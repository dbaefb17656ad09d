package dhcp

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

const (
	knownMAC   = "52:54:00:00:00:01"
	knownMAC2  = "52:54:00:00:00:02" // known, no reserved address
	unknownMAC = "52:54:00:99:99:99"
	baseURL    = "http://192.168.10.1:8080"
)

var reservations = StaticReservations{
	knownMAC:  {Address: netip.MustParsePrefix("192.168.10.21/24"), Gateway: netip.MustParseAddr("192.168.10.254"), Hostname: "node-1"},
	knownMAC2: {Hostname: "node-2"},
}

func fullServer() *Server {
	return &Server{
		Interface: "eth1", Mode: ModeFull, ServerIP: netip.MustParseAddr("192.168.10.1"),
		Reservations: reservations, HTTPBaseURL: baseURL,
		DNS: []netip.Addr{netip.MustParseAddr("192.168.10.53")}, DomainName: "lab.example",
	}
}

func proxyServer() *Server {
	return &Server{
		Interface: "eth1", Mode: ModeProxy, ServerIP: netip.MustParseAddr("192.168.10.1"),
		Reservations: reservations, HTTPBaseURL: baseURL,
	}
}

func withDiscovery(s *Server) *Server {
	s.Discovery = true
	if s.Mode == ModeFull {
		s.Pool = &Pool{
			Subnet: netip.MustParsePrefix("192.168.10.0/24"),
			Start:  netip.MustParseAddr("192.168.10.100"), End: netip.MustParseAddr("192.168.10.101"),
			Gateway: netip.MustParseAddr("192.168.10.254"),
		}
	}
	return s
}

// Client kinds.
var (
	biosPXE = []dhcpv4.Modifier{
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00000:UNDI:002001")),
		dhcpv4.WithOption(dhcpv4.OptClientArch(iana.INTEL_X86PC)),
	}
	uefiPXE = []dhcpv4.Modifier{
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00007:UNDI:003016")),
		dhcpv4.WithOption(dhcpv4.OptClientArch(iana.EFI_X86_64)),
	}
	uefiPXE9 = []dhcpv4.Modifier{
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00009:UNDI:003016")),
		dhcpv4.WithOption(dhcpv4.OptClientArch(iana.EFI_BC)),
	}
	// A UEFI client that says its architecture only in its vendor class.
	uefiNoOpt93 = []dhcpv4.Modifier{
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00007:UNDI:003016")),
	}
	arm64PXE = []dhcpv4.Modifier{
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00011:UNDI:003016")),
		dhcpv4.WithOption(dhcpv4.OptClientArch(iana.EFI_ARM64)),
	}
	// iPXE sends its user class as plain "iPXE" (not RFC 3004).
	ipxeClient = []dhcpv4.Modifier{
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00000:UNDI:002001")),
		dhcpv4.WithOption(dhcpv4.OptClientArch(iana.INTEL_X86PC)),
		dhcpv4.WithUserClass("iPXE", false),
	}
	ipxeRFC3004 = []dhcpv4.Modifier{
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00007:UNDI:003016")),
		dhcpv4.WithOption(dhcpv4.OptClientArch(iana.EFI_X86_64)),
		dhcpv4.WithUserClass("iPXE", true),
	}
	plainClient = []dhcpv4.Modifier{dhcpv4.WithOption(dhcpv4.OptClassIdentifier("udhcp 1.35.0"))}
)

func join(groups ...[]dhcpv4.Modifier) []dhcpv4.Modifier {
	var out []dhcpv4.Modifier
	for _, g := range groups {
		out = append(out, g...)
	}
	return out
}

func mustMAC(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

func discover(mac string, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	// PXE ROMs set the broadcast bit; tests of unicast clients clear it.
	d, err := dhcpv4.NewDiscovery(mustMAC(mac), append([]dhcpv4.Modifier{dhcpv4.WithBroadcast(true)}, mods...)...)
	if err != nil {
		panic(err)
	}
	return d
}

func request(mac string, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	return discover(mac, append([]dhcpv4.Modifier{dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest)}, mods...)...)
}

func requested(ip string) dhcpv4.Modifier {
	return dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP(ip)))
}

func serverID(ip string) dhcpv4.Modifier {
	return dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.ParseIP(ip)))
}

// summary is what the tests compare of a reply.
type summary struct {
	Type        string
	YIAddr      string
	SIAddr      string
	GIAddr      string
	File        string
	Option67    string
	ServerID    string
	VendorClass string
	Option43    []byte
	Mask        string
	Router      string
	DNS         string
	Domain      string
	Hostname    string
	Lease       time.Duration
	Broadcast   bool
	UUID        []byte
	RelayInfo   []byte
	IPXEEncap   []byte // option 175
}

func summarize(r *dhcpv4.DHCPv4) *summary {
	if r == nil {
		return nil
	}
	s := &summary{
		Type: r.MessageType().String(), YIAddr: r.YourIPAddr.String(), SIAddr: r.ServerIPAddr.String(),
		GIAddr: r.GatewayIPAddr.String(), File: r.BootFileName, Option67: r.BootFileNameOption(),
		VendorClass: r.ClassIdentifier(), Option43: r.GetOneOption(dhcpv4.OptionVendorSpecificInformation),
		Domain: r.DomainName(), Hostname: r.HostName(), Broadcast: r.IsBroadcast(),
		UUID:      r.GetOneOption(dhcpv4.OptionClientMachineIdentifier),
		RelayInfo: r.GetOneOption(dhcpv4.OptionRelayAgentInformation),
		IPXEEncap: r.GetOneOption(dhcpv4.GenericOptionCode(175)),
	}
	if sid := r.ServerIdentifier(); sid != nil {
		s.ServerID = sid.String()
	}
	if m := r.SubnetMask(); m != nil {
		s.Mask = net.IP(m).String()
	}
	if rt := r.Router(); len(rt) > 0 {
		s.Router = rt[0].String()
	}
	if d := r.DNS(); len(d) > 0 {
		s.DNS = d[0].String()
	}
	if r.Options.Has(dhcpv4.OptionIPAddressLeaseTime) {
		s.Lease = r.IPAddressLeaseTime(0)
	}
	return s
}

var pxe43 = []byte{6, 1, 8, 255}

// fullOffer is the OFFER of knownMAC's reservation with the given boot file.
func fullReply(typ, file string, pxe bool) *summary {
	s := &summary{
		Type: typ, YIAddr: "192.168.10.21", SIAddr: "0.0.0.0", GIAddr: "0.0.0.0", ServerID: "192.168.10.1",
		Mask: "255.255.255.0", Router: "192.168.10.254", DNS: "192.168.10.53", Domain: "lab.example",
		Hostname: "node-1", Lease: time.Hour, Broadcast: true,
	}
	if file != "" {
		s.SIAddr, s.File, s.Option67 = "192.168.10.1", file, file
	}
	if pxe {
		s.VendorClass, s.Option43 = "PXEClient", pxe43
	}
	return s
}

// ipxeFull is a full-mode reply to iPXE: no PXE vendor options, and iPXE's no-pxedhcp set.
func ipxeFull(s *summary) *summary {
	s.IPXEEncap = []byte{176, 1, 1}
	return s
}

func proxyReply(typ, file string) *summary {
	return &summary{
		Type: typ, YIAddr: "0.0.0.0", SIAddr: "192.168.10.1", GIAddr: "0.0.0.0", ServerID: "192.168.10.1",
		File: file, Option67: file, VendorClass: "PXEClient", Option43: pxe43, Broadcast: true,
	}
}

func TestHandle(t *testing.T) {
	scriptURL := baseURL + "/boot/" + knownMAC + ".ipxe"
	relayed := []dhcpv4.Modifier{
		dhcpv4.WithRelay(net.ParseIP("10.9.0.1")),
		dhcpv4.WithOption(dhcpv4.OptRelayAgentInfo(dhcpv4.OptGeneric(dhcpv4.GenericOptionCode(1), []byte("port7")))),
	}
	withRelay := func(s *summary) *summary {
		s.GIAddr = "10.9.0.1"
		s.RelayInfo = []byte{1, 5, 'p', 'o', 'r', 't', '7'}
		s.Broadcast = false // relays unicast; so does the reply to them
		return s
	}
	noBroadcast := func(s *summary) *summary { s.Broadcast = false; return s }
	tests := []struct {
		name       string
		server     *Server
		req        *dhcpv4.DHCPv4
		want       *summary
		wantReason string
	}{
		{"full: BIOS PXE gets its address and undionly.kpxe", fullServer(),
			discover(knownMAC, biosPXE...), fullReply("OFFER", "undionly.kpxe", true), ReasonOffer},
		{"full: UEFI x86-64 (arch 7) gets ipxe.efi", fullServer(),
			discover(knownMAC, uefiPXE...), fullReply("OFFER", "ipxe.efi", true), ReasonOffer},
		{"full: UEFI x86-64 (arch 9) gets ipxe.efi", fullServer(),
			discover(knownMAC, uefiPXE9...), fullReply("OFFER", "ipxe.efi", true), ReasonOffer},
		{"full: UEFI arch read from the vendor class without option 93", fullServer(),
			discover(knownMAC, uefiNoOpt93...), fullReply("OFFER", "ipxe.efi", true), ReasonOffer},
		{"full: a configured UEFI boot file (snponly.efi)", func() *Server { s := fullServer(); s.UEFIBootFile = "snponly.efi"; return s }(),
			discover(knownMAC, uefiPXE...), fullReply("OFFER", "snponly.efi", true), ReasonOffer},
		{"full: iPXE gets its per-MAC script URL", fullServer(),
			discover(knownMAC, ipxeClient...), ipxeFull(fullReply("OFFER", scriptURL, false)), ReasonOffer},
		{"full: iPXE with an RFC 3004 user class", fullServer(),
			discover(knownMAC, ipxeRFC3004...), ipxeFull(fullReply("OFFER", scriptURL, false)), ReasonOffer},
		{"full: REQUEST for the reserved address is ACKed with boot options", fullServer(),
			request(knownMAC, join(biosPXE, []dhcpv4.Modifier{requested("192.168.10.21"), serverID("192.168.10.1")})...),
			fullReply("ACK", "undionly.kpxe", true), ReasonAck},
		{"full: a renewing client (ciaddr, no option 50) is ACKed", fullServer(),
			request(knownMAC, dhcpv4.WithClientIP(net.ParseIP("192.168.10.21")), dhcpv4.WithBroadcast(false)),
			noBroadcast(fullReply("ACK", "", false)), ReasonAck},
		{"full: REQUEST for another address is NAKed", fullServer(),
			request(knownMAC, requested("192.168.10.99")),
			&summary{Type: "NAK", YIAddr: "0.0.0.0", SIAddr: "0.0.0.0", GIAddr: "0.0.0.0", ServerID: "192.168.10.1", Broadcast: true}, ReasonNak},
		{"full: REQUEST naming another server is ignored", fullServer(),
			request(knownMAC, requested("192.168.10.21"), serverID("192.168.10.2")), nil, ReasonOtherServer},
		{"full: REQUEST without an address is ignored", fullServer(),
			request(knownMAC), nil, ReasonNoRequestedAddress},
		{"full: the installed OS (no PXEClient) gets its address, no boot options", fullServer(),
			discover(knownMAC, plainClient...), fullReply("OFFER", "", false), ReasonOffer},
		{"full: a known ARM64 host gets its address but no boot file", fullServer(),
			discover(knownMAC, arm64PXE...), fullReply("OFFER", "", false), ReasonOffer},
		{"full: relayed DISCOVER: giaddr and option 82 are kept", fullServer(),
			discover(knownMAC, join(biosPXE, relayed)...), withRelay(fullReply("OFFER", "undionly.kpxe", true)), ReasonOffer},
		{"full: relayed NAK has the broadcast bit", fullServer(),
			request(knownMAC, join(relayed, []dhcpv4.Modifier{requested("192.168.10.99"), dhcpv4.WithBroadcast(false)})...),
			&summary{Type: "NAK", YIAddr: "0.0.0.0", SIAddr: "0.0.0.0", GIAddr: "10.9.0.1", ServerID: "192.168.10.1", Broadcast: true, RelayInfo: []byte{1, 5, 'p', 'o', 'r', 't', '7'}}, ReasonNak},
		{"full: unknown MAC is ignored", fullServer(),
			discover(unknownMAC, biosPXE...), nil, ReasonUnknownMAC},
		{"full: known MAC without address and no pool is ignored", fullServer(),
			discover(knownMAC2, biosPXE...), nil, ReasonNoAddress},
		{"full+discovery: unknown PXE client gets the first pool address", withDiscovery(fullServer()),
			discover(unknownMAC, biosPXE...),
			&summary{Type: "OFFER", YIAddr: "192.168.10.100", SIAddr: "192.168.10.1", GIAddr: "0.0.0.0", ServerID: "192.168.10.1",
				File: "undionly.kpxe", Option67: "undionly.kpxe", VendorClass: "PXEClient", Option43: pxe43,
				Mask: "255.255.255.0", Router: "192.168.10.254", DNS: "192.168.10.53", Domain: "lab.example", Lease: time.Hour, Broadcast: true},
			ReasonOffer},
		{"full+discovery: known host without a reserved address uses the pool, keeps its hostname", withDiscovery(fullServer()),
			discover(knownMAC2, plainClient...),
			&summary{Type: "OFFER", YIAddr: "192.168.10.100", SIAddr: "0.0.0.0", GIAddr: "0.0.0.0", ServerID: "192.168.10.1",
				Mask: "255.255.255.0", Router: "192.168.10.254", DNS: "192.168.10.53", Domain: "lab.example", Hostname: "node-2", Lease: time.Hour, Broadcast: true},
			ReasonOffer},
		{"full+discovery: unknown device that is not netbooting is ignored", withDiscovery(fullServer()),
			discover(unknownMAC, plainClient...), nil, ReasonNotNetboot},
		{"full+discovery: unknown ARM64 client is ignored", withDiscovery(fullServer()),
			discover(unknownMAC, arm64PXE...), nil, ReasonUnsupportedArch},
		{"full+discovery: pool client relayed from another subnet is ignored", withDiscovery(fullServer()),
			discover(unknownMAC, join(biosPXE, relayed)...), nil, ReasonNoAddress},

		{"proxy: BIOS PXE gets boot options and no address", proxyServer(),
			discover(knownMAC, biosPXE...), proxyReply("OFFER", "undionly.kpxe"), ReasonProxyOffer},
		{"proxy: UEFI gets ipxe.efi", proxyServer(),
			discover(knownMAC, uefiPXE...), proxyReply("OFFER", "ipxe.efi"), ReasonProxyOffer},
		{"proxy: iPXE gets its script URL", proxyServer(),
			discover(knownMAC, ipxeClient...), proxyReply("OFFER", scriptURL), ReasonProxyOffer},
		{"proxy: the client UUID (option 97) is echoed", proxyServer(),
			discover(knownMAC, join(biosPXE, []dhcpv4.Modifier{dhcpv4.WithGeneric(dhcpv4.OptionClientMachineIdentifier, []byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16})})...),
			func() *summary {
				s := proxyReply("OFFER", "undionly.kpxe")
				s.UUID = []byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
				return s
			}(), ReasonProxyOffer},
		{"proxy: relayed DISCOVER keeps giaddr and option 82", proxyServer(),
			discover(knownMAC, join(biosPXE, relayed)...), withRelay(proxyReply("OFFER", "undionly.kpxe")), ReasonProxyOffer},
		{"proxy: REQUEST to the site server is ignored", proxyServer(),
			request(knownMAC, join(biosPXE, []dhcpv4.Modifier{requested("192.168.10.77"), serverID("192.168.10.2")})...), nil, ReasonOtherServer},
		{"proxy: INIT-REBOOT REQUEST (no ciaddr) is ignored", proxyServer(),
			request(knownMAC, join(biosPXE, []dhcpv4.Modifier{requested("192.168.10.77")})...), nil, ReasonOtherServer},
		{"proxy: REQUEST on the proxy port is ACKed with boot options", proxyServer(),
			request(knownMAC, join(ipxeClient, []dhcpv4.Modifier{dhcpv4.WithClientIP(net.ParseIP("192.168.10.77")), serverID("192.168.10.1"), dhcpv4.WithBroadcast(false)})...),
			noBroadcast(proxyReply("ACK", scriptURL)), ReasonProxyAck},
		{"proxy: known host not netbooting is ignored", proxyServer(),
			discover(knownMAC, plainClient...), nil, ReasonNotNetboot},
		{"proxy: ARM64 is ignored", proxyServer(),
			discover(knownMAC, arm64PXE...), nil, ReasonUnsupportedArch},
		{"proxy: unknown MAC is ignored", proxyServer(),
			discover(unknownMAC, biosPXE...), nil, ReasonUnknownMAC},
		{"proxy+discovery: unknown PXE client gets boot options", withDiscovery(proxyServer()),
			discover(unknownMAC, uefiPXE...), proxyReply("OFFER", "ipxe.efi"), ReasonProxyOffer},

		{"a BOOTREPLY is ignored", fullServer(),
			func() *dhcpv4.DHCPv4 {
				d := discover(knownMAC, biosPXE...)
				d.OpCode = dhcpv4.OpcodeBootReply
				return d
			}(), nil, ReasonNotRequest},
		{"BOOTP without a DHCP message type is ignored", fullServer(),
			func() *dhcpv4.DHCPv4 {
				d := discover(knownMAC, biosPXE...)
				d.Options.Del(dhcpv4.OptionDHCPMessageType)
				return d
			}(), nil, ReasonNotRequest},
		{"an 8-byte hardware address is ignored", fullServer(),
			func() *dhcpv4.DHCPv4 {
				d := discover(knownMAC, biosPXE...)
				d.ClientHWAddr = append(d.ClientHWAddr, 1, 2)
				return d
			}(), nil, ReasonBadHardwareAddress},
		{"INFORM is not answered", fullServer(),
			discover(knownMAC, dhcpv4.WithMessageType(dhcpv4.MessageTypeInform)), nil, ReasonUnsupportedMessage},
		{"RELEASE is not answered", fullServer(),
			discover(knownMAC, dhcpv4.WithMessageType(dhcpv4.MessageTypeRelease)), nil, ReasonReleased},
		{"nil packet", fullServer(), nil, nil, ReasonMalformed},
		{"a misconfigured server answers nothing", &Server{Mode: ModeFull, Reservations: reservations},
			discover(knownMAC, biosPXE...), nil, ReasonMisconfigured},
		{"a failed lookup drops the request", &Server{
			Interface: "eth1", ServerIP: netip.MustParseAddr("192.168.10.1"), HTTPBaseURL: baseURL,
			Reservations: failingReservations{},
		}, discover(knownMAC, biosPXE...), nil, ReasonLookupError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, reason := tt.server.Handle(tt.req)
			if reason != tt.wantReason {
				t.Errorf("reason = %q, want %q", reason, tt.wantReason)
			}
			if diff := cmp.Diff(tt.want, summarize(resp)); diff != "" {
				t.Errorf("reply (-want +got):\n%s", diff)
			}
			if resp != nil {
				if resp.TransactionID != tt.req.TransactionID {
					t.Errorf("xid = %v, want %v", resp.TransactionID, tt.req.TransactionID)
				}
				if resp.ClientHWAddr.String() != tt.req.ClientHWAddr.String() {
					t.Errorf("chaddr = %v, want %v", resp.ClientHWAddr, tt.req.ClientHWAddr)
				}
				if resp.OpCode != dhcpv4.OpcodeBootReply {
					t.Errorf("op = %v, want BootReply", resp.OpCode)
				}
				// The wire form parses back to the same reply.
				back, err := dhcpv4.FromBytes(resp.ToBytes())
				if err != nil {
					t.Fatalf("reply does not parse back: %v", err)
				}
				if diff := cmp.Diff(summarize(resp), summarize(back)); diff != "" {
					t.Errorf("reply changed on the wire (-sent +parsed):\n%s", diff)
				}
			}
		})
	}
}

type failingReservations struct{}

func (failingReservations) Reservation(context.Context, net.HardwareAddr) (Reservation, bool, error) {
	return Reservation{}, false, errors.New("cache not synced")
}

// TestDiscoveryPool walks the pool through offers, requests, NAKs, exhaustion, release and expiry.
func TestDiscoveryPool(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s := withDiscovery(fullServer())
	s.Now = func() time.Time { return now }
	macA, macB, macC := "52:54:00:aa:00:01", "52:54:00:aa:00:02", "52:54:00:aa:00:03"
	yi := func(r *dhcpv4.DHCPv4, reason string) string {
		t.Helper()
		if r == nil {
			return reason
		}
		return r.MessageType().String() + " " + r.YourIPAddr.String()
	}
	steps := []struct {
		name string
		req  *dhcpv4.DHCPv4
		want string
	}{
		{"A is offered the first address", discover(macA, biosPXE...), "OFFER 192.168.10.100"},
		{"A is offered the same address again", discover(macA, ipxeClient...), "OFFER 192.168.10.100"},
		{"B is offered the second address", discover(macB, biosPXE...), "OFFER 192.168.10.101"},
		{"C finds the pool exhausted", discover(macC, biosPXE...), ReasonNoAddress},
		{"A requests B's address: NAK", preq(macA, requested("192.168.10.101"), serverID("192.168.10.1")), "NAK 0.0.0.0"},
		{"A requests its address: ACK", preq(macA, requested("192.168.10.100"), serverID("192.168.10.1")), "ACK 192.168.10.100"},
		{"B takes another server's offer: its offer is freed", preq(macB, requested("10.0.0.9"), serverID("192.168.10.2")), ReasonOtherServer},
		{"C now gets B's former address", discover(macC, biosPXE...), "OFFER 192.168.10.101"},
		{"A releases its lease", discover(macA, dhcpv4.WithMessageType(dhcpv4.MessageTypeRelease)), ReasonReleased},
		{"B gets A's former address", discover(macB, biosPXE...), "OFFER 192.168.10.100"},
		{"A is out of addresses while the offers are held", discover(macA, biosPXE...), ReasonNoAddress},
	}
	for _, st := range steps {
		resp, reason := s.Handle(st.req)
		if got := yi(resp, reason); got != st.want {
			t.Fatalf("%s: got %q, want %q", st.name, got, st.want)
		}
	}
	// Offers not requested expire after offerHold: A gets an address again.
	now = now.Add(offerHold + time.Second)
	if got := yi(s.Handle(discover(macA, biosPXE...))); got != "OFFER 192.168.10.100" {
		t.Fatalf("after the offers expired: got %q", got)
	}
	// A client that kept its lease across a server restart (INIT-REBOOT) gets it back when free.
	s2 := withDiscovery(fullServer())
	s2.Now = func() time.Time { return now }
	if got := yi(s2.Handle(preq(macC, requested("192.168.10.101")))); got != "ACK 192.168.10.101" {
		t.Fatalf("INIT-REBOOT after restart: got %q", got)
	}
	if got := yi(s2.Handle(preq(macA, requested("192.168.10.101")))); got != "NAK 0.0.0.0" {
		t.Fatalf("INIT-REBOOT for a taken address: got %q", got)
	}
	if got := yi(s2.Handle(preq(macA, requested("192.168.10.200")))); got != "NAK 0.0.0.0" {
		t.Fatalf("INIT-REBOOT for an address outside the pool: got %q", got)
	}
	// DECLINE: the address is in use by someone else; it is not offered again for a lease time.
	if _, reason := s2.Handle(request(macC, dhcpv4.WithMessageType(dhcpv4.MessageTypeDecline), requested("192.168.10.101"))); reason != ReasonReleased {
		t.Fatalf("DECLINE: %s", reason)
	}
	if got := yi(s2.Handle(discover(macC, biosPXE...))); got != "OFFER 192.168.10.100" {
		t.Fatalf("after DECLINE: got %q", got)
	}
}

func TestValidate(t *testing.T) {
	ok := fullServer()
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid server: %v", err)
	}
	bad := []struct {
		name string
		mod  func(*Server)
	}{
		{"no interface", func(s *Server) { s.Interface = "" }},
		{"bad mode", func(s *Server) { s.Mode = "relay" }},
		{"no server IP", func(s *Server) { s.ServerIP = netip.Addr{} }},
		{"IPv6 server IP", func(s *Server) { s.ServerIP = netip.MustParseAddr("fd00::1") }},
		{"no reservations", func(s *Server) { s.Reservations = nil }},
		{"no HTTP base URL", func(s *Server) { s.HTTPBaseURL = "" }},
		{"ftp base URL", func(s *Server) { s.HTTPBaseURL = "ftp://x" }},
		{"base URL too long for the file field", func(s *Server) { s.HTTPBaseURL = "http://" + string(make([]byte, 100)) }},
		{"discovery in full mode without pool", func(s *Server) { s.Discovery = true }},
		{"pool outside subnet", func(s *Server) {
			s.Pool = &Pool{Subnet: netip.MustParsePrefix("10.0.0.0/24"), Start: netip.MustParseAddr("10.0.1.1"), End: netip.MustParseAddr("10.0.1.2")}
		}},
		{"pool reversed", func(s *Server) {
			s.Pool = &Pool{Subnet: netip.MustParsePrefix("10.0.0.0/24"), Start: netip.MustParseAddr("10.0.0.9"), End: netip.MustParseAddr("10.0.0.2")}
		}},
		{"pool too big", func(s *Server) {
			s.Pool = &Pool{Subnet: netip.MustParsePrefix("10.0.0.0/8"), Start: netip.MustParseAddr("10.0.0.1"), End: netip.MustParseAddr("10.9.0.2")}
		}},
		{"server IP inside the pool", func(s *Server) {
			s.Pool = &Pool{Subnet: netip.MustParsePrefix("192.168.10.0/24"), Start: netip.MustParseAddr("192.168.10.1"), End: netip.MustParseAddr("192.168.10.9")}
		}},
		{"IPv6 DNS", func(s *Server) { s.DNS = []netip.Addr{netip.MustParseAddr("::1")} }},
		{"negative lease", func(s *Server) { s.LeaseTime = -time.Second }},
	}
	for _, b := range bad {
		s := fullServer()
		b.mod(s)
		if err := s.Validate(); err == nil {
			t.Errorf("%s: Validate() = nil, want an error", b.name)
		}
	}
}

// preq is a REQUEST from a BIOS PXE client.
func preq(mac string, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	return request(mac, join(biosPXE, mods)...)
}
