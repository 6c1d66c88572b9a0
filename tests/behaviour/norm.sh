# norm: stdin to stdout with what may differ between two runs of the same commands
# replaced: timings and dates by "T", the file sizes that depend on them, the paths of
# $work, $here and $model (set by the script that sources this), and the note a search
# on MPI ranks adds. Sourced by record.sh and tests/mpi/runs.sh.
norm() {
    sed -E -e 's/"created":[[:space:]]*"[^"]*"/"created": "T"/g' \
        -e 's/"seconds":[[:space:]]*[-0-9.e+]+/"seconds": T/g' \
        -e 's/[0-9.]+ s each \([0-9.]+ s in all\)/T s each (T s in all)/' \
        -e 's/"sizes":\{[^}]*\}/"sizes": T/' \
        -e 's/evaluated in [0-9.]+ s/evaluated in T s/' \
        -e '/^mpi: [0-9]+ ranks:/d' \
        -e "s#$work/##g" -e "s#$here/##g" -e "s#$model#MODEL#g"
}
