#!/usr/bin/env bash
# Builds the kernel and initramfs that PXE-booted hosts run: Debian's kernel (extracted from the
# linux-image package with dpkg-deb, never installed into this machine's /boot), busybox-static
# for the userland, the modules for virtio-net, e1000, virtio-blk and AHCI (with their
# dependencies and a modules.dep), /init (pxe/image/init) and basalt-agent (./cmd/agent, static).
#
# The result is reproducible (fixed mtimes, sorted newc cpio owned by root, gzip -n) and cached
# under $BASALT_CACHE/pxe-image/<hash>, the hash covering every input: a rerun with the same
# inputs takes seconds. The last lines of output say where the files are:
#
#   VMLINUZ=/root/.cache/basalt/pxe-image/<hash>/vmlinuz
#   INITRAMFS=/root/.cache/basalt/pxe-image/<hash>/initramfs
#   KERNEL_VERSION=6.1.0-56-amd64
#
# Environment:
#   BASALT_CACHE       cache root (default ~/.cache/basalt)
#   AGENT              a prebuilt static agent binary (default: build ./cmd/agent)
#   KERNEL_PACKAGE     Debian kernel package (default: the one linux-image-amd64 depends on)
#   SOURCE_DATE_EPOCH  the mtime of every file in the initramfs (default 315532800, 1980-01-01)
#   MODULES            modules to include with their dependencies
#                      (default: virtio_net e1000 virtio_pci virtio_blk ahci sd_mod)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache="${BASALT_CACHE:-$HOME/.cache/basalt}/pxe-image"
epoch="${SOURCE_DATE_EPOCH:-315532800}"
modules="${MODULES:-virtio_net e1000 virtio_pci virtio_blk ahci sd_mod}"
log() { echo "pxe-image: $*" >&2; }

"$here/ensure-debs.sh" cpio dpkg xz-utils gzip

# Debian packages, downloaded once into the cache (apt-get download: nothing is installed).
debs="$cache/debs"
mkdir -p "$debs"
if ! apt-cache show linux-image-amd64 >/dev/null 2>&1; then
	log "apt lists are missing; apt-get update"
	apt-get update -qq >&2
fi
kernel_pkg="${KERNEL_PACKAGE:-$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')}"
[ -n "$kernel_pkg" ] || { log "cannot tell which kernel package linux-image-amd64 depends on"; exit 1; }
fetch_deb() { # fetch_deb PKG → path of the .deb in the cache
	local pkg=$1 ver f
	ver=$(apt-cache show --no-all-versions "$pkg" | awk '/^Version:/ {print $2; exit}')
	f="$debs/${pkg}_${ver//:/%3a}_amd64.deb"
	if [ ! -s "$f" ]; then
		log "downloading $pkg $ver"
		local tmp
		tmp=$(mktemp -d "$debs/.dl.XXXXXX")
		chmod 0755 "$tmp"
		(cd "$tmp" && apt-get download -qq -o APT::Sandbox::User=root "$pkg=$ver" >&2)
		mv "$tmp"/*.deb "$f"
		rm -rf "$tmp"
	fi
	echo "$f"
}
kernel_deb=$(fetch_deb "$kernel_pkg")
busybox_deb=$(fetch_deb busybox-static)

work=$(mktemp -d "${TMPDIR:-/tmp}/pxe-image.XXXXXX")
trap 'rm -rf "$work"' EXIT

# The agent: static, trimmed paths, no build id, so that the same source gives the same bytes.
agent="${AGENT:-}"
if [ -z "$agent" ]; then
	version=$(git -C "$repo" describe --always --dirty 2>/dev/null || echo dev)
	log "building basalt-agent $version"
	(cd "$repo" && CGO_ENABLED=0 go build -trimpath -buildvcs=false \
		-ldflags "-s -w -buildid= -X main.version=$version" -o "$work/basalt-agent" ./cmd/agent)
	agent="$work/basalt-agent"
fi

key=$( {
	echo "format 1"
	sha256sum "$kernel_deb" "$busybox_deb" "$agent" "$here/init" "$here/udhcpc.script" "$here/build.sh" | awk '{print $1}'
	echo "$epoch" "$modules"
} | sha256sum | cut -c1-16)
out="$cache/$key"
if [ -s "$out/initramfs" ] && [ -s "$out/vmlinuz" ]; then
	log "cached: $out"
else
	log "building $out"
	kx="$work/kernel" bx="$work/busybox" root="$work/root"
	dpkg-deb -x "$kernel_deb" "$kx"
	dpkg-deb -x "$busybox_deb" "$bx"
	kver=$(ls "$kx/lib/modules")
	busybox="$bx/bin/busybox"

	mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,usr/local/bin,usr/share/udhcpc,etc/basalt/agent,proc,sys,dev,run,tmp,root,var/lib/basalt,var/log/basalt,lib/modules/"$kver"}
	install -m 0755 "$busybox" "$root/bin/busybox"
	ln -s busybox "$root/bin/sh"
	install -m 0755 "$here/init" "$root/init"
	install -m 0755 "$here/udhcpc.script" "$root/usr/share/udhcpc/default.script"
	install -m 0755 "$agent" "$root/usr/local/bin/basalt-agent"

	# Modules: the closure of $modules in the package's dependency graph (busybox depmod, since
	# the package ships no modules.dep), then a modules.dep of the subset for modprobe.
	"$busybox" depmod -b "$kx" "$kver"
	mapfile -t files < <(awk -v want="$modules" '
		BEGIN { n = split(want, w, " "); for (i = 1; i <= n; i++) wanted[w[i]] = 1 }
		{
			sub(":", "", $1); deps[$1] = ""; for (i = 2; i <= NF; i++) deps[$1] = deps[$1] " " $i
			name = $1; sub(".*/", "", name); sub("\\.ko(\\.[a-z]+)?$", "", name); gsub("-", "_", name)
			if (name in wanted) { roots[$1] = 1; found[name] = 1 }
		}
		function visit(m,   d, k, i) { if (m in seen) return; seen[m] = 1; k = split(deps[m], d, " "); for (i = 1; i <= k; i++) visit(d[i]) }
		END {
			for (w2 in wanted) if (!(w2 in found)) { print "missing module " w2 > "/dev/stderr"; exit 1 }
			for (r in roots) visit(r)
			for (m in seen) print m
		}' "$kx/lib/modules/$kver/modules.dep" | LC_ALL=C sort)
	for f in "${files[@]}"; do
		mkdir -p "$root/lib/modules/$kver/$(dirname "$f")"
		cp "$kx/lib/modules/$kver/$f" "$root/lib/modules/$kver/$f"
	done
	cp "$kx/lib/modules/$kver/modules.order" "$kx/lib/modules/$kver/modules.builtin" "$root/lib/modules/$kver/" 2>/dev/null || true
	"$busybox" depmod -b "$root" "$kver"
	for f in "$root/lib/modules/$kver"/modules.*; do LC_ALL=C sort -o "$f" "$f"; done
	echo "$modules" | tr ' ' '\n' >"$root/etc/basalt/modules"

	cat >"$root/etc/inittab" <<-'EOF'
		# busybox init: /init has set up the machine; run the agent and restart it after a pause.
		::respawn:/bin/sh -c '/usr/local/bin/basalt-agent --runtime supervisor; echo "basalt-init: basalt-agent exited ($?); restarting in 5 seconds"; sleep 5'
		tty2::askfirst:-/bin/sh
		::ctrlaltdel:/bin/busybox reboot -f
	EOF
	printf 'root:x:0:0:root:/root:/bin/sh\n' >"$root/etc/passwd"
	printf 'root:x:0:\n' >"$root/etc/group"
	printf '127.0.0.1 localhost\n::1 localhost\n' >"$root/etc/hosts"

	# Reproducible archive: fixed mtimes, sorted names, root-owned, no gzip name or time.
	find "$root" -exec touch -h -d "@$epoch" {} +
	mkdir -p "$work/out"
	(cd "$root" && find . -print0 | LC_ALL=C sort -z |
		cpio --null --create --format=newc --owner=0:0 --reproducible --quiet) | gzip -9 -n >"$work/out/initramfs"
	cp "$kx/boot/vmlinuz-$kver" "$work/out/vmlinuz"
	{
		echo "kernel_package=$kernel_pkg"
		echo "kernel_version=$kver"
		echo "kernel_deb_sha256=$(sha256sum "$kernel_deb" | cut -d' ' -f1)"
		echo "busybox_deb=$(basename "$busybox_deb")"
		echo "agent_sha256=$(sha256sum "$agent" | cut -d' ' -f1)"
		echo "modules=${files[*]}"
		echo "initramfs_sha256=$(sha256sum "$work/out/initramfs" | cut -d' ' -f1)"
		echo "initramfs_bytes=$(stat -c %s "$work/out/initramfs")"
		echo "vmlinuz_bytes=$(stat -c %s "$work/out/vmlinuz")"
	} >"$work/out/manifest"
	echo "$kver" >"$work/out/kernel-version"
	mkdir -p "$cache"
	rm -rf "$out"
	mv "$work/out" "$out"
	# Keep the five newest images; each agent change makes a new one.
	ls -1dt "$cache"/[0-9a-f]*/ 2>/dev/null | tail -n +6 | xargs -r rm -rf
fi
echo "VMLINUZ=$out/vmlinuz"
echo "INITRAMFS=$out/initramfs"
echo "KERNEL_VERSION=$(cat "$out/kernel-version")"
