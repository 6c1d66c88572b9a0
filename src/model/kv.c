/* A sequence's key/value cache: for every layer, capacity positions of the KV heads'
 * keys and values in fp32 (positions contiguous per layer, so attention streams them). */
#include "model/kv.h"

#include <stdlib.h>

#include "model/model.h"

int xp_kv_new(xp_kv **out, const xp_model *m, size_t capacity, xp_err *err)
{
    return xp_kv_new_layers(out, m, capacity, m->shape.n_layer, err);
}

int xp_kv_new_layers(xp_kv **out, const xp_model *m, size_t capacity, size_t layers,
                     xp_err *err)
{
    *out = NULL;
    xp_kv *kv = calloc(1, sizeof *kv);
    size_t dim = (size_t)m->shape.n_head_kv * m->shape.head_dim;
    size_t n = layers * capacity * dim;
    if (capacity > m->shape.n_ctx)
        return free(kv), xp_err_set(err, XP_EINVAL, "a cache of %zu positions exceeds the "
                                    "model's context of %u", capacity, m->shape.n_ctx);
    if (kv) {
        kv->k = malloc((n ? n : 1) * sizeof *kv->k);
        kv->v = malloc((n ? n : 1) * sizeof *kv->v);
    }
    if (!kv || !kv->k || !kv->v) {
        xp_kv_free(kv);
        return xp_err_set(err, XP_ENOMEM, "out of memory for a cache of %zu positions",
                          capacity);
    }
    kv->cap = capacity;
    kv->dim = dim;
    kv->layers = layers;
    *out = kv;
    return XP_OK;
}

void xp_kv_free(xp_kv *kv)
{
    if (!kv)
        return;
    free(kv->k);
    free(kv->v);
    free(kv);
}

size_t xp_kv_len(const xp_kv *kv) { return kv->len; }
size_t xp_kv_capacity(const xp_kv *kv) { return kv->cap; }
void xp_kv_truncate(xp_kv *kv, size_t n)
{
    if (n < kv->len)
        kv->len = n;
}
