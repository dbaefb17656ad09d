#!/usr/bin/env bash
# Prints what failed in a `go test` log: the failing tests, their messages (file_test.go:N lines)
# and panics, so the end of a CI log names the cause even when the packages' own output (the
# controllers' logs) is long. Usage: hack/test-failures.sh LOG
set -euo pipefail
log="${1:?usage: hack/test-failures.sh LOG}"
echo
echo "==> What failed (full log: $log)"
grep -E -- '^\s*--- FAIL|^\s+[A-Za-z0-9_]+_test\.go:[0-9]+: |^FAIL|^panic: |^\s*\[?signal ' "$log" | cut -c1-400 | tail -n 80 || echo "(no failing test found in the log)"
