package plan

import (
	"encoding/json"
	"testing"
)

// FuzzPlanDecodeValidate: the agent decodes a Plan from the network (protocol.PlanResponse) and
// applies it only when Validate passes. On any bytes: no panic in decoding, Validate, Normalize,
// Hash, StartOrder or ParseOwner; and a Plan that validates keeps validating, with the same hash,
// after a round trip through JSON (what the manager stores is what the agent checks).
func FuzzPlanDecodeValidate(f *testing.F) {
	seed := &Plan{Format: FormatVersion, Host: "node-1",
		Files:    []File{{Path: "/etc/basalt/x", Mode: 0o600, Owner: "65532:65532", Content: []byte("x")}},
		Services: []Service{{Name: "kubelet", Argv: []string{"/opt/basalt/bin/kubelet"}, Restart: RestartAlways}},
	}
	seed.Normalize()
	if err := seed.Validate(); err != nil {
		f.Fatalf("the seed Plan is invalid: %v", err)
	}
	b, err := json.Marshal(seed)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte(`{"format":1,"host":"h","services":[{"name":"a","argv":["/x"],"after":["a"]}]}`))
	f.Add([]byte(`{"format":1,"host":"h","files":[{"path":"/a/../b","mode":4095,"owner":"-1:0"}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var p Plan
		if json.Unmarshal(b, &p) != nil {
			return
		}
		for _, fl := range p.Files {
			_, _, _ = ParseOwner(fl.Owner)
		}
		if p.Validate() != nil {
			return
		}
		h := p.Hash()
		_, _ = p.StartOrder()
		again, err := json.Marshal(&p)
		if err != nil {
			t.Fatal(err)
		}
		var q Plan
		if err := json.Unmarshal(again, &q); err != nil {
			t.Fatalf("a valid Plan does not decode after encoding: %v", err)
		}
		if err := q.Validate(); err != nil {
			t.Fatalf("a valid Plan is invalid after a round trip: %v", err)
		}
		if q.Hash() != h {
			t.Fatalf("hash changed over a round trip: %s → %s", h, q.Hash())
		}
	})
}
