/* AVX2 kernel for 1-bit x int8 products: 8 rows in the 8 lanes. A row's 32 sign bits at
 * a time become a byte mask (broadcast, shuffle, test), the selected activations are
 * summed with PMADDUBSW/PMADDWD, and 8 rows' partial sums are reduced together by
 * horizontal adds. Each block ends with fmaf(d * s, (float)(2m - sum), acc) in block
 * order, exactly as every kernel does (kernels.h). */
#include "model/kernels.h"
#include "model/model.h"

#if defined(__x86_64__)
#include <immintrin.h>
#include <string.h>

#define TARGET __attribute__((target("avx2,fma,f16c")))

/* 0xFF in byte i where bit i of bits is set. */
TARGET static __m256i byte_mask(uint32_t bits)
{
    const __m256i shuf = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2,
                                          2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
    const __m256i sel = _mm256_set1_epi64x((long long)0x8040201008040201ull);
    __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32((int)bits), shuf);
    return _mm256_cmpeq_epi8(_mm256_and_si256(v, sel), sel);
}

/* Lane i = sum of v[i]'s 8 lanes. */
TARGET static __m256i reduce8(const __m256i v[8])
{
    __m256i h01 = _mm256_hadd_epi32(v[0], v[1]), h23 = _mm256_hadd_epi32(v[2], v[3]);
    __m256i h45 = _mm256_hadd_epi32(v[4], v[5]), h67 = _mm256_hadd_epi32(v[6], v[7]);
    __m256i a = _mm256_hadd_epi32(h01, h23), b = _mm256_hadd_epi32(h45, h67);
    return _mm256_add_epi32(_mm256_permute2x128_si256(a, b, 0x20),
                            _mm256_permute2x128_si256(a, b, 0x31));
}

TARGET static void rows8(const xp_weight *w, const xp_qact *x, float *y, size_t ldy, int64_t r0)
{
    const __m256i ones8 = _mm256_set1_epi8(1), ones16 = _mm256_set1_epi16(1);
    const uint8_t *rows[8];
    for (int i = 0; i < 8; i++)
        rows[i] = w->data + (uint64_t)(r0 + i) * w->row_bytes;
    for (size_t t = 0; t < x->T; t++) {
        const int8_t *q = x->q + t * (size_t)x->K;
        const float *s = x->s + t * (size_t)x->nb;
        const int32_t *sum = x->sum + t * (size_t)x->nb;
        __m256 acc = _mm256_setzero_ps();
        for (int64_t b = 0; b < x->nb; b++) {
            __m256i xs[4];
            for (int c = 0; c < 4; c++)
                xs[c] = _mm256_loadu_si256((const __m256i *)(q + b * XP_Q1_0_WEIGHTS + 32 * c));
            __m256i part[8];
            uint16_t dh[8];
            for (int i = 0; i < 8; i++) {
                const uint8_t *blk = rows[i] + b * XP_Q1_0_BYTES;
                uint32_t bits[4];
                memcpy(bits, blk + 2, 16);
                memcpy(&dh[i], blk, 2);
                __m256i p16 = _mm256_setzero_si256();
                for (int c = 0; c < 4; c++) {
                    __m256i sel = _mm256_and_si256(byte_mask(bits[c]), xs[c]);
                    /* pairs of |q| <= 127 sum to at most 254: no saturation */
                    p16 = _mm256_add_epi16(p16, _mm256_maddubs_epi16(ones8, sel));
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

TARGET static void matmul(const xp_weight *w, const xp_qact *x, float *y, size_t ldy, int64_t r0,
                          int64_t r1)
{
    int64_t r = r0;
    for (; r + 8 <= r1; r += 8)
        rows8(w, x, y, ldy, r);
    if (r < r1)
        xp_kernels_portable.matmul(w, x, y, ldy, r, r1);
}

const xp_kernels xp_kernels_avx2 = {"avx2", NULL, NULL, matmul};
#endif
