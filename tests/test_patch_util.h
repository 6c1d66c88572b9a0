/* Helpers shared by the patch tests: the models they patch (a small layout-only model of
 * a custom shape, made in a second, and one bonsai-8b-shaped model of 1.1 GB, made once
 * per test run and shared between test processes), file comparison and copying, and a
 * seeded random patch maker. */
#ifndef XP_TEST_PATCH_UTIL_H
#define XP_TEST_PATCH_UTIL_H
#include <fcntl.h>
#include <omp.h>
#include <string.h>
#include <sys/file.h>

#include "core/rng.h"
#include "testutil.h"
#include "xorpatch.h"

/* A model shared by the tests of one run, written once under a lock (parallel test
 * processes wait for the first one), layout only: no tokenizer keys. */
static inline void xp_test_shared_model(char *out, size_t size, const char *stem,
                                        const xp_shape *s, uint64_t seed)
{
    snprintf(out, size, "%s/%s.gguf", xp_test_env("XP_TMP", "/tmp"), stem);
    struct stat st;
    if (stat(out, &st) == 0)
        return;
    char lock[600];
    snprintf(lock, sizeof lock, "%s.lock", out);
    int fd = open(lock, O_CREAT | O_RDWR, 0644);
    cr_assert(fd >= 0 && flock(fd, LOCK_EX) == 0, "cannot lock %s", lock);
    if (stat(out, &st) != 0) {
        /* one core: the machine is shared */
        omp_set_num_threads(1);
        xp_err err = {0};
        cr_assert_eq(xp_synth_write(s, seed, NULL, out, NULL, NULL, &err), XP_OK, "%s", err.msg);
    }
    close(fd);
}

/* 1 layer, n_embd 128, n_ff 256, 2/1 heads of 64, vocabulary 256, untied: every Q1_0
 * matrix of a Qwen3 model in about 100 KB. */
static inline xp_shape xp_test_small_shape(void)
{
    xp_shape s = {1, 128, 256, 2, 1, 64, 256, false, 4096, 1e6f, 1e-6f};
    return s;
}

/* 2 layers, n_embd 256, n_ff 384 (3 blocks per row of ffn_down), 4/2 heads of 64,
 * vocabulary 512: several blocks per row everywhere, for the patch-algebra tests. */
static inline xp_shape xp_test_medium_shape(void)
{
    xp_shape s = {2, 256, 384, 4, 2, 64, 512, false, 4096, 1e6f, 1e-6f};
    return s;
}

static inline void xp_test_small_model(char *out, size_t size)
{
    xp_shape s = xp_test_small_shape();
    xp_test_shared_model(out, size, "patch-small", &s, 11);
}

static inline void xp_test_medium_model(char *out, size_t size)
{
    xp_shape s = xp_test_medium_shape();
    xp_test_shared_model(out, size, "patch-medium", &s, 12);
}

static inline void xp_test_8b_model(char *out, size_t size)
{
    xp_shape s;
    cr_assert_eq(xp_shape_preset("bonsai-8b", &s, NULL), XP_OK);
    xp_test_shared_model(out, size, "patch-bonsai-8b", &s, 8);
}

static inline void xp_test_copy(const char *from, const char *to)
{
    FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
    cr_assert(in && out, "cannot copy %s to %s", from, to);
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0)
        cr_assert_eq(fwrite(buf, 1, n, out), n);
    fclose(in);
    cr_assert_eq(fclose(out), 0);
}

/* 1 when the two files have the same bytes. */
static inline int xp_test_same_file(const char *a, const char *b)
{
    FILE *x = fopen(a, "rb"), *y = fopen(b, "rb");
    int same = x && y;
    char p[65536], q[65536];
    while (same) {
        size_t n = fread(p, 1, sizeof p, x), m = fread(q, 1, sizeof q, y);
        same = n == m && memcmp(p, q, n) == 0;
        if (!n)
            break;
    }
    if (x)
        fclose(x);
    if (y)
        fclose(y);
    return same;
}

static inline xp_gguf *xp_test_open(const char *path)
{
    xp_gguf *g;
    xp_err err = {0};
    cr_assert_eq(xp_gguf_open(&g, path, &err), XP_OK, "%s", err.msg);
    return g;
}

/* A random patch on the Q1_0 matrices of g: n flips of every kind (rows, blocks, scale
 * bits, masks, blocks named by row and group), with repeats and row/block overlaps. */
static inline xp_patch *xp_test_random_patch(const xp_gguf *g, uint64_t seed, int n)
{
    xp_rng r;
    xp_rng_seed(&r, seed);
    xp_patch *p;
    xp_err err = {0};
    cr_assert_eq(xp_patch_new(&p, &err), XP_OK);
    p->name = strdup("random");
    const xp_gguf_tensor *mats[64];
    size_t nm = 0;
    for (size_t i = 0; i < g->n_tensors && nm < 64; i++)
        if (g->tensors[i].type == XP_TYPE_Q1_0)
            mats[nm++] = &g->tensors[i];
    for (int i = 0; i < n; i++) {
        const xp_gguf_tensor *t = mats[xp_rng_below(&r, nm)];
        int64_t per = t->ne[0] / 128, rows = t->ne[1];
        xp_flip f = {.kind = (uint8_t)xp_rng_below(&r, 5)};
        f.index = f.kind == XP_FLIP_ROW || f.kind == XP_FLIP_ROW_GROUP
                      ? (int64_t)xp_rng_below(&r, (uint64_t)rows)
                      : (int64_t)xp_rng_below(&r, (uint64_t)(rows * per));
        f.bit = (uint8_t)xp_rng_below(&r, 16);
        f.group = (uint32_t)xp_rng_below(&r, (uint64_t)per);
        for (int k = 0; k < 16; k++)
            f.mask[k] = (uint8_t)xp_rng_u64(&r);
        cr_assert_eq(xp_patch_add(p, t->name, &f, &err), XP_OK, "%s", err.msg);
        /* now and then the same flip twice (cancels), or a block inside a flipped row */
        if (xp_rng_below(&r, 8) == 0)
            cr_assert_eq(xp_patch_add(p, t->name, &f, &err), XP_OK, "%s", err.msg);
        if (f.kind == XP_FLIP_ROW && xp_rng_below(&r, 3) == 0) {
            xp_flip b = {.kind = XP_FLIP_BLOCK, .index = f.index * per + (int64_t)f.group};
            cr_assert_eq(xp_patch_add(p, t->name, &b, &err), XP_OK, "%s", err.msg);
        }
    }
    return p;
}
#endif
