#!/usr/bin/env bash
# Runs a Criterion suite. Its whole output goes to LOG; the screen gets it without the
# progress lines and the tests a filter left out (skips, failures and totals remain).
# When the suite fails, its failures are printed again at the very end with their
# assertion messages, so that a log cut to its last lines (CI keeps only a part) still
# names them.
#   scripts/test-run.sh LOG COMMAND...
set -uo pipefail
log=$1
shift
"$@" 2>&1 | tee "$log" | grep -v -E '^\[(RUN |PASS)\]|^\[====\] Running|Test is disabled'
rc=${PIPESTATUS[0]}
if [ $rc -ne 0 ]; then
    # one line per failed assertion (its place and first message line), then one per
    # failed test: the last lines of the output, where a log cut short still shows them
    # (tests run side by side, so an assertion is not always next to its test's line)
    echo "==== the suite failed (exit $rc); whole output in $log"
    awk '/^\[----\] [^ ]+\.c:[0-9]+: / {if (loc) print "  " loc; loc = $2; next}
         loc && /^\[----\]   *[^ ]/ {m = $0; sub(/^\[----\] +/, "", m); print "  " loc " " substr(m, 1, 160); loc = ""}
         END {if (loc) print "  " loc}' "$log" | head -40
    grep -E '^\[(FAIL|CRASH)\]|^\[----\] Warning! The test' "$log"
fi
exit $rc
