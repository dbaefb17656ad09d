package dhcp

import (
	"net"
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// FuzzHandle feeds arbitrary bytes through the same path as the socket loop: dhcpv4.FromBytes,
// then Handle on a full-mode server with a discovery pool and on a proxy-mode server. Handle must
// never panic, and every reply must serialize and parse back.
func FuzzHandle(f *testing.F) {
	seeds := []*dhcpv4.DHCPv4{
		discover(knownMAC, biosPXE...),
		discover(knownMAC, uefiPXE...),
		discover(unknownMAC, ipxeClient...),
		discover(knownMAC, ipxeRFC3004...),
		discover(knownMAC, arm64PXE...),
		discover(knownMAC, join(biosPXE, []dhcpv4.Modifier{dhcpv4.WithRelay(net.IPv4(10, 9, 0, 1))})...),
		request(knownMAC, requested("192.168.10.21"), serverID("192.168.10.1")),
		request(knownMAC, join(ipxeClient, []dhcpv4.Modifier{dhcpv4.WithClientIP(net.IPv4(192, 168, 10, 77))})...),
		discover(knownMAC, dhcpv4.WithMessageType(dhcpv4.MessageTypeDecline), requested("192.168.10.100")),
	}
	for _, s := range seeds {
		f.Add(s.ToBytes())
	}
	f.Add([]byte{})
	f.Add([]byte("not a DHCP packet"))
	full, proxy := withDiscovery(fullServer()), withDiscovery(proxyServer())
	f.Fuzz(func(t *testing.T, b []byte) {
		req, err := dhcpv4.FromBytes(b)
		if err != nil {
			return // dropped as ReasonMalformed before Handle
		}
		for _, s := range []*Server{full, proxy, fullServer()} {
			resp, reason := s.Handle(req)
			if reason == "" {
				t.Fatal("empty reason")
			}
			if resp == nil {
				continue
			}
			if resp.OpCode != dhcpv4.OpcodeBootReply || resp.TransactionID != req.TransactionID {
				t.Fatalf("reply is not a reply to the request: %s", resp.Summary())
			}
			if _, err := dhcpv4.FromBytes(resp.ToBytes()); err != nil {
				t.Fatalf("reply does not parse back: %v", err)
			}
		}
	})
}
