/* xp_log_sum_exp (lse.h). Every step is an IEEE float or double operation with no
 * contraction (the build has -ffp-contract=off) and no library call in the loop, so the
 * vectorised and the scalar loop compute the same bits. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "core/lse.h"

#define LANES 16
#define CHUNK 256

/* e^x for x <= 0 (0 below -87): x = n ln2 + r with |r| <= ln2 / 2 (ln2 in two parts, so
 * n ln2 is exact enough), e^r by its Taylor polynomial to r^7, times 2^n built in the
 * exponent bits. */
static inline float exp_nonpositive(float x)
{
    float xc = x < -87.0f ? -87.0f : x;
    /* round x / ln2 to the nearest integer: adding 1.5 * 2^23 leaves no fraction bits */
    float n = (xc * 1.44269504f + 12582912.0f) - 12582912.0f;
    float r = (xc - n * 0.693145752f) - n * 1.42860677e-06f;
    float p = 1.9841270e-4f;
    p = p * r + 1.3888889e-3f;
    p = p * r + 8.3333333e-3f;
    p = p * r + 4.1666667e-2f;
    p = p * r + 1.6666667e-1f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    int32_t e = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &e, sizeof scale);
    return x < -87.0f ? 0.0f : p * scale;
}

/* Cloned per instruction set (chosen at load time): the lanes are independent and do
 * the same operations, so each clone computes the same bits. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
__attribute__((target_clones("avx512f", "avx2", "default")))
#endif
double xp_log_sum_exp(const float *row, size_t n)
{
    float mx = row[0];
    for (size_t i = 1; i < n; i++)
        mx = row[i] > mx ? row[i] : mx;
    double lane[LANES] = {0};
    float e[CHUNK];
    for (size_t c = 0; c < n; c += CHUNK) {
        size_t len = n - c < CHUNK ? n - c : CHUNK;
        for (size_t i = 0; i < len; i++)
            e[i] = exp_nonpositive(row[c + i] - mx);
        for (size_t i = len; i < CHUNK; i++)
            e[i] = 0.0f;
        for (size_t i = 0; i < CHUNK; i += LANES)
            for (size_t j = 0; j < LANES; j++)
                lane[j] += (double)e[i + j];
    }
    double sum = 0;
    for (size_t j = 0; j < LANES; j++)
        sum += lane[j];
    return (double)mx + log(sum);
}
