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
# A target whose every execution is a network exchange (a real RMCP+ session with ipmi_sim) says
# what it can afford in CI with a comment line right above its func: "// fuzz-budget: 3000x". It
# applies only to the default budget: FUZZTIME given (make fuzz-long) runs every target as long.
mapfile -t targets < <(grep -rl --include='*_test.go' -E '^func Fuzz[A-Za-z0-9_]+\(f \*testing\.F\)' . |
	while read -r f; do
		grep -oE '^func Fuzz[A-Za-z0-9_]+' "$f" | sed "s|^func |${f#./} |"
	done | sort -u)
if [ "${#targets[@]}" -eq 0 ]; then
	echo "fuzz: no fuzz targets found" >&2
	exit 1
fi
for t in "${targets[@]}"; do
	file="${t% *}" name="${t#* }"
	pkg="./$(dirname "$file")"
	budget="$fuzztime"
	if [ -z "${FUZZTIME:-}" ]; then
		own="$(grep -B1 -E "^func ${name}\(" "$file" | sed -n 's|^// fuzz-budget: *||p')"
		budget="${own:-$fuzztime}"
	fi
	echo "==> fuzz $name in $pkg for $budget"
	go test -run='^$' -fuzz="^${name}\$" -fuzztime="$budget" "$pkg"
done
echo "fuzz: ${#targets[@]} targets: no crash"
