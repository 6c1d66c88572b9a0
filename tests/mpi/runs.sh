#!/usr/bin/env bash
# The runs an MPI search must reproduce: searches of several seeds, fitnesses and flip
# kinds (rows with focused and the evaluation, scale-bit moves with borderline, blocks
# with mean and the generation check of the controls), a pipeline of two domains and
# the null-baseline experiment, on the shipped tiny model and the behaviour probes. What
# they write (patch, log, report text, summaries, the experiment's JSON) is normalised
# (timings, dates and paths) into OUT, so two runs compare with diff -r.
#   tests/mpi/runs.sh OUT BIN MODEL [LAUNCHER...]
# With a launcher (mpirun and its options) every command runs under it with --mpi.
set -euo pipefail
out=$1 bin=$2 model=$3
shift 3
mpi=()
[ $# -gt 0 ] && mpi=(--mpi)
here=$(cd "$(dirname "$0")/../behaviour" && pwd)
work=$out/work
rm -rf "$out" && mkdir -p "$work"

source "$here/norm.sh"
run() { "$@" "$bin" "${cmd[@]}" "${mpi[@]}"; }
probes=(-m "$model" --probes "$here/train.json" --controls "$here/controls.json")

cmd=(search "${probes[@]}" --heldout "$here/heldout.json" --fitness focused --iterations 40
    --seed 1 --random-baseline 2 -t 1 -o "$work/rows.json")
run "$@" >"$work/rows.out" 2>"$work/rows.err"
cmd=(search "${probes[@]}" --granularity scale-bit --fitness borderline --iterations 40 --seed 3
    --no-eval -t 1 -o "$work/scale.xpb")
run "$@" >"$work/scale.out" 2>"$work/scale.err"
"$bin" show "$work/scale.xpb" --json >"$work/scale.show.json"
cmd=(search "${probes[@]}" --granularity block --fitness mean --control-check generation
    --screen 0 --iterations 30 --seed 5 --no-eval -t 1 -o "$work/block.json")
run "$@" >"$work/block.out" 2>"$work/block.err"
cmd=(pipeline -m "$model" --controls "$here/controls.json" --iterations 30 --seed 2
    --fitness focused -t 1 -o "$work/pipe" "$here/arith.json" "$here/deriv.json")
run "$@" >"$work/pipe.out" 2>"$work/pipe.err"
cmd=(experiment null-baseline -m "$model" --probes "$here/train.json" --iterations 30 --seed 4
    --json -t 1)
run "$@" >"$work/null.json" 2>"$work/null.err"

for f in "$work"/*.json "$work"/*.jsonl "$work"/*.out "$work"/*.err; do
    norm <"$f" >"$out/$(basename "$f")"
done
for f in "$work"/pipe/*.json; do
    norm <"$f" >"$out/pipe-$(basename "$f")"
done
rm -rf "$work"
