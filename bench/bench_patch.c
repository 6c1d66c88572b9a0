/* Patch speed on the Bonsai 8B layout: a 100-row patch (gate/up rows of layers 1-4 and 34,
 * as Bankai searches them) applied and reverted on a loaded model's private map (median
 * and 90th percentile of many, after a first touch that pays the copy-on-write faults),
 * and on a 1.1 GB file: a patched copy (-o), and in place through the journal. The model
 * is a synthetic bonsai-8b-shaped GGUF written to a temporary folder and removed after.
 * The goal for the in-memory apply is 50 µs. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/rng.h"
#include "xorpatch.h"

#define IN_MEMORY_RUNS 2000
#define IN_PLACE_RUNS 5

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void check(int rc, const xp_err *err)
{
    if (rc) {
        fprintf(stderr, "bench_patch: %s\n", err->msg);
        exit(1);
    }
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double quantile(double *v, size_t n, double q)
{
    qsort(v, n, sizeof *v, cmp_double);
    return v[(size_t)(q * (double)(n - 1))];
}

static xp_patch *hundred_rows(void)
{
    xp_patch *p;
    xp_err err = {0};
    check(xp_patch_new(&p, &err), &err);
    p->name = strdup("bench-100-rows");
    xp_rng r;
    xp_rng_seed(&r, 100);
    const uint32_t layers[] = {1, 2, 3, 4, 34};
    while (p->n_flips < 100) {
        char t[XP_TENSOR_NAME_MAX];
        xp_tensor_name(t, sizeof t, layers[xp_rng_below(&r, 5)],
                       xp_proj_tensor(xp_rng_below(&r, 2) ? XP_PROJ_GATE : XP_PROJ_UP));
        check(xp_patch_add_row(p, t, (int64_t)xp_rng_below(&r, 12288), &err), &err);
        check(xp_patch_normalize(p, &err), &err);
    }
    return p;
}

int main(void)
{
    omp_set_num_threads(1);
    char dir[] = "/tmp/xorpatch-bench-XXXXXX";
    if (!mkdtemp(dir)) {
        perror("bench_patch: mkdtemp");
        return 1;
    }
    char base[256], out[256], back[256];
    snprintf(base, sizeof base, "%s/base.gguf", dir);
    snprintf(out, sizeof out, "%s/patched.gguf", dir);
    snprintf(back, sizeof back, "%s/reverted.gguf", dir);
    xp_shape s;
    xp_err err = {0};
    check(xp_shape_preset("bonsai-8b", &s, &err), &err);
    double t = now();
    check(xp_synth_write(&s, 1, NULL, base, NULL, NULL, &err), &err);
    printf("bench_patch: bonsai-8b layout, %s written in %.1f s\n", base, now() - t);

    xp_patch *p = hundred_rows();
    xp_gguf *g;
    check(xp_gguf_open(&g, base, &err), &err);
    check(xp_patch_bind(p, g, &err), &err);
    xp_patch_log log;
    xp_patch_log_init(&log);
    char id[65];
    check(xp_patch_flips_sha256(p, id, &err), &err); /* OpenSSL's one-time set-up */
    t = now();
    check(xp_patch_apply(g, p, &log, &err), &err);
    double first = now() - t;
    check(xp_patch_revert(g, p, &log, &err), &err);
    static double ap[IN_MEMORY_RUNS], rv[IN_MEMORY_RUNS], raw[IN_MEMORY_RUNS];
    for (int i = 0; i < IN_MEMORY_RUNS; i++) {
        t = now();
        check(xp_patch_apply(g, p, &log, &err), &err);
        ap[i] = now() - t;
        t = now();
        check(xp_patch_revert(g, p, &log, &err), &err);
        rv[i] = now() - t;
        t = now();
        check(xp_patch_apply(g, p, NULL, &err), &err);
        raw[i] = now() - t;
        check(xp_patch_apply(g, p, NULL, &err), &err);
    }
    xp_patch_log_free(&log);
    xp_gguf_close(g);
    xp_patch_stats st;
    xp_patch_total_stats(p, &st);

    xp_patch_file_result res;
    t = now();
    check(xp_patch_file_apply(base, &p, 1, out, NULL, &res, &err), &err);
    double copy_apply = now() - t;
    t = now();
    check(xp_patch_file_revert(out, &p, 1, back, NULL, &res, &err), &err);
    double copy_revert = now() - t;
    double ip_apply[IN_PLACE_RUNS], ip_revert[IN_PLACE_RUNS];
    for (int i = 0; i < IN_PLACE_RUNS; i++) {
        t = now();
        check(xp_patch_file_revert(out, &p, 1, NULL, NULL, &res, &err), &err);
        ip_revert[i] = now() - t;
        t = now();
        check(xp_patch_file_apply(out, &p, 1, NULL, NULL, &res, &err), &err);
        ip_apply[i] = now() - t;
    }
    uint8_t *bin;
    size_t bin_len;
    check(xp_patch_serialize(p, XP_PATCH_BINARY_COMPACT, &bin, &bin_len, &err), &err);
    free(bin);

    printf("\npatch: %zu rows of ffn_gate/ffn_up (layers 1-4, 34), %llu bits; binary %zu bytes "
           "(%.1f B/flip; Bankai 12)\n", p->n_flips, (unsigned long long)st.bits, bin_len,
           (double)bin_len / (double)p->n_flips);
    printf("%-46s %12s %12s\n", "operation", "median", "p90");
    printf("%-46s %9.1f us %12s\n", "in memory: first apply (page faults)", first * 1e6,
           "-");
    printf("%-46s %9.1f us %9.1f us\n", "in memory: apply (validate, flip, log)",
           quantile(ap, IN_MEMORY_RUNS, 0.5) * 1e6, quantile(ap, IN_MEMORY_RUNS, 0.9) * 1e6);
    printf("%-46s %9.1f us %9.1f us\n", "in memory: revert (validate, flip, log)",
           quantile(rv, IN_MEMORY_RUNS, 0.5) * 1e6, quantile(rv, IN_MEMORY_RUNS, 0.9) * 1e6);
    printf("%-46s %9.1f us %9.1f us\n", "in memory: apply without a log",
           quantile(raw, IN_MEMORY_RUNS, 0.5) * 1e6, quantile(raw, IN_MEMORY_RUNS, 0.9) * 1e6);
    printf("%-46s %9.3f s  %12s\n", "file: apply -o (SHA-256 of base, 1.1 GB write)", copy_apply,
           "-");
    printf("%-46s %9.3f s  %12s\n", "file: revert -o (write, SHA-256 of output)", copy_revert,
           "-");
    printf("%-46s %9.1f ms %9.1f ms\n", "file: apply --in-place (journal, fsyncs)",
           quantile(ip_apply, IN_PLACE_RUNS, 0.5) * 1e3,
           quantile(ip_apply, IN_PLACE_RUNS, 0.9) * 1e3);
    printf("%-46s %9.1f ms %9.1f ms\n", "file: revert --in-place (journal, fsyncs)",
           quantile(ip_revert, IN_PLACE_RUNS, 0.5) * 1e3,
           quantile(ip_revert, IN_PLACE_RUNS, 0.9) * 1e3);
    printf("in-memory apply goal 50 us: %s\n",
           quantile(ap, IN_MEMORY_RUNS, 0.5) <= 50e-6 ? "met" : "NOT met");
    xp_patch_free(p);
    unlink(base), unlink(out), unlink(back);
    rmdir(dir);
    return 0;
}
