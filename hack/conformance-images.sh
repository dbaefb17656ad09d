#!/usr/bin/env bash
# Builds (or reuses) the container images the Kubernetes conformance suite of one version runs,
# without any registry: programs from Go modules (hack/build-artifacts.sh --only tool-...) on a
# Debian root filesystem made with debootstrap from Debian's archive, packed as OCI image layouts
# by hack/ociimage. make conformance pushes them to the bed's registry and hands the suite a
# --kube-test-repo-list that points there (docs/conformance.md lists each image and its recipe).
#
# Usage: hack/conformance-images.sh VERSION
# Output: $BASALT_CACHE/conformance/VERSION/images/*.tar and images.txt, one line per image:
#   REPOSITORY TAG FILE     REPOSITORY is e2e-test-images/NAME (the suite's promoterE2eRegistry)
#                           or k8s/NAME (its gcRegistry and gcEtcdRegistry)
# The folder is printed alone on stdout at the end; progress goes to stderr.
#
# Layers are shared: the Debian layer (debian-base) is the same blob in every image built on it,
# so a node pulls it once. Every step is keyed on its inputs and reused; rerun after a failure.
set -euo pipefail

VERSION="${1:-}"
[[ $VERSION =~ ^v1\.[0-9]+\.[0-9]+$ ]] || { sed -n '2,/^set -eu/{/^set -eu/d;s/^# \{0,1\}//;p}' "$0" >&2; exit 2; }

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${BASALT_CACHE:-$HOME/.cache/basalt}"
OUT="$CACHE/conformance/$VERSION"
WORK="$CACHE/conformance/work"
MIRROR="${BASALT_NODE_MIRROR:-http://deb.debian.org/debian}"
SUITE=bookworm
# The Debian layer: the tools the suite runs inside agnhost (dig, curl, nc, ss, ipcs, iperf,
# socat, bash), nginx for the nginx images.
PACKAGES=dnsutils,curl,netcat-openbsd,iproute2,iperf,bash,util-linux,socat,procps,iputils-ping,nginx-light,ca-certificates

log() { printf 'conformance-images: %s\n' "$*" >&2; }
fail() { printf 'conformance-images: FAILED: %s\n' "$*" >&2; exit 1; }
mkdir -p "$OUT/images" "$WORK"
exec 9>"$WORK/.lock"
flock 9

[[ $(id -u) -eq 0 ]] || fail "debootstrap and layers owned by root need root; run as root"
# debootstrap for the Debian layer; a C toolchain, static libc and bzip2 for busybox.
missing=()
for t in debootstrap:debootstrap gcc:gcc make:make bzip2:bzip2 /usr/include/stdio.h:libc6-dev; do
	[[ ${t%%:*} == /* && -e ${t%%:*} ]] || command -v "${t%%:*}" >/dev/null 2>&1 || missing+=("${t#*:}")
done
if ((${#missing[@]})); then
	log "installing ${missing[*]} with apt-get"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >&2 ||
		{ apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >&2; } ||
		fail "apt-get install ${missing[*]}"
fi

# layer_tar DIR OUT packs DIR as a reproducible layer tar (root-owned, fixed mtime, sorted).
layer_tar() {
	tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner --xattrs -C "$1" -cf "$2.partial" . && mv "$2.partial" "$2"
}

# 1. The Debian layer, keyed on the suite, the package list and this script's recipe for it.
base_key="$(printf '%s\n' "$SUITE" "$PACKAGES" "base-v1" | sha256sum | cut -c1-12)"
BASE="$WORK/debian-base-$base_key.tar"
if [[ ! -f $BASE ]]; then
	r="$WORK/rootfs.partial"
	rm -rf "$r"
	mkdir -p "$WORK/debs"
	log "debootstrap $SUITE ($PACKAGES) from $MIRROR (log: $WORK/debootstrap.log)"
	debootstrap --variant=minbase --merged-usr --include="$PACKAGES" --cache-dir="$WORK/debs" \
		"$SUITE" "$r" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 || { tail -n 20 "$WORK/debootstrap.log" >&2; fail "debootstrap"; }
	# The user and group agnhost's image defines (a SupplementalGroups test looks them up).
	chroot "$r" groupadd -g 50000 group-defined-in-image
	chroot "$r" useradd -u 1000 -M -N -g 100 -G group-defined-in-image -s /bin/sh user-defined-in-image
	# nginx in the foreground, logging to the container's output as the official image does.
	ln -sf /dev/stdout "$r/var/log/nginx/access.log"
	ln -sf /dev/stderr "$r/var/log/nginx/error.log"
	rm -rf "$r"/var/cache/apt/archives/*.deb "$r"/var/lib/apt/lists/* "$r"/var/log/*.log "$r"/usr/share/doc \
		"$r"/usr/share/man "$r"/usr/share/locale "$r"/var/cache/debconf/*-old "$r"/var/lib/dpkg/*-old
	: >"$r/etc/machine-id"
	layer_tar "$r" "$BASE"
	rm -rf "$r"
	find "$WORK" -maxdepth 1 -name 'debian-base-*.tar' ! -name "$(basename "$BASE")" -delete
fi

# 2. The busybox layer: upstream busybox, statically linked, with a link for each applet and
# nothing else. Built from the source Debian's archive carries (apt-get source, signatures checked
# by apt) without Debian's patches: Debian's ash drops environment variables whose names are not
# shell names (e.g. "data-1"), upstream's keeps them, and the suite checks that they reach `env`.
BUSYBOX_SUITE=trixie
BUSYBOX_CONFIG_KEY="defconfig static no-tc v1"
bb_src="$WORK/busybox-src"
apt_opts=(-o "Dir::Etc::SourceList=$bb_src/sources.list" -o Dir::Etc::SourceParts=/dev/null
	-o "Dir::State::Lists=$bb_src/lists" -o "Dir::Cache=$bb_src/cache" -o APT::Sandbox::User=root)
if ! ls "$bb_src"/busybox_*.orig.tar.bz2 >/dev/null 2>&1; then
	log "fetching busybox's source from $MIRROR ($BUSYBOX_SUITE)"
	mkdir -p "$bb_src/lists/partial" "$bb_src/cache/archives/partial"
	echo "deb-src $MIRROR $BUSYBOX_SUITE main" >"$bb_src/sources.list"
	(cd "$bb_src" && apt-get "${apt_opts[@]}" -q update >&2 && apt-get "${apt_opts[@]}" -q source --download-only busybox >&2) ||
		fail "apt-get source busybox ($BUSYBOX_SUITE)"
fi
bb_orig="$(ls "$bb_src"/busybox_*.orig.tar.bz2 | tail -n 1)"
bb_version="$(basename "$bb_orig" .orig.tar.bz2)" && bb_version="${bb_version#busybox_}"
BUSYBOX="$WORK/busybox-$bb_version-$(printf '%s' "$BUSYBOX_CONFIG_KEY" | sha256sum | cut -c1-8).tar"
if [[ ! -f $BUSYBOX ]]; then
	log "building busybox $bb_version (static; log: $WORK/busybox-build.log)"
	b="$WORK/busybox-build"
	rm -rf "$b" && mkdir -p "$b"
	tar -xjf "$bb_orig" -C "$b" --strip-components=1
	{
		make -C "$b" defconfig &&
			sed -i -e 's/^# CONFIG_STATIC is not set/CONFIG_STATIC=y/' -e 's/^CONFIG_TC=y/# CONFIG_TC is not set/' "$b/.config" &&
			make -C "$b" -j"$(nproc)" busybox
	} >"$WORK/busybox-build.log" 2>&1 || { tail -n 20 "$WORK/busybox-build.log" >&2; fail "building busybox"; }
	d="$WORK/busybox.partial"
	rm -rf "$d" && mkdir -p "$d/bin" "$d/tmp" "$d/etc"
	chmod 1777 "$d/tmp"
	cp "$b/busybox" "$d/bin/busybox"
	for a in $("$d/bin/busybox" --list); do [[ $a == busybox ]] || ln -s busybox "$d/bin/$a"; done
	printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$d/etc/passwd"
	printf 'root:x:0:\nnogroup:x:65534:\n' >"$d/etc/group"
	layer_tar "$d" "$BUSYBOX"
	rm -rf "$d" "$b"
	find "$WORK" -maxdepth 1 -name 'busybox-*.tar' ! -name "$(basename "$BUSYBOX")" -delete
fi

# 3. The programs, from Go modules.
SET="$("$ROOT/hack/build-artifacts.sh" --only tool-agnhost,tool-nonewprivs,tool-sample-apiserver,etcd,etcdctl,image-pause "$VERSION")"
KUBE_DIR="$(cd "$CACHE/build" && go mod download -json "k8s.io/kubernetes@$VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')"
[[ -d $KUBE_DIR/test/images ]] || fail "k8s.io/kubernetes@$VERSION has no test/images"
IMAGES_SRC="$KUBE_DIR/test/images"

# files_layer NAME SRC:DST[:MODE]... makes a small layer with the files given.
files_layer() {
	local name="$1" d spec src dst mode
	shift
	d="$WORK/$name.d"
	rm -rf "$d" && mkdir -p "$d"
	for spec in "$@"; do
		IFS=: read -r src dst mode <<<"$spec"
		mkdir -p "$d/$(dirname "$dst")"
		if [[ $src == @* ]]; then ln -s "${src#@}" "$d/$dst"; else cp "$src" "$d/$dst"; fi
		[[ -n $mode ]] && chmod "$mode" "$d/$dst"
	done
	layer_tar "$d" "$WORK/$name.tar"
	rm -rf "$d"
}
AGNHOST_PORTER="$IMAGES_SRC/agnhost/porter"
files_layer agnhost "$SET/tools/agnhost:agnhost:0755" "@agnhost:agnhost-2" \
	"$AGNHOST_PORTER/localhost.crt:localhost.crt:0644" "$AGNHOST_PORTER/localhost.key:localhost.key:0644"
mkdir -p "$WORK/uploads.d/uploads" && layer_tar "$WORK/uploads.d" "$WORK/uploads.tar" && rm -rf "$WORK/uploads.d"
files_layer kitten "$IMAGES_SRC/kitten/html/kitten.jpg:kitten.jpg:0644" "$IMAGES_SRC/kitten/html/data.json:data.json:0644"
files_layer nautilus "$IMAGES_SRC/nautilus/html/nautilus.jpg:nautilus.jpg:0644" "$IMAGES_SRC/nautilus/html/data.json:data.json:0644"
files_layer nonewprivs "$SET/tools/nonewprivs:usr/local/bin/nnp:4755"
files_layer sample-apiserver "$SET/tools/sample-apiserver:sample-apiserver:0755"
files_layer etcd "$SET/bin/etcd:usr/local/bin/etcd:0755" "$SET/bin/etcdctl:usr/local/bin/etcdctl:0755"

# 4. The images. tag() reads the suite's own name and version of each image (test/utils/image).
manifest_go="$KUBE_DIR/test/utils/image/manifest.go"
tag() { # tag ID -> NAME VERSION, e.g. tag Agnhost -> agnhost 2.66.1
	sed -n "s/^[[:space:]]*configs\[$1\] = Config{list\.[A-Za-z0-9]*, \"\([^\"]*\)\", \"\([^\"]*\)\"}.*/\1 \2/p" "$manifest_go"
}
list="$OUT/images.txt.partial"
: >"$list"
# image ID PREFIX OCIIMAGE-ARGS... packs one image of the suite's ImageID ID.
image() {
	local id="$1" prefix="$2" name version file
	shift 2
	read -r name version <<<"$(tag "$id")"
	[[ -n $name && -n $version ]] || fail "image $id is not in $manifest_go"
	file="$OUT/images/${name//\//_}_$version.tar"
	local key
	key="$(printf '%s\n' "$@" | cat - "$ROOT/hack/ociimage/main.go" | sha256sum | cut -c1-16)"
	for a in "$@"; do [[ -f $a ]] && key="$(cat <(echo "$key") "$a" | sha256sum | cut -c1-16)"; done
	if [[ -f $file && "$(cat "$file.key" 2>/dev/null)" == "$key" ]]; then
		log "reusing $prefix/$name:$version"
	else
		log "packing $prefix/$name:$version"
		(cd "$ROOT" && go run ./hack/ociimage -ref "$prefix/$name:$version" -o "$file" "$@") || fail "ociimage $id"
		echo "$key" >"$file.key"
	fi
	echo "$prefix/$name $version $file" >>"$list"
}
E2E=e2e-test-images
AGN=(-layer "$BASE" -layer "$WORK/uploads.tar" -layer "$WORK/agnhost.tar" -entrypoint '["/agnhost"]'
	-port 80/tcp -port 8080/tcp -port 8081/tcp -port 9376/tcp -port 5000/tcp)
image Agnhost "$E2E" "${AGN[@]}" -cmd '["pause"]'
image AgnhostPrev "$E2E" "${AGN[@]}" -cmd '["pause"]'
image Kitten "$E2E" "${AGN[@]}" -layer "$WORK/kitten.tar" -cmd '["test-webserver"]'
image Nautilus "$E2E" "${AGN[@]}" -layer "$WORK/nautilus.tar" -cmd '["test-webserver"]'
image GlibcDnsTesting "$E2E" -layer "$BASE" -cmd '["/bin/bash"]'
image Nonewprivs "$E2E" -layer "$BASE" -layer "$WORK/nonewprivs.tar" -cmd '["nnp"]'
image NonRoot "$E2E" -layer "$BASE" -user 1234 -cmd '["/bin/sh"]'
image BusyBox "$E2E" -layer "$BUSYBOX" -cmd '["sh"]'
image Nginx "$E2E" -layer "$BASE" -port 80/tcp -entrypoint '["nginx","-g","daemon off;"]'
image NginxNew "$E2E" -layer "$BASE" -port 80/tcp -entrypoint '["nginx","-g","daemon off;"]'
image APIServer "$E2E" -layer "$BUSYBOX" -layer "$WORK/sample-apiserver.tar" -entrypoint '["/sample-apiserver"]'
image Etcd k8s -layer "$BUSYBOX" -layer "$WORK/etcd.tar" -cmd '["/usr/local/bin/etcd"]'
# pause: the set's own image (hack/images/pause), under the suite's tag.
read -r pname pversion <<<"$(tag Pause)"
echo "k8s/$pname $pversion $SET/images/pause.tar" >>"$list"
mv "$list" "$OUT/images.txt"
log "$(wc -l <"$OUT/images.txt") images in $OUT/images.txt"
echo "$OUT"
