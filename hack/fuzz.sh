#!/usr/bin/env bash
# Runs every fuzz target of the repository for a bounded budget each (FUZZTIME, default 50000x).
# `go test` alone only replays the seed corpus; this actually fuzzes. A crash fails the run and
# leaves the failing input under the package's testdata/fuzz/ to be committed as a regression.
#
# The default budget is a count of executions, not a duration: with a duration, Go 1.26's fuzz
# coordinator can report a bare "context deadline exceeded" when -fuzztime expires while a worker
# is busy (golang/go#75804, fixed in Go 1.27). A count has no deadline to race, so on a loaded
# machine the run only gets slower, and every failure it reports is a real one. A duration budget
# (make fuzz-long) is still honoured: a target whose only failure is that bare deadline message,
# with no failing input written and no panic, ran its whole time and is reported as "deadline
# (go#75804)", not as a crash.
#
# FUZZ_JOBS targets run at once (default 1), each with FUZZ_PARALLEL workers (default: go test's,
# one per core). Every target's output is kept in FUZZ_LOG_DIR (default: a new temporary folder),
# and the run ends with a table of executions, new corpus entries and results per target, written
# also to FUZZ_LOG_DIR/summary.md.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime="${FUZZTIME:-50000x}"
jobs="${FUZZ_JOBS:-1}"
parallel="${FUZZ_PARALLEL:-}"
logdir="${FUZZ_LOG_DIR:-$(mktemp -d -t basalt-fuzz.XXXXXX)}"
mkdir -p "$logdir"
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

# fuzz_one runs one target, its output in $logdir/<name>.log, and writes its result word
# (ok, deadline, FAIL) to $logdir/<name>.result.
fuzz_one() {
	local file="$1" name="$2" pkg budget own log
	pkg="./$(dirname "$file")"
	budget="$fuzztime"
	if [ -z "${FUZZTIME:-}" ]; then
		own="$(grep -B1 -E "^func ${name}\(" "$file" | sed -n 's|^// fuzz-budget: *||p')"
		budget="${own:-$fuzztime}"
	fi
	log="$logdir/$name.log"
	echo "$budget" >"$logdir/$name.budget"
	echo "==> fuzz $name in $pkg for $budget (log: $log)"
	local args=(-run='^$' -fuzz="^${name}\$" -fuzztime="$budget")
	[ -n "$parallel" ] && args+=(-parallel="$parallel")
	if go test "${args[@]}" "$pkg" >"$log" 2>&1; then
		echo ok >"$logdir/$name.result"
	elif [[ "$budget" != *x ]] && grep -q 'context deadline exceeded' "$log" &&
		! grep -qE 'Failing input written to|^panic:|fatal error:' "$log"; then
		echo deadline >"$logdir/$name.result"
	else
		echo FAIL >"$logdir/$name.result"
		echo "fuzz: $name FAILED; its output:" >&2
		cat "$log" >&2
	fi
}

running=0
for t in "${targets[@]}"; do
	if [ "$running" -ge "$jobs" ]; then
		wait -n || true
		running=$((running - 1))
	fi
	fuzz_one "${t% *}" "${t#* }" &
	running=$((running + 1))
done
wait

# The summary: the coordinator's last progress line of each target holds its totals. (Written to
# a file, not through a pipe: a loop in a pipeline runs in a subshell and would lose the count.)
failed=0
summary="$logdir/summary.md"
{
	echo "| Target | Package | Budget | Executions | New corpus entries | Result |"
	echo "|---|---|---|---|---|---|"
} >"$summary"
for t in "${targets[@]}"; do
	file="${t% *}" name="${t#* }"
	result="$(cat "$logdir/$name.result" 2>/dev/null || echo FAIL)"
	if [ "$result" = FAIL ]; then
		failed=$((failed + 1))
	fi
	last="$(grep -E '^fuzz: elapsed: .*execs: ' "$logdir/$name.log" | tail -1 || true)"
	execs="$(sed -nE 's/.*execs: ([0-9]+).*/\1/p' <<<"$last")"
	newi="$(sed -nE 's/.*new interesting: ([0-9]+).*/\1/p' <<<"$last")"
	elapsed="$(sed -nE 's/^fuzz: elapsed: ([^,]+),.*/\1/p' <<<"$last")"
	echo "| \`$name\` | $(dirname "$file") | $(cat "$logdir/$name.budget" 2>/dev/null) (ran ${elapsed:-?}) | ${execs:-?} | ${newi:-?} | $result |" >>"$summary"
done
cat "$summary"
if [ "$failed" -gt 0 ]; then
	echo "fuzz: $failed of ${#targets[@]} targets failed (logs: $logdir)" >&2
	exit 1
fi
echo "fuzz: ${#targets[@]} targets: no crash (logs: $logdir)"
