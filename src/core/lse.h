/* log(sum(exp(row))) over a vocabulary-wide row of logits, the normaliser of every
 * log-probability a metric reads. It is a search's hot spot after the matrix products
 * (one per answer position, 151,669 terms each), so it is computed with a fixed
 * sequence of float operations that compilers vectorise and every build evaluates to the
 * same bits: e^x by range reduction and a polynomial, summed into 16 double lanes in a
 * fixed order. Accurate to a few float ulps per term. */
#ifndef XP_CORE_LSE_H
#define XP_CORE_LSE_H
#include <stddef.h>

double xp_log_sum_exp(const float *row, size_t n);
#endif
