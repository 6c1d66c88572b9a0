#!/usr/bin/env bash
# A search on the ranks of mpirun whose rank 1 is killed once the run has checkpointed:
# the run must stop (mpirun's exit status not 0) with the checkpoint in place, and the
# search resumed from it on the ranks must end with the patch and the log (timings
# normalised) the uninterrupted run of one process writes. OUT gets one/ and team/ with
# the normalised patch and log, and team/killed.err, mpirun's message.
#   tests/mpi/killed.sh OUT BIN MPI_BIN MODEL LAUNCHER...
set -euo pipefail
out=$1 bin=$2 mpibin=$3 model=$4
shift 4
here=$(cd "$(dirname "$0")/../behaviour" && pwd)
rm -rf "$out" && mkdir -p "$out/one" "$out/team"
args=(search -m "$model" --probes "$here/train.json" --controls "$here/controls.json"
    --fitness focused --iterations 80 --seed 6 --checkpoint-every 5 --no-eval -t 1 -q)
"$bin" "${args[@]}" -o "$out/one/p.json"
"$@" "$mpibin" "${args[@]}" --mpi -o "$out/team/p.json" 2>"$out/team/killed.err" &
launcher=$!
log=$out/team/p.json.log.jsonl
until [ -f "$out/team/p.json" ] && [ "$(wc -l <"$log")" -ge 30 ]; do
    kill -0 "$launcher" 2>/dev/null || { echo "the run ended before it was killed" >&2; exit 1; }
    sleep 0.2
done
for pid in $(pgrep -f "$mpibin search"); do
    if tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -qx 'OMPI_COMM_WORLD_RANK=1'; then
        kill -9 "$pid"
    fi
done
if wait "$launcher"; then
    echo "the run went on after its rank 1 was killed" >&2
    exit 1
fi
[ -f "$out/team/p.json" ] || { echo "no checkpoint after the kill" >&2; exit 1; }
"$@" "$mpibin" "${args[@]}" --mpi --resume "$out/team/p.json" -o "$out/team/p.json"
for d in one team; do
    for f in p.json p.json.log.jsonl; do
        sed -E -e 's/"created":[[:space:]]*"[^"]*"/"created": "T"/g' \
            -e 's/"seconds":[[:space:]]*[-0-9.e+]+/"seconds": T/g' \
            -e "s#$out/$d/##g" <"$out/$d/$f" >"$out/$d/$f.norm"
    done
done
