/* Token trees as one packed batch that is run again and again (tree_batch.h). Tokens are
 * packed tree by tree: the prefix, then branch 0 but its last token, then branch 1 but
 * its last token. Branch 0 continues the prefix in the tree's first cache; branch 1 has a
 * cache of its own whose first positions are forked from the first at every layer. The
 * kept residuals are in that packed order, so a run over some trees gathers their rows. */
#include <stdlib.h>
#include <string.h>

#include "model/forward.h"
#include "model/tree_batch.h"

/* Outputs per LM-head pass: enough tokens for the kernels to run at full speed, few
 * enough that a full vocabulary of logits for them stays small. */
#define HEAD_OUTPUTS 96

struct xp_tree_batch {
    xp_model *m;
    size_t n, T;                 /* trees, tokens of all trees */
    int32_t *tokens;             /* [T] packed */
    size_t *tok0, *npre, *nrun;  /* per tree: first packed token, prefix length, and */
                                 /* run tokens of each branch (nrun[2i], nrun[2i+1]) */
    size_t *nout;                /* per tree: prefix positions with outputs */
    xp_kv **kv;                  /* [2n]: a tree's prefix + branch 0, and branch 1 */
    uint32_t *ckpt;              /* kept layers, ascending */
    size_t n_ckpt;
    float **cur, **pend;         /* [n_ckpt] residuals entering the layer, [T][n_embd] */
    bool *valid, *pend_ok;
    int32_t *rows;
    size_t n_rows;
    xp_fast_batch fb;            /* scratch for every token */
    size_t *at;                  /* [T] output positions of a run */
    size_t *at_tree;             /* [T] where each selected tree's outputs start in at */
    float *head;                 /* logits of up to HEAD_OUTPUTS outputs (or one tree's) */
    size_t head_cap;             /* outputs head holds */
    xp_kv_fork *forks;           /* [n] */
};

static size_t tree_tokens(const xp_tree_batch *b, size_t i)
{
    return b->npre[i] + b->nrun[2 * i] + b->nrun[2 * i + 1];
}

size_t xp_tree_batch_count(const xp_tree_batch *b) { return b->n; }

size_t xp_tree_batch_outputs(const xp_tree_batch *b, size_t tree)
{
    return b->nout[tree] + b->nrun[2 * tree] + b->nrun[2 * tree + 1];
}

size_t xp_tree_batch_width(const xp_tree_batch *b)
{
    return b->rows ? b->n_rows : b->m->shape.n_vocab;
}

size_t xp_tree_batch_tokens(const xp_tree_batch *b, const size_t *sel, size_t n_sel)
{
    if (!sel)
        return b->T;
    size_t T = 0;
    for (size_t i = 0; i < n_sel; i++)
        T += tree_tokens(b, sel[i]);
    return T;
}

void xp_tree_batch_free(xp_tree_batch *b)
{
    if (!b)
        return;
    for (size_t i = 0; i < 2 * b->n && b->kv; i++)
        xp_kv_free(b->kv[i]);
    for (size_t k = 0; k < b->n_ckpt; k++) {
        if (b->cur)
            free(b->cur[k]);
        if (b->pend)
            free(b->pend[k]);
    }
    free(b->cur);
    free(b->pend);
    free(b->valid);
    free(b->pend_ok);
    free(b->kv);
    free(b->tokens);
    free(b->tok0);
    free(b->npre);
    free(b->nout);
    free(b->nrun);
    free(b->ckpt);
    free(b->rows);
    free(b->at);
    free(b->at_tree);
    free(b->head);
    free(b->forks);
    xp_fast_batch_free(&b->fb);
    free(b);
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

static int check_trees(const xp_model *m, const xp_tree *trees, size_t n, xp_err *err)
{
    const xp_shape *s = &m->shape;
    for (size_t i = 0; i < n; i++) {
        const xp_tree *t = &trees[i];
        if (t->n_prefix == 0)
            return xp_err_set(err, XP_EINVAL, "tree %zu: the prefix is empty", i);
        if (t->prefix_outputs > t->n_prefix)
            return xp_err_set(err, XP_EINVAL, "tree %zu: %zu prefix outputs from a prefix of %zu "
                              "tokens", i, t->prefix_outputs, t->n_prefix);
        for (int a = 0; a < 2; a++)
            if (t->n_prefix + t->n_branch[a] > s->n_ctx)
                return xp_err_set(err, XP_EINVAL, "tree %zu: %zu + %zu tokens exceed the "
                                  "model's context of %u", i, t->n_prefix, t->n_branch[a],
                                  s->n_ctx);
        for (int part = 0; part < 3; part++) {
            const int32_t *tok = part == 0 ? t->prefix : t->branch[part - 1];
            size_t len = part == 0 ? t->n_prefix : t->n_branch[part - 1];
            for (size_t j = 0; j < len; j++)
                if (tok[j] < 0 || (uint64_t)tok[j] >= s->n_vocab)
                    return xp_err_set(err, XP_EINVAL, "tree %zu, %s token %zu: id %d is not in "
                                      "the vocabulary [0, %llu)", i,
                                      part == 0 ? "prefix" : "branch", j, tok[j],
                                      (unsigned long long)s->n_vocab);
        }
    }
    return XP_OK;
}

int xp_tree_batch_new(xp_tree_batch **out, xp_model *m, const xp_tree *trees, size_t n,
                      const uint32_t *ckpt, size_t n_ckpt, const int32_t *rows, size_t n_rows,
                      xp_err *err)
{
    *out = NULL;
    int rc = check_trees(m, trees, n, err);
    if (rc)
        return rc;
    for (size_t k = 0; k < n_ckpt; k++)
        if (ckpt[k] >= m->shape.n_layer)
            return xp_err_set(err, XP_EINVAL, "layer %u to keep is not below the model's %u "
                              "layers", ckpt[k], m->shape.n_layer);
    for (size_t j = 0; j < n_rows && rows; j++)
        if (rows[j] < 0 || (uint64_t)rows[j] >= m->shape.n_vocab)
            return xp_err_set(err, XP_EINVAL, "output row %d is not in the vocabulary", rows[j]);
    xp_tree_batch *b = calloc(1, sizeof *b);
    if (!b)
        return xp_err_set(err, XP_ENOMEM, "out of memory");
    b->m = m;
    b->n = n;
    bool ok = (b->tok0 = calloc(n + 1, sizeof *b->tok0)) && (b->npre = calloc(n + 1, sizeof *b->npre)) &&
              (b->nout = calloc(n + 1, sizeof *b->nout)) &&
              (b->nrun = calloc(2 * n + 1, sizeof *b->nrun)) &&
              (b->kv = calloc(2 * n + 1, sizeof *b->kv)) &&
              (b->forks = calloc(n + 1, sizeof *b->forks));
    for (size_t i = 0; ok && i < n; i++) {
        b->tok0[i] = b->T;
        b->npre[i] = trees[i].n_prefix;
        b->nout[i] = trees[i].prefix_outputs ? trees[i].prefix_outputs : 1;
        for (int a = 0; a < 2; a++)
            b->nrun[2 * i + a] = trees[i].n_branch[a] ? trees[i].n_branch[a] - 1 : 0;
        b->T += tree_tokens(b, i);
    }
    ok = ok && (b->tokens = malloc((b->T + 1) * sizeof *b->tokens)) &&
         (b->at = malloc((b->T + 1) * sizeof *b->at)) &&
         (b->at_tree = malloc((b->T + n + 1) * sizeof *b->at_tree));
    b->head_cap = HEAD_OUTPUTS;
    for (size_t i = 0; ok && i < n; i++)
        if (xp_tree_batch_outputs(b, i) > b->head_cap)
            b->head_cap = xp_tree_batch_outputs(b, i);
    for (size_t i = 0; ok && i < n; i++) {
        int32_t *dst = b->tokens + b->tok0[i];
        memcpy(dst, trees[i].prefix, b->npre[i] * sizeof *dst);
        dst += b->npre[i];
        for (int a = 0; a < 2; a++)
            if (b->nrun[2 * i + a]) { /* an empty branch may have no array (token_gap) */
                memcpy(dst, trees[i].branch[a], b->nrun[2 * i + a] * sizeof *dst);
                dst += b->nrun[2 * i + a];
            }
        rc = xp_kv_new_layers(&b->kv[2 * i], m, b->npre[i] + b->nrun[2 * i], 1, err);
        if (!rc && b->nrun[2 * i + 1])
            rc = xp_kv_new_layers(&b->kv[2 * i + 1], m, b->npre[i] + b->nrun[2 * i + 1], 1, err);
        ok = !rc;
    }
    if (ok && n_ckpt) {
        ok = (b->ckpt = malloc(n_ckpt * sizeof *b->ckpt)) &&
             (b->cur = calloc(n_ckpt, sizeof *b->cur)) &&
             (b->pend = calloc(n_ckpt, sizeof *b->pend)) &&
             (b->valid = calloc(n_ckpt, sizeof *b->valid)) &&
             (b->pend_ok = calloc(n_ckpt, sizeof *b->pend_ok));
        if (ok) {
            memcpy(b->ckpt, ckpt, n_ckpt * sizeof *ckpt);
            qsort(b->ckpt, n_ckpt, sizeof *b->ckpt, cmp_u32);
            for (size_t k = 0; k < n_ckpt; k++)
                if (k == 0 || b->ckpt[k] != b->ckpt[b->n_ckpt - 1])
                    b->ckpt[b->n_ckpt++] = b->ckpt[k];
        }
        size_t bytes = (b->T ? b->T : 1) * m->shape.n_embd * sizeof(float);
        for (size_t k = 0; ok && k < b->n_ckpt; k++)
            ok = (b->cur[k] = malloc(bytes)) && (b->pend[k] = malloc(bytes));
    }
    if (ok && rows) {
        ok = (b->rows = malloc((n_rows ? n_rows : 1) * sizeof *b->rows)) != NULL;
        if (ok)
            memcpy(b->rows, rows, n_rows * sizeof *rows);
        b->n_rows = n_rows;
    }
    if (ok)
        ok = (b->head = malloc(b->head_cap * xp_tree_batch_width(b) * sizeof *b->head)) &&
             !xp_fast_batch_alloc(&m->shape, b->T, &b->fb);
    if (!ok) {
        xp_tree_batch_free(b);
        return rc ? rc : xp_err_set(err, XP_ENOMEM, "out of memory for a batch of %zu trees", n);
    }
    *out = b;
    return XP_OK;
}

/* The kept layer a run starting at `from` can start from: index into ckpt, or -1. */
static long start_ckpt(const xp_tree_batch *b, uint32_t from)
{
    long best = -1;
    for (size_t k = 0; k < b->n_ckpt && b->ckpt[k] <= from; k++)
        if (b->valid[k])
            best = (long)k;
    return best;
}

/* The LM head over the selected trees, a few at a time, each tree's outputs to fn. */
static int heads(xp_tree_batch *b, size_t n, xp_tree_out_fn fn, void *ctx)
{
    size_t width = xp_tree_batch_width(b);
    for (size_t s0 = 0, s1; s0 < n; s0 = s1) {
        for (s1 = s0 + 1; s1 < n && b->at_tree[s1 + 1] - b->at_tree[s0] <= b->head_cap; s1++)
            ;
        size_t first = b->at_tree[s0];
        int rc = xp_fast_head(b->m, &b->fb, b->at + first, b->at_tree[s1] - first, b->rows,
                              b->n_rows, b->head);
        if (rc)
            return rc;
        /* what a tree's outputs feed (a log-softmax over the vocabulary) is work too;
         * errors are negative, so the least result is the first failure's kind */
#pragma omp parallel for schedule(dynamic, 1) reduction(min : rc)
        for (size_t s = s0; s < s1; s++) {
            int r = fn(ctx, s, b->head + (b->at_tree[s] - first) * width);
            rc = r < rc ? r : rc;
        }
        if (rc)
            return rc;
    }
    return XP_OK;
}

int xp_tree_batch_run(xp_tree_batch *b, const size_t *sel, size_t n_sel, uint32_t from,
                      xp_tree_out_fn fn, void *ctx, xp_err *err)
{
    const xp_model *m = b->m;
    size_t E = m->shape.n_embd, n = sel ? n_sel : b->n;
    for (size_t i = 0; sel && i < n_sel; i++)
        if (sel[i] >= b->n)
            return xp_err_set(err, XP_EINVAL, "tree %zu of %zu does not exist", sel[i], b->n);
    long c = start_ckpt(b, from);
    uint32_t start = c < 0 ? 0 : b->ckpt[c];
    xp_fast_batch *fb = &b->fb;
    size_t t = 0, n_at = 0, n_forks = 0;
    for (size_t s = 0; s < n; s++) {
        size_t i = sel ? sel[s] : s, np = b->npre[i], r0 = b->nrun[2 * i], r1 = b->nrun[2 * i + 1];
        xp_kv *kv0 = b->kv[2 * i], *kv1 = b->kv[2 * i + 1];
        const int32_t *tok = b->tokens + b->tok0[i];
        b->at_tree[s] = n_at;
        if (c >= 0)
            memcpy(fb->x + t * E, b->cur[c] + b->tok0[i] * E, tree_tokens(b, i) * E * sizeof(float));
        for (size_t j = 0; j < np + r0 + r1; j++, t++) {
            bool second = j >= np + r0;
            fb->tok[t] = tok[j];
            fb->kv[t] = second ? kv1 : kv0;
            fb->pos[t] = second ? j - r0 : j;
            if (j + b->nout[i] >= np)
                b->at[n_at++] = t;
        }
        if (r1)
            b->forks[n_forks++] = (xp_kv_fork){kv1, kv0, np};
    }
    b->at_tree[n] = n_at;
    fb->T = t;
    fb->forks = b->forks;
    fb->n_forks = n_forks;
    xp_fast_angles(m, fb);
    if (c < 0)
        xp_fast_embed(m, fb);
    /* residuals of a run over every tree may become the kept ones */
    float *save[m->shape.n_layer + 1];
    memset(save, 0, sizeof save);
    for (size_t k = 0; k < b->n_ckpt; k++) {
        b->pend_ok[k] = !sel && (c < 0 || (long)k > c);
        if (b->pend_ok[k])
            save[b->ckpt[k]] = b->pend[k];
    }
    int rc = xp_fast_layers(m, fb, start, save);
    if (rc) {
        for (size_t k = 0; k < b->n_ckpt; k++)
            b->pend_ok[k] = false;
        return xp_err_set(err, rc, "out of memory in a batch run");
    }
    return heads(b, n, fn, ctx);
}

void xp_tree_batch_commit(xp_tree_batch *b)
{
    for (size_t k = 0; k < b->n_ckpt; k++)
        if (b->pend_ok[k]) {
            float *tmp = b->cur[k];
            b->cur[k] = b->pend[k];
            b->pend[k] = tmp;
            b->valid[k] = true;
            b->pend_ok[k] = false;
        }
}
