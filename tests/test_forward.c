/* The inference engine: agreement with exact arithmetic and with llama.cpp on the golden
 * files, bit-identical kernels, batch and thread invariance of the fast path, the fast
 * path's tolerance against the plain one across shapes, the KV cache, and clear refusals
 * of bad models and bad batches. */
#include <cjson/cJSON.h>
#include <math.h>
#include <omp.h>
#include <string.h>

#include "core/rng.h"
#include "model/kernels.h"
#include "model/model.h"
#include "testutil.h"
#include "xorpatch.h"

static xp_model *open_model(const char *path)
{
    xp_model *m;
    xp_err err = {0};
    cr_assert_eq(xp_model_open(&m, path, &err), XP_OK, "%s", err.msg);
    return m;
}

/* A layout-only random model (no tokenizer) of the given shape, written once per run. */
static xp_model *random_model(const char *tag, xp_shape s, uint64_t seed)
{
    char path[512];
    snprintf(path, sizeof path, "%s/fwd-%s-%llu.gguf", xp_test_env("XP_TMP", "/tmp"), tag,
             (unsigned long long)seed);
    struct stat st;
    if (stat(path, &st) != 0) {
        char tmp[600];
        snprintf(tmp, sizeof tmp, "%s.%d", path, (int)getpid());
        xp_err err = {0};
        cr_assert_eq(xp_synth_write(&s, seed, NULL, tmp, NULL, NULL, &err), XP_OK, "%s", err.msg);
        cr_assert_eq(rename(tmp, path), 0);
    }
    return open_model(path);
}

static xp_shape small_shape(void)
{
    /* head_dim 128 with 4 heads on a 256-wide model: q is 512 wide, not n_embd */
    return (xp_shape){2, 256, 384, 4, 2, 128, 1000, false, 512, 1e6f, 1e-6f};
}

static int32_t *random_tokens(xp_rng *r, size_t n, uint64_t vocab)
{
    int32_t *t = malloc(n * sizeof *t);
    for (size_t i = 0; i < n; i++)
        t[i] = (int32_t)xp_rng_below(r, vocab);
    return t;
}

static float *run(xp_model *m, xp_path path, const int32_t *tok, size_t n, bool all)
{
    size_t V = xp_model_shape(m)->n_vocab;
    uint8_t *want = malloc(n);
    memset(want, all, n);
    want[n - 1] = 1;
    float *out = malloc((all ? n : 1) * V * sizeof *out);
    xp_seq s = {NULL, tok, n, want};
    xp_err err = {0};
    cr_assert_eq(xp_forward(m, path, &s, 1, out, &err), XP_OK, "%s", err.msg);
    free(want);
    return out;
}

/* ---- golden files ------------------------------------------------------------------ */

static cJSON *load_json(const char *path)
{
    char *text = xp_test_slurp(path);
    cr_assert(text, "cannot read %s", path);
    cJSON *j = cJSON_Parse(text);
    free(text);
    cr_assert(j, "%s is not JSON", path);
    return j;
}

static void check_golden(const char *name)
{
    XP_NEED_SHARED(shared);
    char path[4096];
    snprintf(path, sizeof path, "%s/golden/%s.gguf", shared, name);
    xp_model *m = open_model(path);
    size_t V = xp_model_shape(m)->n_vocab;
    snprintf(path, sizeof path, "%s/golden/%s.json", shared, name);
    cJSON *j = load_json(path);
    cJSON *p;
    int k = 0, margins_checked = 0;
    double worst_plain = 0, worst_fast = 0, worst_llama = 0;
    cJSON_ArrayForEach(p, cJSON_GetObjectItem(j, "prompts"))
    {
        /* token ids identical to llama.cpp's and the reference tokenizer's */
        const char *text = cJSON_GetObjectItem(p, "text")->valuestring;
        bool special = cJSON_IsTrue(cJSON_GetObjectItem(p, "special"));
        cJSON *ids = cJSON_GetObjectItem(p, "ids");
        size_t n = (size_t)cJSON_GetArraySize(ids);
        int32_t *got;
        size_t n_got;
        xp_err err = {0};
        cr_assert_eq(xp_tokenize(xp_model_tokenizer(m), text, strlen(text), special, &got,
                                 &n_got, &err), XP_OK, "%s", err.msg);
        cr_assert_eq(n_got, n, "prompt %d: %zu ids, expected %zu", k, n_got, n);
        for (size_t i = 0; i < n; i++)
            cr_assert_eq(got[i], cJSON_GetArrayItem(ids, (int)i)->valueint, "prompt %d id %zu",
                         k, i);

        /* every position's reported logits: fast always; plain on the prompts short enough
         * for its full LM head at every position, else at the last position */
        bool plain_all = n <= 16;
        float *plain = run(m, XP_PATH_PLAIN, got, n, plain_all);
        float *fast = run(m, XP_PATH_FAST, got, n, true);
        float *plain_last = plain + (plain_all ? n - 1 : 0) * V;
        cJSON *positions = cJSON_GetObjectItem(p, "positions");
        for (size_t i = 0; i < n; i++) {
            cJSON *pos = cJSON_GetArrayItem(positions, (int)i);
            cJSON *exact = cJSON_GetObjectItem(pos, "exact_top"), *e;
            cJSON_ArrayForEach(e, exact)
            {
                int id = cJSON_GetArrayItem(e, 0)->valueint;
                double want = cJSON_GetArrayItem(e, 1)->valuedouble;
                const float *prow = plain_all ? plain + i * V : i + 1 == n ? plain_last : NULL;
                double dp = prow ? fabs(prow[id] - want) : 0;
                double df = fabs(fast[i * V + (size_t)id] - want);
                worst_plain = fmax(worst_plain, dp);
                worst_fast = fmax(worst_fast, df);
                cr_assert(dp <= 1e-3, "%s prompt %d pos %zu id %d: plain off by %f", name, k, i,
                          id, dp);
                cr_assert(df <= 0.15, "%s prompt %d pos %zu id %d: fast %f exact %f", name, k, i,
                          id, (double)fast[i * V + (size_t)id], want);
            }
            /* the fast path's top-1 is exact's wherever exact's top-2 margin exceeds 0.2 */
            double m1 = cJSON_GetArrayItem(cJSON_GetArrayItem(exact, 0), 1)->valuedouble;
            double m2 = cJSON_GetArrayItem(cJSON_GetArrayItem(exact, 1), 1)->valuedouble;
            if (m1 - m2 > 0.2) {
                const float *row = fast + i * V;
                size_t best = 0;
                for (size_t v = 1; v < V; v++)
                    best = row[v] > row[best] ? v : best;
                cr_assert_eq((int)best, cJSON_GetArrayItem(cJSON_GetArrayItem(exact, 0), 0)->valueint,
                             "%s prompt %d pos %zu: fast top-1", name, k, i);
                margins_checked++;
            }
        }
        /* the whole last row against exact and against llama.cpp */
        char f32[4096];
        snprintf(f32, sizeof f32, "%s/golden/%s.p%d.exact.f32", shared, name, k);
        float *ex = (float *)xp_test_slurp(f32);
        snprintf(f32, sizeof f32, "%s/golden/%s.p%d.llama.f32", shared, name, k);
        float *ll = (float *)xp_test_slurp(f32);
        cr_assert(ex && ll);
        for (size_t v = 0; v < V; v++) {
            double dp = fabs(plain_last[v] - ex[v]);
            double df = fabs(fast[(n - 1) * V + v] - ex[v]);
            double dl = fabs(fast[(n - 1) * V + v] - ll[v]);
            worst_plain = fmax(worst_plain, dp);
            worst_fast = fmax(worst_fast, df);
            worst_llama = fmax(worst_llama, dl);
            cr_assert(dp <= 1e-3 && df <= 0.15, "%s prompt %d last row id %zu", name, k, v);
            cr_assert(fabs(ll[v] - ex[v]) <= 0.15 && dl <= 0.3, "%s prompt %d llama id %zu", name,
                      k, v);
        }
        free(ex), free(ll), free(plain), free(fast), free(got);
        k++;
    }
    cr_expect_eq(k, 7, "golden prompts");
    cr_log_info("%s: %d prompts, max |plain-exact| %.2e, max |fast-exact| %.3f, max "
                "|fast-llama.cpp| %.3f, %d top-1 margins checked", name, k, worst_plain,
                worst_fast, worst_llama, margins_checked);
    cJSON_Delete(j);
    xp_model_close(m);
}

Test(golden, tiny_tied, .timeout = 300) { check_golden("tiny-tied"); }
Test(golden, small_untied_head_dim_not_embd_over_heads, .timeout = 300)
{
    check_golden("small-untied");
}

/* ---- kernels ------------------------------------------------------------------------- */

/* Every kernel computes the same bits as the portable one, on random weights and
 * activations, for token counts on both sides of the tiling thresholds, one to three
 * blocks per row, and row ranges with ragged ends (one of two rows, one empty). */
Test(kernels, all_kernels_are_bit_identical_to_portable)
{
    xp_rng r;
    xp_rng_seed(&r, 99);
    const char *const *names = xp_kernels_available();
    const int64_t rows = 77, cuts[] = {0, 33, 35, 35, rows};
    size_t counts[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 15, 16, 17, 24, 33, 40, 49, 70, 100};
    int kernels_checked = 0;
    for (int64_t K = 128; K <= 384; K += 128) {
        size_t row_bytes = (size_t)(K / 128) * XP_Q1_0_BYTES;
        uint8_t *data = malloc((size_t)rows * row_bytes); /* no slack after the last row */
        for (size_t i = 0; i < (size_t)rows * row_bytes; i++)
            data[i] = (uint8_t)xp_rng_u64(&r);
        for (int64_t b = 0; b < rows * (K / 128); b++) { /* sane fp16 scales, some subnormal */
            uint16_t d = xp_f32_to_fp16((xp_rng_f32(&r) + 0.01f) * (b % 7 ? 0.1f : 1e-6f));
            memcpy(data + b * XP_Q1_0_BYTES, &d, 2);
        }
        xp_weight w = {"w", XP_TYPE_Q1_0, K, rows, row_bytes, data};
        for (size_t c = 0; c < sizeof counts / sizeof counts[0]; c++) {
            size_t T = counts[c];
            float *x = malloc(T * (size_t)K * sizeof *x);
            for (size_t i = 0; i < T * (size_t)K; i++)
                x[i] = (xp_rng_f32(&r) - 0.5f) * (i % 128 == 5 ? 50.0f : 2.0f);
            float *ref = calloc(T * (size_t)rows, sizeof *ref);
            xp_qact qa = {0};
            cr_assert_eq(xp_qact_quantize(&qa, &xp_kernels_portable, x, T, K), XP_OK);
            xp_kernels_portable.matmul(&w, &qa, ref, (size_t)rows, 0, rows);
            for (const char *const *n = names; *n; n++) {
                const xp_kernels *k = xp_kernels_find(*n);
                cr_assert(k);
                if (k->prepare)
                    cr_assert_eq(k->prepare(&qa), XP_OK);
                float *y = calloc(T * (size_t)rows, sizeof *y);
                for (size_t i = 0; i + 1 < sizeof cuts / sizeof cuts[0]; i++)
                    k->matmul(&w, &qa, y, (size_t)rows, cuts[i], cuts[i + 1]);
                cr_assert(memcmp(y, ref, T * (size_t)rows * sizeof *y) == 0,
                          "kernel %s differs from portable at T=%zu, K=%lld", *n, T,
                          (long long)K);
                free(y);
                kernels_checked++;
            }
            /* and the arithmetic is the documented one, from first principles */
            for (size_t t = 0; t < T; t++)
                for (int64_t row = 0; row < rows; row++) {
                    float acc = 0;
                    for (int64_t b = 0; b < K / 128; b++) {
                        const uint8_t *blk = data + (size_t)row * row_bytes + (size_t)b * 18;
                        int32_t dot = 0;
                        for (int j = 0; j < 128; j++)
                            dot += (xp_q1_0_weight(blk, j) > 0 ? 1 : -1) *
                                   qa.q[t * (size_t)K + (size_t)b * 128 + (size_t)j];
                        float d = fabsf(xp_q1_0_weight(blk, 0));
                        acc = fmaf(d * qa.s[t * (size_t)(K / 128) + (size_t)b], (float)dot, acc);
                    }
                    cr_assert(acc == ref[t * (size_t)rows + (size_t)row], "T=%zu row %lld", T,
                              (long long)row);
                }
            xp_qact_free(&qa);
            free(x), free(ref);
        }
        free(data);
    }
    cr_log_info("%d kernel runs bit-identical to the portable kernel", kernels_checked);
}

/* The largest sums a block can have (every bit set or none, every activation +-127)
 * fit every kernel's narrow accumulators: each gives the exact 2m - sum = +-2 * 128 * 127
 * per block, for decode and tiled token counts alike. */
Test(kernels, the_extreme_blocks_do_not_overflow)
{
    enum { K = 256, ROWS = 8 };
    size_t row_bytes = 2 * XP_Q1_0_BYTES;
    uint8_t data[ROWS * 2 * XP_Q1_0_BYTES];
    for (int b = 0; b < ROWS * 2; b++) { /* rows 0-3 all bits set, 4-7 none; d = 1 */
        uint16_t d = xp_f32_to_fp16(1.0f);
        memcpy(data + b * XP_Q1_0_BYTES, &d, 2);
        memset(data + b * XP_Q1_0_BYTES + 2, b < 8 ? 0xFF : 0x00, 16);
    }
    xp_weight w = {"w", XP_TYPE_Q1_0, K, ROWS, row_bytes, data};
    size_t counts[] = {1, 3, 20};
    for (size_t c = 0; c < sizeof counts / sizeof counts[0]; c++) {
        size_t T = counts[c];
        float *x = malloc(T * K * sizeof *x), *y = malloc(T * ROWS * sizeof *y);
        for (size_t i = 0; i < T * K; i++) /* token t all +1 or all -1: q = +-127, s = 1/127 */
            x[i] = (i / K) % 2 ? -1.0f : 1.0f;
        for (const char *const *n = xp_kernels_available(); *n; n++) {
            const xp_kernels *k = xp_kernels_find(*n);
            xp_qact qa = {0};
            cr_assert_eq(xp_qact_quantize(&qa, k, x, T, K), XP_OK);
            k->matmul(&w, &qa, y, ROWS, 0, ROWS);
            for (size_t t = 0; t < T; t++)
                for (int r = 0; r < ROWS; r++) {
                    float iv = (float)((r < 4 ? 1 : -1) * (t % 2 ? -1 : 1) * 128 * 127);
                    float want = fmaf(qa.s[t * 2 + 1], iv, fmaf(qa.s[t * 2], iv, 0.0f));
                    cr_assert(y[t * ROWS + (size_t)r] == want,
                              "kernel %s, T=%zu, token %zu row %d: %g", *n, T, t, r,
                              y[t * ROWS + (size_t)r]);
                }
            xp_qact_free(&qa);
        }
        free(x), free(y);
    }
}

/* Every kernel's quantiser gives the portable one's bytes, on random blocks and on the
 * awkward ones: all zero, ties at .5, a NaN, an infinity, subnormal maxima (whose
 * 127 / max is infinite), and a block whose max is repeated with both signs. */
Test(kernels, quantisers_are_bit_identical_to_portable)
{
    xp_rng r;
    xp_rng_seed(&r, 7);
    enum { NB = 12, K = NB * 128 };
    float *x = malloc(2 * K * sizeof *x);
    for (size_t i = 0; i < 2 * K; i++)
        x[i] = (xp_rng_f32(&r) - 0.5f) * (i % 128 == 3 ? 80.0f : 3.0f);
    memset(x + 128, 0, 128 * sizeof *x);                        /* block 1: zeros */
    for (int j = 0; j < 128; j++)                               /* block 2: ties */
        x[256 + j] = (float)(j - 64) * 0.5f;
    x[256 + 7] = 127.0f;
    x[384 + 9] = NAN;                                           /* block 3 */
    x[512 + 1] = -INFINITY;                                     /* block 4 */
    for (int j = 0; j < 128; j++)                               /* block 5: subnormal */
        x[640 + j] = (float)(j % 5) * 1e-41f;
    x[768 + 4] = 100.0f, x[768 + 90] = -100.0f;                 /* block 6 */
    x[896] = -0.0f;
    for (int j = 0; j < 128; j++)                               /* block 8: all -0 */
        x[1024 + j] = -0.0f;
    x[1152] = INFINITY;                                         /* block 9: inf first */
    for (int j = 0; j < 128; j++)                               /* block 10: tiny normals, */
        x[1280 + j] = (float)(j % 3) * 1e-37f;                  /* 127 / max overflows */
    xp_qact ref = {0};
    cr_assert_eq(xp_qact_quantize(&ref, &xp_kernels_portable, x, 2, K), XP_OK);
    int checked = 0;
    for (const char *const *n = xp_kernels_available(); *n; n++) {
        xp_qact qa = {0};
        cr_assert_eq(xp_qact_quantize(&qa, xp_kernels_find(*n), x, 2, K), XP_OK);
        cr_assert(memcmp(qa.q, ref.q, 2 * K) == 0, "kernel %s: q differs", *n);
        cr_assert(memcmp(qa.s, ref.s, 2 * NB * sizeof *qa.s) == 0, "kernel %s: s differs", *n);
        cr_assert(memcmp(qa.sum, ref.sum, 2 * NB * sizeof *qa.sum) == 0, "kernel %s: sum", *n);
        xp_qact_free(&qa);
        checked++;
    }
    /* the documented rule on the awkward blocks */
    for (int j = 0; j < 128; j++)
        cr_expect_eq(ref.q[128 + j], 0);
    cr_expect_eq(ref.q[256 + 1], -32); /* -31.5 and -30.5: ties, to even */
    cr_expect_eq(ref.q[256 + 3], -30);
    cr_expect_eq(ref.q[384 + 9], 0);   /* NaN */
    cr_expect_eq(ref.q[768 + 90], -127);
    cr_log_info("%d quantisers bit-identical to the portable one", checked);
    xp_qact_free(&ref);
    free(x);
}

/* The run-time choice sees what the CPU has: where the test run names the kernels it
 * expects (XP_KERNELS, best first: the emulated CPUs of `make test-aarch64`, with and
 * without dotprod), the CPU offers exactly those, and the best one is chosen, or the one
 * XORPATCH_KERNEL names. */
Test(kernels, the_cpu_offers_the_kernels_the_run_expects)
{
    const char *want = getenv("XP_KERNELS");
    if (!want || !*want)
        cr_skip_test("skipped: XP_KERNELS does not name the kernels this CPU should offer");
    char got[256] = "";
    for (const char *const *n = xp_kernels_available(); *n; n++)
        snprintf(got + strlen(got), sizeof got - strlen(got), "%s%s", *got ? " " : "", *n);
    cr_assert_str_eq(got, want);
    const char *named = getenv("XORPATCH_KERNEL");
    const xp_kernels *k = named && *named ? xp_kernels_find(named) : NULL;
    cr_expect_str_eq(xp_kernels_best()->name, k ? k->name : xp_kernels_available()[0]);
}

/* ---- determinism ------------------------------------------------------------------- */

Test(determinism, batch_composition_threads_and_kernels_do_not_change_a_bit, .timeout = 120)
{
    xp_model *m = random_model("small", small_shape(), 5);
    size_t V = 1000;
    xp_rng r;
    xp_rng_seed(&r, 1);
    size_t lens[4] = {19, 3, 33, 8};
    int32_t *tok[4];
    for (int i = 0; i < 4; i++)
        tok[i] = random_tokens(&r, lens[i], V);
    /* sequence 0 alone, all positions, 1 thread, portable kernel: the reference */
    xp_err err = {0};
    cr_assert_eq(xp_model_set_kernel(m, "portable", &err), XP_OK);
    omp_set_num_threads(1);
    float *alone = run(m, XP_PATH_FAST, tok[0], lens[0], true);
    const char *const *names = xp_kernels_available();
    int threads[] = {1, 2, 7};
    for (const char *const *k = names; *k; k++)
        for (int ti = 0; ti < 3; ti++) {
            cr_assert_eq(xp_model_set_kernel(m, *k, &err), XP_OK);
            omp_set_num_threads(threads[ti]);
            float *again = run(m, XP_PATH_FAST, tok[0], lens[0], true);
            cr_assert(memcmp(again, alone, lens[0] * V * sizeof(float)) == 0,
                      "kernel %s, %d threads: sequence alone differs", *k, threads[ti]);
            free(again);
            /* inside a batch, at each place in it, beside sequences of other lengths */
            for (int place = 0; place < 3; place++) {
                xp_seq seqs[4];
                uint8_t *want[4];
                size_t n_out = 0, before = 0;
                for (int i = 0, j = 1; i < 4; i++) {
                    int which = i == place ? 0 : j++;
                    want[i] = calloc(lens[which], 1);
                    memset(want[i], which == 0, lens[which]);
                    want[i][lens[which] - 1] = 1;
                    seqs[i] = (xp_seq){NULL, tok[which], lens[which], want[i]};
                }
                n_out = xp_forward_n_logits(seqs, 4);
                float *out = malloc(n_out * V * sizeof *out);
                cr_assert_eq(xp_forward(m, XP_PATH_FAST, seqs, 4, out, &err), XP_OK, "%s",
                             err.msg);
                for (int i = 0; i < place; i++)
                    before += 1;
                cr_assert(memcmp(out + before * V, alone, lens[0] * V * sizeof(float)) == 0,
                          "kernel %s, %d threads, place %d: batched sequence differs", *k,
                          threads[ti], place);
                free(out);
                for (int i = 0; i < 4; i++)
                    free(want[i]);
            }
        }
    omp_set_num_threads(2);
    for (int i = 0; i < 4; i++)
        free(tok[i]);
    free(alone);
    xp_model_close(m);
}

/* ---- fast against plain -------------------------------------------------------------- */

/* The fast path quantises activations to int8 per 128-block, so its logits differ from
 * the plain path's by a few per cent of the logit scale on random models (whose errors
 * compound through layers with no structure to damp them). Stated tolerance: max
 * |fast - plain| <= 0.04 * (max |plain logit| + 1), and the same argmax wherever the
 * plain top-2 margin exceeds 0.3. */
Test(fast_vs_plain, within_tolerance_across_shapes, .timeout = 300)
{
    xp_shape shapes[] = {
        small_shape(),
        {3, 256, 512, 2, 1, 128, 700, true, 512, 1e6f, 1e-6f},   /* MQA, tied */
        {2, 384, 256, 6, 6, 64, 500, false, 512, 1e4f, 1e-5f},   /* MHA, head_dim 64 */
        {1, 128, 128, 8, 2, 32, 300, true, 512, 1e6f, 1e-6f},    /* head_dim 32 */
    };
    const char *tags[] = {"small", "mqa", "mha", "hd32"};
    xp_rng r;
    xp_rng_seed(&r, 3);
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        xp_model *m = random_model(tags[i], shapes[i], 11 + i);
        size_t V = shapes[i].n_vocab, n = 12 + i * 7;
        int32_t *tok = random_tokens(&r, n, V);
        float *plain = run(m, XP_PATH_PLAIN, tok, n, true);
        float *fast = run(m, XP_PATH_FAST, tok, n, true);
        double worst = 0, scale = 0;
        for (size_t j = 0; j < n * V; j++) {
            worst = fmax(worst, fabs(fast[j] - plain[j]));
            scale = fmax(scale, fabs(plain[j]));
        }
        cr_expect(worst <= 0.04 * (scale + 1), "%s: max |fast-plain| %f, max |logit| %f", tags[i],
                  worst, scale);
        for (size_t p = 0; p < n; p++) {
            const float *a = plain + p * V, *b = fast + p * V;
            size_t b1 = 0, b2 = 1, fb = 0;
            if (a[b2] > a[b1])
                b1 = 1, b2 = 0;
            for (size_t v = 2; v < V; v++)
                if (a[v] > a[b1])
                    b2 = b1, b1 = v;
                else if (a[v] > a[b2])
                    b2 = v;
            for (size_t v = 1; v < V; v++)
                fb = b[v] > b[fb] ? v : fb;
            if (a[b1] - a[b2] > 0.3f)
                cr_expect_eq(fb, b1, "%s position %zu: argmax", tags[i], p);
        }
        cr_log_info("%s: max |fast - plain| %.4f with max |logit| %.2f", tags[i], worst, scale);
        free(tok), free(plain), free(fast);
        xp_model_close(m);
    }
}

/* A model whose matrices are stored as F32 (the same values: a Q1_0 weight is +-d,
 * exact in float) takes the fast path's float products, fused MLP step included, and
 * gives the plain path's logits up to the order of float sums: every matrix of the
 * small random model is written out as F32 and both paths run 1 and 13 tokens. */
Test(fast_vs_plain, float_matrices_take_the_float_products)
{
    char src[512], dst[600];
    xp_model_close(random_model("small", small_shape(), 17));
    snprintf(src, sizeof src, "%s/fwd-small-17.gguf", xp_test_env("XP_TMP", "/tmp"));
    snprintf(dst, sizeof dst, "%s/fwd-small-17-f32.gguf", xp_test_env("XP_TMP", "/tmp"));
    xp_gguf *g;
    xp_err err = {0};
    cr_assert_eq(xp_gguf_open(&g, src, &err), XP_OK, "%s", err.msg);
    xp_gguf_writer *w = xp_gguf_writer_new();
    int rc = xp_gguf_writer_set_version(w, g->version);
    for (size_t i = 0; i < g->n_kv && !rc; i++)
        rc = xp_gguf_writer_set(w, g->kv[i].key, &g->kv[i].value, &err);
    float **rows = calloc(g->n_tensors, sizeof *rows);
    int converted = 0;
    for (size_t i = 0; i < g->n_tensors && !rc; i++) {
        const xp_gguf_tensor *t = &g->tensors[i];
        const void *data = t->data;
        uint32_t type = t->type;
        if (t->type == XP_TYPE_Q1_0) {
            uint64_t row_bytes = xp_tensor_row_bytes(t->type, t->ne[0]);
            rows[i] = malloc((size_t)(t->ne[0] * t->ne[1]) * sizeof **rows);
            for (int64_t r = 0; r < t->ne[1]; r++)
                xp_q1_0_dequant_row(t->data + (uint64_t)r * row_bytes, t->ne[0],
                                    rows[i] + r * t->ne[0]);
            data = rows[i], type = XP_TYPE_F32;
            converted++;
        }
        rc = xp_gguf_writer_add_tensor(w, t->name, t->n_dims, t->ne, type, data, NULL, NULL,
                                       &err);
    }
    cr_assert_eq(rc, XP_OK, "%s", err.msg);
    cr_assert_eq(xp_gguf_writer_write(w, dst, &err), XP_OK, "%s", err.msg);
    cr_assert_geq(converted, 2 * 7 + 1, "every matrix of both layers and the embedding");
    xp_gguf_writer_free(w);
    for (size_t i = 0; i < g->n_tensors; i++)
        free(rows[i]);
    free(rows);
    xp_gguf_close(g);
    xp_model *m = open_model(dst);
    xp_rng r;
    xp_rng_seed(&r, 4);
    for (size_t n = 1; n <= 13; n += 12) {
        int32_t *tok = random_tokens(&r, n, 1000);
        float *plain = run(m, XP_PATH_PLAIN, tok, n, true);
        float *fast = run(m, XP_PATH_FAST, tok, n, true);
        double worst = 0, scale = 0;
        for (size_t j = 0; j < n * 1000; j++) {
            worst = fmax(worst, fabs(fast[j] - plain[j]));
            scale = fmax(scale, fabs(plain[j]));
        }
        cr_expect(worst <= 1e-4 * (scale + 1), "%zu tokens: max |fast-plain| %g, max |logit| %g",
                  n, worst, scale);
        cr_log_info("float matrices, %zu tokens: max |fast - plain| %.3g with max |logit| %.2f",
                    n, worst, scale);
        free(tok), free(plain), free(fast);
    }
    xp_model_close(m);
}

/* ---- KV cache --------------------------------------------------------------------- */

Test(kv_cache, prefill_then_decode_equals_one_pass_bit_for_bit)
{
    xp_model *m = random_model("small", small_shape(), 5);
    size_t V = 1000, n = 20, split = 13;
    xp_rng r;
    xp_rng_seed(&r, 8);
    int32_t *tok = random_tokens(&r, n, V);
    for (int path = 0; path < 2; path++) {
        float *whole = run(m, (xp_path)path, tok, n, true);
        xp_kv *kv;
        xp_err err = {0};
        cr_assert_eq(xp_kv_new(&kv, m, n, &err), XP_OK);
        float *step = malloc(V * sizeof *step);
        xp_seq s = {kv, tok, split, NULL};
        cr_assert_eq(xp_forward(m, (xp_path)path, &s, 1, step, &err), XP_OK, "%s", err.msg);
        cr_assert(memcmp(step, whole + (split - 1) * V, V * sizeof *step) == 0,
                  "path %d: prefill's last logits", path);
        for (size_t i = split; i < n; i++) {
            s = (xp_seq){kv, tok + i, 1, NULL};
            cr_assert_eq(xp_forward(m, (xp_path)path, &s, 1, step, &err), XP_OK);
            cr_assert(memcmp(step, whole + i * V, V * sizeof *step) == 0,
                      "path %d: decoded position %zu", path, i);
        }
        cr_expect_eq(xp_kv_len(kv), n);
        /* a full cache refuses another token */
        s = (xp_seq){kv, tok, 1, NULL};
        cr_expect_eq(xp_forward(m, (xp_path)path, &s, 1, step, &err), XP_EINVAL);
        cr_expect(strstr(err.msg, "exceed the cache"), "%s", err.msg);
        /* truncating rewinds: the same token again gives the same logits */
        xp_kv_truncate(kv, n - 1);
        s = (xp_seq){kv, tok + n - 1, 1, NULL};
        cr_assert_eq(xp_forward(m, (xp_path)path, &s, 1, step, &err), XP_OK);
        cr_expect(memcmp(step, whole + (n - 1) * V, V * sizeof *step) == 0);
        free(step), free(whole);
        xp_kv_free(kv);
    }
    free(tok);
    xp_model_close(m);
}

/* ---- refusals -------------------------------------------------------------------- */

Test(forward, bad_batches_are_refused_with_a_reason)
{
    xp_model *m = random_model("small", small_shape(), 5);
    xp_err err = {0};
    float out[1000];
    int32_t bad[] = {1, 1000};
    xp_seq s = {NULL, bad, 2, NULL};
    cr_expect_eq(xp_forward(m, XP_PATH_FAST, &s, 1, out, &err), XP_EINVAL);
    cr_expect(strstr(err.msg, "token 1: id 1000 is not in the vocabulary [0, 1000)"), "%s",
              err.msg);
    int32_t *longp = calloc(600, sizeof *longp);
    s = (xp_seq){NULL, longp, 600, NULL};
    cr_expect_eq(xp_forward(m, XP_PATH_FAST, &s, 1, out, &err), XP_EINVAL);
    cr_expect(strstr(err.msg, "exceed the model's context of 512"), "%s", err.msg);
    xp_kv *kv;
    cr_expect_eq(xp_kv_new(&kv, m, 513, &err), XP_EINVAL);
    free(longp);
    xp_model_close(m);
}

/* A copy of a model file with one change made by the writer. */
typedef void (*edit_fn)(xp_gguf_writer *w);

static int open_edited(edit_fn edit, xp_err *err)
{
    char src[512], dst[512];
    xp_test_tiny_model(src, sizeof src);
    xp_test_tmp_path(dst, sizeof dst, "edited.gguf");
    xp_gguf *g;
    xp_err e = {0};
    cr_assert_eq(xp_gguf_open(&g, src, &e), XP_OK);
    xp_gguf_writer *w = xp_gguf_writer_new();
    cr_assert_eq(xp_gguf_writer_copy_from(w, g, &e), XP_OK);
    edit(w);
    cr_assert_eq(xp_gguf_writer_write(w, dst, &e), XP_OK, "%s", e.msg);
    xp_gguf_writer_free(w);
    xp_gguf_close(g);
    xp_model *m = NULL;
    int rc = xp_model_open(&m, dst, err);
    xp_model_close(m);
    unlink(dst);
    return rc;
}

static void set_llama(xp_gguf_writer *w) { xp_gguf_writer_set_str(w, "general.architecture", "llama", NULL); }
static void drop_layers(xp_gguf_writer *w) { xp_gguf_writer_remove(w, "qwen3.block_count"); }
static void odd_heads(xp_gguf_writer *w) { xp_gguf_writer_set_u32(w, "qwen3.attention.head_count_kv", 3, NULL); }
static void more_layers(xp_gguf_writer *w) { xp_gguf_writer_set_u32(w, "qwen3.block_count", 5, NULL); }
static void wide_ff(xp_gguf_writer *w) { xp_gguf_writer_set_u32(w, "qwen3.feed_forward_length", 1024, NULL); }

Test(model, unsupported_files_are_refused_with_what_is_wrong)
{
    xp_err err = {0};
    cr_expect_eq(open_edited(set_llama, &err), XP_EFORMAT);
    cr_expect(strstr(err.msg, "architecture is 'llama'; xorpatch supports qwen3"), "%s", err.msg);
    cr_expect_neq(open_edited(drop_layers, &err), XP_OK);
    cr_expect(strstr(err.msg, "qwen3.block_count' is missing"), "%s", err.msg);
    cr_expect_neq(open_edited(odd_heads, &err), XP_OK);
    cr_expect(strstr(err.msg, "KV heads"), "%s", err.msg);
    cr_expect_eq(open_edited(more_layers, &err), XP_EFORMAT);
    cr_expect(strstr(err.msg, "tensor 'blk.4.attn_norm.weight' is missing"), "%s", err.msg);
    cr_expect_eq(open_edited(wide_ff, &err), XP_EFORMAT);
    cr_expect(strstr(err.msg, "tensor 'blk.0.ffn_gate.weight' has shape [256, 768] (2 dims), "
                              "expected [256, 1024]"), "%s", err.msg);
}

Test(model, binds_the_shape_and_weights_of_a_synthetic_bonsai_layout)
{
    char path[512];
    xp_test_tiny_model(path, sizeof path);
    xp_model *m = open_model(path);
    const xp_shape *s = xp_model_shape(m);
    cr_expect(s->n_layer == 4 && s->n_embd == 256 && s->head_dim == 64 && s->tied_output);
    cr_expect(xp_model_tokenizer(m) != NULL);
    const char *named = getenv("XORPATCH_KERNEL"); /* a run for one kernel names it */
    const xp_kernels *k = named && *named ? xp_kernels_find(named) : NULL;
    cr_expect_str_eq(xp_model_kernel(m), k ? k->name : xp_kernels_available()[0]);
    xp_err err = {0};
    cr_expect_eq(xp_model_set_kernel(m, "gpu", &err), XP_EINVAL);
    xp_model_close(m);
}
