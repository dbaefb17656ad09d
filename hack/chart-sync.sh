#!/usr/bin/env bash
# Keeps the Helm chart in step with config/: copies, byte for byte, what controller-gen generates
# and what config/rbac declares into charts/basalt/files/, where the chart's templates read them
# with .Files.Get. The chart never restates a CRD or an RBAC rule by hand, so it cannot drift.
#
#   hack/chart-sync.sh          copy (what `make chart` runs; `make manifests` runs it too)
#   hack/chart-sync.sh --check  copy nothing; exit 1 and list the differences if a copy is stale
#
# What is copied:
#   config/crd/bases/*.yaml                  -> charts/basalt/files/crds/
#   config/rbac/role.yaml                    -> charts/basalt/files/rbac/role.yaml (the manager's rules)
#   config/rbac/leader_election_role.yaml    -> charts/basalt/files/rbac/
#   config/rbac/metrics_auth_role.yaml       -> charts/basalt/files/rbac/
# A file in files/crds/ with no source in config/crd/bases/ is removed (or reported by --check).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

check=false
case "${1:-}" in
--check) check=true ;;
"") ;;
*)
	echo "usage: $0 [--check]" >&2
	exit 2
	;;
esac

dst=charts/basalt/files
pairs=()
for f in config/crd/bases/*.yaml; do
	pairs+=("$f" "$dst/crds/$(basename "$f")")
done
for f in role.yaml leader_election_role.yaml metrics_auth_role.yaml; do
	pairs+=("config/rbac/$f" "$dst/rbac/$f")
done

stale=0
for ((i = 0; i < ${#pairs[@]}; i += 2)); do
	src=${pairs[i]} out=${pairs[i + 1]}
	if [ -f "$out" ] && cmp -s "$src" "$out"; then
		continue
	fi
	if $check; then
		echo "chart-sync: $out differs from $src" >&2
		stale=1
	else
		mkdir -p "$(dirname "$out")"
		cp "$src" "$out.tmp" && mv "$out.tmp" "$out"
		echo "chart-sync: $src -> $out" >&2
	fi
done
# CRDs removed from config/ leave the chart too.
for out in "$dst"/crds/*.yaml; do
	[ -e "$out" ] || continue
	if [ ! -f "config/crd/bases/$(basename "$out")" ]; then
		if $check; then
			echo "chart-sync: $out has no source in config/crd/bases" >&2
			stale=1
		else
			rm -f "$out"
			echo "chart-sync: removed $out" >&2
		fi
	fi
done
if [ "$stale" -ne 0 ]; then
	echo "chart-sync: the chart is out of step with config/; run 'make chart' (or 'make manifests')" >&2
	exit 1
fi
