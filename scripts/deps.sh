#!/usr/bin/env bash
# Makes sure the Debian packages xorpatch builds and tests with are present.
# As root it installs what is missing with apt-get; otherwise it prints the exact
# command to run and fails, so a build never half-starts without its libraries.
# On macOS it names the Homebrew packages that are missing (libomp, for threads, is
# optional: without it the build has none).
set -eu
if [ "$(uname -s)" = Darwin ]; then
  pkgs="pkg-config cjson pcre2 utf8proc openssl@3 criterion node libmicrohttpd"
  missing=""
  for p in $pkgs; do
    brew list --versions "$p" >/dev/null 2>&1 || missing="$missing $p"
  done
  [ -z "$missing" ] && exit 0
  echo "xorpatch: missing Homebrew packages:$missing" >&2
  echo "xorpatch: run:  brew install$missing libomp" >&2
  exit 1
fi
pkgs="make gcc clang pkg-config libcjson-dev libpcre2-dev libutf8proc-dev libssl-dev libcriterion-dev libmicrohttpd-dev nodejs npm"
# Open MPI builds build/xorpatch-mpi (a search on the ranks of mpirun): installed as root,
# only named otherwise, since the rest builds without it.
optional="libopenmpi-dev openmpi-bin"
missing=""
for p in $pkgs $optional; do
  # node from another source counts as present when its commands work
  case $p in
    nodejs) command -v node >/dev/null 2>&1 && continue ;;
    npm) command -v npm >/dev/null 2>&1 && continue ;;
  esac
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ] && [ "$(printf '%s\n' $missing | grep -cvxF "$(printf '%s\n' $optional)")" = 0 ]; then
  echo "xorpatch: build/xorpatch-mpi is not built without$missing (as root: apt-get install$missing)" >&2
  exit 0
fi
cmd="apt-get update && apt-get install -y --no-install-recommends$missing"
if [ "$(id -u)" = 0 ]; then
  echo "xorpatch: installing missing packages:$missing" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2 && apt-get install -y -qq --no-install-recommends $missing >&2
else
  echo "xorpatch: missing packages:$missing" >&2
  echo "xorpatch: run as root:  sudo sh -c '$cmd'" >&2
  exit 1
fi
