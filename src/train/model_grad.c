/* The trainer's passes over a model's own weights: a trainer with no corpus and no
 * optimiser whose matrices are the model's as they are at each call (dequantised one
 * projection at a time into scratch, so a 1.7B model needs a layer's worth of fp32, not the
 * whole model's), whose embedding and LM head rows are read from the model's, and whose
 * weight gradients are not kept but summed per Q1_0 block with the block's signs for the
 * tensors the caller names: the first-order effect of flipping a row, a block or a
 * scale bit, as the search ranks its candidates. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "train/train.h"

/* LM-head rows dequantised at a time: the objective's rows are then read once per chunk. */
enum { HEAD_CHUNK = 2048 };

struct xpt_source {
    xp_model *m;
    float *mat[XP_N_PROJ];        /* one dequantised matrix per projection */
    int64_t mat_layer[XP_N_PROJ]; /* whose it holds (-1: none) */
    bool mat_t[XP_N_PROJ];        /* transposed */
    float *dw;                    /* a wanted tensor's weight gradient */
    float **sums;                 /* [n_layer * XP_N_PROJ]: where a tensor's block sums go */
    int64_t *head_rows;           /* the LM head's rows that are not all zero (a trained
                                     model's unused tokens have scale 0: logit exactly 0) */
    size_t n_head_rows;
};

void xpt_source_free(struct xpt_source *src)
{
    if (!src)
        return;
    for (int p = 0; p < XP_N_PROJ; p++)
        free(src->mat[p]);
    free(src->dw);
    free(src->sums);
    free(src->head_rows);
    free(src);
}

static size_t proj_size(const xp_shape *s, int proj)
{
    int64_t k, n;
    xp_proj_shape(s, proj, &k, &n);
    return (size_t)k * (size_t)n;
}

const float *xpt_source_matrix(xp_trainer *t, uint32_t l, int proj, bool transposed)
{
    struct xpt_source *src = t->src;
    float *dst = src->mat[proj];
    if (src->mat_layer[proj] == (int64_t)l && src->mat_t[proj] == transposed)
        return dst;
    const xp_weight *w = xp_proj_weight(xp_model_layer(src->m, l), proj);
    int64_t k = w->ne0, n = w->ne1;
    if (!transposed) {
#pragma omp parallel for schedule(static)
        for (int64_t r = 0; r < n; r++)
            xp_weight_row(w, r, dst + (size_t)r * (size_t)k);
    } else {
#pragma omp parallel for schedule(static)
        for (int64_t r = 0; r < n; r++) {
            float row[k];
            xp_weight_row(w, r, row);
            for (int64_t c = 0; c < k; c++)
                dst[(size_t)c * (size_t)n + (size_t)r] = row[c];
        }
    }
    src->mat_layer[proj] = l;
    src->mat_t[proj] = transposed;
    return dst;
}

void xpt_source_weight_grad(xp_trainer *t, uint32_t l, int proj, const float *dy, const float *x,
                            size_t T)
{
    struct xpt_source *src = t->src;
    float *sums = src->sums ? src->sums[(size_t)l * XP_N_PROJ + (size_t)proj] : NULL;
    if (!sums)
        return;
    const xp_weight *w = xp_proj_weight(xp_model_layer(src->m, l), proj);
    size_t k = (size_t)w->ne0, n = (size_t)w->ne1, per_row = k / XP_Q1_0_WEIGHTS;
    memset(src->dw, 0, k * n * sizeof *src->dw);
    xpt_mm_bwd_w(src->dw, dy, x, T, k, n);
    int64_t n_blocks = (int64_t)(n * per_row);
#pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < n_blocks; b++) {
        const uint8_t *bits = w->data + (size_t)b * XP_Q1_0_BYTES + 2;
        const float *g = src->dw + (size_t)b * XP_Q1_0_WEIGHTS; /* rows are whole blocks */
        double s = 0;
        for (int j = 0; j < XP_Q1_0_WEIGHTS; j++)
            s += bits[j / 8] >> (j % 8) & 1 ? g[j] : -g[j];
        sums[b] = (float)s;
    }
}

/* The LM head's rows that are not all zero. */
static int find_head_rows(struct xpt_source *src, const xp_shape *s)
{
    const xp_weight *H = xp_model_lm_head(src->m);
    float *row = xp_calloc(s->n_embd, sizeof *row);
    if (!row || !(src->head_rows = xp_calloc(s->n_vocab, sizeof *src->head_rows))) {
        free(row);
        return XP_ENOMEM;
    }
    for (uint64_t v = 0; v < s->n_vocab; v++) {
        xp_weight_row(H, (int64_t)v, row);
        bool zero = true;
        for (size_t j = 0; j < s->n_embd && zero; j++)
            zero = row[j] == 0;
        if (!zero)
            src->head_rows[src->n_head_rows++] = (int64_t)v;
    }
    free(row);
    return XP_OK;
}

int xp_trainer_over_model(xp_trainer **out, xp_model *m, xp_err *err)
{
    *out = NULL;
    const xp_shape *s = xp_model_shape(m);
    xp_trainer *t = xp_calloc(1, sizeof *t);
    if (!t)
        return xp_err_set(err, XP_ENOMEM, "out of memory");
    t->s = *s;
    t->src = xp_calloc(1, sizeof *t->src);
    t->L = xp_calloc(s->n_layer, sizeof *t->L);
    size_t d = s->n_embd, hd = s->head_dim, max = 0;
    t->n_par = (size_t)s->n_layer * (2 * d + 2 * hd) + d;
    t->w = xp_calloc(t->n_par, sizeof *t->w);
    t->grad = xp_calloc(t->n_par, sizeof *t->grad);
    bool ok = t->src && t->L && t->w && t->grad;
    for (int p = 0; ok && p < XP_N_PROJ; p++) {
        ok = (t->src->mat[p] = xp_calloc(proj_size(s, p), sizeof(float))) != NULL;
        t->src->mat_layer[p] = -1;
        max = proj_size(s, p) > max ? proj_size(s, p) : max;
    }
    t->src->m = m;
    if (!ok || !(t->src->dw = xp_calloc(max, sizeof(float))) || find_head_rows(t->src, s)) {
        xp_trainer_free(t);
        return xp_err_set(err, XP_ENOMEM, "out of memory for the gradient pass's weights");
    }
    /* the parameter array holds the norms alone: the matrices are the model's */
    size_t off = 0;
    for (uint32_t l = 0; l < s->n_layer; l++) {
        const xp_layer *L = xp_model_layer(m, l);
        struct {
            size_t *at;
            const float *from;
            size_t n;
        } norms[] = {{&t->L[l].attn_norm, L->attn_norm, d},
                     {&t->L[l].q_norm, L->q_norm, hd},
                     {&t->L[l].k_norm, L->k_norm, hd},
                     {&t->L[l].ffn_norm, L->ffn_norm, d}};
        for (size_t i = 0; i < 4; i++) {
            *norms[i].at = off;
            memcpy(t->w + off, norms[i].from, norms[i].n * sizeof *t->w);
            off += norms[i].n;
        }
    }
    t->out_norm = off;
    memcpy(t->w + off, xp_model_output_norm(m), d * sizeof *t->w);
    *out = t;
    return XP_OK;
}

/* The chunk of wanted LM-head rows from the r0-th on, dequantised into rows (d floats
 * each); their count. */
static int64_t head_rows_at(const struct xpt_source *src, size_t r0, size_t d, float *rows)
{
    const xp_weight *H = xp_model_lm_head(src->m);
    size_t R = src->n_head_rows;
    int64_t nr = (int64_t)(R - r0 < HEAD_CHUNK ? R - r0 : HEAD_CHUNK);
    const int64_t *ids = src->head_rows + r0;
#pragma omp parallel for schedule(static)
    for (int64_t j = 0; j < nr; j++)
        xp_weight_row(H, ids[j], rows + (size_t)j * d);
    return nr;
}

/* The LM head at the wanted tokens: logits[p][v] = head row v . xf[tok[p]] (0 where the
 * row is), the rows dequantised a chunk at a time. */
static void head_forward(xp_trainer *t, const size_t *tok, size_t P, float *logits, float *rows)
{
    const struct xpt_source *src = t->src;
    size_t d = t->s.n_embd, V = t->s.n_vocab, R = src->n_head_rows;
    for (size_t r0 = 0; r0 < R; r0 += HEAD_CHUNK) {
        const int64_t *ids = src->head_rows + r0;
        int64_t nr = head_rows_at(src, r0, d, rows);
#pragma omp parallel for schedule(static)
        for (int64_t p = 0; p < (int64_t)P; p++) {
            const float *x = t->a.xf + tok[p] * d;
            for (int64_t j = 0; j < nr; j++)
                logits[(size_t)p * V + (size_t)ids[j]] = xp_dot_f32(rows + (size_t)j * d, x, d);
        }
    }
}

/* The gradient at the final norm's output from the logits': a.dxn[tok[p]] = sum over v
 * in order of dlogits[p][v] times head row v. */
static void head_backward(xp_trainer *t, const size_t *tok, size_t P, const float *dlogits,
                          float *rows)
{
    const struct xpt_source *src = t->src;
    size_t d = t->s.n_embd, V = t->s.n_vocab, R = src->n_head_rows;
    for (size_t r0 = 0; r0 < R; r0 += HEAD_CHUNK) {
        const int64_t *ids = src->head_rows + r0;
        int64_t nr = head_rows_at(src, r0, d, rows);
#pragma omp parallel for schedule(static)
        for (int64_t p = 0; p < (int64_t)P; p++) {
            float *dx = t->a.dxn + tok[p] * d;
            const float *dl = dlogits + (size_t)p * V;
            for (int64_t j = 0; j < nr; j++)
                if (dl[ids[j]] != 0)
                    xpt_axpy(dx, dl[ids[j]], rows + (size_t)j * d, d);
        }
    }
}

/* Checks the tensors and points the source's table at their block sums. */
static int want_tensors(xp_trainer *t, xp_grad_tensor *tensors, size_t n, uint32_t *lowest,
                        xp_err *err)
{
    const xp_shape *s = &t->s;
    struct xpt_source *src = t->src;
    if (!(src->sums = xp_calloc((size_t)s->n_layer * XP_N_PROJ, sizeof *src->sums)))
        return xp_err_set(err, XP_ENOMEM, "out of memory");
    *lowest = s->n_layer;
    for (size_t i = 0; i < n; i++) {
        const xp_grad_tensor *g = &tensors[i];
        if (g->layer >= s->n_layer || g->proj < 0 || g->proj >= XP_N_PROJ)
            return xp_err_set(err, XP_EINVAL, "no projection %d in layer %u of %u", g->proj,
                              g->layer, s->n_layer);
        const xp_weight *w = xp_proj_weight(xp_model_layer(src->m, g->layer), g->proj);
        if (w->type != XP_TYPE_Q1_0)
            return xp_err_set(err, XP_EINVAL, "%s is %s, not Q1_0: it has no sign blocks", w->name,
                              xp_tensor_type_name(w->type));
        src->sums[(size_t)g->layer * XP_N_PROJ + (size_t)g->proj] = g->block_sum;
        *lowest = g->layer < *lowest ? g->layer : *lowest;
    }
    return XP_OK;
}

int xp_trainer_block_grads(xp_trainer *t, const xp_grad_seq *seqs, size_t n_seqs,
                           xp_grad_objective objective, void *ctx, xp_grad_tensor *tensors,
                           size_t n_tensors, double *value, xp_err *err)
{
    if (!t->src)
        return xp_err_set(err, XP_EINVAL, "block gradients need a trainer over a model");
    const xp_shape *s = &t->s;
    size_t d = s->n_embd, V = s->n_vocab, P = 0;
    const int32_t **ids = xp_calloc(n_seqs, sizeof *ids);
    size_t *lens = xp_calloc(n_seqs, sizeof *lens);
    float *logits = NULL, *dlogits = NULL, *rows = NULL;
    size_t *tok = NULL;
    xpt_batch b = {0};
    uint32_t lowest = s->n_layer;
    int rc = ids && lens ? XP_OK : xp_err_set(err, XP_ENOMEM, "out of memory");
    if (!rc && n_tensors)
        rc = want_tensors(t, tensors, n_tensors, &lowest, err);
    for (size_t i = 0; !rc && i < n_seqs; i++) {
        ids[i] = seqs[i].ids;
        lens[i] = seqs[i].n;
        for (size_t j = 0; j < seqs[i].n; j++)
            P += seqs[i].want[j] != 0;
    }
    if (!rc)
        rc = xpt_batch_init(t, &b, ids, lens, NULL, n_seqs, err);
    if (!rc && (!(logits = xp_calloc(P * V, sizeof *logits)) ||
                !(dlogits = xp_calloc(P * V, sizeof *dlogits)) ||
                !(rows = xp_calloc((size_t)HEAD_CHUNK * d, sizeof *rows)) ||
                !(tok = xp_calloc(P, sizeof *tok))))
        rc = xp_err_set(err, XP_ENOMEM, "out of memory for %zu rows of logits", P);
    if (!rc) {
        for (size_t p = 0, i = 0; i < n_seqs; i++)
            for (size_t j = 0; j < seqs[i].n; j++)
                if (seqs[i].want[j])
                    tok[p++] = b.start[i] + j;
        for (int p = 0; p < XP_N_PROJ; p++)
            t->src->mat_layer[p] = -1; /* the weights may have changed since the last pass */
        const xp_weight *E = xp_model_embedding(t->src->m);
        for (size_t i = 0; i < n_seqs; i++)
            for (size_t j = 0; j < seqs[i].n; j++)
                xp_weight_row(E, seqs[i].ids[j], t->a.x + (b.start[i] + j) * d);
        xpt_forward_layers(t, &b);
        head_forward(t, tok, P, logits, rows);
        rc = objective(ctx, logits, dlogits, P, V, value, err);
    }
    if (!rc) {
        memset(t->a.dxn, 0, b.T * d * sizeof *t->a.dxn);
        head_backward(t, tok, P, dlogits, rows);
        memset(t->grad, 0, t->n_par * sizeof *t->grad);
        if (lowest < s->n_layer)
            xpt_backward_layers(t, &b, lowest);
    }
    free(t->src->sums);
    t->src->sums = NULL;
    xpt_batch_free(&b);
    free(ids), free(lens), free(logits), free(dlogits), free(rows), free(tok);
    return rc;
}
