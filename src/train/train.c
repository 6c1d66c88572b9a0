/* Quantisation-aware training of a small Qwen3 whose forward pass is exactly what the
 * engine computes from the exported Q1_0 file. Latent fp32 weights are quantised every
 * step (sign, and an fp16 per-128-block scale = mean |w|, as Q1_0 stores it); the
 * forward pass then runs the engine's own fp32 operations in the engine's order, so the
 * exported model reproduces the training logits; gradients pass straight through the
 * quantiser to the latent weights, and AdamW (warm-up, cosine decay, global-norm
 * clipping) updates them. Only the embedding rows of tokens in the corpus exist here:
 * every other row exports with scale 0, so its logit is exactly 0 and the softmax adds
 * count x e^0 for them. Every reduction runs in a fixed order and threads only split
 * independent outputs, so a run gives the same bits on any number of threads. */
#include "train/train.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/file.h"
#include "core/strmap.h"
#include "model/metadata.h"
#include "model/ops.h"

typedef struct layer_off {
    size_t attn_norm, wq, wk, wv, wo, q_norm, k_norm, ffn_norm, gate, up, down;
} layer_off;

/* Activations of one batch, kept for the backward pass (all [tokens x width]). */
typedef struct acts {
    size_t cap_t, cap_p;
    float *x, *xn1, *qp, *kp, *q, *k, *v, *a, *xm, *xn2, *g, *u, *h; /* per layer */
    float *xf, *logits, *p;                                        /* p: attention */
    /* gradients, one layer at a time */
    float *dx, *dxm, *dxn, *dq, *dk, *dv, *da, *dg, *du, *dh, *dlogits;
} acts;

struct xp_trainer {
    xp_train_opts o;
    xp_shape s;
    size_t n_used;
    int32_t *used;  /* sorted token ids with a trained row */
    int32_t *local; /* n_vocab: row of a token in the trained embedding, or -1 */
    size_t n_docs;  /* training documents */
    int32_t **doc_ids;
    size_t *doc_len;
    size_t *doc_from; /* first token whose prediction is trained: the answer's first */
    size_t n_focus;   /* training documents of the focus task, and their indices */
    size_t *focus;
    size_t n_par;
    float *p, *grad, *m, *v;
    float *w, *wt; /* the forward weights (dequantised), and matrices transposed */
    xpt_tensor *tens;
    size_t n_tens;
    layer_off *L;
    size_t emb, out_norm;
    uint32_t step;
    size_t rope_max;
    float *rope_cos, *rope_sin;
    acts a;
};

/* ---- parameters ------------------------------------------------------------------- */

static size_t add_tensor(xp_trainer *t, const char *name, int64_t ne0, int64_t ne1, bool q)
{
    xpt_tensor *x = &t->tens[t->n_tens++];
    snprintf(x->name, sizeof x->name, "%s", name);
    x->off = t->n_par;
    x->ne0 = ne0;
    x->ne1 = ne1;
    x->n = (size_t)ne0 * (size_t)(ne1 ? ne1 : 1);
    x->quantised = q;
    t->n_par += x->n;
    return x->off;
}

static int layout(xp_trainer *t)
{
    const xp_shape *s = &t->s;
    size_t qd = (size_t)s->n_head * s->head_dim, kvd = (size_t)s->n_head_kv * s->head_dim;
    t->tens = xp_calloc(3 + 11 * (size_t)s->n_layer, sizeof *t->tens);
    t->L = xp_calloc(s->n_layer, sizeof *t->L);
    if (!t->tens || !t->L)
        return XP_ENOMEM;
    t->emb = add_tensor(t, "token_embd.weight", s->n_embd, (int64_t)t->n_used, true);
    char nm[48];
#define T(field, tensor, ne0, ne1, q)                                                              \
    (xp_tensor_name(nm, sizeof nm, l, tensor), L->field = add_tensor(t, nm, ne0, ne1, q))
    for (uint32_t l = 0; l < s->n_layer; l++) {
        layer_off *L = &t->L[l];
        T(attn_norm, "attn_norm", s->n_embd, 0, false);
        T(wq, xp_proj_tensor(XP_PROJ_Q), s->n_embd, (int64_t)qd, true);
        T(wk, xp_proj_tensor(XP_PROJ_K), s->n_embd, (int64_t)kvd, true);
        T(wv, xp_proj_tensor(XP_PROJ_V), s->n_embd, (int64_t)kvd, true);
        T(wo, xp_proj_tensor(XP_PROJ_O), (int64_t)qd, s->n_embd, true);
        T(q_norm, "attn_q_norm", s->head_dim, 0, false);
        T(k_norm, "attn_k_norm", s->head_dim, 0, false);
        T(ffn_norm, "ffn_norm", s->n_embd, 0, false);
        T(gate, xp_proj_tensor(XP_PROJ_GATE), s->n_embd, s->n_ff, true);
        T(up, xp_proj_tensor(XP_PROJ_UP), s->n_embd, s->n_ff, true);
        T(down, xp_proj_tensor(XP_PROJ_DOWN), s->n_ff, s->n_embd, true);
    }
#undef T
    t->out_norm = add_tensor(t, "output_norm.weight", s->n_embd, 0, false);
    return XP_OK;
}

static uint64_t mix64(uint64_t z)
{
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* A standard normal from two counter-keyed uniforms (Box-Muller), so initialisation
 * depends on the seed and the element only. */
static float normal_at(uint64_t seed, uint64_t i)
{
    uint64_t a = mix64(seed ^ mix64(2 * i)), b = mix64(seed ^ mix64(2 * i + 1));
    double u1 = ((double)(a >> 11) + 1.0) * 0x1.0p-53, u2 = (double)(b >> 11) * 0x1.0p-53;
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

/* Norms start at 1; matrices and the embedding at GPT-2's 0.02, the projections that
 * write into the residual stream smaller by sqrt(2 x layers) so that depth does not
 * inflate it. */
static void init_params(xp_trainer *t)
{
    uint64_t seed = mix64(t->o.seed ^ 0x7472616e696e67ull);
    for (size_t i = 0; i < t->n_tens; i++) {
        const xpt_tensor *x = &t->tens[i];
        float std = 0.02f;
        uint32_t layer;
        int proj = xp_tensor_name_parse(x->name, &layer);
        if (proj >= 0 && xp_proj_info_of(proj)->out == XP_DIM_EMBD)
            std /= sqrtf(2.0f * (float)t->s.n_layer);
        for (size_t j = 0; j < x->n; j++)
            t->p[x->off + j] = x->quantised ? std * normal_at(seed, x->off + j) : 1.0f;
    }
}

/* The Q1_0 quantiser of one 128-weight block: scale = fp16(mean |w|), sign bit set for
 * w >= 0. Writes the dequantised weights (what the engine reads) and, when asked, the
 * 18 stored bytes. */
static void quantise_block(const float *w, float *deq, uint8_t *bytes)
{
    float sum = 0;
    for (int j = 0; j < XP_Q1_0_WEIGHTS; j++)
        sum += fabsf(w[j]);
    uint16_t h = xp_f32_to_fp16(sum / XP_Q1_0_WEIGHTS);
    float d = xp_fp16_to_f32(h);
    if (bytes) {
        bytes[0] = (uint8_t)h;
        bytes[1] = (uint8_t)(h >> 8);
        memset(bytes + 2, 0, XP_Q1_0_QS);
    }
    for (int j = 0; j < XP_Q1_0_WEIGHTS; j++) {
        bool pos = w[j] >= 0;
        if (deq)
            deq[j] = pos ? d : -d;
        if (bytes && pos)
            bytes[2 + j / 8] |= (uint8_t)(1u << (j % 8));
    }
}

/* The forward weights of this step: quantised (or the latent ones), plus every matrix
 * transposed so the forward product runs along contiguous output rows. */
static void prepare_weights(xp_trainer *t)
{
    for (size_t i = 0; i < t->n_tens; i++) {
        const xpt_tensor *x = &t->tens[i];
        const float *src = t->p + x->off;
        float *dst = t->w + x->off;
        if (x->quantised && t->o.quantise) {
            int64_t nb = (int64_t)(x->n / XP_Q1_0_WEIGHTS);
#pragma omp parallel for schedule(static)
            for (int64_t b = 0; b < nb; b++)
                quantise_block(src + b * XP_Q1_0_WEIGHTS, dst + b * XP_Q1_0_WEIGHTS, NULL);
        } else {
            memcpy(dst, src, x->n * sizeof *dst);
        }
        if (x->quantised) {
            float *tr = t->wt + x->off;
            int64_t rows = x->ne1, cols = x->ne0;
#pragma omp parallel for schedule(static)
            for (int64_t c = 0; c < cols; c++)
                for (int64_t r = 0; r < rows; r++)
                    tr[c * rows + r] = dst[r * cols + c];
        }
    }
}

/* ---- matrix products -------------------------------------------------------------- */

/* Cloned per instruction set like the engine's attention: lanes are independent and each
 * does multiply-then-add, so every clone gives the same bits. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define CLONES
#endif

static CLONES void axpy(float *restrict y, float a, const float *restrict x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        y[i] += a * x[i];
}

/* y_i += a_i * x for four rows at once: x is read once for the four, and each y_i gets
 * exactly the multiply-then-add it would get alone. */
static CLONES void axpy4(float *restrict y0, float *restrict y1, float *restrict y2,
                         float *restrict y3, float a0, float a1, float a2, float a3,
                         const float *restrict x, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        y0[i] += a0 * x[i];
        y1[i] += a1 * x[i];
        y2[i] += a2 * x[i];
        y3[i] += a3 * x[i];
    }
}

/* Tokens go four at a time so each weight row is read once per four tokens (the weights
 * do not fit in L1; the four outputs do). */
enum { TOK_TILE = 4 };

/* out[t] (+)= sum over i, in index order from 0, of in[t][i] m[i] for T tokens: in is
 * [T][n_in], m [n_in][n_out], out [T][n_out], cleared first when `clear`. */
static void rows_accumulate(float *out, const float *in, const float *m, size_t T, size_t n_in,
                            size_t n_out, bool clear)
{
    size_t tiles = (T + TOK_TILE - 1) / TOK_TILE;
#pragma omp parallel for schedule(static)
    for (size_t tile = 0; tile < tiles; tile++) {
        size_t t0 = tile * TOK_TILE, nt = T - t0 < TOK_TILE ? T - t0 : TOK_TILE;
        if (clear)
            memset(out + t0 * n_out, 0, nt * n_out * sizeof *out);
        if (nt == TOK_TILE) {
            const float *i0 = in + t0 * n_in, *i1 = i0 + n_in, *i2 = i1 + n_in, *i3 = i2 + n_in;
            float *o0 = out + t0 * n_out;
            for (size_t i = 0; i < n_in; i++)
                axpy4(o0, o0 + n_out, o0 + 2 * n_out, o0 + 3 * n_out, i0[i], i1[i], i2[i],
                      i3[i], m + i * n_out, n_out);
        } else {
            for (size_t t = t0; t < T; t++)
                for (size_t i = 0; i < n_in; i++)
                    axpy(out + t * n_out, in[t * n_in + i], m + i * n_out, n_out);
        }
    }
}

/* Y[t] = W X[t] for T tokens, W given transposed (wt: [k][n]). Each output is summed
 * over k in index order from 0, exactly as the engine's plain matvec sums a row. */
static void mm_fwd(float *y, const float *x, const float *wt, size_t T, size_t k, size_t n)
{
    rows_accumulate(y, x, wt, T, k, n, true);
}

/* dX[t] += W^T dY[t] (w: [n][k]), each sum over r in index order. */
static void mm_bwd_x(float *dx, const float *dy, const float *w, size_t T, size_t k, size_t n)
{
    rows_accumulate(dx, dy, w, T, n, k, false);
}

/* y += a0 x0, then += a1 x1, += a2 x2, += a3 x3: the four updates of four separate
 * axpy calls, in their order, with y loaded and stored once. */
static CLONES void axpy_seq4(float *restrict y, float a0, float a1, float a2, float a3,
                             const float *restrict x0, const float *restrict x1,
                             const float *restrict x2, const float *restrict x3, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        float v = y[i];
        v += a0 * x0[i];
        v += a1 * x1[i];
        v += a2 * x2[i];
        v += a3 * x3[i];
        y[i] = v;
    }
}

/* dW[r] += sum over t (in order) of dY[t][r] X[t]. Rows go to threads in blocks, so a
 * token's inputs are read once per block of rows. */
enum { ROW_BLOCK = 8 };
static void mm_bwd_w(float *dw, const float *dy, const float *x, size_t T, size_t k, size_t n)
{
    size_t blocks = (n + ROW_BLOCK - 1) / ROW_BLOCK;
#pragma omp parallel for schedule(static)
    for (size_t b = 0; b < blocks; b++) {
        size_t r0 = b * ROW_BLOCK, r1 = r0 + ROW_BLOCK < n ? r0 + ROW_BLOCK : n, t = 0;
        for (; t + 4 <= T; t += 4)
            for (size_t r = r0; r < r1; r++)
                axpy_seq4(dw + r * k, dy[t * n + r], dy[(t + 1) * n + r], dy[(t + 2) * n + r],
                          dy[(t + 3) * n + r], x + t * k, x + (t + 1) * k, x + (t + 2) * k,
                          x + (t + 3) * k, k);
        for (; t < T; t++)
            for (size_t r = r0; r < r1; r++)
                axpy(dw + r * k, dy[t * n + r], x + t * k, k);
    }
}

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

/* ---- batch memory ----------------------------------------------------------------- */

static void acts_free(acts *a)
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
    acts *a = &t->a;
    if (T <= a->cap_t && P <= a->cap_p)
        return XP_OK;
    acts_free(a);
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
            acts_free(a);
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

/* ---- forward ---------------------------------------------------------------------- */

typedef struct batch {
    size_t n, T, P;
    const int32_t *const *ids;
    const size_t *len;
    const size_t *from;     /* per sequence, the first token predicted; NULL: from 1 */
    size_t *start, *pstart; /* first token, first attention score of each sequence */
} batch;

/* Layer l of the forward pass over every token of the batch, keeping what the backward
 * pass needs. The ops are the engine's (ops.c), in the engine's order. */
static void layer_fwd(xp_trainer *t, const batch *b, uint32_t l)
{
    const xp_shape *s = &t->s;
    const layer_off *o = &t->L[l];
    acts *a = &t->a;
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
    mm_fwd(qp, xn1, t->wt + o->wq, T, d, qd);
    mm_fwd(kp, xn1, t->wt + o->wk, T, d, kvd);
    mm_fwd(v, xn1, t->wt + o->wv, T, d, kvd);
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
    mm_fwd(xm, at, t->wt + o->wo, T, qd, d);
    for (size_t i = 0; i < T * d; i++)
        xm[i] += x[i];
    for (size_t i = 0; i < T; i++)
        xp_rmsnorm(xn2 + i * d, xm + i * d, t->w + o->ffn_norm, d, eps);
    mm_fwd(g, xn2, t->wt + o->gate, T, d, ff);
    mm_fwd(u, xn2, t->wt + o->up, T, d, ff);
    xp_swiglu(h, g, u, T * ff);
    mm_fwd(xo, h, t->wt + o->down, T, ff, d);
    for (size_t i = 0; i < T * d; i++)
        xo[i] += xm[i];
}

/* Embedding, layers, final norm and the LM head over the trained rows. */
static void forward(xp_trainer *t, const batch *b)
{
    const xp_shape *s = &t->s;
    size_t d = s->n_embd, T = b->T;
    for (size_t sq = 0; sq < b->n; sq++)
        for (size_t pos = 0; pos < b->len[sq]; pos++)
            memcpy(t->a.x + (b->start[sq] + pos) * d,
                   t->w + t->emb + (size_t)t->local[b->ids[sq][pos]] * d, d * sizeof(float));
    for (uint32_t l = 0; l < s->n_layer; l++)
        layer_fwd(t, b, l);
    const float *xl = t->a.x + s->n_layer * T * d;
    for (size_t i = 0; i < T; i++)
        xp_rmsnorm(t->a.xf + i * d, xl + i * d, t->w + t->out_norm, d, s->rms_eps);
    mm_fwd(t->a.logits, t->a.xf, t->wt + t->emb, T, d, t->n_used);
}

/* Cross-entropy of every predicted next token over the full vocabulary: the trained rows' logits
 * plus (n_vocab - n_used) logits that are exactly 0. Leaves dloss/dlogits (of the mean)
 * in a.dlogits; returns the mean loss. */
static double softmax_loss(xp_trainer *t, const batch *b, size_t *n_pred)
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

/* ---- backward --------------------------------------------------------------------- */

/* Attention of one sequence, one KV group at a time: from dA (at the outputs) to dQ, dK,
 * dV at the roped, normed heads. Sums over positions and heads run in index order. */
static void attention_bwd(xp_trainer *t, const batch *b, uint32_t l, size_t sq)
{
    const xp_shape *s = &t->s;
    acts *a = &t->a;
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
                axpy(a->dv + (s0 + j) * kvd + kvh * hd, pr[j], dout, hd);
                axpy(dqi, ds, k + (s0 + j) * kvd + kvh * hd, hd);
                axpy(a->dk + (s0 + j) * kvd + kvh * hd, ds, qi, hd);
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

static void layer_bwd(xp_trainer *t, const batch *b, uint32_t l)
{
    const xp_shape *s = &t->s;
    const layer_off *o = &t->L[l];
    acts *a = &t->a;
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
    mm_bwd_x(a->dh, a->dx, t->w + o->down, T, ff, d);
    mm_bwd_w(G + o->down, a->dx, h, T, ff, d);
    for (size_t i = 0; i < T * ff; i++) {
        float sg = 1.0f / (1.0f + expf(-g[i])), silu = g[i] * sg;
        a->du[i] = a->dh[i] * silu;
        a->dg[i] = a->dh[i] * u[i] * sg * (1.0f + g[i] * (1.0f - sg));
    }
    memset(a->dxn, 0, T * d * sizeof(float));
    mm_bwd_x(a->dxn, a->dg, t->w + o->gate, T, d, ff);
    mm_bwd_x(a->dxn, a->du, t->w + o->up, T, d, ff);
    mm_bwd_w(G + o->gate, a->dg, xn2, T, d, ff);
    mm_bwd_w(G + o->up, a->du, xn2, T, d, ff);
    for (size_t i = 0; i < T; i++)
        rmsnorm_bwd(a->dxm + i * d, G + o->ffn_norm, xm + i * d, t->w + o->ffn_norm,
                    a->dxn + i * d, d, eps);

    /* attention output projection, then attention itself, per sequence */
    memset(a->da, 0, T * qd * sizeof(float));
    mm_bwd_x(a->da, a->dxm, t->w + o->wo, T, qd, d);
    mm_bwd_w(G + o->wo, a->dxm, at, T, qd, d);
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
    mm_bwd_x(a->dxn, a->dq, t->w + o->wq, T, d, qd);
    mm_bwd_x(a->dxn, a->dk, t->w + o->wk, T, d, kvd);
    mm_bwd_x(a->dxn, a->dv, t->w + o->wv, T, d, kvd);
    mm_bwd_w(G + o->wq, a->dq, xn1, T, d, qd);
    mm_bwd_w(G + o->wk, a->dk, xn1, T, d, kvd);
    mm_bwd_w(G + o->wv, a->dv, xn1, T, d, kvd);
    /* the gradient at the layer's input: the residual plus the attention norm's share */
    memcpy(a->dx, a->dxm, T * d * sizeof(float));
    for (size_t i = 0; i < T; i++)
        rmsnorm_bwd(a->dx + i * d, G + o->attn_norm, x + i * d, t->w + o->attn_norm,
                    a->dxn + i * d, d, eps);
}

static void backward(xp_trainer *t, const batch *b)
{
    const xp_shape *s = &t->s;
    acts *a = &t->a;
    size_t d = s->n_embd, T = b->T, U = t->n_used;
    float *G = t->grad;
    memset(G, 0, t->n_par * sizeof *G);
    /* tied LM head: the embedding rows get the head's gradient here, the lookup's below */
    memset(a->dxn, 0, T * d * sizeof(float));
    mm_bwd_x(a->dxn, a->dlogits, t->w + t->emb, T, d, U);
    mm_bwd_w(G + t->emb, a->dlogits, a->xf, T, d, U);
    const float *xl = a->x + s->n_layer * T * d;
    memset(a->dx, 0, T * d * sizeof(float));
    for (size_t i = 0; i < T; i++)
        rmsnorm_bwd(a->dx + i * d, G + t->out_norm, xl + i * d, t->w + t->out_norm,
                    a->dxn + i * d, d, s->rms_eps);
    for (uint32_t l = s->n_layer; l-- > 0;)
        layer_bwd(t, b, l);
    for (size_t sq = 0; sq < b->n; sq++)
        for (size_t pos = 0; pos < b->len[sq]; pos++) {
            float *row = G + t->emb + (size_t)t->local[b->ids[sq][pos]] * d;
            const float *dx = a->dx + (b->start[sq] + pos) * d;
            for (size_t j = 0; j < d; j++)
                row[j] += dx[j];
        }
}

/* ---- batches ---------------------------------------------------------------------- */

static int batch_init(xp_trainer *t, batch *b, const int32_t *const *ids, const size_t *len,
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
            if (ids[i][j] < 0 || (uint64_t)ids[i][j] >= t->s.n_vocab || t->local[ids[i][j]] < 0)
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

static void batch_free(batch *b)
{
    free(b->start);
    free(b->pstart);
}

int xpt_loss_grad(xp_trainer *t, const int32_t *const *seqs, const size_t *lens, size_t n,
                  double *loss, xp_err *err)
{
    batch b;
    int rc = batch_init(t, &b, seqs, lens, NULL, n, err);
    if (!rc) {
        size_t n_pred;
        prepare_weights(t);
        forward(t, &b);
        *loss = softmax_loss(t, &b, &n_pred);
        backward(t, &b);
    }
    batch_free(&b);
    return rc;
}

/* ---- optimiser -------------------------------------------------------------------- */

static float lr_at(const xp_train_opts *o, uint32_t step)
{
    if (step < o->warmup)
        return o->lr * (float)(step + 1) / (float)o->warmup;
    double span = o->steps > o->warmup ? (double)(o->steps - o->warmup) : 1;
    double f = (double)(step - o->warmup) / span;
    if (f > 1)
        f = 1;
    return (float)(o->lr_min + (o->lr - o->lr_min) * 0.5 * (1 + cos(3.141592653589793 * f)));
}

/* AdamW with bias correction; weight decay only on matrices and the embedding. */
static void adamw(xp_trainer *t, float lr, float clip_scale)
{
    const xp_train_opts *o = &t->o;
    double bc1 = 1 - pow(o->beta1, t->step + 1), bc2 = 1 - pow(o->beta2, t->step + 1);
    for (size_t ti = 0; ti < t->n_tens; ti++) {
        const xpt_tensor *x = &t->tens[ti];
        float wd = x->quantised ? o->weight_decay : 0;
        float *p = t->p + x->off, *m = t->m + x->off, *v = t->v + x->off;
        const float *g = t->grad + x->off;
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < x->n; i++) {
            float gi = g[i] * clip_scale;
            m[i] = o->beta1 * m[i] + (1 - o->beta1) * gi;
            v[i] = o->beta2 * v[i] + (1 - o->beta2) * gi * gi;
            float mh = (float)(m[i] / bc1), vh = (float)(v[i] / bc2);
            p[i] -= lr * (mh / (sqrtf(vh) + 1e-8f) + wd * p[i]);
        }
    }
}

/* Document j of step s's batch: a function of the seed and the step only, so a resumed
 * run draws the same batches as one that never stopped. */
static size_t batch_doc(const xp_trainer *t, uint32_t step, uint32_t j)
{
    uint64_t h = mix64(t->o.seed ^ mix64(((uint64_t)step << 20) ^ j ^ 0x62617463680000ull));
    if (step < t->o.focus_steps)
        return t->focus[h % t->n_focus];
    return (size_t)(h % t->n_docs);
}

int xp_trainer_step(xp_trainer *t, xp_train_stats *st, xp_err *err)
{
    if (!t->n_docs)
        return xp_err_set(err, XP_EINVAL, "train: the corpus has no training items");
    uint32_t B = t->o.batch;
    const int32_t **ids = xp_calloc(B, sizeof *ids);
    size_t *len = xp_calloc(B, sizeof *len), *from = xp_calloc(B, sizeof *from);
    if (!ids || !len || !from) {
        free(ids);
        free(len);
        free(from);
        return xp_err_set(err, XP_ENOMEM, "train: out of memory");
    }
    for (uint32_t j = 0; j < B; j++) {
        size_t di = batch_doc(t, t->step, j);
        ids[j] = t->doc_ids[di];
        len[j] = t->doc_len[di];
        from[j] = t->doc_from[di];
    }
    batch b;
    int rc = batch_init(t, &b, ids, len, from, B, err);
    if (!rc) {
        size_t n_pred;
        prepare_weights(t);
        forward(t, &b);
        double loss = softmax_loss(t, &b, &n_pred);
        backward(t, &b);
        double ss = 0;
        for (size_t i = 0; i < t->n_par; i++)
            ss += (double)t->grad[i] * t->grad[i];
        double norm = sqrt(ss);
        float clip = t->o.clip > 0 && norm > t->o.clip ? (float)(t->o.clip / norm) : 1.0f;
        float lr = lr_at(&t->o, t->step);
        adamw(t, lr, clip);
        t->step++;
        if (st)
            *st = (xp_train_stats){t->step, loss, norm, lr, n_pred};
    }
    batch_free(&b);
    free(ids);
    free(len);
    free(from);
    return rc;
}

uint32_t xp_trainer_steps_done(const xp_trainer *t) { return t->step; }

/* ---- set-up ----------------------------------------------------------------------- */

void xp_train_opts_default(xp_train_opts *o)
{
    memset(o, 0, sizeof *o);
    xp_shape_preset("tiny", &o->shape, NULL);
    o->shape.n_ctx = 1024; /* what the corpus needs, with room: the trained context */
    o->seed = 1;
    o->steps = 4200;
    o->batch = 48;
    o->warmup = 60;
    o->lr = 1e-3f;
    o->lr_min = 1e-4f;
    o->weight_decay = 0.05f;
    o->clip = 1.0f;
    o->beta1 = 0.9f;
    o->beta2 = 0.98f;
    o->quantise = true;
}

/* Marks tokens (ids from the tokenizer, so in range) as having a trained row. */
static void add_used(xp_trainer *t, const int32_t *ids, size_t n)
{
    for (size_t i = 0; i < n; i++)
        t->local[ids[i]] = 0;
}

/* Where a document's answer starts: after the tokens it shares with its prompt alone.
 * Only the answer (and end marker) is trained, as in instruction tuning: the operands and
 * passages of the prompts are random draws a model cannot and need not predict, and
 * their noise would drown the answers' gradient. */
static int answer_start(const xp_tokenizer *tok, const xp_doc *d, const int32_t *ids, size_t n,
                        size_t *from, xp_err *err)
{
    int32_t *p;
    size_t np;
    int rc = xp_tokenize(tok, d->prompt, strlen(d->prompt), d->chat, &p, &np, err);
    if (rc)
        return rc;
    size_t k = 0;
    while (k < np && k < n && p[k] == ids[k])
        k++;
    free(p);
    *from = k ? k : 1;
    return XP_OK;
}

int xp_trainer_new(xp_trainer **out, const xp_train_opts *o, const xp_tokenizer *tok,
                   const xp_corpus *c, xp_err *err)
{
    *out = NULL;
    int rc = xp_shape_check(&o->shape, err);
    if (rc)
        return rc;
    if (o->shape.n_vocab != xp_tokenizer_n_vocab(tok))
        return xp_err_set(err, XP_EINVAL, "train: the shape has %llu embedding rows but the "
                          "tokenizer %zu tokens", (unsigned long long)o->shape.n_vocab,
                          xp_tokenizer_n_vocab(tok));
    if (!o->shape.tied_output)
        return xp_err_set(err, XP_EINVAL, "train: only a tied LM head is trained");
    if (o->batch == 0 || o->steps == 0 || !(o->lr > 0))
        return xp_err_set(err, XP_EINVAL, "train: steps, batch and learning rate must be "
                          "positive");
    xp_trainer *t = xp_calloc(1, sizeof *t);
    if (!t)
        return xp_err_set(err, XP_ENOMEM, "train: out of memory");
    t->o = *o;
    t->s = o->shape;
    t->local = malloc(t->s.n_vocab * sizeof *t->local);
    t->doc_ids = xp_calloc(c->n, sizeof *t->doc_ids);
    t->doc_len = xp_calloc(c->n, sizeof *t->doc_len);
    t->doc_from = xp_calloc(c->n, sizeof *t->doc_from);
    t->focus = xp_calloc(c->n, sizeof *t->focus);
    if (!t->local || !t->doc_ids || !t->doc_len || !t->doc_from || !t->focus) {
        rc = xp_err_set(err, XP_ENOMEM, "train: out of memory");
        goto fail;
    }
    for (uint64_t i = 0; i < t->s.n_vocab; i++)
        t->local[i] = -1;
    /* every token of every item (held-out ones too, so their rows exist and evaluation
     * sees the same softmax), and the end markers generation stops at */
    for (size_t i = 0; i < c->n; i++) {
        int32_t *ids;
        size_t n;
        if ((rc = xp_doc_tokenize(tok, &c->docs[i], &ids, &n, err)))
            goto fail;
        add_used(t, ids, n);
        size_t from = 1;
        if (!c->docs[i].heldout && (rc = answer_start(tok, &c->docs[i], ids, n, &from, err))) {
            free(ids);
            goto fail;
        }
        if (!c->docs[i].heldout && from < n) {
            if (o->focus_task && !strcmp(c->docs[i].task, o->focus_task))
                t->focus[t->n_focus++] = t->n_docs;
            t->doc_ids[t->n_docs] = ids;
            t->doc_from[t->n_docs] = from;
            t->doc_len[t->n_docs++] = n;
        } else {
            free(ids);
        }
    }
    if (o->focus_steps && !t->n_focus) {
        rc = xp_err_set(err, XP_EINVAL, "train: the corpus has no training items of the "
                        "focus task '%s'", o->focus_task ? o->focus_task : "");
        goto fail;
    }
    const char *markers[] = {"<|im_end|>", "<|endoftext|>"};
    for (size_t i = 0; i < 2; i++) {
        int32_t id = xp_tokenizer_find(tok, markers[i]);
        if (id >= 0)
            add_used(t, &id, 1);
    }
    for (uint64_t i = 0; i < t->s.n_vocab; i++)
        t->n_used += t->local[i] == 0;
    t->used = xp_calloc(t->n_used, sizeof *t->used);
    if (!t->used) {
        rc = xp_err_set(err, XP_ENOMEM, "train: out of memory");
        goto fail;
    }
    size_t k = 0;
    for (uint64_t i = 0; i < t->s.n_vocab; i++)
        if (t->local[i] == 0) {
            t->used[k] = (int32_t)i;
            t->local[i] = (int32_t)k++;
        }
    if ((rc = layout(t)) != XP_OK) {
        rc = xp_err_set(err, XP_ENOMEM, "train: out of memory");
        goto fail;
    }
    float **bufs[] = {&t->p, &t->grad, &t->m, &t->v, &t->w, &t->wt};
    for (size_t i = 0; i < 6; i++)
        if (!(*bufs[i] = xp_calloc(t->n_par, sizeof(float)))) {
            rc = xp_err_set(err, XP_ENOMEM, "train: out of memory for %zu parameters",
                            t->n_par);
            goto fail;
        }
    init_params(t);
    *out = t;
    return XP_OK;
fail:
    xp_trainer_free(t);
    return rc;
}

void xp_trainer_free(xp_trainer *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->n_docs; i++)
        free(t->doc_ids[i]);
    free(t->doc_ids);
    free(t->doc_len);
    free(t->doc_from);
    free(t->focus);
    free(t->used);
    free(t->local);
    float *bufs[] = {t->p, t->grad, t->m, t->v, t->w, t->wt, t->rope_cos, t->rope_sin};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        free(bufs[i]);
    free(t->tens);
    free(t->L);
    acts_free(&t->a);
    free(t);
}

/* ---- checkpoints ------------------------------------------------------------------ */

static const char ckpt_magic[8] = {'X', 'P', 'T', 'R', 'A', 'I', 'N', '2'};

typedef struct ckpt_head {
    char magic[8];
    uint32_t n_layer, n_embd, n_ff, n_head, n_head_kv, head_dim, step, pad;
    uint64_t n_vocab, n_used, n_par, seed;
    uint64_t schedule; /* schedule_hash of the options */
} ckpt_head;

/* A hash of every option the batches and learning rates of later steps depend on
 * besides the seed, so a run resumed with other options is refused rather than left to
 * continue a schedule it did not start. */
static uint64_t schedule_hash(const xp_train_opts *o)
{
    const uint32_t u[] = {o->steps, o->batch, o->warmup, o->focus_steps};
    const float f[] = {o->lr, o->lr_min, o->weight_decay, o->clip, o->beta1, o->beta2};
    uint8_t buf[sizeof u + sizeof f];
    memcpy(buf, u, sizeof u);
    memcpy(buf + sizeof u, f, sizeof f);
    uint64_t h = xp_hash_bytes(buf, sizeof buf);
    const char *task = o->focus_steps && o->focus_task ? o->focus_task : "";
    return h ^ mix64(xp_hash_bytes(task, strlen(task)));
}

int xp_trainer_save(const xp_trainer *t, const char *path, xp_err *err)
{
    ckpt_head h = {{0}, t->s.n_layer, t->s.n_embd, t->s.n_ff, t->s.n_head, t->s.n_head_kv,
                   t->s.head_dim, t->step, 0, t->s.n_vocab, t->n_used, t->n_par, t->o.seed,
                   schedule_hash(&t->o)};
    memcpy(h.magic, ckpt_magic, 8);
    size_t len = sizeof h + t->n_used * sizeof(int32_t) + 3 * t->n_par * sizeof(float);
    uint8_t *buf = malloc(len);
    if (!buf)
        return xp_err_set(err, XP_ENOMEM, "train: out of memory for a checkpoint");
    uint8_t *p = buf;
    memcpy(p, &h, sizeof h);
    p += sizeof h;
    memcpy(p, t->used, t->n_used * sizeof(int32_t));
    p += t->n_used * sizeof(int32_t);
    const float *parts[] = {t->p, t->m, t->v};
    for (int i = 0; i < 3; i++, p += t->n_par * sizeof(float))
        memcpy(p, parts[i], t->n_par * sizeof(float));
    int rc = xp_write_file_atomic(path, buf, len, err);
    free(buf);
    return rc;
}

int xp_trainer_load(xp_trainer *t, const char *path, xp_err *err)
{
    char *buf;
    size_t len;
    int rc = xp_read_file(path, &buf, &len, err);
    if (rc)
        return rc;
    ckpt_head h;
    size_t want = sizeof h + t->n_used * sizeof(int32_t) + 3 * t->n_par * sizeof(float);
    if (len < sizeof h || memcmp(buf, ckpt_magic, 8) != 0) {
        free(buf);
        return xp_err_set(err, XP_EFORMAT, "%s: not an xorpatch training checkpoint of this "
                          "version", path);
    }
    memcpy(&h, buf, sizeof h);
    if (h.n_layer != t->s.n_layer || h.n_embd != t->s.n_embd || h.n_ff != t->s.n_ff ||
        h.n_head != t->s.n_head || h.n_head_kv != t->s.n_head_kv ||
        h.head_dim != t->s.head_dim || h.n_vocab != t->s.n_vocab || h.n_used != t->n_used ||
        h.n_par != t->n_par || len != want ||
        memcmp(buf + sizeof h, t->used, t->n_used * sizeof(int32_t)) != 0) {
        free(buf);
        return xp_err_set(err, XP_EINVAL, "%s: the checkpoint is of another shape or corpus "
                          "vocabulary (%u layers, n_embd %u, %llu trained rows)", path,
                          h.n_layer, h.n_embd, (unsigned long long)h.n_used);
    }
    if (h.seed != t->o.seed) {
        free(buf);
        return xp_err_set(err, XP_EINVAL, "%s: the checkpoint was trained with seed %llu, not "
                          "%llu (its batches would not continue)", path,
                          (unsigned long long)h.seed, (unsigned long long)t->o.seed);
    }
    if (h.schedule != schedule_hash(&t->o)) {
        free(buf);
        return xp_err_set(err, XP_EINVAL, "%s: the checkpoint was trained with other steps, "
                          "batch, learning-rate schedule or focus (resuming would mix two "
                          "schedules)", path);
    }
    const uint8_t *p = (const uint8_t *)buf + sizeof h + t->n_used * sizeof(int32_t);
    float *parts[] = {t->p, t->m, t->v};
    for (int i = 0; i < 3; i++, p += t->n_par * sizeof(float))
        memcpy(parts[i], p, t->n_par * sizeof(float));
    t->step = h.step;
    free(buf);
    return XP_OK;
}

/* ---- logits and export ------------------------------------------------------------ */

int xp_trainer_logits(xp_trainer *t, const int32_t *tokens, size_t n, float *logits,
                      xp_err *err)
{
    batch b;
    const int32_t *ids[1] = {tokens};
    int rc = batch_init(t, &b, ids, &n, NULL, 1, err);
    if (!rc) {
        prepare_weights(t);
        forward(t, &b);
        memset(logits, 0, n * t->s.n_vocab * sizeof *logits);
        for (size_t i = 0; i < n; i++)
            for (size_t j = 0; j < t->n_used; j++)
                logits[i * t->s.n_vocab + (size_t)t->used[j]] = t->a.logits[i * t->n_used + j];
    }
    batch_free(&b);
    return rc;
}

/* Q1_0 bytes of a latent matrix (rows of ne0 weights). */
static void quantise_tensor(const float *w, size_t n, uint8_t *out)
{
    int64_t nb = (int64_t)(n / XP_Q1_0_WEIGHTS);
#pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < nb; b++)
        quantise_block(w + b * XP_Q1_0_WEIGHTS, NULL, out + b * XP_Q1_0_BYTES);
}

int xp_trainer_export(xp_trainer *t, const xp_vocab *v, const char *path, xp_err *err)
{
    if (v->n_tokens != t->s.n_vocab)
        return xp_err_set(err, XP_EINVAL, "export: the vocabulary has %zu tokens, the model "
                          "%llu rows", v->n_tokens, (unsigned long long)t->s.n_vocab);
    if (!t->o.quantise)
        return xp_err_set(err, XP_EINVAL, "export: a trainer without quantisation has no Q1_0 "
                          "model to write");
    xp_gguf_writer *w = xp_gguf_writer_new();
    uint8_t **data = xp_calloc(t->n_tens, sizeof *data);
    if (!w || !data) {
        xp_gguf_writer_free(w);
        free(data);
        return xp_err_set(err, XP_ENOMEM, "export: out of memory");
    }
    char desc[320], focus[96] = "";
    if (t->o.focus_steps)
        snprintf(focus, sizeof focus, " focus=%.64s:%u", t->o.focus_task, t->o.focus_steps);
    snprintf(desc, sizeof desc, "xorpatch train seed=%llu steps=%u batch=%u lr=%g%s: tiny "
             "quantisation-aware trained model, %zu trained embedding rows",
             (unsigned long long)t->o.seed, t->step, t->o.batch, (double)t->o.lr, focus,
             t->n_used);
    xp_shape s = t->s;
    int rc = xp_qwen3_write_metadata(w, &s, "xorpatch tiny-bonsai (trained Qwen3 Q1_0)", desc,
                                     err);
    if (!rc)
        rc = xp_vocab_write_gguf(v, w, err);
    for (size_t i = 0; i < t->n_tens && !rc; i++) {
        const xpt_tensor *x = &t->tens[i];
        int64_t ne[2] = {x->ne0, x->ne1};
        if (!x->quantised) {
            rc = xp_gguf_writer_add_tensor(w, x->name, 1, ne, XP_TYPE_F32, t->p + x->off, NULL,
                                           NULL, err);
            continue;
        }
        size_t row_bytes = (size_t)x->ne0 / XP_Q1_0_WEIGHTS * XP_Q1_0_BYTES;
        bool emb = x->off == t->emb;
        size_t rows = emb ? t->s.n_vocab : (size_t)x->ne1;
        /* untrained embedding rows stay all zero: scale 0, so their logit is exactly 0 */
        if (!(data[i] = xp_calloc(rows, row_bytes))) {
            rc = xp_err_set(err, XP_ENOMEM, "export: out of memory");
            break;
        }
        if (emb) {
            for (size_t r = 0; r < t->n_used; r++)
                quantise_tensor(t->p + x->off + r * (size_t)x->ne0, (size_t)x->ne0,
                                data[i] + (size_t)t->used[r] * row_bytes);
            ne[1] = (int64_t)rows;
        } else {
            quantise_tensor(t->p + x->off, x->n, data[i]);
        }
        rc = xp_gguf_writer_add_tensor(w, x->name, 2, ne, XP_TYPE_Q1_0, data[i], NULL, NULL,
                                       err);
    }
    if (!rc)
        rc = xp_gguf_writer_write(w, path, err);
    xp_gguf_writer_free(w);
    for (size_t i = 0; i < t->n_tens; i++)
        free(data[i]);
    free(data);
    return rc;
}

/* ---- introspection for tests ------------------------------------------------------ */

size_t xpt_n_tensors(const xp_trainer *t) { return t->n_tens; }
const xpt_tensor *xpt_tensor_at(const xp_trainer *t, size_t i) { return &t->tens[i]; }
float *xpt_params(xp_trainer *t) { return t->p; }
const float *xpt_grads(const xp_trainer *t) { return t->grad; }
size_t xpt_n_params(const xp_trainer *t) { return t->n_par; }
size_t xpt_n_used(const xp_trainer *t, const int32_t **ids)
{
    *ids = t->used;
    return t->n_used;
}
