/* A program that links libxorpatch and runs a search job: what `xorpatch search -m MODEL
 * --probes PROBES --controls CONTROLS --iterations N --seed S --fitness focused -o OUT`
 * does (row flips in the default layers and projections, seq_logprob gaps), with its own
 * progress line and messages, the report on stdout.
 *   build/examples/search MODEL PROBES.json CONTROLS.json ITERATIONS SEED OUT.json */
#include <stdio.h>
#include <stdlib.h>

#include "xorpatch.h"

/* What the progress line shows, and whether it is open (a message ends it first). */
typedef struct view {
    size_t flips;
    bool open;
} view;

static void progress(void *ctx, const char *stage, uint64_t done, uint64_t total)
{
    view *v = ctx;
    fprintf(stderr, "\r%s %llu/%llu, %zu flips kept", stage, (unsigned long long)done,
            (unsigned long long)total, v->flips);
    v->open = done < total;
    if (!v->open)
        fputc('\n', stderr);
}

static void on_iter(void *ctx, const xp_search_iter *it) { ((view *)ctx)->flips = it->n_flips; }

static void message(void *ctx, int level, const char *text)
{
    view *v = ctx;
    if (v->open)
        fputc('\n', stderr);
    v->open = false;
    fprintf(stderr, "%s%s\n", level == XP_JOB_WARNING ? "warning: " : "", text);
}

static int count(const char *s, unsigned long long *out)
{
    char *end;
    *out = strtoull(s, &end, 10);
    return *s && !*end && *s != '-' ? 0 : -1;
}

int main(int argc, char **argv)
{
    unsigned long long iterations, seed;
    if (argc != 7 || count(argv[4], &iterations) || iterations == 0 || count(argv[5], &seed)) {
        fprintf(stderr, "usage: %s MODEL PROBES.json CONTROLS.json ITERATIONS SEED OUT.json\n",
                argv[0]);
        return 1;
    }
    xp_search_job job = {.model_path = argv[1],
                         .probes = argv[2],
                         .controls = (const char *const *)argv + 3,
                         .n_controls = 1,
                         .out = argv[6],
                         .report = stdout};
    xp_search_opts_default(&job.opts);
    job.opts.fitness = XP_FITNESS_FOCUSED;
    job.opts.iterations = (size_t)iterations;
    job.opts.seed = seed;
    view v = {0};
    xp_job_callbacks cb = {progress, on_iter, message, &v};
    xp_search_job_result res;
    xp_err err = {0};
    if (xp_search_job_run(&job, &cb, &res, &err)) {
        fprintf(stderr, "error: %s\n", err.msg);
        return 2;
    }
    printf("%zu flips kept in %zu iterations%s\n", res.search.patch->n_flips, res.search.iterations,
           res.written ? "" : " (no patch written)");
    xp_search_job_result_free(&res);
    return 0;
}
