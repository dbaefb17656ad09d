#!/usr/bin/env bash
# Installs Debian packages that Basalt's PXE side needs, idempotently: packages already installed
# are left alone, and apt-get update runs only when something is missing. Needs root.
#
#   pxe/image/ensure-debs.sh ipxe                 # /usr/lib/ipxe/{ipxe.efi,snponly.efi,undionly.kpxe}
#   pxe/image/ensure-debs.sh qemu-system-x86 cpio # what the image boot test needs
#
# Test packages run in parallel (go test ./...) and several ask for packages at once: runs take
# turns on a lock, and apt waits for any other apt or dpkg that holds its own lock, instead of
# failing at once with exit status 100.
set -euo pipefail
list_missing() {
	missing=()
	for p in "$@"; do
		if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
			missing+=("$p")
		fi
	done
}
list_missing "$@"
[ "${#missing[@]}" -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ]; then
	exec 9>/var/lock/basalt-ensure-debs.lock
	flock 9
	list_missing "$@" # another run may have installed them meanwhile
	[ "${#missing[@]}" -eq 0 ] && exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
	echo "ensure-debs: ${missing[*]} missing and not root; install them with: apt-get install -y ${missing[*]}" >&2
	exit 1
fi
echo "ensure-debs: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get -o DPkg::Lock::Timeout=600 update -qq >&2
apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >&2
