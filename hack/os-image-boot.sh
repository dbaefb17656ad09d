#!/usr/bin/env bash
# Boots a disk image of hack/os-image.sh in QEMU (software emulation, TCG) from a copy enlarged to
# DISK_SIZE, under UEFI (OVMF) or BIOS (SeaBIOS), and waits for the serial console to show a login
# prompt and the root filesystem grown to the disk. Prints the seconds to the prompt.
#
# Usage: hack/os-image-boot.sh uefi|bios DISK.raw [WORKDIR]
#   WORKDIR (default /var/tmp/osimg/boot) holds the copy, the OVMF variables and console.log.
# Environment: DISK_SIZE (default 4G), BOOT_TIMEOUT seconds (default 300), REUSE=1 to boot the
# copy of the previous run again (a second boot: the root is grown already).
set -euo pipefail
mode="${1:?uefi or bios}"
src="${2:?disk image}"
dir="${3:-/var/tmp/osimg/boot}/$mode"
size="${DISK_SIZE:-4G}"
limit="${BOOT_TIMEOUT:-300}"
log() { printf 'os-image-boot: %s\n' "$*" >&2; }
case "$mode" in uefi | bios) ;; *) log "unknown mode $mode: want uefi or bios"; exit 2 ;; esac
[[ -f "$src" ]] || { log "no disk image at $src: build it with make os-image"; exit 2; }
"$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/pxe/image/ensure-debs.sh" qemu-system-x86 ovmf >&2

mkdir -p "$dir"
rm -f "$dir/console.log"
if [[ "${REUSE:-}" != 1 || ! -f "$dir/disk.raw" ]]; then # REUSE=1: boot the last copy again
	rm -f "$dir/disk.raw"
	cp --sparse=always "$src" "$dir/disk.raw"
	truncate -s "$size" "$dir/disk.raw"
fi
fw=()
case "$mode" in
uefi)
	[[ "${REUSE:-}" == 1 && -f "$dir/vars.fd" ]] || cp /usr/share/OVMF/OVMF_VARS.fd "$dir/vars.fd"
	fw=(-drive if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE.fd
		-drive if=pflash,format=raw,unit=1,file="$dir/vars.fd")
	;;
bios) ;;
*) log "mode must be uefi or bios"; exit 2 ;;
esac
start=$(date +%s)
nice -n 19 qemu-system-x86_64 -accel tcg -machine q35 -m 1024 -smp 1 -display none -no-reboot \
	-serial "file:$dir/console.log" "${fw[@]}" \
	-drive file="$dir/disk.raw",format=raw,if=virtio \
	-nic user,model=virtio-net-pci &
qpid=$!
trap 'kill $qpid 2>/dev/null || true; wait $qpid 2>/dev/null || true' EXIT
result=timeout
while (($(date +%s) - start < limit)); do
	if ! kill -0 $qpid 2>/dev/null; then result="qemu exited"; break; fi
	if grep -q 'login: *$\|login:' "$dir/console.log" 2>/dev/null; then result=login; break; fi
	sleep 2
done
secs=$(($(date +%s) - start))
grep -a 'basalt-growroot' "$dir/console.log" >&2 || log "no basalt-growroot output on the console"
if [[ $result == login ]]; then
	log "$mode: login prompt after ${secs}s (console: $dir/console.log)"
	echo "$mode ${secs}s"
else
	log "$mode: $result after ${secs}s; last console lines:"
	tail -n 30 "$dir/console.log" >&2 || true
	exit 1
fi
