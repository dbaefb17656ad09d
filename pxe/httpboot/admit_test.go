package httpboot

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/basalt-dev/basalt/agents/protocol"
	basaltv1 "github.com/basalt-dev/basalt/api/v1alpha1"
)

// staticClients is ClientAddresses from a table.
type staticClients map[string]netip.Addr

func (c staticClients) ClientAddress(mac string) (netip.Addr, bool) {
	a, ok := c[mac]
	return a, ok
}

// issuer counts the bootstraps it issues; each has a new token.
type issuer struct {
	t  *testing.T
	mu sync.Mutex
	n  int
}

func (i *issuer) newBootstrap(context.Context) (protocol.Bootstrap, error) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.n++
	b := testBootstrap(i.t)
	b.Token = "abc12" + string(rune('0'+i.n%10)) + ".0123456789abcdef"
	return b, nil
}

func (i *issuer) issued() int {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.n
}

func refused(reason string) float64 { return testutil.ToFloat64(refusedTotal.WithLabelValues(reason)) }

// getFrom fetches the script of mac as a client at from.
func getFrom(t *testing.T, s *Server, mac string, from netip.Addr) string {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, "/boot/"+mac+".ipxe", nil)
	r.RemoteAddr = netip.AddrPortFrom(from, 41000).String()
	w := httptest.NewRecorder()
	s.ServeHTTP(w, r)
	if w.Code != http.StatusOK {
		t.Fatalf("status %d: %s", w.Code, w.Body)
	}
	return w.Body.String()
}

// TestScriptTokenOnlyToItsAddress checks who gets a script with a bootstrap token: a request
// from the Host's reserved address, else from the address the DHCP server knows for the MAC;
// every other request gets the refused script, with no token and no token issued, a log line
// and a count. Scripts without a token go to anyone.
func TestScriptTokenOnlyToItsAddress(t *testing.T) {
	const mac = "52:54:00:00:00:21"
	leased, other := netip.MustParseAddr("192.168.10.100"), netip.MustParseAddr("192.168.10.66")
	reserved := netip.MustParseAddr("192.168.10.21")
	b := testBootstrap(t)
	inspecting := basaltv1.HostStateInspecting
	tests := []struct {
		name    string
		target  Target
		clients ClientAddresses
		from    netip.Addr
		refused string // "" when the script is served as Scripts says
		token   bool   // the served script has a token
	}{
		{"leased address", Target{State: inspecting}, staticClients{mac: leased}, leased, "", true},
		{"IPv4-mapped leased address", Target{State: inspecting}, staticClients{mac: leased}, netip.AddrFrom16(leased.As16()), "", true},
		{"another address than the leased one", Target{State: inspecting}, staticClients{mac: leased}, other, RefusedWrongAddress, false},
		{"the lease of another MAC", Target{State: inspecting}, staticClients{"52:54:00:00:00:22": other}, other, RefusedNoAddress, false},
		{"no DHCP at all", Target{State: inspecting}, nil, leased, RefusedNoAddress, false},
		{"reserved address", Target{State: inspecting, Address: reserved}, nil, reserved, "", true},
		{"reserved address wins over DHCP", Target{State: inspecting, Address: reserved}, staticClients{mac: other}, other, RefusedWrongAddress, false},
		{"reserved address, DHCP agrees", Target{State: inspecting, Address: reserved}, staticClients{mac: reserved}, reserved, "", true},
		{"token given by Scripts, wrong address", Target{State: inspecting, Agent: &AgentBoot{Bootstrap: b}}, staticClients{mac: leased}, other, RefusedWrongAddress, false},
		{"provisioned root on disk needs no token", Target{State: basaltv1.HostStateProvisioned, Root: RootLabel, Agent: &AgentBoot{}}, nil, other, "", false},
		{"provisioned boots its disk", Target{State: basaltv1.HostStateProvisioned, Agent: &AgentBoot{Bootstrap: b}}, nil, other, "", false},
		{"nothing to boot", Target{State: basaltv1.HostStateError}, nil, other, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			iss := &issuer{t: t}
			tt.target.Known, tt.target.Host = true, "default/node-21"
			if tt.target.Agent == nil && tt.target.State == inspecting {
				tt.target.Agent = &AgentBoot{NewBootstrap: iss.newBootstrap}
			}
			logs := &logSink{}
			s := &Server{BaseURL: baseURL, Clients: tt.clients, Log: logs.logger(),
				Scripts: fakeScripts{targets: map[string]Target{mac: tt.target}}}
			before := refused(tt.refused)
			body := getFrom(t, s, mac, tt.from)

			if got := strings.Contains(body, ArgToken+"="); got != tt.token {
				t.Errorf("token in the script: %v, want %v:\n%s", got, tt.token, body)
			}
			if tt.refused == "" {
				if strings.Contains(body, "not served") {
					t.Errorf("refused:\n%s", body)
				}
				return
			}
			if iss.issued() != 0 {
				t.Errorf("%d tokens issued for a refused request", iss.issued())
			}
			if got := refused(tt.refused) - before; got != 1 {
				t.Errorf("basalt_pxe_http_scripts_refused_total{reason=%q} went up by %v, want 1", tt.refused, got)
			}
			if !strings.Contains(body, "dhcp ||") || !strings.Contains(body, "chain --replace --autofree "+baseURL+"/boot/"+mac+".ipxe") {
				t.Errorf("the refused script does not renew DHCP and ask again:\n%s", body)
			}
			if strings.Contains(body, reserved.String()) || strings.Contains(body, leased.String()) && tt.from != leased {
				t.Errorf("the refused script tells the address it wants:\n%s", body)
			}
			l := logs.text()
			if !strings.Contains(l, "Refused a boot script") || !strings.Contains(l, `"reason"="`+tt.refused+`"`) {
				t.Errorf("no log line with the reason:\n%s", l)
			}
			if strings.Contains(l, "0123456789abcdef") {
				t.Errorf("a token reached the logs:\n%s", l)
			}
		})
	}
	// The refused scripts, as served.
	s := &Server{BaseURL: baseURL, Clients: staticClients{mac: leased}, Scripts: fakeScripts{targets: map[string]Target{
		mac: {Known: true, Host: "default/node-21", State: inspecting, Agent: &AgentBoot{Bootstrap: b}},
	}}}
	golden(t, "refused_wrong_address.ipxe", []byte(getFrom(t, s, mac, other)))
	golden(t, "refused_no_address.ipxe", s.refusedScript(mac, RefusedNoAddress, other))
	golden(t, "refused_rate_limited.ipxe", s.refusedScript(mac, RefusedRateLimited, leased))
}

// TestScriptTokenRateLimit checks the rate limit of scripts with a token per MAC address: a
// burst of TokenBurst, then one every TokenInterval; refused requests from other addresses do
// not use it up, and other MAC addresses have their own.
func TestScriptTokenRateLimit(t *testing.T) {
	const mac, mac2 = "52:54:00:00:00:31", "52:54:00:00:00:32"
	addr, addr2 := netip.MustParseAddr("192.168.10.31"), netip.MustParseAddr("192.168.10.32")
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	iss := &issuer{t: t}
	agent := &AgentBoot{NewBootstrap: iss.newBootstrap}
	s := &Server{
		BaseURL: baseURL, Now: func() time.Time { return now },
		Clients: staticClients{mac: addr, mac2: addr2},
		Scripts: fakeScripts{targets: map[string]Target{
			mac:  {Known: true, Host: "default/node-31", State: basaltv1.HostStateRegistering, Agent: agent},
			mac2: {Known: true, Host: "default/node-32", State: basaltv1.HostStateRegistering, Agent: agent},
		}},
	}
	fetch := func(mac string, from netip.Addr) bool {
		return strings.Contains(getFrom(t, s, mac, from), ArgToken+"=")
	}
	for range 10 {
		if fetch(mac, addr2) {
			t.Fatal("a token for another address")
		}
	}
	limited := refused(RefusedRateLimited)
	for i := range DefaultTokenBurst {
		if !fetch(mac, addr) {
			t.Fatalf("fetch %d of the burst got no token", i+1)
		}
	}
	if fetch(mac, addr) {
		t.Fatal("a token beyond the burst")
	}
	if got := refused(RefusedRateLimited) - limited; got != 1 {
		t.Errorf("rate_limited counted %v times, want 1", got)
	}
	if !fetch(mac2, addr2) {
		t.Error("another MAC address is limited too")
	}
	now = now.Add(DefaultTokenInterval - time.Second)
	if fetch(mac, addr) {
		t.Error("a token before the interval")
	}
	now = now.Add(time.Second)
	if !fetch(mac, addr) {
		t.Error("no token after the interval")
	}
	if fetch(mac, addr) {
		t.Error("two tokens after one interval")
	}
	if want := DefaultTokenBurst + 2; iss.issued() != want {
		t.Errorf("%d tokens issued, want %d", iss.issued(), want)
	}
}

// TestLimiterBounded checks that the limiter tracks at most its limit of keys: buckets that
// have refilled go first, then the least recently used.
func TestLimiterBounded(t *testing.T) {
	now := time.Now()
	l := newLimiter(1, time.Minute, 3)
	for _, k := range []string{"a", "b", "c"} {
		if !l.allow(k, now) {
			t.Fatalf("%s: first use refused", k)
		}
	}
	l.allow("a", now) // a is now the most recently used, and empty
	if !l.allow("d", now) {
		t.Fatal("d: first use refused")
	}
	if len(l.byKey) != 3 || l.recent.Len() != 3 {
		t.Fatalf("%d keys, %d in the list; want 3", len(l.byKey), l.recent.Len())
	}
	if _, ok := l.byKey["b"]; ok {
		t.Error("b, the least recently used, is still tracked")
	}
	if l.allow("a", now) {
		t.Error("a was evicted instead of b")
	}
	// A minute later every bucket is full again: they go first, whatever their use.
	now = now.Add(time.Minute)
	for _, k := range []string{"e", "f", "g"} {
		l.allow(k, now)
	}
	for _, k := range []string{"e", "f", "g"} {
		if _, ok := l.byKey[k]; !ok {
			t.Errorf("%s is not tracked", k)
		}
	}
	if l.allow("g", now) {
		t.Error("g's bucket was reset")
	}
}
