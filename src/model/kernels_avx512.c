/* AVX-512 (BW + VNNI) kernels for 1-bit x int8 products, compiled for that target
 * function by function so the rest of the program runs on any x86-64. Two shapes of the
 * same arithmetic (kernels.h):
 *  - few tokens (decode): 16 rows in the 16 lanes. A row's sign bits become a byte mask,
 *    VPDPBUSD sums the selected activations, and 16 rows' partial sums are reduced
 *    together by a transposing add tree;
 *  - many tokens (prefill, probe batches): 16 tokens in the lanes. Activations are packed
 *    once per matrix input as [token group][block][quad][16 tokens][4 bytes]; a strip of 4
 *    rows has each nibble of its sign bits expanded (PDEP) into a 0/1 byte pattern once,
 *    then one broadcast pattern times one packed vector is a VPDPBUSD of 16 tokens x 4
 *    inputs, and each packed load feeds 4 rows.
 * Both end every block with fmaf(d * s, (float)(2m - sum), acc) in block order. */
#if defined(__x86_64__)
#include <immintrin.h>
#include <stdlib.h>
#include <string.h>

#include "model/kernels.h"
#include "model/model.h"

#define TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,fma,f16c")))
#define QUADS (XP_Q1_0_WEIGHTS / 4)
#define TG 16 /* tokens per group (lanes) */

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

/* 16 rows [r0, r0 + 16), every token, rows in lanes. */
TARGET static void rows16(const xp_weight *w, const xp_qact *x, float *y, size_t ldy, int64_t r0)
{
    const __m512i ones = _mm512_set1_epi8(1);
    const uint8_t *base = w->data + (uint64_t)r0 * w->row_bytes;
    /* the 16 rows' scales are gathered (as dwords whose low half is d), not assembled from
     * scalar stores, which would stall store forwarding on every block */
    const __m512i row_off = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10,
                                                                 11, 12, 13, 14, 15),
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

/* The packed layout: for token group g (16 tokens, the last padded with zeros) and block
 * b, GROUP_BLOCK bytes: 32 quads of 64 bytes (token j's inputs 4k..4k+3 at bytes
 * 4j..4j+3 of quad k), then the 16 tokens' scales (float) and sums (int32). */
#define QBYTES (QUADS * 64)
#define GROUP_BLOCK (QBYTES + 64 + 64)
#define NG 3 /* token groups per tile; the last tile of a matrix may have fewer */

static size_t padded_groups(size_t T) { return (T + TG - 1) / TG; }

static int prepare(xp_qact *x)
{
    if (x->T < TG)
        return XP_OK; /* few tokens take the rows-in-lanes kernel, which reads q itself */
    size_t groups = padded_groups(x->T);
    size_t need = groups * (size_t)x->nb * GROUP_BLOCK;
    if (need > x->cap_packed) {
        free(x->packed);
        x->packed = aligned_alloc(64, need);
        x->cap_packed = x->packed ? need : 0;
        if (!x->packed)
            return XP_ENOMEM;
    }
#pragma omp parallel for collapse(2) schedule(static)
    for (size_t g = 0; g < groups; g++)
        for (int64_t b = 0; b < x->nb; b++) {
            int8_t *dst = x->packed + (g * (size_t)x->nb + (size_t)b) * GROUP_BLOCK;
            float *s = (float *)(dst + QBYTES);
            int32_t *sum = (int32_t *)(dst + QBYTES + 64);
            for (int j = 0; j < TG; j++) {
                size_t t = g * TG + (size_t)j;
                if (t >= x->T) {
                    for (int k = 0; k < QUADS; k++)
                        memset(dst + k * 64 + 4 * j, 0, 4);
                    s[j] = 0;
                    sum[j] = 0;
                    continue;
                }
                const int8_t *src = x->q + t * (size_t)x->K + b * XP_Q1_0_WEIGHTS;
                for (int k = 0; k < QUADS; k++)
                    memcpy(dst + k * 64 + 4 * j, src + 4 * k, 4);
                s[j] = x->s[t * (size_t)x->nb + (size_t)b];
                sum[j] = x->sum[t * (size_t)x->nb + (size_t)b];
            }
        }
    return XP_OK;
}

/* A strip of NR rows, expanded once for all token groups: for row r and block b, 32
 * broadcastable u32 patterns (byte i of pattern k is sign bit 4k+i) and the scale d. */
#define NR 4
typedef struct strip {
    uint32_t *pat; /* [NR][nb][QUADS] */
    float *d;      /* [NR][nb] */
} strip;

__attribute__((target("bmi2,f16c"))) static void expand_strip(const xp_weight *w, int64_t r0,
                                                                int64_t nb, strip *st)
{
    for (int r = 0; r < NR; r++) {
        const uint8_t *row = w->data + (uint64_t)(r0 + r) * w->row_bytes;
        for (int64_t b = 0; b < nb; b++) {
            const uint8_t *blk = row + b * XP_Q1_0_BYTES;
            uint32_t *pat = st->pat + ((size_t)r * (size_t)nb + (size_t)b) * QUADS;
            for (int h = 0; h < XP_Q1_0_QS; h++) {
                uint64_t e = _pdep_u64(blk[2 + h], 0x0101010101010101ull);
                memcpy(pat + 2 * h, &e, 8);
            }
            uint16_t dh;
            memcpy(&dh, blk, 2);
            st->d[(size_t)r * (size_t)nb + (size_t)b] = _cvtsh_ss(dh);
        }
    }
}

/* NR (4) rows x ng (up to NG = 3) token groups, every accumulator a named register
 * (arrays of vectors end up in memory): int sums over a block, then the block's float
 * step. ng is a constant wherever this is inlined, so the unused groups cost nothing. */
#define DOT_ROW(r, k)                                                                          \
    do {                                                                                       \
        __m512i wv = _mm512_set1_epi32((int)pat##r[k]);                                        \
        m##r##0 = _mm512_dpbusd_epi32(m##r##0, wv, a0);                                        \
        if (ng > 1)                                                                            \
            m##r##1 = _mm512_dpbusd_epi32(m##r##1, wv, a1);                                    \
        if (ng > 2)                                                                            \
            m##r##2 = _mm512_dpbusd_epi32(m##r##2, wv, a2);                                    \
    } while (0)
#define SCALE(r, g)                                                                            \
    do {                                                                                       \
        __m512 ds = _mm512_mul_ps(_mm512_set1_ps(d##r), s##g);                                 \
        __m512i iv = _mm512_sub_epi32(_mm512_add_epi32(m##r##g, m##r##g), sum##g);            \
        acc[r][g] = _mm512_fmadd_ps(ds, _mm512_cvtepi32_ps(iv), acc[r][g]);                    \
    } while (0)
#define SCALE_ROW(r)                                                                           \
    do {                                                                                       \
        SCALE(r, 0);                                                                           \
        if (ng > 1)                                                                            \
            SCALE(r, 1);                                                                       \
        if (ng > 2)                                                                            \
            SCALE(r, 2);                                                                       \
    } while (0)

TARGET static inline __attribute__((always_inline)) void
tile(const strip *st, int64_t nb, const int8_t *p0, size_t gstride, float out[NR][NG][TG],
     const int ng)
{
    __m512 acc[NR][NG];
    for (int r = 0; r < NR; r++)
        for (int g = 0; g < NG; g++)
            acc[r][g] = _mm512_setzero_ps();
    const __m512i zero = _mm512_setzero_si512();
    const __m512 fzero = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        /* groups past ng are not in the buffer: their pointers stay on group 0 */
        const int8_t *pb0 = p0 + (size_t)b * GROUP_BLOCK, *pb1 = ng > 1 ? pb0 + gstride : pb0,
                     *pb2 = ng > 2 ? pb1 + gstride : pb0;
        const uint32_t *pat0 = st->pat + (size_t)b * QUADS;
        const uint32_t *pat1 = pat0 + (size_t)nb * QUADS, *pat2 = pat1 + (size_t)nb * QUADS,
                       *pat3 = pat2 + (size_t)nb * QUADS;
        __m512i m00 = zero, m01 = zero, m02 = zero, m10 = zero, m11 = zero, m12 = zero,
                m20 = zero, m21 = zero, m22 = zero, m30 = zero, m31 = zero, m32 = zero;
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
        float d0 = st->d[b], d1 = st->d[nb + b], d2 = st->d[2 * nb + b], d3 = st->d[3 * nb + b];
        SCALE_ROW(0);
        SCALE_ROW(1);
        SCALE_ROW(2);
        SCALE_ROW(3);
    }
    for (int r = 0; r < NR; r++)
        for (int g = 0; g < ng; g++)
            _mm512_storeu_ps(out[r][g], acc[r][g]);
}

TARGET static void tile3(const strip *st, int64_t nb, const int8_t *p0, size_t gstride,
                         float out[NR][NG][TG])
{
    tile(st, nb, p0, gstride, out, 3);
}

TARGET static void tile2(const strip *st, int64_t nb, const int8_t *p0, size_t gstride,
                         float out[NR][NG][TG])
{
    tile(st, nb, p0, gstride, out, 2);
}

TARGET static void tile1(const strip *st, int64_t nb, const int8_t *p0, size_t gstride,
                         float out[NR][NG][TG])
{
    tile(st, nb, p0, gstride, out, 1);
}

/* Rows [r0, r1) (a multiple of NR of them), tokens in lanes. Every strip of the range is
 * expanded first, then each packed triple of token groups meets all the strips while it
 * sits in this core's cache: streaming all the activations once per strip instead would
 * make the cores share the bandwidth of the last-level cache and stop scaling. */
static void tokens_rows(const xp_weight *w, const xp_qact *x, float *y, size_t ldy, int64_t r0,
                        int64_t r1)
{
    int64_t nb = x->nb, n_strips = (r1 - r0) / NR;
    size_t groups = padded_groups(x->T), gstride = (size_t)nb * GROUP_BLOCK;
    size_t pat_size = (size_t)NR * (size_t)nb * QUADS, d_size = (size_t)NR * (size_t)nb;
    uint32_t *pat = malloc((size_t)n_strips * pat_size * sizeof *pat);
    float *d = malloc((size_t)n_strips * d_size * sizeof *d);
    for (int64_t k = 0; k < n_strips; k++)
        expand_strip(w, r0 + k * NR, nb, &(strip){pat + (size_t)k * pat_size,
                                                  d + (size_t)k * d_size});
    float out[NR][NG][TG];
    for (size_t g = 0; g < groups; g += NG)
        for (int64_t k = 0; k < n_strips; k++) {
            strip st = {pat + (size_t)k * pat_size, d + (size_t)k * d_size};
            int64_t r = r0 + k * NR;
            size_t ng = groups - g < NG ? groups - g : NG;
            (ng == 3   ? tile3
             : ng == 2 ? tile2
                       : tile1)(&st, nb, x->packed + g * gstride, gstride, out);
            for (size_t gi = 0; gi < ng; gi++)
                for (int j = 0; j < TG; j++) {
                    size_t t = (g + (size_t)gi) * TG + (size_t)j;
                    if (t >= x->T)
                        break;
                    float *dst = y + t * ldy + (size_t)r;
                    for (int i = 0; i < NR; i++)
                        dst[i] = out[i][gi][j];
                }
        }
    free(pat);
    free(d);
}

TARGET static void matmul(const xp_weight *w, const xp_qact *x, float *y, size_t ldy,
                          int64_t r0, int64_t r1)
{
    int64_t r = r0;
    if (x->T >= TG) {
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

const xp_kernels xp_kernels_avx512 = {"avx512", prepare, matmul};
#endif
