/* The matrix kernels of the fast path. Activations are quantised per 128-block of each
 * token (scale s = max|x| / 127, q = round(x / s), and the block's sum of q), and every
 * kernel computes, for token t and row r, exactly
 *
 *     acc = 0; for each block b in order:
 *         m = sum of q[t][128b + j] over the bits j set in block (r, b)
 *         acc = fmaf(d[r][b] * s[t][b], (float)(2m - sum[t][b]), acc)
 *
 * (a sign weight is +d or -d, so the block's dot product is d*s*(2m - sum)). The
 * integer part is exact and the float steps happen in the same order with the same
 * roundings in every kernel, so all kernels, tilings, batch compositions and thread
 * counts give bit-identical results; the tests check it. */
#ifndef XP_KERNELS_H
#define XP_KERNELS_H
#include <stddef.h>
#include <stdint.h>

struct xp_weight;

typedef struct xp_qact {
    size_t T;       /* tokens */
    int64_t K, nb;  /* inputs per token, blocks per token (K / 128) */
    int8_t *q;      /* [T][K] */
    float *s;       /* [T][nb] */
    int32_t *sum;   /* [T][nb] */
    int8_t *packed; /* a kernel's own layout of q, made by its prepare (or NULL) */
    size_t cap_T, cap_packed;
} xp_qact;

typedef struct xp_kernels {
    const char *name;
    /* Quantises one 128-block of v into q and *sum, returning the scale, with the same
     * bits as the portable quantiser (NULL: the portable one). */
    float (*quantize_block)(const float *v, int8_t *q, int32_t *sum);
    /* Makes any layout the kernel wants from x->q; may be NULL. xp_qact_quantize calls
     * it. */
    int (*prepare)(xp_qact *x);
    /* y[t * ldy + r] for every token and r in [r0, r1) of a Q1_0 weight. */
    void (*matmul)(const struct xp_weight *w, const xp_qact *x, float *y, size_t ldy, int64_t r0,
                   int64_t r1);
} xp_kernels;

/* Quantises T rows of K floats (K a multiple of 128) into x with k's quantiser, growing
 * x's buffers, and makes k's own layout of them: x is then ready for k's matmul (and
 * the portable one's, which reads q). */
int xp_qact_quantize(xp_qact *x, const xp_kernels *k, const float *in, size_t T, int64_t K);
void xp_qact_free(xp_qact *x);

/* The packed layout of the x86 tokens-in-lanes tiles, made in x->packed from x->q: for
 * each group of tg tokens (the last padded with zeros) and block, XP_PACKED_BLOCK(tg)
 * bytes: 32 quads of 4 * tg bytes (token j's inputs 4k..4k+3 at bytes 4j..4j+3 of quad
 * k), then the tg tokens' scales (float) and sums (int32). 64-byte aligned. */
#define XP_PACKED_BLOCK(tg) ((size_t)(tg) * (32 * 4 + 4 + 4))
int xp_qact_pack(xp_qact *x, size_t tg);

const xp_kernels *xp_kernels_best(void);
const xp_kernels *xp_kernels_find(const char *name);

extern const xp_kernels xp_kernels_portable;
#if defined(__x86_64__)
extern const xp_kernels xp_kernels_avx2, xp_kernels_avx512;
#endif
#if defined(__aarch64__)
extern const xp_kernels xp_kernels_neon;
/* The SDOT kernel needs a build that targets dotprod (Apple's arm64 does) or a compiler
 * that can target it function by function: GCC, and clang from 16 on, whose NEON
 * intrinsics follow a function's target. */
#if defined(__ARM_FEATURE_DOTPROD) || !defined(__clang__) || __clang_major__ >= 16
#define XP_KERNELS_DOTPROD 1
extern const xp_kernels xp_kernels_neon_dotprod;
#endif
#endif
#endif
