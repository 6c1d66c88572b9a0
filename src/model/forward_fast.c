/* The fast forward path: every new token of every sequence packed into one batch, so
 * each weight row is read once per layer for all tokens. Inputs of a Q1_0 matrix are
 * quantised per 128-block to int8 once and multiplied by the kernel chosen at open;
 * rows are shared out among threads in chunks. Each output value is computed by one
 * thread with one fixed sequence of operations that depends on nothing but its own
 * token's inputs, so a sequence's logits are bit-identical alone or in any batch, on any
 * number of threads. */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "model/forward_paths.h"
#include "model/kernels.h"

#define ROW_CHUNK 64

/* Rows [r0, r1) of W times every token, row r0 + j at y[t * ldy + j]: the quantised
 * kernel for Q1_0, fp32 otherwise (row: scratch of W's width, used only then). */
static void product_rows(const xp_model *m, const xp_weight *w, const xp_qact *qa, const float *x,
                         size_t T, float *y, size_t ldy, int64_t r0, int64_t r1, float *row)
{
    if (w->type == XP_TYPE_Q1_0) {
        xp_weight part = *w; /* the rows alone, as a matrix of their own */
        part.data += (uint64_t)r0 * w->row_bytes;
        part.ne1 = r1 - r0;
        m->kern->matmul(&part, qa, y, ldy, 0, r1 - r0);
        return;
    }
    for (int64_t r = r0; r < r1; r++) {
        xp_weight_row(w, r, row);
        for (size_t t = 0; t < T; t++)
            y[t * ldy + (size_t)(r - r0)] = xp_dot_f32(row, x + t * (size_t)w->ne0, (size_t)w->ne0);
    }
}

/* One product of a batch of them: y[t * ldy + r] = W[r] . x[t]. */
typedef struct product {
    const xp_weight *w;
    float *y;
    size_t ldy;
} product;

/* The n products of the same input (qa, or x for other weight types; every W as wide),
 * ROW_CHUNK rows at a time over the threads, all in one parallel loop: a decode step wakes
 * the threads and waits for them once for all of them, not once each. */
static int matmuls(const xp_model *m, const xp_qact *qa, const float *x, size_t T, const product *p,
                   size_t n)
{
    enum { MAX_PRODUCTS = 3 };
    int64_t first[MAX_PRODUCTS + 1] = {0}; /* product i's chunks start at first[i] */
    for (size_t i = 0; i < n; i++)
        first[i + 1] = first[i] + (p[i].w->ne1 + ROW_CHUNK - 1) / ROW_CHUNK;
    bool all_q1 = true;
    for (size_t i = 0; i < n; i++)
        all_q1 &= p[i].w->type == XP_TYPE_Q1_0;
    int ok = 1;
#pragma omp parallel reduction(& : ok)
    {
        float *row = all_q1 ? NULL : malloc((size_t)p[0].w->ne0 * sizeof *row);
        ok = all_q1 || row;
#pragma omp for schedule(dynamic, 1)
        for (int64_t c = 0; c < first[n]; c++) {
            size_t i = 0;
            while (c >= first[i + 1])
                i++;
            const xp_weight *w = p[i].w;
            int64_t r0 = (c - first[i]) * ROW_CHUNK;
            int64_t r1 = r0 + ROW_CHUNK < w->ne1 ? r0 + ROW_CHUNK : w->ne1;
            if (ok)
                product_rows(m, w, qa, x, T, p[i].y + r0, p[i].ldy, r0, r1, row);
        }
        free(row);
    }
    return ok ? XP_OK : XP_ENOMEM;
}

/* y[t][r] = W[r] . x[t] for all T tokens. */
static int matmul(const xp_model *m, const xp_weight *w, const xp_qact *qa, const float *x,
                  size_t T, float *y, size_t ldy)
{
    return matmuls(m, qa, x, T, &(product){w, y, ldy}, 1);
}

/* Loops over tokens wake the thread team only when there is more than one token: when
 * decoding, each wake-up of sleeping threads costs more than the loop itself. */

static void rmsnorm_rows(float *out, const float *x, const float *w, size_t T, size_t n, float eps)
{
#pragma omp parallel for schedule(static) if (T > 1)
    for (size_t t = 0; t < T; t++)
        xp_rmsnorm(out + t * n, x + t * n, w, n, eps);
}

/* Per-head q/k norms and RoPE, then the new keys and values into their caches and the
 * forks' prefixes copied. */
static void keys_values(const xp_model *m, uint32_t l, xp_fast_batch *b)
{
    const xp_shape *s = &m->shape;
    size_t hd = s->head_dim, half = hd / 2;
    size_t qd = (size_t)s->n_head * hd, kvd = (size_t)s->n_head_kv * hd;
    const xp_layer *L = &m->layers[l];
#pragma omp parallel for schedule(static) if (b->T > 1)
    for (size_t t = 0; t < b->T; t++) {
        const float *c = b->cos_v + t * half, *sn = b->sin_v + t * half;
        for (uint32_t h = 0; h < s->n_head; h++) {
            float *qh = b->q + t * qd + h * hd;
            xp_rmsnorm(qh, qh, L->q_norm, hd, s->rms_eps);
            xp_rope_apply(qh, half, c, sn);
        }
        for (uint32_t h = 0; h < s->n_head_kv; h++) {
            float *kh = b->k + t * kvd + h * hd;
            xp_rmsnorm(kh, kh, L->k_norm, hd, s->rms_eps);
            xp_rope_apply(kh, half, c, sn);
        }
        memcpy(xp_kv_k(b->kv[t], l, b->pos[t]), b->k + t * kvd, kvd * sizeof(float));
        memcpy(xp_kv_v(b->kv[t], l, b->pos[t]), b->v + t * kvd, kvd * sizeof(float));
    }
    for (size_t f = 0; f < b->n_forks; f++) {
        const xp_kv_fork *fk = &b->forks[f];
        memcpy(xp_kv_k(fk->dst, l, 0), xp_kv_k(fk->src, l, 0), fk->n * kvd * sizeof(float));
        memcpy(xp_kv_v(fk->dst, l, 0), xp_kv_v(fk->src, l, 0), fk->n * kvd * sizeof(float));
    }
}

/* Each token's attention over its cache, into att. */
static int attend(const xp_model *m, uint32_t l, xp_fast_batch *b)
{
    const xp_shape *s = &m->shape;
    size_t hd = s->head_dim, group = s->n_head / s->n_head_kv;
    size_t qd = (size_t)s->n_head * hd, kvd = (size_t)s->n_head_kv * hd;
    /* queries of one sequence and one head go in blocks that share each key and value
     * read; the arithmetic per query is xp_attend's whatever the block holds */
    size_t max_pos = 0, n_tasks = 0;
    for (size_t t = 0; t < b->T; t++)
        max_pos = b->pos[t] > max_pos ? b->pos[t] : max_pos;
    size_t *task_t0 = malloc((b->T + 1) * sizeof *task_t0);
    if (!task_t0)
        return XP_ENOMEM;
    for (size_t t = 0; t < b->T; t++)
        if (t == 0 || b->kv[t] != b->kv[t - 1] || t - task_t0[n_tasks - 1] == XP_ATTEND_BLOCK)
            task_t0[n_tasks++] = t;
    task_t0[n_tasks] = b->T;
    float scale = 1.0f / sqrtf((float)hd);
    int ok = 1;
#pragma omp parallel reduction(& : ok)
    {
        float *scores = malloc(XP_ATTEND_BLOCK * (max_pos + 1) * sizeof *scores);
        ok = scores != NULL;
#pragma omp for schedule(dynamic, 1)
        for (size_t i = 0; i < n_tasks * s->n_head; i++) {
            size_t task = i / s->n_head, h = i % s->n_head, kvh = h / group;
            size_t t0 = task_t0[task], nq = task_t0[task + 1] - t0;
            const float *q[XP_ATTEND_BLOCK];
            float *out[XP_ATTEND_BLOCK];
            size_t n[XP_ATTEND_BLOCK];
            for (size_t j = 0; j < nq; j++) {
                q[j] = b->q + (t0 + j) * qd + h * hd;
                out[j] = b->att + (t0 + j) * qd + h * hd;
                n[j] = b->pos[t0 + j] + 1;
            }
            if (scores)
                xp_attend_block(q, n, nq, xp_kv_k(b->kv[t0], l, 0) + kvh * hd,
                                xp_kv_v(b->kv[t0], l, 0) + kvh * hd, kvd, hd, scale, scores, out);
        }
        free(scores);
    }
    free(task_t0);
    return ok ? XP_OK : XP_ENOMEM;
}

static void add_rows(float *x, const float *o, size_t n)
{
#pragma omp parallel for schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++)
        x[i] += o[i];
}

/* Moves the tokens b->out (ascending) to the front of the batch, as far as the rest of
 * a layer after its keys and values needs them (x, q, position, cache), and makes them
 * the batch. */
static void keep_out_only(const xp_model *m, xp_fast_batch *b)
{
    size_t E = m->shape.n_embd, qd = (size_t)m->shape.n_head * m->shape.head_dim;
    for (size_t i = 0; i < b->n_out; i++) { /* b->out[i] >= i: forward copies are safe */
        size_t t = b->out[i];
        memmove(b->x + i * E, b->x + t * E, E * sizeof(float));
        memmove(b->q + i * qd, b->q + t * qd, qd * sizeof(float));
        b->pos[i] = b->pos[t];
        b->kv[i] = b->kv[t];
    }
    b->T = b->n_out;
}

/* Attention and its residual: x becomes the layer's mid-point. trim: after the keys and
 * values of every token, only the tokens b->out go on. */
static int attention_block(const xp_model *m, uint32_t l, xp_fast_batch *b, bool trim)
{
    const xp_shape *s = &m->shape;
    const xp_layer *L = &m->layers[l];
    size_t T = b->T, E = s->n_embd;
    size_t qd = (size_t)s->n_head * s->head_dim, kvd = (size_t)s->n_head_kv * s->head_dim;
    int rc;
    rmsnorm_rows(b->xb, b->x, L->attn_norm, T, E, s->rms_eps);
    if ((rc = xp_qact_quantize(&b->qa, m->kern, b->xb, T, (int64_t)E)))
        return rc;
    product qkv[] = {{&L->wq, b->q, qd}, {&L->wk, b->k, kvd}, {&L->wv, b->v, kvd}};
    if ((rc = matmuls(m, &b->qa, b->xb, T, qkv, 3)))
        return rc;
    xp_overlay_product(&L->wq, b->kv, NULL, &b->qa, b->q, qd);
    xp_overlay_product(&L->wk, b->kv, NULL, &b->qa, b->k, kvd);
    xp_overlay_product(&L->wv, b->kv, NULL, &b->qa, b->v, kvd);
    keys_values(m, l, b);
    if (trim)
        keep_out_only(m, b);
    T = b->T;
    if ((rc = attend(m, l, b)) ||
        (rc = xp_qact_quantize(&b->qa, m->kern, b->att, T, (int64_t)qd)) ||
        (rc = matmul(m, &L->wo, &b->qa, b->att, T, b->o, E)))
        return rc;
    xp_overlay_product(&L->wo, b->kv, NULL, &b->qa, b->o, E);
    add_rows(b->x, b->o, T * E);
    return XP_OK;
}

/* The MLP's activation from the mid-point x: gate holds silu(gate) * up. Each thread
 * takes ROW_CHUNK rows of both projections into scratch of its own and combines them at
 * once, so of the three [T][n_ff] arrays only the activation goes out to memory. */
static int ffn_activation(const xp_model *m, uint32_t l, xp_fast_batch *b)
{
    const xp_shape *s = &m->shape;
    const xp_layer *L = &m->layers[l];
    size_t T = b->T, E = s->n_embd, F = s->n_ff;
    rmsnorm_rows(b->xb, b->x, L->ffn_norm, T, E, s->rms_eps);
    int rc = xp_qact_quantize(&b->qa, m->kern, b->xb, T, (int64_t)E);
    if (rc)
        return rc;
    int64_t chunks = ((int64_t)F + ROW_CHUNK - 1) / ROW_CHUNK;
    int ok = 1;
#pragma omp parallel reduction(& : ok)
    {
        float *g = malloc((2 * T * ROW_CHUNK + E) * sizeof *g);
        float *u = g ? g + T * ROW_CHUNK : NULL, *row = g ? u + T * ROW_CHUNK : NULL;
        ok = g != NULL;
#pragma omp for schedule(dynamic, 1)
        for (int64_t c = 0; c < chunks; c++) {
            int64_t r0 = c * ROW_CHUNK,
                    r1 = r0 + ROW_CHUNK < (int64_t)F ? r0 + ROW_CHUNK : (int64_t)F;
            if (!ok)
                continue;
            product_rows(m, &L->gate, &b->qa, b->xb, T, g, ROW_CHUNK, r0, r1, row);
            product_rows(m, &L->up, &b->qa, b->xb, T, u, ROW_CHUNK, r0, r1, row);
            for (size_t t = 0; t < T; t++)
                xp_swiglu(b->gate + t * F + (size_t)r0, g + t * ROW_CHUNK, u + t * ROW_CHUNK,
                          (size_t)(r1 - r0));
        }
        free(g);
    }
    if (ok)
        xp_overlay_activation(L, b);
    return ok ? XP_OK : XP_ENOMEM;
}

/* The down projection of the activation, added to x. */
static int ffn_down(const xp_model *m, uint32_t l, xp_fast_batch *b)
{
    const xp_shape *s = &m->shape;
    size_t T = b->T, E = s->n_embd;
    int rc;
    if ((rc = xp_qact_quantize(&b->qa, m->kern, b->gate, T, (int64_t)s->n_ff)) ||
        (rc = matmul(m, &m->layers[l].down, &b->qa, b->gate, T, b->o, E)))
        return rc;
    xp_overlay_product(&m->layers[l].down, b->kv, NULL, &b->qa, b->o, E);
    add_rows(b->x, b->o, T * E);
    return XP_OK;
}

int xp_fast_ffn_row(const xp_model *m, xp_fast_batch *b, uint32_t l, int64_t row)
{
    const xp_shape *s = &m->shape;
    const xp_layer *L = &m->layers[l];
    size_t T = b->T, E = s->n_embd, F = s->n_ff;
    float *g = malloc(2 * (T ? T : 1) * sizeof *g), *u = g ? g + T : NULL;
    if (!g)
        return XP_ENOMEM;
    rmsnorm_rows(b->xb, b->x, L->ffn_norm, T, E, s->rms_eps);
    /* the kernels all compute the same bits, so the portable one gives this row's values
     * of the full product; it reads the quantised inputs as they are, unpacked */
    int rc = xp_qact_quantize(&b->qa, m->kern, b->xb, T, (int64_t)E);
    if (!rc) {
        xp_weight wg = L->gate, wu = L->up; /* the row alone, as a one-row matrix */
        wg.data += (uint64_t)row * wg.row_bytes;
        wu.data += (uint64_t)row * wu.row_bytes;
        wg.ne1 = wu.ne1 = 1;
        xp_kernels_portable.matmul(&wg, &b->qa, g, 1, 0, 1);
        xp_kernels_portable.matmul(&wu, &b->qa, u, 1, 0, 1);
        for (size_t t = 0; t < T; t++)
            xp_swiglu(b->gate + t * F + (size_t)row, g + t, u + t, 1);
    }
    free(g);
    return rc;
}

void xp_fast_batch_free(xp_fast_batch *b)
{
    float *all[] = {b->x, b->xb, b->q, b->k, b->v, b->att, b->o, b->gate, b->cos_v, b->sin_v};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        free(all[i]);
    free(b->tok);
    free(b->pos);
    free(b->kv);
    xp_qact_free(&b->qa);
}

int xp_fast_batch_alloc(const xp_shape *s, size_t T, xp_fast_batch *b)
{
    size_t qd = (size_t)s->n_head * s->head_dim, kvd = (size_t)s->n_head_kv * s->head_dim;
    size_t half = s->head_dim / 2;
    size_t sizes[] = {s->n_embd, s->n_embd, qd, kvd, kvd, qd, s->n_embd, s->n_ff, half, half};
    float **ptrs[] = {&b->x,   &b->xb, &b->q,    &b->k,     &b->v,
                      &b->att, &b->o,  &b->gate, &b->cos_v, &b->sin_v};
    int ok = 1;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        ok &= (*ptrs[i] = malloc((T ? T : 1) * sizes[i] * sizeof(float))) != NULL;
    ok &= (b->tok = malloc((T ? T : 1) * sizeof *b->tok)) != NULL;
    ok &= (b->pos = malloc((T ? T : 1) * sizeof *b->pos)) != NULL;
    ok &= (b->kv = malloc((T ? T : 1) * sizeof *b->kv)) != NULL;
    b->T = T;
    return ok ? XP_OK : XP_ENOMEM;
}

void xp_fast_angles(const xp_model *m, xp_fast_batch *b)
{
    size_t half = m->shape.head_dim / 2;
#pragma omp parallel for schedule(static) if (b->T > 1)
    for (size_t t = 0; t < b->T; t++)
        xp_rope_angles((int64_t)b->pos[t], half, m->shape.rope_base, b->cos_v + t * half,
                       b->sin_v + t * half);
}

void xp_fast_embed(const xp_model *m, xp_fast_batch *b)
{
#pragma omp parallel for schedule(static) if (b->T > 1)
    for (size_t t = 0; t < b->T; t++)
        xp_weight_row(&m->tok_embd, b->tok[t], b->x + t * m->shape.n_embd);
    xp_overlay_embed(m, b);
}

int xp_fast_layers(const xp_model *m, xp_fast_batch *b, uint32_t from, bool at_down,
                   const xp_fast_keep *keep)
{
    size_t T = b->T, E = m->shape.n_embd, F = m->shape.n_ff;
    uint32_t last = m->shape.n_layer - 1;
    int rc = 0;
    bool trimmed = false;
    for (uint32_t l = from; l <= last && !rc; l++) {
        const xp_fast_keep *k = keep ? &keep[l] : &(xp_fast_keep){0};
        if (!(at_down && l == from)) {
            if (k->x)
                memcpy(k->x, b->x, T * E * sizeof(float));
            /* the last layer's tokens that give no output matter only as keys and values,
             * unless what is kept of that layer needs them all */
            trimmed = l == last && b->out && !k->mid && !k->act;
            if ((rc = attention_block(m, l, b, trimmed)))
                break;
            if (k->mid)
                memcpy(k->mid, b->x, T * E * sizeof(float));
            if ((rc = ffn_activation(m, l, b)))
                break;
        }
        if (k->act)
            memcpy(k->act, b->gate, T * F * sizeof(float));
        rc = ffn_down(m, l, b);
    }
    if (trimmed) { /* the output tokens' rows back in their places, backwards */
        for (size_t i = b->n_out; i-- > 0;)
            memmove(b->x + b->out[i] * E, b->x + i * E, E * sizeof(float));
        b->T = T;
    }
    return rc;
}

int xp_fast_head(const xp_model *m, xp_fast_batch *b, const size_t *at, size_t n_at,
                 const int32_t *rows, size_t n_rows, float *logits)
{
    const xp_shape *s = &m->shape;
    if (n_at == 0)
        return XP_OK;
    for (size_t i = 0; i < n_at; i++)
        xp_rmsnorm(b->xb + i * s->n_embd, b->x + at[i] * s->n_embd, m->output_norm, s->n_embd,
                   s->rms_eps);
    int rc = xp_qact_quantize(&b->qa, m->kern, b->xb, n_at, (int64_t)s->n_embd);
    if (rc)
        return rc;
    if (!rows) {
        if ((rc = matmul(m, &m->output, &b->qa, b->xb, n_at, logits, s->n_vocab)))
            return rc;
        xp_overlay_product(&m->output, b->kv, at, &b->qa, logits, s->n_vocab);
        return XP_OK;
    }
    /* a few scattered rows: each is a one-row matrix of its own */
    float *row = m->output.type == XP_TYPE_Q1_0 ? NULL : malloc((size_t)s->n_embd * sizeof *row);
    if (m->output.type != XP_TYPE_Q1_0 && !row)
        return XP_ENOMEM;
#pragma omp parallel for schedule(dynamic, 8) if (!row)
    for (size_t j = 0; j < n_rows; j++) {
        xp_weight w = m->output;
        w.data += (uint64_t)rows[j] * w.row_bytes;
        w.ne1 = 1;
        if (!row) {
            m->kern->matmul(&w, &b->qa, logits + j, n_rows, 0, 1);
            continue;
        }
        xp_weight_row(&w, 0, row);
        for (size_t t = 0; t < n_at; t++)
            logits[t * n_rows + j] = xp_dot_f32(row, b->xb + t * s->n_embd, (size_t)s->n_embd);
    }
    free(row);
    return XP_OK;
}

int xp_forward_fast(xp_model *m, const xp_fwd_seq *seqs, size_t n, float *logits, xp_err *err)
{
    size_t T = 0, n_out = 0;
    for (size_t i = 0; i < n; i++)
        T += seqs[i].n_tokens;
    if (T == 0)
        return XP_OK;
    xp_fast_batch b = {0};
    size_t *at = malloc(T * sizeof *at);
    int rc = at ? xp_fast_batch_alloc(&m->shape, T, &b) : XP_ENOMEM;
    if (rc) {
        free(at);
        xp_fast_batch_free(&b);
        return xp_err_set(err, XP_ENOMEM, "out of memory for a batch of %zu tokens", T);
    }
    for (size_t i = 0, t = 0; i < n; i++)
        for (size_t j = 0; j < seqs[i].n_tokens; j++, t++) {
            b.tok[t] = seqs[i].tokens[j];
            b.pos[t] = seqs[i].kv->len + j;
            b.kv[t] = seqs[i].kv;
            if (xp_fwd_wants(&seqs[i], j))
                at[n_out++] = t;
        }
    xp_fast_angles(m, &b);
    xp_fast_embed(m, &b);
    rc = xp_fast_layers(m, &b, 0, false, NULL);
    if (!rc)
        rc = xp_fast_head(m, &b, at, n_out, NULL, 0, logits);
    if (!rc)
        for (size_t i = 0; i < n; i++)
            seqs[i].kv->len += seqs[i].n_tokens;
    free(at);
    xp_fast_batch_free(&b);
    return rc ? xp_err_set(err, rc, "out of memory in the forward pass") : XP_OK;
}
