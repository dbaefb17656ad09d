#!/usr/bin/env bash
# Prints what failed in a `go test` log: the failing tests, their messages (file_test.go:N lines,
# with the indented lines that continue a multi-line message, such as a VM's serial console
# tail) and panics, so the end of a CI log names the cause even when the packages' own output
# (the controllers' logs) is long. Usage: hack/test-failures.sh LOG
set -euo pipefail
log="${1:?usage: hack/test-failures.sh LOG}"
echo
echo "==> What failed (full log: $log)"
awk '
	function indent(s) { match(s, /^ */); return RLENGTH }
	/^[ \t]*--- FAIL|^FAIL|^panic: |^[ \t]*\[?signal / { print substr($0, 1, 400); cont = -1; next }
	/^ +[A-Za-z0-9_]+_test\.go:[0-9]+: / { print substr($0, 1, 400); cont = indent($0); kept = 0; next }
	cont >= 0 && indent($0) > cont && kept < 60 { print substr($0, 1, 400); kept++; next }
	{ cont = -1 }
' "$log" | tail -n 250 | grep . || echo "(no failing test found in the log)"
