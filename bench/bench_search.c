/* Search benchmark, the Bankai-like configuration: the 60 calculus training probes of the
 * shared fixtures as targets, 5 knowledge controls (probes/knowledge_controls.json), the
 * 30 held-out probes measured only at the end; row flips in gate and up of layers
 * 1,2,3,4 and n_layer-2; seq_logprob; mean fitness; screening 2. The fast gauge (every
 * probe's sequences in one token trie run as one packed batch, runs from the flip's
 * layer or its MLP, LM head only where a gap reads it) against the naive one (each
 * sequence alone, every layer, the full LM head at every position), which give the same
 * gaps: the patches of both are compared after the same iterations. 2 threads, on synthetic Bonsai
 * shapes with the real tokenizer. Usage: bench_search [SHAPE...]   (default: bonsai-1.7b bonsai-8b)
 * Environment: XP_BENCH_ITERS (fast iterations, default 20), XP_BENCH_NAIVE_ITERS
 * (default 4: one candidate is a noisy comparison), XP_SHARED (the shared folder, default
 * ../shared), XP_BIN. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include "xorpatch.h"

static void die(const char *what, const xp_err *e)
{
    fprintf(stderr, "bench_search: %s: %s\n", what, e ? e->msg : "");
    exit(1);
}

static size_t env_count(const char *name, size_t def)
{
    const char *v = getenv(name);
    return v && atol(v) > 0 ? (size_t)atol(v) : def;
}

static void load(xp_model *m, const char *path, xp_probe_set **s, xp_probe_tokens **pt)
{
    xp_err e = {0};
    if (xp_probe_set_load(s, path, &e) || xp_probe_tokenize(*s, xp_model_tokenizer(m), pt, &e))
        die(path, &e);
}

typedef struct timing {
    double *secs;      /* per iteration, the baseline measurement excluded */
    bool *screened_at; /* per iteration: rejected by screening alone */
    size_t iters, probes, accepted, screened, tokens;
    char id[65];
} timing;

static void on_iter(void *ctx, const xp_search_iter *it)
{
    timing *t = ctx;
    t->secs[it->iter - 1] = it->seconds;
    t->screened_at[it->iter - 1] = it->screened;
}

/* Mean seconds of the iterations that were (or were not) screened out; 0 when none. */
static double mean_of(const timing *t, bool screened)
{
    double s = 0;
    size_t n = 0;
    for (size_t i = 0; i < t->iters; i++)
        if (t->screened_at[i] == screened) {
            s += t->secs[i];
            n++;
        }
    return n ? s / (double)n : 0;
}

/* "12.3x" or "-" where a kind of iteration did not occur. */
static const char *ratio(char *buf, size_t size, double num, double den)
{
    if (num > 0 && den > 0)
        snprintf(buf, size, "%.1fx", num / den);
    else
        snprintf(buf, size, "-");
    return buf;
}

static double sum(const double *v, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += v[i];
    return s;
}

static timing run(xp_model *m, const xp_probe_tokens *t, size_t nt, const xp_probe_tokens *c,
                  size_t nc, size_t iters, bool naive, double *final_gaps)
{
    xp_search_opts o;
    xp_search_opts_default(&o);
    o.iterations = iters;
    o.naive = naive;
    timing tm = {calloc(iters, sizeof(double)), calloc(iters, sizeof(bool)), 0, 0, 0, 0, 0, ""};
    o.on_iter = on_iter;
    o.ctx = &tm;
    xp_search_result r;
    xp_err e = {0};
    if (xp_search_run(m, t, nt, c, nc, &o, NULL, &r, &e))
        die("search", &e);
    tm.iters = r.iterations;
    tm.probes = r.probes_run - (nt + nc); /* the baseline's excluded */
    tm.accepted = r.accepted;
    tm.screened = r.screened_out;
    tm.tokens = r.measure_tokens;
    if (r.patch->n_flips && xp_patch_flips_sha256(r.patch, tm.id, &e))
        die("patch id", &e);
    if (final_gaps)
        memcpy(final_gaps, r.final_gaps, (nt + nc) * sizeof *final_gaps);
    xp_search_result_free(&r);
    return tm;
}

int main(int argc, char **argv)
{
    const char *shapes_default[] = {"bonsai-1.7b", "bonsai-8b"};
    const char **shapes = argc > 1 ? (const char **)argv + 1 : shapes_default;
    int n_shapes = argc > 1 ? argc - 1 : 2;
    const char *shared = getenv("XP_SHARED") ? getenv("XP_SHARED") : "../shared";
    const char *bin = getenv("XP_BIN") ? getenv("XP_BIN") : "build/xorpatch";
    char train[512], heldout[512];
    snprintf(train, sizeof train, "%s/fixtures/probes/bankai/calculus_train.json", shared);
    snprintf(heldout, sizeof heldout, "%s/fixtures/probes/bankai/calculus_heldout.json", shared);
    struct stat st;
    if (stat(train, &st) != 0) {
        printf("search benchmark skipped: %s is missing (it needs the shared fixtures beside "
               "the clone)\n",
               train);
        return 0;
    }
    size_t iters = env_count("XP_BENCH_ITERS", 20),
           naive_iters = env_count("XP_BENCH_NAIVE_ITERS", 4);
    omp_set_num_threads(2);
    mkdir("build/bench", 0777);
    printf("search benchmark, Bankai-like: 60 calculus targets, 5 knowledge controls, rows of "
           "gate+up in layers 1-4 and n-2, seq_logprob, mean fitness, screen 2, 2 threads\n");
    printf("%-12s %-6s %6s %10s %10s %12s %8s %9s %s\n", "shape", "gauge", "iters", "s/iter",
           "iters/s", "probes/s", "kept", "screened", "patch");
    for (int si = 0; si < n_shapes; si++) {
        char path[256], cmd[1024];
        snprintf(path, sizeof path, "build/bench/%s-vocab.gguf", shapes[si]);
        if (stat(path, &st) != 0) {
            snprintf(cmd, sizeof cmd, "%s synth -q --shape %s --seed 1 -o %s", bin, shapes[si],
                     path);
            if (system(cmd) != 0)
                die(cmd, NULL);
        }
        xp_model *m;
        xp_err e = {0};
        if (xp_model_open(&m, path, &e))
            die(path, &e);
        xp_probe_set *ts, *cs, *hs;
        xp_probe_tokens *tt, *ct, *ht;
        load(m, train, &ts, &tt);
        load(m, "probes/knowledge_controls.json", &cs, &ct);
        load(m, heldout, &hs, &ht);
        size_t n = ts->n + cs->n;
        double *gf = malloc(n * sizeof *gf), *gn = malloc(n * sizeof *gn);
        /* the fast gauge for the timing; the first iterations again with both gauges,
         * which must keep the same flips with the same gaps, for the ratio on the same
         * candidates */
        timing f = run(m, tt, ts->n, ct, cs->n, iters, false, NULL);
        timing fs = run(m, tt, ts->n, ct, cs->n, naive_iters, false, gf);
        timing nv = run(m, tt, ts->n, ct, cs->n, naive_iters, true, gn);
        printf("%-12s tokens per full measurement: %zu fast (what probes and answers share run "
               "once), %zu naive (each sequence whole)\n",
               shapes[si], f.tokens, nv.tokens);
        timing *rows[] = {&f, &nv};
        const char *names[] = {"fast", "naive"};
        for (int k = 0; k < 2; k++) {
            double secs = sum(rows[k]->secs, rows[k]->iters);
            printf("%-12s %-6s %6zu %10.2f %10.3f %12.1f %8zu %9zu %.12s\n", shapes[si], names[k],
                   rows[k]->iters, secs / (double)rows[k]->iters, (double)rows[k]->iters / secs,
                   (double)rows[k]->probes / secs, rows[k]->accepted, rows[k]->screened,
                   rows[k]->id[0] ? rows[k]->id : "-");
        }
        bool same = !strcmp(fs.id, nv.id) && !memcmp(gf, gn, n * sizeof *gf);
        char full[32], screen[32];
        printf("%-12s fast/naive on the same %zu candidates: %.1fx (a full measurement %s: "
               "%.2f s against %.2f s; a screening %s: %.2f s against %.2f s); both %s "
               "(patch %.12s)\n",
               shapes[si], naive_iters, sum(nv.secs, nv.iters) / sum(fs.secs, fs.iters),
               ratio(full, sizeof full, mean_of(&nv, false), mean_of(&fs, false)),
               mean_of(&fs, false), mean_of(&nv, false),
               ratio(screen, sizeof screen, mean_of(&nv, true), mean_of(&fs, true)),
               mean_of(&fs, true), mean_of(&nv, true),
               same ? "kept the same flips with bit-identical gaps" : "DIFFER",
               fs.id[0] ? fs.id : "-");
        free(f.secs), free(fs.secs), free(nv.secs);
        free(f.screened_at), free(fs.screened_at), free(nv.screened_at);
        /* held-out, measured once at the end, without and with the fast run's patch */
        double *hb = malloc(hs->n * sizeof *hb);
        if (xp_probe_gaps(m, ht, hs->n, XP_METRIC_SEQ_LOGPROB, hb, &e))
            die("held-out", &e);
        size_t pos = 0;
        for (size_t i = 0; i < hs->n; i++)
            pos += hb[i] > 0;
        printf("%-12s held-out: %zu of %zu probes with gap > 0 on the base (random weights: "
               "only speed means anything here)\n",
               shapes[si], pos, hs->n);
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        printf("%-12s peak RSS so far %.0f MiB\n", shapes[si], (double)ru.ru_maxrss / 1024.0);
        fflush(stdout);
        if (!same)
            return 1;
        free(hb), free(gf), free(gn);
        xp_probe_tokens_free(tt, ts->n), xp_probe_tokens_free(ct, cs->n);
        xp_probe_tokens_free(ht, hs->n);
        xp_probe_set_free(ts), xp_probe_set_free(cs), xp_probe_set_free(hs);
        xp_model_close(m);
    }
    printf("anchors (SPEC 7): Bankai 13.4 s/iteration on an Apple M3, 0.53 s on an L40S GPU, "
           "for 8B; goals: <= 3 s (1.7B), <= 15 s (8B), >= 10x the naive gauge\n");
    return 0;
}
