package dhcp

import (
	"fmt"
	"net"
	"net/netip"
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

// benchSite is a rack of 500 reserved hosts (52:54:00:00:xx:yy → 192.168.10.x) and a discovery
// pool of 100 addresses.
func benchSite(mode Mode) *Server {
	res := StaticReservations{}
	for i := range 500 {
		mac := net.HardwareAddr{0x52, 0x54, 0, 0, byte(i >> 8), byte(i)}
		res[mac.String()] = Reservation{Address: netip.PrefixFrom(netip.AddrFrom4([4]byte{192, 168, 10 + byte(i/200), byte(10 + i%200)}), 21),
			Gateway: netip.MustParseAddr("192.168.8.1"), Hostname: fmt.Sprintf("node-%03d", i)}
	}
	s := &Server{
		Interface: "eth1", Mode: mode, ServerIP: netip.MustParseAddr("192.168.8.2"),
		Reservations: res, HTTPBaseURL: "http://192.168.8.2:8080", Discovery: true,
		DNS: []netip.Addr{netip.MustParseAddr("192.168.8.53")}, DomainName: "rack1.example",
	}
	if mode == ModeFull {
		s.Pool = &Pool{Subnet: netip.MustParsePrefix("192.168.8.0/21"),
			Start: netip.MustParseAddr("192.168.15.100"), End: netip.MustParseAddr("192.168.15.199"),
			Gateway: netip.MustParseAddr("192.168.8.1")}
	}
	return s
}

// benchDiscover is the DISCOVER of a x86-64 UEFI PXE ROM (or of iPXE once loaded): the options
// firmware sends, the client's UUID included.
func benchDiscover(mac net.HardwareAddr, ipxe bool) *dhcpv4.DHCPv4 {
	mods := []dhcpv4.Modifier{
		dhcpv4.WithBroadcast(true),
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00007:UNDI:003016")),
		dhcpv4.WithOption(dhcpv4.OptClientArch(iana.EFI_X86_64)),
		dhcpv4.WithOption(dhcpv4.OptMaxMessageSize(1472)),
		dhcpv4.WithOption(dhcpv4.OptGeneric(dhcpv4.OptionClientNetworkInterfaceIdentifier, []byte{1, 3, 16})),
		dhcpv4.WithOption(dhcpv4.OptGeneric(dhcpv4.OptionClientMachineIdentifier,
			append([]byte{0}, 0x4c, 0x4c, 0x45, 0x44, 0, 0x10, 0x38, 0x80, 0x30, 0x48, 0xb2, 0xc0, 0x4f, 0x4b, 0x39, 0x32))),
		dhcpv4.WithRequestedOptions(dhcpv4.OptionSubnetMask, dhcpv4.OptionRouter, dhcpv4.OptionDomainNameServer,
			dhcpv4.OptionHostName, dhcpv4.OptionDomainName, dhcpv4.OptionVendorSpecificInformation,
			dhcpv4.OptionClassIdentifier, dhcpv4.OptionTFTPServerName, dhcpv4.OptionBootfileName),
	}
	if ipxe {
		mods = append(mods, dhcpv4.WithUserClass("iPXE", false))
	}
	d, err := dhcpv4.NewDiscovery(mac, mods...)
	if err != nil {
		panic(err)
	}
	return d
}

func reportPackets(b *testing.B) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "packets/s")
}

// BenchmarkHandleDiscover: the decision for one DISCOVER (Handle), packets per second on one
// core: a reserved host in full mode, unknown hosts from the discovery pool (64 MACs, so the
// lease table holds offers), and iPXE in proxy mode (the script URL).
func BenchmarkHandleDiscover(b *testing.B) {
	reserved := net.HardwareAddr{0x52, 0x54, 0, 0, 0, 42}
	var unknown []*dhcpv4.DHCPv4
	for i := range 64 {
		unknown = append(unknown, benchDiscover(net.HardwareAddr{0x52, 0x54, 0, 0x99, 0, byte(i)}, false))
	}
	for _, tc := range []struct {
		name   string
		mode   Mode
		reqs   []*dhcpv4.DHCPv4
		reason string
	}{
		{"full-reserved-uefi", ModeFull, []*dhcpv4.DHCPv4{benchDiscover(reserved, false)}, ReasonOffer},
		{"full-pool-uefi", ModeFull, unknown, ReasonOffer},
		{"proxy-ipxe", ModeProxy, []*dhcpv4.DHCPv4{benchDiscover(reserved, true)}, ReasonProxyOffer},
	} {
		b.Run(tc.name, func(b *testing.B) {
			s := benchSite(tc.mode)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if resp, reason := s.Handle(tc.reqs[i%len(tc.reqs)]); resp == nil || reason != tc.reason {
					b.Fatalf("reason %s, want %s", reason, tc.reason)
				}
				i++
			}
			reportPackets(b)
		})
	}
}

// BenchmarkServeDiscoverWire: what the server does per packet besides the syscalls: parse the
// datagram, Handle, encode the OFFER (reserved UEFI host, full mode).
func BenchmarkServeDiscoverWire(b *testing.B) {
	s := benchSite(ModeFull)
	pkt := benchDiscover(net.HardwareAddr{0x52, 0x54, 0, 0, 0, 42}, false).ToBytes()
	b.ReportAllocs()
	for b.Loop() {
		req, err := dhcpv4.FromBytes(pkt)
		if err != nil {
			b.Fatal(err)
		}
		resp, reason := s.Handle(req)
		if resp == nil || reason != ReasonOffer {
			b.Fatalf("reason %s", reason)
		}
		if len(resp.ToBytes()) < 300 {
			b.Fatal("short reply")
		}
	}
	reportPackets(b)
}
