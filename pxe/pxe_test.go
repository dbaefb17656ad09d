package pxe

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
	tftpclient "github.com/pin/tftp/v3"

	"github.com/basalt-dev/basalt/agents/protocol"
	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
	"github.com/basalt-dev/basalt/pxe/dhcp"
	"github.com/basalt-dev/basalt/pxe/httpboot"
	"github.com/basalt-dev/basalt/pxe/tftp"
	"github.com/basalt-dev/basalt/test/ports"
)

const mac = "52:54:00:00:00:50"

type hosts struct{}

func (hosts) Target(_ context.Context, m string) (httpboot.Target, error) {
	if m != mac {
		return httpboot.Target{}, nil
	}
	ca, err := os.ReadFile("httpboot/testdata/ca.pem")
	if err != nil {
		return httpboot.Target{}, err
	}
	return httpboot.Target{Known: true, Host: "default/node-50", State: basaltv1.HostStateInspecting, Agent: &httpboot.AgentBoot{
		Bootstrap: protocol.Bootstrap{Server: "https://127.0.0.1:9443", CA: ca, Token: "abc123.0123456789abcdef"},
	}}, nil
}

// testbed is a Config on loopback ports, with files in a temporary folder.
type testbed struct {
	cfg                            Config
	dhcpPort, clientPort, tftpPort int
	httpPort                       int
	ipxe, kernel                   []byte
}

func newTestbed(t *testing.T) *testbed {
	t.Helper()
	dir := t.TempDir()
	udp := ports.FreeLoopbackUDP(t, 3)
	tb := &testbed{
		dhcpPort: udp[0], clientPort: udp[1], tftpPort: udp[2], httpPort: ports.FreeLoopback(t, 1)[0],
		ipxe: make([]byte, 300000), kernel: make([]byte, 200000),
	}
	_, _ = rand.Read(tb.ipxe)
	_, _ = rand.Read(tb.kernel)
	must(t, os.WriteFile(filepath.Join(dir, "undionly.kpxe"), tb.ipxe, 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "vmlinuz"), tb.kernel, 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "initramfs"), []byte("initramfs"), 0o644))
	base := "http://127.0.0.1:" + strconv.Itoa(tb.httpPort)
	tb.cfg = Config{
		DHCP: &dhcp.Server{
			Interface: "lo", Addr: "127.0.0.1:" + strconv.Itoa(tb.dhcpPort), Mode: dhcp.ModeFull,
			ServerIP:     netip.MustParseAddr("127.0.0.1"),
			Reservations: dhcp.StaticReservations{mac: {Address: netip.MustParsePrefix("127.0.0.50/8")}},
			ClientPort:   tb.clientPort,
		},
		TFTP: &tftp.Server{Addr: "127.0.0.1:" + strconv.Itoa(tb.tftpPort), Root: dir},
		HTTP: &httpboot.Server{
			Addr: "127.0.0.1:" + strconv.Itoa(tb.httpPort), BaseURL: base, Scripts: hosts{},
			KernelPath: filepath.Join(dir, "vmlinuz"), InitramfsPath: filepath.Join(dir, "initramfs"),
		},
	}
	return tb
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// dhcpExchange sends a DISCOVER and waits for the OFFER, retrying while the server starts.
func (tb *testbed) dhcpExchange(t *testing.T, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	t.Helper()
	req, err := dhcpv4.NewDiscovery(net.HardwareAddr{0x52, 0x54, 0, 0, 0, 0x50}, append(mods, dhcpv4.WithBroadcast(true))...)
	must(t, err)
	return tb.send(t, req)
}

// send sends req and waits for the answer, retrying while the server starts.
func (tb *testbed) send(t *testing.T, req *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
	t.Helper()
	c, err := net.ListenPacket("udp4", "0.0.0.0:"+strconv.Itoa(tb.clientPort))
	must(t, err)
	defer func() { _ = c.Close() }()
	buf := make([]byte, 1500)
	for range 50 {
		_, err := c.WriteTo(req.ToBytes(), &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: tb.dhcpPort})
		must(t, err)
		_ = c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		n, _, err := c.ReadFrom(buf)
		if err != nil {
			continue
		}
		resp, err := dhcpv4.FromBytes(buf[:n])
		must(t, err)
		if resp.TransactionID == req.TransactionID {
			return resp
		}
	}
	t.Fatal("no DHCP answer")
	return nil
}

func httpGet(t *testing.T, url string) []byte {
	t.Helper()
	return httpGetFrom(t, http.DefaultClient, url)
}

// clientFrom is an HTTP client whose connections come from the local address from.
func clientFrom(from string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	return &http.Client{Transport: &http.Transport{DialContext: d.DialContext}}
}

func httpGetFrom(t *testing.T, c *http.Client, url string) []byte {
	t.Helper()
	resp, err := c.Get(url)
	must(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	must(t, err)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, b)
	}
	return b
}

// portsFree checks that every socket of the testbed was closed.
func (tb *testbed) portsFree(t *testing.T) {
	t.Helper()
	for _, p := range []int{tb.dhcpPort, tb.tftpPort} {
		c, err := net.ListenPacket("udp4", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			t.Errorf("UDP port %d still bound: %v", p, err)
			continue
		}
		_ = c.Close()
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:"+strconv.Itoa(tb.httpPort))
	if err != nil {
		t.Errorf("TCP port %d still bound: %v", tb.httpPort, err)
		return
	}
	_ = ln.Close()
}

// TestStartLoopback walks the boot chain against the three services started together: the BIOS
// PXE ROM's DHCP answer, its TFTP download, iPXE's DHCP answer, its script and kernel over HTTP;
// then it stops them and checks every socket is closed.
func TestStartLoopback(t *testing.T) {
	tb := newTestbed(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- Start(ctx, tb.cfg) }()

	offer := tb.dhcpExchange(t,
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00000:UNDI:002001")),
		dhcpv4.WithOption(dhcpv4.OptClientArch(iana.INTEL_X86PC)))
	if offer.YourIPAddr.String() != "127.0.0.50" || offer.BootFileName != "undionly.kpxe" || offer.ServerIPAddr.String() != "127.0.0.1" {
		t.Fatalf("PXE offer: %s", offer.Summary())
	}
	// The ROM downloads the boot file from next-server.
	cl, err := tftpclient.NewClient(offer.ServerIPAddr.String() + ":" + strconv.Itoa(tb.tftpPort))
	must(t, err)
	cl.SetBlockSize(1468)
	var got []byte
	for range 50 { // TFTP may still be starting
		wt, err := cl.Receive(offer.BootFileName, "octet")
		if err != nil {
			time.Sleep(20 * time.Millisecond)
			continue
		}
		var buf bytes.Buffer
		_, err = wt.WriteTo(&buf)
		must(t, err)
		got = buf.Bytes()
		break
	}
	if !bytes.Equal(got, tb.ipxe) {
		t.Fatalf("TFTP: got %d bytes, want the %d of undionly.kpxe", len(got), len(tb.ipxe))
	}

	ipxe := []dhcpv4.Modifier{
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00000:UNDI:002001")),
		dhcpv4.WithUserClass("iPXE", false),
	}
	offer = tb.dhcpExchange(t, ipxe...)
	// Offered, not leased yet: the script with the token is not served, whoever asks.
	if script := string(httpGetFrom(t, clientFrom("127.0.0.50"), offer.BootFileName)); strings.Contains(script, "basalt.token=") {
		t.Fatalf("a script with a token before the lease:\n%s", script)
	}
	req, err := dhcpv4.NewRequestFromOffer(offer, ipxe...)
	must(t, err)
	if ack := tb.send(t, req); ack.MessageType() != dhcpv4.MessageTypeAck || ack.YourIPAddr.String() != "127.0.0.50" {
		t.Fatalf("iPXE's REQUEST: %s", ack.Summary())
	}
	// Leased: the script with its token goes to the leased address, and only there.
	script := string(httpGetFrom(t, clientFrom("127.0.0.50"), offer.BootFileName))
	if !strings.Contains(script, "kernel --name vmlinuz "+tb.cfg.HTTP.BaseURL+"/boot/kernel") || !strings.Contains(script, "basalt.token=") {
		t.Fatalf("script:\n%s", script)
	}
	if other := string(httpGetFrom(t, clientFrom("127.0.0.1"), offer.BootFileName)); strings.Contains(other, "basalt.token=") || !strings.Contains(other, "not served to 127.0.0.1") {
		t.Fatalf("script for another address:\n%s", other)
	}
	if !bytes.Equal(httpGet(t, tb.cfg.HTTP.BaseURL+"/boot/kernel"), tb.kernel) {
		t.Fatal("kernel differs")
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Start: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Start did not return after cancel")
	}
	tb.portsFree(t)
}

// TestStartStopsAllOnFailure: when one service cannot start, Start returns its error and the
// others are stopped.
func TestStartStopsAllOnFailure(t *testing.T) {
	tb := newTestbed(t)
	busy, err := net.Listen("tcp4", tb.cfg.HTTP.Addr)
	must(t, err)
	defer func() { _ = busy.Close() }()
	done := make(chan error, 1)
	go func() { done <- Start(context.Background(), tb.cfg) }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "address already in use") {
			t.Fatalf("Start = %v, want the HTTP listen error", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Start did not return")
	}
	_ = busy.Close()
	tb.portsFree(t)
}

func TestStartValidates(t *testing.T) {
	tb := newTestbed(t)
	tb.cfg.TFTP.Root = t.TempDir() // no iPXE binaries
	tb.cfg.DHCP.ServerIP = netip.Addr{}
	err := Start(context.Background(), tb.cfg)
	if err == nil || !strings.Contains(err.Error(), "apt-get install ipxe") || !strings.Contains(err.Error(), "ServerIP") {
		t.Fatalf("Start = %v, want both validation errors", err)
	}
	if err := Start(context.Background(), Config{}); err == nil {
		t.Fatal("Start without HTTP returned nil")
	}
	// HTTPBaseURL is filled from the HTTP server.
	tb = newTestbed(t)
	must(t, tb.cfg.Validate())
	if tb.cfg.DHCP.HTTPBaseURL != tb.cfg.HTTP.BaseURL {
		t.Errorf("DHCP.HTTPBaseURL = %q", tb.cfg.DHCP.HTTPBaseURL)
	}
}
