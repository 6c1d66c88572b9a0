/* Serving benchmark: the engine of `xorpatch serve` (continuous batching over patch
 * overlays) at 1, 4 and 16 concurrent streams on a synthetic Bonsai-shaped model
 * (random weights, so only speed means anything), every stream on the base, then the
 * streams spread over four patches (rows, blocks, scale bits, and all three) and the
 * base. It reports the aggregate decode rate (tokens after each stream's first, over
 * the time from the last first token to the end), the mixed run's share of the
 * all-base rate (the goal is at least 90%), and the mean time to first token. The
 * engine is measured behind its library API, without HTTP, so the figures are the
 * batching's and not the network's. Usage: bench_serve [SHAPE] (default bonsai-1.7b). */
#include <omp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "xorpatch.h"

#define PROMPT 32
#define NEW 32
#define MAX_STREAMS 16

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void die(const xp_err *e)
{
    fprintf(stderr, "bench_serve: %s\n", e->msg);
    exit(1);
}

typedef struct stream {
    double submitted, first, last;
    size_t tokens;
    pthread_mutex_t *mu;
    pthread_cond_t *cv;
    int *left;
} stream;

static int on_text(void *ctx, const xp_gen_event *ev)
{
    stream *s = ctx;
    double t = now();
    if (!s->tokens)
        s->first = t;
    s->last = t;
    s->tokens += ev->n_tokens;
    return 0;
}

static void on_done(void *ctx, const xp_gen_result *r)
{
    stream *s = ctx;
    pthread_mutex_lock(s->mu);
    --*s->left;
    pthread_cond_signal(s->cv);
    pthread_mutex_unlock(s->mu);
}

/* A patch of n flips of one kind (XP_N_FLIP_KINDS: of row, block and scale bit in turn)
 * over the MLP and attention projections of every layer, as a search's patches spread. */
static void write_patch(const xp_shape *s, int kind, size_t n, const char *path)
{
    xp_patch *p;
    xp_err e = {0};
    if (xp_patch_new(&p, &e))
        die(&e);
    p->name = strdup("bench");
    uint64_t x = 0x9e3779b97f4a7c15ull * (uint64_t)(kind + 1);
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        int proj = (int)(x % XP_N_PROJ), k = kind == XP_N_FLIP_KINDS ? (int)(i % 3) : kind;
        uint32_t layer = (uint32_t)((x >> 8) % s->n_layer);
        int64_t ne0, ne1;
        xp_proj_shape(s, proj, &ne0, &ne1);
        char name[XP_TENSOR_NAME_MAX];
        xp_tensor_name(name, sizeof name, layer, xp_proj_tensor(proj));
        int64_t row = (int64_t)((x >> 20) % (uint64_t)ne1);
        int64_t block = row * (ne0 / 128) + (int64_t)((x >> 40) % (uint64_t)(ne0 / 128));
        int rc = k == XP_FLIP_ROW     ? xp_patch_add_row(p, name, row, &e)
                 : k == XP_FLIP_BLOCK ? xp_patch_add_block(p, name, block, &e)
                                      : xp_patch_add_scale_bit(p, name, block, 9, &e);
        if (rc)
            die(&e);
    }
    if (xp_patch_normalize(p, &e) || xp_patch_write(p, XP_PATCH_JSON, path, &e))
        die(&e);
    xp_patch_free(p);
}

/* n streams at once on the given ids (one each, in turn); the rates of the run. */
static void run(xp_engine *eng, xp_library *lib, const xp_shape *s, size_t n,
                const char *const *ids, size_t n_ids, double *decode_tps, double *ttft)
{
    stream st[MAX_STREAMS] = {{0}};
    xp_gen *g[MAX_STREAMS];
    xp_served *sv[MAX_STREAMS];
    pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
    int left = (int)n;
    int32_t prompt[MAX_STREAMS][PROMPT];
    xp_err e = {0};
    for (size_t i = 0; i < n; i++) {
        for (int k = 0; k < PROMPT; k++)
            prompt[i][k] = (int32_t)((i * 7919 + (size_t)k * 104729) % s->n_vocab);
        if (xp_library_get(lib, ids[(i + (n_ids > 1)) % n_ids], &sv[i], &e))
            die(&e);
    }
    for (size_t i = 0; i < n; i++) {
        st[i] = (stream){.mu = &mu, .cv = &cv, .left = &left, .submitted = now()};
        xp_gen_request rq = {prompt[i], PROMPT, sv[i], {0, 0, 1, 0}, NEW, NULL, false, 0};
        xp_gen_callbacks cb = {on_text, on_done, &st[i]};
        if (xp_engine_submit(eng, &rq, &cb, &g[i], &e))
            die(&e);
    }
    pthread_mutex_lock(&mu);
    while (left)
        pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
    double last_first = 0, end = 0, first_sum = 0;
    size_t decoded = 0;
    for (size_t i = 0; i < n; i++) {
        last_first = st[i].first > last_first ? st[i].first : last_first;
        end = st[i].last > end ? st[i].last : end;
        first_sum += st[i].first - st[i].submitted;
        decoded += st[i].tokens - 1;
        xp_gen_release(g[i]);
        xp_served_release(sv[i]);
    }
    *decode_tps = decoded / (end - last_first);
    *ttft = first_sum / (double)n;
}

int main(int argc, char **argv)
{
    const char *shape = argc > 1 ? argv[1] : "bonsai-1.7b";
    xp_shape s;
    xp_err e = {0};
    if (xp_shape_preset(shape, &s, &e))
        die(&e);
    char path[256], dir[256], file[300];
    mkdir("build/bench", 0777);
    snprintf(path, sizeof path, "build/bench/%s.gguf", shape);
    struct stat st;
    if (stat(path, &st) != 0 && xp_synth_write(&s, 1, NULL, path, NULL, NULL, &e))
        die(&e);
    snprintf(dir, sizeof dir, "build/bench/serve-patches");
    mkdir(dir, 0777);
    static const char *const names[] = {"rows", "blocks", "scales", "mixed"};
    static const int kinds[] = {XP_FLIP_ROW, XP_FLIP_BLOCK, XP_FLIP_SCALE, XP_N_FLIP_KINDS};
    for (int k = 0; k < 4; k++) {
        snprintf(file, sizeof file, "%s/%s.json", dir, names[k]);
        write_patch(&s, kinds[k], 64, file);
    }
    xp_model *m;
    xp_library *lib;
    xp_engine *eng;
    if (xp_model_open(&m, path, &e) || xp_library_open(&lib, m, dir, &e))
        die(&e);
    xp_engine_opts o = {MAX_STREAMS, PROMPT + NEW, 0, omp_get_max_threads()};
    if (xp_engine_new(&eng, m, &o, &e))
        die(&e);
    static const char *const base[] = {"base"};
    static const char *const mixed[] = {"base", "base+rows", "base+blocks", "base+scales",
                                        "base+mixed"};
    printf("serving benchmark: %s, %d-token prompts, %d new tokens per stream, greedy, "
           "kernel %s; patches of 64 flips each\n",
           shape, PROMPT, NEW, xp_model_kernel(m));
    printf("%8s %16s %16s %8s %12s %12s\n", "streams", "base decode t/s", "mixed decode t/s",
           "mixed %", "base TTFT s", "mixed TTFT s");
    static const size_t counts[] = {1, 4, 16};
    for (int c = 0; c < 3; c++) {
        double bt, bf, mt, mf;
        run(eng, lib, &s, counts[c], base, 1, &bt, &bf);
        run(eng, lib, &s, counts[c], mixed, 5, &mt, &mf);
        printf("%8zu %16.2f %16.2f %7.1f%% %12.3f %12.3f\n", counts[c], bt, mt, 100 * mt / bt, bf,
               mf);
        fflush(stdout);
    }
    xp_engine_free(eng);
    xp_library_free(lib);
    xp_model_close(m);
    return 0;
}
