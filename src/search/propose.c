/* Candidate flips for the search: a (layer, projection) tensor and a row or block in it,
 * drawn with probability proportional to its mean |scale| (a flip of a high-scale row
 * moves the model more) or uniformly, never the same candidate twice. The weights are
 * read once from the base model, so the proposals are a function of the seed alone.
 * Gradient proposals instead walk the ranking gradient.c leaves here, best estimate first,
 * skipping what was tried. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "search/search_int.h"

/* Draws before deciding the space is used up: with most candidates untried a draw
 * almost always succeeds, so this many failures means almost none is left. */
#define MAX_DRAWS 4096

static bool by_rows(const xp_proposer *p) { return p->granularity == XP_GRAN_ROW; }

int xp_proposer_init(xp_proposer *p, xp_model *m, const xp_search_opts *o, const uint32_t *layers,
                     size_t n_layers, xp_err *err)
{
    memset(p, 0, sizeof *p);
    p->granularity = o->granularity;
    p->proposal = o->proposal;
    p->scale_ratio = o->granularity == XP_GRAN_SCALE_BIT ? o->scale_ratio : 0;
    p->bit_min = o->scale_bit_min;
    p->bit_max = o->scale_bit_max;
    p->rerank_every = o->rerank_every ? o->rerank_every : 1;
    p->stale = true;
    p->ranked_focal = -1;
    p->estimate = NAN;
    xp_rng_seed(&p->rng, o->seed);
    unsigned projs = xp_search_projs(o);
    p->units = calloc(n_layers * XP_N_PROJ + 1, sizeof *p->units);
    p->tried_cap = 1024;
    p->tried = calloc(p->tried_cap, sizeof *p->tried);
    if (!p->units || !p->tried)
        return xp_err_set(err, XP_ENOMEM, "out of memory");
    for (size_t li = 0; li < n_layers; li++)
        for (int proj = 0; proj < XP_N_PROJ; proj++) {
            if (!(projs & (1u << proj)))
                continue;
            xp_weight *w = xp_proj_weight(xp_model_layer(m, layers[li]), proj);
            if (w->type != XP_TYPE_Q1_0)
                return xp_err_set(err, XP_EINVAL,
                                  "%s is %s, not Q1_0: its bits cannot be "
                                  "flipped",
                                  w->name, xp_tensor_type_name(w->type));
            xp_unit *u = &p->units[p->n_units++];
            int64_t per_row = w->ne0 / XP_Q1_0_WEIGHTS;
            *u = (xp_unit){layers[li], proj, w, by_rows(p) ? w->ne1 : w->ne1 * per_row, NULL, 0};
            if (p->proposal != XP_PROPOSE_SCALE) {
                u->total = (double)u->n_items;
            } else {
                if (!(u->cum = malloc((size_t)u->n_items * sizeof *u->cum)))
                    return xp_err_set(err, XP_ENOMEM, "out of memory for proposal weights");
                double acc = 0;
                for (int64_t i = 0; i < u->n_items; i++) {
                    acc += by_rows(p) ? fabs(xp_q1_0_row_mean_scale(w->data, w->ne0, i))
                                      : fabs(xp_q1_0_block_scale(w->data, i));
                    u->cum[i] = acc;
                }
                u->total = acc;
            }
            p->total += u->total;
        }
    if (p->n_units == 0 || !(p->total > 0))
        return xp_err_set(err, XP_EINVAL,
                          "nothing to flip: no projection chosen, or every "
                          "scale of the chosen ones is 0");
    return XP_OK;
}

void xp_proposer_free(xp_proposer *p)
{
    for (size_t i = 0; i < p->n_units; i++)
        free(p->units[i].cum);
    free(p->units);
    free(p->tried);
    free(p->ranked);
    free(p->back);
    memset(p, 0, sizeof *p);
}

static uint64_t key_of(const xp_candidate *c)
{
    /* never 0: the kind is stored plus one */
    return (uint64_t)c->index | (uint64_t)c->bit << 40 | (uint64_t)(c->kind + 1) << 44 |
           (uint64_t)c->proj << 48 | (uint64_t)c->layer << 52;
}

static uint64_t mix(uint64_t k)
{
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    return k;
}

/* Inserts key; false when it was already there. */
static bool tried_insert(xp_proposer *p, uint64_t key)
{
    if (2 * (p->n_tried + 1) > p->tried_cap) {
        size_t cap = p->tried_cap * 2;
        uint64_t *t = calloc(cap, sizeof *t);
        if (!t)
            return false; /* treated as tried: the search then ends as exhausted */
        for (size_t i = 0; i < p->tried_cap; i++)
            if (p->tried[i])
                for (size_t j = mix(p->tried[i]) & (cap - 1);; j = (j + 1) & (cap - 1))
                    if (!t[j]) {
                        t[j] = p->tried[i];
                        break;
                    }
        free(p->tried);
        p->tried = t;
        p->tried_cap = cap;
    }
    for (size_t j = mix(key) & (p->tried_cap - 1);; j = (j + 1) & (p->tried_cap - 1)) {
        if (p->tried[j] == key)
            return false;
        if (!p->tried[j]) {
            p->tried[j] = key;
            p->n_tried++;
            return true;
        }
    }
}

/* Removes key, keeping every other key reachable from its home slot (the probe runs
 * after the freed slot are shifted back over it). */
static void tried_remove(xp_proposer *p, uint64_t key)
{
    size_t mask = p->tried_cap - 1, i = mix(key) & mask;
    while (p->tried[i] != key) {
        if (!p->tried[i])
            return;
        i = (i + 1) & mask;
    }
    for (size_t j = (i + 1) & mask; p->tried[j]; j = (j + 1) & mask) {
        size_t home = mix(p->tried[j]) & mask;
        /* the key at j may move to i when its home is not cyclically within (i, j] */
        if (((j - home) & mask) >= ((j - i) & mask)) {
            p->tried[i] = p->tried[j];
            i = j;
        }
    }
    p->tried[i] = 0;
    p->n_tried--;
}

void xp_proposer_mark(xp_proposer *p, const xp_candidate *c) { tried_insert(p, key_of(c)); }

/* First index whose cumulative weight exceeds x. */
static int64_t upper(const double *cum, int64_t n, double x)
{
    int64_t lo = 0, hi = n - 1;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (cum[mid] > x)
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

static void draw(xp_proposer *p, xp_candidate *c)
{
    double x = xp_rng_f64(&p->rng) * p->total;
    size_t ui = 0;
    while (ui + 1 < p->n_units && x >= p->units[ui].total) {
        x -= p->units[ui].total;
        ui++;
    }
    const xp_unit *u = &p->units[ui];
    int64_t item = u->cum ? upper(u->cum, u->n_items, x) : (int64_t)x;
    if (item >= u->n_items)
        item = u->n_items - 1;
    bool scale = p->scale_ratio > 0 && xp_rng_f64(&p->rng) < p->scale_ratio;
    *c = (xp_candidate){u->layer, (uint8_t)u->proj,
                        by_rows(p) ? XP_FLIP_ROW
                        : scale    ? XP_FLIP_SCALE
                                   : XP_FLIP_BLOCK,
                        0, item};
    if (scale)
        c->bit = (uint8_t)(p->bit_min +
                           (int)xp_rng_below(&p->rng, (uint64_t)(p->bit_max - p->bit_min + 1)));
}

void xp_proposer_accepted(xp_proposer *p)
{
    if (++p->accepts >= p->rerank_every)
        p->stale = true;
}

bool xp_proposer_next(xp_proposer *p, xp_candidate *c)
{
    if (p->proposal == XP_PROPOSE_GRADIENT) {
        while (p->next_rank < p->n_ranked) {
            const xp_ranked *r = &p->ranked[p->next_rank++];
            if (tried_insert(p, key_of(&r->c))) {
                *c = r->c;
                p->estimate = r->estimate;
                return true;
            }
        }
        return false;
    }
    if (p->n_back) {
        *c = p->back[--p->n_back];
        return true;
    }
    for (int i = 0; i < MAX_DRAWS && !p->exhausted; i++) {
        draw(p, c);
        if (tried_insert(p, key_of(c)))
            return true;
    }
    p->exhausted = true;
    return false;
}

int xp_proposer_unget(xp_proposer *p, const xp_candidate *c)
{
    if (p->proposal == XP_PROPOSE_GRADIENT) {
        /* untried again, and the walk goes back to its place in the ranking (the ones
         * between were skipped as tried before, and still are) */
        uint64_t key = key_of(c);
        size_t i = p->next_rank;
        while (i > 0 && key_of(&p->ranked[i - 1].c) != key)
            i--;
        if (i == 0)
            return XP_EINVAL; /* not drawn from this ranking */
        tried_remove(p, key);
        p->next_rank = i - 1;
        return XP_OK;
    }
    if (p->n_back == p->cap_back) {
        size_t cap = p->cap_back ? 2 * p->cap_back : 16;
        xp_candidate *b = realloc(p->back, cap * sizeof *b);
        if (!b)
            return XP_ENOMEM;
        p->back = b;
        p->cap_back = cap;
    }
    p->back[p->n_back++] = *c;
    return XP_OK;
}

xp_flip xp_candidate_as_flip(const xp_candidate *c)
{
    return (xp_flip){.kind = c->kind, .index = c->index, .bit = c->bit};
}

void xp_candidate_flip(xp_model *m, const xp_candidate *c)
{
    xp_weight *w = xp_proj_weight(xp_model_layer(m, c->layer), c->proj);
    xp_flip f = xp_candidate_as_flip(c);
    xp_flip_kind_of(c->kind)->apply(w->data, w->ne0, &f);
}

unsigned xp_search_projs(const xp_search_opts *o)
{
    return o->projs ? o->projs : 1u << XP_PROJ_GATE | 1u << XP_PROJ_UP;
}
