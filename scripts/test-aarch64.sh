#!/usr/bin/env bash
# Runs the AArch64 test program (cross-built by `make test-aarch64`) under qemu-aarch64,
# through the kernel's binfmt entry that scripts/deps-aarch64.sh registers, once per
# Arm kernel and once on an emulated CPU without dotprod:
#   neon-dotprod, neon, portable  qemu's default CPU (it has dotprod), XORPATCH_KERNEL
#                                 naming the kernel every model opens with;
#   fallback                      a Cortex-A72 (no dotprod): the run-time choice offers
#                                 neon and portable only, and opens models with neon.
# Every run checks the kernels the CPU offers (XP_KERNELS) and every kernel against the
# portable one on random shapes, whatever kernel the models open with.
# Usage: test-aarch64.sh BUILD_DIR [criterion options]; the test environment (XP_SHARED,
# XP_TMP, ...) comes from the Makefile. A_FILTER (a Criterion pattern) replaces the
# default choice of tests (A_FILTER='*' runs all of them, see the README for how long).
set -euo pipefail
dir=$1
shift
export XP_BIN=$PWD/$dir/xorpatch
# Under emulation the whole suite takes some 40 minutes for one kernel (and its longest
# tests pass their time limits), so each run takes the tests that use the kernels: every
# kernel and quantiser against the portable one, bit-identical batches, threads and
# kernels, fast against plain, the KV cache, token-trie batches and generation, and the
# CLI end to end (generate, logits and perplexity; a search's patch, log and report on
# any thread count). Left out: the behaviour record and the golden files (the same
# bits as any kernel gives), and the suites whose code has no kernel of its own
# (tokenizer, GGUF, patch files, probes, evaluation, search, training).
default='@(kernels/*|determinism/*|fast_vs_plain/*|forward/*|kv_cache/*|model/*|tree_batch/*|generate/*|engine_cli/*|search_cli/patch_log*)'
filter=${A_FILTER:-$default}
# the portable kernel, scalar C, is the slowest to emulate: its run leaves out the
# token-trie batches too, whose longest tests then pass their time limits (its code is
# the same as on every other CPU)
portable=${A_FILTER:-${default/tree_batch\/\*|/}}
# on the CPU without dotprod: what the choice offers, and the program with its choice
fallback=${A_FILTER:-'@(kernels/*|model/*|engine_cli/*)'}

failed=""
run() { # name, QEMU_CPU, XORPATCH_KERNEL, the kernels the CPU offers, filter, options
  local name=$1 cpu=$2 kernel=$3 offers=$4 tests=$5 start=$SECONDS
  shift 5
  echo "== aarch64 $name (cpu $cpu, XORPATCH_KERNEL=${kernel:-unset})"
  rm -rf "$XP_TMP" && mkdir -p "$XP_TMP"
  QEMU_CPU=$cpu XORPATCH_KERNEL=$kernel XP_KERNELS=$offers \
    "$dir/test_xorpatch" --filter "$tests" "$@" 2>&1 |
    grep -v -E '^\[(RUN |PASS)\]|^\[====\] Running|^\[SKIP\].*Test is disabled' ||
    failed="$failed $name"
  echo "== aarch64 $name: $((SECONDS - start)) s"
}

all="neon-dotprod neon portable"
run neon-dotprod max neon-dotprod "$all" "$filter" "$@"
run neon max neon "$all" "$filter" "$@"
run portable max portable "$all" "$portable" "$@"
run fallback cortex-a72 "" "neon portable" "$fallback" "$@"
if [ -n "$failed" ]; then
  echo "== aarch64: failed:$failed"
  exit 1
fi
