/* Q1_0 block operations and the fp16 / bf16 conversions they rest on. The bit order is
 * pinned with hand-built blocks (bit j of qs[j/8] at position j%8, LSB first, set = +d)
 * because a patch file names bits by position and must mean the same weights as
 * llama.cpp. Flips are checked byte by byte: exactly the bytes they own change, and
 * applying a flip twice restores the tensor. The conversions are checked against a
 * reference built from first principles (ldexp and nearest-value search), exhaustively
 * where the space is 2^16 and on random samples of the 2^32 floats. */
#include <criterion/criterion.h>
#include <float.h>
#include <math.h>
#include <string.h>

#include "xorpatch.h"

static const uint16_t FP16_ONE = 0x3c00, FP16_MINUS_HALF = 0xb800, FP16_TWO = 0x4000;

static void set_scale(uint8_t *block, uint16_t d)
{
    block[0] = (uint8_t)d;
    block[1] = (uint8_t)(d >> 8);
}

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void random_bytes(uint8_t *p, size_t n, uint64_t seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)splitmix(&seed);
}

static float f32_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static uint32_t bits_f32(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

/* ---- Q1_0 --------------------------------------------------------------------------- */

Test(q1_0, bit_order_is_lsb_first_and_set_means_plus_d)
{
    uint8_t block[18] = {0};
    set_scale(block, FP16_ONE);
    block[2 + 0] = 0x01;  /* weight 0 */
    block[2 + 1] = 0x80;  /* weight 15 */
    block[2 + 3] = 0xa5;  /* weights 24, 26, 29, 31 */
    block[2 + 15] = 0x40; /* weight 126 */
    const int plus[] = {0, 15, 24, 26, 29, 31, 126};
    for (int j = 0; j < 128; j++) {
        float want = -1.0f;
        for (size_t k = 0; k < sizeof plus / sizeof plus[0]; k++)
            if (plus[k] == j)
                want = 1.0f;
        cr_assert_eq(xp_q1_0_weight(block, j), want, "weight %d", j);
    }
    /* a negative scale turns a set bit into a negative weight */
    set_scale(block, FP16_MINUS_HALF);
    cr_assert_eq(xp_q1_0_weight(block, 0), -0.5f);
    cr_assert_eq(xp_q1_0_weight(block, 1), 0.5f);
}

Test(q1_0, dequant_row_over_several_blocks)
{
    uint8_t row[3 * 18];
    set_scale(row, FP16_ONE);
    memset(row + 2, 0xff, 16); /* every weight +1 */
    set_scale(row + 18, FP16_MINUS_HALF);
    memset(row + 20, 0x00, 16); /* every weight -(-0.5) */
    set_scale(row + 36, FP16_TWO);
    memset(row + 38, 0x55, 16); /* even weights +2, odd -2 */
    float out[384];
    xp_q1_0_dequant_row(row, 384, out);
    for (int j = 0; j < 128; j++) {
        cr_assert_eq(out[j], 1.0f, "weight %d", j);
        cr_assert_eq(out[128 + j], 0.5f, "weight %d", 128 + j);
        cr_assert_eq(out[256 + j], j % 2 ? -2.0f : 2.0f, "weight %d", 256 + j);
    }
    for (int j = 0; j < 384; j++)
        cr_assert_eq(out[j], xp_q1_0_weight(row + (j / 128) * 18, j % 128));
}

/* 3 rows of 256 weights: 6 blocks, 108 bytes. */
enum { NE0 = 256, ROWS = 3, BLOCKS = 6, NBYTES = BLOCKS * 18 };

/* Only the qs bytes of blocks [first, first + n) may differ, each by exactly 0xff. */
static void assert_only_blocks_flipped(const uint8_t *orig, const uint8_t *now, int first, int n)
{
    for (int i = 0; i < NBYTES; i++) {
        int block = i / 18, in_qs = i % 18 >= 2;
        int flipped = in_qs && block >= first && block < first + n;
        cr_assert_eq(now[i], flipped ? (uint8_t)(orig[i] ^ 0xff) : orig[i],
                     "byte %d (block %d, %s)", i, block, in_qs ? "sign bits" : "scale");
    }
}

Test(q1_0, flip_row_flips_exactly_its_blocks_sign_bits)
{
    uint8_t orig[NBYTES], t[NBYTES];
    random_bytes(orig, NBYTES, 1);
    for (int b = 0; b < BLOCKS; b++)
        set_scale(orig + b * 18, xp_f32_to_fp16(0.25f * (float)(b + 1)));
    for (int r = 0; r < ROWS; r++) {
        memcpy(t, orig, NBYTES);
        xp_q1_0_flip_row(t, NE0, r);
        assert_only_blocks_flipped(orig, t, 2 * r, 2);
        /* the row's weights are negated exactly, the others untouched */
        float before[NE0 * ROWS], after[NE0 * ROWS];
        for (int k = 0; k < ROWS; k++) {
            xp_q1_0_dequant_row(orig + k * 36, NE0, before + k * NE0);
            xp_q1_0_dequant_row(t + k * 36, NE0, after + k * NE0);
        }
        for (int j = 0; j < NE0 * ROWS; j++)
            cr_assert_eq(after[j], j / NE0 == r ? -before[j] : before[j], "weight %d", j);
        xp_q1_0_flip_row(t, NE0, r);
        cr_assert_eq(memcmp(t, orig, NBYTES), 0, "flipping row %d twice must restore it", r);
    }
}

Test(q1_0, flip_block_flips_exactly_its_sign_bits)
{
    uint8_t orig[NBYTES], t[NBYTES];
    random_bytes(orig, NBYTES, 2);
    for (int b = 0; b < BLOCKS; b++) {
        memcpy(t, orig, NBYTES);
        xp_q1_0_flip_block(t, b);
        assert_only_blocks_flipped(orig, t, b, 1);
        xp_q1_0_flip_block(t, b);
        cr_assert_eq(memcmp(t, orig, NBYTES), 0);
    }
}

Test(q1_0, flip_scale_bit_touches_one_bit_of_the_scale)
{
    uint8_t orig[NBYTES], t[NBYTES];
    random_bytes(orig, NBYTES, 3);
    set_scale(orig + 3 * 18, FP16_TWO);
    for (int bit = 0; bit < 16; bit++) {
        memcpy(t, orig, NBYTES);
        xp_q1_0_flip_scale_bit(t, 3, bit);
        for (int i = 0; i < NBYTES; i++) {
            uint8_t want = orig[i];
            if (i == 3 * 18 + bit / 8)
                want ^= (uint8_t)(1u << (bit % 8));
            cr_assert_eq(t[i], want, "bit %d: byte %d", bit, i);
        }
        xp_q1_0_flip_scale_bit(t, 3, bit);
        cr_assert_eq(memcmp(t, orig, NBYTES), 0, "bit %d twice must restore", bit);
    }
    /* bit 15 is the fp16 sign: every weight of the block negates, |d| stays */
    memcpy(t, orig, NBYTES);
    xp_q1_0_flip_scale_bit(t, 3, 15);
    for (int j = 0; j < 128; j++)
        cr_assert_eq(xp_q1_0_weight(t + 54, j), -xp_q1_0_weight(orig + 54, j));
    cr_assert_eq(xp_q1_0_block_scale(t, 3), 2.0f);
    /* bit 10 is the lowest exponent bit: 2.0 (0x4000) becomes 4.0 (0x4400) */
    memcpy(t, orig, NBYTES);
    xp_q1_0_flip_scale_bit(t, 3, 10);
    cr_assert_eq(xp_q1_0_block_scale(t, 3), 4.0f);
}

Test(q1_0, block_scale_and_row_mean_scale)
{
    uint8_t t[4 * 18];
    random_bytes(t, sizeof t, 4);
    const float d[4] = {1.0f, -2.0f, 0.5f, 4.0f};
    for (int b = 0; b < 4; b++)
        set_scale(t + b * 18, xp_f32_to_fp16(d[b]));
    for (int b = 0; b < 4; b++)
        cr_assert_eq(xp_q1_0_block_scale(t, b), fabsf(d[b]), "block %d", b);
    cr_assert_float_eq(xp_q1_0_row_mean_scale(t, 256, 0), 1.5f, 1e-7);
    cr_assert_float_eq(xp_q1_0_row_mean_scale(t, 256, 1), 2.25f, 1e-7);
    cr_assert_float_eq(xp_q1_0_row_mean_scale(t, 512, 0), 1.875f, 1e-7);
}

/* ---- fp16 ---------------------------------------------------------------------------- */

/* The value of a half from its fields, by the IEEE 754 definition. */
static double fp16_value(uint16_t h)
{
    int sign = h >> 15, e = (h >> 10) & 0x1f, m = h & 0x3ff;
    double v = e == 0    ? ldexp(m, -24)
               : e == 31 ? (m ? NAN : INFINITY)
                         : ldexp(1024 + m, e - 25);
    return sign ? -v : v;
}

static int fp16_is_nan(uint16_t h) { return (h & 0x7c00) == 0x7c00 && (h & 0x3ff); }

Test(fp16, every_half_converts_exactly_and_back)
{
    for (uint32_t h = 0; h < 65536; h++) {
        float f = xp_fp16_to_f32((uint16_t)h);
        if (fp16_is_nan((uint16_t)h)) {
            cr_assert(isnan(f), "0x%04x must stay NaN", h);
            uint16_t back = xp_f32_to_fp16(f);
            cr_assert(fp16_is_nan(back), "0x%04x -> 0x%04x is not NaN", h, back);
            cr_assert_eq(back & 0x8000, h & 0x8000, "NaN sign of 0x%04x", h);
            continue;
        }
        cr_assert_eq((double)f, fp16_value((uint16_t)h), "0x%04x", h);
        cr_assert_eq(!!signbit(f), h >> 15, "sign of 0x%04x", h);
        cr_assert_eq(xp_f32_to_fp16(f), h, "0x%04x does not round-trip", h);
    }
}

Test(fp16, halfway_rounds_to_even)
{
    /* every pair of neighbouring positive halves, subnormal and normal */
    for (uint16_t h = 0; h < 0x7c00; h++) {
        double lo = fp16_value(h), hi = h + 1 == 0x7c00 ? 65536.0 : fp16_value(h + 1);
        float mid = (float)((lo + hi) / 2);
        cr_assert_eq((double)mid, (lo + hi) / 2, "the midpoint must be exact in float");
        uint16_t even = h % 2 ? h + 1 : h;
        cr_assert_eq(xp_f32_to_fp16(mid), even, "midpoint above 0x%04x", h);
        cr_assert_eq(xp_f32_to_fp16(-mid), 0x8000 | even, "midpoint below 0x%04x", 0x8000 | h);
        cr_assert_eq(xp_f32_to_fp16(nextafterf(mid, INFINITY)), h + 1, "just above 0x%04x", h);
        cr_assert_eq(xp_f32_to_fp16(nextafterf(mid, 0)), h, "just below 0x%04x", h + 1);
    }
}

Test(fp16, overflow_to_infinity)
{
    cr_assert_eq(xp_f32_to_fp16(65504.0f), 0x7bff);
    cr_assert_eq(xp_f32_to_fp16(nextafterf(65520.0f, 0)), 0x7bff);
    cr_assert_eq(xp_f32_to_fp16(65520.0f), 0x7c00);
    cr_assert_eq(xp_f32_to_fp16(65536.0f), 0x7c00);
    cr_assert_eq(xp_f32_to_fp16(1e10f), 0x7c00);
    cr_assert_eq(xp_f32_to_fp16(FLT_MAX), 0x7c00);
    cr_assert_eq(xp_f32_to_fp16(INFINITY), 0x7c00);
    cr_assert_eq(xp_f32_to_fp16(-1e10f), 0xfc00);
    cr_assert_eq(xp_f32_to_fp16(-INFINITY), 0xfc00);
}

Test(fp16, subnormals_and_zeros)
{
    cr_assert_eq(xp_f32_to_fp16(0.0f), 0x0000);
    cr_assert_eq(xp_f32_to_fp16(-0.0f), 0x8000);
    cr_assert_eq(xp_f32_to_fp16(ldexpf(1, -24)), 0x0001, "smallest subnormal");
    cr_assert_eq(xp_f32_to_fp16(ldexpf(1, -25)), 0x0000, "half of it ties to even zero");
    cr_assert_eq(xp_f32_to_fp16(nextafterf(ldexpf(1, -25), 1)), 0x0001);
    cr_assert_eq(xp_f32_to_fp16(ldexpf(3, -25)), 0x0002, "1.5 x 2^-24 ties up to even");
    cr_assert_eq(xp_f32_to_fp16(ldexpf(1, -14) - ldexpf(1, -24)), 0x03ff, "largest subnormal");
    cr_assert_eq(xp_f32_to_fp16(ldexpf(1, -14)), 0x0400, "smallest normal");
    cr_assert_eq(xp_f32_to_fp16(f32_bits(1)), 0x0000, "smallest float subnormal");
    cr_assert_eq(xp_f32_to_fp16(-f32_bits(1)), 0x8000);
    cr_assert_eq(xp_f32_to_fp16(1e-30f), 0x0000);
}

Test(fp16, float_nans_stay_nan)
{
    const uint32_t nans[] = {0x7f800001u, 0x7fc00000u, 0x7fffffffu, 0xff800001u, 0xffc00000u};
    for (size_t i = 0; i < sizeof nans / sizeof nans[0]; i++) {
        uint16_t h = xp_f32_to_fp16(f32_bits(nans[i]));
        cr_assert(fp16_is_nan(h), "0x%08x -> 0x%04x", nans[i], h);
        cr_assert_eq(h >> 15, nans[i] >> 31);
    }
}

/* Nearest half to |x| by binary search over the positive halves (65536 standing in for
 * the first value past 65504), ties to the even one. */
static uint16_t fp16_nearest(float x)
{
    double a = fabs((double)x);
    uint16_t sign = signbit(x) ? 0x8000 : 0;
    if (a >= 65520.0)
        return sign | 0x7c00;
    uint16_t lo = 0, hi = 0x7bff;
    while (lo < hi) { /* largest h with value(h) <= a */
        uint16_t mid = (uint16_t)((lo + hi + 1) / 2);
        if (fp16_value(mid) <= a)
            lo = mid;
        else
            hi = mid - 1;
    }
    double below = fp16_value(lo), above = lo == 0x7bff ? 65536.0 : fp16_value(lo + 1);
    double dl = a - below, du = above - a;
    uint16_t h = dl < du ? lo : du < dl ? lo + 1 : (lo % 2 ? lo + 1 : lo);
    return sign | h;
}

Test(fp16, random_floats_round_to_nearest)
{
    uint64_t seed = 5;
    for (int i = 0; i < 200000; i++) {
        uint32_t u = (uint32_t)splitmix(&seed);
        if (i % 2) /* half the samples near the half range, where rounding matters */
            u = (u & 0x807fffffu) | ((uint32_t)(100 + splitmix(&seed) % 45) << 23);
        float x = f32_bits(u);
        if (isnan(x))
            continue;
        cr_assert_eq(xp_f32_to_fp16(x), fp16_nearest(x), "0x%08x (%g)", u, (double)x);
    }
}

/* ---- bf16 ---------------------------------------------------------------------------- */

static int bf16_is_nan(uint16_t h) { return (h & 0x7f80) == 0x7f80 && (h & 0x7f); }

Test(bf16, every_bf16_converts_exactly_and_back)
{
    for (uint32_t h = 0; h < 65536; h++) {
        float f = xp_bf16_to_f32((uint16_t)h);
        cr_assert_eq(bits_f32(f), h << 16, "0x%04x", h);
        uint16_t back = xp_f32_to_bf16(f);
        if (bf16_is_nan((uint16_t)h))
            cr_assert(bf16_is_nan(back) && (back & 0x8000) == (h & 0x8000), "0x%04x", h);
        else
            cr_assert_eq(back, h, "0x%04x does not round-trip", h);
    }
}

Test(bf16, halfway_rounds_to_even_and_overflows_to_infinity)
{
    for (uint32_t h = 0; h < 0x7f80; h += 7) {
        uint32_t mid = (h << 16) | 0x8000;
        uint16_t even = h % 2 ? (uint16_t)(h + 1) : (uint16_t)h;
        cr_assert_eq(xp_f32_to_bf16(f32_bits(mid)), even, "midpoint above 0x%04x", h);
        cr_assert_eq(xp_f32_to_bf16(f32_bits(mid | 0x80000000u)), 0x8000 | even);
        cr_assert_eq(xp_f32_to_bf16(f32_bits(mid + 1)), h + 1, "just above 0x%04x", h);
        cr_assert_eq(xp_f32_to_bf16(f32_bits(mid - 1)), h, "just below");
    }
    cr_assert_eq(xp_f32_to_bf16(FLT_MAX), 0x7f80);
    cr_assert_eq(xp_f32_to_bf16(-FLT_MAX), 0xff80);
    cr_assert_eq(xp_f32_to_bf16(f32_bits(0x7f7f7fffu)), 0x7f7f);
    cr_assert_eq(xp_f32_to_bf16(INFINITY), 0x7f80);
    const uint32_t nans[] = {0x7f800001u, 0x7fffffffu, 0xff800001u, 0x7fc00000u};
    for (size_t i = 0; i < sizeof nans / sizeof nans[0]; i++) {
        uint16_t h = xp_f32_to_bf16(f32_bits(nans[i]));
        cr_assert(bf16_is_nan(h), "0x%08x -> 0x%04x", nans[i], h);
        cr_assert_eq(h >> 15, nans[i] >> 31);
    }
}

Test(bf16, random_floats_round_to_nearest)
{
    uint64_t seed = 6;
    for (int i = 0; i < 200000; i++) {
        uint32_t u = (uint32_t)splitmix(&seed);
        float x = f32_bits(u);
        if (isnan(x))
            continue;
        /* the two bf16 neighbours of x, compared in double where both are exact */
        uint32_t lo = u & 0xffff0000u;
        double vlo = fabs((double)f32_bits(lo));
        double vhi = (lo & 0x7fffffffu) == 0x7f7f0000u ? ldexp(1, 128)
                                                        : fabs((double)f32_bits(lo + 0x10000));
        double a = fabs((double)x), dl = a - vlo, du = vhi - a;
        uint16_t want = (uint16_t)(lo >> 16);
        if (du < dl || (du == dl && (want & 1)))
            want++;
        if ((u & 0x7fffffffu) >= 0x7f800000u) /* infinity */
            want = (uint16_t)(u >> 16);
        cr_assert_eq(xp_f32_to_bf16(x), want, "0x%08x (%g)", u, (double)x);
    }
}
