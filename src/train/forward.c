/* The trainer's forward pass: a batch of sequences packed into one token array with the
 * memory its activations need, then the embedding, every layer with the engine's own
 * fp32 operations in the engine's order, the final norm and the LM head over the trained
 * rows, and the cross-entropy of every predicted token over the full vocabulary. What
 * the backward pass needs is kept. */
#include "train/train.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"

/* ---- batch memory ----------------------------------------------------------------- */

void xpt_acts_free(xpt_acts *a)
{
    float **all[] = {&a->x,  &a->xn1, &a->qp, &a->kp, &a->q,  &a->k,  &a->v,
                     &a->a,  &a->xm,  &a->xn2, &a->g, &a->u,  &a->h,  &a->xf,
                     &a->logits, &a->p, &a->dx, &a->dxm, &a->dxn, &a->dq, &a->dk,
                     &a->dv, &a->da,  &a->dg, &a->du, &a->dh, &a->dlogits};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        free(*all[i]);
        *all[i] = NULL;
    }
    a->cap_t = a->cap_p = 0;
}

/* Room for T tokens whose attention matrices hold P scores in all. */
static int acts_reserve(xp_trainer *t, size_t T, size_t P)
{
    xpt_acts *a = &t->a;
    if (T <= a->cap_t && P <= a->cap_p)
        return XP_OK;
    xpt_acts_free(a);
    const xp_shape *s = &t->s;
    size_t L = s->n_layer, d = s->n_embd, qd = (size_t)s->n_head * s->head_dim,
           kvd = (size_t)s->n_head_kv * s->head_dim, ff = s->n_ff, U = t->n_used;
    struct { float **p; size_t n; } want[] = {
        {&a->x, (L + 1) * T * d}, {&a->xn1, L * T * d}, {&a->qp, L * T * qd},
        {&a->kp, L * T * kvd},    {&a->q, L * T * qd},  {&a->k, L * T * kvd},
        {&a->v, L * T * kvd},     {&a->a, L * T * qd},  {&a->xm, L * T * d},
        {&a->xn2, L * T * d},     {&a->g, L * T * ff},  {&a->u, L * T * ff},
        {&a->h, L * T * ff},      {&a->xf, T * d},      {&a->logits, T * U},
        {&a->p, L * s->n_head * P}, {&a->dx, T * d},    {&a->dxm, T * d},
        {&a->dxn, T * d},         {&a->dq, T * qd},     {&a->dk, T * kvd},
        {&a->dv, T * kvd},        {&a->da, T * qd},     {&a->dg, T * ff},
        {&a->du, T * ff},         {&a->dh, T * ff},     {&a->dlogits, T * U}};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        if (!(*want[i].p = xp_calloc(want[i].n, sizeof(float)))) {
            xpt_acts_free(a);
            return XP_ENOMEM;
        }
    a->cap_t = T;
    a->cap_p = P;
    return XP_OK;
}

static int rope_reserve(xp_trainer *t, size_t n)
{
    if (n <= t->rope_max)
        return XP_OK;
    size_t half = t->s.head_dim / 2;
    float *c = xp_realloc_array(t->rope_cos, n * half, sizeof *c);
    if (c)
        t->rope_cos = c;
    float *s = xp_realloc_array(t->rope_sin, n * half, sizeof *s);
    if (s)
        t->rope_sin = s;
    if (!c || !s)
        return XP_ENOMEM;
    for (size_t pos = t->rope_max; pos < n; pos++)
        xp_rope_angles((int64_t)pos, half, t->s.rope_base, t->rope_cos + pos * half,
                       t->rope_sin + pos * half);
    t->rope_max = n;
    return XP_OK;
}

/* ---- batches ---------------------------------------------------------------------- */

int xpt_batch_init(xp_trainer *t, xpt_batch *b, const int32_t *const *ids, const size_t *len,
                      const size_t *from, size_t n, xp_err *err)
{
    memset(b, 0, sizeof *b);
    b->n = n;
    b->ids = ids;
    b->len = len;
    b->from = from;
    b->start = xp_calloc(n, sizeof *b->start);
    b->pstart = xp_calloc(n, sizeof *b->pstart);
    if (!b->start || !b->pstart)
        return xp_err_set(err, XP_ENOMEM, "train: out of memory for a batch");
    size_t max_len = 0;
    for (size_t i = 0; i < n; i++) {
        if (len[i] == 0)
            return xp_err_set(err, XP_EINVAL, "train: sequence %zu of the batch is empty", i);
        for (size_t j = 0; j < len[i]; j++)
            if (ids[i][j] < 0 || (uint64_t)ids[i][j] >= t->s.n_vocab ||
                (t->local && t->local[ids[i][j]] < 0))
                return xp_err_set(err, XP_EINVAL, "train: token %d of sequence %zu has no "
                                  "trained embedding row", ids[i][j], i);
        b->start[i] = b->T;
        b->pstart[i] = b->P;
        b->T += len[i];
        b->P += len[i] * len[i];
        max_len = len[i] > max_len ? len[i] : max_len;
    }
    if (max_len > t->s.n_ctx)
        return xp_err_set(err, XP_EINVAL, "train: a sequence of %zu tokens exceeds the context "
                          "length %u", max_len, t->s.n_ctx);
    if (acts_reserve(t, b->T, b->P) || rope_reserve(t, max_len))
        return xp_err_set(err, XP_ENOMEM, "train: out of memory for a batch of %zu tokens",
                          b->T);
    return XP_OK;
}

void xpt_batch_free(xpt_batch *b)
{
    free(b->start);
    free(b->pstart);
}

/* ---- forward ---------------------------------------------------------------------- */

/* Layer l of the forward pass over every token of the batch, keeping what the backward
 * pass needs. The ops are the engine's (ops.c), in the engine's order. */
static void layer_fwd(xp_trainer *t, const xpt_batch *b, uint32_t l)
{
    const xp_shape *s = &t->s;
    const xpt_layer_off *o = &t->L[l];
    xpt_acts *a = &t->a;
    size_t T = b->T, d = s->n_embd, hd = s->head_dim, half = hd / 2;
    size_t qd = (size_t)s->n_head * hd, kvd = (size_t)s->n_head_kv * hd, ff = s->n_ff;
    size_t group = s->n_head / s->n_head_kv;
    float eps = s->rms_eps, scale = 1.0f / sqrtf((float)hd);
    float *x = a->x + l * T * d, *xn1 = a->xn1 + l * T * d, *qp = a->qp + l * T * qd,
          *kp = a->kp + l * T * kvd, *q = a->q + l * T * qd, *k = a->k + l * T * kvd,
          *v = a->v + l * T * kvd, *at = a->a + l * T * qd, *xm = a->xm + l * T * d,
          *xn2 = a->xn2 + l * T * d, *g = a->g + l * T * ff, *u = a->u + l * T * ff,
          *h = a->h + l * T * ff, *xo = a->x + (l + 1) * T * d, *P = a->p + l * s->n_head * b->P;

    for (size_t i = 0; i < T; i++)
        xp_rmsnorm(xn1 + i * d, x + i * d, t->w + o->attn_norm, d, eps);
    xpt_mm_fwd(qp, xn1, xpt_matrix(t, l, XP_PROJ_Q, true), T, d, qd);
    xpt_mm_fwd(kp, xn1, xpt_matrix(t, l, XP_PROJ_K, true), T, d, kvd);
    xpt_mm_fwd(v, xn1, xpt_matrix(t, l, XP_PROJ_V, true), T, d, kvd);
#pragma omp parallel for schedule(static)
    for (size_t sq = 0; sq < b->n; sq++) {
        float scores[b->len[sq] + 1];
        for (size_t pos = 0; pos < b->len[sq]; pos++) {
            size_t i = b->start[sq] + pos;
            const float *cs = t->rope_cos + pos * half, *sn = t->rope_sin + pos * half;
            for (size_t hh = 0; hh < s->n_head; hh++) {
                xp_rmsnorm(q + i * qd + hh * hd, qp + i * qd + hh * hd, t->w + o->q_norm, hd, eps);
                xp_rope_apply(q + i * qd + hh * hd, half, cs, sn);
            }
            for (size_t hh = 0; hh < s->n_head_kv; hh++) {
                xp_rmsnorm(k + i * kvd + hh * hd, kp + i * kvd + hh * hd, t->w + o->k_norm, hd,
                           eps);
                xp_rope_apply(k + i * kvd + hh * hd, half, cs, sn);
            }
            /* causal attention over this sequence's positions 0..pos, then the weights
             * xp_attend used (exp scores over their sum, summed in the same order) */
            const float *k0 = k + b->start[sq] * kvd, *v0 = v + b->start[sq] * kvd;
            for (size_t hh = 0; hh < s->n_head; hh++) {
                size_t kvh = hh / group;
                xp_attend(q + i * qd + hh * hd, k0 + kvh * hd, v0 + kvh * hd, pos + 1, kvd, hd,
                          scale, scores, at + i * qd + hh * hd);
                float sum = 0;
                for (size_t j = 0; j <= pos; j++)
                    sum += scores[j];
                float *pr = P + hh * b->P + b->pstart[sq] + pos * b->len[sq];
                for (size_t j = 0; j <= pos; j++)
                    pr[j] = scores[j] / sum;
            }
        }
    }
    xpt_mm_fwd(xm, at, xpt_matrix(t, l, XP_PROJ_O, true), T, qd, d);
    for (size_t i = 0; i < T * d; i++)
        xm[i] += x[i];
    for (size_t i = 0; i < T; i++)
        xp_rmsnorm(xn2 + i * d, xm + i * d, t->w + o->ffn_norm, d, eps);
    xpt_mm_fwd(g, xn2, xpt_matrix(t, l, XP_PROJ_GATE, true), T, d, ff);
    xpt_mm_fwd(u, xn2, xpt_matrix(t, l, XP_PROJ_UP, true), T, d, ff);
    xp_swiglu(h, g, u, T * ff);
    xpt_mm_fwd(xo, h, xpt_matrix(t, l, XP_PROJ_DOWN, true), T, ff, d);
    for (size_t i = 0; i < T * d; i++)
        xo[i] += xm[i];
}

/* The matrices as the trainer's step made them (quantise.c), or as a model holds them. */
const float *xpt_matrix(xp_trainer *t, uint32_t l, int proj, bool transposed)
{
    if (t->src)
        return xpt_source_matrix(t, l, proj, transposed);
    const xpt_layer_off *o = &t->L[l];
    size_t off[XP_N_PROJ] = {o->gate, o->up, o->down, o->wq, o->wk, o->wv, o->wo};
    return (transposed ? t->wt : t->w) + off[proj];
}

void xpt_forward_layers(xp_trainer *t, const xpt_batch *b)
{
    const xp_shape *s = &t->s;
    size_t d = s->n_embd, T = b->T;
    for (uint32_t l = 0; l < s->n_layer; l++)
        layer_fwd(t, b, l);
    const float *xl = t->a.x + s->n_layer * T * d;
    for (size_t i = 0; i < T; i++)
        xp_rmsnorm(t->a.xf + i * d, xl + i * d, t->w + t->out_norm, d, s->rms_eps);
}

/* Embedding, layers, final norm and the LM head over the trained rows. */
void xpt_forward(xp_trainer *t, const xpt_batch *b)
{
    size_t d = t->s.n_embd, T = b->T;
    for (size_t sq = 0; sq < b->n; sq++)
        for (size_t pos = 0; pos < b->len[sq]; pos++)
            memcpy(t->a.x + (b->start[sq] + pos) * d,
                   t->w + t->emb + (size_t)t->local[b->ids[sq][pos]] * d, d * sizeof(float));
    xpt_forward_layers(t, b);
    xpt_mm_fwd(t->a.logits, t->a.xf, t->wt + t->emb, T, d, t->n_used);
}

/* Cross-entropy of every predicted next token over the full vocabulary: the trained rows' logits
 * plus (n_vocab - n_used) logits that are exactly 0. Leaves dloss/dlogits (of the mean)
 * in a.dlogits; returns the mean loss. */
double xpt_softmax_loss(xp_trainer *t, const xpt_batch *b, size_t *n_pred)
{
    size_t U = t->n_used, count = 0;
    double zeros = (double)(t->s.n_vocab - U), total = 0;
    for (size_t sq = 0; sq < b->n; sq++)
        count += b->len[sq] - (b->from ? b->from[sq] : 1);
    memset(t->a.dlogits, 0, b->T * U * sizeof(float));
    for (size_t sq = 0; sq < b->n; sq++)
        for (size_t pos = (b->from ? b->from[sq] : 1) - 1; pos + 1 < b->len[sq]; pos++) {
            size_t i = b->start[sq] + pos;
            const float *lg = t->a.logits + i * U;
            float *dl = t->a.dlogits + i * U;
            double max = zeros > 0 ? 0 : -INFINITY;
            for (size_t j = 0; j < U; j++)
                max = lg[j] > max ? lg[j] : max;
            double z = zeros * exp(-max);
            for (size_t j = 0; j < U; j++)
                z += exp(lg[j] - max);
            size_t target = (size_t)t->local[b->ids[sq][pos + 1]];
            total += log(z) + max - lg[target];
            for (size_t j = 0; j < U; j++)
                dl[j] = (float)(exp(lg[j] - max) / z / (double)count);
            dl[target] -= (float)(1.0 / (double)count);
        }
    *n_pred = count;
    return count ? total / (double)count : 0;
}

/* ---- logits ------------------------------------------------------------------------ */

int xp_trainer_logits(xp_trainer *t, const int32_t *tokens, size_t n, float *logits,
                      xp_err *err)
{
    xpt_batch b;
    const int32_t *ids[1] = {tokens};
    int rc = xpt_batch_init(t, &b, ids, &n, NULL, 1, err);
    if (!rc) {
        xpt_prepare_weights(t);
        xpt_forward(t, &b);
        memset(logits, 0, n * t->s.n_vocab * sizeof *logits);
        for (size_t i = 0; i < n; i++)
            for (size_t j = 0; j < t->n_used; j++)
                logits[i * t->s.n_vocab + (size_t)t->used[j]] = t->a.logits[i * t->n_used + j];
    }
    xpt_batch_free(&b);
    return rc;
}
