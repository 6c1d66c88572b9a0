#!/usr/bin/env bash
# Installs one npm package, at a pinned version, into a folder of the cache on first use
# (when FILE, a path inside the package, is absent) and prints the folder holding its
# node_modules. The npm-*.sh scripts name what each package is for.
# Usage: npm-fetch.sh FOLDER PACKAGE VERSION FILE
set -eu
cache=${XORPATCH_CACHE:-"$(cd "$(dirname "$0")/.." && pwd)/.cache"}/$1
pkg=$2
ver=$3
if [ ! -f "$cache/node_modules/$pkg/$4" ]; then
  mkdir -p "$cache"
  echo "xorpatch: fetching $pkg@$ver into $cache" >&2
  npm install --silent --no-audit --no-fund --prefix "$cache" "$pkg@$ver" >&2
fi
echo "$cache"
