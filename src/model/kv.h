/* The layout of a KV cache, for the forward paths: layer l, position p starts at
 * (l * cap + p) * dim in k and in v. A scratch cache keeps one layer only (layers == 1)
 * and serves every layer in turn: enough for the fast path, which finishes a layer for
 * the whole batch before it starts the next, when nothing is kept for later tokens. */
#ifndef XP_KV_H
#define XP_KV_H
#include <stddef.h>

#include "xorpatch/model.h"

struct xp_kv {
    size_t cap, len, dim, layers;
    float *k, *v;
    const xp_overlay *overlay; /* the patch this sequence runs with (NULL: the base) */
};

/* A cache of `layers` layers (the model's count, or 1 for a scratch cache). */
int xp_kv_new_layers(xp_kv **out, const xp_model *m, size_t capacity, size_t layers,
                     xp_err *err);

static inline float *xp_kv_k(const xp_kv *kv, size_t l, size_t p)
{
    return kv->k + ((kv->layers == 1 ? 0 : l) * kv->cap + p) * kv->dim;
}
static inline float *xp_kv_v(const xp_kv *kv, size_t l, size_t p)
{
    return kv->v + ((kv->layers == 1 ? 0 : l) * kv->cap + p) * kv->dim;
}
#endif
