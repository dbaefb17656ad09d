package clusterpki_test

import (
	"net"
	"testing"
	"time"

	"github.com/basalt-dev/basalt/bootstrap/clusterpki"
)

var benchNow = time.Date(2026, 7, 1, 12, 0, 0, 0, time.UTC)

// benchInput is a 3 control-plane + 2 worker cluster with the default key algorithm (ECDSA
// P-256) and validities: 3 CAs, the service-account key and 29 leaves.
func benchInput() clusterpki.Input {
	ip := func(s string) []net.IP { return []net.IP{net.ParseIP(s)} }
	return clusterpki.Input{
		ClusterName: "prod", Endpoint: "api.example.com", ServiceCIDR: "10.96.0.0/12", DNSDomain: "cluster.local",
		ControlPlane: []clusterpki.Node{{Name: "cp-1", IPs: ip("192.0.2.11")}, {Name: "cp-2", IPs: ip("192.0.2.12")}, {Name: "cp-3", IPs: ip("192.0.2.13")}},
		Workers:      []clusterpki.Node{{Name: "w-1", IPs: ip("192.0.2.21")}, {Name: "w-2", IPs: ip("192.0.2.22")}},
	}
}

// BenchmarkEnsure: cold is a new cluster's first reconcile (every key generated, every
// certificate signed); steady is every later reconcile, with nothing to renew (every stored
// certificate parsed and checked against its CA and request).
func BenchmarkEnsure(b *testing.B) {
	in := benchInput()
	b.Run("cold-3cp-2w", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			res, err := clusterpki.Ensure(nil, in, benchNow)
			if err != nil {
				b.Fatal(err)
			}
			if len(res.Changed) != len(res.Material) {
				b.Fatalf("%d changes for %d entries", len(res.Changed), len(res.Material))
			}
		}
	})
	b.Run("steady-3cp-2w", func(b *testing.B) {
		first, err := clusterpki.Ensure(nil, in, benchNow)
		if err != nil {
			b.Fatal(err)
		}
		later := benchNow.Add(24 * time.Hour)
		b.ReportAllocs()
		for b.Loop() {
			res, err := clusterpki.Ensure(first.Material, in, later)
			if err != nil {
				b.Fatal(err)
			}
			if len(res.Changed) != 0 {
				b.Fatalf("steady state changed %v", res.Changed)
			}
		}
	})
}
