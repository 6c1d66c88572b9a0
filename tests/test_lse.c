/* The log-sum-exp every log-probability is normalised by: within float precision of the
 * exact value over rows of every kind (flat, spread, huge and tiny logits, lengths that
 * are not a multiple of its chunks) and over the whole range of its exponential. */
#include <math.h>

#include "core/lse.h"
#include "core/rng.h"
#include "testutil.h"

static double exact(const float *row, size_t n)
{
    double mx = row[0], s = 0;
    for (size_t i = 1; i < n; i++)
        mx = row[i] > mx ? row[i] : mx;
    for (size_t i = 0; i < n; i++)
        s += exp((double)row[i] - mx);
    return mx + log(s);
}

Test(lse, matches_exact_arithmetic)
{
    xp_rng r;
    xp_rng_seed(&r, 4);
    size_t lens[] = {1, 2, 255, 256, 257, 1000, 151669};
    float spreads[] = {0.0f, 1.0f, 10.0f, 100.0f, 1000.0f};
    float *row = malloc(151669 * sizeof *row);
    for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++)
        for (size_t si = 0; si < sizeof spreads / sizeof spreads[0]; si++) {
            size_t n = lens[li];
            float offset = (float)(xp_rng_f64(&r) * 200 - 100);
            for (size_t i = 0; i < n; i++)
                row[i] = offset + spreads[si] * (xp_rng_f32(&r) * 2 - 1);
            double want = exact(row, n), got = xp_log_sum_exp(row, n);
            cr_expect(fabs(got - want) <= 1e-6 * (1 + fabs(want)), "n %zu spread %g: %.9g vs "
                      "%.9g", n, spreads[si], got, want);
        }
    /* the polynomial over the whole reduced range, against exp itself */
    for (int i = 0; i <= 2000; i++) {
        float x = -87.0f * (float)i / 2000.0f, pair[2] = {0.0f, x};
        double want = exact(pair, 2), got = xp_log_sum_exp(pair, 2);
        cr_expect(fabs(got - want) <= 2e-7, "e^%g: %.9g vs %.9g", x, got, want);
    }
    free(row);
}
