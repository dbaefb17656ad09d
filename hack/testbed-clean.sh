#!/usr/bin/env bash
# Removes what test bed runs (test/e2e/bed) left behind: every container, network and volume
# labelled basalt.dev/testbed, and the runs' lease files. For after an interrupted test run;
# a run still in progress loses its hosts. bed.New already removes the leftovers of runs whose
# process died, so this is rarely needed.
#
# Usage: hack/testbed-clean.sh [RUN_ID]   (no RUN_ID: every run)
set -euo pipefail
label="basalt.dev/testbed${1:+=$1}"
cache="${BASALT_CACHE:-$HOME/.cache/basalt}"

containers=$(docker ps --all --quiet --filter "label=$label")
networks=$(docker network ls --quiet --filter "label=$label")
volumes=$(docker volume ls --quiet --filter "label=$label")
# shellcheck disable=SC2086 # word splitting of the ID lists is intended
{
	[[ -z "$containers" ]] || docker rm --force --volumes $containers >/dev/null
	[[ -z "$networks" ]] || docker network rm $networks >/dev/null
	[[ -z "$volumes" ]] || docker volume rm --force $volumes >/dev/null
}
# The runs' isolation rules (test/e2e/bed/network.go): one DOCKER-USER rule per run, by comment.
rules=0
while read -r rule; do
	[[ -n $rule ]] || continue
	eval "iptables -w ${rule/#-A /-D }" && rules=$((rules + 1))
done < <(iptables -w -S DOCKER-USER 2>/dev/null | grep -- "--comment \"basalt-tb-${1:-}" || true)
echo "testbed-clean: removed $rules isolation rules"
echo "testbed-clean: removed $(wc -w <<<"$containers") containers, $(wc -w <<<"$networks") networks, $(wc -w <<<"$volumes") volumes (label $label)"
if [[ -z "${1:-}" ]]; then
	rm -f "$cache"/testbed/runs/*.lock
else
	rm -f "$cache/testbed/runs/$1.lock"
fi
