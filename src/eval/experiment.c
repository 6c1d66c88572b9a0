/* The anchors' experiments (SPEC §6-§8) as library calls: perplexity after random MLP
 * flips, the gap impact of XORing a whole layer's MLP, scale-weighted against uniform
 * candidates, patches alone and stacked, and the null baseline (the same search on a
 * copy with random MLP signs). Each is seeded and deterministic and leaves the model as
 * it was given: changes go through patches or candidate flips on the private map and are
 * reverted before returning. They live in eval, above search, because they run the
 * search's proposer and search and report with eval's statistics. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/rng.h"
#include "xorpatch/eval.h"

static const int mlp_projs[] = {XP_PROJ_GATE, XP_PROJ_UP, XP_PROJ_DOWN};
#define N_MLP 3

void xp_delta_stats_of(const double *base, const double *after, size_t n, xp_delta_stats *out)
{
    memset(out, 0, sizeof *out);
    for (size_t i = 0; i < n; i++) {
        double d = after[i] - base[i];
        out->mean += d;
        out->mean_abs += fabs(d);
        out->max_abs = fabs(d) > out->max_abs ? fabs(d) : out->max_abs;
        out->right_before += base[i] > 0;
        out->right_after += after[i] > 0;
        out->crossed += (base[i] > 0) != (after[i] > 0);
    }
    if (n) {
        out->mean /= (double)n;
        out->mean_abs /= (double)n;
    }
}

static void tensor_name(char *buf, size_t size, uint32_t layer, int proj)
{
    xp_tensor_name(buf, size, layer, xp_proj_tensor(proj));
}

/* Applies p, measures the probes, reverts p (also when the measurement fails). */
static int gaps_with(xp_model *m, xp_patch *p, const xp_probe_tokens *pt, size_t n,
                     xp_metric metric, double *gaps, xp_err *err)
{
    int rc = xp_model_patch_apply(m, p, err);
    if (rc)
        return rc;
    rc = xp_probe_gaps(m, pt, n, metric, gaps, err);
    xp_err keep = err ? *err : (xp_err){0};
    int rrc = xp_model_patch_revert(m, p, err);
    if (rc && err)
        *err = keep;
    return rc ? rc : rrc;
}

/* Hands p out bound to the model, or frees it when building or binding it failed. */
static int bound_or_free(xp_model *m, xp_patch *p, xp_patch **out, int rc, xp_err *err)
{
    if (!rc)
        rc = xp_patch_bind(p, xp_model_gguf(m), err);
    if (rc) {
        xp_patch_free(p);
        return rc;
    }
    *out = p;
    return XP_OK;
}

/* ---- random flips ---- */

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Items of one MLP tensor for a flip kind: sign bits, rows or blocks. */
static uint64_t items_of(const xp_weight *w, int kind)
{
    uint64_t bits = (uint64_t)w->ne0 * (uint64_t)w->ne1;
    return kind == XP_FLIP_ROW ? (uint64_t)w->ne1 : kind == XP_FLIP_BLOCK ? bits / 128 : bits;
}

/* count distinct draws from [0, total) into keys, sorted. Redrawing repeats needs few
 * rounds while at most half the items are taken (each round at least halves the
 * missing); beyond that the items left out are drawn instead. */
static int distinct_draws(xp_rng *rng, uint64_t total, size_t count, uint64_t *keys)
{
    bool invert = count > total / 2;
    size_t want = invert ? (size_t)(total - count) : count, have = 0;
    uint64_t *drawn = invert ? xp_calloc(want + 1, sizeof *drawn) : keys;
    if (!drawn)
        return XP_ENOMEM;
    while (have < want) {
        for (size_t i = have; i < want; i++)
            drawn[i] = xp_rng_below(rng, total);
        qsort(drawn, want, sizeof *drawn, cmp_u64);
        have = 0;
        for (size_t i = 0; i < want; i++)
            if (have == 0 || drawn[i] != drawn[have - 1])
                drawn[have++] = drawn[i];
    }
    if (invert) {
        size_t k = 0, j = 0;
        for (uint64_t i = 0; i < total; i++)
            if (j < want && drawn[j] == i)
                j++;
            else
                keys[k++] = i;
        free(drawn);
    }
    return XP_OK;
}

int xp_exp_random_mlp_patch(xp_model *m, int kind, size_t count, uint64_t seed, xp_patch **out,
                            xp_err *err)
{
    *out = NULL;
    if (kind != XP_FLIP_MASK && kind != XP_FLIP_ROW && kind != XP_FLIP_BLOCK)
        return xp_err_set(err, XP_EINVAL, "random MLP flips are bits, rows or blocks, not kind %d",
                          kind);
    uint32_t n_layer = xp_model_shape(m)->n_layer;
    uint64_t total = 0;
    for (uint32_t l = 0; l < n_layer; l++)
        for (int j = 0; j < N_MLP; j++) {
            const xp_weight *w = xp_proj_weight(xp_model_layer(m, l), mlp_projs[j]);
            if (w->type != XP_TYPE_Q1_0)
                return xp_err_set(err, XP_EINVAL, "%s is %s, not Q1_0: its bits cannot be "
                                  "flipped", w->name, xp_tensor_type_name(w->type));
            total += items_of(w, kind);
        }
    if (count > total)
        return xp_err_set(err, XP_EINVAL, "%zu random flips asked for, but the MLP has only "
                          "%llu %s", count, (unsigned long long)total,
                          kind == XP_FLIP_ROW ? "rows" : kind == XP_FLIP_BLOCK ? "blocks" : "bits");
    xp_patch *p;
    int rc = xp_patch_new(&p, err);
    if (rc)
        return rc;
    uint64_t *keys = xp_calloc(count + 1, sizeof *keys);
    if (!keys) {
        xp_patch_free(p);
        return xp_err_set(err, XP_ENOMEM, "out of memory for %zu random flips", count);
    }
    xp_rng rng;
    xp_rng_seed(&rng, seed);
    if (distinct_draws(&rng, total, count, keys)) {
        free(keys);
        xp_patch_free(p);
        return xp_err_set(err, XP_ENOMEM, "out of memory for %zu random flips", count);
    }
    /* walk the sorted keys through the tensors in the same order as the total */
    size_t k = 0;
    uint64_t first = 0;
    for (uint32_t l = 0; l < n_layer && !rc; l++)
        for (int j = 0; j < N_MLP && !rc; j++) {
            const xp_weight *w = xp_proj_weight(xp_model_layer(m, l), mlp_projs[j]);
            uint64_t end = first + items_of(w, kind);
            char name[64];
            tensor_name(name, sizeof name, l, mlp_projs[j]);
            for (; k < count && keys[k] < end && !rc; k++) {
                uint64_t i = keys[k] - first;
                if (kind == XP_FLIP_ROW)
                    rc = xp_patch_add_row(p, name, (int64_t)i, err);
                else if (kind == XP_FLIP_BLOCK)
                    rc = xp_patch_add_block(p, name, (int64_t)i, err);
                else {
                    uint8_t mask[16] = {0};
                    mask[(i % 128) / 8] = (uint8_t)(1u << (i % 8));
                    rc = xp_patch_add_mask(p, name, (int64_t)(i / 128), mask, err);
                }
            }
            first = end;
        }
    free(keys);
    return bound_or_free(m, p, out, rc, err);
}

/* One point's seed from the run's seed and the point alone (splitmix64 finaliser). */
static uint64_t point_seed(uint64_t seed, int kind, size_t count, size_t trial)
{
    uint64_t h = seed;
    uint64_t parts[3] = {(uint64_t)kind + 1, (uint64_t)count, (uint64_t)trial};
    for (int i = 0; i < 3; i++) {
        h ^= parts[i] + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
        h = (h ^ (h >> 30)) * 0xbf58476d1ce4e5b9ULL;
        h = (h ^ (h >> 27)) * 0x94d049bb133111ebULL;
        h ^= h >> 31;
    }
    return h;
}

void xp_random_flips_free(xp_random_flips *r)
{
    free(r->points);
    memset(r, 0, sizeof *r);
}

int xp_exp_random_flips(xp_model *m, const int32_t *ids, size_t n_ids,
                        const xp_random_flips_opts *o, xp_random_flips *out, xp_err *err)
{
    memset(out, 0, sizeof *out);
    if (o->trials == 0 || o->n_kinds == 0 || o->n_counts == 0)
        return xp_err_set(err, XP_EINVAL, "random flips need at least one kind, count and trial");
    size_t n = o->n_kinds * o->n_counts * o->trials;
    out->points = xp_calloc(n, sizeof *out->points);
    if (!out->points)
        return xp_err_set(err, XP_ENOMEM, "out of memory");
    xp_perplexity_opts po = o->ppl;
    po.progress = NULL; /* progress counts points here */
    int rc = xp_perplexity(m, XP_PATH_FAST, ids, n_ids, &po, &out->base, err);
    if (!rc && o->ppl.progress)
        o->ppl.progress(o->ppl.progress_ctx, 1, n + 1);
    for (size_t i = 0; i < n && !rc; i++) {
        xp_random_flips_point *pt = &out->points[i];
        pt->kind = o->kinds[i / (o->n_counts * o->trials)];
        pt->count = o->counts[i / o->trials % o->n_counts];
        pt->trial = i % o->trials;
        xp_patch *p;
        uint64_t seed = point_seed(o->seed, pt->kind, pt->count, pt->trial);
        if ((rc = xp_exp_random_mlp_patch(m, pt->kind, pt->count, seed, &p, err)))
            break;
        xp_patch_stats st;
        xp_patch_total_stats(p, &st);
        pt->bits = st.bits;
        xp_perplexity_result r;
        if (!(rc = xp_model_patch_apply(m, p, err))) {
            rc = xp_perplexity(m, XP_PATH_FAST, ids, n_ids, &po, &r, err);
            xp_err keep = err ? *err : (xp_err){0};
            int rrc = xp_model_patch_revert(m, p, err);
            if (rc && err)
                *err = keep;
            rc = rc ? rc : rrc;
        }
        xp_patch_free(p);
        if (rc)
            break;
        pt->perplexity = r.perplexity;
        out->n = i + 1;
        if (o->ppl.progress)
            o->ppl.progress(o->ppl.progress_ctx, i + 2, n + 1);
    }
    if (rc)
        xp_random_flips_free(out);
    return rc;
}

/* ---- layer map ---- */

int xp_exp_layer_patch(xp_model *m, uint32_t layer, unsigned projs, xp_patch **out, xp_err *err)
{
    *out = NULL;
    if (layer >= xp_model_shape(m)->n_layer)
        return xp_err_set(err, XP_EINVAL, "layer %u is not below the model's %u layers", layer,
                          xp_model_shape(m)->n_layer);
    if (!projs)
        projs = 1u << XP_PROJ_GATE | 1u << XP_PROJ_UP | 1u << XP_PROJ_DOWN;
    xp_patch *p;
    int rc = xp_patch_new(&p, err);
    if (rc)
        return rc;
    for (int proj = 0; proj < XP_N_PROJ && !rc; proj++) {
        if (!(projs & (1u << proj)))
            continue;
        const xp_weight *w = xp_proj_weight(xp_model_layer(m, layer), proj);
        char name[64];
        tensor_name(name, sizeof name, layer, proj);
        for (int64_t r = 0; r < w->ne1 && !rc; r++)
            rc = xp_patch_add_row(p, name, r, err);
    }
    return bound_or_free(m, p, out, rc, err);
}

void xp_layer_map_free(xp_layer_map *r)
{
    free(r->layers), free(r->base), free(r->after), free(r->stats);
    memset(r, 0, sizeof *r);
}

int xp_exp_layer_map(xp_model *m, const xp_probe_tokens *pt, size_t n, xp_metric metric,
                     const uint32_t *layers, size_t n_layers, unsigned projs,
                     xp_progress_fn progress, void *progress_ctx, xp_layer_map *out,
                     xp_err *err)
{
    memset(out, 0, sizeof *out);
    out->n_layers = n_layers;
    out->n_probes = n;
    out->layers = xp_calloc(n_layers + 1, sizeof *out->layers);
    out->base = xp_calloc(n + 1, sizeof *out->base);
    out->after = xp_calloc(n_layers * n + 1, sizeof *out->after);
    out->stats = xp_calloc(n_layers + 1, sizeof *out->stats);
    int rc = out->layers && out->base && out->after && out->stats
                 ? XP_OK : xp_err_set(err, XP_ENOMEM, "out of memory");
    if (!rc && n_layers)
        memcpy(out->layers, layers, n_layers * sizeof *layers);
    if (!rc)
        rc = xp_probe_gaps(m, pt, n, metric, out->base, err);
    for (size_t i = 0; i < n_layers && !rc; i++) {
        xp_patch *p;
        if ((rc = xp_exp_layer_patch(m, layers[i], projs, &p, err)))
            break;
        rc = gaps_with(m, p, pt, n, metric, out->after + i * n, err);
        xp_patch_free(p);
        if (!rc)
            xp_delta_stats_of(out->base, out->after + i * n, n, &out->stats[i]);
        if (!rc && progress)
            progress(progress_ctx, i + 1, n_layers);
    }
    if (rc)
        xp_layer_map_free(out);
    return rc;
}

/* ---- scale-guided against uniform candidates ---- */

void xp_scale_vs_random_free(xp_scale_vs_random *r)
{
    free(r->base);
    for (int i = 0; i < 2; i++)
        free(r->cand[i]), free(r->impact[i]), free(r->scale[i]);
    memset(r, 0, sizeof *r);
}

static double candidate_scale(xp_model *m, const xp_candidate *c)
{
    const xp_weight *w = xp_proj_weight(xp_model_layer(m, c->layer), c->proj);
    return c->kind == XP_FLIP_ROW ? fabs(xp_q1_0_row_mean_scale(w->data, w->ne0, c->index))
                                  : fabs(xp_q1_0_block_scale(w->data, c->index));
}

int xp_exp_scale_vs_random(xp_model *m, const xp_probe_tokens *pt, size_t n,
                           const xp_search_opts *o, size_t samples, xp_progress_fn progress,
                           void *progress_ctx, xp_scale_vs_random *out, xp_err *err)
{
    memset(out, 0, sizeof *out);
    if (samples == 0)
        return xp_err_set(err, XP_EINVAL, "scale-vs-random needs at least one sample");
    for (size_t i = 0; i < o->n_layers; i++)
        if (o->layers[i] >= xp_model_shape(m)->n_layer)
            return xp_err_set(err, XP_EINVAL, "layer %u is not below the model's %u layers",
                              o->layers[i], xp_model_shape(m)->n_layer);
    out->n_probes = n;
    out->base = xp_calloc(n + 1, sizeof *out->base);
    double *g = xp_calloc(n + 1, sizeof *g);
    int rc = out->base && g ? XP_OK : xp_err_set(err, XP_ENOMEM, "out of memory");
    for (int k = 0; k < 2 && !rc; k++)
        if (!(out->cand[k] = xp_calloc(samples, sizeof *out->cand[k])) ||
            !(out->impact[k] = xp_calloc(samples, sizeof *out->impact[k])) ||
            !(out->scale[k] = xp_calloc(samples, sizeof *out->scale[k])))
            rc = xp_err_set(err, XP_ENOMEM, "out of memory");
    if (!rc)
        rc = xp_probe_gaps(m, pt, n, o->metric, out->base, err);
    /* both samples of equal size: the smaller candidate space decides */
    size_t drawn[2] = {0, 0};
    for (int k = 0; k < 2 && !rc; k++) {
        xp_search_opts ok = *o;
        ok.proposal = k == 0 ? XP_PROPOSE_SCALE : XP_PROPOSE_UNIFORM;
        rc = xp_search_propose(m, &ok, samples, out->cand[k], &drawn[k], err);
    }
    out->samples = drawn[0] < drawn[1] ? drawn[0] : drawn[1];
    for (int k = 0; k < 2 && !rc; k++) {
        for (size_t s = 0; s < out->samples && !rc; s++) {
            const xp_candidate *c = &out->cand[k][s];
            out->scale[k][s] = candidate_scale(m, c);
            xp_candidate_flip(m, c);
            rc = xp_probe_gaps(m, pt, n, o->metric, g, err);
            xp_candidate_flip(m, c);
            if (rc)
                break;
            xp_delta_stats st;
            xp_delta_stats_of(out->base, g, n, &st);
            out->impact[k][s] = st.mean_abs;
            out->mean_impact[k] += st.mean_abs / (double)out->samples;
            out->mean_scale[k] += out->scale[k][s] / (double)out->samples;
            if (progress)
                progress(progress_ctx, (size_t)k * out->samples + s + 1, 2 * out->samples);
        }
    }
    free(g);
    if (!rc)
        out->ratio = out->mean_impact[1] > 0 ? out->mean_impact[0] / out->mean_impact[1] : NAN;
    else
        xp_scale_vs_random_free(out);
    return rc;
}

/* ---- stacking ---- */

void xp_stacking_free(xp_stacking *r)
{
    free(r->base), free(r->after), free(r->stats);
    memset(r, 0, sizeof *r);
}

int xp_exp_stacking(xp_model *m, const xp_probe_tokens *pt, size_t n, xp_metric metric,
                    xp_patch *const *ps, size_t n_ps, bool force, xp_stacking *out,
                    xp_err *err)
{
    memset(out, 0, sizeof *out);
    if (n_ps < 2)
        return xp_err_set(err, XP_EINVAL, "stacking needs at least two patches, not %zu", n_ps);
    out->n_patches = n_ps;
    out->n_probes = n;
    out->base = xp_calloc(n + 1, sizeof *out->base);
    out->after = xp_calloc((n_ps + 1) * n + 1, sizeof *out->after);
    out->stats = xp_calloc(n_ps + 1, sizeof *out->stats);
    int rc = out->base && out->after && out->stats
                 ? XP_OK : xp_err_set(err, XP_ENOMEM, "out of memory");
    xp_patch_stats st;
    for (size_t i = 0; i < n_ps && !rc; i++)
        if (!(rc = xp_patch_bind(ps[i], xp_model_gguf(m), err))) {
            xp_patch_total_stats(ps[i], &st);
            out->bits_in += st.bits;
        }
    xp_patch *stack = NULL;
    if (!rc && !(rc = xp_patch_stack(&stack, ps, n_ps, force, err)) &&
        !(rc = xp_patch_bind(stack, xp_model_gguf(m), err))) {
        xp_patch_total_stats(stack, &st);
        out->bits_out = st.bits;
    }
    if (!rc)
        rc = xp_probe_gaps(m, pt, n, metric, out->base, err);
    for (size_t i = 0; i <= n_ps && !rc; i++) {
        double *after = out->after + i * n;
        if (!(rc = gaps_with(m, i < n_ps ? ps[i] : stack, pt, n, metric, after, err)))
            xp_delta_stats_of(out->base, after, n, &out->stats[i]);
    }
    for (size_t j = 0; j < n && !rc; j++) {
        double sum = 0;
        for (size_t i = 0; i < n_ps; i++)
            sum += out->after[i * n + j] - out->base[j];
        out->interaction += fabs(out->after[n_ps * n + j] - out->base[j] - sum) / (double)n;
    }
    xp_patch_free(stack);
    if (rc)
        xp_stacking_free(out);
    return rc;
}

/* ---- null baseline ---- */

int xp_exp_randomize_mlp_signs(xp_model *m, uint64_t seed, xp_err *err)
{
    xp_rng rng;
    xp_rng_seed(&rng, seed);
    for (uint32_t l = 0; l < xp_model_shape(m)->n_layer; l++)
        for (int j = 0; j < N_MLP; j++) {
            const xp_weight *w = xp_proj_weight(xp_model_layer(m, l), mlp_projs[j]);
            if (w->type != XP_TYPE_Q1_0)
                return xp_err_set(err, XP_EINVAL, "%s is %s, not Q1_0: its bits cannot be "
                                  "flipped", w->name, xp_tensor_type_name(w->type));
        }
    /* every bit of a random byte is an independent fair coin: XOR flips each sign with
     * probability 1/2, and the two scale bytes of each block are skipped */
    for (uint32_t l = 0; l < xp_model_shape(m)->n_layer; l++)
        for (int j = 0; j < N_MLP; j++) {
            const xp_weight *w = xp_proj_weight(xp_model_layer(m, l), mlp_projs[j]);
            uint64_t blocks = (uint64_t)w->ne0 * (uint64_t)w->ne1 / XP_Q1_0_WEIGHTS;
            for (uint64_t b = 0; b < blocks; b++) {
                uint8_t *qs = w->data + b * XP_Q1_0_BYTES + 2;
                for (int h = 0; h < 2; h++) {
                    uint64_t r = xp_rng_u64(&rng);
                    for (int i = 0; i < 8; i++)
                        qs[8 * h + i] ^= (uint8_t)(r >> (8 * i));
                }
            }
        }
    return XP_OK;
}

void xp_null_baseline_free(xp_null_baseline *r)
{
    xp_search_result_free(&r->run[0]);
    xp_search_result_free(&r->run[1]);
    memset(r, 0, sizeof *r);
}

int xp_exp_null_baseline(xp_model *m, xp_model *random, const xp_probe_tokens *targets,
                         size_t n_targets, const xp_probe_tokens *controls, size_t n_controls,
                         const xp_search_opts *o, uint64_t random_seed, xp_null_baseline *out,
                         xp_err *err)
{
    memset(out, 0, sizeof *out);
    const xp_gguf *a = xp_model_gguf(m), *b = xp_model_gguf(random);
    const xp_shape *sa = xp_model_shape(m), *sb = xp_model_shape(random);
    if (m == random || a->file_size != b->file_size || a->n_tensors != b->n_tensors ||
        sa->n_layer != sb->n_layer || sa->n_embd != sb->n_embd || sa->n_ff != sb->n_ff ||
        sa->n_vocab != sb->n_vocab)
        return xp_err_set(err, XP_EINVAL, "the null baseline needs a second model opened on "
                          "the same file as the first");
    /* two searches must not write one checkpoint */
    xp_search_opts so = *o;
    so.checkpoint = NULL;
    int rc = xp_search_run(m, targets, n_targets, controls, n_controls, &so, NULL, &out->run[0],
                           err);
    if (!rc)
        rc = xp_exp_randomize_mlp_signs(random, random_seed, err);
    if (!rc)
        rc = xp_search_run(random, targets, n_targets, controls, n_controls, &so, NULL,
                           &out->run[1], err);
    for (int k = 0; k < 2 && !rc; k++) {
        size_t it = out->run[k].iterations, acc = out->run[k].accepted;
        out->rate[k] = it ? (double)acc / (double)it : 0;
        xp_wilson(acc, it, &out->lo[k], &out->hi[k]);
    }
    if (rc)
        xp_null_baseline_free(out);
    return rc;
}

/* ---- proposal efficiency ---- */

typedef struct trace_ctx {
    xp_proposal_run *run;
    size_t cap;
    const xp_search_opts *o; /* the caller's, whose on_iter sees every iteration too */
    bool failed;
} trace_ctx;

static void trace_iter(void *ctx, const xp_search_iter *it)
{
    trace_ctx *t = ctx;
    xp_proposal_run *r = t->run;
    if (r->n == t->cap) {
        size_t cap = t->cap ? 2 * t->cap : 256;
        double *b = xp_realloc_array(r->best, cap, sizeof *b);
        r->best = b ? b : r->best;
        double *s = xp_realloc_array(r->seconds, cap, sizeof *s);
        r->seconds = s ? s : r->seconds;
        size_t *p = xp_realloc_array(r->probes, cap, sizeof *p);
        r->probes = p ? p : r->probes;
        double *e = xp_realloc_array(r->estimate, cap, sizeof *e);
        r->estimate = e ? e : r->estimate;
        double *c = xp_realloc_array(r->change, cap, sizeof *c);
        r->change = c ? c : r->change;
        if (!b || !s || !p || !e || !c) {
            t->failed = true;
            return;
        }
        t->cap = cap;
    }
    size_t i = r->n++;
    r->best[i] = it->best;
    r->seconds[i] = (i ? r->seconds[i - 1] : 0) + it->seconds;
    r->probes[i] = (i ? r->probes[i - 1] : 0) + it->probes_run;
    r->estimate[i] = it->estimate;
    r->change[i] = it->change;
    if (t->o->on_iter)
        t->o->on_iter(t->o->ctx, it);
}

void xp_proposal_efficiency_free(xp_proposal_efficiency *r)
{
    for (int k = 0; k < 2; k++) {
        xp_proposal_run *x = &r->run[k];
        xp_search_result_free(&x->res);
        free(x->best), free(x->seconds), free(x->probes), free(x->estimate), free(x->change);
    }
    memset(r, 0, sizeof *r);
}

/* The held-out set's right / wrong by gap sign without and with the run's patch. */
static int heldout_of(xp_model *m, const xp_probe_set *s, const xp_probe_tokens *pt,
                      xp_metric metric, xp_proposal_run *r, xp_err *err)
{
    xp_eval ev = {0};
    xp_eval_opts eo = {.metric = metric};
    xp_patch *p = r->res.patch;
    int rc = xp_eval_run(m, s, pt, &p, p && p->n_flips ? 1 : 0, &eo, &ev, err);
    if (!rc) {
        r->heldout = ev.by_gap;
        r->has_heldout = true;
    }
    xp_eval_free(&ev);
    return rc;
}

/* Where the run first reaches the target (none when it is not above the start), its
 * estimates' agreement. */
static void judge_run(xp_proposal_run *r, double start, double target)
{
    r->reached_at = 0;
    for (size_t i = 0; i < r->n && !r->reached_at && target > start; i++)
        if (r->best[i] >= target)
            r->reached_at = i + 1;
    double *e = malloc((r->n + 1) * sizeof *e), *c = malloc((r->n + 1) * sizeof *c);
    r->n_ranked = 0;
    for (size_t i = 0; e && c && i < r->n; i++)
        if (isfinite(r->estimate[i]) && isfinite(r->change[i])) {
            e[r->n_ranked] = r->estimate[i];
            c[r->n_ranked++] = r->change[i];
        }
    r->spearman = e && c ? xp_spearman(e, c, r->n_ranked) : NAN;
    free(e), free(c);
}

static double ratio_of(double baseline, double gradient)
{
    return baseline > 0 && gradient > 0 ? baseline / gradient : NAN;
}

int xp_exp_proposal_efficiency(xp_model *m, const xp_probe_tokens *targets, size_t n_targets,
                               const xp_probe_tokens *controls, size_t n_controls,
                               const xp_search_opts *o, int baseline,
                               size_t baseline_iterations, const double *target,
                               const xp_probe_set *heldout, const xp_probe_tokens *heldout_pt,
                               xp_proposal_efficiency *out, xp_err *err)
{
    memset(out, 0, sizeof *out);
    if (o->fitness == XP_FITNESS_FOCUSED)
        return xp_err_set(err, XP_EINVAL, "proposal-efficiency compares one objective: "
                          "fitness mean, min or borderline, not focused");
    if (baseline != XP_PROPOSE_SCALE && baseline != XP_PROPOSE_UNIFORM)
        return xp_err_set(err, XP_EINVAL, "the baseline proposal is scale or uniform");
    int rc = XP_OK;
    for (int k = 0; k < 2 && !rc; k++) {
        xp_proposal_run *r = &out->run[k];
        r->proposal = k ? baseline : XP_PROPOSE_GRADIENT;
        trace_ctx t = {.run = r, .o = o};
        xp_search_opts so = *o;
        so.proposal = r->proposal;
        if (k && baseline_iterations)
            so.iterations = baseline_iterations;
        so.checkpoint = NULL; /* two searches must not write one checkpoint */
        so.write_patch = NULL;
        so.on_iter = trace_iter;
        so.ctx = &t;
        rc = xp_search_run(m, targets, n_targets, controls, n_controls, &so, NULL, &r->res, err);
        if (!rc && t.failed)
            rc = xp_err_set(err, XP_ENOMEM, "out of memory for the search's trace");
        if (!rc && heldout)
            rc = heldout_of(m, heldout, heldout_pt, o->metric, r, err);
    }
    if (rc) {
        xp_proposal_efficiency_free(out);
        return rc;
    }
    out->start = out->run[0].res.start;
    out->target_given = target != NULL;
    double a = out->run[0].res.best, b = out->run[1].res.best;
    out->target = target ? *target : a < b ? a : b;
    for (int k = 0; k < 2; k++)
        judge_run(&out->run[k], out->start, out->target);
    const xp_proposal_run *g = &out->run[0], *r = &out->run[1];
    bool both = g->reached_at && r->reached_at;
    /* only the gradient reached it: the baseline would have needed more than all it ran */
    out->lower_bound = g->reached_at && !r->reached_at && r->n;
    if (out->lower_bound) {
        out->ratio_iterations = ratio_of((double)r->n, (double)g->reached_at);
        out->ratio_probes = ratio_of((double)r->probes[r->n - 1], (double)g->probes[g->reached_at - 1]);
        out->ratio_seconds = ratio_of(r->seconds[r->n - 1], g->seconds[g->reached_at - 1]);
        return XP_OK;
    }
    out->ratio_iterations = both ? ratio_of((double)r->reached_at, (double)g->reached_at) : NAN;
    out->ratio_probes =
        both ? ratio_of((double)r->probes[r->reached_at - 1], (double)g->probes[g->reached_at - 1])
             : NAN;
    out->ratio_seconds =
        both ? ratio_of(r->seconds[r->reached_at - 1], g->seconds[g->reached_at - 1]) : NAN;
    return XP_OK;
}
