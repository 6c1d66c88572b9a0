#!/usr/bin/env bash
# Makes sure `make test-aarch64` has what it needs, and prints the folder that holds the
# arm64 Criterion library:
#  - Debian's AArch64 cross compiler, and qemu-user with its binfmt entry, registered with
#    the kernel so that arm64 programs run as if native (Criterion's test runner starts
#    itself again for every test, and the tests start build/aarch64/xorpatch);
#  - the arm64 builds of the libraries xorpatch links, as multiarch packages (the arm64
#    architecture is added to dpkg first);
#  - Criterion for arm64, unpacked into a cache folder instead: its arm64 package cannot
#    be installed beside the amd64 one the native build uses (their nanomsg builds
#    differ), and the test binary needs only its shared library.
# As root it installs what is missing; otherwise it prints the commands and fails.
set -eu
cache=${XORPATCH_CACHE:-"$(cd "$(dirname "$0")/.." && pwd)/.cache"}/aarch64
binfmt=/proc/sys/fs/binfmt_misc
native="gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user qemu-user-binfmt"
arm64="libc6 libgomp1 libcjson-dev libpcre2-dev libutf8proc-dev libssl-dev libmicrohttpd-dev libffi8 libgit2-1.5"
unpacked="libcriterion3 libcriterion-dev libnanomsg5"
missing=""
for p in $native $(printf '%s:arm64 ' $arm64); do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  cmd="dpkg --add-architecture arm64 && apt-get update && apt-get install -y --no-install-recommends --no-remove$missing"
  if [ "$(id -u)" != 0 ]; then
    echo "xorpatch: missing packages:$missing" >&2
    echo "xorpatch: run as root:  sudo sh -c '$cmd'" >&2
    exit 1
  fi
  echo "xorpatch: installing missing packages:$missing" >&2
  export DEBIAN_FRONTEND=noninteractive
  dpkg --print-foreign-architectures | grep -qx arm64 || dpkg --add-architecture arm64
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends --no-remove $missing >&2
fi
if [ ! -e "$binfmt/qemu-aarch64" ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "xorpatch: arm64 programs do not run through qemu; run as root:" >&2
    echo "  sudo sh -c 'mount -t binfmt_misc binfmt_misc $binfmt; cat /usr/lib/binfmt.d/qemu-aarch64.conf >$binfmt/register'" >&2
    exit 1
  fi
  [ -e "$binfmt/register" ] || mount -t binfmt_misc binfmt_misc "$binfmt"
  cat /usr/lib/binfmt.d/qemu-aarch64.conf >"$binfmt/register"
fi
if [ ! -e "$cache/usr/lib/aarch64-linux-gnu/libcriterion.so" ]; then
  echo "xorpatch: unpacking arm64 Criterion into $cache" >&2
  tmp=$(mktemp -d) && chmod a+rwx "$tmp" # apt downloads as its own user
  (cd "$tmp" && apt-get download -qq $(printf '%s:arm64 ' $unpacked) >&2)
  mkdir -p "$cache"
  for deb in "$tmp"/*.deb; do dpkg-deb -x "$deb" "$cache"; done
  rm -rf "$tmp"
fi
echo "$cache"
