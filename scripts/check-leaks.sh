#!/usr/bin/env bash
# Fails when a LeakSanitizer report in a test log has a frame in the project's own code.
# Criterion's runner keeps one block of its own until exit (a report whose frames are all
# inside libcriterion, past the sanitizer's own allocator frame, whose path holds a
# src/ too): that one is not ours and does not fail the build; any report
# that passes through src/ or tests/ does.
set -eu
log=$1
ours=$(awk '/ERROR: LeakSanitizer/ {inrep=1; rep=""} inrep && !/libsanitizer/ {rep = rep $0 "\n"}
            /^SUMMARY: AddressSanitizer/ && inrep {if (rep ~ /(src\/[a-z_]+\/|examples\/|tests\/test_)/) printf "%s", rep; inrep=0}' "$log")
if [ -n "$ours" ]; then
  printf 'leaks in the project code:\n%s\n' "$ours" >&2
  exit 1
fi
