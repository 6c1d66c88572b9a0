#!/usr/bin/env bash
# The runs an MPI search must reproduce: searches of several seeds, fitnesses and flip
# kinds (rows with focused and the evaluation, scale-bit moves with borderline, blocks
# with mean and the generation check of the controls), gradient-ranked proposals with
# validation probes under either rule (one killed and resumed), a pipeline of two
# domains and the null-baseline experiment, on the shipped tiny model and the behaviour probes. What
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
cmd=(search "${probes[@]}" --granularity block --fitness mean --proposal gradient
    --rerank-every 3 --validation-split 0.3 --validation-rule keep --iterations 30 --seed 7
    --no-eval -t 1 -o "$work/grad-block.json")
run "$@" >"$work/grad-block.out" 2>"$work/grad-block.err"
cmd=(search "${probes[@]}" --fitness focused --proposal gradient --rerank-every 2
    --validation "$here/heldout.json" --validation-rule early-stop --iterations 30 --seed 8
    --no-eval -t 1 -o "$work/grad-rows.json")
run "$@" >"$work/grad-rows.out" 2>"$work/grad-rows.err"
# killed after iteration 17 (its checkpoint holds iteration 15), then resumed
cmd=(search "${probes[@]}" --granularity block --fitness mean --proposal gradient
    --rerank-every 2 --validation-split 0.3 --validation-rule early-stop --iterations 30
    --seed 9 --checkpoint-every 5 --no-eval -t 1 -q -o "$work/grad-resumed.json")
if XORPATCH_CRASH_AT_ITERATION=17 run "$@" >/dev/null 2>&1; then
    echo "the search crashed at iteration 17 went on" >&2
    exit 1
fi
cmd+=(--resume "$work/grad-resumed.json")
run "$@" >"$work/grad-resumed.out" 2>"$work/grad-resumed.err"
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
