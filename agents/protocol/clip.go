package protocol

import (
	"strings"
	"unicode/utf8"
)

// Clip returns s as valid UTF-8 without NUL bytes, at most n bytes long; a cut text ends in "…"
// and never splits a character. The agent clips what it reports to the limits of Status, and
// the agent API clips again what it copies into the management cluster's objects.
func Clip(s string, n int) string {
	s = strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "")
	if len(s) <= n {
		return s
	}
	cut := n - len("…")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
