/* The statistics an honest evaluation reports: Wilson score intervals for rates, the
 * exact McNemar test for paired right/wrong outcomes, and a 95% interval for the paired
 * difference. Checked against published figures (Neagari's 6/78 held-out conversion,
 * its null-baseline acceptance rates, a GSM8K comparison) in tests/test_eval.c. */
#include <math.h>
#include <stdlib.h>

#include "xorpatch/eval.h"

#define Z95 1.959963984540054

void xp_wilson(size_t k, size_t n, double *lo, double *hi)
{
    if (n == 0) {
        *lo = *hi = 0;
        return;
    }
    double nn = (double)n, p = (double)k / nn, z2 = Z95 * Z95;
    double den = 1 + z2 / nn, centre = (p + z2 / (2 * nn)) / den;
    double half = Z95 * sqrt(p * (1 - p) / nn + z2 / (4 * nn * nn)) / den;
    *lo = fmax(0, centre - half);
    *hi = fmin(1, centre + half);
}

double xp_mcnemar_exact(size_t b, size_t c)
{
    size_t n = b + c, k = b < c ? b : c;
    if (n == 0)
        return 1;
    /* P(X <= k) summed in log space: n can be in the thousands */
    double tail = 0;
    for (size_t i = 0; i <= k; i++)
        tail += exp(lgamma((double)n + 1) - lgamma((double)i + 1) - lgamma((double)(n - i) + 1) -
                    (double)n * log(2.0));
    return fmin(1, 2 * tail);
}

/* Wald interval on the discordant pairs: var = (b + c − (b − c)²/n) / n². */
void xp_paired_diff_ci(size_t b, size_t c, size_t n, double *diff, double *lo, double *hi)
{
    if (n == 0) {
        *diff = *lo = *hi = 0;
        return;
    }
    double nn = (double)n, d = ((double)b - (double)c) / nn;
    double var = ((double)b + (double)c - nn * d * d) / (nn * nn);
    double half = Z95 * sqrt(var > 0 ? var : 0);
    *diff = d;
    *lo = d - half;
    *hi = d + half;
}

void xp_paired_tally(const bool *before, const bool *after, const bool *select, size_t n,
                     xp_paired *out)
{
    *out = (xp_paired){0};
    for (size_t i = 0; i < n; i++) {
        if (select && !select[i])
            continue;
        out->n++;
        if (before[i])
            after[i] ? out->stayed_right++ : out->broke++;
        else
            after[i] ? out->fixed++ : out->stayed_wrong++;
    }
    size_t right[2] = {out->stayed_right + out->broke, out->stayed_right + out->fixed};
    for (int k = 0; k < 2; k++) {
        out->acc[k] = out->n ? (double)right[k] / (double)out->n : 0;
        xp_wilson(right[k], out->n, &out->lo[k], &out->hi[k]);
    }
    out->mcnemar_p = xp_mcnemar_exact(out->fixed, out->broke);
    xp_paired_diff_ci(out->fixed, out->broke, out->n, &out->diff, &out->diff_lo, &out->diff_hi);
}

/* The mean ranks (1-based) of v, ties averaged. */
static bool ranks_of(const double *v, size_t n, double *rank)
{
    size_t *ix = malloc(n * sizeof *ix);
    if (!ix)
        return false;
    for (size_t i = 0; i < n; i++)
        ix[i] = i;
    for (size_t i = 1; i < n; i++) /* insertion sort: stable, n is a log's length */
        for (size_t j = i; j > 0 && v[ix[j - 1]] > v[ix[j]]; j--) {
            size_t t = ix[j];
            ix[j] = ix[j - 1];
            ix[j - 1] = t;
        }
    for (size_t i = 0; i < n;) {
        size_t j = i;
        while (j + 1 < n && v[ix[j + 1]] == v[ix[i]])
            j++;
        for (size_t k = i; k <= j; k++)
            rank[ix[k]] = (double)(i + j) / 2 + 1;
        i = j + 1;
    }
    free(ix);
    return true;
}

double xp_spearman(const double *x, const double *y, size_t n)
{
    if (n < 2)
        return NAN;
    double *rx = malloc(2 * n * sizeof *rx), *ry = rx ? rx + n : NULL;
    if (!rx || !ranks_of(x, n, rx) || !ranks_of(y, n, ry)) {
        free(rx);
        return NAN;
    }
    double mean = ((double)n + 1) / 2, sxy = 0, sxx = 0, syy = 0;
    for (size_t i = 0; i < n; i++) {
        sxy += (rx[i] - mean) * (ry[i] - mean);
        sxx += (rx[i] - mean) * (rx[i] - mean);
        syy += (ry[i] - mean) * (ry[i] - mean);
    }
    free(rx);
    return sxx > 0 && syy > 0 ? sxy / sqrt(sxx * syy) : NAN;
}
