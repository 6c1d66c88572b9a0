/* Gradient-ranked proposals: the search objective (the fitness's first-order part over the
 * probes' gaps) differentiated through the model by the trainer's own forward and backward
 * passes, run over the model's current weights, give each candidate flip of the searched
 * tensors its first-order change of the objective; the proposer then offers the
 * candidates best estimate first. The estimate only orders the candidates: acceptance is
 * the exact measurement, as for any proposal. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/lse.h"
#include "search/search_int.h"
#include "xorpatch/train.h"

struct xp_gradient {
    xp_model *m;
    xp_trainer *t;
    const xp_probe_tokens **pt;
    size_t n, nt, nc;
    xp_metric metric;
    /* the pass's sequences: per probe its correct continuation (or prompt alone, for
     * token_gap) and, for seq_logprob, its wrong one; the rows they want */
    xp_grad_seq *seqs;
    size_t n_seqs;
    int32_t **ids;
    uint8_t **want;
    size_t *row0;   /* per probe: its first row (the prompt's last position) */
    size_t *seq0;   /* per probe: its first sequence ([n]: n_seqs) */
    double *weight; /* per target: d objective / d gap of this pass */
    /* objective 0 is the targets' part; objective 1 + c, when the penalty is modelled,
     * control c's gap alone. Per objective and proposer unit: its tensor and the block
     * sums of the last pass ([objective * n_tens + unit]) */
    xp_grad_tensor *tens;
    const xp_weight **w;
    size_t n_tens, n_obj;
    double *values;
    /* the control penalty's model of the last pass: λ / nc and each control's current
     * shortfall below its base gap, b - g (negative when above) */
    double penalty;
    double *short_by;
};

void xp_gradient_free(xp_gradient *g)
{
    if (!g)
        return;
    xp_trainer_free(g->t);
    for (size_t i = 0; i < g->n_seqs; i++)
        free(g->ids[i]), free(g->want[i]);
    for (size_t i = 0; g->tens && i < g->n_tens * (1 + g->nc); i++)
        free(g->tens[i].block_sum);
    free(g->seqs), free(g->ids), free(g->want), free(g->row0), free(g->seq0), free(g->weight);
    free(g->tens), free(g->w), free(g->values), free(g->short_by);
    free(g);
}

/* Sequence prompt + ans[0..na-2], wanting the logits from position `from` on. */
static int add_seq(xp_gradient *g, const xp_probe_tokens *p, const int32_t *ans, size_t na,
                   size_t from)
{
    size_t len = p->n_prompt + (na ? na - 1 : 0), i = g->n_seqs;
    if (!(g->ids[i] = malloc(len * sizeof **g->ids)) || !(g->want[i] = calloc(len, 1)))
        return XP_ENOMEM;
    memcpy(g->ids[i], p->prompt, p->n_prompt * sizeof **g->ids);
    if (na > 1)
        memcpy(g->ids[i] + p->n_prompt, ans, (na - 1) * sizeof **g->ids);
    memset(g->want[i] + from, 1, len - from);
    g->seqs[g->n_seqs++] = (xp_grad_seq){g->ids[i], len, g->want[i]};
    return XP_OK;
}

int xp_gradient_new(xp_gradient **out, xp_model *m, const xp_probe_tokens **pt, size_t nt,
                    size_t nc, xp_metric metric, const xp_proposer *p, xp_err *err)
{
    *out = NULL;
    xp_gradient *g = calloc(1, sizeof *g);
    if (!g)
        return xp_err_set(err, XP_ENOMEM, "out of memory");
    size_t n = nt + nc;
    *g = (xp_gradient){.m = m, .pt = pt, .n = n, .nt = nt, .nc = nc, .metric = metric};
    int rc = xp_trainer_over_model(&g->t, m, err);
    if (rc) {
        xp_gradient_free(g);
        return rc;
    }
    g->seqs = calloc(2 * n + 1, sizeof *g->seqs);
    g->ids = calloc(2 * n + 1, sizeof *g->ids);
    g->want = calloc(2 * n + 1, sizeof *g->want);
    g->row0 = calloc(n + 1, sizeof *g->row0);
    g->seq0 = calloc(n + 1, sizeof *g->seq0);
    g->weight = calloc(n + 1, sizeof *g->weight);
    g->tens = calloc(p->n_units * (1 + nc) + 1, sizeof *g->tens);
    g->w = calloc(p->n_units + 1, sizeof *g->w);
    g->values = calloc(1 + nc, sizeof *g->values);
    g->short_by = calloc(nc + 1, sizeof *g->short_by);
    rc = g->seqs && g->ids && g->want && g->row0 && g->seq0 && g->weight && g->tens && g->w &&
                 g->values && g->short_by
             ? XP_OK
             : XP_ENOMEM;
    size_t rows = 0;
    for (size_t i = 0; !rc && i < n; i++) {
        const xp_probe_tokens *q = pt[i];
        g->row0[i] = rows;
        g->seq0[i] = g->n_seqs;
        if (metric == XP_METRIC_TOKEN_GAP) {
            rc = add_seq(g, q, NULL, 0, q->n_prompt - 1);
            rows += 1;
            continue;
        }
        rc = add_seq(g, q, q->answer[0], q->n_answer[0], q->n_prompt - 1);
        rows += q->n_answer[0];
        if (!rc && xp_metric_pair(metric) && q->n_answer[1] > 1) {
            rc = add_seq(g, q, q->answer[1], q->n_answer[1], q->n_prompt);
            rows += q->n_answer[1] - 1;
        }
    }
    g->seq0[n] = g->n_seqs;
    g->n_tens = p->n_units;
    for (size_t k = 0; !rc && k < 1 + nc; k++)
        for (size_t u = 0; !rc && u < p->n_units; u++) {
            const xp_unit *un = &p->units[u];
            size_t blocks = (size_t)un->w->ne1 * (size_t)(un->w->ne0 / XP_Q1_0_WEIGHTS);
            g->w[u] = un->w;
            xp_grad_tensor *t = &g->tens[k * g->n_tens + u];
            *t = (xp_grad_tensor){un->layer, un->proj, calloc(blocks, sizeof(float))};
            rc = t->block_sum ? XP_OK : XP_ENOMEM;
        }
    if (rc) {
        xp_gradient_free(g);
        return xp_err_set(err, rc, "out of memory for the gradient proposals");
    }
    *out = g;
    return XP_OK;
}

void xp_gradient_weights(const xp_fitness_ctx *f, const double *cur, long focal, double *w)
{
    size_t nt = f->nt;
    memset(w, 0, nt * sizeof *w);
    if (f->kind == XP_FITNESS_FOCUSED) {
        if (focal >= 0)
            w[focal] = 1;
        return;
    }
    if (f->kind == XP_FITNESS_BORDERLINE) {
        for (size_t t = 0; t < nt; t++)
            w[t] = 0.1 / ((0.1 + fabs(cur[t])) * (0.1 + fabs(cur[t])));
        return;
    }
    if (f->kind == XP_FITNESS_MIN) {
        size_t least = 0;
        for (size_t t = 1; t < nt; t++)
            least = cur[t] - f->base[t] < cur[least] - f->base[least] ? t : least;
        if (nt)
            w[least] = 1;
    } else {
        for (size_t t = 0; t < nt; t++)
            w[t] = 1.0 / (double)nt;
    }
}

bool xp_gradient_models_penalty(const xp_fitness_ctx *f)
{
    return (f->kind == XP_FITNESS_MEAN || f->kind == XP_FITNESS_MIN) && f->lambda > 0 && f->nc;
}

/* dl += w d log softmax(row)[tok] / d row. */
static void add_logprob(float *dl, const float *row, size_t V, int32_t tok, double w)
{
    double lse = xp_log_sum_exp(row, V);
    for (size_t j = 0; j < V; j++)
        dl[j] -= (float)(w * exp((double)row[j] - lse));
    dl[tok] += (float)w;
}

/* w times the gradient of probe q's gap (as xp_probe_gap computes it) with respect to its
 * rows: last (the prompt's last position), rows[a] (answer a's later positions). */
static void add_gap_grad(const xp_probe_tokens *q, xp_metric metric, const float *last,
                         const float *const rows[2], float *dlast, float *const drows[2], size_t V,
                         double w)
{
    if (metric == XP_METRIC_TOKEN_GAP) {
        dlast[q->gap_id[0]] += (float)w;
        dlast[q->gap_id[1]] -= (float)w;
    } else if (metric == XP_METRIC_ANSWER_LOGPROB) {
        for (size_t i = 0; i < q->n_answer[0]; i++)
            add_logprob(i ? drows[0] + (i - 1) * V : dlast, i ? rows[0] + (i - 1) * V : last, V,
                        q->answer[0][i], w);
    } else if (metric == XP_METRIC_MARGIN) {
        /* the sub-gradient at the least margin: its token against the strongest other */
        double least = INFINITY;
        size_t at = 0;
        int32_t other_at = 0;
        for (size_t i = 0; i < q->n_answer[0]; i++) {
            const float *r = i ? rows[0] + (i - 1) * V : last;
            int32_t c = q->answer[0][i], other = -1;
            for (size_t j = 0; j < V; j++)
                if ((int32_t)j != c && (other < 0 || r[j] > r[other]))
                    other = (int32_t)j;
            double mg = (double)r[c] - (double)r[other];
            if (mg < least) {
                least = mg;
                at = i;
                other_at = other;
            }
        }
        float *d = at ? drows[0] + (at - 1) * V : dlast;
        d[q->answer[0][at]] += (float)w;
        d[other_at] -= (float)w;
    } else { /* seq_logprob: the first differing token's logits, then each answer's rest */
        size_t s = xp_probe_shared(q);
        float *dpart = s ? drows[0] + (s - 1) * V : dlast;
        dpart[q->answer[0][s]] += (float)w;
        dpart[q->answer[1][s]] -= (float)w;
        for (int a = 0; a < 2; a++)
            for (size_t i = s + 1; i < q->n_answer[a]; i++)
                add_logprob(drows[a] + (i - 1) * V, rows[a] + (i - 1) * V, V, q->answer[a][i],
                            a ? -w : w);
    }
}

/* One pass's objective: probes from..to-1, weighted (the targets) or not (one control). */
typedef struct pass_ctx {
    const xp_gradient *g;
    size_t from, to;
    bool weighted;
} pass_ctx;

static int objective(void *ctx, const float *logits, float *dlogits, size_t n_rows, size_t V,
                     double *value, xp_err *err)
{
    (void)n_rows, (void)err;
    const pass_ctx *pc = ctx;
    const xp_gradient *g = pc->g;
    double v = 0;
    for (size_t i = pc->from; i < pc->to; i++) {
        double w = pc->weighted ? g->weight[i] : 1.0;
        if (w == 0)
            continue;
        const xp_probe_tokens *q = g->pt[i];
        size_t r0 = g->row0[i] - g->row0[pc->from],
               r1 = r0 + (g->metric == XP_METRIC_TOKEN_GAP ? 1 : q->n_answer[0]);
        const float *last = logits + r0 * V, *rows[2] = {last + V, logits + r1 * V};
        float *dlast = dlogits + r0 * V, *drows[2] = {dlast + V, dlogits + r1 * V};
        v += w * xp_probe_gap(q, g->metric, last, rows, V);
        add_gap_grad(q, g->metric, last, rows, dlast, drows, V, w);
    }
    *value = v;
    return XP_OK;
}

int xp_gradient_pass(xp_gradient *g, const xp_fitness_ctx *f, const double *cur, long focal,
                     double *value, xp_err *err)
{
    xp_gradient_weights(f, cur, focal, g->weight);
    bool pen = xp_gradient_models_penalty(f);
    g->n_obj = pen ? 1 + g->nc : 1;
    g->penalty = pen ? f->lambda / (double)g->nc : 0;
    for (size_t c = 0; pen && c < g->nc; c++)
        g->short_by[c] = f->base[g->nt + c] - cur[g->nt + c];
    /* the targets together, then each control on its own sequences (its gradient is 0
     * on every other's) */
    int rc = XP_OK;
    size_t first = 0, last = g->nt; /* the targets of nonzero weight: focused has one */
    while (first < last && g->weight[first] == 0)
        first++;
    while (last > first && g->weight[last - 1] == 0)
        last--;
    for (size_t k = 0; k < g->n_obj && !rc; k++) {
        pass_ctx pc = {g, k ? g->nt + k - 1 : first, k ? g->nt + k : last, k == 0};
        rc = xp_trainer_block_grads(g->t, g->seqs + g->seq0[pc.from],
                                    g->seq0[pc.to] - g->seq0[pc.from], objective, &pc,
                                    g->tens + k * g->n_tens, g->n_tens, &g->values[k], err);
    }
    if (rc)
        xp_err_wrap(err, "the gradient pass");
    *value = g->values[0];
    return rc;
}

static double block_scale(const uint8_t *block)
{
    return xp_fp16_to_f32((uint16_t)(block[0] | block[1] << 8));
}

/* The first-order change of objective k's value if c were flipped (unit u's tensor). */
static double linear_change(const xp_gradient *g, size_t k, size_t u, const xp_candidate *c)
{
    const xp_weight *w = g->w[u];
    const float *S = g->tens[k * g->n_tens + u].block_sum;
    int64_t per_row = w->ne0 / XP_Q1_0_WEIGHTS;
    if (c->kind == XP_FLIP_ROW) {
        double e = 0;
        for (int64_t b = c->index * per_row; b < (c->index + 1) * per_row; b++)
            e += -2.0 * block_scale(w->data + b * XP_Q1_0_BYTES) * S[b];
        return e;
    }
    const uint8_t *block = w->data + c->index * XP_Q1_0_BYTES;
    double d = block_scale(block);
    if (c->kind == XP_FLIP_BLOCK)
        return -2.0 * d * S[c->index];
    uint16_t h = (uint16_t)(block[0] | block[1] << 8) ^ (uint16_t)(1u << c->bit);
    return ((double)xp_fp16_to_f32(h) - d) * S[c->index];
}

/* The targets' linear change, plus the penalty's change on the controls' linear changes:
 * λ / nc times, per control, max(0, b - g) - max(0, b - g - Δ). */
double xp_gradient_estimate(const xp_gradient *g, const xp_candidate *c)
{
    size_t u = 0;
    while (u < g->n_tens && (g->tens[u].layer != c->layer || g->tens[u].proj != c->proj))
        u++;
    if (u == g->n_tens)
        return NAN;
    double e = linear_change(g, 0, u, c);
    for (size_t k = 1; k < g->n_obj; k++) {
        double s = g->short_by[k - 1], after = s - linear_change(g, k, u, c);
        e += g->penalty * ((s > 0 ? s : 0) - (after > 0 ? after : 0));
    }
    return e;
}

static int by_estimate(const void *a, const void *b)
{
    const xp_ranked *x = a, *y = b;
    if (x->estimate != y->estimate)
        return x->estimate > y->estimate ? -1 : 1;
    return (x->order > y->order) - (x->order < y->order);
}

/* Every candidate of the proposer's units, in the enumeration order: per unit its rows,
 * or its blocks (scale-bit granularity: each block's flip, then its scale bits). */
static size_t enumerate(const xp_proposer *p, xp_ranked *out)
{
    size_t n = 0;
    int bits = p->granularity == XP_GRAN_SCALE_BIT ? p->bit_max - p->bit_min + 1 : 0;
    for (size_t u = 0; u < p->n_units; u++) {
        const xp_unit *un = &p->units[u];
        for (int64_t i = 0; i < un->n_items; i++) {
            xp_candidate c = {un->layer, (uint8_t)un->proj,
                              p->granularity == XP_GRAN_ROW ? XP_FLIP_ROW : XP_FLIP_BLOCK, 0, i};
            if (out)
                out[n].c = c;
            n++;
            for (int k = 0; k < bits; k++, n++)
                if (out)
                    out[n].c = (xp_candidate){un->layer, (uint8_t)un->proj, XP_FLIP_SCALE,
                                              (uint8_t)(p->bit_min + k), i};
        }
    }
    return n;
}

int xp_gradient_refresh(xp_gradient *g, xp_proposer *p, const xp_fitness_ctx *f, const double *cur,
                        long focal, xp_err *err)
{
    if (!p->stale && p->ranked_focal == focal)
        return XP_OK;
    double value;
    int rc = xp_gradient_pass(g, f, cur, focal, &value, err);
    if (rc)
        return rc;
    size_t n = enumerate(p, NULL);
    if (!p->ranked && !(p->ranked = malloc((n + 1) * sizeof *p->ranked)))
        return xp_err_set(err, XP_ENOMEM, "out of memory for %zu ranked candidates", n);
    enumerate(p, p->ranked);
    for (size_t i = 0; i < n; i++) {
        double e = xp_gradient_estimate(g, &p->ranked[i].c);
        p->ranked[i].estimate = isnan(e) ? -INFINITY : e;
        p->ranked[i].order = i;
    }
    qsort(p->ranked, n, sizeof *p->ranked, by_estimate);
    p->n_ranked = n;
    p->next_rank = 0;
    p->accepts = 0;
    p->stale = false;
    p->ranked_focal = focal;
    return XP_OK;
}
