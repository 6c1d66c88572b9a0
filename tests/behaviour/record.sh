#!/usr/bin/env bash
# The behaviour record: a fixed search (with its evaluation), a second search of another
# flip kind and fitness, a pipeline of two domains and an eval of the first patch, all on
# the shipped tiny model and the small probe sets beside this script. What they write
# (patch, log, report text, summaries) is normalised (timings, dates and the file sizes
# that depend on them replaced by "T"; paths made relative) into OUT; tests/test_behaviour.c compares OUT with expected/ byte for byte, so moving
# code between layers cannot change what a user gets.
#   tests/behaviour/record.sh BIN MODEL OUT
set -euo pipefail
bin=$1 model=$2 out=$3
here=$(cd "$(dirname "$0")" && pwd)
work=$out/work
rm -rf "$out" && mkdir -p "$work"

source "$here/norm.sh"

"$bin" search -m "$model" --probes "$here/train.json" --controls "$here/controls.json" \
    --heldout "$here/heldout.json" --fitness focused --iterations 40 --seed 1 -t 2 \
    -o "$work/rows.json" >"$work/rows.out" 2>"$work/rows.err"
"$bin" search -m "$model" --probes "$here/train.json" --controls "$here/controls.json" \
    --granularity scale-bit --fitness borderline --iterations 40 --seed 3 --no-eval -t 2 \
    -o "$work/scale.xpb" >"$work/scale.out" 2>"$work/scale.err"
"$bin" show "$work/scale.xpb" --json >"$work/scale.show.json"
"$bin" pipeline -m "$model" --controls "$here/controls.json" --iterations 30 --seed 2 \
    --fitness focused -t 2 -o "$work/pipe" "$here/arith.json" "$here/deriv.json" \
    >"$work/pipe.out" 2>"$work/pipe.err"
"$bin" eval -m "$model" --probes "$here/heldout.json" -p "$work/rows.json" -t 2 \
    >"$work/eval.out" 2>"$work/eval.err"
"$bin" eval -m "$model" --probes "$here/heldout.json" -p "$work/rows.json" --json -t 2 \
    >"$work/eval.json" 2>/dev/null

for f in rows.json rows.json.log.jsonl rows.out rows.err scale.xpb.log.jsonl scale.out \
    scale.err scale.show.json pipe.out pipe.err eval.out eval.err eval.json; do
    norm <"$work/$f" >"$out/$f"
done
for f in "$work"/pipe/*.json; do
    norm <"$f" >"$out/pipe-$(basename "$f")"
done
rm -rf "$work"
