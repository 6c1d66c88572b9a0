/* xoshiro256** with splitmix64 seeding (public-domain algorithms by Blackman and
 * Vigna), written from their published description. */
#include "core/rng.h"

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void xp_rng_seed(xp_rng *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&seed);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t xp_rng_u64(xp_rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

uint64_t xp_rng_below(xp_rng *r, uint64_t n)
{
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do
        x = xp_rng_u64(r);
    while (x >= limit);
    return x % n;
}

float xp_rng_f32(xp_rng *r) { return (float)(xp_rng_u64(r) >> 40) * 0x1.0p-24f; }
double xp_rng_f64(xp_rng *r) { return (double)(xp_rng_u64(r) >> 11) * 0x1.0p-53; }
