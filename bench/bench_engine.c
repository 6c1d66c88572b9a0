/* Engine benchmark: prefill and decode speed of the fast path on Bonsai-shaped models made
 * by `xorpatch synth` (random weights and the real tokenizer, so only speed means
 * anything), for every kernel the CPU has (or the one XORPATCH_KERNEL names), on 2
 * threads. The work is llama-bench's: pp512 is one 512-token batch into an empty cache,
 * tg64 is 64 single-token steps from an empty cache. Each figure stands beside the
 * machine's own limits, measured here: decode reads every weight once a token, so its
 * bytes per second are a share of the read bandwidth (2 threads streaming a buffer far
 * larger than the caches); prefill's multiply-accumulates per second are a share of the
 * int8 peak (loops of independent VPDPBUSD and of PMADDUBSW on every thread, where the CPU
 * has them; none is measured on other CPUs), and of the peak of the kernel's own
 * instructions.
 * With LLAMA_BENCH=path/to/llama-bench in the environment, llama.cpp runs the same pp512
 * and tg64 on the same files in the same rounds, interleaved with the kernels' runs, and
 * each ratio is the median of the rounds' own ratios; without it nothing is said of
 * llama.cpp. Rounds: XP_BENCH_ROUNDS (default 3); figures are medians over the rounds.
 * Usage: bench_engine [SHAPE...]   (default: bonsai-1.7b bonsai-8b) */
#include <omp.h>
#include <stdint.h>
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

#define THREADS 2
#define N_PREFILL 512
#define N_DECODE 64
#define MAX_KERNELS 8
#define MAX_ROUNDS 15

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void die(const char *what, const char *msg)
{
    fprintf(stderr, "bench_engine: %s: %s\n", what, msg);
    exit(1);
}

/* ---- the machine's limits ------------------------------------------------------------- */

/* GB/s of THREADS threads reading a 1 GiB buffer at once (each its own half), the best of
 * three passes after one that maps the pages. */
static double read_bandwidth(void)
{
    size_t n = ((size_t)1 << 30) / sizeof(uint64_t);
    uint64_t *buf = malloc(n * sizeof *buf);
    if (!buf)
        die("bandwidth", "out of memory for a 1 GiB buffer");
    for (size_t i = 0; i < n; i++)
        buf[i] = i;
    double best = 0;
    volatile uint64_t sink = 0;
    for (int pass = 0; pass < 4; pass++) {
        double t0 = now();
#pragma omp parallel num_threads(THREADS)
        {
            /* eight independent chains, so the loads, not the adds, set the pace */
            uint64_t acc[8] = {0};
#pragma omp for schedule(static)
            for (size_t i = 0; i < n; i += 8)
                for (int k = 0; k < 8; k++)
                    acc[k] += buf[i + (size_t)k];
            uint64_t s = 0;
            for (int k = 0; k < 8; k++)
                s += acc[k];
#pragma omp atomic
            sink += s;
        }
        double gbs = (double)(n * sizeof *buf) / (now() - t0) * 1e-9;
        best = pass > 0 && gbs > best ? gbs : best;
    }
    free(buf);
    return best;
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
    return _mm512_cvtsi512_si32(_mm512_add_epi32(_mm512_add_epi32(s0, s1), s2));
}

/* n rounds of 6 independent PMADDUBSW, each added into its own sum as a kernel's are (32
 * multiplies each, their pairs added): 192 n MACs. The inputs pass through an empty asm
 * each round, so the products cannot be hoisted out of the loop, and each product
 * depends on no earlier one, so the rate is the throughput, not the latency. */
__attribute__((target("avx2"))) static int maddubs_rounds(long n)
{
    __m256i y = _mm256_set1_epi8(2);
    __m256i x0 = _mm256_set1_epi8(1), x1 = _mm256_set1_epi8(3), x2 = _mm256_set1_epi8(5),
            x3 = _mm256_set1_epi8(7), x4 = _mm256_set1_epi8(9), x5 = _mm256_set1_epi8(11);
    __m256i a0 = y, a1 = y, a2 = y, a3 = y, a4 = y, a5 = y;
    for (long r = 0; r < n; r++) {
        __asm__ volatile("" : "+x"(x0), "+x"(x1), "+x"(x2), "+x"(x3), "+x"(x4), "+x"(x5));
#define STEP(a, x) a = _mm256_add_epi16(a, _mm256_maddubs_epi16(x, y))
        STEP(a0, x0), STEP(a1, x1), STEP(a2, x2), STEP(a3, x3), STEP(a4, x4), STEP(a5, x5);
#undef STEP
    }
    __m256i s = _mm256_add_epi16(_mm256_add_epi16(a0, a1), _mm256_add_epi16(a2, a3));
    return _mm256_extract_epi32(_mm256_add_epi16(s, _mm256_add_epi16(a4, a5)), 0);
}
#endif

typedef enum { PEAK_VNNI, PEAK_MADDUBS, N_PEAKS } peak_kind;
static const char *const peak_names[N_PEAKS] = {"VPDPBUSD zmm", "PMADDUBSW ymm"};

/* GMAC/s of one int8 multiply-accumulate instruction on THREADS threads at once, the best
 * of three passes; 0 where the CPU lacks it. */
static double int8_peak(peak_kind kind)
{
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (!(kind == PEAK_VNNI ? __builtin_cpu_supports("avx512vnni")
                            : __builtin_cpu_supports("avx2")))
        return 0;
    long n = 20000000;
    volatile int sink = 0;
    double best = 0;
    for (int pass = 0; pass < 3; pass++) {
        double t0 = now();
#pragma omp parallel num_threads(THREADS)
        {
            int v = kind == PEAK_VNNI ? vnni_rounds(n) : maddubs_rounds(n);
#pragma omp atomic
            sink += v;
        }
        double macs = kind == PEAK_VNNI ? 768.0 : 192.0;
        double g = THREADS * (double)n * macs / (now() - t0) * 1e-9;
        best = g > best ? g : best;
    }
    return best;
#else
    (void)kind;
    return 0;
#endif
}

/* The peak of the instructions a kernel's prefill uses, or 0 where none is measured. */
static double kernel_peak(const char *kernel, const double peaks[N_PEAKS])
{
    return strcmp(kernel, "avx512") == 0 ? peaks[PEAK_VNNI]
           : strcmp(kernel, "avx2") == 0 ? peaks[PEAK_MADDUBS]
                                         : 0;
}

/* ---- xorpatch ------------------------------------------------------------------------- */

/* Tokens per second of one prefill of n tokens into an empty cache. */
static double prefill(xp_model *m, const int32_t *tok, size_t n, float *logits)
{
    xp_err e = {0};
    xp_kv *kv;
    if (xp_kv_new(&kv, m, n, &e))
        die("cache", e.msg);
    xp_seq s = {kv, tok, n, NULL};
    double t0 = now();
    if (xp_forward(m, XP_PATH_FAST, &s, 1, logits, &e))
        die("prefill", e.msg);
    double rate = (double)n / (now() - t0);
    xp_kv_free(kv);
    return rate;
}

/* Tokens per second of n single-token steps from an empty cache. */
static double decode(xp_model *m, const int32_t *tok, size_t n, float *logits)
{
    xp_err e = {0};
    xp_kv *kv;
    if (xp_kv_new(&kv, m, n, &e))
        die("cache", e.msg);
    double t0 = now();
    for (size_t i = 0; i < n; i++) {
        xp_seq s = {kv, tok + i, 1, NULL};
        if (xp_forward(m, XP_PATH_FAST, &s, 1, logits, &e))
            die("decode", e.msg);
    }
    double rate = (double)n / (now() - t0);
    xp_kv_free(kv);
    return rate;
}

/* ---- llama.cpp ------------------------------------------------------------------------ */

/* The column of name in a CSV header line, or -1. Fields may be quoted. */
static int csv_column(const char *header, const char *name)
{
    int col = 0;
    for (const char *p = header; *p; col++) {
        size_t len = strcspn(p, ",\r\n");
        const char *f = p;
        if (len >= 2 && f[0] == '"' && f[len - 1] == '"')
            f++, len -= 2;
        if (len == strlen(name) && strncmp(f, name, len) == 0)
            return col;
        p += strcspn(p, ",\r\n");
        if (*p != ',')
            break;
        p++;
    }
    return -1;
}

/* Field col of a CSV line as a number. */
static double csv_number(const char *line, int col)
{
    const char *p = line;
    for (int c = 0; c < col && p; c++) {
        p = strchr(p, ',');
        p = p ? p + 1 : NULL;
    }
    return p ? atof(p + (*p == '"')) : 0;
}

/* llama-bench's pp512 and tg64 tokens per second on model, one repetition each (after its
 * own warm-up), on THREADS threads. */
static void llama_run(const char *llama, const char *model, double *pp, double *tg)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "'%s' -m '%s' -p %d -n %d -t %d -r 1 -o csv 2>/dev/null", llama,
             model, N_PREFILL, N_DECODE, THREADS);
    FILE *f = popen(cmd, "r");
    if (!f)
        die("llama-bench", "cannot run it");
    char line[8192];
    int c_prompt = -1, c_gen = -1, c_ts = -1;
    *pp = *tg = 0;
    while (fgets(line, sizeof line, f)) {
        if (c_ts < 0) {
            c_prompt = csv_column(line, "n_prompt");
            c_gen = csv_column(line, "n_gen");
            c_ts = csv_column(line, "avg_ts");
            continue;
        }
        if (c_prompt < 0 || c_gen < 0)
            break;
        double ts = csv_number(line, c_ts);
        if (csv_number(line, c_prompt) > 0)
            *pp = ts;
        else if (csv_number(line, c_gen) > 0)
            *tg = ts;
    }
    if (pclose(f) != 0 || *pp <= 0 || *tg <= 0)
        die("llama-bench", "it failed or printed no pp and tg figures (run it by hand: is the "
                           "model one it can read?)");
}

/* ---- the report ----------------------------------------------------------------------- */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(const double *v, int n)
{
    double s[MAX_ROUNDS];
    memcpy(s, v, (size_t)n * sizeof *v);
    qsort(s, (size_t)n, sizeof *s, cmp_double);
    return n % 2 ? s[n / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]);
}

/* Median over rounds of a[i] / b[i]. */
static double median_ratio(const double *a, const double *b, int n)
{
    double r[MAX_ROUNDS];
    for (int i = 0; i < n; i++)
        r[i] = a[i] / b[i];
    return median(r, n);
}

/* A share in percent, or a dash where the limit was not measured. */
static void print_share(double value, double limit)
{
    if (limit > 0)
        printf(" %7.0f%%", 100 * value / limit);
    else
        printf(" %8s", "-");
}

/* One row of figures, without its end of line: the rates, prefill's GMAC/s and decode's
 * GB/s, and their shares of the limits (isa: the kernel's own instructions' peak). */
static void print_row(const char *shape, const char *name, double pp, double tg, double body_gmac,
                      double step_gb, double peak, double isa, double bw)
{
    printf("%-12s %-13s %9.1f %9.2f %9.1f %9.1f", shape, name, pp, tg, pp * body_gmac,
           tg * step_gb);
    print_share(pp * body_gmac, peak);
    print_share(pp * body_gmac, isa);
    print_share(tg * step_gb, bw);
}

int main(int argc, char **argv)
{
    const char *shapes_default[] = {"bonsai-1.7b", "bonsai-8b"};
    const char **shapes = argc > 1 ? (const char **)argv + 1 : shapes_default;
    int n_shapes = argc > 1 ? argc - 1 : 2;
    const char *bin = getenv("XP_BIN") ? getenv("XP_BIN") : "build/xorpatch";
    const char *llama = getenv("LLAMA_BENCH");
    llama = llama && *llama ? llama : NULL;
    const char *forced = getenv("XORPATCH_KERNEL");
    int rounds = getenv("XP_BENCH_ROUNDS") ? atoi(getenv("XP_BENCH_ROUNDS")) : 3;
    rounds = rounds < 1 ? 1 : rounds > MAX_ROUNDS ? MAX_ROUNDS : rounds;
    const char *kernels[MAX_KERNELS];
    int n_kernels = 0;
    for (const char *const *k = xp_kernels_available(); *k && n_kernels < MAX_KERNELS; k++)
        if (!forced || !*forced || strcmp(*k, forced) == 0)
            kernels[n_kernels++] = *k;
    if (!n_kernels)
        die("XORPATCH_KERNEL", "names no kernel this CPU can run");
    omp_set_num_threads(THREADS);

    double bw = read_bandwidth(), peaks[N_PEAKS], peak = 0;
    for (int k = 0; k < N_PEAKS; k++) {
        peaks[k] = int8_peak((peak_kind)k);
        peak = peaks[k] > peak ? peaks[k] : peak;
    }
    printf("engine benchmark: pp%d (one batch) and tg%d (single steps) from an empty cache, "
           "%d threads, %d round%s, medians\n",
           N_PREFILL, N_DECODE, THREADS, rounds, rounds > 1 ? "s" : "");
    printf("machine: read bandwidth %.1f GB/s; int8 peak", bw);
    for (int k = 0; k < N_PEAKS; k++)
        if (peaks[k] > 0)
            printf(" %.0f GMAC/s (%s)", peaks[k], peak_names[k]);
    printf("%s\n", peak > 0 ? "" : " not measured on this CPU");
    printf("pp/peak: prefill's MAC/s as a share of the highest int8 peak; pp/isa: of its own "
           "instructions' peak;\ntg/bw: decode's weight bytes/s as a share of the read "
           "bandwidth\n");
    if (llama)
        printf("llama.cpp: %s, the same files, in the same rounds\n", llama);
    printf("%-12s %-13s %9s %9s %9s %9s %8s %8s %8s%s\n", "shape", "kernel", "pp t/s", "tg t/s",
           "pp GMAC/s", "tg GB/s", "pp/peak", "pp/isa", "tg/bw",
           llama ? "   pp/llama tg/llama" : "");
    mkdir("build/bench", 0777);
    for (int si = 0; si < n_shapes; si++) {
        char path[256], cmd[1024];
        snprintf(path, sizeof path, "build/bench/%s-vocab.gguf", shapes[si]);
        struct stat st;
        if (stat(path, &st) != 0) {
            snprintf(cmd, sizeof cmd, "'%s' synth -q --shape %s --seed 1 -o %s", bin, shapes[si],
                     path);
            if (system(cmd) != 0 || stat(path, &st) != 0)
                die(cmd, "failed");
        }
        xp_model *m;
        xp_err e = {0};
        if (xp_model_open(&m, path, &e))
            die(path, e.msg);
        const xp_shape *s = xp_model_shape(m);
        double qd = (double)s->n_head * s->head_dim, kvd = (double)s->n_head_kv * s->head_dim;
        double per_layer = s->n_embd * (qd + 2 * kvd) + qd * s->n_embd + 3.0 * s->n_embd * s->n_ff;
        /* prefill's LM head runs for the last token only: its MACs per token are the body's */
        double body_gmac = s->n_layer * per_layer * 1e-9;
        /* a decode step reads every matrix once, the LM head included: about the file */
        double step_gb = (double)st.st_size * 1e-9;
        int32_t *tok = malloc((N_PREFILL + N_DECODE) * sizeof *tok);
        float *logits = malloc(s->n_vocab * sizeof *logits);
        for (size_t i = 0; i < N_PREFILL + N_DECODE; i++)
            tok[i] = (int32_t)((i * 7919 + 13) % 150000);
        double pp[MAX_KERNELS][MAX_ROUNDS], tg[MAX_KERNELS][MAX_ROUNDS];
        double lpp[MAX_ROUNDS], ltg[MAX_ROUNDS];
        for (int k = 0; k < n_kernels; k++) { /* warm the page cache and each kernel */
            if (xp_model_set_kernel(m, kernels[k], &e))
                die(kernels[k], e.msg);
            prefill(m, tok, 16, logits);
        }
        for (int r = 0; r < rounds; r++) {
            for (int k = 0; k < n_kernels; k++) {
                xp_model_set_kernel(m, kernels[k], &e);
                pp[k][r] = prefill(m, tok, N_PREFILL, logits);
                tg[k][r] = decode(m, tok + N_PREFILL, N_DECODE, logits);
            }
            if (llama)
                llama_run(llama, path, &lpp[r], &ltg[r]);
        }
        for (int k = 0; k < n_kernels; k++) {
            print_row(shapes[si], kernels[k], median(pp[k], rounds), median(tg[k], rounds),
                      body_gmac, step_gb, peak, kernel_peak(kernels[k], peaks), bw);
            if (llama)
                printf("   %7.2fx %7.2fx", median_ratio(pp[k], lpp, rounds),
                       median_ratio(tg[k], ltg, rounds));
            printf("\n");
        }
        if (llama) {
            print_row(shapes[si], "llama.cpp", median(lpp, rounds), median(ltg, rounds), body_gmac,
                      step_gb, peak, 0, bw);
            printf("\n");
        }
        fflush(stdout);
        free(tok);
        free(logits);
        xp_model_close(m);
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("peak RSS %.0f MiB (the largest model is mapped; weights are not copied)\n",
           (double)ru.ru_maxrss / 1024.0);
    return 0;
}
