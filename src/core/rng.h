/* Seeded random numbers (xoshiro256** seeded through splitmix64): the same seed gives
 * the same stream on every machine, so searches and synthetic models reproduce. */
#ifndef XP_CORE_RNG_H
#define XP_CORE_RNG_H
#include <stdint.h>

typedef struct xp_rng {
    uint64_t s[4];
} xp_rng;

void xp_rng_seed(xp_rng *r, uint64_t seed);
uint64_t xp_rng_u64(xp_rng *r);
/* Uniform in [0, n) without modulo bias; n > 0. */
uint64_t xp_rng_below(xp_rng *r, uint64_t n);
/* Uniform float in [0, 1) with 24 random bits. */
float xp_rng_f32(xp_rng *r);
/* Uniform double in [0, 1) with 53 random bits. */
double xp_rng_f64(xp_rng *r);
#endif
