package dhcp

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/basalt-dev/basalt/test/ports"
)

// dhcpClient sends requests to the server and reads replies on its own socket.
type dhcpClient struct {
	t    *testing.T
	conn *net.UDPConn
	to   *net.UDPAddr
}

func newClient(t *testing.T, bind string, to *net.UDPAddr) *dhcpClient {
	t.Helper()
	ua, err := net.ResolveUDPAddr("udp4", bind)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.ListenUDP("udp4", ua)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return &dhcpClient{t: t, conn: c, to: to}
}

// exchange sends req and returns the reply with its xid, or nil when none comes within wait.
func (c *dhcpClient) exchange(req *dhcpv4.DHCPv4, wait time.Duration) *dhcpv4.DHCPv4 {
	c.t.Helper()
	if _, err := c.conn.WriteTo(req.ToBytes(), c.to); err != nil {
		c.t.Fatal(err)
	}
	deadline := time.Now().Add(wait)
	buf := make([]byte, 2048)
	for {
		_ = c.conn.SetReadDeadline(deadline)
		n, _, err := c.conn.ReadFrom(buf)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return nil
		}
		if err != nil {
			c.t.Fatal(err)
		}
		resp, err := dhcpv4.FromBytes(buf[:n])
		if err != nil {
			c.t.Fatalf("reply does not parse: %v", err)
		}
		if resp.TransactionID == req.TransactionID {
			return resp
		}
	}
}

// waitServing sends req until the server answers (it may not be listening yet).
func (c *dhcpClient) waitServing(req *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
	c.t.Helper()
	for range 50 {
		if r := c.exchange(req, 100*time.Millisecond); r != nil {
			return r
		}
	}
	c.t.Fatal("the server never answered")
	return nil
}

func metric(reason string) float64 { return testutil.ToFloat64(packetsTotal.WithLabelValues(reason)) }

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for range 100 {
		if cond() {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

// TestServeLoopback runs a full-mode server on 127.0.0.1 and drives it with real packets: the
// DISCOVER-OFFER-REQUEST-ACK exchange (replies broadcast on lo), a NAK, iPXE, a relayed request
// (reply unicast to the relay), unknown, malformed and oversized packets, and a clean stop.
func TestServeLoopback(t *testing.T) {
	p := ports.FreeLoopbackUDP(t, 3)
	serverPort, clientPort, relayPort := p[0], p[1], p[2]
	mac := "52:54:00:00:00:21"
	s := &Server{
		Interface: "lo", Addr: "127.0.0.1:" + strconv.Itoa(serverPort), Mode: ModeFull,
		ServerIP:     netip.MustParseAddr("127.0.0.1"),
		Reservations: StaticReservations{mac: {Address: netip.MustParsePrefix("127.0.0.21/8"), Hostname: "node-21"}},
		HTTPBaseURL:  "http://127.0.0.1:8080", ClientPort: clientPort, RelayPort: relayPort,
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.ListenAndServe(ctx) }()

	to := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: serverPort}
	// The client has no address yet: it listens on 0.0.0.0 and hears broadcast replies.
	client := newClient(t, "0.0.0.0:"+strconv.Itoa(clientPort), to)

	offer := client.waitServing(discover(mac, biosPXE...))
	if offer.MessageType() != dhcpv4.MessageTypeOffer || offer.YourIPAddr.String() != "127.0.0.21" || offer.BootFileName != "undionly.kpxe" {
		t.Fatalf("offer: %s", offer.Summary())
	}
	req, err := dhcpv4.NewRequestFromOffer(offer, biosPXE...)
	if err != nil {
		t.Fatal(err)
	}
	req.SetBroadcast()
	ack := client.exchange(req, 2*time.Second)
	if ack == nil || ack.MessageType() != dhcpv4.MessageTypeAck || ack.YourIPAddr.String() != "127.0.0.21" || ack.HostName() != "node-21" {
		t.Fatalf("ack: %v", ack)
	}
	nak := client.exchange(request(mac, requested("127.0.0.99")), 2*time.Second)
	if nak == nil || nak.MessageType() != dhcpv4.MessageTypeNak {
		t.Fatalf("nak: %v", nak)
	}
	ipxe := client.exchange(discover(mac, ipxeClient...), 2*time.Second)
	if ipxe == nil || ipxe.BootFileName != "http://127.0.0.1:8080/boot/"+mac+".ipxe" {
		t.Fatalf("iPXE offer: %v", ipxe)
	}

	// A relay agent on 127.0.0.1:relayPort forwards a request; the reply comes back to it.
	relay := newClient(t, "127.0.0.1:"+strconv.Itoa(relayPort), to)
	relayed := relay.exchange(discover(mac, join(uefiPXE, []dhcpv4.Modifier{dhcpv4.WithRelay(net.IPv4(127, 0, 0, 1))})...), 2*time.Second)
	if relayed == nil || relayed.BootFileName != "ipxe.efi" || !relayed.GatewayIPAddr.Equal(net.IPv4(127, 0, 0, 1)) {
		t.Fatalf("relayed offer: %v", relayed)
	}

	// Unknown MACs, garbage and oversized datagrams get no answer and are counted.
	unknown0, malformed0, oversized0 := metric(ReasonUnknownMAC), metric(ReasonMalformed), metric(ReasonOversized)
	if r := client.exchange(discover(unknownMAC, biosPXE...), 300*time.Millisecond); r != nil {
		t.Fatalf("unknown MAC answered: %s", r.Summary())
	}
	if _, err := client.conn.WriteTo([]byte("GET / HTTP/1.0\r\n\r\n"), to); err != nil {
		t.Fatal(err)
	}
	big := discover(mac, biosPXE...)
	big.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionVendorSpecificInformation, make([]byte, 250)))
	for i := range 8 { // 8 × 250 bytes of options: larger than MaxPacketSize
		big.Options[uint8(200+i)] = make([]byte, 250)
	}
	if r := client.exchange(big, 300*time.Millisecond); r != nil {
		t.Fatalf("oversized packet answered: %s", r.Summary())
	}
	eventually(t, "the counters", func() bool {
		return metric(ReasonUnknownMAC) == unknown0+1 && metric(ReasonMalformed) == malformed0+1 && metric(ReasonOversized) == oversized0+1
	})

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("ListenAndServe: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ListenAndServe did not return after cancel")
	}
	// The socket is closed: the port can be bound again without SO_REUSEPORT.
	c, err := net.ListenPacket("udp4", "127.0.0.1:"+strconv.Itoa(serverPort))
	if err != nil {
		t.Fatalf("port still bound after stop: %v", err)
	}
	_ = c.Close()
}

// TestServeProxyLoopback runs proxy mode with its proxy port: a DISCOVER on the DHCP port gets a
// broadcast proxy offer, a REQUEST on the proxy port an ACK sent back to the sender.
func TestServeProxyLoopback(t *testing.T) {
	p := ports.FreeLoopbackUDP(t, 3)
	dhcpPort, proxyPort, clientPort := p[0], p[1], p[2]
	s := &Server{
		Interface: "lo", Addr: "127.0.0.1:" + strconv.Itoa(dhcpPort), ProxyAddr: "127.0.0.1:" + strconv.Itoa(proxyPort),
		Mode: ModeProxy, ServerIP: netip.MustParseAddr("127.0.0.1"), Reservations: reservations,
		HTTPBaseURL: "http://127.0.0.1:8080", ClientPort: clientPort,
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.ListenAndServe(ctx) }()

	client := newClient(t, "0.0.0.0:"+strconv.Itoa(clientPort), &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: dhcpPort})
	offer := client.waitServing(discover(knownMAC, uefiPXE...))
	if offer.MessageType() != dhcpv4.MessageTypeOffer || !offer.YourIPAddr.IsUnspecified() || offer.BootFileName != "ipxe.efi" || offer.ClassIdentifier() != "PXEClient" {
		t.Fatalf("proxy offer: %s", offer.Summary())
	}
	// iPXE, with its address from the site server, asks the proxy on port 4011.
	bootClient := newClient(t, "127.0.0.1:0", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: proxyPort})
	ack := bootClient.exchange(request(knownMAC, join(ipxeClient, []dhcpv4.Modifier{
		dhcpv4.WithClientIP(net.IPv4(127, 0, 0, 1)), serverID("127.0.0.1"), dhcpv4.WithBroadcast(false),
	})...), 2*time.Second)
	if ack == nil || ack.MessageType() != dhcpv4.MessageTypeAck || ack.BootFileName != "http://127.0.0.1:8080/boot/"+knownMAC+".ipxe" {
		t.Fatalf("proxy ack: %v", ack)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("ListenAndServe: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ListenAndServe did not return after cancel")
	}
}

func TestListenAndServeRefusesBadConfig(t *testing.T) {
	s := &Server{Mode: ModeFull}
	if err := s.ListenAndServe(context.Background()); err == nil {
		t.Fatal("ListenAndServe with no fields returned nil")
	}
}
