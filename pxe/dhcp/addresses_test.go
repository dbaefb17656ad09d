package dhcp

import (
	"net"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// TestClientAddress checks what the server says a MAC's address is: the address full mode
// ACKed, until the lease ends or the client releases it; in proxy mode the address a
// netbooting client's REQUEST named, for ProxyAddressTTL; nothing for offers, unknown MACs,
// clients that are not netbooting, or the server's own address.
func TestClientAddress(t *testing.T) {
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	addr := func(s *Server, mac string) string {
		a, ok := s.ClientAddress(mac)
		if !ok {
			return ""
		}
		return a.String()
	}

	t.Run("full", func(t *testing.T) {
		s := withDiscovery(fullServer())
		s.Now = clock
		if got := addr(s, knownMAC); got != "" {
			t.Fatalf("before any DHCP: %q", got)
		}
		// An OFFER is not a lease.
		s.Handle(discover(knownMAC, ipxeClient...))
		s.Handle(discover(unknownMAC, ipxeClient...))
		if got := addr(s, knownMAC) + addr(s, unknownMAC); got != "" {
			t.Fatalf("after offers: %q", got)
		}
		// ACKs: the reserved address, and a pool address for the discovered machine.
		if _, reason := s.Handle(request(knownMAC, join(ipxeClient, []dhcpv4.Modifier{requested("192.168.10.21"), serverID("192.168.10.1")})...)); reason != ReasonAck {
			t.Fatal(reason)
		}
		if _, reason := s.Handle(request(unknownMAC, join(ipxeClient, []dhcpv4.Modifier{requested("192.168.10.100")})...)); reason != ReasonAck {
			t.Fatal(reason)
		}
		if got := addr(s, knownMAC); got != "192.168.10.21" {
			t.Errorf("reserved: %q", got)
		}
		// Any spelling of the MAC address.
		if got := addr(s, "52-54-00-99-99-99"); got != "192.168.10.100" {
			t.Errorf("pool: %q", got)
		}
		// A NAKed REQUEST changes nothing.
		if _, reason := s.Handle(request(knownMAC, requested("192.168.10.99"))); reason != ReasonNak {
			t.Fatal(reason)
		}
		if got := addr(s, knownMAC); got != "192.168.10.21" {
			t.Errorf("after a NAK: %q", got)
		}
		// RELEASE ends it early; the lease time ends the other.
		rel := request(unknownMAC, dhcpv4.WithMessageType(dhcpv4.MessageTypeRelease))
		s.Handle(rel)
		if got := addr(s, unknownMAC); got != "" {
			t.Errorf("after RELEASE: %q", got)
		}
		now = now.Add(DefaultLeaseTime - time.Second)
		if got := addr(s, knownMAC); got != "192.168.10.21" {
			t.Errorf("before the lease ends: %q", got)
		}
		now = now.Add(time.Second)
		if got := addr(s, knownMAC); got != "" {
			t.Errorf("after the lease ends: %q", got)
		}
		if got := addr(s, "not a MAC"); got != "" {
			t.Errorf("bad MAC: %q", got)
		}
	})

	t.Run("proxy", func(t *testing.T) {
		s := proxyServer()
		s.Now = clock
		// The ROM's DISCOVER names no address.
		s.Handle(discover(knownMAC, biosPXE...))
		if got := addr(s, knownMAC); got != "" {
			t.Fatalf("after DISCOVER: %q", got)
		}
		// The REQUEST to the site server names the address it was offered.
		if _, reason := s.Handle(request(knownMAC, join(ipxeClient, []dhcpv4.Modifier{requested("10.1.2.3"), serverID("10.1.2.1")})...)); reason != ReasonOtherServer {
			t.Fatal(reason)
		}
		if got := addr(s, knownMAC); got != "10.1.2.3" {
			t.Errorf("after the REQUEST to the site server: %q", got)
		}
		// iPXE's REQUEST to the proxy port has its address in ciaddr.
		ci := request(knownMAC, ipxeClient...)
		ci.ClientIPAddr = net.ParseIP("10.1.2.4").To4()
		if _, reason := s.Handle(ci); reason != ReasonProxyAck {
			t.Fatal(reason)
		}
		if got := addr(s, knownMAC); got != "10.1.2.4" {
			t.Errorf("after the proxy REQUEST: %q", got)
		}
		now = now.Add(ProxyAddressTTL)
		if got := addr(s, knownMAC); got != "" {
			t.Errorf("after ProxyAddressTTL: %q", got)
		}
		// Not recorded: a MAC no Host has (no discovery), a client that is not netbooting, the
		// server's own address, loopback.
		for _, req := range []*dhcpv4.DHCPv4{
			request(unknownMAC, join(ipxeClient, []dhcpv4.Modifier{requested("10.1.2.5")})...),
			request(knownMAC2, join(plainClient, []dhcpv4.Modifier{requested("10.1.2.6")})...),
			request(knownMAC, join(ipxeClient, []dhcpv4.Modifier{requested("192.168.10.1")})...),
			request(knownMAC, join(ipxeClient, []dhcpv4.Modifier{requested("127.0.0.1")})...),
		} {
			s.Handle(req)
		}
		for _, mac := range []string{unknownMAC, knownMAC2, knownMAC} {
			if got := addr(s, mac); got != "" {
				t.Errorf("%s: %q, want nothing", mac, got)
			}
		}
	})
}

// TestAddressesBounded checks that the table keeps at most its limit, dropping the oldest.
func TestAddressesBounded(t *testing.T) {
	now := time.Now()
	a := newAddresses(3)
	mac := func(i int) string { return "52:54:00:00:01:" + strconv.Itoa(10+i) }
	for i := range 5 {
		a.record(mac(i), netip.AddrFrom4([4]byte{10, 0, 0, byte(i)}), now.Add(time.Hour))
	}
	// Recording again refreshes an entry's place.
	a.record(mac(2), netip.MustParseAddr("10.0.0.22"), now.Add(time.Hour))
	a.record(mac(5), netip.MustParseAddr("10.0.0.5"), now.Add(time.Hour))
	if a.order.Len() != 3 || len(a.byMAC) != 3 {
		t.Fatalf("%d entries, %d in the map; want 3", a.order.Len(), len(a.byMAC))
	}
	for i, want := range []string{"", "", "10.0.0.22", "", "10.0.0.4", "10.0.0.5"} {
		got, ok := a.lookup(mac(i), now)
		if (want == "") == ok || (ok && got.String() != want) {
			t.Errorf("%s: %v %v, want %q", mac(i), got, ok, want)
		}
	}
}
