#!/usr/bin/env bash
# Runs every fuzz target of the repository for a bounded budget each (FUZZTIME, default 50000x).
# `go test` alone only replays the seed corpus; this actually fuzzes. A crash fails the run and
# leaves the failing input under the package's testdata/fuzz/ to be committed as a regression.
#
# The budget is a count of executions, not a duration: with a duration, Go 1.26's fuzz coordinator
# can report a bare "context deadline exceeded" when -fuzztime expires while a worker is busy
# (golang/go#75804, fixed in Go 1.27). A count has no deadline to race, so on a loaded machine the
# run only gets slower, and every failure it reports is a real one.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime="${FUZZTIME:-50000x}"
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
