/* The in-memory patch: a set of XOR flips on named Q1_0 tensors, brought to one canonical
 * form (sorted, identical flips cancelled, masks merged, and once the shapes are known
 * row/block overlaps resolved), bound to a model's layout with every flip validated
 * before anything is touched, counted, and identified by the SHA-256 of its canonical
 * flips. Canonical form matters because XOR makes order and repetition meaningless: two
 * patches with the same effect must compare, hash and stack as the same patch. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "patch/patch_internal.h"

#define MAX_NAME 63

/* A tensor's [ne0, ne1] in a named shape's model; XP_ENOTFOUND when the shape has no such
 * Q1_0 matrix. */
static int shape_tensor(const xp_shape *s, const char *name, int64_t *ne0, int64_t *ne1)
{
    if (strcmp(name, "token_embd.weight") == 0 ||
        (strcmp(name, "output.weight") == 0 && !s->tied_output)) {
        *ne0 = s->n_embd, *ne1 = (int64_t)s->n_vocab;
        return XP_OK;
    }
    uint32_t layer;
    int proj = xp_tensor_name_parse(name, &layer);
    if (proj < 0 || layer >= s->n_layer)
        return XP_ENOTFOUND;
    xp_proj_shape(s, proj, ne0, ne1);
    return XP_OK;
}

int xp_patch_new(xp_patch **out, xp_err *err)
{
    *out = calloc(1, sizeof **out);
    if (!*out)
        return xp_err_set(err, XP_ENOMEM, "patch: out of memory");
    (*out)->canonical = true;
    (*out)->bound = true;
    return XP_OK;
}

void xp_patch_free(xp_patch *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->n_tensors; i++)
        free(p->tensors[i].name);
    free(p->tensors);
    free(p->flips);
    free(p->name), free(p->description), free(p->base_model), free(p->tool);
    free(p->created), free(p->architecture), free(p->search), free(p->source), free(p->path);
    free(p);
}

void xp_patch_list_free(xp_patch **ps, size_t n)
{
    for (size_t i = 0; ps && i < n; i++)
        xp_patch_free(ps[i]);
    free(ps);
}

const char *xp_patch_where(const xp_patch *p)
{
    return p->path ? p->path : p->name ? p->name : "<patch>";
}

void xp_flip_describe(const xp_patch *p, const xp_flip *f, char *out, size_t size)
{
    const char *t = f->tensor < p->n_tensors ? p->tensors[f->tensor].name : "?";
    const xp_flip_kind_info *k = xp_flip_kind_of(f->kind);
    char what[96];
    if (k)
        k->describe(f, what, sizeof what);
    else
        snprintf(what, sizeof what, "flip of kind %u", f->kind);
    snprintf(out, size, "%s %s", t, what);
}

static int tensor_slot(xp_patch *p, const char *name, uint32_t *idx, xp_err *err)
{
    /* flips usually come grouped by tensor: try the last one's first */
    if (p->n_flips && strcmp(p->tensors[p->flips[p->n_flips - 1].tensor].name, name) == 0) {
        *idx = p->flips[p->n_flips - 1].tensor;
        return XP_OK;
    }
    for (size_t i = 0; i < p->n_tensors; i++)
        if (strcmp(p->tensors[i].name, name) == 0) {
            *idx = (uint32_t)i;
            return XP_OK;
        }
    xp_patch_tensor *t = xp_realloc_array(p->tensors, p->n_tensors + 1, sizeof *t);
    if (!t)
        return xp_err_set(err, XP_ENOMEM, "patch: out of memory");
    p->tensors = t;
    if (!(t[p->n_tensors].name = xp_strdup(name)))
        return xp_err_set(err, XP_ENOMEM, "patch: out of memory");
    t[p->n_tensors].ne0 = t[p->n_tensors].ne1 = 0;
    *idx = (uint32_t)p->n_tensors++;
    return XP_OK;
}

int xp_patch_add(xp_patch *p, const char *tensor, const xp_flip *f, xp_err *err)
{
    size_t len = strlen(tensor);
    if (len == 0 || len > MAX_NAME)
        return xp_err_set(err, XP_EINVAL, "%s: flip %zu: tensor name '%s' must have 1 to %d "
                          "bytes", xp_patch_where(p), p->n_flips, tensor, MAX_NAME);
    if (!xp_flip_kind_of(f->kind))
        return xp_err_set(err, XP_EINVAL, "%s: flip %zu: kind %u is not a flip kind",
                          xp_patch_where(p), p->n_flips, f->kind);
    if (f->index < 0 || f->index > XP_PATCH_MAX_INDEX)
        return xp_err_set(err, XP_EINVAL, "%s: flip %zu (%s): index %lld is out of range",
                          xp_patch_where(p), p->n_flips, tensor, (long long)f->index);
    if (f->kind == XP_FLIP_SCALE && f->bit > 15)
        return xp_err_set(err, XP_EINVAL, "%s: flip %zu (%s block %lld): scale bit %u, expected "
                          "0 to 15 (the bits of an fp16)", xp_patch_where(p), p->n_flips, tensor,
                          (long long)f->index, f->bit);
    if (p->n_flips == XP_PATCH_MAX_FLIPS)
        return xp_err_set(err, XP_EINVAL, "%s: more than %d flips: too large for a patch",
                          xp_patch_where(p), XP_PATCH_MAX_FLIPS);
    if (p->n_flips == p->cap_flips) {
        size_t cap = p->cap_flips ? 2 * p->cap_flips : 64;
        xp_flip *fl = xp_realloc_array(p->flips, cap, sizeof *fl);
        if (!fl)
            return xp_err_set(err, XP_ENOMEM, "patch: out of memory");
        p->flips = fl;
        p->cap_flips = cap;
    }
    uint32_t idx = 0;
    int rc = tensor_slot(p, tensor, &idx, err);
    if (rc)
        return rc;
    xp_flip *d = &p->flips[p->n_flips];
    memset(d, 0, sizeof *d);
    d->tensor = idx;
    d->src = (uint32_t)p->n_flips++;
    p->n_listed++;
    d->index = f->index;
    d->kind = f->kind;
    if (f->kind == XP_FLIP_SCALE)
        d->bit = f->bit;
    if (f->kind == XP_FLIP_ROW_GROUP)
        d->group = f->group;
    if (f->kind == XP_FLIP_MASK)
        memcpy(d->mask, f->mask, 16);
    p->canonical = p->bound = false;
    return XP_OK;
}

int xp_patch_add_row(xp_patch *p, const char *tensor, int64_t row, xp_err *err)
{
    xp_flip f = {.kind = XP_FLIP_ROW, .index = row};
    return xp_patch_add(p, tensor, &f, err);
}

int xp_patch_add_block(xp_patch *p, const char *tensor, int64_t block, xp_err *err)
{
    xp_flip f = {.kind = XP_FLIP_BLOCK, .index = block};
    return xp_patch_add(p, tensor, &f, err);
}

int xp_patch_add_scale_bit(xp_patch *p, const char *tensor, int64_t block, int bit,
                           xp_err *err)
{
    /* an impossible bit stays impossible (255) so xp_patch_add reports it */
    xp_flip f = {.kind = XP_FLIP_SCALE, .index = block,
                 .bit = (uint8_t)(bit < 0 || bit > 15 ? 255 : bit)};
    return xp_patch_add(p, tensor, &f, err);
}

int xp_patch_add_mask(xp_patch *p, const char *tensor, int64_t block, const uint8_t mask[16],
                      xp_err *err)
{
    xp_flip f = {.kind = XP_FLIP_MASK, .index = block};
    memcpy(f.mask, mask, 16);
    return xp_patch_add(p, tensor, &f, err);
}

/* ---- canonical form ------------------------------------------------------------ */

/* While merging, block and mask flips (and rows whose length is known) are all "qs"
 * entries: a block's sign-bit mask. Classes order the merge; kinds order the result. */
enum { C_ROW, C_QS, C_SCALE, C_GROUP };

static int class_of(const xp_flip *f)
{
    switch (f->kind) {
    case XP_FLIP_ROW: return C_ROW;
    case XP_FLIP_SCALE: return C_SCALE;
    case XP_FLIP_ROW_GROUP: return C_GROUP;
    default: return C_QS;
    }
}

static int cmp_merge(const void *a, const void *b)
{
    const xp_flip *x = a, *y = b;
    if (x->tensor != y->tensor)
        return x->tensor < y->tensor ? -1 : 1;
    int cx = class_of(x), cy = class_of(y);
    if (cx != cy)
        return cx < cy ? -1 : 1;
    if (x->index != y->index)
        return x->index < y->index ? -1 : 1;
    if (x->bit != y->bit)
        return x->bit < y->bit ? -1 : 1;
    if (x->group != y->group)
        return x->group < y->group ? -1 : 1;
    return x->src < y->src ? -1 : x->src > y->src;
}

static int cmp_final(const void *a, const void *b)
{
    const xp_flip *x = a, *y = b;
    if (x->tensor != y->tensor)
        return x->tensor < y->tensor ? -1 : 1;
    if (x->kind != y->kind)
        return x->kind < y->kind ? -1 : 1;
    if (x->index != y->index)
        return x->index < y->index ? -1 : 1;
    if (x->bit != y->bit)
        return x->bit < y->bit ? -1 : 1;
    return x->group < y->group ? -1 : x->group > y->group;
}

/* Identical flips (kind, index, bit, group and mask) side by side, then by position. */
static int cmp_repeat(const void *a, const void *b)
{
    const xp_flip *x = a, *y = b;
    int c = cmp_final(a, b);
    if (!c && x->kind == XP_FLIP_MASK)
        c = memcmp(x->mask, y->mask, 16);
    return c ? c : x->src < y->src ? -1 : x->src > y->src;
}

int xp_patch_refuse_repeats(const xp_patch *p, xp_err *err)
{
    if (p->n_flips < 2)
        return XP_OK;
    xp_flip *w = xp_calloc(p->n_flips, sizeof *w);
    if (!w)
        return xp_err_set(err, XP_ENOMEM, "patch: out of memory");
    memcpy(w, p->flips, p->n_flips * sizeof *w);
    qsort(w, p->n_flips, sizeof *w, cmp_repeat);
    int rc = XP_OK;
    for (size_t i = 1; i < p->n_flips && !rc; i++) {
        if (cmp_final(&w[i - 1], &w[i]) ||
            (w[i].kind == XP_FLIP_MASK && memcmp(w[i - 1].mask, w[i].mask, 16)))
            continue;
        char d[160];
        xp_flip_describe(p, &w[i], d, sizeof d);
        rc = xp_err_set(err, XP_EFORMAT,
                        "%s: flips %u and %u are the same flip (%s): listed twice it would "
                        "cancel itself, so the file is refused; keep it once, or drop both",
                        xp_patch_where(p), w[i - 1].src, w[i].src, d);
    }
    free(w);
    return rc;
}

static int cmp_tensor_order(const void *a, const void *b)
{
    const xp_patch_tensor *const *x = a, *const *y = b;
    return strcmp((*x)->name, (*y)->name);
}

/* Sorts the tensor table by name and renumbers the flips. */
static int sort_tensors(xp_patch *p, xp_err *err)
{
    size_t n = p->n_tensors;
    xp_patch_tensor **order = xp_calloc(n, sizeof *order);
    xp_patch_tensor *sorted = xp_calloc(n, sizeof *sorted);
    uint32_t *remap = xp_calloc(n, sizeof *remap);
    if (!order || !sorted || !remap) {
        free(order), free(sorted), free(remap);
        return xp_err_set(err, XP_ENOMEM, "patch: out of memory");
    }
    for (size_t i = 0; i < n; i++)
        order[i] = &p->tensors[i];
    qsort(order, n, sizeof *order, cmp_tensor_order);
    for (size_t i = 0; i < n; i++) {
        sorted[i] = *order[i];
        remap[order[i] - p->tensors] = (uint32_t)i;
    }
    for (size_t i = 0; i < p->n_flips; i++)
        p->flips[i].tensor = remap[p->flips[i].tensor];
    free(p->tensors);
    p->tensors = sorted;
    free(order), free(remap);
    return XP_OK;
}

/* Checks a flip against its tensor's known shape. */
static int check_range(const xp_patch *p, const xp_flip *f, xp_err *err)
{
    const xp_patch_tensor *t = &p->tensors[f->tensor];
    if (!t->ne0)
        return XP_OK;
    int64_t per = t->ne0 / XP_Q1_0_WEIGHTS, blocks = per * t->ne1;
    bool by_row = xp_flip_kind_of(f->kind)->by_row;
    char d[160];
    xp_flip_describe(p, f, d, sizeof d);
    if (by_row && f->index >= t->ne1)
        return xp_err_set(err, XP_EINVAL, "%s: flip %u (%s): row out of range: the tensor has "
                          "%lld rows (0 to %lld)", xp_patch_where(p), f->src, d,
                          (long long)t->ne1, (long long)t->ne1 - 1);
    if (f->kind == XP_FLIP_ROW_GROUP && f->group >= per)
        return xp_err_set(err, XP_EINVAL, "%s: flip %u (%s): group out of range: a row of the "
                          "tensor has %lld blocks (0 to %lld)", xp_patch_where(p), f->src, d,
                          (long long)per, (long long)per - 1);
    if (!by_row && f->index >= blocks) {
        return xp_err_set(err, XP_EINVAL, "%s: flip %u (%s): block out of range: the tensor has "
                          "%lld blocks (0 to %lld; %lld rows of %lld)", xp_patch_where(p), f->src,
                          d, (long long)blocks, (long long)blocks - 1, (long long)t->ne1,
                          (long long)per);
    }
    return XP_OK;
}

static const uint8_t ones[16] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                                 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
static const uint8_t zeros[16];

/* The canonical flips being built (they can outnumber the input: a row with a block
 * inside it becomes the row's other blocks). */
typedef struct flips_out {
    xp_flip *f;
    size_t n, cap;
} flips_out;

static int emit(flips_out *o, const xp_patch *p, xp_flip f, xp_err *err)
{
    if (o->n == XP_PATCH_MAX_FLIPS)
        return xp_err_set(err, XP_EINVAL, "%s: more than %d flips: too large for a patch",
                          xp_patch_where(p), XP_PATCH_MAX_FLIPS);
    if (o->n == o->cap) {
        size_t cap = o->cap ? 2 * o->cap : 64;
        xp_flip *n = xp_realloc_array(o->f, cap, sizeof *n);
        if (!n)
            return xp_err_set(err, XP_ENOMEM, "%s: out of memory normalising",
                              xp_patch_where(p));
        o->f = n, o->cap = cap;
    }
    if (f.kind == XP_FLIP_MASK && memcmp(f.mask, ones, 16) == 0) {
        f.kind = XP_FLIP_BLOCK;
        memset(f.mask, 0, 16);
    }
    o->f[o->n++] = f;
    return XP_OK;
}

/* Emits one tensor's merged rows [ra, rb) and sign masks [qa, qb) (both ascending) in
 * canonical form. With the row length known: a row whose blocks all flip is a row flip;
 * a row flip with masks inside it becomes its blocks, each mask inverted. */
static int emit_rows_and_masks(const xp_patch *p, const xp_flip *w, size_t ra, size_t rb,
                               size_t qa, size_t qb, flips_out *o, xp_err *err)
{
    int64_t per = qa < qb ? p->tensors[w[qa].tensor].ne0 / XP_Q1_0_WEIGHTS : 0;
    size_t ri = ra, q = qa;
    int rc = XP_OK;
    while (q < qb && !rc) {
        size_t end = q + 1;
        if (per)
            while (end < qb && w[end].index / per == w[q].index / per)
                end++;
        int64_t row = per ? w[q].index / per : -1;
        while (ri < rb && w[ri].index < row && !rc)
            rc = emit(o, p, w[ri++], err);
        if (rc)
            break;
        if (ri < rb && w[ri].index == row) {
            /* a flipped row with masks in it: the row's blocks, masks inverted */
            for (int64_t b = row * per, k = (int64_t)q; b < (row + 1) * per && !rc; b++) {
                xp_flip f = {.tensor = w[ri].tensor, .src = w[ri].src, .index = b,
                             .kind = XP_FLIP_MASK};
                memcpy(f.mask, ones, 16);
                if ((size_t)k < end && w[k].index == b) {
                    for (int i = 0; i < 16; i++)
                        f.mask[i] = (uint8_t)~w[k].mask[i];
                    if (w[k].src < f.src)
                        f.src = w[k].src;
                    k++;
                }
                if (memcmp(f.mask, zeros, 16) != 0)
                    rc = emit(o, p, f, err);
            }
            ri++;
        } else {
            bool full = per && (int64_t)(end - q) == per;
            uint32_t src = w[q].src;
            for (size_t k = q; k < end && full; k++) {
                full = memcmp(w[k].mask, ones, 16) == 0;
                src = w[k].src < src ? w[k].src : src;
            }
            if (full) {
                xp_flip r = {.tensor = w[q].tensor, .src = src, .index = row,
                             .kind = XP_FLIP_ROW};
                rc = emit(o, p, r, err);
            }
            for (size_t k = q; k < end && !full && !rc; k++)
                rc = emit(o, p, w[k], err);
        }
        q = end;
    }
    while (ri < rb && !rc)
        rc = emit(o, p, w[ri++], err);
    return rc;
}

/* Drops tensors left without flips (theirs all cancelled) and renumbers the flips, which
 * are sorted by tensor. */
static void prune_tensors(xp_patch *p, xp_flip *f, size_t n)
{
    size_t kept = 0, i = 0;
    for (size_t t = 0; t < p->n_tensors; t++) {
        if (i >= n || f[i].tensor != t) {
            free(p->tensors[t].name);
            continue;
        }
        while (i < n && f[i].tensor == t)
            f[i++].tensor = (uint32_t)kept;
        p->tensors[kept++] = p->tensors[t];
    }
    p->n_tensors = kept;
}

int xp_patch_normalize(xp_patch *p, xp_err *err)
{
    if (p->canonical)
        return XP_OK;
    int rc = sort_tensors(p, err);
    for (size_t i = 0; i < p->n_flips && !rc; i++)
        rc = check_range(p, &p->flips[i], err);
    if (rc)
        return rc;
    /* row groups become blocks once the row length is known (after every check passed,
     * so a failure leaves the patch as it was); blocks merge with masks */
    for (size_t i = 0; i < p->n_flips; i++) {
        xp_flip *f = &p->flips[i];
        int64_t per = p->tensors[f->tensor].ne0 / XP_Q1_0_WEIGHTS;
        if (f->kind == XP_FLIP_ROW_GROUP && per) {
            f->index = f->index * per + f->group;
            f->group = 0;
            f->kind = XP_FLIP_BLOCK;
        }
        if (f->kind == XP_FLIP_BLOCK) {
            f->kind = XP_FLIP_MASK;
            memcpy(f->mask, ones, 16);
        }
    }
    xp_flip *w = p->flips;
    size_t nw = p->n_flips;
    if (nw)
        qsort(w, nw, sizeof *w, cmp_merge);
    /* merge runs of equal keys: XOR for masks, parity for the others */
    size_t m = 0;
    for (size_t i = 0; i < nw;) {
        size_t j = i + 1;
        xp_flip acc = w[i];
        while (j < nw && w[j].tensor == acc.tensor && class_of(&w[j]) == class_of(&acc) &&
               w[j].index == acc.index && w[j].bit == acc.bit && w[j].group == acc.group) {
            for (int k = 0; k < 16; k++)
                acc.mask[k] ^= w[j].mask[k];
            j++;
        }
        bool keep = class_of(&acc) == C_QS ? memcmp(acc.mask, zeros, 16) != 0 : (j - i) % 2;
        if (keep)
            w[m++] = acc;
        i = j;
    }
    flips_out o = {0};
    for (size_t i = 0; i < m && !rc;) {
        size_t ra = i;
        while (i < m && w[i].tensor == w[ra].tensor && class_of(&w[i]) == C_ROW)
            i++;
        size_t rb = i, qa = i;
        while (i < m && w[i].tensor == w[ra].tensor && class_of(&w[i]) == C_QS)
            i++;
        rc = emit_rows_and_masks(p, w, ra, rb, qa, i, &o, err);
        while (i < m && w[i].tensor == w[ra].tensor && !rc)
            rc = emit(&o, p, w[i++], err);
    }
    if (rc) {
        free(o.f);
        /* the flips were merged in place: the patch keeps their effect, not their list */
        p->n_flips = m;
        return rc;
    }
    if (o.n)
        qsort(o.f, o.n, sizeof *o.f, cmp_final);
    prune_tensors(p, o.f, o.n);
    free(p->flips);
    p->flips = o.f;
    p->n_flips = o.n;
    p->cap_flips = o.cap;
    p->canonical = true;
    p->bound = true;
    for (size_t i = 0; i < p->n_tensors; i++)
        if (!p->tensors[i].ne0)
            p->bound = false;
    return XP_OK;
}

/* ---- binding to a layout --------------------------------------------------------- */

static const xp_flip *first_flip_on(const xp_patch *p, size_t tensor)
{
    for (size_t i = 0; i < p->n_flips; i++)
        if (p->flips[i].tensor == tensor)
            return &p->flips[i];
    return NULL;
}

/* The shape a model gives tensor i, or an error naming the first flip on it. */
static int model_shape(const xp_patch *p, size_t i, const xp_gguf *g, int64_t *ne0,
                       int64_t *ne1, xp_err *err)
{
    const char *name = p->tensors[i].name;
    const xp_flip *f = first_flip_on(p, i);
    unsigned src = f ? f->src : 0;
    const char *model = g->path ? g->path : "the model";
    const xp_gguf_tensor *t = xp_gguf_tensor_by_name(g, name);
    if (!t)
        return xp_err_set(err, XP_ENOTFOUND, "%s: flip %u: tensor '%s' is not in %s",
                          xp_patch_where(p), src, name, model);
    if (t->type != XP_TYPE_Q1_0)
        return xp_err_set(err, XP_ETYPE, "%s: flip %u: tensor '%s' is %s in %s, expected q1_0 "
                          "(only 1-bit tensors can be patched)", xp_patch_where(p), src, name,
                          xp_tensor_type_name(t->type) ? xp_tensor_type_name(t->type) : "?",
                          model);
    if (t->n_dims > 2 || t->ne[2] != 1 || t->ne[3] != 1 || t->ne[0] % XP_Q1_0_WEIGHTS)
        return xp_err_set(err, XP_ETYPE, "%s: flip %u: tensor '%s' in %s is not a 2-D matrix of "
                          "whole Q1_0 blocks", xp_patch_where(p), src, name, model);
    *ne0 = t->ne[0], *ne1 = t->ne[1];
    return XP_OK;
}

typedef int (*shape_fn)(const xp_patch *p, size_t i, const void *layout, int64_t *ne0,
                        int64_t *ne1, xp_err *err);

static int gguf_shape(const xp_patch *p, size_t i, const void *layout, int64_t *ne0,
                      int64_t *ne1, xp_err *err)
{
    return model_shape(p, i, layout, ne0, ne1, err);
}

static int preset_shape(const xp_patch *p, size_t i, const void *layout, int64_t *ne0,
                        int64_t *ne1, xp_err *err)
{
    if (shape_tensor(layout, p->tensors[i].name, ne0, ne1) == XP_OK)
        return XP_OK;
    const xp_flip *f = first_flip_on(p, i);
    return xp_err_set(err, XP_ENOTFOUND, "%s: flip %u: tensor '%s' is not a Q1_0 matrix of "
                      "this model shape", xp_patch_where(p), f ? f->src : 0,
                      p->tensors[i].name);
}

static int bind_with(xp_patch *p, shape_fn shape, const void *layout, const char *model,
                     xp_err *err)
{
    /* sorted first, so a failure can restore the shapes tensor by tensor */
    int rc = xp_patch_normalize(p, err);
    if (rc)
        return rc;
    int64_t *old = xp_calloc(p->n_tensors, 2 * sizeof *old);
    if (!old)
        return xp_err_set(err, XP_ENOMEM, "patch: out of memory");
    bool was_bound = p->bound && p->canonical;
    for (size_t i = 0; i < p->n_tensors && !rc; i++) {
        xp_patch_tensor *t = &p->tensors[i];
        old[2 * i] = t->ne0, old[2 * i + 1] = t->ne1;
        int64_t ne0, ne1;
        if ((rc = shape(p, i, layout, &ne0, &ne1, err)))
            break;
        if (t->ne0 && (t->ne0 != ne0 || t->ne1 != ne1)) {
            rc = xp_err_set(err, XP_EINVAL, "%s: tensor '%s' is [%lld, %lld] in the patch but "
                            "[%lld, %lld] in %s: the patch is for another model",
                            xp_patch_where(p), t->name, (long long)t->ne0, (long long)t->ne1,
                            (long long)ne0, (long long)ne1, model);
            break;
        }
        t->ne0 = ne0, t->ne1 = ne1;
    }
    /* shapes of a bound patch were already checked against its flips */
    if (!rc && !was_bound) {
        p->canonical = false;
        rc = xp_patch_normalize(p, err);
    }
    if (rc)
        for (size_t i = 0; i < p->n_tensors; i++)
            p->tensors[i].ne0 = old[2 * i], p->tensors[i].ne1 = old[2 * i + 1];
    free(old);
    return rc;
}

int xp_patch_bind(xp_patch *p, const xp_gguf *g, xp_err *err)
{
    return bind_with(p, gguf_shape, g, g->path ? g->path : "the model", err);
}

int xp_patch_bind_shape(xp_patch *p, const xp_shape *s, xp_err *err)
{
    return bind_with(p, preset_shape, s, "the model shape", err);
}

/* ---- statistics ---------------------------------------------------------------- */

static void count(const xp_patch *p, const xp_flip *f, xp_patch_stats *s)
{
    uint64_t bits;
    s->flips++;
    s->by_kind[f->kind]++;
    if (xp_flip_kind_of(f->kind)->bits(f, p->tensors[f->tensor].ne0, &bits))
        s->bits += bits;
    else
        s->bits_known = false;
}

void xp_patch_tensor_stats(const xp_patch *p, size_t tensor, xp_patch_stats *s)
{
    memset(s, 0, sizeof *s);
    s->bits_known = true;
    const xp_patch_tensor *t = &p->tensors[tensor];
    s->weights = (uint64_t)t->ne0 * (uint64_t)t->ne1;
    for (size_t i = 0; i < p->n_flips; i++)
        if (p->flips[i].tensor == tensor)
            count(p, &p->flips[i], s);
    if (!s->bits_known)
        s->bits = 0;
}

void xp_patch_total_stats(const xp_patch *p, xp_patch_stats *s)
{
    memset(s, 0, sizeof *s);
    s->bits_known = true;
    for (size_t i = 0; i < p->n_tensors; i++)
        s->weights += (uint64_t)p->tensors[i].ne0 * (uint64_t)p->tensors[i].ne1;
    for (size_t i = 0; i < p->n_flips; i++)
        count(p, &p->flips[i], s);
    if (!s->bits_known)
        s->bits = 0;
}
