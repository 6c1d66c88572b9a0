/* Arm NEON kernels for 1-bit x int8 products (AArch64 Advanced SIMD), two builds of one
 * tile, with the arithmetic of kernels.h:
 *  - "neon": plain Advanced SIMD, which every AArch64 CPU has. The activations a row's
 *    bits select are summed with AND and a pairwise add-accumulate into int16 lanes;
 *  - "neon-dotprod": SDOT (ARMv8.2 dotprod) sums 16 products per instruction into int32
 *    lanes. Compiled for that target function by function, so the program runs on any
 *    AArch64 CPU; kernels.c offers it only where the CPU has it.
 * A tile is 4 rows x up to 4 tokens. A block's sign bits become byte masks (0xFF where
 * the bit is set: a table lookup spreads each byte over 8 lanes and a bit test picks its
 * bit), 16 weights at a time, and each mask meets every token of the tile. With more
 * than 4 tokens, a strip of 4 rows has its masks expanded once into a buffer that every
 * group of 4 tokens reads. After a block, pairwise adds reduce the 4 rows' partial sums
 * of a token into one vector with the rows in its lanes, and each lane ends the block
 * with fmaf(d * s, (float)(2m - sum), acc) (FCVTL converts fp16 exactly, FMLA is fused).
 * The quantiser gives the portable one's bits 4 lanes at a time. */
#include "model/kernels.h"
#include "model/model.h"

#if defined(__aarch64__)
#include <arm_neon.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* the quantiser's max skips NaN as the portable comparison does, and q = 0 where v / s
 * is not finite: both need IEEE semantics */
#if defined(__FAST_MATH__) || (defined(__FINITE_MATH_ONLY__) && __FINITE_MATH_ONLY__)
#error "the kernels need IEEE semantics: build without -ffast-math"
#endif

#if defined(__ARM_FEATURE_DOTPROD)
#define DOTPROD_TARGET /* the whole build targets it (Apple's arm64 does) */
#elif defined(__clang__)
#define DOTPROD_TARGET __attribute__((target("dotprod")))
#else
#define DOTPROD_TARGET __attribute__((target("arch=armv8.2-a+dotprod")))
#endif

#define INLINE static inline __attribute__((always_inline))
#define NR 4 /* rows per tile */
#define NT 4 /* tokens per tile */
#define CHUNKS (XP_Q1_0_WEIGHTS / 16)

/* Byte k of chunk c's index is the sign byte holding weight 16c + k. */
static const uint8_t spread[CHUNKS][16] = {
    {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1},
    {2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3},
    {4, 4, 4, 4, 4, 4, 4, 4, 5, 5, 5, 5, 5, 5, 5, 5},
    {6, 6, 6, 6, 6, 6, 6, 6, 7, 7, 7, 7, 7, 7, 7, 7},
    {8, 8, 8, 8, 8, 8, 8, 8, 9, 9, 9, 9, 9, 9, 9, 9},
    {10, 10, 10, 10, 10, 10, 10, 10, 11, 11, 11, 11, 11, 11, 11, 11},
    {12, 12, 12, 12, 12, 12, 12, 12, 13, 13, 13, 13, 13, 13, 13, 13},
    {14, 14, 14, 14, 14, 14, 14, 14, 15, 15, 15, 15, 15, 15, 15, 15}};
static const uint8_t bit_of_lane[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};

/* -1 in byte k where weight 16c + k of the block whose 16 sign bytes are bits is set. */
INLINE int8x16_t chunk_mask(uint8x16_t bits, int c)
{
    uint8x16_t spread_bytes = vqtbl1q_u8(bits, vld1q_u8(spread[c]));
    return vreinterpretq_s8_u8(vtstq_u8(spread_bytes, vld1q_u8(bit_of_lane)));
}

/* The running partial sums of one (row, token) over a block. neon: 8 int16 lanes adding
 * the selected q (16 of them per lane at most, |sum| <= 2032); dotprod: 4 int32 lanes
 * adding mask * q, the negated selection. Both kept in an int32x4_t. */
INLINE int32x4_t add_plain(int32x4_t part, int8x16_t mask, int8x16_t q)
{
    int16x8_t p = vpadalq_s8(vreinterpretq_s16_s32(part), vandq_s8(mask, q));
    return vreinterpretq_s32_s16(p);
}

#if defined(XP_KERNELS_DOTPROD)
DOTPROD_TARGET static inline int32x4_t add_dot(int32x4_t part, int8x16_t mask, int8x16_t q)
{
    return vdotq_s32(part, mask, q);
}
#else
#define add_dot add_plain /* the dotprod kernel is not built: tile never takes it */
#endif

/* m of rows 0..3 in lanes 0..3, from the 4 rows' partial sums for one token. */
INLINE int32x4_t rows_m(const int32x4_t p[NR], const bool dot)
{
    if (dot)
        return vnegq_s32(vpaddq_s32(vpaddq_s32(p[0], p[1]), vpaddq_s32(p[2], p[3])));
    /* int16 pairs of lanes: at most 4 * 2032, then the final pairs widen */
    int16x8_t a = vpaddq_s16(vreinterpretq_s16_s32(p[0]), vreinterpretq_s16_s32(p[1]));
    int16x8_t b = vpaddq_s16(vreinterpretq_s16_s32(p[2]), vreinterpretq_s16_s32(p[3]));
    return vpaddlq_s16(vpaddq_s16(a, b));
}

/* Rows [r, r + NR) x tokens [t0, t0 + nt) into y[t * ldy + r]. masks: the strip's masks
 * from expand_strip, or NULL to make them from the bits as they are needed. nt, dot and
 * whether masks is NULL are constants wherever this is inlined. */
INLINE void tile(const xp_weight *w, const xp_qact *x, float *y, size_t ldy, int64_t r, size_t t0,
                 const int nt, const int8_t *masks, const bool dot)
{
    const uint8_t *row = w->data + (uint64_t)r * w->row_bytes;
    const size_t rb = w->row_bytes, K = (size_t)x->K, nb = (size_t)x->nb;
    /* the loops over the tile's tokens and rows are unrolled, so that its accumulators are
     * registers */
    float32x4_t acc[NT];
#pragma GCC unroll 4
    for (int t = 0; t < nt; t++)
        acc[t] = vdupq_n_f32(0);
    for (size_t b = 0; b < nb; b++) {
        const uint8_t *blk = row + b * XP_Q1_0_BYTES;
        int32x4_t part[NT][NR];
#pragma GCC unroll 4
        for (int t = 0; t < nt; t++)
#pragma GCC unroll 4
            for (int i = 0; i < NR; i++)
                part[t][i] = vdupq_n_s32(0);
        uint8x16_t bits[NR];
#pragma GCC unroll 4
        for (int i = 0; i < NR; i++)
            bits[i] = masks ? vdupq_n_u8(0) : vld1q_u8(blk + (size_t)i * rb + 2);
        for (int c = 0; c < CHUNKS; c++) {
            int8x16_t mask[NR];
#pragma GCC unroll 4
            for (int i = 0; i < NR; i++)
                mask[i] = masks ? vld1q_s8(masks + ((b * CHUNKS + (size_t)c) * NR + (size_t)i) * 16)
                                : chunk_mask(bits[i], c);
#pragma GCC unroll 4
            for (int t = 0; t < nt; t++) {
                int8x16_t q = vld1q_s8(x->q + (t0 + (size_t)t) * K + b * XP_Q1_0_WEIGHTS + 16 * c);
#pragma GCC unroll 4
                for (int i = 0; i < NR; i++)
                    part[t][i] =
                        dot ? add_dot(part[t][i], mask[i], q) : add_plain(part[t][i], mask[i], q);
            }
        }
        uint16_t dh[NR];
#pragma GCC unroll 4
        for (int i = 0; i < NR; i++)
            memcpy(&dh[i], blk + (size_t)i * rb, 2);
        float32x4_t d = vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(dh)));
#pragma GCC unroll 4
        for (int t = 0; t < nt; t++) {
            size_t at = (t0 + (size_t)t) * nb + b;
            int32x4_t m = rows_m(part[t], dot);
            int32x4_t iv = vsubq_s32(vaddq_s32(m, m), vdupq_n_s32(x->sum[at]));
            acc[t] = vfmaq_f32(acc[t], vmulq_n_f32(d, x->s[at]), vcvtq_f32_s32(iv));
        }
    }
#pragma GCC unroll 4
    for (int t = 0; t < nt; t++)
        vst1q_f32(y + (t0 + (size_t)t) * ldy + (size_t)r, acc[t]);
}

/* The masks of rows [r, r + NR), laid out [block][chunk][row][16 bytes]. */
static void expand_strip(const xp_weight *w, int64_t r, int64_t nb, int8_t *masks)
{
    const uint8_t *row = w->data + (uint64_t)r * w->row_bytes;
    for (int64_t b = 0; b < nb; b++)
        for (int i = 0; i < NR; i++) {
            uint8x16_t bits =
                vld1q_u8(row + (size_t)i * w->row_bytes + (size_t)b * XP_Q1_0_BYTES + 2);
            for (int c = 0; c < CHUNKS; c++)
                vst1q_s8(masks + (((size_t)b * CHUNKS + (size_t)c) * NR + (size_t)i) * 16,
                         chunk_mask(bits, c));
        }
}

/* Every token of rows [r, r + NR): one tile when they fit in it, else tiles of NT tokens
 * reading the strip's masks from masks. */
INLINE void strip(const xp_weight *w, const xp_qact *x, float *y, size_t ldy, int64_t r,
                  int8_t *masks, const bool dot)
{
    size_t T = x->T, t0 = 0;
    if (!masks) {
        switch (T) {
        case 4: tile(w, x, y, ldy, r, 0, 4, NULL, dot); break;
        case 3: tile(w, x, y, ldy, r, 0, 3, NULL, dot); break;
        case 2: tile(w, x, y, ldy, r, 0, 2, NULL, dot); break;
        case 1: tile(w, x, y, ldy, r, 0, 1, NULL, dot); break;
        }
        return;
    }
    expand_strip(w, r, x->nb, masks);
    for (; t0 + NT <= T; t0 += NT)
        tile(w, x, y, ldy, r, t0, NT, masks, dot);
    switch (T - t0) {
    case 3: tile(w, x, y, ldy, r, t0, 3, masks, dot); break;
    case 2: tile(w, x, y, ldy, r, t0, 2, masks, dot); break;
    case 1: tile(w, x, y, ldy, r, t0, 1, masks, dot); break;
    }
}

/* Strips of NR rows; the rows past the last whole strip take the portable kernel. */
INLINE void matmul(const xp_weight *w, const xp_qact *x, float *y, size_t ldy, int64_t r0,
                   int64_t r1, const bool dot)
{
    int64_t whole = r0 + (r1 - r0) / NR * NR;
    /* without the buffer (more than NT tokens, and no memory) tiles make their own masks,
     * each group of tokens again */
    int8_t *masks = x->T > NT && whole > r0 ? malloc((size_t)NR * (size_t)x->K) : NULL;
    for (int64_t r = r0; r < whole; r += NR) {
        if (masks)
            strip(w, x, y, ldy, r, masks, dot);
        else
            for (size_t t0 = 0; t0 < x->T; t0 += NT) {
                xp_qact part = *x; /* the same tokens, NT at a time */
                part.T = x->T - t0 < NT ? x->T - t0 : NT;
                part.q += t0 * (size_t)x->K;
                part.s += t0 * (size_t)x->nb;
                part.sum += t0 * (size_t)x->nb;
                strip(w, &part, y + t0 * ldy, ldy, r, NULL, dot);
            }
    }
    free(masks);
    if (whole < r1)
        xp_kernels_portable.matmul(w, x, y, ldy, whole, r1);
}

/* The portable quantiser's bits (kernels.c): the max of |v| skips NaN as its comparison
 * does, q rounds to nearest even (FCVTNS, as lrintf in the default rounding mode) and is
 * 0 wherever v / s is not finite, then clamps to +-127. */
static float quantize_block(const float *v, int8_t *q, int32_t *sum_out)
{
    float32x4_t mv = vdupq_n_f32(0);
    for (int j = 0; j < XP_Q1_0_WEIGHTS; j += 4) {
        float32x4_t a = vabsq_f32(vld1q_f32(v + j));
        mv = vbslq_f32(vcgtq_f32(a, mv), a, mv);
    }
    float lanes[4], amax = 0;
    vst1q_f32(lanes, mv);
    for (int l = 0; l < 4; l++)
        amax = lanes[l] > amax ? lanes[l] : amax;
    float inv = amax > 0 ? 127.0f / amax : 0.0f;
    const float32x4_t vinv = vdupq_n_f32(inv), inf = vdupq_n_f32(__builtin_inff());
    const int32x4_t lo = vdupq_n_s32(-127), hi = vdupq_n_s32(127);
    int32x4_t sum = vdupq_n_s32(0);
    for (int j = 0; j < XP_Q1_0_WEIGHTS; j += 16) {
        int32x4_t qi[4];
        for (int k = 0; k < 4; k++) {
            float32x4_t p = vmulq_f32(vld1q_f32(v + j + 4 * k), vinv);
            uint32x4_t finite = vcaltq_f32(p, inf);
            int32x4_t r = vandq_s32(vcvtnq_s32_f32(p), vreinterpretq_s32_u32(finite));
            qi[k] = vminq_s32(vmaxq_s32(r, lo), hi);
            sum = vaddq_s32(sum, qi[k]);
        }
        int16x8_t h0 = vcombine_s16(vmovn_s32(qi[0]), vmovn_s32(qi[1]));
        int16x8_t h1 = vcombine_s16(vmovn_s32(qi[2]), vmovn_s32(qi[3]));
        vst1q_s8(q + j, vcombine_s8(vmovn_s16(h0), vmovn_s16(h1)));
    }
    *sum_out = vaddvq_s32(sum);
    return amax / 127.0f;
}

static void matmul_neon(const xp_weight *w, const xp_qact *x, float *y, size_t ldy, int64_t r0,
                        int64_t r1)
{
    matmul(w, x, y, ldy, r0, r1, false);
}

#if defined(XP_KERNELS_DOTPROD)
DOTPROD_TARGET static void matmul_dotprod(const xp_weight *w, const xp_qact *x, float *y,
                                          size_t ldy, int64_t r0, int64_t r1)
{
    matmul(w, x, y, ldy, r0, r1, true);
}
#endif

const xp_kernels xp_kernels_neon = {"neon", quantize_block, NULL, matmul_neon};
#if defined(XP_KERNELS_DOTPROD)
const xp_kernels xp_kernels_neon_dotprod = {"neon-dotprod", quantize_block, NULL, matmul_dotprod};
#endif
#endif
