/* Proposal-efficiency benchmark: `xorpatch experiment proposal-efficiency` on the shipped
 * tiny model (the behaviour suite's 48 targets, 20 controls and 30 held-out probes; row
 * flips in gate and up of the default layers; seq_logprob, mean fitness) and on the
 * bonsai-1.7b shape made by `xorpatch synth` (random weights, the real tokenizer; the
 * behaviour suite's arithmetic targets, no controls, layer n_layer-2 alone so the
 * gradient's passes fit a shared machine; ranked again every 2 accepts). The scale
 * proposals' search runs without auto-stop for ten times the gradient's iterations on
 * the tiny model, a hundred times on the 1.7B shape (there one evaluation of one layer
 * takes milliseconds and a gradient pass half a minute), so that the count it needs
 * is measured rather than cut at the gradient's. Each prints
 * the iterations (exact evaluations), probe measurements and seconds each needs to
 * reach the smaller of their final fitnesses, and their ratio. 2 threads.
 * Usage: bench_proposal [tiny] [bonsai-1.7b]   (default both)
 * Environment: XP_BENCH_PE_ITERS (tiny, default 60), XP_BENCH_PE_BIG_ITERS (1.7b,
 * default 10), XP_BIN, XP_ROOT (the checkout, default .). */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "xorpatch.h"

static size_t env_count(const char *name, size_t def)
{
    const char *v = getenv(name);
    return v && atol(v) > 0 ? (size_t)atol(v) : def;
}

static int run(const char *model, const char *probes, const char *const *controls,
               size_t n_controls, const char *heldout, const uint32_t *layers, size_t n_layers,
               size_t iterations, size_t baseline_iterations, size_t rerank_every)
{
    xp_experiment_job j = {.experiment = XP_EXP_PROPOSAL_EFFICIENCY,
                           .model_path = model,
                           .probes = probes,
                           .metric = XP_METRIC_SEQ_LOGPROB,
                           .seed = 1,
                           .controls = controls,
                           .n_controls = n_controls,
                           .heldout = heldout,
                           .baseline_iterations = baseline_iterations,
                           .out = stdout};
    xp_search_opts_default(&j.search);
    j.search.iterations = iterations;
    j.search.rerank_every = rerank_every;
    j.search.stop_window = 0; /* no auto-stop */
    j.search.checkpoint_every = 0;
    j.search.layers = layers;
    j.search.n_layers = n_layers;
    xp_err err = {0};
    int rc = xp_experiment_job_run(&j, NULL, &err);
    if (rc)
        fprintf(stderr, "bench_proposal: %s: %s\n", model, err.msg);
    fflush(stdout);
    return rc;
}

int main(int argc, char **argv)
{
    omp_set_num_threads(2);
    const char *root = getenv("XP_ROOT") ? getenv("XP_ROOT") : ".";
    const char *bin = getenv("XP_BIN") ? getenv("XP_BIN") : "build/xorpatch";
    bool tiny = argc < 2, big = argc < 2;
    for (int i = 1; i < argc; i++) {
        tiny |= !strcmp(argv[i], "tiny");
        big |= !strcmp(argv[i], "bonsai-1.7b");
    }
    char model[1024], probes[1024], controls[1024], heldout[1024], cmd[4096];
    printf("== proposal efficiency (2 threads; a shared machine makes seconds noisy, the "
           "ratios within one run less so)\n\n");
    int rc = 0;
    if (tiny) {
        snprintf(model, sizeof model, "%s/models/tiny-bonsai.gguf", root);
        snprintf(probes, sizeof probes, "%s/tests/behaviour/train.json", root);
        snprintf(controls, sizeof controls, "%s/tests/behaviour/controls.json", root);
        snprintf(heldout, sizeof heldout, "%s/tests/behaviour/heldout.json", root);
        const char *ctl[] = {controls};
        printf("-- tiny-bonsai.gguf\n");
        size_t iters = env_count("XP_BENCH_PE_ITERS", 60);
        rc |= run(model, probes, ctl, 1, heldout, NULL, 0, iters, 10 * iters, 1);
    }
    if (big) {
        mkdir("build/bench", 0777);
        snprintf(model, sizeof model, "build/bench/bonsai-1.7b-vocab.gguf");
        struct stat st;
        if (stat(model, &st) != 0) {
            snprintf(cmd, sizeof cmd, "%s synth -q --shape bonsai-1.7b --seed 1 -o %s", bin, model);
            if (system(cmd) != 0) {
                fprintf(stderr, "bench_proposal: %s failed\n", cmd);
                return 1;
            }
        }
        snprintf(probes, sizeof probes, "%s/tests/behaviour/arith.json", root);
        uint32_t layer = 26;
        size_t iters = env_count("XP_BENCH_PE_BIG_ITERS", 10);
        printf("\n-- bonsai-1.7b (synthetic, random weights), layer 26\n");
        rc |= run(model, probes, NULL, 0, NULL, &layer, 1, iters, 100 * iters, 2);
    }
    return rc ? 1 : 0;
}
