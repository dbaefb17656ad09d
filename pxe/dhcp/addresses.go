package dhcp

import (
	"container/list"
	"net"
	"net/netip"
	"sync"
	"time"
)

// ProxyAddressTTL is how long proxy mode remembers the address a client's DHCP REQUEST named:
// long enough for iPXE to fetch its script after its DHCP exchange (about 20 s on the test VMs)
// and retry a few times, short enough that an address the site server gave to another machine
// since is soon forgotten. A host that asks later is told to run DHCP again (pxe/httpboot).
const ProxyAddressTTL = 5 * time.Minute

// maxAddresses bounds the MAC → address table. The oldest entry goes first when it is full: a
// host whose entry was pushed out runs DHCP again when its script is refused.
const maxAddresses = 4096

// addresses remembers, per MAC address, the IPv4 address the server leased to it (full mode) or
// saw it ask for (proxy mode), until an expiry. It is bounded (maxAddresses) and safe for
// concurrent use.
type addresses struct {
	mu    sync.Mutex
	max   int
	byMAC map[string]*list.Element // of *addressEntry
	order list.List                // oldest recorded first
}

type addressEntry struct {
	mac     string
	addr    netip.Addr
	expires time.Time
}

func newAddresses(maxEntries int) *addresses {
	return &addresses{max: maxEntries, byMAC: map[string]*list.Element{}}
}

// record remembers addr for mac until expires, replacing what mac had.
func (a *addresses) record(mac string, addr netip.Addr, expires time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if el, ok := a.byMAC[mac]; ok {
		a.order.Remove(el)
		delete(a.byMAC, mac)
	}
	for a.order.Len() >= a.max {
		oldest := a.order.Front()
		delete(a.byMAC, oldest.Value.(*addressEntry).mac)
		a.order.Remove(oldest)
	}
	a.byMAC[mac] = a.order.PushBack(&addressEntry{mac: mac, addr: addr, expires: expires})
}

// forget drops what mac had (RELEASE, DECLINE).
func (a *addresses) forget(mac string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if el, ok := a.byMAC[mac]; ok {
		a.order.Remove(el)
		delete(a.byMAC, mac)
	}
}

// lookup returns mac's address if it has one that has not expired at now.
func (a *addresses) lookup(mac string, now time.Time) (netip.Addr, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	el, ok := a.byMAC[mac]
	if !ok {
		return netip.Addr{}, false
	}
	e := el.Value.(*addressEntry)
	if !now.Before(e.expires) {
		a.order.Remove(el)
		delete(a.byMAC, mac)
		return netip.Addr{}, false
	}
	return e.addr, true
}

// ClientAddress returns the IPv4 address the server knows mac (any form net.ParseMAC reads) to
// use, and false when it knows none:
//
//   - full mode: the address of the last ACK it sent mac, until that lease ends (a RELEASE or
//     DECLINE ends it early);
//   - proxy mode: the address mac named in its last DHCP REQUEST (ciaddr, else the requested
//     address, option 50), for ProxyAddressTTL. Proxy mode leases nothing, so this is only what
//     the client said: anyone on the segment can send such a REQUEST.
//
// The table lives in memory: after a restart the server knows nothing until hosts run DHCP
// again. pxe/httpboot asks it before it serves a script with a bootstrap token (it implements
// httpboot.ClientAddresses).
func (s *Server) ClientAddress(mac string) (netip.Addr, bool) {
	hw, err := net.ParseMAC(mac)
	if err != nil || s.init() != nil {
		return netip.Addr{}, false
	}
	return s.addresses.lookup(hw.String(), s.now())
}
