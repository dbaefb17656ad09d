package access

import (
	"strings"
	"testing"
)

func TestValidateName(t *testing.T) {
	for _, ok := range []string{"alice", "a", "ops.team-1", strings.Repeat("a", 63)} {
		if err := ValidateName(ok); err != nil {
			t.Errorf("%q refused: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "Alice", "alice:root", "-a", "a-", "a b", strings.Repeat("a", 64), "system:masters"} {
		if err := ValidateName(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if s := Subject("alice", "0a1b2c3d"); s != "basalt-admin:alice:0a1b2c3d" {
		t.Errorf("Subject = %q", s)
	}
}
