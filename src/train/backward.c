/* The trainer's backward pass: from the loss's gradient at the logits back through the
 * LM head, every layer (MLP, attention, RoPE and the norms) and the embedding lookup to
 * every parameter, straight through the quantiser. Sums run in index order, so the
 * gradient has the same bits on any number of threads. */
#include "train/train.h"

#include <math.h>
#include <string.h>


/* ---- norms ------------------------------------------------------------------------ */

static float rms_scale(const float *x, size_t n, float eps)
{
    float ss = 0;
    for (size_t i = 0; i < n; i++)
        ss += x[i] * x[i];
    return 1.0f / sqrtf(ss / (float)n + eps);
}

/* Backward of y = x * r * w with r = 1/sqrt(mean(x^2) + eps): dx gets added, dw too. */
static void rmsnorm_bwd(float *dx, float *dw, const float *x, const float *w, const float *dy,
                        size_t n, float eps)
{
    float r = rms_scale(x, n, eps);
    double dot = 0;
    for (size_t i = 0; i < n; i++) {
        dw[i] += dy[i] * x[i] * r;
        dot += (double)dy[i] * w[i] * x[i];
    }
    float c = (float)(dot * r * r * r / (double)n);
    for (size_t i = 0; i < n; i++)
        dx[i] += r * dy[i] * w[i] - x[i] * c;
}

/* ---- backward --------------------------------------------------------------------- */

/* Attention of one sequence, one KV group at a time: from dA (at the outputs) to dQ, dK,
 * dV at the roped, normed heads. Sums over positions and heads run in index order. */
static void attention_bwd(xp_trainer *t, const xpt_batch *b, uint32_t l, size_t sq)
{
    const xp_shape *s = &t->s;
    xpt_acts *a = &t->a;
    size_t T = b->T, hd = s->head_dim, qd = (size_t)s->n_head * hd,
           kvd = (size_t)s->n_head_kv * hd, group = s->n_head / s->n_head_kv, n = b->len[sq];
    float scale = 1.0f / sqrtf((float)hd);
    const float *q = a->q + l * T * qd, *k = a->k + l * T * kvd, *v = a->v + l * T * kvd,
                *P = a->p + l * s->n_head * b->P;
    size_t s0 = b->start[sq];
    float dp[n];
    for (size_t hh = 0; hh < s->n_head; hh++) {
        size_t kvh = hh / group;
        for (size_t i = 0; i < n; i++) {
            const float *pr = P + hh * b->P + b->pstart[sq] + i * n;
            const float *dout = a->da + (s0 + i) * qd + hh * hd;
            const float *qi = q + (s0 + i) * qd + hh * hd;
            float *dqi = a->dq + (s0 + i) * qd + hh * hd;
            double sum = 0;
            for (size_t j = 0; j <= i; j++) {
                dp[j] = xp_dot_f32(dout, v + (s0 + j) * kvd + kvh * hd, hd);
                sum += (double)pr[j] * dp[j];
            }
            for (size_t j = 0; j <= i; j++) {
                float ds = pr[j] * (dp[j] - (float)sum) * scale;
                xpt_axpy(a->dv + (s0 + j) * kvd + kvh * hd, pr[j], dout, hd);
                xpt_axpy(dqi, ds, k + (s0 + j) * kvd + kvh * hd, hd);
                xpt_axpy(a->dk + (s0 + j) * kvd + kvh * hd, ds, qi, hd);
            }
        }
    }
}

/* Backward of RoPE (the transposed rotation) then of the per-head RMSNorm, in place on
 * the head gradients; the norm weight's gradient is summed in token order. */
static void head_bwd(float *dhead, const float *pre, const float *w, float *dw,
                     const float *cs, const float *sn, size_t hd, float eps)
{
    size_t half = hd / 2;
    float tmp[hd];
    for (size_t i = 0; i < half; i++) {
        float ga = dhead[i], gb = dhead[i + half];
        tmp[i] = ga * cs[i] + gb * sn[i];
        tmp[i + half] = -ga * sn[i] + gb * cs[i];
    }
    memset(dhead, 0, hd * sizeof *dhead);
    rmsnorm_bwd(dhead, dw, pre, w, tmp, hd, eps);
}

/* dW += dY^T X of a projection: into the trainer's gradient, or, over a model's weights,
 * where xpt_source wants it (or nowhere). */
static void weight_grad(xp_trainer *t, uint32_t l, int proj, const float *dy, const float *x,
                        size_t T)
{
    if (t->src) {
        xpt_source_weight_grad(t, l, proj, dy, x, T);
        return;
    }
    const xpt_layer_off *o = &t->L[l];
    size_t off[XP_N_PROJ] = {o->gate, o->up, o->down, o->wq, o->wk, o->wv, o->wo};
    int64_t k, n;
    xp_proj_shape(&t->s, proj, &k, &n);
    xpt_mm_bwd_w(t->grad + off[proj], dy, x, T, (size_t)k, (size_t)n);
}

static void layer_bwd(xp_trainer *t, const xpt_batch *b, uint32_t l)
{
    const xp_shape *s = &t->s;
    const xpt_layer_off *o = &t->L[l];
    xpt_acts *a = &t->a;
    size_t T = b->T, d = s->n_embd, hd = s->head_dim, half = hd / 2;
    size_t qd = (size_t)s->n_head * hd, kvd = (size_t)s->n_head_kv * hd, ff = s->n_ff;
    float eps = s->rms_eps;
    float *x = a->x + l * T * d, *xn1 = a->xn1 + l * T * d, *qp = a->qp + l * T * qd,
          *kp = a->kp + l * T * kvd, *at = a->a + l * T * qd, *xm = a->xm + l * T * d,
          *xn2 = a->xn2 + l * T * d, *g = a->g + l * T * ff, *u = a->u + l * T * ff,
          *h = a->h + l * T * ff;
    float *G = t->grad;

    /* MLP: a->dx is the gradient at the layer's output, which is also dxm's share */
    memcpy(a->dxm, a->dx, T * d * sizeof(float));
    memset(a->dh, 0, T * ff * sizeof(float));
    xpt_mm_bwd_x(a->dh, a->dx, xpt_matrix(t, l, XP_PROJ_DOWN, false), T, ff, d);
    weight_grad(t, l, XP_PROJ_DOWN, a->dx, h, T);
    for (size_t i = 0; i < T * ff; i++) {
        float sg = 1.0f / (1.0f + expf(-g[i])), silu = g[i] * sg;
        a->du[i] = a->dh[i] * silu;
        a->dg[i] = a->dh[i] * u[i] * sg * (1.0f + g[i] * (1.0f - sg));
    }
    memset(a->dxn, 0, T * d * sizeof(float));
    xpt_mm_bwd_x(a->dxn, a->dg, xpt_matrix(t, l, XP_PROJ_GATE, false), T, d, ff);
    xpt_mm_bwd_x(a->dxn, a->du, xpt_matrix(t, l, XP_PROJ_UP, false), T, d, ff);
    weight_grad(t, l, XP_PROJ_GATE, a->dg, xn2, T);
    weight_grad(t, l, XP_PROJ_UP, a->du, xn2, T);
    for (size_t i = 0; i < T; i++)
        rmsnorm_bwd(a->dxm + i * d, G + o->ffn_norm, xm + i * d, t->w + o->ffn_norm,
                    a->dxn + i * d, d, eps);

    /* attention output projection, then attention itself, per sequence */
    memset(a->da, 0, T * qd * sizeof(float));
    xpt_mm_bwd_x(a->da, a->dxm, xpt_matrix(t, l, XP_PROJ_O, false), T, qd, d);
    weight_grad(t, l, XP_PROJ_O, a->dxm, at, T);
    memset(a->dq, 0, T * qd * sizeof(float));
    memset(a->dk, 0, T * kvd * sizeof(float));
    memset(a->dv, 0, T * kvd * sizeof(float));
#pragma omp parallel for schedule(static)
    for (size_t sq = 0; sq < b->n; sq++)
        attention_bwd(t, b, l, sq);
    for (size_t sq = 0; sq < b->n; sq++)
        for (size_t pos = 0; pos < b->len[sq]; pos++) {
            size_t i = b->start[sq] + pos;
            const float *cs = t->rope_cos + pos * half, *sn = t->rope_sin + pos * half;
            for (size_t hh = 0; hh < s->n_head; hh++)
                head_bwd(a->dq + i * qd + hh * hd, qp + i * qd + hh * hd, t->w + o->q_norm,
                         G + o->q_norm, cs, sn, hd, eps);
            for (size_t hh = 0; hh < s->n_head_kv; hh++)
                head_bwd(a->dk + i * kvd + hh * hd, kp + i * kvd + hh * hd, t->w + o->k_norm,
                         G + o->k_norm, cs, sn, hd, eps);
        }
    memset(a->dxn, 0, T * d * sizeof(float));
    xpt_mm_bwd_x(a->dxn, a->dq, xpt_matrix(t, l, XP_PROJ_Q, false), T, d, qd);
    xpt_mm_bwd_x(a->dxn, a->dk, xpt_matrix(t, l, XP_PROJ_K, false), T, d, kvd);
    xpt_mm_bwd_x(a->dxn, a->dv, xpt_matrix(t, l, XP_PROJ_V, false), T, d, kvd);
    weight_grad(t, l, XP_PROJ_Q, a->dq, xn1, T);
    weight_grad(t, l, XP_PROJ_K, a->dk, xn1, T);
    weight_grad(t, l, XP_PROJ_V, a->dv, xn1, T);
    /* the gradient at the layer's input: the residual plus the attention norm's share */
    memcpy(a->dx, a->dxm, T * d * sizeof(float));
    for (size_t i = 0; i < T; i++)
        rmsnorm_bwd(a->dx + i * d, G + o->attn_norm, x + i * d, t->w + o->attn_norm,
                    a->dxn + i * d, d, eps);
}

void xpt_backward_layers(xp_trainer *t, const xpt_batch *b, uint32_t lowest)
{
    const xp_shape *s = &t->s;
    xpt_acts *a = &t->a;
    size_t d = s->n_embd, T = b->T;
    const float *xl = a->x + s->n_layer * T * d;
    memset(a->dx, 0, T * d * sizeof(float));
    for (size_t i = 0; i < T; i++)
        rmsnorm_bwd(a->dx + i * d, t->grad + t->out_norm, xl + i * d, t->w + t->out_norm,
                    a->dxn + i * d, d, s->rms_eps);
    for (uint32_t l = s->n_layer; l-- > lowest;)
        layer_bwd(t, b, l);
}

static void backward(xp_trainer *t, const xpt_batch *b)
{
    xpt_acts *a = &t->a;
    size_t d = t->s.n_embd, T = b->T, U = t->n_used;
    float *G = t->grad;
    memset(G, 0, t->n_par * sizeof *G);
    /* tied LM head: the embedding rows get the head's gradient here, the lookup's below */
    memset(a->dxn, 0, T * d * sizeof(float));
    xpt_mm_bwd_x(a->dxn, a->dlogits, t->w + t->emb, T, d, U);
    xpt_mm_bwd_w(G + t->emb, a->dlogits, a->xf, T, d, U);
    xpt_backward_layers(t, b, 0);
    for (size_t sq = 0; sq < b->n; sq++)
        for (size_t pos = 0; pos < b->len[sq]; pos++) {
            float *row = G + t->emb + (size_t)t->local[b->ids[sq][pos]] * d;
            const float *dx = a->dx + (b->start[sq] + pos) * d;
            for (size_t j = 0; j < d; j++)
                row[j] += dx[j];
        }
}

double xpt_batch_grad(xp_trainer *t, const xpt_batch *b, size_t *n_pred)
{
    xpt_prepare_weights(t);
    xpt_forward(t, b);
    double loss = xpt_softmax_loss(t, b, n_pred);
    backward(t, b);
    return loss;
}

int xpt_loss_grad(xp_trainer *t, const int32_t *const *seqs, const size_t *lens, size_t n,
                  double *loss, xp_err *err)
{
    xpt_batch b;
    int rc = xpt_batch_init(t, &b, seqs, lens, NULL, n, err);
    if (!rc) {
        size_t n_pred;
        *loss = xpt_batch_grad(t, &b, &n_pred);
    }
    xpt_batch_free(&b);
    return rc;
}
