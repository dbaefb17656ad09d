package agentserver

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net/url"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/basalt-dev/basalt/agents/protocol"
)

func TestParseIdentity(t *testing.T) {
	uid, _ := url.Parse(hostUIDURIPrefix + "1234")
	cert := func(cn string, orgs []string, uris ...*url.URL) *x509.Certificate {
		return &x509.Certificate{Subject: pkix.Name{CommonName: cn, Organization: orgs}, URIs: uris, SerialNumber: big.NewInt(0xabc)}
	}
	org := []string{protocol.IdentityOrganization}
	for _, tc := range []struct {
		name string
		cert *x509.Certificate
		want agentIdentity
		ok   bool
	}{
		{"valid", cert(protocol.IdentityPrefix+"site-a/node-1.rack-2", org, uid), agentIdentity{"site-a", "node-1.rack-2", "1234", "abc"}, true},
		{"no uid", cert(protocol.IdentityPrefix+"site-a/node-1", org), agentIdentity{}, false},
		{"wrong org", cert(protocol.IdentityPrefix+"site-a/node-1", []string{"system:masters"}, uid), agentIdentity{}, false},
		{"two orgs", cert(protocol.IdentityPrefix+"site-a/node-1", append(org, "system:masters"), uid), agentIdentity{}, false},
		{"no prefix", cert("site-a/node-1", org, uid), agentIdentity{}, false},
		{"no slash", cert(protocol.IdentityPrefix+"node-1", org, uid), agentIdentity{}, false},
		{"extra slash", cert(protocol.IdentityPrefix+"a/b/c", org, uid), agentIdentity{}, false},
		{"bad namespace", cert(protocol.IdentityPrefix+"Site_A/node-1", org, uid), agentIdentity{}, false},
	} {
		got, err := parseIdentity(tc.cert)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("%s: got %+v, %v; want %+v ok=%v", tc.name, got, err, tc.want, tc.ok)
		}
	}
	if _, err := identify(nil); err == nil {
		t.Errorf("identify without TLS state succeeded")
	}
}

func TestValidateStatusLimits(t *testing.T) {
	ok := func() *protocol.Status {
		return &protocol.Status{AgentVersion: "v1", Hardware: &protocol.Hardware{CPUs: 2, MemoryBytes: 1,
			NICs: []protocol.NIC{{Name: "eth0", MAC: "52:54:00:12:34:56", Addresses: []string{"10.0.0.2/24"}}}}}
	}
	if err := validateStatus(ok()); err != nil {
		t.Fatalf("a valid report: %v", err)
	}
	withDNS := ok()
	withDNS.Hardware.OS = &protocol.OSFacts{Nameservers: []string{"192.0.2.1", "2001:db8::53"}}
	if err := validateStatus(withDNS); err != nil {
		t.Fatalf("a valid report with nameservers: %v", err)
	}
	for name, mutate := range map[string]func(*protocol.Status){
		"long version":  func(s *protocol.Status) { s.AgentVersion = strings.Repeat("v", maxVersionLen+1) },
		"many steps":    func(s *protocol.Status) { s.Steps = make([]protocol.StepResult, maxSteps+1) },
		"empty step":    func(s *protocol.Status) { s.Steps = []protocol.StepResult{{}} },
		"many comps":    func(s *protocol.Status) { s.Components = make([]protocol.ComponentHealth, maxComponents+1) },
		"NUL in serial": func(s *protocol.Status) { s.Hardware.System.Serial = "a\x00b" },
		"bad address":   func(s *protocol.Status) { s.Hardware.NICs[0].Addresses = []string{"not-an-ip"} },
		"many cpus":     func(s *protocol.Status) { s.Hardware.CPUs = maxCPUs + 1 },
		"nameless disk": func(s *protocol.Status) { s.Hardware.Disks = []protocol.Disk{{SizeBytes: 1}} },
		"applying hash": func(s *protocol.Status) { s.ApplyingHash = "ABC" },
		"loopback nameserver": func(s *protocol.Status) {
			s.Hardware.OS = &protocol.OSFacts{Nameservers: []string{"127.0.0.53"}}
		},
		"nameserver name": func(s *protocol.Status) { s.Hardware.OS = &protocol.OSFacts{Nameservers: []string{"dns.example"}} },
		"many nameservers": func(s *protocol.Status) {
			s.Hardware.OS = &protocol.OSFacts{Nameservers: []string{"192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4"}}
		},
	} {
		s := ok()
		mutate(s)
		if err := validateStatus(s); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestOnlyProbeTimesChanged(t *testing.T) {
	now := time.Now()
	c := convertComponents([]protocol.ComponentHealth{{Name: "etcd", Healthy: true, Time: now.Add(-10 * time.Second)}})
	n := convertComponents([]protocol.ComponentHealth{{Name: "etcd", Healthy: true, Time: now}})
	if !onlyProbeTimesChanged(c, n, now, 30*time.Second) {
		t.Errorf("a fresh probe time alone should not be written")
	}
	if onlyProbeTimesChanged(c, n, now.Add(time.Minute), 30*time.Second) {
		t.Errorf("a probe time older than the interval should be refreshed")
	}
	n[0].Healthy = false
	if onlyProbeTimesChanged(c, n, now, 30*time.Second) {
		t.Errorf("a health change must be written")
	}
}

func TestPathLabel(t *testing.T) {
	for in, want := range map[string]string{
		protocol.PathRegister: protocol.PathRegister, protocol.PathPlan: protocol.PathPlan,
		protocol.PathArtifacts + strings.Repeat("a", 64): "/v1/artifacts", "/metrics": "other", "/v1/plan/x": "other",
	} {
		if got := pathLabel(in); got != want {
			t.Errorf("pathLabel(%s) = %s, want %s", in, got, want)
		}
	}
}

func TestConvertFailedSteps(t *testing.T) {
	long := strings.Repeat("é", 3000) // 6000 bytes
	got := convertFailedSteps([]protocol.StepResult{
		{Step: "file:/etc/x", OK: true},
		{Step: "artifact:etcd", Error: long},
		{Step: "service:etcd", Error: "bad \xff byte\x00"},
		{Step: strings.Repeat("s", 2000), Error: "x"},
	})
	if len(got) != 3 {
		t.Fatalf("%d failed steps, want 3", len(got))
	}
	if e := got[0].Error; len(e) > maxFailedStepError || !utf8.ValidString(e) || !strings.HasSuffix(e, "é…") {
		t.Errorf("long error: %d bytes, valid %v, ends %q", len(e), utf8.ValidString(e), e[len(e)-8:])
	}
	if got[1].Error != "bad \uFFFD byte" {
		t.Errorf("error with an invalid byte and a NUL: %q", got[1].Error)
	}
	if n := len(got[2].Step); n > maxFailedStepName {
		t.Errorf("step name of %d bytes", n)
	}
	if convertFailedSteps([]protocol.StepResult{{Step: "file:/etc/x", OK: true}}) != nil || convertFailedSteps(nil) != nil {
		t.Error("no failed step must give nil (failedSteps cleared)")
	}
}
