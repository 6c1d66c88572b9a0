/* Activation quantisation (shared by every kernel, so all see the same integers), the
 * portable C kernel that defines the arithmetic, and the run-time choice of the best
 * kernel the CPU supports (XORPATCH_KERNEL in the environment can name another). */
#include "model/kernels.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/model.h"

#if defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#elif defined(__aarch64__) && defined(__APPLE__)
#include <sys/sysctl.h>
#endif

/* The quantiser of every kernel: scale max|v| / 127, q = round-to-nearest-even(v / s)
 * clamped to +-127 (a NaN, and any product that is not finite, gives 0), and the sum of q.
 * Returns the scale. */
static float quantize_portable(const float *v, int8_t *q, int32_t *sum_out)
{
    float amax = 0;
    for (int j = 0; j < XP_Q1_0_WEIGHTS; j++)
        amax = fabsf(v[j]) > amax ? fabsf(v[j]) : amax;
    float inv = amax > 0 ? 127.0f / amax : 0.0f;
    int32_t sum = 0;
    for (int j = 0; j < XP_Q1_0_WEIGHTS; j++) {
        float p = v[j] * inv; /* finite p is within +-127 (and a little) */
        int32_t qi = isfinite(p) ? (int32_t)lrintf(p) : 0;
        qi = qi > 127 ? 127 : qi < -127 ? -127 : qi;
        q[j] = (int8_t)qi;
        sum += qi;
    }
    *sum_out = sum;
    return amax / 127.0f;
}

int xp_qact_quantize(xp_qact *x, const xp_kernels *k, const float *in, size_t T, int64_t K)
{
    int64_t nb = K / XP_Q1_0_WEIGHTS;
    if (T > x->cap_T || K != x->K) {
        free(x->q), free(x->s), free(x->sum);
        size_t cap = T ? T : 1; /* no tokens is not a failure */
        x->q = malloc(cap * (size_t)K);
        x->s = malloc(cap * (size_t)nb * sizeof *x->s);
        x->sum = malloc(cap * (size_t)nb * sizeof *x->sum);
        x->cap_T = (x->q && x->s && x->sum) ? cap : 0;
        if (!x->cap_T)
            return XP_ENOMEM;
    }
    x->T = T;
    x->K = K;
    x->nb = nb;
    float (*block)(const float *, int8_t *, int32_t *) =
        k->quantize_block ? k->quantize_block : quantize_portable;
    /* tokens are independent: any split among threads gives the same bytes */
#pragma omp parallel for schedule(static) if (T > 1)
    for (size_t t = 0; t < T; t++)
        for (int64_t b = 0; b < nb; b++) {
            size_t i = t * (size_t)nb + (size_t)b;
            x->s[i] = block(in + i * XP_Q1_0_WEIGHTS, x->q + i * XP_Q1_0_WEIGHTS, &x->sum[i]);
        }
    return k->prepare ? k->prepare(x) : XP_OK;
}

int xp_qact_pack(xp_qact *x, size_t tg)
{
    const int quads = XP_Q1_0_WEIGHTS / 4;
    size_t groups = (x->T + tg - 1) / tg, gb = XP_PACKED_BLOCK(tg), qbytes = (size_t)quads * 4 * tg;
    size_t need = groups * (size_t)x->nb * gb;
    if (need > x->cap_packed) {
        free(x->packed);
        x->packed = aligned_alloc(64, need); /* a multiple of 64: tg is 8 or 16 */
        x->cap_packed = x->packed ? need : 0;
        if (!x->packed)
            return XP_ENOMEM;
    }
#pragma omp parallel for collapse(2) schedule(static)
    for (size_t g = 0; g < groups; g++)
        for (int64_t b = 0; b < x->nb; b++) {
            int8_t *dst = x->packed + (g * (size_t)x->nb + (size_t)b) * gb;
            float *s = (float *)(dst + qbytes);
            int32_t *sum = (int32_t *)(dst + qbytes + 4 * tg);
            for (size_t j = 0; j < tg; j++) {
                size_t t = g * tg + j;
                if (t >= x->T) {
                    for (int k = 0; k < quads; k++)
                        memset(dst + (size_t)k * 4 * tg + 4 * j, 0, 4);
                    s[j] = 0;
                    sum[j] = 0;
                    continue;
                }
                const int8_t *src = x->q + t * (size_t)x->K + b * XP_Q1_0_WEIGHTS;
                for (int k = 0; k < quads; k++)
                    memcpy(dst + (size_t)k * 4 * tg + 4 * j, src + 4 * k, 4);
                s[j] = x->s[t * (size_t)x->nb + (size_t)b];
                sum[j] = x->sum[t * (size_t)x->nb + (size_t)b];
            }
        }
    return XP_OK;
}

void xp_qact_free(xp_qact *x)
{
    free(x->q), free(x->s), free(x->sum), free(x->packed);
    memset(x, 0, sizeof *x);
}

/* Tokens per tile of the portable kernel: their activations (TILE_TOKENS * K bytes) stay
 * in cache while every row meets them, and each block's mask is made once for them all. */
#define TILE_TOKENS 16

/* Byte i in memory of the result is 0xFF where bit i of bits is set, else 0: the bits
 * spread over the bytes and each byte's one bit carried up to its top, then widened. */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#define BIT_OF_BYTE 0x0102040810204080ull
#else
#define BIT_OF_BYTE 0x8040201008040201ull
#endif
static uint64_t byte_masks(uint8_t bits)
{
    const uint64_t low7 = 0x7F7F7F7F7F7F7F7Full;
    uint64_t v = (bits * 0x0101010101010101ull) & BIT_OF_BYTE;
    uint64_t top = (((v & low7) + low7) | v) & ~low7;
    return (top >> 7) * 0xFF;
}

/* The byte masks of a block's 128 sign bits: -1 where the bit is set. */
static void block_mask(const uint8_t *blk, int8_t mask[XP_Q1_0_WEIGHTS])
{
    for (int k = 0; k < XP_Q1_0_WEIGHTS / 8; k++) {
        uint64_t m8 = byte_masks(blk[2 + k]);
        memcpy(mask + 8 * k, &m8, 8);
    }
}

/* The block's float step of token t, whose m is m. */
static inline float block_step(const xp_qact *x, size_t t, int64_t b, float d, int16_t m, float acc)
{
    int32_t iv = 2 * m - x->sum[t * (size_t)x->nb + b];
    return fmaf(d * x->s[t * (size_t)x->nb + b], (float)iv, acc);
}

/* Rows [r, r + 4) x tokens [t0, t0 + nt), or the one row r where one is true: each
 * block of a row becomes a byte mask (-1 where the sign bit is set) once, then m of
 * every token of the tile and row is the sum of the activations it selects (at most
 * 128 * 127, an int16), 4 rows at a time over each token's activations. */
static void tile_portable(const xp_weight *w, const xp_qact *x, float *y, size_t ldy, int64_t r,
                          size_t t0, size_t nt, bool one)
{
    const int nr = one ? 1 : 4;
    const uint8_t *row = w->data + (uint64_t)r * w->row_bytes;
    float acc[4][TILE_TOKENS] = {{0}};
    for (int64_t b = 0; b < x->nb; b++) {
        int8_t mask[4][XP_Q1_0_WEIGHTS];
        float d[4];
        for (int i = 0; i < nr; i++) {
            const uint8_t *blk = row + (size_t)i * w->row_bytes + (size_t)b * XP_Q1_0_BYTES;
            d[i] = xp_fp16_to_f32((uint16_t)(blk[0] | blk[1] << 8));
            block_mask(blk, mask[i]);
        }
        for (size_t k = 0; k < nt; k++) {
            size_t t = t0 + k;
            const int8_t *q = x->q + t * (size_t)x->K + b * XP_Q1_0_WEIGHTS;
            if (one) {
                int16_t m = 0;
                for (int j = 0; j < XP_Q1_0_WEIGHTS; j++)
                    m = (int16_t)(m + (q[j] & mask[0][j]));
                acc[0][k] = block_step(x, t, b, d[0], m, acc[0][k]);
                continue;
            }
            int16_t m0 = 0, m1 = 0, m2 = 0, m3 = 0;
            for (int j = 0; j < XP_Q1_0_WEIGHTS; j++) {
                m0 = (int16_t)(m0 + (q[j] & mask[0][j]));
                m1 = (int16_t)(m1 + (q[j] & mask[1][j]));
                m2 = (int16_t)(m2 + (q[j] & mask[2][j]));
                m3 = (int16_t)(m3 + (q[j] & mask[3][j]));
            }
            acc[0][k] = block_step(x, t, b, d[0], m0, acc[0][k]);
            acc[1][k] = block_step(x, t, b, d[1], m1, acc[1][k]);
            acc[2][k] = block_step(x, t, b, d[2], m2, acc[2][k]);
            acc[3][k] = block_step(x, t, b, d[3], m3, acc[3][k]);
        }
    }
    for (int i = 0; i < nr; i++)
        for (size_t k = 0; k < nt; k++)
            y[(t0 + k) * ldy + (size_t)r + (size_t)i] = acc[i][k];
}

static void matmul_portable(const xp_weight *w, const xp_qact *x, float *y, size_t ldy, int64_t r0,
                            int64_t r1)
{
    for (size_t t0 = 0; t0 < x->T; t0 += TILE_TOKENS) {
        size_t nt = x->T - t0 < TILE_TOKENS ? x->T - t0 : TILE_TOKENS;
        int64_t r = r0;
        for (; r + 4 <= r1; r += 4)
            tile_portable(w, x, y, ldy, r, t0, nt, false);
        for (; r < r1; r++)
            tile_portable(w, x, y, ldy, r, t0, nt, true);
    }
}

const xp_kernels xp_kernels_portable = {"portable", NULL, NULL, matmul_portable};

#if defined(XP_KERNELS_DOTPROD)
/* Whether the CPU has the ARMv8.2 dot product instructions, as the build or the system
 * tells. */
static bool arm_has_dotprod(void)
{
#if defined(__ARM_FEATURE_DOTPROD)
    return true; /* the whole build targets it (Apple's arm64 does), so the CPU has it */
#elif defined(__linux__)
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1 << 20) /* the Linux bit, for C libraries that do not name it */
#endif
    return (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) != 0;
#elif defined(__APPLE__)
    int has = 0;
    size_t len = sizeof has;
    return sysctlbyname("hw.optional.arm.FEAT_DotProd", &has, &len, NULL, 0) == 0 && has;
#else
    return false;
#endif
}
#endif

/* BMI2 and F16C, which the x86 kernels also use, come with every CPU that has AVX2 (and
 * clang's __builtin_cpu_supports cannot name them). Every AArch64 CPU has NEON. */
static bool runnable(const xp_kernels *k)
{
#if defined(XP_KERNELS_DOTPROD)
    if (k == &xp_kernels_neon_dotprod)
        return arm_has_dotprod();
#endif
#if defined(__aarch64__)
    if (k == &xp_kernels_neon)
        return true;
#endif
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (k == &xp_kernels_avx512)
        return __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vnni") &&
               __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("fma");
    if (k == &xp_kernels_avx2)
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
    return k == &xp_kernels_portable;
}

static const xp_kernels *const all[] = {
#if defined(__x86_64__)
    &xp_kernels_avx512, &xp_kernels_avx2,
#endif
#if defined(XP_KERNELS_DOTPROD)
    &xp_kernels_neon_dotprod,
#endif
#if defined(__aarch64__)
    &xp_kernels_neon,
#endif
    &xp_kernels_portable};

const xp_kernels *xp_kernels_find(const char *name)
{
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (strcmp(all[i]->name, name) == 0 && runnable(all[i]))
            return all[i];
    return NULL;
}

const xp_kernels *xp_kernels_best(void)
{
    const char *want = getenv("XORPATCH_KERNEL");
    const xp_kernels *k = want && *want ? xp_kernels_find(want) : NULL;
    if (k)
        return k;
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (runnable(all[i]))
            return all[i];
    return &xp_kernels_portable;
}

const char *const *xp_kernels_available(void)
{
    static const char *names[sizeof all / sizeof all[0] + 1];
    size_t n = 0;
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (runnable(all[i]))
            names[n++] = all[i]->name;
    names[n] = NULL;
    return names;
}
