#!/usr/bin/env bash
# Runs every fuzz target of the repository for a bounded time each (FUZZTIME, default 10s).
# `go test` alone only replays the seed corpus; this actually fuzzes. A crash fails the run and
# leaves the failing input under the package's testdata/fuzz/ to be committed as a regression.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime="${FUZZTIME:-10s}"
mapfile -t targets < <(grep -rl --include='*_test.go' -E '^func Fuzz[A-Za-z0-9_]+\(f \*testing\.F\)' . |
	while read -r f; do
		pkg="./$(dirname "${f#./}")"
		grep -oE '^func Fuzz[A-Za-z0-9_]+' "$f" | sed "s|^func |$pkg |"
	done | sort -u)
if [ "${#targets[@]}" -eq 0 ]; then
	echo "fuzz: no fuzz targets found" >&2
	exit 1
fi
for t in "${targets[@]}"; do
	pkg="${t% *}" name="${t#* }"
	echo "==> fuzz $name in $pkg for $fuzztime"
	go test -run='^$' -fuzz="^${name}\$" -fuzztime="$fuzztime" "$pkg"
done
echo "fuzz: ${#targets[@]} targets, ${fuzztime} each: no crash"
