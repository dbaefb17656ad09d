package inspect

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestParseNameservers(t *testing.T) {
	for name, tc := range map[string]struct {
		in   string
		want []string
	}{
		"plain":          {"search example.org\nnameserver 192.0.2.1\nnameserver 2001:db8::53\noptions ndots:2\n", []string{"192.0.2.1", "2001:db8::53"}},
		"resolved stub":  {"nameserver 127.0.0.53\noptions edns0 trust-ad\n", nil},
		"docker stub":    {"nameserver 127.0.0.11\noptions ndots:0\n", nil},
		"mixed":          {"nameserver 127.0.0.1\nnameserver ::1\nnameserver 0.0.0.0\nnameserver 192.0.2.9\n", []string{"192.0.2.9"}},
		"junk and zones": {"nameserver\nnameserver fe80::1%eth0\nnameserver dns.example\n# nameserver 192.0.2.7\nnameserver 192.0.2.8 # trailing\n", []string{"192.0.2.8"}},
		"duplicates":     {"nameserver 192.0.2.1\nnameserver 192.0.2.1\n", []string{"192.0.2.1"}},
		"at most three":  {"nameserver 192.0.2.1\nnameserver 192.0.2.2\nnameserver 192.0.2.3\nnameserver 192.0.2.4\n", []string{"192.0.2.1", "192.0.2.2", "192.0.2.3"}},
		"mapped v4":      {"nameserver ::ffff:192.0.2.5\n", []string{"192.0.2.5"}},
		// Found by FuzzParseNameservers: a mapped loopback or unspecified address is no server.
		"mapped stubs": {"nameserver ::ffff:127.0.0.53\nnameserver ::ffff:0.0.0.0\n", nil},
	} {
		if got := ParseNameservers(tc.in); !slices.Equal(got, tc.want) {
			t.Errorf("%s: %q, want %q", name, got, tc.want)
		}
	}
}

// TestNameserversPreferResolvedUpstreams: on a host running systemd-resolved the stub in
// /etc/resolv.conf is passed over for resolved's upstream list.
func TestNameserversPreferResolvedUpstreams(t *testing.T) {
	root := t.TempDir()
	write := func(rel, content string) {
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("etc/resolv.conf", "nameserver 127.0.0.53\n")
	i := Inspector{Root: root}
	if got := i.nameservers(); got != nil {
		t.Errorf("stub only: %q", got)
	}
	write("run/systemd/resolve/resolv.conf", "nameserver 198.51.100.1\n")
	os, err := i.InspectOS(context.Background())
	if err != nil || !slices.Equal(os.Nameservers, []string{"198.51.100.1"}) {
		t.Errorf("with resolved: %+v %v", os, err)
	}
}
