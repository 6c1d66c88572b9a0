/* AVX2 kernels for 1-bit x int8 products, compiled for that target function by function
 * so the rest of the program runs on any x86-64. Two shapes of the same arithmetic
 * (kernels.h):
 *  - under 8 tokens (decode): 8 rows in the 8 lanes. The 16 sign bytes of a row's block
 *    are loaded once into both halves of a register; a byte shuffle, a bit test and an
 *    unsigned min make the 0/1 bytes of 32 weights, PMADDUBSW of them with the
 *    activations sums the selected ones, and 8 rows' partial sums are reduced together
 *    by horizontal adds;
 *  - 8 tokens or more (prefill, probe batches): 8 tokens in the lanes. Activations are
 *    packed once per matrix input as [token group][block][quad][8 tokens][4 bytes]; a tile
 *    of 4 rows x 16 tokens expands each block's sign bits once into 0/2 byte patterns,
 *    then a broadcast pattern meets a packed vector in one PMADDUBSW (8 tokens x 4
 *    inputs), summed in int16 over the block (at most 64 * 2 * 127 per lane) and widened
 *    once per block; each packed load feeds 4 rows, each pattern 16 tokens.
 * Both end every block with fmaf(d * s, (float)(2m - sum), acc) in block order. The
 * quantiser gives the portable one's bits 8 lanes at a time. */
#include "model/kernels.h"
#include "model/model.h"

#if defined(__x86_64__)
#include <immintrin.h>
#include <stdlib.h>
#include <string.h>

/* MAXPS is not commutative where a NaN is involved, which the quantiser relies on */
#if defined(__FAST_MATH__) || (defined(__FINITE_MATH_ONLY__) && __FINITE_MATH_ONLY__)
#error "the kernels need IEEE semantics: build without -ffast-math"
#endif
#define TARGET __attribute__((target("avx2,fma,f16c")))
#define INLINE static inline __attribute__((always_inline))
#define QUADS (XP_Q1_0_WEIGHTS / 4)
#define TG 8 /* tokens per group (lanes) */
#define NG 2 /* token groups per tile */
#define NR 4 /* rows per tile */
#define TILE_MIN 8

/* Byte k is bit k % 8 of the sign byte holding weight 32c + k (shifted into place: 1 << k %
 * 8 or 0). */
TARGET INLINE __m256i chunk_bits(__m256i bits, int c)
{
    const __m256i sel = _mm256_set1_epi64x((long long)0x8040201008040201ull);
    __m256i shuf = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2,
                                    2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
    /* the upper half's bytes index the upper 128-bit lane, which holds the same bits */
    shuf = _mm256_add_epi8(shuf, _mm256_set1_epi8((char)(4 * c)));
    return _mm256_and_si256(_mm256_shuffle_epi8(bits, shuf), sel);
}

/* 0xFF in byte k where weight 32c + k's bit is set. */
TARGET INLINE __m256i chunk_mask(__m256i bits, int c)
{
    const __m256i sel = _mm256_set1_epi64x((long long)0x8040201008040201ull);
    return _mm256_cmpeq_epi8(chunk_bits(bits, c), sel);
}

/* A block's 16 sign bytes in both 128-bit lanes. */
TARGET INLINE __m256i block_bits(const uint8_t *blk)
{
    return _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(blk + 2)));
}

/* Lane i = sum of v[i]'s 8 lanes. */
TARGET INLINE __m256i reduce8(const __m256i v[8])
{
    __m256i h01 = _mm256_hadd_epi32(v[0], v[1]), h23 = _mm256_hadd_epi32(v[2], v[3]);
    __m256i h45 = _mm256_hadd_epi32(v[4], v[5]), h67 = _mm256_hadd_epi32(v[6], v[7]);
    __m256i a = _mm256_hadd_epi32(h01, h23), b = _mm256_hadd_epi32(h45, h67);
    return _mm256_add_epi32(_mm256_permute2x128_si256(a, b, 0x20),
                            _mm256_permute2x128_si256(a, b, 0x31));
}

/* The portable quantiser's bits (kernels.c), 8 lanes at a time: the max of |v| skips NaN
 * as its comparison does (MAXPS(a, b) is a > b ? a : b), q rounds to nearest even
 * (CVTPS2DQ in the default rounding mode, as lrintf) and is 0 wherever v / s is not
 * finite, then clamps to +-127. */
TARGET static float quantize_block(const float *v, int8_t *q, int32_t *sum_out)
{
    const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    const __m256 inf = _mm256_set1_ps(__builtin_inff());
    __m256 m = _mm256_setzero_ps();
    for (int j = 0; j < XP_Q1_0_WEIGHTS; j += 8)
        m = _mm256_max_ps(_mm256_and_ps(_mm256_loadu_ps(v + j), abs_mask), m);
    float lanes[8], amax = 0;
    _mm256_storeu_ps(lanes, m);
    for (int l = 0; l < 8; l++)
        amax = lanes[l] > amax ? lanes[l] : amax;
    float inv = amax > 0 ? 127.0f / amax : 0.0f;
    const __m256i lo = _mm256_set1_epi32(-127), hi = _mm256_set1_epi32(127);
    /* PACKSS works within 128-bit lanes: this puts the four packed quarters in order */
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    __m256i sum = _mm256_setzero_si256();
    for (int j = 0; j < XP_Q1_0_WEIGHTS; j += 32) {
        __m256i qi[4];
        for (int k = 0; k < 4; k++) {
            __m256 p = _mm256_mul_ps(_mm256_loadu_ps(v + j + 8 * k), _mm256_set1_ps(inv));
            __m256 finite = _mm256_cmp_ps(_mm256_and_ps(p, abs_mask), inf, _CMP_LT_OQ);
            __m256i r = _mm256_and_si256(_mm256_cvtps_epi32(p), _mm256_castps_si256(finite));
            qi[k] = _mm256_min_epi32(_mm256_max_epi32(r, lo), hi);
            sum = _mm256_add_epi32(sum, qi[k]);
        }
        __m256i w01 = _mm256_packs_epi32(qi[0], qi[1]), w23 = _mm256_packs_epi32(qi[2], qi[3]);
        __m256i b = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(w01, w23), order);
        _mm256_storeu_si256((__m256i *)(q + j), b);
    }
    __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(sum), _mm256_extracti128_si256(sum, 1));
    s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4e));
    s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xb1));
    *sum_out = _mm_cvtsi128_si32(s4);
    return amax / 127.0f;
}

/* 8 rows [r0, r0 + 8), every token, rows in lanes. */
TARGET static void rows8(const xp_weight *w, const xp_qact *x, float *y, size_t ldy, int64_t r0)
{
    const __m256i ones8 = _mm256_set1_epi8(1), ones16 = _mm256_set1_epi16(1);
    const uint8_t *base = w->data + (uint64_t)r0 * w->row_bytes;
    const size_t rb = w->row_bytes;
    for (size_t t = 0; t < x->T; t++) {
        const int8_t *q = x->q + t * (size_t)x->K;
        const float *s = x->s + t * (size_t)x->nb;
        const int32_t *sum = x->sum + t * (size_t)x->nb;
        __m256 acc = _mm256_setzero_ps();
        for (int64_t b = 0; b < x->nb; b++) {
            __m256i xs[4];
            for (int c = 0; c < 4; c++)
                xs[c] = _mm256_loadu_si256((const __m256i *)(q + b * XP_Q1_0_WEIGHTS + 32 * c));
            const uint8_t *col = base + b * XP_Q1_0_BYTES;
            __m256i part[8];
            uint16_t dh[8];
#pragma GCC unroll 8
            for (int i = 0; i < 8; i++) {
                const uint8_t *blk = col + (size_t)i * rb;
                /* eight strided streams the hardware prefetcher may not follow: fetch the
                 * same block of the next eight rows */
                _mm_prefetch((const char *)blk + 8 * rb, _MM_HINT_T0);
                __m256i bits = block_bits(blk);
                memcpy(&dh[i], blk, 2);
                __m256i p16 = _mm256_setzero_si256();
#pragma GCC unroll 4
                for (int c = 0; c < 4; c++) {
                    /* 0/1 per weight (the bit, brought down), times q: pairs of |q| <= 127
                     * sum to at most 254, no saturation */
                    __m256i b01 = _mm256_min_epu8(chunk_bits(bits, c), ones8);
                    p16 = _mm256_add_epi16(p16, _mm256_maddubs_epi16(b01, xs[c]));
                }
                part[i] = _mm256_madd_epi16(p16, ones16);
            }
            __m256i m = reduce8(part);
            __m256i iv = _mm256_sub_epi32(_mm256_add_epi32(m, m), _mm256_set1_epi32(sum[b]));
            __m256 d = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)dh));
            __m256 ds = _mm256_mul_ps(d, _mm256_set1_ps(s[b]));
            acc = _mm256_fmadd_ps(ds, _mm256_cvtepi32_ps(iv), acc);
        }
        _mm256_storeu_ps(y + t * ldy + (size_t)r0, acc);
    }
}

/* The packed layout (kernels.h) of TG-token groups: the quads, then at QBYTES the
 * scales, 32 bytes on the sums. */
#define QBYTES (QUADS * 32)
#define GROUP_BLOCK XP_PACKED_BLOCK(TG)

static size_t padded_groups(size_t T) { return (T + TG - 1) / TG; }

static int prepare(xp_qact *x)
{
    /* few tokens take the rows-in-lanes kernel, which reads q itself */
    return x->T < TILE_MIN ? XP_OK : xp_qact_pack(x, TG);
}

/* The 0/2 byte patterns of a block's 128 sign bits, 32 u32 (byte i of pattern k is twice
 * sign bit 4k + i), so that PMADDUBSW with them sums 2m directly. */
TARGET INLINE void expand(const uint8_t *blk, uint32_t pat[QUADS])
{
    const __m256i twos = _mm256_set1_epi8(2);
    __m256i bits = block_bits(blk);
#pragma GCC unroll 4
    for (int c = 0; c < 4; c++)
        _mm256_store_si256((__m256i *)(pat + 8 * c), _mm256_and_si256(chunk_mask(bits, c), twos));
}

/* Writes 4 rows x 8 tokens (a[r] holds row r's tokens) as 8 runs of 4 floats, token t at
 * y + t * ldy, for the first n tokens. */
TARGET INLINE void store_4x8(const __m256 a[NR], float *y, size_t ldy, size_t n)
{
    __m256 p = _mm256_unpacklo_ps(a[0], a[1]), q = _mm256_unpackhi_ps(a[0], a[1]);
    __m256 u = _mm256_unpacklo_ps(a[2], a[3]), v = _mm256_unpackhi_ps(a[2], a[3]);
    /* 128-bit lane l of tok[i] holds token 4l + i's four rows */
    __m256 tok[4] = {
        _mm256_castpd_ps(_mm256_unpacklo_pd(_mm256_castps_pd(p), _mm256_castps_pd(u))),
        _mm256_castpd_ps(_mm256_unpackhi_pd(_mm256_castps_pd(p), _mm256_castps_pd(u))),
        _mm256_castpd_ps(_mm256_unpacklo_pd(_mm256_castps_pd(q), _mm256_castps_pd(v))),
        _mm256_castpd_ps(_mm256_unpackhi_pd(_mm256_castps_pd(q), _mm256_castps_pd(v)))};
    for (size_t t = 0; t < n; t++)
        _mm_storeu_ps(y + t * ldy, t < 4 ? _mm256_castps256_ps128(tok[t])
                                         : _mm256_extractf128_ps(tok[t - 4], 1));
}

/* Rows [r, r + NR) of w against ng (1 or 2) packed token groups from p0 (gstride bytes
 * apart), the first n_tok of them written to y + t * ldy + r. Accumulators of the block
 * are named registers; the float ones, touched once a block, may live in memory. */
#define DOT_ROW(r)                                                                                 \
    do {                                                                                           \
        __m256i wv = _mm256_set1_epi32((int)pat[r][k]);                                            \
        m##r##0 = _mm256_add_epi16(m##r##0, _mm256_maddubs_epi16(wv, a0));                         \
        if (ng > 1)                                                                                \
            m##r##1 = _mm256_add_epi16(m##r##1, _mm256_maddubs_epi16(wv, a1));                     \
    } while (0)
#define SCALE(r, g)                                                                                \
    do {                                                                                           \
        __m256 ds = _mm256_mul_ps(_mm256_set1_ps(d[r]), s##g);                                     \
        __m256i iv = _mm256_sub_epi32(_mm256_madd_epi16(m##r##g, ones16), sum##g);                 \
        acc[r][g] = _mm256_fmadd_ps(ds, _mm256_cvtepi32_ps(iv), acc[r][g]);                        \
    } while (0)
#define SCALE_ROW(r)                                                                               \
    do {                                                                                           \
        SCALE(r, 0);                                                                               \
        if (ng > 1)                                                                                \
            SCALE(r, 1);                                                                           \
    } while (0)

TARGET INLINE void tile(const xp_weight *w, int64_t r, int64_t nb, const int8_t *p0, size_t gstride,
                        float *y, size_t ldy, size_t n_tok, const int ng)
{
    __m256 acc[NR][NG];
    for (int i = 0; i < NR; i++)
        for (int g = 0; g < NG; g++)
            acc[i][g] = _mm256_setzero_ps();
    const __m256i zero = _mm256_setzero_si256(), ones16 = _mm256_set1_epi16(1);
    const __m256 fzero = _mm256_setzero_ps();
    const uint8_t *row0 = w->data + (uint64_t)r * w->row_bytes;
    /* block b's patterns are stored while block b - 1 is summed, so their loads never
     * wait on stores still in flight */
    uint32_t buf[2][NR][QUADS] __attribute__((aligned(32)));
    for (int i = 0; i < NR; i++)
        expand(row0 + (size_t)i * w->row_bytes, buf[0][i]);
    for (int64_t b = 0; b < nb; b++) {
        const int8_t *pb0 = p0 + (size_t)b * GROUP_BLOCK, *pb1 = ng > 1 ? pb0 + gstride : pb0;
        uint32_t(*pat)[QUADS] = buf[b & 1];
        float d[NR];
        for (int i = 0; i < NR; i++) {
            const uint8_t *blk = row0 + (size_t)i * w->row_bytes + (size_t)b * XP_Q1_0_BYTES;
            uint16_t dh;
            memcpy(&dh, blk, 2);
            d[i] = _cvtsh_ss(dh);
            if (b + 1 < nb)
                expand(blk + XP_Q1_0_BYTES, buf[(b + 1) & 1][i]);
        }
        __m256i m00 = zero, m01 = zero, m10 = zero, m11 = zero, m20 = zero, m21 = zero, m30 = zero,
                m31 = zero;
        _Pragma("GCC unroll 4") for (int k = 0; k < QUADS; k++)
        {
            __m256i a0 = _mm256_load_si256((const __m256i *)(pb0 + k * 32));
            __m256i a1 = ng > 1 ? _mm256_load_si256((const __m256i *)(pb1 + k * 32)) : zero;
            DOT_ROW(0);
            DOT_ROW(1);
            DOT_ROW(2);
            DOT_ROW(3);
        }
        __m256 s0 = _mm256_load_ps((const float *)(pb0 + QBYTES));
        __m256 s1 = ng > 1 ? _mm256_load_ps((const float *)(pb1 + QBYTES)) : fzero;
        __m256i sum0 = _mm256_load_si256((const __m256i *)(pb0 + QBYTES + 32));
        __m256i sum1 = ng > 1 ? _mm256_load_si256((const __m256i *)(pb1 + QBYTES + 32)) : zero;
        SCALE_ROW(0);
        SCALE_ROW(1);
        SCALE_ROW(2);
        SCALE_ROW(3);
    }
    for (int g = 0; g < ng && (size_t)g * TG < n_tok; g++) {
        __m256 a[NR] = {acc[0][g], acc[1][g], acc[2][g], acc[3][g]};
        size_t n = n_tok - (size_t)g * TG;
        store_4x8(a, y + (size_t)g * TG * ldy + (size_t)r, ldy, n < TG ? n : TG);
    }
}

TARGET static void tile2(const xp_weight *w, int64_t r, int64_t nb, const int8_t *p0,
                         size_t gstride, float *y, size_t ldy, size_t n_tok)
{
    tile(w, r, nb, p0, gstride, y, ldy, n_tok, 2);
}

TARGET static void tile1(const xp_weight *w, int64_t r, int64_t nb, const int8_t *p0,
                         size_t gstride, float *y, size_t ldy, size_t n_tok)
{
    tile(w, r, nb, p0, gstride, y, ldy, n_tok, 1);
}

/* Rows [r0, r1) (a multiple of NR of them), tokens in lanes: each pair of token groups
 * meets every strip of NR rows while it sits in this core's cache. */
static void tokens_rows(const xp_weight *w, const xp_qact *x, float *y, size_t ldy, int64_t r0,
                        int64_t r1)
{
    int64_t nb = x->nb;
    size_t groups = padded_groups(x->T), gstride = (size_t)nb * GROUP_BLOCK;
    for (size_t g = 0; g < groups; g += NG) {
        size_t n_tok = x->T - g * TG;
        const int8_t *p0 = x->packed + g * gstride;
        float *yg = y + g * TG * ldy;
        for (int64_t r = r0; r < r1; r += NR)
            (groups - g >= 2 ? tile2 : tile1)(w, r, nb, p0, gstride, yg, ldy, n_tok);
    }
}

TARGET static void matmul(const xp_weight *w, const xp_qact *x, float *y, size_t ldy, int64_t r0,
                          int64_t r1)
{
    int64_t r = r0;
    if (x->T >= TILE_MIN) {
        int64_t whole = r0 + (r1 - r0) / NR * NR;
        tokens_rows(w, x, y, ldy, r0, whole);
        r = whole;
    } else {
        for (; r + 8 <= r1; r += 8)
            rows8(w, x, y, ldy, r);
    }
    if (r < r1)
        xp_kernels_portable.matmul(w, x, y, ldy, r, r1);
}

const xp_kernels xp_kernels_avx2 = {"avx2", quantize_block, prepare, matmul};
#endif
