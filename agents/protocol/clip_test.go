package protocol

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestClip(t *testing.T) {
	for _, tc := range []struct {
		in   string
		n    int
		want string
	}{
		{"short", 10, "short"},
		{"a\x00b", 10, "ab"},
		{"bad\xffbyte", 20, "bad\uFFFDbyte"},
		{strings.Repeat("x", 20), 10, strings.Repeat("x", 7) + "…"},
		{"ééééé", 8, "éé…"}, // 10 bytes; the cut never splits é
	} {
		got := Clip(tc.in, tc.n)
		if got != tc.want {
			t.Errorf("Clip(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
		}
		if len(got) > tc.n || !utf8.ValidString(got) {
			t.Errorf("Clip(%q, %d) = %q: %d bytes or invalid UTF-8", tc.in, tc.n, got, len(got))
		}
	}
}
