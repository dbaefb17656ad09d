package vip

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"syscall"
)

const (
	ethPARP    = 0x0806
	arpRequest = 1
)

// htons converts a 16-bit value to network byte order for sockaddr fields.
func htons(v uint16) uint16 { return v<<8 | v>>8 }

// garpFrame is a gratuitous ARP request for addr from mac: broadcast, sender and target both
// addr, so every neighbour on the segment updates (or learns) addr → mac.
func garpFrame(mac net.HardwareAddr, addr netip.Addr) ([]byte, error) {
	if len(mac) != 6 {
		return nil, fmt.Errorf("hardware address %s is not Ethernet", mac)
	}
	if !addr.Is4() {
		return nil, fmt.Errorf("%s is not IPv4", addr)
	}
	ip := addr.As4()
	f := make([]byte, 42)
	copy(f[0:6], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	copy(f[6:12], mac)
	binary.BigEndian.PutUint16(f[12:14], ethPARP)
	binary.BigEndian.PutUint16(f[14:16], 1)      // hardware type Ethernet
	binary.BigEndian.PutUint16(f[16:18], 0x0800) // protocol IPv4
	f[18], f[19] = 6, 4
	binary.BigEndian.PutUint16(f[20:22], arpRequest)
	copy(f[22:28], mac)
	copy(f[28:32], ip[:])
	// target hardware address stays zero
	copy(f[38:42], ip[:])
	return f, nil
}

// announce sends one gratuitous ARP for addr on iface through a raw packet socket.
func announce(iface *net.Interface, addr netip.Addr) error {
	frame, err := garpFrame(iface.HardwareAddr, addr)
	if err != nil {
		return err
	}
	fd, err := syscall.Socket(syscall.AF_PACKET, syscall.SOCK_RAW, int(htons(ethPARP)))
	if err != nil {
		return fmt.Errorf("packet socket: %w", err)
	}
	defer func() { _ = syscall.Close(fd) }()
	sa := &syscall.SockaddrLinklayer{Protocol: htons(ethPARP), Ifindex: iface.Index, Halen: 6}
	copy(sa.Addr[:], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	if err := syscall.Sendto(fd, frame, 0, sa); err != nil {
		return fmt.Errorf("sending gratuitous ARP: %w", err)
	}
	return nil
}
