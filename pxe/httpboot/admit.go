package httpboot

import (
	"container/list"
	"net/netip"
	"sync"
	"time"
)

// ClientAddresses says where the manager's DHCP server knows a MAC address to be. pxe/dhcp's
// Server implements it (ClientAddress): the address it leased to the MAC in full mode, or the one
// the MAC asked for in proxy mode, recently.
type ClientAddresses interface {
	// ClientAddress returns the IPv4 address of mac (lowercase, colon-separated), false when
	// the DHCP server knows none or it expired.
	ClientAddress(mac string) (netip.Addr, bool)
}

// Why a script that would carry a bootstrap token was refused: the reason label of
// basalt_pxe_http_scripts_refused_total.
const (
	// RefusedWrongAddress: the request came from another address than the MAC's (the Host's
	// reserved address, else the one DHCP leased to it or saw it use).
	RefusedWrongAddress = "wrong_address"
	// RefusedNoAddress: no address is known for the MAC: the Host has no reserved address and
	// the DHCP server has not leased it one (or seen it ask for one) lately.
	RefusedNoAddress = "no_address"
	// RefusedRateLimited: the MAC fetched more scripts with tokens than TokenBurst and
	// TokenInterval allow.
	RefusedRateLimited = "rate_limited"
)

// Defaults of Server's token rate limit: a burst of three scripts with a token, then one every
// 20 seconds (three a minute) per MAC address. A host needs one per boot; its agent script asks
// again after a failed download every RetrySeconds.
const (
	DefaultTokenBurst    = 3
	DefaultTokenInterval = 20 * time.Second
	// maxLimited bounds the MAC addresses the rate limiter tracks.
	maxLimited = 4096
)

// admit decides whether the script of mac, whose Target t carries (or would issue) a bootstrap
// token, may go to a request from from; it returns "" when it may, else one of the Refused*
// reasons. The address must be t.Address when the Host has one reserved: a DHCP packet (which
// anyone on the segment may forge) cannot move it. Without one it must be the address Clients
// knows for mac. Only then is the rate limit consulted, so requests from other addresses cannot
// use up a host's allowance.
func (s *Server) admit(mac string, t Target, from netip.Addr) string {
	want := t.Address.Unmap()
	if !want.IsValid() && s.Clients != nil {
		want, _ = s.Clients.ClientAddress(mac)
	}
	switch {
	case !want.IsValid():
		return RefusedNoAddress
	case want != from.Unmap():
		return RefusedWrongAddress
	case !s.limiter().allow(mac, s.now()):
		return RefusedRateLimited
	}
	return ""
}

func (s *Server) limiter() *limiter {
	s.limitOnce.Do(func() {
		burst, interval := s.TokenBurst, s.TokenInterval
		if burst <= 0 {
			burst = DefaultTokenBurst
		}
		if interval <= 0 {
			interval = DefaultTokenInterval
		}
		s.limit = newLimiter(burst, interval, maxLimited)
	})
	return s.limit
}

func (s *Server) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// limiter is a token bucket per key: burst tokens, one more every interval. It tracks at most
// max keys (the keys are MAC addresses, which clients choose): when full it first drops the
// buckets that have refilled, which changes nothing, then the least recently used. Safe for
// concurrent use.
type limiter struct {
	burst    float64
	interval time.Duration
	max      int

	mu     sync.Mutex
	byKey  map[string]*list.Element // of *bucket
	recent list.List                // least recently used first
}

type bucket struct {
	key    string
	tokens float64
	at     time.Time // when tokens was computed
}

func newLimiter(burst int, interval time.Duration, maxKeys int) *limiter {
	return &limiter{burst: float64(burst), interval: interval, max: maxKeys, byKey: map[string]*list.Element{}}
}

// refill brings b's tokens up to now.
func (l *limiter) refill(b *bucket, now time.Time) {
	if d := now.Sub(b.at); d > 0 {
		b.tokens = min(l.burst, b.tokens+float64(d)/float64(l.interval))
		b.at = now
	}
}

// allow takes one token of key's bucket at now, false when it is empty.
func (l *limiter) allow(key string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	el, ok := l.byKey[key]
	if !ok {
		l.makeRoom(now)
		el = l.recent.PushBack(&bucket{key: key, tokens: l.burst, at: now})
		l.byKey[key] = el
	}
	l.recent.MoveToBack(el)
	b := el.Value.(*bucket)
	l.refill(b, now)
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// makeRoom makes sure one more key fits.
func (l *limiter) makeRoom(now time.Time) {
	if l.recent.Len() < l.max {
		return
	}
	for el := l.recent.Front(); el != nil; {
		next := el.Next()
		b := el.Value.(*bucket)
		if l.refill(b, now); b.tokens >= l.burst {
			l.recent.Remove(el)
			delete(l.byKey, b.key)
		}
		el = next
	}
	if l.recent.Len() >= l.max {
		oldest := l.recent.Front()
		l.recent.Remove(oldest)
		delete(l.byKey, oldest.Value.(*bucket).key)
	}
}
