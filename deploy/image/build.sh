#!/usr/bin/env bash
# Builds the regate container image without pulling any base image: the binary, CA
# certificates, and a passwd/group naming the non-root user are assembled into
# target/image/rootfs, which the Dockerfile copies onto `scratch`. The binary is statically
# linked (glibc's static-pie, `-C target-feature=+crt-static`), so the same file runs on any
# x86_64 Linux node, whatever its glibc (the kubelet credential provider is copied out of the
# image onto nodes, deploy/kubelet). A dynamically linked --binary gets the libraries it links
# copied in beside it (found with ldd).
#
#   deploy/image/build.sh                         # a static release build, tag regate:latest
#   deploy/image/build.sh --tag regate:1.0
#   deploy/image/build.sh --binary target/debug/regate --tag regate:ci
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

binary=""
tag="regate:latest"
while [ $# -gt 0 ]; do
	case "$1" in
	--binary) binary="$2"; shift 2 ;;
	--tag) tag="$2"; shift 2 ;;
	*) echo "usage: $0 [--binary FILE] [--tag NAME:TAG]" >&2; exit 2 ;;
	esac
done
if [ -z "$binary" ]; then
	echo "building a statically linked regate (release)..."
	RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
		cargo build --release --locked --bin regate --target x86_64-unknown-linux-gnu
	binary=target/x86_64-unknown-linux-gnu/release/regate
fi
cas=/etc/ssl/certs/ca-certificates.crt
if [ ! -s "$cas" ]; then
	echo "$cas is missing: install the ca-certificates package (apt-get install ca-certificates)" >&2
	exit 1
fi

rootfs=target/image/rootfs
rm -rf target/image
# The state directory is copied apart, to be owned by the non-root user.
mkdir -p target/image/state "$rootfs/usr/local/bin" "$rootfs/etc/ssl/certs" "$rootfs/etc/regate" \
	"$rootfs/var/lib" "$rootfs/tmp"
chmod 1777 "$rootfs/tmp"
install -m 0755 "$binary" "$rootfs/usr/local/bin/regate"
# A dynamic binary: the loader and every library it links, at the paths the binary names.
# (ldd exits non-zero for a static one, which needs none.)
{ ldd "$binary" 2>/dev/null || true; } | awk '/=>/ { print $3 } !/=>/ && $1 ~ /^\// { print $1 }' | while read -r lib; do
	[ -n "$lib" ] || continue
	mkdir -p "$rootfs$(dirname "$lib")"
	cp -L "$lib" "$rootfs$lib"
done
cp "$cas" "$rootfs/etc/ssl/certs/ca-certificates.crt"
cp config/regate.yaml "$rootfs/etc/regate/regate.yaml"
cat >"$rootfs/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/sbin/nologin
regate:x:10001:10001:regate:/var/lib/regate:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
PASSWD
cat >"$rootfs/etc/group" <<'GROUP'
root:x:0:
regate:x:10001:
nogroup:x:65534:
GROUP

docker build --tag "$tag" .
echo "built $tag"
