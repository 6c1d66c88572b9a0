/* The layout of a KV cache, for the forward paths: layer l, position p starts at
 * (l * cap + p) * dim in k and in v. */
#ifndef XP_KV_H
#define XP_KV_H
#include <stddef.h>

#include "xorpatch.h"

struct xp_kv {
    size_t cap, len, dim;
    float *k, *v;
};

static inline float *xp_kv_k(const xp_kv *kv, size_t l, size_t p)
{
    return kv->k + (l * kv->cap + p) * kv->dim;
}
static inline float *xp_kv_v(const xp_kv *kv, size_t l, size_t p)
{
    return kv->v + (l * kv->cap + p) * kv->dim;
}
#endif
