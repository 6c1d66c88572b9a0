/* Engine benchmark: prefill and decode speed of the fast path against the plain path on
 * Bonsai-shaped synthetic models (random weights, so only speed means anything), at 1
 * and 2 threads, with the work each token costs and the peak resident memory. Prefill
 * is 512 tokens, decode 128 tokens after a 16-token prompt; the plain path is measured
 * on fewer tokens (it is the specification, not a runtime), which changes nothing of
 * its per-token rate. Beside the fast path's prefill rate stands the machine's own int8
 * multiply-accumulate peak (a loop of independent VPDPBUSD on every thread, where the
 * CPU has AVX-512 VNNI), so the kernels' distance from the hardware shows.
 * Usage: bench_engine [SHAPE...]   (default: bonsai-1.7b bonsai-8b) */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "xorpatch.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

#if defined(__x86_64__)
/* n rounds of 12 independent VPDPBUSD (enough to cover their latency), each chain a
 * named register (an array would live in memory): 768 n MACs. */
__attribute__((target("avx512f,avx512vnni"))) static int vnni_rounds(long n)
{
    __m512i x = _mm512_set1_epi8(1), y = _mm512_set1_epi8(2);
    __m512i a0 = _mm512_set1_epi32(0), a1 = _mm512_set1_epi32(1), a2 = _mm512_set1_epi32(2),
            a3 = _mm512_set1_epi32(3), a4 = _mm512_set1_epi32(4), a5 = _mm512_set1_epi32(5),
            a6 = _mm512_set1_epi32(6), a7 = _mm512_set1_epi32(7), a8 = _mm512_set1_epi32(8),
            a9 = _mm512_set1_epi32(9), a10 = _mm512_set1_epi32(10), a11 = _mm512_set1_epi32(11);
    for (long r = 0; r < n; r++) {
#define STEP(v) v = _mm512_dpbusd_epi32(v, x, y)
        STEP(a0), STEP(a1), STEP(a2), STEP(a3), STEP(a4), STEP(a5);
        STEP(a6), STEP(a7), STEP(a8), STEP(a9), STEP(a10), STEP(a11);
#undef STEP
    }
    __m512i s0 = _mm512_add_epi32(_mm512_add_epi32(a0, a1), _mm512_add_epi32(a2, a3));
    __m512i s1 = _mm512_add_epi32(_mm512_add_epi32(a4, a5), _mm512_add_epi32(a6, a7));
    __m512i s2 = _mm512_add_epi32(_mm512_add_epi32(a8, a9), _mm512_add_epi32(a10, a11));
    __m512i sum = _mm512_add_epi32(_mm512_add_epi32(s0, s1), s2);
    return _mm512_cvtsi512_si32(sum);
}
#endif

/* GMAC/s of VPDPBUSD on `threads` threads at once; 0 where there is no AVX-512 VNNI. */
static double vnni_peak(int threads)
{
#if defined(__x86_64__)
    if (!__builtin_cpu_supports("avx512vnni"))
        return 0;
    long n = 20000000;
    volatile int sink = 0;
    double t0 = now();
#pragma omp parallel num_threads(threads)
    sink += vnni_rounds(n);
    (void)sink;
    return (double)threads * (double)n * 768.0 / (now() - t0) * 1e-9;
#else
    (void)threads;
    return 0;
#endif
}

static void die(const xp_err *e)
{
    fprintf(stderr, "bench_engine: %s\n", e->msg);
    exit(1);
}

/* Tokens per second of a prefill of n tokens. */
static double prefill(xp_model *m, xp_path path, const int32_t *tok, size_t n, float *logits)
{
    xp_err e = {0};
    xp_seq s = {NULL, tok, n, NULL};
    double t0 = now();
    if (xp_forward(m, path, &s, 1, logits, &e))
        die(&e);
    return (double)n / (now() - t0);
}

/* Tokens per second of decoding n tokens one by one after a prompt of p tokens. */
static double decode(xp_model *m, xp_path path, const int32_t *tok, size_t p, size_t n,
                     float *logits)
{
    xp_err e = {0};
    xp_kv *kv;
    if (xp_kv_new(&kv, m, p + n, &e))
        die(&e);
    xp_seq s = {kv, tok, p, NULL};
    if (xp_forward(m, path, &s, 1, logits, &e))
        die(&e);
    double t0 = now();
    for (size_t i = 0; i < n; i++) {
        s = (xp_seq){kv, tok + p + i, 1, NULL};
        if (xp_forward(m, path, &s, 1, logits, &e))
            die(&e);
    }
    double rate = (double)n / (now() - t0);
    xp_kv_free(kv);
    return rate;
}

int main(int argc, char **argv)
{
    const char *shapes_default[] = {"bonsai-1.7b", "bonsai-8b"};
    const char **shapes = argc > 1 ? (const char **)argv + 1 : shapes_default;
    int n_shapes = argc > 1 ? argc - 1 : 2;
    mkdir("build/bench", 0777);
    printf("engine benchmark (kernel chosen at open; plain = reference path)\n");
    printf("%-12s %-7s %3s %12s %12s %10s %12s\n", "shape", "path", "thr", "prefill t/s",
           "decode t/s", "GMAC/tok", "prefill GMAC/s");
    for (int si = 0; si < n_shapes; si++) {
        xp_shape s;
        xp_err e = {0};
        if (xp_shape_preset(shapes[si], &s, &e))
            die(&e);
        char path[256];
        snprintf(path, sizeof path, "build/bench/%s.gguf", shapes[si]);
        struct stat st;
        if (stat(path, &st) != 0 && xp_synth_write(&s, 1, NULL, path, NULL, NULL, &e))
            die(&e);
        xp_model *m;
        if (xp_model_open(&m, path, &e))
            die(&e);
        double qd = (double)s.n_head * s.head_dim, kvd = (double)s.n_head_kv * s.head_dim;
        double per_layer = s.n_embd * (qd + 2 * kvd) + qd * s.n_embd + 3.0 * s.n_embd * s.n_ff;
        double gmac = (s.n_layer * per_layer + (double)s.n_embd * (double)s.n_vocab) * 1e-9;
        size_t n_prefill = 512, n_decode = 128;
        int32_t *tok = malloc((n_prefill + n_decode) * sizeof *tok);
        for (size_t i = 0; i < n_prefill + n_decode; i++)
            tok[i] = (int32_t)((i * 7919 + 13) % s.n_vocab);
        float *logits = malloc(s.n_vocab * sizeof *logits);
        for (int threads = 1; threads <= 2; threads++) {
            omp_set_num_threads(threads);
            /* warm the page cache and the kernels once */
            prefill(m, XP_PATH_FAST, tok, 16, logits);
            double pf = prefill(m, XP_PATH_FAST, tok, n_prefill, logits);
            double dc = decode(m, XP_PATH_FAST, tok, 16, n_decode, logits);
            /* prefill's LM head runs once, so its cost per token is the body's */
            double body = gmac - (double)s.n_embd * (double)s.n_vocab * 1e-9;
            double peak = vnni_peak(threads);
            printf("%-12s %-7s %3d %12.1f %12.1f %10.3f %12.1f", shapes[si], "fast", threads,
                   pf, dc, gmac, pf * body);
            if (peak > 0)
                printf("   (VPDPBUSD peak %.0f GMAC/s: prefill at %.0f%%)", peak,
                       100.0 * pf * body / peak);
            printf("\n");
            fflush(stdout);
            double pp = prefill(m, XP_PATH_PLAIN, tok, 4, logits);
            double dp = decode(m, XP_PATH_PLAIN, tok, 4, 2, logits);
            printf("%-12s %-7s %3d %12.2f %12.2f %10.3f %12.1f   (fast/plain: prefill %.0fx, "
                   "decode %.0fx)\n", shapes[si], "plain", threads, pp, dp, gmac, pp * body,
                   pf / pp, dc / dp);
            fflush(stdout);
        }
        free(tok);
        free(logits);
        xp_model_close(m);
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("peak RSS %.0f MiB (the largest model is mapped; weights are not copied)\n",
           (double)ru.ru_maxrss / 1024.0);
    printf("for scale (shared/golden/README.md, this machine kind, 2 threads, 1.7B shape): "
           "llama.cpp prefill 47.6 t/s, decode 20.9 t/s\n");
    return 0;
}
