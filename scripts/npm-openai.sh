#!/usr/bin/env bash
# Fetches the official OpenAI client for JavaScript (npm package openai, Apache-2.0) into
# the cache folder on first use and prints the folder holding its node_modules. The
# server's tests talk to `xorpatch serve` through it, as a user's program would.
set -eu
cache=${XORPATCH_CACHE:-"$(cd "$(dirname "$0")/.." && pwd)/.cache"}/npm-openai
pkg=openai
ver=7.60.0
if [ ! -f "$cache/node_modules/$pkg/package.json" ]; then
  mkdir -p "$cache"
  echo "xorpatch: fetching $pkg@$ver into $cache" >&2
  npm install --silent --no-audit --no-fund --prefix "$cache" "$pkg@$ver" >&2
fi
echo "$cache"
