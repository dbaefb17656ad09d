#!/usr/bin/env bash
# Builds the kernel and initramfs that PXE-booted hosts run: Debian's kernel (extracted from the
# linux-image package with dpkg-deb, never installed into this machine's /boot), busybox-static
# for the userland, the modules for virtio-net, e1000, virtio-blk, AHCI and ext4 (with their
# dependencies and a modules.dep), /init (pxe/image/init) and basalt-agent (./cmd/agent, static).
#
# From the same tree it also makes root.img.gz: an ext4 file system labelled basalt-root (no
# partition table: the agent writes it from offset 0 of a whole disk), made by mke2fs -d on a plain
# file (no root, no loop device), for hosts that netboot with basalt.root=basalt-root and run from
# their disk (see pxe/image/init). The agent adds its identity and /etc/basalt/root.json to it.
#
# The results are reproducible (fixed mtimes, sorted newc cpio owned by root, gzip -n; for the
# file system E2FSPROGS_FAKE_TIME, a UUID and hash seed derived from the cache key, inode ctimes
# and owners set by debugfs) and cached under $BASALT_CACHE/pxe-image/<hash>, the hash covering
# every input: a rerun with the same inputs takes seconds. The last lines of output say where the
# files are:
#
#   VMLINUZ=/root/.cache/basalt/pxe-image/<hash>/vmlinuz
#   INITRAMFS=/root/.cache/basalt/pxe-image/<hash>/initramfs
#   KERNEL_VERSION=6.1.0-56-amd64
#   ROOT_IMAGE=/root/.cache/basalt/pxe-image/<hash>/root.img.gz
#
# Beside them: root.img.gz.sha256 (the hex digest alone) and manifest (versions, sizes, digests).
#
# Environment:
#   BASALT_CACHE       cache root (default ~/.cache/basalt)
#   AGENT              a prebuilt static agent binary (default: build ./cmd/agent)
#   KERNEL_PACKAGE     Debian kernel package (default: the one linux-image-amd64 depends on)
#   SOURCE_DATE_EPOCH  the time of every file in the images (default 315532800, 1980-01-01)
#   MODULES            modules to include with their dependencies, loaded in this order
#                      (default: virtio_net e1000 virtio_pci virtio_blk virtio_scsi ahci sd_mod,
#                      the server NICs e1000e igb ixgbe i40e ice bnxt_en tg3 mlx5_core, the disk
#                      controllers nvme megaraid_sas mpt3sas, then crc32c_generic ext4;
#                      crc32c_generic because ext4 and jbd2 ask the crypto API for crc32c
#                      (metadata_csum) at mount time, which modules.dep does not say)
#   ROOT_IMAGE_MIB     size of the root file system image in MiB (default 256)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache="${BASALT_CACHE:-$HOME/.cache/basalt}/pxe-image"
epoch="${SOURCE_DATE_EPOCH:-315532800}"
# Virtual machines' NICs and disks, then common server hardware: Intel, Broadcom and Mellanox
# NICs, NVMe, and the LSI/Broadcom RAID and SAS HBAs (issue 13: servers must find their NIC and
# disk in the agent image). Loading a driver with no device costs a few milliseconds.
modules="${MODULES:-virtio_net e1000 virtio_pci virtio_blk virtio_scsi ahci sd_mod e1000e igb ixgbe i40e ice bnxt_en tg3 mlx5_core nvme megaraid_sas mpt3sas crc32c_generic ext4}"
root_mib="${ROOT_IMAGE_MIB:-256}"
root_label=basalt-root
log() { echo "pxe-image: $*" >&2; }
PATH="$PATH:/usr/sbin:/sbin" # mke2fs, debugfs, e2fsck for users without sbin in PATH
case "$root_mib" in '' | *[!0-9]*) log "ROOT_IMAGE_MIB=$root_mib is not a number of MiB"; exit 1 ;; esac
[ "$root_mib" -ge 16 ] || { log "ROOT_IMAGE_MIB=$root_mib is too small (16 at least)"; exit 1; }

"$here/ensure-debs.sh" cpio dpkg xz-utils gzip e2fsprogs

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

fullkey=$( {
	echo "format 2"
	sha256sum "$kernel_deb" "$busybox_deb" "$agent" "$here/init" "$here/udhcpc.script" "$here/build.sh" | awk '{print $1}'
	echo "$epoch" "$modules"
	echo "root image $root_mib MiB $root_label"
	mke2fs -V 2>&1 | head -n 1
	cat "${MKE2FS_CONFIG:-/etc/mke2fs.conf}" 2>/dev/null || true
} | sha256sum | cut -d' ' -f1)
key=$(echo "$fullkey" | cut -c1-16)
out="$cache/$key"
if [ -s "$out/initramfs" ] && [ -s "$out/vmlinuz" ] && [ -s "$out/root.img.gz" ]; then
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
	# The applets' links (/init's busybox --install -s makes them in RAM too): the root file
	# system image needs them, its init, udhcpc script and agent run sleep, ip, modprobe...
	"$busybox" --list-full | while IFS= read -r p; do
		case "$p" in */*) [ -e "$root/$p" ] || [ -L "$root/$p" ] || ln -s /bin/busybox "$root/$p" ;; esac
	done
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

	# The root file system image, from the same tree (before the cpio: reading the files would
	# move their atimes). mke2fs -d copies owners and times from the tree; ctimes (which touch
	# cannot set) and owners (root, whoever builds) are then set with debugfs. The UUID and
	# the directory hash seed come from the cache key; E2FSPROGS_FAKE_TIME fixes the superblock's
	# times. No partition table: the image goes at offset 0 of a whole disk.
	find "$root" -exec touch -h -d "@$epoch" {} +
	mkdir -p "$work/out"
	uuid=$(echo "root uuid $fullkey" | sha256sum | cut -c1-32)
	uuid=$(printf '%s-%s-4%s-%x%s-%s' "${uuid:0:8}" "${uuid:8:4}" "${uuid:13:3}" $((0x${uuid:16:1} & 3 | 8)) "${uuid:17:3}" "${uuid:20:12}")
	img="$work/root.img"
	truncate -s "${root_mib}M" "$img"
	E2FSPROGS_FAKE_TIME=$epoch mke2fs -q -F -t ext4 -b 4096 -I 256 -i 16384 -L "$root_label" -U "$uuid" \
		-E "hash_seed=$uuid,root_owner=0:0" -d "$root" "$img" >&2
	(cd "$root" && find . | LC_ALL=C sort | sed 's|^\.||; s|^$|/|' | while IFS= read -r p; do
		printf 'sif "%s" ctime @%s\n' "$p" "$epoch"
		printf 'sif "%s" uid 0\nsif "%s" gid 0\n' "$p" "$p"
	done) >"$work/debugfs.cmds"
	E2FSPROGS_FAKE_TIME=$epoch debugfs -w -f "$work/debugfs.cmds" "$img" >"$work/debugfs.log" 2>&1
	if grep -v -e '^debugfs [0-9]' -e '^debugfs: sif ' "$work/debugfs.log" | grep -q .; then
		cat "$work/debugfs.log" >&2
		log "debugfs could not fix the root image's inodes"
		exit 1
	fi
	e2fsck -fn "$img" >"$work/e2fsck.log" 2>&1 || { cat "$work/e2fsck.log" >&2; log "the root image does not pass e2fsck"; exit 1; }
	gzip -9 -n <"$img" >"$work/out/root.img.gz"
	sha256sum "$work/out/root.img.gz" | cut -d' ' -f1 >"$work/out/root.img.gz.sha256"

	# Reproducible archive: fixed mtimes, sorted names, root-owned, no gzip name or time.
	find "$root" -exec touch -h -d "@$epoch" {} +
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
		echo "root_image_sha256=$(cat "$work/out/root.img.gz.sha256")"
		echo "root_image_bytes=$(stat -c %s "$work/out/root.img.gz")"
		echo "root_image_raw_bytes=$(stat -c %s "$img")"
		echo "root_image_label=$root_label"
		echo "root_image_uuid=$uuid"
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
echo "ROOT_IMAGE=$out/root.img.gz"
