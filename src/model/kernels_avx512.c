/* AVX-512 (BW + VNNI) kernels for 1-bit x int8 products, compiled for that target
 * function by function so the rest of the program runs on any x86-64. Two shapes of the
 * same arithmetic (kernels.h):
 *  - under 8 tokens (decode): 16 rows in the 16 lanes. A row's sign bits become a byte mask,
 *    VPDPBUSD sums the selected activations, and 16 rows' partial sums are reduced
 *    together by a transposing add tree;
 *  - 8 tokens or more (prefill, probe batches): 16 tokens in the lanes. Activations are packed
 *    once per matrix input as [token group][block][quad][16 tokens][4 bytes]; a tile of 4
 *    rows expands each block's sign bits into 0/2 byte patterns (a byte-masked move) as
 *    it reaches them, then one broadcast pattern times one packed vector is a VPDPBUSD of
 *    16 tokens x 4 inputs giving 2m, and each packed load feeds 4 rows.
 * Both end every block with fmaf(d * s, (float)(2m - sum), acc) in block order. The
 * quantiser gives the portable one's bits 16 lanes at a time. */
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
#define TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,fma,f16c")))
#define QUADS (XP_Q1_0_WEIGHTS / 4)
#define TG 16 /* tokens per group (lanes) */
/* From 8 tokens on, the tokens-in-lanes tile (its last group padded to 16) does more per
 * second than rows in lanes, which reads the weights once per token: on this project's
 * machine, 13 tokens of a 2048-wide matrix ran 1.6 times as fast. */
#define TILE_MIN 8

/* Sum of each vector's 16 lanes, vector i's sum in lane i. */
TARGET static __m512i reduce16(__m512i v[16])
{
    __m512i u[8], w[4];
#pragma GCC unroll 8
    for (int k = 0; k < 8; k++)
        u[k] = _mm512_add_epi32(_mm512_unpacklo_epi32(v[2 * k], v[2 * k + 1]),
                                _mm512_unpackhi_epi32(v[2 * k], v[2 * k + 1]));
#pragma GCC unroll 4
    for (int k = 0; k < 4; k++)
        w[k] = _mm512_add_epi32(_mm512_unpacklo_epi64(u[2 * k], u[2 * k + 1]),
                                _mm512_unpackhi_epi64(u[2 * k], u[2 * k + 1]));
    /* each 128-bit lane of w[k] now holds partial sums of rows 4k..4k+3 */
    __m512i x01 = _mm512_add_epi32(_mm512_shuffle_i32x4(w[0], w[1], 0x88),
                                   _mm512_shuffle_i32x4(w[0], w[1], 0xdd));
    __m512i x23 = _mm512_add_epi32(_mm512_shuffle_i32x4(w[2], w[3], 0x88),
                                   _mm512_shuffle_i32x4(w[2], w[3], 0xdd));
    return _mm512_add_epi32(_mm512_shuffle_i32x4(x01, x23, 0x88),
                            _mm512_shuffle_i32x4(x01, x23, 0xdd));
}

/* The portable quantiser's bits (kernels.c), 16 lanes at a time: the max of |v| that
 * ignores NaN as its comparison does, and q = 0 wherever v / s is not finite. */
TARGET static float quantize_block(const float *v, int8_t *q, int32_t *sum_out)
{
    const __m512 inf = _mm512_set1_ps(__builtin_inff());
    __m512 m = _mm512_setzero_ps();
    for (int j = 0; j < XP_Q1_0_WEIGHTS; j += 16) /* MAXPS(a, b) is a > b ? a : b */
        m = _mm512_max_ps(_mm512_abs_ps(_mm512_loadu_ps(v + j)), m);
    float amax = _mm512_reduce_max_ps(m);
    float inv = amax > 0 ? 127.0f / amax : 0.0f;
    const __m512i lo = _mm512_set1_epi32(-127), hi = _mm512_set1_epi32(127);
    __m512i sum = _mm512_setzero_si512();
    for (int j = 0; j < XP_Q1_0_WEIGHTS; j += 16) {
        __m512 p = _mm512_mul_ps(_mm512_loadu_ps(v + j), _mm512_set1_ps(inv));
        __mmask16 finite = _mm512_cmp_ps_mask(_mm512_abs_ps(p), inf, _CMP_LT_OQ);
        __m512i qi =
            _mm512_min_epi32(_mm512_max_epi32(_mm512_maskz_cvtps_epi32(finite, p), lo), hi);
        _mm_storeu_si128((__m128i *)(q + j), _mm512_cvtepi32_epi8(qi));
        sum = _mm512_add_epi32(sum, qi);
    }
    *sum_out = _mm512_reduce_add_epi32(sum);
    return amax / 127.0f;
}

/* 16 rows [r0, r0 + 16), every token, rows in lanes. */
TARGET static void rows16(const xp_weight *w, const xp_qact *x, float *y, size_t ldy, int64_t r0)
{
    const __m512i ones = _mm512_set1_epi8(1);
    const uint8_t *base = w->data + (uint64_t)r0 * w->row_bytes;
    /* the 16 rows' scales are gathered (as dwords whose low half is d), not assembled from
     * scalar stores, which would stall store forwarding on every block */
    const __m512i row_off =
        _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                           _mm512_set1_epi32((int)w->row_bytes));
    for (size_t t = 0; t < x->T; t++) {
        const int8_t *q = x->q + t * (size_t)x->K;
        const float *s = x->s + t * (size_t)x->nb;
        const int32_t *sum = x->sum + t * (size_t)x->nb;
        __m512 acc = _mm512_setzero_ps();
        for (int64_t b = 0; b < x->nb; b++) {
            __m512i xlo = _mm512_loadu_si512(q + b * XP_Q1_0_WEIGHTS);
            __m512i xhi = _mm512_loadu_si512(q + b * XP_Q1_0_WEIGHTS + 64);
            const uint8_t *col = base + b * XP_Q1_0_BYTES;
            __m512i part[16];
#pragma GCC unroll 16
            for (int i = 0; i < 16; i++) {
                const uint8_t *blk = col + (size_t)i * w->row_bytes;
                /* sixteen rows are sixteen strided streams the hardware prefetcher does not
                 * follow: fetch the same block of the next sixteen rows */
                _mm_prefetch((const char *)blk + 16 * w->row_bytes, _MM_HINT_T0);
                uint64_t lo, hi;
                memcpy(&lo, blk + 2, 8);
                memcpy(&hi, blk + 10, 8);
                __m512i p = _mm512_dpbusd_epi32(_mm512_setzero_si512(),
                                                _mm512_maskz_mov_epi8(lo, ones), xlo);
                part[i] = _mm512_dpbusd_epi32(p, _mm512_maskz_mov_epi8(hi, ones), xhi);
            }
            __m512i m = reduce16(part);
            __m512i iv = _mm512_sub_epi32(_mm512_add_epi32(m, m), _mm512_set1_epi32(sum[b]));
            __m512i dw = _mm512_i32gather_epi32(row_off, (const void *)col, 1);
            __m512 d = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(dw));
            __m512 ds = _mm512_mul_ps(d, _mm512_set1_ps(s[b]));
            acc = _mm512_fmadd_ps(ds, _mm512_cvtepi32_ps(iv), acc);
        }
        _mm512_storeu_ps(y + t * ldy + (size_t)r0, acc);
    }
}

/* The packed layout (kernels.h) of TG-token groups: the quads, then at QBYTES the
 * scales, 64 bytes on the sums. */
#define QBYTES (QUADS * 64)
#define GROUP_BLOCK XP_PACKED_BLOCK(TG)
#define NG 3 /* token groups per tile; the last tile of a matrix may have fewer */

static size_t padded_groups(size_t T) { return (T + TG - 1) / TG; }

static int prepare(xp_qact *x)
{
    /* few tokens take the rows-in-lanes kernel, which reads q itself */
    return x->T < TILE_MIN ? XP_OK : xp_qact_pack(x, TG);
}

/* The 0/2 byte pattern of a 128-bit sign block, 32 u32 (byte i of pattern k is twice
 * sign bit 4k+i), so that a VPDPBUSD with it sums 2m directly. */
#define NR 4 /* rows per tile */
TARGET static inline __attribute__((always_inline)) void expand(const uint8_t *blk,
                                                                uint32_t pat[QUADS])
{
    const __m512i twos = _mm512_set1_epi8(2);
    uint64_t lo, hi;
    memcpy(&lo, blk + 2, 8);
    memcpy(&hi, blk + 10, 8);
    _mm512_store_si512(pat, _mm512_maskz_mov_epi8(lo, twos));
    _mm512_store_si512(pat + 16, _mm512_maskz_mov_epi8(hi, twos));
}

/* NR (4) rows x ng (up to NG = 3) token groups, every accumulator a named register
 * (arrays of vectors end up in memory): each block's sign bits are expanded into an L1
 * buffer as the tile reaches it, then the int sums over the block, then the block's
 * float step. ng is a constant wherever this is inlined, so the unused groups cost
 * nothing. */
#define DOT_ROW(r, k)                                                                              \
    do {                                                                                           \
        __m512i wv = _mm512_set1_epi32((int)pat[r][k]);                                            \
        m##r##0 = _mm512_dpbusd_epi32(m##r##0, wv, a0);                                            \
        if (ng > 1)                                                                                \
            m##r##1 = _mm512_dpbusd_epi32(m##r##1, wv, a1);                                        \
        if (ng > 2)                                                                                \
            m##r##2 = _mm512_dpbusd_epi32(m##r##2, wv, a2);                                        \
    } while (0)
#define SCALE(r, g)                                                                                \
    do {                                                                                           \
        __m512 ds = _mm512_mul_ps(_mm512_set1_ps(d[r]), s##g);                                     \
        __m512i iv = _mm512_sub_epi32(m##r##g, sum##g);                                            \
        acc[r][g] = _mm512_fmadd_ps(ds, _mm512_cvtepi32_ps(iv), acc[r][g]);                        \
    } while (0)
#define SCALE_ROW(r)                                                                               \
    do {                                                                                           \
        SCALE(r, 0);                                                                               \
        if (ng > 1)                                                                                \
            SCALE(r, 1);                                                                           \
        if (ng > 2)                                                                                \
            SCALE(r, 2);                                                                           \
    } while (0)

/* Writes 4 rows x 16 tokens (a[r] holds row r's tokens) as 16 runs of 4 floats, token t
 * at y + t * ldy, for the first n tokens. */
TARGET static inline __attribute__((always_inline)) void store_4x16(const __m512 a[NR], float *y,
                                                                    size_t ldy, size_t n)
{
    __m512 p = _mm512_unpacklo_ps(a[0], a[1]), q = _mm512_unpackhi_ps(a[0], a[1]);
    __m512 u = _mm512_unpacklo_ps(a[2], a[3]), v = _mm512_unpackhi_ps(a[2], a[3]);
    /* 128-bit lane l of tok[i] holds token 4l + i's four rows */
    __m512 tok[4] = {
        _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(p), _mm512_castps_pd(u))),
        _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(p), _mm512_castps_pd(u))),
        _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(q), _mm512_castps_pd(v))),
        _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(q), _mm512_castps_pd(v)))};
    if (n == TG) {
#pragma GCC unroll 4
        for (int i = 0; i < 4; i++) {
            _mm_storeu_ps(y + (size_t)i * ldy, _mm512_castps512_ps128(tok[i]));
            _mm_storeu_ps(y + (size_t)(4 + i) * ldy, _mm512_extractf32x4_ps(tok[i], 1));
            _mm_storeu_ps(y + (size_t)(8 + i) * ldy, _mm512_extractf32x4_ps(tok[i], 2));
            _mm_storeu_ps(y + (size_t)(12 + i) * ldy, _mm512_extractf32x4_ps(tok[i], 3));
        }
        return;
    }
    float buf[4][TG] __attribute__((aligned(64)));
    for (int i = 0; i < 4; i++)
        _mm512_store_ps(buf[i], tok[i]);
    for (size_t t = 0; t < n; t++)
        memcpy(y + t * ldy, &buf[t % 4][4 * (t / 4)], 4 * sizeof(float));
}

/* Rows [r, r + NR) of w against ng packed token groups from p0 (gstride bytes apart),
 * the first n_tok of them written to y + t * ldy + r. */
TARGET static inline __attribute__((always_inline)) void tile(const xp_weight *w, int64_t r,
                                                              int64_t nb, const int8_t *p0,
                                                              size_t gstride, float *y, size_t ldy,
                                                              size_t n_tok, const int ng)
{
    __m512 acc[NR][NG];
    for (int i = 0; i < NR; i++)
        for (int g = 0; g < NG; g++)
            acc[i][g] = _mm512_setzero_ps();
    const __m512i zero = _mm512_setzero_si512();
    const __m512 fzero = _mm512_setzero_ps();
    const uint8_t *row0 = w->data + (uint64_t)r * w->row_bytes;
    /* block b's patterns are stored while block b - 1 is summed, so their loads never
     * wait on stores still in flight */
    uint32_t buf[2][NR][QUADS] __attribute__((aligned(64)));
    for (int i = 0; i < NR; i++)
        expand(row0 + (size_t)i * w->row_bytes, buf[0][i]);
    for (int64_t b = 0; b < nb; b++) {
        /* groups past ng are not in the buffer: their pointers stay on group 0 */
        const int8_t *pb0 = p0 + (size_t)b * GROUP_BLOCK, *pb1 = ng > 1 ? pb0 + gstride : pb0,
                     *pb2 = ng > 2 ? pb1 + gstride : pb0;
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
        __m512i m00 = zero, m01 = zero, m02 = zero, m10 = zero, m11 = zero, m12 = zero, m20 = zero,
                m21 = zero, m22 = zero, m30 = zero, m31 = zero, m32 = zero;
        _Pragma("GCC unroll 4") for (int k = 0; k < QUADS; k++)
        {
            __m512i a0 = _mm512_load_si512(pb0 + k * 64);
            __m512i a1 = ng > 1 ? _mm512_load_si512(pb1 + k * 64) : zero;
            __m512i a2 = ng > 2 ? _mm512_load_si512(pb2 + k * 64) : zero;
            DOT_ROW(0, k);
            DOT_ROW(1, k);
            DOT_ROW(2, k);
            DOT_ROW(3, k);
        }
        __m512 s0 = _mm512_load_ps((const float *)(pb0 + QBYTES));
        __m512 s1 = ng > 1 ? _mm512_load_ps((const float *)(pb1 + QBYTES)) : fzero;
        __m512 s2 = ng > 2 ? _mm512_load_ps((const float *)(pb2 + QBYTES)) : fzero;
        __m512i sum0 = _mm512_load_si512(pb0 + QBYTES + 64);
        __m512i sum1 = ng > 1 ? _mm512_load_si512(pb1 + QBYTES + 64) : zero;
        __m512i sum2 = ng > 2 ? _mm512_load_si512(pb2 + QBYTES + 64) : zero;
        SCALE_ROW(0);
        SCALE_ROW(1);
        SCALE_ROW(2);
        SCALE_ROW(3);
    }
    for (int g = 0; g < ng && (size_t)g * TG < n_tok; g++) {
        __m512 a[NR] = {acc[0][g], acc[1][g], acc[2][g], acc[3][g]};
        size_t n = n_tok - (size_t)g * TG;
        store_4x16(a, y + (size_t)g * TG * ldy + (size_t)r, ldy, n < TG ? n : TG);
    }
}

TARGET static void tile3(const xp_weight *w, int64_t r, int64_t nb, const int8_t *p0,
                         size_t gstride, float *y, size_t ldy, size_t n_tok)
{
    tile(w, r, nb, p0, gstride, y, ldy, n_tok, 3);
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

/* Rows [r0, r1) (a multiple of NR of them), tokens in lanes: each packed triple of token
 * groups meets every strip of NR rows while it sits in this core's cache (streaming all
 * the activations once per strip instead would make the cores share the bandwidth of
 * the last-level cache and stop scaling); the rows' sign bits, 1/8 of the bytes of the
 * activations they meet, are expanded in the tile. */
static void tokens_rows(const xp_weight *w, const xp_qact *x, float *y, size_t ldy, int64_t r0,
                        int64_t r1)
{
    int64_t nb = x->nb;
    size_t groups = padded_groups(x->T), gstride = (size_t)nb * GROUP_BLOCK;
    for (size_t g = 0; g < groups; g += NG) {
        size_t ng = groups - g < NG ? groups - g : NG, n_tok = x->T - g * TG;
        const int8_t *p0 = x->packed + g * gstride;
        float *yg = y + g * TG * ldy;
        for (int64_t r = r0; r < r1; r += NR)
            (ng == 3 ? tile3 : ng == 2 ? tile2 : tile1)(w, r, nb, p0, gstride, yg, ldy, n_tok);
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
        for (; r + 16 <= r1; r += 16)
            rows16(w, x, y, ldy, r);
    }
    if (r < r1)
        xp_kernels_portable.matmul(w, x, y, ldy, r, r1);
}

const xp_kernels xp_kernels_avx512 = {"avx512", quantize_block, prepare, matmul};
#endif
