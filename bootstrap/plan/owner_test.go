package plan

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestOwnerChangesHash: a file's owner is part of the Plan hash, and a Plan without owners hashes
// as it did before owners existed (the empty owner is not encoded).
func TestOwnerChangesHash(t *testing.T) {
	seen := map[string]string{}
	for _, owner := range []string{"", "0:0", "1000:1000", "1000:1001", "1001:1000"} {
		p := examplePlan()
		p.Files[0].Owner = owner
		h := p.Hash()
		if other, dup := seen[h]; dup {
			t.Errorf("owner %q: hash %s equals the hash with owner %q", owner, h, other)
		}
		seen[h] = owner
	}
	b, err := json.Marshal(examplePlan().Files[0])
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "owner") {
		t.Errorf("an empty owner is encoded: %s", b)
	}
	p := examplePlan()
	p.Files[1].Owner = "65532:65532"
	b, err = json.Marshal(p.Files[1])
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"owner":"65532:65532"`) {
		t.Errorf("owner not encoded: %s", b)
	}
}

func TestValidateOwner(t *testing.T) {
	for _, ok := range []string{"", "0:0", "65532:65532", "1000:0", "4294967294:4294967294"} {
		p := examplePlan()
		p.Files[0].Owner = ok
		if err := p.Validate(); err != nil {
			t.Errorf("owner %q refused: %v", ok, err)
		}
		uid, gid, err := ParseOwner(ok)
		if err != nil || (ok == "" && (uid != 0 || gid != 0)) {
			t.Errorf("ParseOwner(%q) = %d, %d, %v", ok, uid, gid, err)
		}
	}
	if uid, gid, _ := ParseOwner("65532:1000"); uid != 65532 || gid != 1000 {
		t.Errorf("ParseOwner(65532:1000) = %d, %d", uid, gid)
	}
	for _, bad := range []string{"root:root", "0", "0:", ":0", "-1:0", "0:-1", "+1:0", "01:0", " 0:0", "0:0:0",
		"0:4294967295", "4294967295:0", "4294967296:0", "99999999999999999999:0"} {
		p := examplePlan()
		p.Files[1].Owner = bad
		err := p.Validate()
		want := `files[1] (/etc/basalt/etcd.env): owner "` + bad + `"`
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("owner %q: error %v, want one containing %s", bad, err, want)
		}
	}
}
