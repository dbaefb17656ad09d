#!/usr/bin/env bash
# Builds the Basalt node image: a Debian bookworm root filesystem made with debootstrap from
# Debian's archive, imported into Docker as basalt-node:<content hash> (also tagged
# basalt-node:latest). The test bed (test/e2e/bed) starts its hosts from it; systemd is PID 1 and
# sshd runs with a host key the bed installs before the first boot. See docs/testbed.md.
#
# Usage: hack/node-image.sh [--print-tag] [--help]
#   prints progress on stderr and the image reference as the last line on stdout.
#   --print-tag  print the reference the current inputs produce, build nothing
#
# Environment:
#   BASALT_CACHE        cache root (default $HOME/.cache/basalt); this script uses node-image/
#   BASALT_NODE_MIRROR  Debian archive to bootstrap from (default http://deb.debian.org/debian)
#
# Every step is cached and may be rerun after a failure or an interruption:
#   1. debootstrap into <key>.rootfs.partial, renamed to <key>.rootfs when complete
#      (downloaded .deb files stay in node-image/debs for the next try)
#   2. configure the root filesystem (idempotent), pack it into <key>.tar.partial, rename to <key>.tar
#   3. docker import <key>.tar as basalt-node:<key>, skipped when that tag exists
# The key hashes this script and everything under hack/node-image/ (the package list, the files
# copied into the image), so changing either builds a new image.
set -euo pipefail

readonly SUITE=bookworm
readonly REPO_NAME=basalt-node
readonly MIN_FREE_CACHE_KB=$((3 * 1024 * 1024))  # rootfs + tarball + .deb cache, with margin
readonly MIN_FREE_DOCKER_KB=$((2 * 1024 * 1024)) # the imported layer

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
inputs="$here/node-image"
mirror="${BASALT_NODE_MIRROR:-http://deb.debian.org/debian}"
cache="${BASALT_CACHE:-$HOME/.cache/basalt}/node-image"

log() { printf 'node-image: %s\n' "$*" >&2; }
# fail STEP MESSAGE...: stops with the step that failed and how to retry.
fail() {
	local step="$1"
	shift
	printf 'node-image: step "%s" failed: %s\n' "$step" "$*" >&2
	printf 'node-image: fix the cause and rerun hack/node-image.sh; finished steps are reused (cache: %s)\n' "$cache" >&2
	exit 1
}

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; }

print_only=false
while [[ $# -gt 0 ]]; do
	case "$1" in
	--print-tag) print_only=true ;;
	-h | --help) usage; exit 0 ;;
	*) echo "node-image: unknown argument $1 (see --help)" >&2; exit 2 ;;
	esac
	shift
done

# content_key hashes the script and its inputs (paths, modes and contents, in a stable order).
content_key() {
	(
		cd "$here"
		sha256sum node-image.sh
		find node-image -type f -o -type l | LC_ALL=C sort | while read -r f; do
			printf '%s %s ' "$f" "$(stat -c %a "$f")"
			if [[ -L "$f" ]]; then readlink "$f"; else sha256sum <"$f"; fi
		done
	) | sha256sum | cut -c1-12
}

packages() { sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$inputs/packages.txt" | tr -d ' \t' | paste -sd, -; }

free_kb() { df -Pk "$1" | awk 'NR == 2 { print $4 }'; }

need_free() { # need_free STEP DIR KB
	local have
	have="$(free_kb "$2")"
	if ((have < $3)); then
		fail "$1" "only $((have / 1024)) MiB free in $2, need $(($3 / 1024)) MiB; free some space (docker system prune, or remove old files under $cache)"
	fi
}

key="$(content_key)"
tag="$REPO_NAME:$key"
if $print_only; then
	echo "$tag"
	exit 0
fi

# Step 0: a reachable Docker engine.
if ! command -v docker >/dev/null; then
	fail "check docker" "the docker CLI is not installed (apt-get install docker.io)"
fi
if ! docker_err="$(timeout 30 docker info --format '{{.ServerVersion}}' 2>&1 >/dev/null)"; then
	fail "check docker" "the Docker engine does not answer (${docker_err:-timeout}); start it (systemctl start docker, or dockerd &)"
fi

tag_latest() {
	docker tag "$tag" "$REPO_NAME:latest" || fail "tag image" "docker tag $tag $REPO_NAME:latest"
}

if docker image inspect "$tag" >/dev/null 2>&1; then
	log "image $tag exists"
	tag_latest
	echo "$tag"
	exit 0
fi

mkdir -p "$cache"
# One build at a time per cache: a second caller waits, then finds the finished steps.
exec 9>"$cache/.lock"
if ! flock -n 9; then
	log "another hack/node-image.sh holds $cache/.lock, waiting"
	flock 9
fi
if docker image inspect "$tag" >/dev/null 2>&1; then
	tag_latest
	echo "$tag"
	exit 0
fi

tarball="$cache/$key.tar"
rootfs="$cache/$key.rootfs"

ensure_debootstrap() {
	command -v debootstrap >/dev/null && return 0
	log "installing debootstrap with apt-get"
	if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap >&2; then
		apt-get update -q >&2 || true
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap >&2 ||
			fail "install debootstrap" "apt-get install debootstrap failed (run it by hand to see why)"
	fi
}

# configure_rootfs DIR: turns a fresh debootstrap into a container host image. Idempotent.
configure_rootfs() {
	local r="$1"
	# Files of the image (init wrapper, sshd, journald, boot units), owned by root whoever owns
	# the checkout; directories that exist keep their metadata.
	tar -C "$inputs/rootfs" --owner=0 --group=0 -cf - . | tar -C "$r" --no-overwrite-dir -xf -
	# Nothing per-host may be baked in: each host gets its own machine-id and SSH host key at boot.
	: >"$r/etc/machine-id"
	rm -f "$r/var/lib/dbus/machine-id"
	rm -f "$r"/etc/ssh/ssh_host_*
	# A container has no terminals to log in on, and must not reach out on timers.
	chroot "$r" systemctl mask --quiet \
		getty.target console-getty.service getty@.service serial-getty@.service \
		systemd-firstboot.service apt-daily.timer apt-daily-upgrade.timer \
		e2scrub_all.timer e2scrub_reap.service fstrim.timer
	chroot "$r" systemctl enable --quiet ssh.service basalt-ssh-hostkey.service basalt-container-fixes.service
	chroot "$r" systemctl set-default --quiet multi-user.target
	printf 'deb %s %s main\n' "$mirror" "$SUITE" >"$r/etc/apt/sources.list"
	rm -rf "$r"/var/cache/apt/archives/*.deb "$r"/var/lib/apt/lists/* "$r"/var/log/*.log \
		"$r"/var/cache/debconf/*-old "$r"/var/lib/dpkg/*-old "$r"/root/.bash_history
	# Debian's policy-rc.d stub, if debootstrap left one, would keep services from starting.
	rm -f "$r/usr/sbin/policy-rc.d"
}

if [[ ! -f "$tarball" ]]; then
	need_free "check disk space" "$cache" "$MIN_FREE_CACHE_KB"
	if [[ $(id -u) -ne 0 ]]; then
		fail "check permissions" "debootstrap needs root; run this script as root (sudo -E hack/node-image.sh)"
	fi
	if [[ ! -d "$rootfs" ]]; then
		ensure_debootstrap
		partial="$rootfs.partial"
		rm -rf "$partial"
		mkdir -p "$cache/debs"
		log "step 1/3: debootstrap $SUITE from $mirror (a few minutes; log: $cache/debootstrap.log)"
		start=$SECONDS
		if ! debootstrap --variant=minbase --merged-usr --include="$(packages)" \
			--cache-dir="$cache/debs" "$SUITE" "$partial" "$mirror" >"$cache/debootstrap.log" 2>&1; then
			tail -n 20 "$cache/debootstrap.log" >&2
			[[ -f "$partial/debootstrap/debootstrap.log" ]] && tail -n 20 "$partial/debootstrap/debootstrap.log" >&2
			fail "debootstrap" "see $cache/debootstrap.log (and $partial/debootstrap/debootstrap.log); is $mirror reachable?"
		fi
		mv "$partial" "$rootfs"
		log "debootstrap took $((SECONDS - start))s"
	else
		log "step 1/3: reusing $rootfs"
	fi
	log "step 2/3: configuring the root filesystem and packing $tarball"
	configure_rootfs "$rootfs" || fail "configure rootfs" "see the messages above"
	rm -f "$tarball.partial"
	tar --numeric-owner --xattrs --xattrs-include='*' -C "$rootfs" -cf "$tarball.partial" . ||
		fail "pack rootfs" "tar of $rootfs failed"
	mv "$tarball.partial" "$tarball"
	rm -rf "$rootfs"
	# Tarballs of older keys are never used again.
	find "$cache" -maxdepth 1 -name '*.tar' ! -name "$key.tar" -delete
else
	log "step 1-2/3: reusing $tarball"
fi

log "step 3/3: docker import $tag"
# docker import (engine 20.10) cannot set STOPSIGNAL: whoever starts a container from this image
# passes --stop-signal SIGRTMIN+3 so that docker stop shuts systemd down cleanly (the bed does).
docker_root="$(docker info --format '{{.DockerRootDir}}' 2>/dev/null || echo /var/lib/docker)"
[[ -d "$docker_root" ]] && need_free "check disk space" "$docker_root" "$MIN_FREE_DOCKER_KB"
docker import \
	--change 'CMD ["/usr/local/sbin/basalt-init"]' \
	--change 'ENV container=docker' \
	--change "LABEL basalt.dev/node-image=$key" \
	--message "hack/node-image.sh $key" \
	"$tarball" "$tag" >&2 || fail "docker import" "docker import $tarball $tag"
tag_latest
# Images of older keys are never started again; one that a container still uses stays.
for old in $(docker image ls --format '{{.Repository}}:{{.Tag}}' "$REPO_NAME"); do
	[[ "$old" == "$tag" || "$old" == "$REPO_NAME:latest" ]] && continue
	docker image rm "$old" >/dev/null 2>&1 && log "removed old image $old"
done
log "built $tag"
echo "$tag"
