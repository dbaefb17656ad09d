#!/usr/bin/env bash
# Builds (or reuses) the Kubernetes artifact set for one Kubernetes version from Go modules only:
# no registry, no download site, no Docker. See docs/artifacts.md and design §8.
#
# Usage: hack/build-artifacts.sh [--only NAME[,NAME...]] VERSION
#   VERSION  a Kubernetes release served as the Go module k8s.io/kubernetes, e.g. v1.37.2
#   --only   build just these artifacts (names as in manifest.json: kube-apiserver, etcd,
#            cni-bridge, image-pause, ...); the integration tests use --only kube-apiserver,etcd
#
# Output: $BASALT_CACHE/artifacts/VERSION/ (BASALT_CACHE defaults to $HOME/.cache/basalt)
#   bin/{kube-apiserver,kube-controller-manager,kube-scheduler,kubelet,kube-proxy}
#   bin/{etcd,etcdctl,etcdutl,containerd,containerd-shim-runc-v2,ctr,runc,crictl}
#   bin/cni/{bridge,host-local,loopback,portmap}
#   images/{pause,webserver,coredns,metrics-server,local-path-provisioner,volume-helper}.tar  OCI image layouts for `ctr -n k8s.io images import`
#   tools/registry                 a test-bed tool, not part of the set (see TOOLS below)
#   tools/{e2e.test,ginkgo,kubectl,agnhost,sample-apiserver,nonewprivs}
#                                  the conformance suite and the binaries of its test images, built
#                                  only when named with --only (make conformance, docs/conformance.md)
#   manifest.json                  written only when every file of the set is present
# Progress goes to stderr; the set folder is printed alone on stdout at the end.
#
# Every component is built in a Go module of its own under $BASALT_CACHE/build/<component>-<version>/
# and its binaries are kept there, keyed on the component version and the build flags, so two
# Kubernetes versions share the containerd/runc/crictl/CNI builds (and etcd within one minor),
# and a rerun with everything built takes seconds. Outputs are written as a temp file and renamed, so an
# interrupted run never leaves a half file that looks done: rerun the same command.
#
# Component versions (override with the environment variables named):
#   etcd            BASALT_ETCD_VERSION        default: by Kubernetes minor (table below)
#   containerd      BASALT_CONTAINERD_VERSION  default v2.4.2
#   runc            BASALT_RUNC_VERSION        default v1.5.2 (containerd v2.4.2's pinned runc)
#   cri-tools       BASALT_CRI_TOOLS_VERSION   default v1.37.0
#   CNI plugins     BASALT_CNI_PLUGINS_VERSION default v1.10.0
#   CoreDNS         BASALT_COREDNS_VERSION     default v1.14.7 (image basalt.dev/coredns:VERSION)
#   metrics-server  BASALT_METRICS_SERVER_VERSION default v0.8.0 (image basalt.dev/metrics-server:VERSION)
#   local-path-provisioner BASALT_LOCAL_PATH_VERSION default v0.0.30 (image basalt.dev/local-path-provisioner:VERSION)
#   registry (bed tool) BASALT_REGISTRY_VERSION default v3.1.2 (tools/registry, distribution v3)
# Other environment: BASALT_CACHE, BASALT_GO_BUILD_JOBS (go build -p, default 2), GOPROXY,
# GOMODCACHE, GOCACHE (the go command's defaults are shared with every other Go build),
# BASALT_MIN_FREE_MB (free space each file system must have before a build; see below).
#
# Before building anything the script checks free disk space, so that a build does not stop with
# "no space left on device" half an hour in: a set built from nothing needs about 1 GiB under
# BASALT_CACHE, 2 GiB of Go module cache and 5 GiB of Go build cache (docs/artifacts.md), added up
# for folders on the same file system. The check is skipped when every wanted file is in the set
# already; BASALT_MIN_FREE_MB replaces the need per file system (0 skips the check), e.g. for a
# rerun whose caches are mostly filled.
#
# runc needs cgo and libseccomp: this script installs Debian's libseccomp-dev with apt-get when it
# is missing (root only) and links runc statically (static-pie) with seccomp support, so the
# binary runs on any Linux host and honours the RuntimeDefault seccomp profile.
set -eEuo pipefail
# The whole script is one block, read before it runs: editing or updating this file while a build
# runs does not change the running build.
{

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly ROOT
readonly CACHE="${BASALT_CACHE:-$HOME/.cache/basalt}"
readonly BUILD="$CACHE/build"
readonly LOGS="$BUILD/logs"
readonly JOBS="${BASALT_GO_BUILD_JOBS:-2}"

readonly CONTAINERD_VERSION="${BASALT_CONTAINERD_VERSION:-v2.4.2}"
readonly RUNC_VERSION="${BASALT_RUNC_VERSION:-v1.5.2}"
readonly CRI_TOOLS_VERSION="${BASALT_CRI_TOOLS_VERSION:-v1.37.0}"
readonly CNI_PLUGINS_VERSION="${BASALT_CNI_PLUGINS_VERSION:-v1.10.0}"
readonly PAUSE_REF="registry.k8s.io/pause:3.10"
readonly WEBSERVER_REF="basalt.dev/webserver:v1"
readonly COREDNS_VERSION="${BASALT_COREDNS_VERSION:-v1.14.7}"
readonly COREDNS_REF="basalt.dev/coredns:$COREDNS_VERSION"
readonly METRICS_SERVER_VERSION="${BASALT_METRICS_SERVER_VERSION:-v0.8.0}"
readonly METRICS_SERVER_REF="basalt.dev/metrics-server:$METRICS_SERVER_VERSION"
readonly LOCAL_PATH_VERSION="${BASALT_LOCAL_PATH_VERSION:-v0.0.30}"
readonly LOCAL_PATH_REF="basalt.dev/local-path-provisioner:$LOCAL_PATH_VERSION"
readonly VOLUME_HELPER_REF="basalt.dev/volume-helper:v1"
readonly REGISTRY_VERSION="${BASALT_REGISTRY_VERSION:-v3.1.2}"

# etcd per Kubernetes minor: the newest served patch of the etcd minor the release names in its
# build/dependencies.yaml (v1.37 names 3.7.0, v1.36 names 3.6.8; etcdctl v3.7.0 is not served).
# A minor missing here gets exactly the version its dependencies.yaml names.
etcd_for_minor() {
  case "$1" in
    37) echo v3.7.3 ;;
    36) echo v3.6.16 ;;
    *) echo "" ;;
  esac
}

# Every artifact of a set, in build order.
readonly ALL=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy
  etcd etcdctl etcdutl containerd containerd-shim-runc-v2 ctr runc crictl
  cni-bridge cni-host-local cni-loopback cni-portmap image-pause image-webserver image-coredns image-metrics-server
  image-local-path-provisioner image-volume-helper)
# Test-bed tools: built like the set's files but not part of the set (no manifest entry, never
# served to hosts); the e2e runs them on bed hosts. tools/registry is the OCI registry
# (distribution v3) that nodes pull the registry e2e's image from.
readonly TOOLS=(tool-registry)
# Conformance tools: Kubernetes' own e2e suite (e2e.test, the ginkgo runner, kubectl of the same
# version) and the programs of the suite's test images, from k8s.io/kubernetes at VERSION. Built
# only when named with --only: they are not needed by make test (hack/conformance-images.sh).
readonly CONFORMANCE_TOOLS=(tool-e2e.test tool-ginkgo tool-kubectl tool-agnhost tool-sample-apiserver tool-nonewprivs)

usage() { sed -n '2,/^set -e/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }

STEP="start"   # what is running now, for the failure message
COMPONENT="" COMPONENT_VERSION=""
TMPS=()

log() { printf '==> %s\n' "$*" >&2; }

# fail prints why the current step stopped, the tail of its log and how to retry, then exits.
fail() {
  local msg="$1" logfile="${2:-}"
  {
    echo
    echo "build-artifacts: FAILED: $msg"
    echo "  step:      $STEP"
    [[ -n $COMPONENT ]] && echo "  component: $COMPONENT $COMPONENT_VERSION"
    if [[ -n $logfile && -s $logfile ]]; then
      echo "  log:       $logfile (last lines below)"
      tail -n 25 "$logfile" | sed 's/^/    | /'
    fi
    echo "  retry:     fix the cause above, then rerun the same command; finished steps are reused."
  } >&2
  exit 1
}

# shellcheck disable=SC2317  # called from traps
on_err() { fail "command failed (exit $1): $2"; }
# shellcheck disable=SC2317  # called from traps
cleanup() { ((${#TMPS[@]})) && rm -rf -- "${TMPS[@]}" 2>/dev/null; return 0; }
trap 'on_err $? "$BASH_COMMAND"' ERR
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# run LOGFILE CMD... runs CMD with its output in LOGFILE; on failure stops the script.
run() {
  local logfile="$1"
  shift
  mkdir -p "$(dirname "$logfile")"
  local rc=0
  "$@" >"$logfile" 2>&1 || rc=$?
  if ((rc != 0)); then
    fail "exit status $rc from: $(printf '%q ' "$@")" "$logfile"
  fi
}

# ---------------------------------------------------------------------------------------------
# Arguments

ONLY=""
VERSION=""
while (($#)); do
  case "$1" in
    --only) [[ $# -ge 2 ]] || { usage >&2; exit 2; }; ONLY="$2"; shift 2 ;;
    --only=*) ONLY="${1#--only=}"; shift ;;
    -h | --help) usage; exit 0 ;;
    -*) echo "build-artifacts: unknown flag $1" >&2; usage >&2; exit 2 ;;
    *) [[ -z $VERSION ]] || { echo "build-artifacts: one VERSION only" >&2; exit 2; }; VERSION="$1"; shift ;;
  esac
done
[[ -n $VERSION ]] || { usage >&2; exit 2; }

STEP="check the version"
if [[ ! $VERSION =~ ^v1\.([0-9]+)\.([0-9]+)(-[0-9A-Za-z.]+)?$ ]]; then
  fail "'$VERSION' is not a Kubernetes version: expected v1.MINOR.PATCH, e.g. v1.37.2"
fi
readonly KUBE_MINOR="${BASH_REMATCH[1]}"
# The staging modules (k8s.io/api, ...) are tagged v0.MINOR.PATCH for Kubernetes v1.MINOR.PATCH.
readonly STAGING_VERSION="v0.${VERSION#v1.}"

STEP="check the arguments"
declare -A WANT=()
if [[ -n $ONLY ]]; then
  IFS=',' read -r -a only_list <<<"$ONLY"
  for name in "${only_list[@]}"; do
    [[ -z $name ]] && continue
    if [[ " ${ALL[*]} ${TOOLS[*]} ${CONFORMANCE_TOOLS[*]} " != *" $name "* ]]; then
      fail "--only: unknown artifact '$name'; known: ${ALL[*]} ${TOOLS[*]} ${CONFORMANCE_TOOLS[*]}"
    fi
    WANT[$name]=1
  done
  ((${#WANT[@]})) || fail "--only: no artifact named"
else
  for name in "${ALL[@]}" "${TOOLS[@]}"; do WANT[$name]=1; done
fi
want() { [[ -n ${WANT[$1]:-} ]]; }
want_any() { local n; for n in "$@"; do want "$n" && return 0; done; return 1; }

# path_of NAME prints the artifact's path inside the set.
path_of() {
  case "$1" in
    cni-*) echo "bin/cni/${1#cni-}" ;;
    image-*) echo "images/${1#image-}.tar" ;;
    tool-*) echo "tools/${1#tool-}" ;;
    *) echo "bin/$1" ;;
  esac
}

readonly SET="$CACHE/artifacts/$VERSION"
mkdir -p "$BUILD" "$LOGS" "$SET/bin/cni" "$SET/images"

# lock PATH takes an exclusive lock on PATH.lock, dropping the one taken before (a run holds one
# at a time). Two runs never resolve or build in the same module folder at once: the second
# waits, then reuses what the first built. A run that needs only finished outputs is not held up
# by another run's long build of something else.
LOCK_FD=""
lock() {
  if [[ -n $LOCK_FD ]]; then exec {LOCK_FD}>&-; fi
  exec {LOCK_FD}>"$1.lock"
  if ! flock -n "$LOCK_FD"; then
    log "Waiting for another build-artifacts.sh run (it holds $1.lock)"
    flock "$LOCK_FD"
  fi
}

# Temp files of interrupted runs are never renamed into place; remove those whose run (the pid
# after .tmp-) is gone.
while IFS= read -r -d '' f; do
  pid="${f##*/}" && pid="${pid#*.tmp-}" && pid="${pid%%[!0-9]*}"
  if [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null; then rm -rf -- "$f"; fi
done < <(find "$BUILD" "$SET" -maxdepth 4 -name '*.tmp-*' -print0 2>/dev/null)

export GOWORK=off GOFLAGS=-buildvcs=false
GO_VERSION="$(go env GOVERSION)"
GOOS="$(go env GOOS)"
GOARCH="$(go env GOARCH)"
readonly GO_VERSION GOOS GOARCH
START=$SECONDS

# ---------------------------------------------------------------------------------------------
# Free disk space (see the top of this file)

readonly NEED_CACHE_MB=1024 NEED_GOMODCACHE_MB=2048 NEED_GOCACHE_MB=5120
check_free_space() {
  STEP="check free disk space"
  local name missing=""
  for name in "${!WANT[@]}"; do [[ -f $SET/$(path_of "$name") ]] || missing=1; done
  [[ -n $missing ]] || return 0
  local -A need=() dirs=()
  local mb dir d mnt have
  while read -r mb dir; do
    [[ $dir == /* ]] || continue # GOCACHE=off
    d="$dir"
    while [[ ! -d $d ]]; do d="$(dirname "$d")"; done
    mnt="$(df -Pk "$d" | awk 'NR == 2 { print $6 }')"
    need[$mnt]=$((${need[$mnt]:-0} + mb))
    dirs[$mnt]+="${dirs[$mnt]:+, }$dir"
  done < <(printf '%s %s\n' "$NEED_CACHE_MB" "$CACHE" "$NEED_GOMODCACHE_MB" "$(go env GOMODCACHE)" "$NEED_GOCACHE_MB" "$(go env GOCACHE)")
  for mnt in "${!need[@]}"; do
    mb="${BASALT_MIN_FREE_MB:-${need[$mnt]}}"
    have=$(($(df -Pk "$mnt" | awk 'NR == 2 { print $4 }') / 1024))
    if ((have < mb)); then
      fail "only $have MiB free on $mnt (which holds ${dirs[$mnt]}); building this set needs about $mb MiB there.
  Free some space (go clean -cache; sets and builds of versions no longer used under $CACHE/artifacts
  and $CACHE/build), or, when most of the set is built already, set BASALT_MIN_FREE_MB to the MiB the
  rest needs (0 skips this check)."
    fi
  done
}
if [[ -n ${BASALT_MIN_FREE_MB:-} && ! $BASALT_MIN_FREE_MB =~ ^[0-9]+$ ]]; then
  STEP="check free disk space"
  fail "BASALT_MIN_FREE_MB='$BASALT_MIN_FREE_MB' must be a number of MiB (0 skips the check)"
fi
check_free_space

# ---------------------------------------------------------------------------------------------
# Helpers

# prepare_module DIR GOMOD makes DIR a Go module with GOMOD as its go.mod and resolves it
# (go mod tidy). Reused while the input go.mod is unchanged.
prepare_module() {
  local dir="$1" gomod="$2"
  mkdir -p "$dir"
  lock "$dir"
  if [[ -f $dir/.ready && -f $dir/go.sum && -f $dir/go.mod.in ]] && [[ "$(<"$dir/go.mod.in")" == "$gomod" ]]; then
    return 0
  fi
  STEP="resolve the build module $dir (go mod tidy)"
  log "Resolving the build module for $COMPONENT $COMPONENT_VERSION"
  mkdir -p "$dir/bin"
  rm -f "$dir/.ready" "$dir/.e2e-ready" "$dir/go.sum"
  printf '%s\n' "$gomod" >"$dir/go.mod"
  run "$LOGS/$(basename "$dir")-tidy.log" env -C "$dir" go mod tidy
  printf '%s\n' "$gomod" >"$dir/go.mod.in"
  touch "$dir/.ready"
}

# gomod MODULE REQUIRE-LINES REPLACE-LINES TOOL-PACKAGES... prints a go.mod.
gomod() {
  local module="$1" requires="$2" replaces="$3"
  shift 3
  printf 'module %s\n\ngo %s\n\nrequire (\n%s\n)\n' "$module" "${GO_VERSION#go}" "$requires"
  [[ -n $replaces ]] && printf '\nreplace (\n%s\n)\n' "$replaces"
  printf '\ntool (\n'
  printf '\t%s\n' "$@"
  printf ')\n'
}

# build OUT MODDIR PACKAGE CGO TAGS LDFLAGS [EXTRA go build flags...] builds PACKAGE in MODDIR into
# OUT unless OUT exists and was built with the same inputs (component version is in MODDIR's
# name; tags, ldflags and flags are in the key).
build() {
  local out="$1" moddir="$2" pkg="$3" cgo="$4" tags="$5" ldflags="$6"
  shift 6
  local key
  key="$(printf '%s\n' "$pkg" "$cgo" "$tags" "$ldflags" "$*" "$GOOS/$GOARCH" | sha256sum | cut -c1-32)"
  if [[ -x $out && -f $out.key && "$(<"$out.key")" == "$key" ]]; then
    log "Reusing $(basename "$out") ($COMPONENT $COMPONENT_VERSION)"
    return 0
  fi
  STEP="go build $pkg"
  log "Building $(basename "$out") ($COMPONENT $COMPONENT_VERSION) from $pkg"
  local tmp="$out.tmp-$$" t0=$SECONDS
  TMPS+=("$tmp" "$out.key.tmp-$$")
  run "$LOGS/$(basename "$moddir")-$(basename "$out").log" \
    env -C "$moddir" CGO_ENABLED="$cgo" go build -p "$JOBS" -trimpath -tags "$tags" -ldflags "$ldflags" "$@" -o "$tmp" "$pkg"
  printf '%s\n' "$key" >"$out.key.tmp-$$"
  mv -f "$tmp" "$out"
  mv -f "$out.key.tmp-$$" "$out.key"
  log "Built $(basename "$out") in $((SECONDS - t0))s"
}

# place NAME SRC puts the built file SRC into the set as NAME (hard link when possible).
place() {
  local dst src="$2"
  dst="$SET/$(path_of "$1")"
  [[ -e $dst && $dst -ef $src ]] && return 0
  local tmp="$dst.tmp-$$"
  TMPS+=("$tmp")
  mkdir -p "$(dirname "$dst")"
  ln -f "$src" "$tmp" 2>/dev/null || cp -f "$src" "$tmp"
  mv -f "$tmp" "$dst"
}

# ---------------------------------------------------------------------------------------------
# Kubernetes

STEP="download k8s.io/kubernetes $VERSION"
COMPONENT="k8s.io/kubernetes" COMPONENT_VERSION="$VERSION"
out="$(cd "$BUILD" && go mod download -json "k8s.io/kubernetes@$VERSION" 2>&1)" || true
KUBE_DIR="$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p' <<<"$out")"
if [[ -z $KUBE_DIR || ! -f $KUBE_DIR/go.mod ]]; then
  served="$( (cd "$BUILD" && go list -m -versions k8s.io/kubernetes 2>/dev/null) | tr ' ' '\n' | grep "^v1\.$KUBE_MINOR\." | tr '\n' ' ')" || true
  err="$(sed -n 's/^[[:space:]]*"Error": "\(.*\)",\{0,1\}$/\1/p' <<<"$out" | sed 's/\\n\\t/ /g; s/\\n/ /g')"
  fail "Kubernetes $VERSION is not available as the Go module k8s.io/kubernetes (GOPROXY=$(go env GOPROXY)): ${err:-$out}
  served v1.$KUBE_MINOR releases: ${served:-none}"
fi
readonly KUBE_DIR

ETCD_VERSION="${BASALT_ETCD_VERSION:-$(etcd_for_minor "$KUBE_MINOR")}"
if [[ -z $ETCD_VERSION ]]; then
  ETCD_VERSION="v$(awk '/name: "etcd"$/{f=1;next} f&&/version:/{print $2; exit}' "$KUBE_DIR/build/dependencies.yaml")"
  [[ $ETCD_VERSION != v ]] || fail "cannot tell the etcd version of Kubernetes $VERSION; set BASALT_ETCD_VERSION"
fi
readonly ETCD_VERSION

log "Kubernetes $VERSION into $SET ($GOOS/$GOARCH, $GO_VERSION)"
log "etcd $ETCD_VERSION, containerd $CONTAINERD_VERSION, runc $RUNC_VERSION, cri-tools $CRI_TOOLS_VERSION, CNI plugins $CNI_PLUGINS_VERSION"

# Each staging module that k8s.io/kubernetes replaces with ./staging/... comes from its own
# published module at v0.MINOR.PATCH.
KUBE_REPLACES="$(awk -v v="$STAGING_VERSION" '$2 == "=>" && $3 ~ /^\.\/staging\// {printf "\t%s => %s %s\n", $1, $1, v}' "$KUBE_DIR/go.mod")"
# Version stamps, as hack/lib/version.sh sets them, so `--version` and the Node's
# kubeletVersion say $VERSION. buildDate is the release tag's time, for reproducible output.
build_date="$(sed -n 's/.*"Time":"\([^"]*\)".*/\1/p' "$(go env GOMODCACHE)/cache/download/k8s.io/kubernetes/@v/$VERSION.info" 2>/dev/null || true)"
KUBE_LDFLAGS="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  KUBE_LDFLAGS+=" -X $pkg.gitVersion=$VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$KUBE_MINOR"
  [[ -n $build_date ]] && KUBE_LDFLAGS+=" -X $pkg.buildDate=$build_date"
done
readonly KUBE_REPLACES KUBE_LDFLAGS
# need_kube_replaces stops when k8s.io/kubernetes has no staging replaces to turn into modules.
need_kube_replaces() { [[ -n $KUBE_REPLACES ]] || fail "found no ./staging replace directives in $KUBE_DIR/go.mod"; }

KUBE_COMPONENTS=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy)
if want_any "${KUBE_COMPONENTS[@]}"; then
  need_kube_replaces
  moddir="$BUILD/k8s-$VERSION"
  tools=()
  for c in "${KUBE_COMPONENTS[@]}"; do tools+=("k8s.io/kubernetes/cmd/$c"); done
  prepare_module "$moddir" "$(gomod basalt.local/build/k8s "$(printf '\tk8s.io/kubernetes %s' "$VERSION")" "$KUBE_REPLACES" "${tools[@]}")"
  for c in "${KUBE_COMPONENTS[@]}"; do
    want "$c" || continue
    build "$moddir/bin/$c" "$moddir" "k8s.io/kubernetes/cmd/$c" 0 "" "$KUBE_LDFLAGS"
    place "$c" "$moddir/bin/$c"
  done
fi

# The conformance suite and its test images' programs, in a module of their own so that the
# test packages' extra requirements never change the components' build above.
if want_any "${CONFORMANCE_TOOLS[@]}"; then
  COMPONENT="conformance suite (k8s.io/kubernetes/test)" COMPONENT_VERSION="$VERSION"
  need_kube_replaces
  moddir="$BUILD/conformance-$VERSION"
  ginkgo_version="$(awk '$1 == "github.com/onsi/ginkgo/v2" { print $2; exit }' "$KUBE_DIR/go.mod")"
  [[ -n $ginkgo_version ]] || fail "cannot tell the ginkgo version from $KUBE_DIR/go.mod"
  prepare_module "$moddir" "$(gomod basalt.local/build/conformance \
    "$(printf '\tk8s.io/kubernetes %s\n\tgithub.com/onsi/ginkgo/v2 %s\n\tk8s.io/sample-apiserver %s' "$VERSION" "$ginkgo_version" "$STAGING_VERSION")" \
    "$KUBE_REPLACES" k8s.io/kubernetes/cmd/kubectl github.com/onsi/ginkgo/v2/ginkgo \
    k8s.io/kubernetes/test/images/agnhost k8s.io/kubernetes/test/images/nonewprivs k8s.io/sample-apiserver)"
  # go mod tidy resolves the tools' packages only; e2e.test is the test binary of test/e2e, whose
  # test files import every suite: add those packages' requirements once.
  if [[ ! -f $moddir/.e2e-ready ]]; then
    STEP="resolve the packages of k8s.io/kubernetes/test/e2e (go get)"
    run "$LOGS/conformance-$VERSION-get.log" env -C "$moddir" go get "k8s.io/kubernetes/test/e2e/...@$VERSION"
    touch "$moddir/.e2e-ready"
  fi
  for t in agnhost nonewprivs; do
    want "tool-$t" || continue
    build "$moddir/bin/$t" "$moddir" "k8s.io/kubernetes/test/images/$t" 0 "" "-s -w"
    place "tool-$t" "$moddir/bin/$t"
  done
  if want tool-sample-apiserver; then
    build "$moddir/bin/sample-apiserver" "$moddir" k8s.io/sample-apiserver 0 "" "$KUBE_LDFLAGS"
    place tool-sample-apiserver "$moddir/bin/sample-apiserver"
  fi
  if want tool-kubectl; then
    build "$moddir/bin/kubectl" "$moddir" k8s.io/kubernetes/cmd/kubectl 0 "" "$KUBE_LDFLAGS"
    place tool-kubectl "$moddir/bin/kubectl"
  fi
  if want tool-ginkgo; then
    build "$moddir/bin/ginkgo" "$moddir" github.com/onsi/ginkgo/v2/ginkgo 0 "" "-s -w"
    place tool-ginkgo "$moddir/bin/ginkgo"
  fi
  if want tool-e2e.test; then
    out="$moddir/bin/e2e.test"
    key="$(printf '%s\n' e2e.test "$KUBE_LDFLAGS" "$GOOS/$GOARCH" | sha256sum | cut -c1-32)"
    if [[ -x $out && -f $out.key && "$(<"$out.key")" == "$key" ]]; then
      log "Reusing e2e.test ($VERSION)"
    else
      STEP="go test -c k8s.io/kubernetes/test/e2e"
      log "Building e2e.test ($VERSION) from k8s.io/kubernetes/test/e2e (about 7 minutes cold)"
      TMPS+=("$out.tmp-$$")
      run "$LOGS/conformance-$VERSION-e2e.test.log" env -C "$moddir" CGO_ENABLED=0 \
        go test -c -p "$JOBS" -trimpath -ldflags "$KUBE_LDFLAGS" -o "$out.tmp-$$" k8s.io/kubernetes/test/e2e
      mv -f "$out.tmp-$$" "$out"
      printf '%s\n' "$key" >"$out.key"
    fi
    place tool-e2e.test "$out"
  fi
fi

# ---------------------------------------------------------------------------------------------
# etcd, etcdctl and etcdutl (the agent restores snapshots with etcdutl: docs/backup.md)

if want_any etcd etcdctl etcdutl; then
  COMPONENT="etcd" COMPONENT_VERSION="$ETCD_VERSION"
  moddir="$BUILD/etcd-$ETCD_VERSION"
  prepare_module "$moddir" "$(gomod basalt.local/build/etcd \
    "$(printf '\tgo.etcd.io/etcd/server/v3 %s\n\tgo.etcd.io/etcd/etcdctl/v3 %s\n\tgo.etcd.io/etcd/etcdutl/v3 %s' "$ETCD_VERSION" "$ETCD_VERSION" "$ETCD_VERSION")" "" \
    go.etcd.io/etcd/server/v3 go.etcd.io/etcd/etcdctl/v3 go.etcd.io/etcd/etcdutl/v3)"
  # The version itself is a constant of go.etcd.io/etcd/api/v3/version; GitSHA says where it came from.
  ldflags="-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=gomod-$ETCD_VERSION"
  if want etcd; then
    build "$moddir/bin/etcd" "$moddir" go.etcd.io/etcd/server/v3 0 "" "$ldflags"
    place etcd "$moddir/bin/etcd"
  fi
  if want etcdctl; then
    build "$moddir/bin/etcdctl" "$moddir" go.etcd.io/etcd/etcdctl/v3 0 "" "$ldflags"
    place etcdctl "$moddir/bin/etcdctl"
  fi
  if want etcdutl; then
    build "$moddir/bin/etcdutl" "$moddir" go.etcd.io/etcd/etcdutl/v3 0 "" "$ldflags"
    place etcdutl "$moddir/bin/etcdutl"
  fi
fi

# ---------------------------------------------------------------------------------------------
# containerd, its runc shim and ctr (static, no cgo: btrfs, devmapper and zfs snapshotters left out)

if want_any containerd containerd-shim-runc-v2 ctr; then
  COMPONENT="containerd" COMPONENT_VERSION="$CONTAINERD_VERSION"
  moddir="$BUILD/containerd-$CONTAINERD_VERSION"
  cpkg=github.com/containerd/containerd/v2
  prepare_module "$moddir" "$(gomod basalt.local/build/containerd "$(printf '\t%s %s' "$cpkg" "$CONTAINERD_VERSION")" "" \
    "$cpkg/cmd/containerd" "$cpkg/cmd/containerd-shim-runc-v2" "$cpkg/cmd/ctr")"
  ldflags="-s -w -X $cpkg/version.Version=$CONTAINERD_VERSION -X $cpkg/version.Package=$cpkg -X $cpkg/version.Revision=gomod-$CONTAINERD_VERSION"
  tags="no_btrfs no_devmapper no_zfs urfave_cli_no_docs"
  for c in containerd containerd-shim-runc-v2 ctr; do
    want "$c" || continue
    t="$tags"
    [[ $c == containerd-shim-runc-v2 ]] && t+=" no_grpc"
    build "$moddir/bin/$c" "$moddir" "$cpkg/cmd/$c" 0 "$t" "$ldflags"
    place "$c" "$moddir/bin/$c"
  done
fi

# ---------------------------------------------------------------------------------------------
# runc: cgo (nsenter, libseccomp), linked static-pie, in a module of its own (its runtime-spec
# version may differ from containerd's).

ensure_libseccomp() {
  STEP="install libseccomp-dev (needed to build runc with seccomp)"
  if pkg-config --exists libseccomp 2>/dev/null && [[ -n "$(find /usr/lib /usr/lib64 -name libseccomp.a -print -quit 2>/dev/null)" ]]; then
    return 0
  fi
  if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null; then
    fail "runc needs libseccomp's headers and static library: install Debian's libseccomp-dev (and pkg-config), e.g. sudo apt-get install -y libseccomp-dev pkg-config"
  fi
  log "Installing libseccomp-dev and pkg-config with apt-get (for runc)"
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends libseccomp-dev pkg-config gcc libc6-dev >"$LOGS/apt.log" 2>&1; then
    run "$LOGS/apt-update.log" apt-get update
    run "$LOGS/apt.log" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends libseccomp-dev pkg-config gcc libc6-dev
  fi
}

if want runc; then
  COMPONENT="runc" COMPONENT_VERSION="$RUNC_VERSION"
  moddir="$BUILD/runc-$RUNC_VERSION"
  out="$moddir/bin/runc"
  prepare_module "$moddir" "$(gomod basalt.local/build/runc "$(printf '\tgithub.com/opencontainers/runc %s' "$RUNC_VERSION")" "" \
    github.com/opencontainers/runc)"
  # runc --version reads its version from the module's embedded VERSION file.
  ldflags="-s -w -X main.gitCommit=gomod-$RUNC_VERSION -linkmode external -extldflags -static-pie"
  tags="seccomp urfave_cli_no_docs netgo osusergo"
  [[ -x $out && -f $out.key ]] || ensure_libseccomp
  build "$out" "$moddir" github.com/opencontainers/runc 1 "$tags" "$ldflags" -buildmode=pie
  place runc "$out"
fi

# ---------------------------------------------------------------------------------------------
# crictl

if want crictl; then
  COMPONENT="cri-tools" COMPONENT_VERSION="$CRI_TOOLS_VERSION"
  moddir="$BUILD/cri-tools-$CRI_TOOLS_VERSION"
  prepare_module "$moddir" "$(gomod basalt.local/build/cri-tools "$(printf '\tsigs.k8s.io/cri-tools %s' "$CRI_TOOLS_VERSION")" "" \
    sigs.k8s.io/cri-tools/cmd/crictl)"
  # Upstream's Makefile strips the leading v: `crictl --version` says "crictl version 1.37.0".
  build "$moddir/bin/crictl" "$moddir" sigs.k8s.io/cri-tools/cmd/crictl 0 "" \
    "-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=${CRI_TOOLS_VERSION#v}"
  place crictl "$moddir/bin/crictl"
fi

# ---------------------------------------------------------------------------------------------
# CNI plugins

declare -A CNI_PKG=([bridge]=main/bridge [host-local]=ipam/host-local [loopback]=main/loopback [portmap]=meta/portmap)
if want_any cni-bridge cni-host-local cni-loopback cni-portmap; then
  COMPONENT="cni-plugins" COMPONENT_VERSION="$CNI_PLUGINS_VERSION"
  moddir="$BUILD/cni-plugins-$CNI_PLUGINS_VERSION"
  ppkg=github.com/containernetworking/plugins
  tools=()
  for p in bridge host-local loopback portmap; do tools+=("$ppkg/plugins/${CNI_PKG[$p]}"); done
  prepare_module "$moddir" "$(gomod basalt.local/build/cni-plugins "$(printf '\t%s %s' "$ppkg" "$CNI_PLUGINS_VERSION")" "" "${tools[@]}")"
  for p in bridge host-local loopback portmap; do
    want "cni-$p" || continue
    build "$moddir/bin/$p" "$moddir" "$ppkg/plugins/${CNI_PKG[$p]}" 0 "" \
      "-s -w -X $ppkg/pkg/utils/buildversion.BuildVersion=$CNI_PLUGINS_VERSION"
    place "cni-$p" "$moddir/bin/$p"
  done
fi

# ---------------------------------------------------------------------------------------------
# Images: static Go programs from this repository, packed as OCI layouts by hack/ociimage.
# Keyed on their sources, ociimage's source and the Go version, so a change rebuilds them.

image() {
  local name="$1" ref="$2"
  shift 2
  COMPONENT="image $name" COMPONENT_VERSION="${ref##*:}"
  local key dir out
  key="$(cat "$ROOT/hack/images/$name"/*.go "$ROOT/hack/ociimage/main.go" <(printf '%s\n' "$GO_VERSION" "$GOARCH" "$ref" "$*") | sha256sum | cut -c1-16)"
  dir="$BUILD/images/$name-$key"
  out="$dir/$name.tar"
  mkdir -p "$dir"
  lock "$dir"
  if [[ -f $out ]]; then
    log "Reusing image $ref ($name.tar)"
  else
    STEP="build the $name image ($ref) from hack/images/$name"
    log "Building image $ref from hack/images/$name"
    mkdir -p "$dir"
    TMPS+=("$dir/$name.tmp-$$" "$out.tmp-$$")
    run "$LOGS/image-$name.log" env -C "$ROOT" CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -buildid=" \
      -o "$dir/$name.tmp-$$" "./hack/images/$name"
    run "$LOGS/image-$name-pack.log" env -C "$ROOT" go run ./hack/ociimage -binary "$dir/$name.tmp-$$" \
      -path "/$name" -ref "$ref" -os "$GOOS" -arch "$GOARCH" -o "$out.tmp-$$" "$@"
    mv -f "$out.tmp-$$" "$out"
    rm -f "$dir/$name.tmp-$$"
  fi
  place "image-$name" "$out"
}

if want image-pause; then image pause "$PAUSE_REF" -user 65535:65535; fi
if want image-webserver; then image webserver "$WEBSERVER_REF" -user 65532:65532 -port 8080/tcp; fi
# The local storage add-on's helper pod: makes and removes volume folders on the node (root: the
# folders' parent belongs to root).
if want image-volume-helper; then image volume-helper "$VOLUME_HELPER_REF"; fi

# Add-on images built from their Go modules (docs/addons.md), packed like the images above:
# modimage NAME VERSION MODULE PACKAGE REF LDFLAGS [ociimage flags...]
modimage() {
  local name="$1" version="$2" module="$3" pkg="$4" ref="$5" ldflags="$6"
  shift 6
  COMPONENT="$name" COMPONENT_VERSION="$version"
  local moddir="$BUILD/$name-$version" key dir out
  prepare_module "$moddir" "$(gomod "basalt.local/build/$name" "$(printf '\t%s %s' "$module" "$version")" "" "$pkg")"
  build "$moddir/bin/$name" "$moddir" "$pkg" 0 "" "$ldflags"
  key="$(cat "$moddir/bin/$name.key" "$ROOT/hack/ociimage/main.go" <(printf '%s\n' "$GO_VERSION" "$ref" "$*") | sha256sum | cut -c1-16)"
  dir="$BUILD/images/$name-$key"
  out="$dir/$name.tar"
  mkdir -p "$dir"
  if [[ ! -f $out ]]; then
    STEP="pack the $name image ($ref)"
    TMPS+=("$out.tmp-$$")
    run "$LOGS/image-$name-pack.log" env -C "$ROOT" go run ./hack/ociimage -binary "$moddir/bin/$name" \
      -path "/$name" -ref "$ref" -os "$GOOS" -arch "$GOARCH" -o "$out.tmp-$$" "$@"
    mv -f "$out.tmp-$$" "$out"
  fi
  place "image-$name" "$out"
}

# CoreDNS, the cluster DNS, with its default plugins. It runs as root with every capability
# dropped but NET_BIND_SERVICE (the Deployment's securityContext), as kubeadm's CoreDNS does.
if want image-coredns; then
  modimage coredns "$COREDNS_VERSION" github.com/coredns/coredns github.com/coredns/coredns "$COREDNS_REF" \
    "-s -w -X github.com/coredns/coredns/coremain.GitCommit=gomod-$COREDNS_VERSION" -port 53/udp -port 53/tcp -port 9153/tcp
fi
# metrics-server, the resource metrics API (kubectl top), as a non-root user.
if want image-metrics-server; then
  modimage metrics-server "$METRICS_SERVER_VERSION" sigs.k8s.io/metrics-server sigs.k8s.io/metrics-server/cmd/metrics-server \
    "$METRICS_SERVER_REF" "-s -w -X sigs.k8s.io/metrics-server/pkg/version.gitVersion=$METRICS_SERVER_VERSION" \
    -user 65534:65534 -port 10250/tcp
fi
# local-path-provisioner, the default StorageClass's provisioner (its helper is volume-helper).
if want image-local-path-provisioner; then
  modimage local-path-provisioner "$LOCAL_PATH_VERSION" github.com/rancher/local-path-provisioner \
    github.com/rancher/local-path-provisioner "$LOCAL_PATH_REF" "-s -w"
fi

# ---------------------------------------------------------------------------------------------
# Test-bed tools (not part of the set)

if want tool-registry; then
  COMPONENT="registry" COMPONENT_VERSION="$REGISTRY_VERSION"
  moddir="$BUILD/registry-$REGISTRY_VERSION"
  prepare_module "$moddir" "$(gomod basalt.local/build/registry \
    "$(printf '\t%s %s' github.com/distribution/distribution/v3 "$REGISTRY_VERSION")" "" \
    github.com/distribution/distribution/v3/cmd/registry)"
  build "$moddir/bin/registry" "$moddir" github.com/distribution/distribution/v3/cmd/registry 0 "" "-s -w"
  place tool-registry "$moddir/bin/registry"
fi

# ---------------------------------------------------------------------------------------------
# manifest.json, only for a complete set

COMPONENT="" COMPONENT_VERSION=""
STEP="write $SET/manifest.json"
lock "$SET"
version_of() {
  case "$1" in
    kube-*|kubelet) echo "$VERSION" ;;
    etcd|etcdctl|etcdutl) echo "$ETCD_VERSION" ;;
    containerd|containerd-shim-runc-v2|ctr) echo "$CONTAINERD_VERSION" ;;
    runc) echo "$RUNC_VERSION" ;;
    crictl) echo "$CRI_TOOLS_VERSION" ;;
    cni-*) echo "$CNI_PLUGINS_VERSION" ;;
    image-pause) echo "${PAUSE_REF##*:}" ;;
    image-webserver) echo "${WEBSERVER_REF##*:}" ;;
    image-coredns) echo "$COREDNS_VERSION" ;;
    image-metrics-server) echo "$METRICS_SERVER_VERSION" ;;
    image-local-path-provisioner) echo "$LOCAL_PATH_VERSION" ;;
    image-volume-helper) echo "${VOLUME_HELPER_REF##*:}" ;;
  esac
}
missing=()
args=()
for name in "${ALL[@]}"; do
  p="$(path_of "$name")"
  [[ -f $SET/$p ]] || { missing+=("$name"); continue; }
  case "$name" in
    image-pause) args+=(-artifact "$name,$(version_of "$name"),image,$p,$PAUSE_REF") ;;
    image-webserver) args+=(-artifact "$name,$(version_of "$name"),image,$p,$WEBSERVER_REF") ;;
    image-coredns) args+=(-artifact "$name,$(version_of "$name"),image,$p,$COREDNS_REF") ;;
    image-metrics-server) args+=(-artifact "$name,$(version_of "$name"),image,$p,$METRICS_SERVER_REF") ;;
    image-local-path-provisioner) args+=(-artifact "$name,$(version_of "$name"),image,$p,$LOCAL_PATH_REF") ;;
    image-volume-helper) args+=(-artifact "$name,$(version_of "$name"),image,$p,$VOLUME_HELPER_REF") ;;
    *) args+=(-artifact "$name,$(version_of "$name"),binary,$p") ;;
  esac
done
if ((${#missing[@]})); then
  # A manifest naming files that are not there would be wrong: drop any old one.
  rm -f "$SET/manifest.json"
  log "Done in $((SECONDS - START))s: $SET holds part of the set (missing: ${missing[*]}); manifest.json is written once the set is complete"
else
  run "$LOGS/manifest-$VERSION.log" env -C "$ROOT" go run ./hack/artifact-manifest -dir "$SET" \
    -kubernetes-version "$VERSION" -os "$GOOS" -arch "$GOARCH" "${args[@]}"
  log "Done in $((SECONDS - START))s: complete artifact set for Kubernetes $VERSION in $SET"
fi
log "Binaries: $SET/bin (for envtest: KUBEBUILDER_ASSETS=$SET/bin)"
# The set folder, alone on stdout, for callers.
echo "$SET"
exit 0
}
