package dhcp

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// Reasons: why a packet was answered or dropped. They are the values of the reason label of
// basalt_pxe_dhcp_packets_total and the second result of Server.Handle.
const (
	// ReasonOffer: full mode, DISCOVER answered with an OFFER.
	ReasonOffer = "offer"
	// ReasonAck: full mode, REQUEST for the client's address answered with an ACK.
	ReasonAck = "ack"
	// ReasonNak: full mode, REQUEST for an address that is not the client's answered with a NAK.
	ReasonNak = "nak"
	// ReasonProxyOffer: proxy mode, DISCOVER answered with boot options and no address.
	ReasonProxyOffer = "proxy_offer"
	// ReasonProxyAck: proxy mode, REQUEST on the proxy port answered with boot options.
	ReasonProxyAck = "proxy_ack"

	// ReasonMalformed: the bytes are not a DHCPv4 packet (or the packet is nil).
	ReasonMalformed = "malformed"
	// ReasonOversized: the datagram is larger than MaxPacketSize.
	ReasonOversized = "oversized"
	// ReasonNotRequest: a BOOTREPLY, or a BOOTP packet with no DHCP message type.
	ReasonNotRequest = "not_request"
	// ReasonBadHardwareAddress: the hardware address is not a 6-byte Ethernet address.
	ReasonBadHardwareAddress = "bad_hardware_address"
	// ReasonUnsupportedMessage: INFORM and other message types the server does not answer.
	ReasonUnsupportedMessage = "unsupported_message"
	// ReasonReleased: RELEASE or DECLINE; a pool lease is freed, nothing is sent.
	ReasonReleased = "released"
	// ReasonUnknownMAC: no Host has the MAC address and Discovery is off.
	ReasonUnknownMAC = "unknown_mac"
	// ReasonNotNetboot: the client is not booting from the network (no "PXEClient" vendor class,
	// not iPXE) and the server has nothing else to give it (proxy mode, or an unknown MAC).
	ReasonNotNetboot = "not_netboot"
	// ReasonUnsupportedArch: the client's architecture (option 93) has no boot file.
	ReasonUnsupportedArch = "unsupported_arch"
	// ReasonOtherServer: a REQUEST addressed to another DHCP server.
	ReasonOtherServer = "other_server"
	// ReasonNoRequestedAddress: a REQUEST with neither option 50 nor ciaddr.
	ReasonNoRequestedAddress = "no_requested_address"
	// ReasonNoAddress: full mode, no reserved address and no free pool address for the client.
	ReasonNoAddress = "no_address"
	// ReasonBadReservation: the reservation's address is not a usable IPv4 prefix.
	ReasonBadReservation = "bad_reservation"
	// ReasonLookupError: Reservations failed; the client will retry.
	ReasonLookupError = "lookup_error"
	// ReasonMisconfigured: the Server's fields do not validate (see Validate).
	ReasonMisconfigured = "misconfigured"
)

var packetsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
	Namespace: "basalt", Subsystem: "pxe_dhcp", Name: "packets_total",
	Help: "DHCP packets received by the PXE DHCP server, by what became of them (offer, ack, nak, proxy_offer, proxy_ack, or why it was dropped: malformed, oversized, unknown_mac, ...).",
}, []string{"reason"})

func init() {
	metrics.Registry.MustRegister(packetsTotal)
}

// count records what became of one packet.
func count(reason string) { packetsTotal.WithLabelValues(reason).Inc() }
