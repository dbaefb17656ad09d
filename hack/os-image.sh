#!/usr/bin/env bash
# Builds the Basalt OS disk image: a whole-disk raw image (GPT) of a Debian bookworm system made
# with debootstrap from Debian's archive, which boots on its own under BIOS and UEFI and grows its
# root to the disk on first boot. See docs/os-image.md.
#
#   LBA 2048  p1  1 MiB   BIOS boot (EF02)   grub i386-pc core.img; boot.img in the MBR
#             p2  64 MiB  EFI system (EF00)  FAT32 "BASALT-ESP", EFI/BOOT/BOOTX64.EFI
#             p3  rest    Linux root (8304)  ext4 "basalt-root", made by mke2fs -d from the tree
#
# No loop device, no mount, no grub-install: sgdisk writes the GPT into a plain file, mke2fs -d and
# mkfs.vfat + mtools make the filesystems in files that dd puts in place, and the boot sector and
# core image are written and patched the way grub-bios-setup does for an embedded core.img. The
# boot loader (grub-mkimage, the modules) comes from the image's own grub-*-bin packages.
#
# Usage: hack/os-image.sh [--print-key] [--help]   (as root: debootstrap and chroot need it)
#   prints progress on stderr and, last on stdout:
#     OS_IMAGE=<cache>/os-image/<key>/disk.raw        sparse raw disk image
#     OS_IMAGE_GZ=<cache>/os-image/<key>/disk.raw.gz  gzip -n of it (+ .sha256, manifest beside)
#   --print-key  print the key the current inputs produce, build nothing
#
# Environment:
#   BASALT_CACHE       cache root (default $HOME/.cache/basalt); this script uses os-image/
#   BASALT_OS_MIRROR   Debian archive to bootstrap from (default http://deb.debian.org/debian)
#   ROOT_EXTRA_MIB     free space left in the root filesystem of the image (default 256)
#   SOURCE_DATE_EPOCH  time of the filesystems' metadata (default 315532800, 1980-01-01)
#
# Steps, each cached and safe to rerun after a failure or an interruption:
#   1. debootstrap into rootfs-<pkgkey>.partial, renamed to rootfs-<pkgkey> when complete; the key
#      hashes only the suite and hack/os-image/packages, and this tree is never modified
#   2. copy it, configure the copy (hack/os-image/rootfs files, units, grub modules), make the
#      grub core images with the tree's own grub-mkimage
#   3. make the ESP and root filesystems and the disk, write them into <key>.partial/, rename to
#      <key>/ (the key hashes this script and everything under hack/os-image/)
set -euo pipefail

readonly SUITE=bookworm
readonly ESP_MIB=64
readonly ROOT_LABEL=basalt-root
readonly ESP_LABEL=BASALT-ESP
readonly MIN_FREE_KB=$((4 * 1024 * 1024))

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
inputs="$here/os-image"
mirror="${BASALT_OS_MIRROR:-http://deb.debian.org/debian}"
cache="${BASALT_CACHE:-$HOME/.cache/basalt}/os-image"
extra_mib="${ROOT_EXTRA_MIB:-256}"
epoch="${SOURCE_DATE_EPOCH:-315532800}"
PATH="$PATH:/usr/sbin:/sbin"

log() { printf 'os-image: %s\n' "$*" >&2; }
step=start
fail() {
	printf 'os-image: step "%s" failed: %s\n' "$step" "$*" >&2
	printf 'os-image: fix the cause and rerun hack/os-image.sh; finished steps are reused (cache: %s)\n' "$cache" >&2
	exit 1
}
trap 'rc=$?; [ $rc -eq 0 ] || printf "os-image: step \"%s\" failed (exit %s, line %s)\n" "$step" "$rc" "$LINENO" >&2' EXIT
usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; }

print_only=false
while [[ $# -gt 0 ]]; do
	case "$1" in
	--print-key) print_only=true ;;
	-h | --help) usage; exit 0 ;;
	*) echo "os-image: unknown argument $1 (see --help)" >&2; exit 2 ;;
	esac
	shift
done
case "$extra_mib" in '' | *[!0-9]*) fail "ROOT_EXTRA_MIB=$extra_mib is not a number of MiB" ;; esac

# The host tools first: the key below names the versions of two of them.
step="host tools"
if ! command -v debootstrap >/dev/null || ! command -v sgdisk >/dev/null || ! command -v mkfs.vfat >/dev/null || ! command -v mcopy >/dev/null; then
	[[ $(id -u) -eq 0 ]] || fail "the host tools (debootstrap, gdisk, dosfstools, mtools) are missing and installing them needs root"
	"$repo/pxe/image/ensure-debs.sh" debootstrap gdisk dosfstools mtools e2fsprogs gzip coreutils ||
		fail "could not install the host tools"
fi

# The debootstrap'd tree depends on the suite and the package list only.
pkgkey="$({ echo "$SUITE"; cat "$inputs/packages"; } | sha256sum | cut -c1-12)"
# The image depends on everything: script, package list, files, the host tools that write it.
fullkey="$( (
	cd "$here"
	echo "format 1 $epoch $extra_mib"
	sha256sum os-image.sh
	find os-image -type f -o -type l | LC_ALL=C sort | while read -r f; do
		printf '%s %s ' "$f" "$(stat -c %a "$f")"
		if [[ -L "$f" ]]; then readlink "$f"; else sha256sum <"$f"; fi
	done
	mke2fs -V 2>&1 | head -n 1
	sgdisk --version 2>&1 | head -n 1
) | sha256sum | cut -d' ' -f1)"
key="$(echo "$fullkey" | cut -c1-16)"
if $print_only; then
	echo "$key"
	exit 0
fi

out="$cache/$key"
if [[ -s "$out/disk.raw.gz" && -s "$out/disk.raw" ]]; then
	log "cached: $out"
	echo "OS_IMAGE=$out/disk.raw"
	echo "OS_IMAGE_GZ=$out/disk.raw.gz"
	exit 0
fi

step="check host"
[[ $(id -u) -eq 0 ]] || fail "debootstrap and chroot need root; run as root (sudo -E hack/os-image.sh)"
mkdir -p "$cache/debs"
avail="$(df -Pk "$cache" | awk 'NR == 2 { print $4 }')"
((avail >= MIN_FREE_KB)) || fail "only $((avail / 1024)) MiB free in $cache, need $((MIN_FREE_KB / 1024)) MiB"
exec 9>"$cache/.lock"
flock -n 9 || { log "another hack/os-image.sh holds $cache/.lock, waiting"; flock 9; }

# Step 1: debootstrap.
rootfs="$cache/rootfs-$pkgkey"
if [[ ! -d "$rootfs" ]]; then
	step="debootstrap"
	packages="$(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$inputs/packages" | tr -d ' \t' | paste -sd, -)"
	rm -rf "$rootfs.partial"
	log "step 1/3: debootstrap $SUITE from $mirror (minutes; log: $cache/debootstrap.log)"
	start=$SECONDS
	if ! debootstrap --variant=minbase --merged-usr --include="$packages" --cache-dir="$cache/debs" \
		"$SUITE" "$rootfs.partial" "$mirror" >"$cache/debootstrap.log" 2>&1; then
		tail -n 20 "$cache/debootstrap.log" >&2
		fail "see $cache/debootstrap.log and $rootfs.partial/debootstrap/debootstrap.log; is $mirror reachable?"
	fi
	mv "$rootfs.partial" "$rootfs"
	log "debootstrap took $((SECONDS - start))s"
	# Trees of other package lists are not used again.
	find "$cache" -maxdepth 1 -name 'rootfs-*' ! -name "rootfs-$pkgkey" -exec rm -rf {} +
else
	log "step 1/3: reusing $rootfs"
fi

work="$cache/$key.partial"
rm -rf "$work"
mkdir -p "$work"
trap 'rc=$?; [ $rc -eq 0 ] || printf "os-image: step \"%s\" failed (exit %s); partial files in %s\n" "$step" "$rc" "$work" >&2' EXIT
start=$SECONDS

# Step 2: configure a copy of the tree.
step="configure rootfs"
log "step 2/3: configuring a copy of $rootfs"
r="$work/root"
cp -a "$rootfs" "$r"
tar -C "$inputs/rootfs" --owner=0 --group=0 -cf - . | tar -C "$r" --no-overwrite-dir -xf -
: >"$r/etc/machine-id" # each host makes its own at first boot; an empty file means "first boot"
rm -f "$r/var/lib/dbus/machine-id" "$r"/etc/ssh/ssh_host_*
# systemd-firstboot would ask for a locale and a root password on the console at the first boot.
chroot "$r" systemctl mask --quiet systemd-firstboot.service apt-daily.timer apt-daily-upgrade.timer
chroot "$r" systemctl enable --quiet basalt-growroot.service basalt-ssh-hostkeys.service \
	systemd-networkd.service ssh.service
chroot "$r" systemctl set-default --quiet multi-user.target
printf 'deb %s %s main\ndeb http://deb.debian.org/debian-security %s-security main\n' \
	"$mirror" "$SUITE" "$SUITE" >"$r/etc/apt/sources.list"
mkdir -p "$r/boot/efi"
for f in vmlinuz initrd.img; do
	[[ -e "$r/$f" ]] || fail "/$f is missing from the tree (linux-update-symlinks did not run?)"
done
# GRUB's modules where grub-install would put them; both core images load them from here.
for p in i386-pc x86_64-efi; do
	rm -rf "$r/boot/grub/$p"
	mkdir -p "$r/boot/grub/$p"
	cp "$r/usr/lib/grub/$p"/*.mod "$r/usr/lib/grub/$p"/*.lst "$r/boot/grub/$p/"
done
rm -rf "$r"/var/cache/apt/archives/*.deb "$r"/var/lib/apt/lists/* "$r"/var/log/*.log \
	"$r"/var/cache/debconf/*-old "$r"/var/lib/dpkg/*-old "$r"/root/.bash_history "$r/usr/sbin/policy-rc.d"

step="grub core images"
# The first thing both run: find the root filesystem by its label, take modules and grub.cfg
# from its /boot/grub.
cat >"$r/tmp/early.cfg" <<EOF
search --no-floppy --label $ROOT_LABEL --set=root
set prefix=(\$root)/boot/grub
EOF
chroot "$r" grub-mkimage -O i386-pc -o /tmp/core.img -p /boot/grub -c /tmp/early.cfg \
	biosdisk part_gpt ext2 search search_label
chroot "$r" grub-mkimage -O x86_64-efi -o /tmp/BOOTX64.EFI -p /boot/grub -c /tmp/early.cfg \
	part_gpt ext2 fat search search_label
mv "$r/tmp/core.img" "$r/tmp/BOOTX64.EFI" "$work/"
cp "$r/usr/lib/grub/i386-pc/boot.img" "$work/boot.img"
rm -f "$r/tmp/early.cfg"

# Step 3: filesystems and disk.
step="root filesystem"
log "step 3/3: filesystems and disk image"
uuid_of() { # a UUID derived from the key, so that the same inputs give the same image
	local h
	h="$(echo "$1 $fullkey" | sha256sum | cut -c1-32)"
	printf '%s-%s-4%s-%x%s-%s' "${h:0:8}" "${h:8:4}" "${h:13:3}" $((0x${h:16:1} & 3 | 8)) "${h:17:3}" "${h:20:12}"
}
find "$r" -xdev -newermt "@$epoch" -exec touch -h -d "@$epoch" {} + 2>/dev/null || true
used_mib="$(du -s --block-size=1M --apparent-size "$r" | cut -f1)"
# Data + 15% for metadata, inodes and the journal, + the free space asked for; whole 4 MiB.
root_mib=$(((used_mib * 115 / 100 + 64 + extra_mib + 3) / 4 * 4))
truncate -s "${root_mib}M" "$work/root.ext4"
root_uuid="$(uuid_of root)"
E2FSPROGS_FAKE_TIME=$epoch mke2fs -q -F -t ext4 -b 4096 -I 256 -L "$ROOT_LABEL" -U "$root_uuid" \
	-E "hash_seed=$root_uuid,root_owner=0:0" -d "$r" "$work/root.ext4" >&2
# mke2fs -d gives every inode the current time as ctime and crtime (touch cannot set them), and
# reading the tree moves atimes: debugfs sets all three to $epoch, so that the same inputs give
# the same bytes.
(cd "$r" && find . | LC_ALL=C sort | sed 's|^\.||; s|^$|/|' | while IFS= read -r p; do
	printf 'sif "%s" %s @%s\n' "$p" ctime "$epoch" "$p" crtime "$epoch" "$p" atime "$epoch"
done) >"$work/debugfs.cmds"
E2FSPROGS_FAKE_TIME=$epoch debugfs -w -f "$work/debugfs.cmds" "$work/root.ext4" >"$work/debugfs.log" 2>&1
if grep -v -e '^debugfs [0-9]' -e '^debugfs: sif ' "$work/debugfs.log" | grep -q .; then
	grep -v -e '^debugfs [0-9]' -e '^debugfs: sif ' "$work/debugfs.log" | head -n 20 >&2
	fail "debugfs could not set the root filesystem's inode times"
fi
e2fsck -fn "$work/root.ext4" >"$work/e2fsck.log" 2>&1 || { cat "$work/e2fsck.log" >&2; fail "the root filesystem does not pass e2fsck"; }

step="EFI system partition"
truncate -s "${ESP_MIB}M" "$work/esp.fat"
esp_id="$(echo "esp $fullkey" | sha256sum | cut -c1-8)"
SOURCE_DATE_EPOCH=$epoch mkfs.vfat --invariant -F 32 -S 512 -s 1 -n "$ESP_LABEL" -i "$esp_id" "$work/esp.fat" >/dev/null
export SOURCE_DATE_EPOCH=$epoch MTOOLS_SKIP_CHECK=1
# A tree with fixed times copied with -s -m: mmd would give the directories' "." and ".."
# entries the current time.
mkdir -p "$work/esp/EFI/BOOT"
cp "$work/BOOTX64.EFI" "$work/esp/EFI/BOOT/BOOTX64.EFI"
find "$work/esp" -exec touch -h -d "@$epoch" {} +
mcopy -s -m -i "$work/esp.fat" "$work/esp/EFI" ::/

step="partition table"
disk="$work/disk.raw"
bios_lba=2048                                   # 1 MiB
esp_lba=$((bios_lba + 2048))                    # 2 MiB
root_lba=$((esp_lba + ESP_MIB * 2048))          # 66 MiB
total_mib=$((root_lba / 2048 + root_mib + 1))   # + 1 MiB for the backup GPT
truncate -s "${total_mib}M" "$disk"
sgdisk --clear --disk-guid="$(uuid_of disk)" \
	--new=1:$bios_lba:+1M --typecode=1:EF02 --change-name=1:"BIOS boot" --partition-guid=1:"$(uuid_of p1)" \
	--new=2:$esp_lba:+${ESP_MIB}M --typecode=2:EF00 --change-name=2:"EFI system" --partition-guid=2:"$(uuid_of p2)" \
	--new=3:$root_lba:+${root_mib}M --typecode=3:8304 --change-name=3:"$ROOT_LABEL" --partition-guid=3:"$(uuid_of p3)" \
	"$disk" >"$work/sgdisk.log" 2>&1 || { cat "$work/sgdisk.log" >&2; fail "sgdisk"; }

step="write filesystems"
dd if="$work/esp.fat" of="$disk" bs=1M seek=$((esp_lba / 2048)) conv=notrunc,sparse status=none
dd if="$work/root.ext4" of="$disk" bs=1M seek=$((root_lba / 2048)) conv=notrunc,sparse status=none

step="BIOS boot loader"
# What grub-bios-setup does for a core.img embedded in a BIOS boot partition (without the
# Reed-Solomon codes): core.img at the partition's first sector, its first sector's blocklist
# pointing at the rest; boot.img's first 440 bytes in the MBR (the protective MBR's partition
# table stays), told where core.img starts, the boot drive check replaced by NOPs (hard disk).
le64() { local v=$1 i; for i in 0 1 2 3 4 5 6 7; do printf "\\$(printf %03o $(((v >> (8 * i)) & 255)))"; done; }
core_bytes="$(stat -c %s "$work/core.img")"
((core_bytes <= 1024 * 1024)) || fail "core.img is $core_bytes bytes, more than the 1 MiB BIOS boot partition"
[[ "$(od -An -tx1 -j 500 -N 8 "$work/core.img" | tr -d ' \n')" == 0200000000000000 ]] ||
	fail "core.img's first blocklist does not have diskboot.img's default; unknown GRUB layout"
[[ "$(od -An -tx1 -j 92 -N 8 "$work/boot.img" | tr -d ' \n')" == 0100000000000000 ]] ||
	fail "boot.img's kernel sector is not at 0x5c; unknown GRUB layout"
le64 $((bios_lba + 1)) | dd of="$work/core.img" bs=1 seek=500 conv=notrunc status=none
le64 $bios_lba | dd of="$work/boot.img" bs=1 seek=92 conv=notrunc status=none
printf '\x90\x90' | dd of="$work/boot.img" bs=1 seek=102 conv=notrunc status=none
dd if="$work/core.img" of="$disk" bs=512 seek=$bios_lba conv=notrunc status=none
dd if="$work/boot.img" of="$disk" bs=440 count=1 conv=notrunc status=none
sgdisk --verify "$disk" >"$work/sgdisk-verify.log" 2>&1 || { cat "$work/sgdisk-verify.log" >&2; fail "sgdisk --verify"; }

step="compress"
gzip -1 -n -c "$disk" >"$work/disk.raw.gz.partial" # -1: -9 takes minutes for a few % less
mv "$work/disk.raw.gz.partial" "$work/disk.raw.gz"
sha256sum "$work/disk.raw.gz" | cut -d' ' -f1 >"$work/disk.raw.gz.sha256"
kver="$(basename "$(readlink -f "$r/vmlinuz")")"
{
	echo "key=$key"
	echo "packages_key=$pkgkey"
	echo "kernel=${kver#vmlinuz-}"
	echo "grub=$(chroot "$r" dpkg-query -W -f='${Version}' grub-common)"
	echo "root_mib=$root_mib used_mib=$used_mib"
	echo "root_uuid=$root_uuid"
	echo "disk_bytes=$(stat -c %s "$disk")"
	echo "disk_allocated_bytes=$(($(stat -c %b "$disk") * $(stat -c %B "$disk")))"
	echo "gz_bytes=$(stat -c %s "$work/disk.raw.gz")"
	echo "gz_sha256=$(cat "$work/disk.raw.gz.sha256")"
} >"$work/manifest"
rm -rf "$r" "$work/esp" "$work/root.ext4" "$work/esp.fat" "$work/debugfs.cmds"
rm -rf "$out"
mv "$work" "$out"
# Keep the three newest images.
ls -1dt "$cache"/[0-9a-f]*/ 2>/dev/null | tail -n +4 | xargs -r rm -rf
log "built $out in $((SECONDS - start))s"
echo "OS_IMAGE=$out/disk.raw"
echo "OS_IMAGE_GZ=$out/disk.raw.gz"
