#!/usr/bin/env bash
# Builds the manager image with `docker build` and no registry, FROM scratch (hack/image/Dockerfile):
#
#   /usr/local/bin/basalt-manager        ./cmd/manager, static
#   /usr/local/bin/basalt-agent          ./cmd/agent, static (installed on SSH hosts: --agent-binary)
#   /usr/lib/ipxe/{ipxe.efi,snponly.efi,undionly.kpxe}   Debian's ipxe package (TFTP, --pxe-tftp-root)
#   /usr/share/basalt/pxe/{vmlinuz,initramfs}            the agent's PXE image (make pxe-image),
#                                                        built with the same agent binary
#   /usr/share/basalt/pxe/root.img.gz                    its root filesystem image (gzip'd ext4,
#                                                        --pxe-root-image): written to the local
#                                                        disk of network-booted Hosts
#   /etc/ssl/certs/ca-certificates.crt   Debian's ca-certificates (HTTPS to artifact mirrors)
#   /etc/passwd, /etc/group              root and nonroot (65532), the user the image runs as
#
# The tag is a hash of every staged file (path, mode, content) and the Dockerfile, so the same
# inputs give the same tag and a rerun skips docker build; the Go binaries are reproducible
# (-trimpath, no build id, no VCS stamp besides the version). The image is also tagged
# basalt-manager:dev and saved once per tag as a tarball for `ctr images import`/`docker load`:
#
#   $BASALT_CACHE/image/basalt-manager-<hash>.tar
#
# The last lines on stdout say where things are:
#
#   IMAGE=basalt-manager:<hash>
#   IMAGE_TAR=/root/.cache/basalt/image/basalt-manager-<hash>.tar
#
# Needs docker and, to install missing Debian packages (ipxe, ca-certificates, and cpio & co. for
# the PXE image), root. Environment: BASALT_CACHE (default ~/.cache/basalt), IMAGE_REPOSITORY
# (default basalt-manager), VERSION (default git describe --always --dirty).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
cache="${BASALT_CACHE:-$HOME/.cache/basalt}/image"
repository="${IMAGE_REPOSITORY:-basalt-manager}"
epoch=315532800 # 1980-01-01, the mtime of every staged file
log() { echo "image: $*" >&2; }

command -v docker >/dev/null || { log "docker is not installed"; exit 1; }
docker info >/dev/null 2>&1 || { log "docker does not answer (is dockerd running?)"; exit 1; }
"$repo/pxe/image/ensure-debs.sh" ipxe ca-certificates

work=$(mktemp -d "${TMPDIR:-/tmp}/basalt-image.XXXXXX")
trap 'rm -rf "$work"' EXIT
root="$work/rootfs"
mkdir -p "$root"/{usr/local/bin,usr/lib/ipxe,usr/share/basalt/pxe,etc/ssl/certs,tmp,var/lib/basalt/cache}

version="${VERSION:-$(git -C "$repo" describe --always --dirty 2>/dev/null || echo dev)}"
for cmd in manager agent; do
	log "building basalt-$cmd $version"
	(cd "$repo" && CGO_ENABLED=0 go build -trimpath -buildvcs=false \
		-ldflags "-s -w -buildid= -X main.version=$version" -o "$root/usr/local/bin/basalt-$cmd" "./cmd/$cmd")
done

# The PXE kernel, initramfs and root filesystem image carry the same agent binary.
pxe_out=$(AGENT="$root/usr/local/bin/basalt-agent" "$repo/pxe/image/build.sh")
vmlinuz=$(sed -n 's/^VMLINUZ=//p' <<<"$pxe_out")
initramfs=$(sed -n 's/^INITRAMFS=//p' <<<"$pxe_out")
root_image=$(sed -n 's/^ROOT_IMAGE=//p' <<<"$pxe_out")
[ -s "$vmlinuz" ] && [ -s "$initramfs" ] || { log "pxe/image/build.sh printed no kernel or initramfs"; exit 1; }
[ -n "$root_image" ] || { log "pxe/image/build.sh printed no ROOT_IMAGE= line (the root filesystem image, root.img.gz)"; exit 1; }
[ -s "$root_image" ] || { log "the root filesystem image $root_image (ROOT_IMAGE= of pxe/image/build.sh) is missing or empty"; exit 1; }
install -m 0644 "$vmlinuz" "$root/usr/share/basalt/pxe/vmlinuz"
install -m 0644 "$initramfs" "$root/usr/share/basalt/pxe/initramfs"
install -m 0644 "$root_image" "$root/usr/share/basalt/pxe/root.img.gz"

for f in ipxe.efi snponly.efi undionly.kpxe; do
	# Debian's /usr/lib/ipxe/ipxe.efi is a symbolic link into /boot: copy the file it names.
	install -m 0644 "$(readlink -f "/usr/lib/ipxe/$f")" "$root/usr/lib/ipxe/$f"
done
install -m 0644 "$(readlink -f /etc/ssl/certs/ca-certificates.crt)" "$root/etc/ssl/certs/ca-certificates.crt"
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/nonexistent:/sbin/nologin\n' >"$root/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' >"$root/etc/group"
chmod 1777 "$root/tmp"
chmod 0755 "$root/var/lib/basalt/cache"
find "$root" -exec touch -h -d "@$epoch" {} +
cp "$here/image/Dockerfile" "$work/Dockerfile"

hash=$( {
	echo "format 1"
	sha256sum "$work/Dockerfile" | cut -d' ' -f1
	(cd "$root" && find . -print0 | LC_ALL=C sort -z | while IFS= read -r -d '' p; do
		if [ -f "$p" ]; then
			echo "$p $(stat -c %a "$p") $(sha256sum <"$p" | cut -d' ' -f1)"
		else
			echo "$p $(stat -c %a "$p") $(stat -c %F "$p")"
		fi
	done)
} | sha256sum | cut -c1-16)
image="$repository:$hash"

if docker image inspect "$image" >/dev/null 2>&1; then
	log "cached: $image"
else
	log "docker build $image"
	# The legacy builder: no buildx plugin is needed, and FROM scratch with one COPY needs nothing more.
	DOCKER_BUILDKIT=0 docker build -q -t "$image" --label "dev.basalt.version=$version" "$work" >&2
fi
docker tag "$image" "$repository:dev"

mkdir -p "$cache"
tar="$cache/$(basename "$repository")-$hash.tar"
if [ ! -s "$tar" ]; then
	log "docker save $image -> $tar"
	docker save -o "$tar.tmp.$$" "$image"
	mv "$tar.tmp.$$" "$tar"
fi
# Keep the three newest tarballs and images (an image in use stays).
ls -1t "$cache"/*.tar 2>/dev/null | tail -n +4 | xargs -r rm -f
# (grep finds nothing, and exits 1, when no older image exists.)
docker images "$repository" --format '{{.Tag}}' | { grep -Ev "^(dev|$hash)$" || true; } | tail -n +3 |
	while read -r old; do docker rmi "$repository:$old" >/dev/null 2>&1 || true; done
echo "IMAGE=$image"
echo "IMAGE_TAR=$tar"
