package vip

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/basalt-dev/basalt/bootstrap/plan"
)

type execRunner struct{}

func (execRunner) Run(ctx context.Context, name string, args ...string) ([]byte, error) {
	return exec.CommandContext(ctx, name, args...).CombinedOutput()
}

// TestHostLinkOnAVethPair adds the address with ip(8) to one end of a veth pair made for the
// test, and reads the gratuitous ARP on the other end.
func TestHostLinkOnAVethPair(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: makes a veth pair")
	}
	ctx := context.Background()
	a, b := fmt.Sprintf("bvip%da", os.Getpid()%100000), fmt.Sprintf("bvip%db", os.Getpid()%100000)
	ip := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	ip("link", "add", a, "type", "veth", "peer", "name", b)
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", a).Run() })
	ip("addr", "add", "192.0.2.11/24", "dev", a)
	ip("link", "set", a, "up")
	ip("link", "set", b, "up")
	peer, err := net.InterfaceByName(b)
	if err != nil {
		t.Fatal(err)
	}
	own, err := net.InterfaceByName(a)
	if err != nil {
		t.Fatal(err)
	}
	capture := listenARP(t, peer)

	vip := netip.MustParseAddr("192.0.2.250")
	l := newHostLink(execRunner{}, vip, netip.MustParseAddr("192.0.2.11"))
	if err := l.Add(ctx); err != nil {
		t.Fatal(err)
	}
	if has, err := l.Has(); err != nil || !has {
		t.Fatalf("Has after Add: %v %v", has, err)
	}
	out, _ := exec.Command("ip", "-4", "-o", "addr", "show", "dev", a).CombinedOutput()
	if !strings.Contains(string(out), " 192.0.2.250/32 ") {
		t.Fatalf("ip addr on %s: %s", a, out)
	}
	want, err := garpFrame(own.HardwareAddr, vip)
	if err != nil {
		t.Fatal(err)
	}
	got := capture(want)
	if got == nil {
		t.Fatalf("no gratuitous ARP for %s from %s arrived on %s", vip, own.HardwareAddr, b)
	}
	// Adding again (a renewal that re-announces) is no error.
	if err := l.Add(ctx); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := l.Remove(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if has, _ := l.Has(); has {
		t.Fatal("the address is still there after Remove")
	}

	// The Plan applier's check, before anything campaigns.
	if err := Check(&plan.VirtualIP{Address: "192.0.2.250", NodeAddress: "192.0.2.11"}); err != nil {
		t.Errorf("Check of an address on the subnet: %v", err)
	}
	if err := Check(&plan.VirtualIP{Address: "198.51.100.5", NodeAddress: "192.0.2.11"}); err == nil || !strings.Contains(err.Error(), "choose an address in 192.0.2.0/24") {
		t.Errorf("Check of an address off the subnet: %v", err)
	}
	off := newHostLink(execRunner{}, netip.MustParseAddr("198.51.100.5"), netip.MustParseAddr("192.0.2.11"))
	if err := off.Add(ctx); err == nil || !strings.Contains(err.Error(), "not on") {
		t.Fatalf("an address off the subnet: %v", err)
	}
	missing := newHostLink(execRunner{}, vip, netip.MustParseAddr("192.0.2.99"))
	if err := missing.Add(ctx); err == nil || !strings.Contains(err.Error(), "no interface carries") {
		t.Fatalf("a node address on no interface: %v", err)
	}
}

// listenARP opens a packet socket on iface and returns a func that waits up to 5 s for a frame
// equal (in its first 42 bytes) to want.
func listenARP(t *testing.T, iface *net.Interface) func(want []byte) []byte {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_PACKET, syscall.SOCK_RAW, int(htons(ethPARP)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrLinklayer{Protocol: htons(ethPARP), Ifindex: iface.Index}); err != nil {
		t.Fatal(err)
	}
	tv := syscall.NsecToTimeval(int64(500 * time.Millisecond))
	if err := syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &tv); err != nil {
		t.Fatal(err)
	}
	return func(want []byte) []byte {
		buf := make([]byte, 1500)
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) {
			n, _, err := syscall.Recvfrom(fd, buf, 0)
			if err != nil {
				continue
			}
			if n >= len(want) && bytes.Equal(buf[:len(want)], want) {
				return buf[:n]
			}
		}
		return nil
	}
}

func TestGARPFrame(t *testing.T) {
	mac := net.HardwareAddr{0x02, 0, 0, 0, 0, 0x11}
	f, err := garpFrame(mac, netip.MustParseAddr("10.1.2.3"))
	if err != nil {
		t.Fatal(err)
	}
	if len(f) != 42 || !bytes.Equal(f[0:6], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}) || !bytes.Equal(f[6:12], mac) ||
		f[12] != 0x08 || f[13] != 0x06 || f[21] != 1 || !bytes.Equal(f[22:28], mac) ||
		!bytes.Equal(f[28:32], []byte{10, 1, 2, 3}) || !bytes.Equal(f[32:38], make([]byte, 6)) || !bytes.Equal(f[38:42], []byte{10, 1, 2, 3}) {
		t.Fatalf("frame % x", f)
	}
	if _, err := garpFrame(net.HardwareAddr{1, 2}, netip.MustParseAddr("10.1.2.3")); err == nil {
		t.Error("a non-Ethernet address was accepted")
	}
	if _, err := garpFrame(mac, netip.MustParseAddr("fd00::1")); err == nil {
		t.Error("an IPv6 address was accepted")
	}
}
