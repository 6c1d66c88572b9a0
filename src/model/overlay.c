/* Patch overlays: the rows a patch changes, held beside the one mapped copy of the base
 * weights, so sequences of different patches share a batch of the fast path. An overlay
 * is attached to a sequence's KV cache; after each base product the forward path calls
 * one hook per projection, which recomputes, for the tokens of overlaid sequences only,
 * the output values of the rows their overlay holds (a gate or up row: that column of
 * the activation; an embedding row: that token's input). Each value is computed by the
 * portable kernel on that token's quantised inputs, which gives the bits every kernel
 * gives, so a sequence's logits are bit-identical to those of the model with the patch
 * applied, whatever else is in the batch. Memory: one copy of each touched row. */
#include <stdlib.h>
#include <string.h>

#include "model/forward_paths.h"
#include "model/kernels.h"

/* The touched rows of one tensor, ascending, and their bytes as the overlay sees them. */
typedef struct overlay_tensor {
    const uint8_t *base; /* the tensor's data in the map: its identity */
    uint64_t row_bytes;
    int64_t ne0;
    size_t n, cap;
    int64_t *rows;
    uint8_t *bytes; /* [n][row_bytes] */
} overlay_tensor;

struct xp_overlay {
    const xp_model *m;
    size_t n, cap;
    overlay_tensor *t;
};

int xp_overlay_new(xp_overlay **out, const xp_model *m, xp_err *err)
{
    *out = calloc(1, sizeof **out);
    if (!*out)
        return xp_err_set(err, XP_ENOMEM, "out of memory");
    (*out)->m = m;
    return XP_OK;
}

void xp_overlay_free(xp_overlay *ov)
{
    if (!ov)
        return;
    for (size_t i = 0; i < ov->n; i++)
        free(ov->t[i].rows), free(ov->t[i].bytes);
    free(ov->t);
    free(ov);
}

size_t xp_overlay_rows(const xp_overlay *ov)
{
    size_t n = 0;
    for (size_t i = 0; ov && i < ov->n; i++)
        n += ov->t[i].n;
    return n;
}

/* The model's weight of a tensor name, or NULL. */
static const xp_weight *weight_named(const xp_model *m, const char *name)
{
    uint32_t layer;
    int proj = xp_tensor_name_parse(name, &layer);
    if (proj >= 0)
        return layer < m->shape.n_layer ? xp_proj_weight(&m->layers[layer], proj) : NULL;
    if (strcmp(name, "token_embd.weight") == 0)
        return &m->tok_embd;
    if (strcmp(name, "output.weight") == 0 && !m->shape.tied_output)
        return &m->output;
    return NULL;
}

static overlay_tensor *tensor_of(const xp_overlay *ov, const xp_weight *w)
{
    for (size_t i = 0; ov && i < ov->n; i++)
        if (ov->t[i].base == w->data)
            return &ov->t[i];
    return NULL;
}

int xp_overlay_row(xp_overlay *ov, const char *tensor, int64_t row, uint8_t **bytes, int64_t *ne0,
                   xp_err *err)
{
    const xp_weight *w = weight_named(ov->m, tensor);
    if (!w || w->type != XP_TYPE_Q1_0)
        return xp_err_set(err, XP_EINVAL, "%s: not a Q1_0 matrix of the model", tensor);
    if (row < 0 || row >= w->ne1)
        return xp_err_set(err, XP_EINVAL, "%s: row %lld out of range [0, %lld)", tensor,
                          (long long)row, (long long)w->ne1);
    overlay_tensor *t = tensor_of(ov, w);
    if (!t) {
        if (ov->n == ov->cap) {
            size_t cap = ov->cap ? 2 * ov->cap : 8;
            overlay_tensor *grown = realloc(ov->t, cap * sizeof *grown);
            if (!grown)
                return xp_err_set(err, XP_ENOMEM, "out of memory");
            ov->t = grown, ov->cap = cap;
        }
        t = &ov->t[ov->n++];
        *t = (overlay_tensor){w->data, w->row_bytes, w->ne0, 0, 0, NULL, NULL};
    }
    size_t at = 0;
    while (at < t->n && t->rows[at] < row)
        at++;
    if (at == t->n || t->rows[at] != row) { /* a new row: a copy of the base row */
        if (t->n == t->cap) {
            size_t cap = t->cap ? 2 * t->cap : 8;
            int64_t *rows = realloc(t->rows, cap * sizeof *rows);
            if (rows)
                t->rows = rows;
            uint8_t *b = rows ? realloc(t->bytes, cap * t->row_bytes) : NULL;
            if (!b)
                return xp_err_set(err, XP_ENOMEM, "out of memory");
            t->bytes = b, t->cap = cap;
        }
        memmove(t->rows + at + 1, t->rows + at, (t->n - at) * sizeof *t->rows);
        memmove(t->bytes + (at + 1) * t->row_bytes, t->bytes + at * t->row_bytes,
                (t->n - at) * t->row_bytes);
        t->rows[at] = row;
        memcpy(t->bytes + at * t->row_bytes, w->data + (uint64_t)row * w->row_bytes, t->row_bytes);
        t->n++;
    }
    *bytes = t->bytes + at * t->row_bytes;
    *ne0 = t->ne0;
    return XP_OK;
}

void xp_kv_set_overlay(xp_kv *kv, const xp_overlay *ov) { kv->overlay = ov; }

/* Row i of the overlay tensor times token row i of qa, as one value. */
static float row_product(const overlay_tensor *t, size_t i, const xp_qact *qa, size_t tok)
{
    xp_weight w = {.type = XP_TYPE_Q1_0,
                   .ne0 = t->ne0,
                   .ne1 = 1,
                   .row_bytes = t->row_bytes,
                   .data = t->bytes + i * t->row_bytes};
    xp_qact one = {.T = 1,
                   .K = qa->K,
                   .nb = qa->nb,
                   .q = qa->q + tok * (size_t)qa->K,
                   .s = qa->s + tok * (size_t)qa->nb,
                   .sum = qa->sum + tok * (size_t)qa->nb};
    float y;
    xp_kernels_portable.matmul(&w, &one, &y, 1, 0, 1);
    return y;
}

void xp_overlay_product(const xp_weight *w, xp_kv *const *kv, const size_t *at, const xp_qact *qa,
                        float *y, size_t ldy)
{
    for (size_t i = 0; i < qa->T; i++) {
        const overlay_tensor *t = tensor_of(kv[at ? at[i] : i]->overlay, w);
        for (size_t r = 0; t && r < t->n; r++)
            y[i * ldy + (size_t)t->rows[r]] = row_product(t, r, qa, i);
    }
}

void xp_overlay_activation(const xp_layer *L, xp_fast_batch *b)
{
    size_t F = (size_t)L->gate.ne1;
    for (size_t i = 0; i < b->T; i++) {
        const xp_overlay *ov = b->kv[i]->overlay;
        const overlay_tensor *g = tensor_of(ov, &L->gate), *u = tensor_of(ov, &L->up);
        /* every row either touches: gate and up of it, each patched or base */
        for (int side = 0; side < 2; side++) {
            const overlay_tensor *t = side ? u : g, *other = side ? g : u;
            for (size_t r = 0; t && r < t->n; r++) {
                int64_t row = t->rows[r];
                size_t j = 0;
                while (other && j < other->n && other->rows[j] < row)
                    j++;
                bool in_other = other && j < other->n && other->rows[j] == row;
                if (side && in_other)
                    continue; /* done with the gate's rows */
                overlay_tensor base_row = {.row_bytes = L->gate.row_bytes, .ne0 = L->gate.ne0};
                const xp_weight *ow = side ? &L->gate : &L->up;
                base_row.bytes = ow->data + (uint64_t)row * ow->row_bytes;
                float a = row_product(t, r, &b->qa, i);
                float o = in_other ? row_product(other, j, &b->qa, i)
                                   : row_product(&base_row, 0, &b->qa, i);
                float gv = side ? o : a, uv = side ? a : o;
                xp_swiglu(b->gate + i * F + (size_t)row, &gv, &uv, 1);
            }
        }
    }
}

void xp_overlay_embed(const xp_model *m, xp_fast_batch *b)
{
    for (size_t i = 0; i < b->T; i++) {
        const overlay_tensor *t = tensor_of(b->kv[i]->overlay, &m->tok_embd);
        for (size_t r = 0; t && r < t->n; r++)
            if (t->rows[r] == b->tok[i]) {
                xp_weight w = m->tok_embd;
                w.data = t->bytes + r * t->row_bytes;
                xp_weight_row(&w, 0, b->x + i * m->shape.n_embd);
            }
    }
}
