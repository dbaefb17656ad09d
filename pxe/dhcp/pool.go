package dhcp

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"
)

// maxPoolSize bounds a pool, so that finding a free address stays cheap.
const maxPoolSize = 1 << 16

// offerHold is how long an offered pool address stays set aside for a client that has not
// requested it yet.
const offerHold = time.Minute

// Pool is a range of addresses that full mode leases to hosts without a reserved address: unknown
// netbooting hosts when Discovery is on, and known hosts whose Reservation has no Address. The
// range must not overlap any reserved address (the server cannot list reservations to check).
// Leases live in memory: after a restart, clients keep their address if it is still free when
// they ask for it again.
type Pool struct {
	// Subnet is the pool's network, e.g. 192.168.10.0/24; it gives the netmask (option 1).
	Subnet netip.Prefix
	// Start and End are the first and last address leased, both inside Subnet.
	Start, End netip.Addr
	// Gateway is the default router (option 3); optional.
	Gateway netip.Addr
}

func (p *Pool) validate() error {
	switch {
	case !p.Subnet.IsValid() || !p.Subnet.Addr().Is4():
		return errors.New("pool: Subnet must be an IPv4 prefix such as 192.168.10.0/24")
	case !p.Start.Is4() || !p.End.Is4():
		return errors.New("pool: Start and End must be IPv4 addresses")
	case !p.Subnet.Contains(p.Start) || !p.Subnet.Contains(p.End):
		return fmt.Errorf("pool: %s-%s is not inside %s", p.Start, p.End, p.Subnet)
	case p.End.Less(p.Start):
		return fmt.Errorf("pool: End %s is before Start %s", p.End, p.Start)
	case p.Gateway.IsValid() && !p.Subnet.Contains(p.Gateway):
		return fmt.Errorf("pool: Gateway %s is not inside %s", p.Gateway, p.Subnet)
	}
	if n := ipv4Int(p.End) - ipv4Int(p.Start) + 1; n > maxPoolSize {
		return fmt.Errorf("pool: %d addresses; at most %d", n, maxPoolSize)
	}
	return nil
}

// contains reports whether a is in the leased range.
func (p *Pool) contains(a netip.Addr) bool {
	return a.Is4() && !a.Less(p.Start) && !p.End.Less(a)
}

func ipv4Int(a netip.Addr) uint64 {
	b := a.As4()
	return uint64(b[0])<<24 | uint64(b[1])<<16 | uint64(b[2])<<8 | uint64(b[3])
}

type lease struct {
	mac     string
	addr    netip.Addr
	expires time.Time
}

// leases is the pool's in-memory lease table. All methods are safe for concurrent use.
type leases struct {
	pool   *Pool
	mu     sync.Mutex
	byMAC  map[string]*lease
	byAddr map[netip.Addr]*lease
}

func newLeases(p *Pool) *leases {
	return &leases{pool: p, byMAC: map[string]*lease{}, byAddr: map[netip.Addr]*lease{}}
}

// free reports whether a can be given to mac at now; an expired lease of another MAC is dropped.
func (l *leases) free(a netip.Addr, mac string, now time.Time) bool {
	cur, ok := l.byAddr[a]
	if !ok || cur.mac == mac {
		return true
	}
	if now.Before(cur.expires) {
		return false
	}
	delete(l.byAddr, a)
	delete(l.byMAC, cur.mac)
	return true
}

func (l *leases) set(mac string, a netip.Addr, expires time.Time) {
	if old, ok := l.byMAC[mac]; ok && old.addr != a {
		delete(l.byAddr, old.addr)
	}
	le := &lease{mac: mac, addr: a, expires: expires}
	l.byMAC[mac] = le
	l.byAddr[a] = le
}

// offer returns the address to offer mac: its current lease, else the first free address. The
// address is held for offerHold (or the rest of the current lease, if longer). False when the
// pool is exhausted.
func (l *leases) offer(mac string, now time.Time) (netip.Addr, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	hold := now.Add(offerHold)
	if cur, ok := l.byMAC[mac]; ok {
		if cur.expires.After(hold) {
			hold = cur.expires
		}
		l.set(mac, cur.addr, hold)
		return cur.addr, true
	}
	for a := l.pool.Start; a.IsValid() && !l.pool.End.Less(a); a = a.Next() {
		if l.free(a, mac, now) {
			l.set(mac, a, hold)
			return a, true
		}
	}
	return netip.Addr{}, false
}

// request confirms that mac may use want for leaseTime: it must be the address of the client's
// lease, or, when the client has none (a client that kept its address across a restart of the
// server), a free address of the range. False means NAK.
func (l *leases) request(mac string, want netip.Addr, now time.Time, leaseTime time.Duration) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if cur, ok := l.byMAC[mac]; ok && cur.addr != want {
		return false
	}
	if !l.pool.contains(want) || !l.free(want, mac, now) {
		return false
	}
	l.set(mac, want, now.Add(leaseTime))
	return true
}

// release frees the lease of mac (RELEASE, DECLINE, or an offer the client turned down).
func (l *leases) release(mac string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if cur, ok := l.byMAC[mac]; ok {
		delete(l.byMAC, mac)
		delete(l.byAddr, cur.addr)
	}
}

// decline marks a as in use by someone else for leaseTime (DECLINE: the client found it taken).
func (l *leases) decline(mac string, a netip.Addr, now time.Time, leaseTime time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if cur, ok := l.byMAC[mac]; ok {
		delete(l.byMAC, mac)
		delete(l.byAddr, cur.addr)
	}
	if l.pool.contains(a) {
		l.byAddr[a] = &lease{mac: "", addr: a, expires: now.Add(leaseTime)}
	}
}
