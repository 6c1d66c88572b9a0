#!/usr/bin/env bash
# Fetches the official OpenAI client for JavaScript (npm package openai, Apache-2.0) into
# the cache folder on first use and prints the folder holding its node_modules. The
# server's tests talk to `xorpatch serve` through it, as a user's program would.
exec "$(dirname "$0")/npm-fetch.sh" npm-openai4 openai 4.95.0 package.json
