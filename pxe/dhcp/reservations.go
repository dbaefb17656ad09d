package dhcp

import (
	"context"
	"net"
	"net/netip"
)

// Reservation is what the server knows about one host's network interface.
type Reservation struct {
	// Address is the host's IPv4 address with its prefix length, e.g. 192.168.10.21/24. The
	// zero Prefix means "no reserved address": in full mode the host gets one from Pool; in
	// proxy mode the site DHCP server leases it anyway.
	Address netip.Prefix
	// Gateway is the default router (option 3); optional.
	Gateway netip.Addr
	// Hostname is sent as option 12; optional.
	Hostname string
}

// Reservations looks up hosts by MAC address. The Host controller implements it from the Hosts'
// spec.boot.macAddresses (with a cache, so a lookup does not reach the API server); tests use
// StaticReservations.
type Reservations interface {
	// Reservation returns the reservation of mac and true when a Host has that MAC address,
	// false when none has. An error is a failed lookup: the request is dropped (and counted as
	// ReasonLookupError), and the client will retry.
	Reservation(ctx context.Context, mac net.HardwareAddr) (Reservation, bool, error)
}

// StaticReservations is a fixed table of reservations keyed by lowercase colon-separated MAC
// address ("52:54:00:12:34:56"), for tests and for static setups.
type StaticReservations map[string]Reservation

// Reservation implements Reservations.
func (r StaticReservations) Reservation(_ context.Context, mac net.HardwareAddr) (Reservation, bool, error) {
	res, ok := r[mac.String()]
	return res, ok, nil
}
