/* AVX-512 (BW + VNNI) kernels for 1-bit x int8 products, compiled for that target
 * function by function so the rest of the program runs on any x86-64. Two shapes of the
 * same arithmetic (kernels.h):
 *  - few tokens (decode): 16 rows in the 16 lanes. A row's sign bits become a byte mask,
 *    VPDPBUSD sums the selected activations, and 16 rows' partial sums are reduced
 *    together by a transposing add tree;
 *  - many tokens (prefill, probe batches): 16 tokens in the lanes. Activations are packed
 *    once per matrix input as [token group][block][quad][16 tokens][4 bytes]; each nibble
 *    of a weight row becomes a broadcast 0/1 byte pattern from a 16-entry table, so one
 *    VPDPBUSD does 16 tokens x 4 inputs, and a weight nibble is reused for 4 token groups.
 * Both end every block with fmaf(d * s, (float)(2m - sum), acc) in block order. */
#if defined(__x86_64__)
#include <immintrin.h>
#include <stdlib.h>
#include <string.h>

#include "model/kernels.h"
#include "model/model.h"

#define TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,fma,f16c")))
#define QUADS (XP_Q1_0_WEIGHTS / 4)
#define TG 16   /* tokens per group (lanes) */
#define TGS 4   /* token groups sharing one weight nibble */
#define ROWS 4  /* rows sharing one packed activation load */

/* Sum of each vector's 16 lanes, vector i's sum in lane i. */
TARGET static __m512i reduce16(__m512i v[16])
{
    __m512i u[8], w[4];
    for (int k = 0; k < 8; k++)
        u[k] = _mm512_add_epi32(_mm512_unpacklo_epi32(v[2 * k], v[2 * k + 1]),
                                _mm512_unpackhi_epi32(v[2 * k], v[2 * k + 1]));
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
    const uint8_t *rows[16];
    for (int i = 0; i < 16; i++)
        rows[i] = w->data + (uint64_t)(r0 + i) * w->row_bytes;
    for (size_t t = 0; t < x->T; t++) {
        const int8_t *q = x->q + t * (size_t)x->K;
        const float *s = x->s + t * (size_t)x->nb;
        const int32_t *sum = x->sum + t * (size_t)x->nb;
        __m512 acc = _mm512_setzero_ps();
        for (int64_t b = 0; b < x->nb; b++) {
            __m512i xlo = _mm512_loadu_si512(q + b * XP_Q1_0_WEIGHTS);
            __m512i xhi = _mm512_loadu_si512(q + b * XP_Q1_0_WEIGHTS + 64);
            __m512i part[16];
            uint16_t dh[16];
            for (int i = 0; i < 16; i++) {
                const uint8_t *blk = rows[i] + b * XP_Q1_0_BYTES;
                uint64_t lo, hi;
                memcpy(&lo, blk + 2, 8);
                memcpy(&hi, blk + 10, 8);
                memcpy(&dh[i], blk, 2);
                __m512i p = _mm512_dpbusd_epi32(_mm512_setzero_si512(),
                                                _mm512_maskz_mov_epi8(lo, ones), xlo);
                part[i] = _mm512_dpbusd_epi32(p, _mm512_maskz_mov_epi8(hi, ones), xhi);
            }
            __m512i m = reduce16(part);
            __m512i iv = _mm512_sub_epi32(_mm512_add_epi32(m, m), _mm512_set1_epi32(sum[b]));
            __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)dh));
            __m512 ds = _mm512_mul_ps(d, _mm512_set1_ps(s[b]));
            acc = _mm512_fmadd_ps(ds, _mm512_cvtepi32_ps(iv), acc);
        }
        _mm512_storeu_ps(y + t * ldy + (size_t)r0, acc);
    }
}

/* The packed layout: for token group g (16 tokens, the last padded with zeros), block b
 * and quad k, 64 bytes: token j's inputs 4k..4k+3 of block b at bytes 4j..4j+3. */
static size_t packed_index(const xp_qact *x, size_t g, int64_t b, int k)
{
    return ((g * (size_t)x->nb + (size_t)b) * QUADS + (size_t)k) * 64;
}

static int prepare(xp_qact *x)
{
    if (x->T < TG)
        return XP_OK; /* few tokens take the rows-in-lanes kernel, which reads q itself */
    size_t groups = (x->T + TG - 1) / TG;
    size_t need = groups * (size_t)x->nb * QUADS * 64;
    if (need > x->cap_packed) {
        free(x->packed);
        x->packed = aligned_alloc(64, need);
        x->cap_packed = x->packed ? need : 0;
        if (!x->packed)
            return XP_ENOMEM;
    }
    for (size_t g = 0; g < groups; g++)
        for (int64_t b = 0; b < x->nb; b++)
            for (int k = 0; k < QUADS; k++) {
                int8_t *dst = x->packed + packed_index(x, g, b, k);
                for (int j = 0; j < TG; j++) {
                    size_t t = g * TG + (size_t)j;
                    if (t < x->T)
                        memcpy(dst + 4 * j, x->q + t * (size_t)x->K + b * 128 + 4 * k, 4);
                    else
                        memset(dst + 4 * j, 0, 4);
                }
            }
    return XP_OK;
}

/* Byte patterns of a nibble: byte i is bit i of the nibble. */
static const uint32_t nibble_bytes[16] = {
    0x00000000, 0x00000001, 0x00000100, 0x00000101, 0x00010000, 0x00010001, 0x00010100,
    0x00010101, 0x01000000, 0x01000001, 0x01000100, 0x01000101, 0x01010000, 0x01010001,
    0x01010100, 0x01010101};

/* ROWS rows from r0 and ng (1..TGS) token groups from g0, tokens in lanes. */
TARGET static void tokens_tile(const xp_weight *w, const xp_qact *x, float *y, size_t ldy,
                               int64_t r0, size_t g0, int ng)
{
    __m512 acc[ROWS][TGS];
    for (int r = 0; r < ROWS; r++)
        for (int g = 0; g < TGS; g++)
            acc[r][g] = _mm512_setzero_ps();
    const uint8_t *rows[ROWS];
    for (int r = 0; r < ROWS; r++)
        rows[r] = w->data + (uint64_t)(r0 + r) * w->row_bytes;
    for (int64_t b = 0; b < x->nb; b++) {
        __m512i m[ROWS][TGS];
        uint64_t bits[ROWS][2];
        for (int r = 0; r < ROWS; r++) {
            memcpy(bits[r], rows[r] + b * XP_Q1_0_BYTES + 2, 16);
            for (int g = 0; g < TGS; g++)
                m[r][g] = _mm512_setzero_si512();
        }
        const int8_t *base = x->packed + packed_index(x, g0, b, 0);
        size_t gstride = (size_t)x->nb * QUADS * 64;
        for (int k = 0; k < QUADS; k++) {
            __m512i a[TGS];
            for (int g = 0; g < ng; g++)
                a[g] = _mm512_load_si512(base + (size_t)g * gstride + (size_t)k * 64);
            for (int r = 0; r < ROWS; r++) {
                unsigned nib = (unsigned)(bits[r][k >> 4] >> (4 * (k & 15))) & 15;
                __m512i wv = _mm512_set1_epi32((int)nibble_bytes[nib]);
                for (int g = 0; g < ng; g++)
                    m[r][g] = _mm512_dpbusd_epi32(m[r][g], wv, a[g]);
            }
        }
        for (int g = 0; g < ng; g++) {
            __m512i sum = _mm512_setzero_si512();
            float sv[TG];
            int32_t su[TG];
            for (int j = 0; j < TG; j++) {
                size_t t = (g0 + (size_t)g) * TG + (size_t)j;
                sv[j] = t < x->T ? x->s[t * (size_t)x->nb + (size_t)b] : 0.0f;
                su[j] = t < x->T ? x->sum[t * (size_t)x->nb + (size_t)b] : 0;
            }
            sum = _mm512_loadu_si512(su);
            __m512 s = _mm512_loadu_ps(sv);
            for (int r = 0; r < ROWS; r++) {
                uint16_t dh;
                memcpy(&dh, rows[r] + b * XP_Q1_0_BYTES, 2);
                __m512 ds = _mm512_mul_ps(_mm512_set1_ps(xp_fp16_to_f32(dh)), s);
                __m512i iv = _mm512_sub_epi32(_mm512_add_epi32(m[r][g], m[r][g]), sum);
                acc[r][g] = _mm512_fmadd_ps(ds, _mm512_cvtepi32_ps(iv), acc[r][g]);
            }
        }
    }
    for (int g = 0; g < ng; g++)
        for (int r = 0; r < ROWS; r++) {
            float out[TG];
            _mm512_storeu_ps(out, acc[r][g]);
            for (int j = 0; j < TG; j++) {
                size_t t = (g0 + (size_t)g) * TG + (size_t)j;
                if (t < x->T)
                    y[t * ldy + (size_t)(r0 + r)] = out[j];
            }
        }
}

TARGET static void matmul(const xp_weight *w, const xp_qact *x, float *y, size_t ldy,
                          int64_t r0, int64_t r1)
{
    int64_t r = r0;
    if (x->T >= TG) {
        size_t groups = (x->T + TG - 1) / TG;
        for (; r + ROWS <= r1; r += ROWS)
            for (size_t g = 0; g < groups; g += TGS)
                tokens_tile(w, x, y, ldy, r, g, groups - g < TGS ? (int)(groups - g) : TGS);
    } else {
        for (; r + 16 <= r1; r += 16)
            rows16(w, x, y, ldy, r);
    }
    if (r < r1)
        xp_kernels_portable.matmul(w, x, y, ldy, r, r1);
}

const xp_kernels xp_kernels_avx512 = {"avx512", prepare, matmul};
#endif
