// Package dhcp is Basalt's PXE DHCP server: it tells network-booting hosts where to find iPXE
// and, once they run iPXE, where to find their per-MAC boot script. It is built on
// github.com/insomniacslk/dhcp (dhcpv4 for the packets, server4 for the sockets).
//
// # What it answers
//
// A request is answered only when its client hardware address is known to Reservations (a Host's
// spec.boot.macAddresses), or when Discovery is on and the client is network-booting. Everything
// else is dropped silently and counted. The boot options depend on who asks:
//
//	client                                   boot file (siaddr = ServerIP)
//	PXE ROM, BIOS   (option 93 = 0)          BIOSBootFile over TFTP   (default undionly.kpxe)
//	PXE ROM, UEFI   (option 93 = 7 or 9)     UEFIBootFile over TFTP   (default ipxe.efi)
//	iPXE            (option 77 = "iPXE")     HTTPBaseURL + "/boot/<mac>.ipxe" (its per-MAC script)
//	not booting     (no "PXEClient")         none: full mode leases the address only
//
// iPXE chainloaded from TFTP asks again as "iPXE" and gets the script, so the chain ends there:
// PXE ROM → iPXE → script → kernel + initramfs (or the local disk, for a provisioned host).
// Other architectures (32-bit UEFI, ARM, UEFI HTTP boot) are not served: the package ships x86-64
// iPXE only.
//
// # Modes
//
//   - ModeFull: the server is the DHCP server of the hosts it knows. DISCOVER gets an OFFER of the
//     reserved address (Reservation.Address), REQUEST an ACK, or a NAK when the requested address
//     is not the client's. A known host without a reserved address, and an unknown netbooting
//     host when Discovery is on, get an address from Pool. Hosts keep getting their address after
//     provisioning (their installed OS asks without "PXEClient" and gets no boot options).
//   - ModeProxy (the default): a site DHCP server leases addresses; this server answers beside it
//     with boot options only (proxyDHCP, PXE 2.1): no yiaddr, option 60 "PXEClient" and option 43
//     with PXE_DISCOVERY_CONTROL = 8 (boot the file named in the offer, no boot server
//     discovery). iPXE and some ROMs then ask the proxy again on port 4011 (ProxyAddr); that
//     REQUEST gets an ACK with the same options, sent back to where it came from.
//
// Replies go to the relay (giaddr:RelayPort) when a relay forwarded the request, to the client's
// address when it has one (ciaddr), and otherwise to the broadcast address on Interface; NAKs are
// always broadcast (or relayed). Option 82 (relay agent information), option 61 (client
// identifier) and option 97 (client UUID) are echoed.
//
// # Testing and safety
//
// Handle is the whole decision, with no socket: table tests feed it packets and compare replies.
// ListenAndServe adds the sockets; packets that do not parse, or are larger than MaxPacketSize,
// are dropped before Handle and counted. FuzzHandle keeps Handle free of panics for any bytes
// dhcpv4.FromBytes accepts.
//
// Every packet is counted once in basalt_pxe_dhcp_packets_total{reason}, registered in
// controller-runtime's metrics registry, with reason one of the Reason* constants.
package dhcp
