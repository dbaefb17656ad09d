package inspect

import (
	"net/netip"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/basalt-dev/basalt/agents/protocol"
)

// The inspector reads /proc, /sys and /etc files of a host Basalt does not control, and reports
// what it finds to the manager. These targets check its parsers on any content: no panic, and
// only well-formed values come out.

func FuzzParseCPUList(f *testing.F) {
	for _, s := range []string{"0-3", "0,2-5,7", "", "0-", "5-2", "0-9223372036854775806,0-9223372036854775806"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if n := parseCPUList(s); n < 0 || n > maxCPUs {
			t.Fatalf("parseCPUList(%q) = %d, want 0..%d", s, n, maxCPUs)
		}
	})
}

func FuzzVPDSerial(f *testing.F) {
	f.Add([]byte{0, 0x80, 0, 4, 'A', 'B', 'C', 'D'})
	f.Add([]byte{0, 0x80, 0xff, 0xff, 'A'})
	f.Fuzz(func(t *testing.T, b []byte) {
		s := vpdSerial(b)
		for _, c := range []byte(s) {
			if c < 0x20 || c > 0x7e {
				t.Fatalf("vpdSerial(%q) = %q, not printable ASCII", b, s)
			}
		}
	})
}

func FuzzWWN(f *testing.F) {
	for _, s := range []string{"naa.5000c500a1b2c3d4", "eui.0025388b71b2e3f4", "t10.ATA QEMU", "nvme.1b36-3132  33"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if w := scsiWWN(s); w != "" && (!strings.HasPrefix(w, "0x") || !isHex(w[2:]) || w != strings.ToLower(w)) {
			t.Fatalf("scsiWWN(%q) = %q", s, w)
		}
		if w := nvmeWWN(s); strings.ContainsAny(w, " \t\n") || (utf8.ValidString(s) && w != strings.ToLower(w)) {
			t.Fatalf("nvmeWWN(%q) = %q", s, w)
		}
	})
}

func FuzzParseNameservers(f *testing.F) {
	f.Add("nameserver 10.0.0.2\nnameserver 127.0.0.53\nsearch lan\nnameserver fe80::1%eth0\n")
	f.Add("nameserver ::ffff:10.1.1.1\nnameserver 10.1.1.1\n")
	f.Fuzz(func(t *testing.T, conf string) {
		got := ParseNameservers(conf)
		if len(got) > protocol.MaxNameservers {
			t.Fatalf("%d nameservers, at most %d", len(got), protocol.MaxNameservers)
		}
		seen := map[string]bool{}
		for _, s := range got {
			a, err := netip.ParseAddr(s)
			if err != nil || a.Zone() != "" || a.IsLoopback() || a.IsUnspecified() || a.String() != s || seen[s] {
				t.Fatalf("ParseNameservers(%q) returned %q", conf, s)
			}
			seen[s] = true
		}
	})
}
