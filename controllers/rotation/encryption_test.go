package rotation

import "testing"

func TestLabel(t *testing.T) {
	line := `apiserver_encryption_config_controller_last_config_info{apiserver_id_hash="sha256:aaaa",hash="sha256:bbbb"} 1`
	if got := label(line, "hash"); got != "sha256:bbbb" {
		t.Errorf("hash = %q", got)
	}
	if got := label(line, "apiserver_id_hash"); got != "sha256:aaaa" {
		t.Errorf("apiserver_id_hash = %q", got)
	}
	if got := label(`m{hash="x"} 1`, "hash"); got != "x" {
		t.Errorf("first label: %q", got)
	}
	if got := label(`m{apiserver_id_hash="x"} 1`, "hash"); got != "" {
		t.Errorf("a label name's suffix matched: %q", got)
	}
}
