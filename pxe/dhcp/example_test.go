package dhcp_test

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"

	"github.com/basalt-dev/basalt/pxe/dhcp"
)

// A proxy-mode server beside the site's DHCP server: a UEFI PXE ROM gets iPXE over TFTP, and
// iPXE then gets the URL of its per-MAC script. The manager runs it with ListenAndServe(ctx).
func Example() {
	srv := &dhcp.Server{
		Interface:    "eth1",
		Mode:         dhcp.ModeProxy,
		ServerIP:     netip.MustParseAddr("192.168.10.1"),
		Reservations: dhcp.StaticReservations{"52:54:00:12:34:56": {}},
		HTTPBaseURL:  "http://192.168.10.1:8080",
	}
	mac, _ := net.ParseMAC("52:54:00:12:34:56")

	rom, _ := dhcpv4.NewDiscovery(mac,
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00007:UNDI:003016")),
		dhcpv4.WithOption(dhcpv4.OptClientArch(iana.EFI_X86_64)))
	offer, reason := srv.Handle(rom)
	fmt.Println(reason, offer.YourIPAddr, offer.ServerIPAddr, offer.BootFileName)

	ipxe, _ := dhcpv4.NewDiscovery(mac,
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00007:UNDI:003016")),
		dhcpv4.WithUserClass("iPXE", false))
	offer, reason = srv.Handle(ipxe)
	fmt.Println(reason, offer.BootFileName)

	// Output:
	// proxy_offer 0.0.0.0 192.168.10.1 ipxe.efi
	// proxy_offer http://192.168.10.1:8080/boot/52:54:00:12:34:56.ipxe
}
