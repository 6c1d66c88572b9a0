/* The plain forward path: the executable specification of a Qwen3 forward pass over
 * 1-bit weights. One token at a time, every weight row dequantised on the fly, fp32
 * dot products summed in index order. It reads top to bottom like the architecture:
 * embedding, then per layer attention and SwiGLU MLP with residuals, final norm, LM head.
 * Rows of a matrix are independent, so they may run on several threads without
 * changing a bit. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/forward_paths.h"

/* out[r] = W[r] . x for every row r, each sum in index order. Eight rows go together,
 * their weights interleaved, so the CPU can overlap eight independent sums; no row's
 * arithmetic changes. */
#define ROWS_AT_ONCE 8

static void matvec(const xp_weight *w, const float *x, float *out)
{
    int64_t n = w->ne0, groups = (w->ne1 + ROWS_AT_ONCE - 1) / ROWS_AT_ONCE;
#pragma omp parallel
    {
        float *row = malloc((size_t)n * sizeof *row);
        float *rows = calloc((size_t)n * ROWS_AT_ONCE, sizeof *rows); /* [k][row] */
#pragma omp for schedule(static)
        for (int64_t g = 0; g < groups; g++) {
            int64_t r0 = g * ROWS_AT_ONCE;
            int count = w->ne1 - r0 < ROWS_AT_ONCE ? (int)(w->ne1 - r0) : ROWS_AT_ONCE;
            for (int i = 0; i < count; i++) {
                xp_weight_row(w, r0 + i, row);
                for (int64_t k = 0; k < n; k++)
                    rows[k * ROWS_AT_ONCE + i] = row[k];
            }
            float acc[ROWS_AT_ONCE] = {0};
            for (int64_t k = 0; k < n; k++)
                for (int i = 0; i < ROWS_AT_ONCE; i++)
                    acc[i] += rows[k * ROWS_AT_ONCE + i] * x[k];
            for (int i = 0; i < count; i++)
                out[r0 + i] = acc[i];
        }
        free(row);
        free(rows);
    }
}

typedef struct plain_state {
    float *x, *xb, *q, *k, *v, *att, *o, *gate, *up, *h, *scores, *cos_v, *sin_v;
} plain_state;

static int alloc_state(const xp_shape *s, size_t max_pos, plain_state *st)
{
    size_t qd = (size_t)s->n_head * s->head_dim, kvd = (size_t)s->n_head_kv * s->head_dim;
    size_t sizes[] = {s->n_embd, s->n_embd, qd, kvd, kvd, qd, s->n_embd, s->n_ff, s->n_ff,
                      s->n_ff, max_pos + 1, s->head_dim / 2, s->head_dim / 2};
    float **ptrs[] = {&st->x, &st->xb, &st->q, &st->k, &st->v, &st->att, &st->o, &st->gate,
                      &st->up, &st->h, &st->scores, &st->cos_v, &st->sin_v};
    int ok = 1;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        ok &= (*ptrs[i] = malloc(sizes[i] * sizeof(float))) != NULL;
    return ok ? XP_OK : XP_ENOMEM;
}

static void free_state(plain_state *st)
{
    float *all[] = {st->x, st->xb, st->q, st->k, st->v, st->att, st->o, st->gate,
                    st->up, st->h, st->scores, st->cos_v, st->sin_v};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        free(all[i]);
}

/* Runs one token at position pos of a sequence through every layer; x is its residual. */
static void token_forward(const xp_model *m, xp_kv *kv, int32_t token, size_t pos,
                          plain_state *st)
{
    const xp_shape *s = &m->shape;
    size_t hd = s->head_dim, half = hd / 2, group = s->n_head / s->n_head_kv;
    float scale = 1.0f / sqrtf((float)hd);

    /* token embedding: the token's row of token_embd */
    xp_weight_row(&m->tok_embd, token, st->x);
    xp_rope_angles((int64_t)pos, half, s->rope_base, st->cos_v, st->sin_v);

    for (uint32_t l = 0; l < s->n_layer; l++) {
        const xp_layer *L = &m->layers[l];
        /* attention: norm, projections, per-head q/k norms, RoPE */
        xp_rmsnorm(st->xb, st->x, L->attn_norm, s->n_embd, s->rms_eps);
        matvec(&L->wq, st->xb, st->q);
        matvec(&L->wk, st->xb, st->k);
        matvec(&L->wv, st->xb, st->v);
        for (uint32_t h = 0; h < s->n_head; h++) {
            xp_rmsnorm(st->q + h * hd, st->q + h * hd, L->q_norm, hd, s->rms_eps);
            xp_rope_apply(st->q + h * hd, half, st->cos_v, st->sin_v);
        }
        for (uint32_t h = 0; h < s->n_head_kv; h++) {
            xp_rmsnorm(st->k + h * hd, st->k + h * hd, L->k_norm, hd, s->rms_eps);
            xp_rope_apply(st->k + h * hd, half, st->cos_v, st->sin_v);
        }
        /* append this position to the cache, then attend causally over 0..pos */
        memcpy(xp_kv_k(kv, l, pos), st->k, kv->dim * sizeof(float));
        memcpy(xp_kv_v(kv, l, pos), st->v, kv->dim * sizeof(float));
        for (uint32_t h = 0; h < s->n_head; h++) {
            size_t kvh = h / group;
            xp_attend(st->q + h * hd, xp_kv_k(kv, l, 0) + kvh * hd, xp_kv_v(kv, l, 0) + kvh * hd,
                      pos + 1, kv->dim, hd, scale, st->scores, st->att + h * hd);
        }
        matvec(&L->wo, st->att, st->o);
        for (uint32_t i = 0; i < s->n_embd; i++)
            st->x[i] += st->o[i];

        /* MLP: down(silu(gate(x)) * up(x)) */
        xp_rmsnorm(st->xb, st->x, L->ffn_norm, s->n_embd, s->rms_eps);
        matvec(&L->gate, st->xb, st->gate);
        matvec(&L->up, st->xb, st->up);
        xp_swiglu(st->h, st->gate, st->up, s->n_ff);
        matvec(&L->down, st->h, st->o);
        for (uint32_t i = 0; i < s->n_embd; i++)
            st->x[i] += st->o[i];
    }
}

int xp_forward_plain(xp_model *m, const xp_fwd_seq *seqs, size_t n, float *logits, xp_err *err)
{
    const xp_shape *s = &m->shape;
    size_t max_pos = 0;
    for (size_t i = 0; i < n; i++)
        if (seqs[i].kv->len + seqs[i].n_tokens > max_pos)
            max_pos = seqs[i].kv->len + seqs[i].n_tokens;
    plain_state st = {0};
    if (alloc_state(s, max_pos, &st)) {
        free_state(&st);
        return xp_err_set(err, XP_ENOMEM, "out of memory for the forward pass");
    }
    float *out = logits;
    for (size_t i = 0; i < n; i++) {
        const xp_fwd_seq *q = &seqs[i];
        for (size_t t = 0; t < q->n_tokens; t++) {
            token_forward(m, q->kv, q->tokens[t], q->kv->len + t, &st);
            if (xp_fwd_wants(q, t)) {
                xp_rmsnorm(st.xb, st.x, m->output_norm, s->n_embd, s->rms_eps);
                matvec(&m->output, st.xb, out);
                out += s->n_vocab;
            }
        }
        q->kv->len += q->n_tokens;
    }
    free_state(&st);
    return XP_OK;
}
