/* Token tries as one packed batch that is run again and again (declared in
 * xorpatch/model.h). The sequences are put in token order; each shares with the one
 * before it their longest common start, so the tokens a run computes are exactly the
 * trie's nodes. A sequence computes its positions from that shared length on, in a cache
 * of its own whose first positions are forked, at every layer, from the sequence before
 * (forks run in order, so that one is complete when it is copied). A full run numbers the
 * nodes in packing order; the kept residuals are per node, so a run over some items
 * gathers their nodes' rows. */
#include <stdlib.h>
#include <string.h>

#include "model/forward_paths.h"

/* Outputs per LM-head pass: enough tokens for the kernels to run at full speed, few
 * enough that a full vocabulary of logits for them stays small. */
#define HEAD_OUTPUTS 96

/* What is kept of one layer, per node: the residual entering it [T][n_embd], and with
 * mlp its mid-point [T][n_embd] and MLP activation [T][n_ff]. */
enum { KEPT_X, KEPT_MID, KEPT_ACT, N_KEPT };
typedef struct kept {
    float *a[N_KEPT];
} kept;

/* An item of an LM-head pass: where its full and subset outputs start, what fn said. */
typedef struct pass_item {
    size_t full, sub;
    int ret;
} pass_item;

struct xp_tree_batch {
    xp_model *m;
    size_t n_items, n_seqs, T;   /* items, sequences, trie nodes (a full run's tokens) */
    size_t *seq0;                /* [n_items + 1] each item's first sequence */
    int32_t *tok;                /* every sequence's tokens, one after another */
    size_t *tok0;                /* [n_seqs + 1] where each sequence starts in tok */
    size_t *order, *lcp;         /* sequences in token order; tokens each shares with the
                                    one before it in that order */
    size_t *node_of;             /* [tok0[n_seqs]] the node of each sequence position */
    xp_tree_out *outs;           /* every item's outputs */
    size_t *out0, *n_full;       /* [n_items + 1] first output; [n_items] full outputs */
    xp_kv **kv;                  /* [n_seqs] */
    uint32_t *ckpt;              /* kept layers, ascending */
    size_t n_ckpt;
    bool mlp;                    /* mid-points and activations are kept too */
    kept *cur, *pend;            /* [n_ckpt] what the last commit and the last run kept */
    bool *valid;
    unsigned *pend_ok;           /* [n_ckpt] which of pend's arrays the last run filled */
    bool ran_all;                /* the last run was over every item */
    int32_t *rows;
    size_t n_rows;
    xp_fast_batch fb;            /* scratch for every node */
    /* a run's plan */
    bool *want;                  /* [n_seqs] sequences of the selected items */
    size_t *pk;                  /* [tok0[n_seqs]] packed token of each sequence position */
    size_t *node;                /* [T] node of each packed token */
    bool *is_out;                /* [T] whether a packed token gives an output */
    size_t *out_tok;             /* [T] the tokens that do, ascending */
    xp_kv_fork *forks;           /* [n_seqs] */
    size_t *at_full, *at_sub;    /* packed tokens of one LM-head pass */
    float *head_full, *head_sub; /* its logits */
    pass_item *pass;             /* [cap_items] the items of one pass */
    size_t cap_items;
    size_t cap_full, cap_sub;    /* outputs a pass holds */
};

size_t xp_tree_batch_count(const xp_tree_batch *b) { return b->n_items; }

size_t xp_tree_batch_width(const xp_tree_batch *b) { return b->n_rows; }

static size_t seq_len(const xp_tree_batch *b, size_t g) { return b->tok0[g + 1] - b->tok0[g]; }

void xp_tree_batch_free(xp_tree_batch *b)
{
    if (!b)
        return;
    for (size_t g = 0; g < b->n_seqs && b->kv; g++)
        xp_kv_free(b->kv[g]);
    for (size_t k = 0; k < b->n_ckpt; k++)
        for (int i = 0; i < N_KEPT; i++) {
            if (b->cur)
                free(b->cur[k].a[i]);
            if (b->pend)
                free(b->pend[k].a[i]);
        }
    void *all[] = {b->seq0, b->tok, b->tok0, b->order, b->lcp, b->node_of, b->outs, b->out0,
                   b->n_full, b->kv, b->ckpt, b->cur, b->pend, b->valid, b->pend_ok, b->rows,
                   b->want, b->pk, b->node, b->is_out, b->out_tok, b->forks, b->at_full, b->at_sub, b->head_full,
                   b->head_sub, b->pass};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        free(all[i]);
    xp_fast_batch_free(&b->fb);
    free(b);
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

static int check_items(const xp_model *m, const xp_tree_item *items, size_t n, bool have_rows,
                       xp_err *err)
{
    const xp_shape *s = &m->shape;
    for (size_t i = 0; i < n; i++) {
        const xp_tree_item *it = &items[i];
        for (size_t q = 0; q < it->n_seq; q++) {
            const xp_tree_seq *sq = &it->seq[q];
            if (sq->n == 0)
                return xp_err_set(err, XP_EINVAL, "item %zu, sequence %zu is empty", i, q);
            if (sq->n > s->n_ctx)
                return xp_err_set(err, XP_EINVAL, "item %zu, sequence %zu: %zu tokens exceed "
                                  "the model's context of %u", i, q, sq->n, s->n_ctx);
            for (size_t j = 0; j < sq->n; j++)
                if (sq->tok[j] < 0 || (uint64_t)sq->tok[j] >= s->n_vocab)
                    return xp_err_set(err, XP_EINVAL, "item %zu, sequence %zu, token %zu: id "
                                      "%d is not in the vocabulary [0, %llu)", i, q, j,
                                      sq->tok[j], (unsigned long long)s->n_vocab);
        }
        for (size_t o = 0; o < it->n_out; o++) {
            const xp_tree_out *out = &it->out[o];
            if (out->seq >= it->n_seq || out->pos >= it->seq[out->seq].n)
                return xp_err_set(err, XP_EINVAL, "item %zu, output %zu: position %u of "
                                  "sequence %u does not exist", i, o, out->pos, out->seq);
            if (!out->full && !have_rows)
                return xp_err_set(err, XP_EINVAL, "item %zu, output %zu reads a row subset, "
                                  "and none was given", i, o);
        }
    }
    return XP_OK;
}

/* Whether sequence g comes before h in token order (a prefix first; ties by index). */
static bool before(const xp_tree_batch *b, size_t g, size_t h)
{
    const int32_t *x = b->tok + b->tok0[g], *y = b->tok + b->tok0[h];
    size_t nx = seq_len(b, g), ny = seq_len(b, h);
    for (size_t j = 0; j < nx && j < ny; j++)
        if (x[j] != y[j])
            return x[j] < y[j];
    return nx != ny ? nx < ny : g < h;
}

/* Merge sort of the sequence indices by token order (qsort has no portable context). */
static void sort_seqs(const xp_tree_batch *b, size_t *a, size_t *tmp, size_t n)
{
    if (n < 2)
        return;
    size_t h = n / 2;
    sort_seqs(b, a, tmp, h);
    sort_seqs(b, a + h, tmp, n - h);
    size_t i = 0, j = h, k = 0;
    while (i < h || j < n)
        tmp[k++] = j == n || (i < h && before(b, a[i], a[j])) ? a[i++] : a[j++];
    memcpy(a, tmp, n * sizeof *a);
}

static size_t common(const xp_tree_batch *b, size_t g, size_t h)
{
    const int32_t *x = b->tok + b->tok0[g], *y = b->tok + b->tok0[h];
    size_t j = 0, nx = seq_len(b, g), ny = seq_len(b, h);
    while (j < nx && j < ny && x[j] == y[j])
        j++;
    return j;
}

/* Plans a run over the marked sequences (b->want): the packed tokens, their nodes, each
 * sequence position's packed token and the forks, unless only counting; returns the
 * token count. */
static size_t plan(xp_tree_batch *b, bool count_only)
{
    xp_fast_batch *fb = &b->fb;
    size_t t = 0, n_forks = 0, prev = SIZE_MAX, shared = 0;
    for (size_t r = 0; r < b->n_seqs; r++) {
        size_t g = b->order[r], len = seq_len(b, g);
        /* tokens shared with the previous marked sequence: the least common start of the
         * neighbours in between, as the order is sorted */
        if (r > 0)
            shared = b->lcp[r] < shared ? b->lcp[r] : shared;
        if (!b->want[g])
            continue;
        size_t s = prev == SIZE_MAX ? 0 : shared;
        if (count_only) {
            t += len - s;
        } else {
            if (s) {
                b->forks[n_forks++] = (xp_kv_fork){b->kv[g], b->kv[prev], s};
                memcpy(b->pk + b->tok0[g], b->pk + b->tok0[prev], s * sizeof *b->pk);
            }
            for (size_t j = s; j < len; j++, t++) {
                fb->tok[t] = b->tok[b->tok0[g] + j];
                fb->pos[t] = j;
                fb->kv[t] = b->kv[g];
                b->pk[b->tok0[g] + j] = t;
                b->node[t] = b->node_of[b->tok0[g] + j];
            }
        }
        prev = g;
        shared = len;
    }
    if (!count_only) {
        fb->T = t;
        fb->forks = b->forks;
        fb->n_forks = n_forks;
    }
    return t;
}

static void mark(xp_tree_batch *b, const size_t *sel, size_t n_sel)
{
    memset(b->want, !sel, b->n_seqs);
    for (size_t s = 0; sel && s < n_sel; s++)
        for (size_t g = b->seq0[sel[s]]; g < b->seq0[sel[s] + 1]; g++)
            b->want[g] = true;
}

size_t xp_tree_batch_tokens(xp_tree_batch *b, const size_t *sel, size_t n_sel)
{
    mark(b, sel, n_sel);
    return plan(b, true);
}

int xp_tree_batch_new(xp_tree_batch **out, xp_model *m, const xp_tree_item *items, size_t n,
                      const uint32_t *ckpt, size_t n_ckpt, bool mlp, const int32_t *rows,
                      size_t n_rows, xp_err *err)
{
    *out = NULL;
    int rc = check_items(m, items, n, rows != NULL, err);
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
    b->n_items = n;
    size_t n_tok = 0, n_out = 0;
    for (size_t i = 0; i < n; i++) {
        b->n_seqs += items[i].n_seq;
        n_out += items[i].n_out;
        for (size_t q = 0; q < items[i].n_seq; q++)
            n_tok += items[i].seq[q].n;
    }
    size_t S = b->n_seqs;
    bool ok = (b->seq0 = calloc(n + 1, sizeof *b->seq0)) && (b->out0 = calloc(n + 1, sizeof *b->out0)) &&
              (b->n_full = calloc(n + 1, sizeof *b->n_full)) &&
              (b->outs = malloc((n_out + 1) * sizeof *b->outs)) &&
              (b->tok = malloc((n_tok + 1) * sizeof *b->tok)) &&
              (b->tok0 = calloc(S + 1, sizeof *b->tok0)) &&
              (b->order = malloc((S + 1) * sizeof *b->order)) &&
              (b->lcp = calloc(S + 1, sizeof *b->lcp)) &&
              (b->node_of = malloc((n_tok + 1) * sizeof *b->node_of)) &&
              (b->pk = malloc((n_tok + 1) * sizeof *b->pk)) &&
              (b->node = malloc((n_tok + 1) * sizeof *b->node)) &&
              (b->is_out = malloc(n_tok + 1)) &&
              (b->out_tok = malloc((n_tok + 1) * sizeof *b->out_tok)) &&
              (b->want = malloc(S + 1)) && (b->kv = calloc(S + 1, sizeof *b->kv)) &&
              (b->forks = malloc((S + 1) * sizeof *b->forks));
    size_t g = 0, o = 0, max_full = 0, max_sub = 0;
    for (size_t i = 0; ok && i < n; i++) {
        b->seq0[i] = g;
        b->out0[i] = o;
        for (size_t q = 0; q < items[i].n_seq; q++, g++) {
            memcpy(b->tok + b->tok0[g], items[i].seq[q].tok, items[i].seq[q].n * sizeof *b->tok);
            b->tok0[g + 1] = b->tok0[g] + items[i].seq[q].n;
        }
        for (size_t k = 0; k < items[i].n_out; k++, o++) {
            b->outs[o] = items[i].out[k];
            b->n_full[i] += items[i].out[k].full;
        }
        max_full = b->n_full[i] > max_full ? b->n_full[i] : max_full;
        max_sub = items[i].n_out - b->n_full[i] > max_sub ? items[i].n_out - b->n_full[i] : max_sub;
    }
    if (ok) {
        b->seq0[n] = g;
        b->out0[n] = o;
        size_t *tmp = malloc((S + 1) * sizeof *tmp);
        ok = tmp != NULL;
        for (size_t h = 0; ok && h < S; h++)
            b->order[h] = h;
        if (ok)
            sort_seqs(b, b->order, tmp, S);
        free(tmp);
        for (size_t r = 1; ok && r < S; r++)
            b->lcp[r] = common(b, b->order[r - 1], b->order[r]);
    }
    for (size_t h = 0; ok && h < S; h++)
        ok = !(rc = xp_kv_new_layers(&b->kv[h], m, seq_len(b, h), 1, err));
    if (ok) { /* the full run numbers the nodes: a node is its token in that run */
        mark(b, NULL, 0);
        b->T = plan(b, true);
        memset(b->node_of, 0, n_tok * sizeof *b->node_of); /* plan() reads them: not yet known */
        /* the LM head takes a pass's outputs into the scratch rows too, and outputs can
         * outnumber the nodes (several on one node) */
        b->cap_full = max_full > HEAD_OUTPUTS ? max_full : HEAD_OUTPUTS;
        b->cap_sub = max_sub > HEAD_OUTPUTS ? max_sub : HEAD_OUTPUTS;
        size_t rows = b->T > b->cap_full ? b->T : b->cap_full;
        ok = !xp_fast_batch_alloc(&m->shape, rows > b->cap_sub ? rows : b->cap_sub, &b->fb);
        if (ok) {
            plan(b, false);
            memcpy(b->node_of, b->pk, n_tok * sizeof *b->node_of);
        }
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
        b->mlp = mlp;
        size_t width[N_KEPT] = {m->shape.n_embd, mlp ? m->shape.n_embd : 0, mlp ? m->shape.n_ff : 0};
        for (size_t k = 0; ok && k < b->n_ckpt; k++)
            for (int i = 0; ok && i < N_KEPT; i++)
                if (width[i]) {
                    size_t bytes = (b->T ? b->T : 1) * width[i] * sizeof(float);
                    ok = (b->cur[k].a[i] = malloc(bytes)) && (b->pend[k].a[i] = malloc(bytes));
                }
    }
    if (ok && rows) {
        ok = (b->rows = malloc((n_rows ? n_rows : 1) * sizeof *b->rows)) != NULL;
        if (ok)
            memcpy(b->rows, rows, n_rows * sizeof *rows);
        b->n_rows = n_rows;
    }
    ok = ok && (b->at_full = malloc(b->cap_full * sizeof *b->at_full)) &&
         (b->at_sub = malloc(b->cap_sub * sizeof *b->at_sub)) &&
         (b->head_full = malloc(b->cap_full * m->shape.n_vocab * sizeof *b->head_full)) &&
         (b->head_sub = malloc(b->cap_sub * (n_rows ? n_rows : 1) * sizeof *b->head_sub)) &&
         (b->pass = malloc((b->cap_items = b->cap_full + b->cap_sub) * sizeof *b->pass));
    if (!ok) {
        xp_tree_batch_free(b);
        return rc ? rc : xp_err_set(err, XP_ENOMEM, "out of memory for a batch of %zu items", n);
    }
    *out = b;
    return XP_OK;
}

/* The packed token of item i's output o in the planned run. */
static size_t out_token(const xp_tree_batch *b, size_t i, size_t o)
{
    return b->pk[b->tok0[b->seq0[i] + b->outs[o].seq] + b->outs[o].pos];
}

/* The packed tokens whose outputs the selected items read, ascending, as the batch's
 * output tokens: the others stop at the last layer's keys and values. */
static void output_tokens(xp_tree_batch *b, const size_t *sel, size_t n, size_t T)
{
    memset(b->is_out, 0, T);
    for (size_t s = 0; s < n; s++) {
        size_t i = sel ? sel[s] : s;
        for (size_t o = b->out0[i]; o < b->out0[i + 1]; o++)
            b->is_out[out_token(b, i, o)] = true;
    }
    size_t k = 0;
    for (size_t t = 0; t < T; t++)
        if (b->is_out[t])
            b->out_tok[k++] = t;
    b->fb.out = b->out_tok;
    b->fb.n_out = k;
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

/* The LM head over the selected items, a few at a time, each item's outputs to fn. */
static int heads(xp_tree_batch *b, const size_t *sel, size_t n, xp_tree_out_fn fn, void *ctx)
{
    size_t V = b->m->shape.n_vocab, W = b->n_rows;
    for (size_t s0 = 0, s1; s0 < n; s0 = s1) {
        size_t nf = 0, ns = 0;
        for (s1 = s0; s1 < n && s1 - s0 < b->cap_items; s1++) {
            size_t i = sel ? sel[s1] : s1, f = b->n_full[i], u = b->out0[i + 1] - b->out0[i] - f;
            if (s1 > s0 && (nf + f > b->cap_full || ns + u > b->cap_sub))
                break;
            b->pass[s1 - s0] = (pass_item){nf, ns, 0};
            for (size_t o = b->out0[i]; o < b->out0[i + 1]; o++) {
                if (b->outs[o].full)
                    b->at_full[nf++] = out_token(b, i, o);
                else
                    b->at_sub[ns++] = out_token(b, i, o);
            }
        }
        int rc = xp_fast_head(b->m, &b->fb, b->at_full, nf, NULL, 0, b->head_full);
        if (!rc)
            rc = xp_fast_head(b->m, &b->fb, b->at_sub, ns, b->rows, W, b->head_sub);
        if (rc)
            return rc;
        /* what an item's outputs feed (a log-softmax over the vocabulary) is work too;
         * the first item's non-zero result, whatever its sign, is the run's */
#pragma omp parallel for schedule(dynamic, 1)
        for (size_t s = s0; s < s1; s++) {
            pass_item *p = &b->pass[s - s0];
            p->ret = fn(ctx, s, b->head_full + p->full * V, b->head_sub + p->sub * W);
        }
        for (size_t s = s0; s < s1; s++)
            if (b->pass[s - s0].ret)
                return b->pass[s - s0].ret;
    }
    return XP_OK;
}

/* Rows of the kept array `from` (width values per node) into `to`, for each packed token. */
static void gather(const xp_tree_batch *b, float *to, const float *from, size_t width, size_t T)
{
    for (size_t t = 0; t < T; t++)
        memcpy(to + t * width, from + b->node[t] * width, width * sizeof(float));
}

int xp_tree_batch_run(xp_tree_batch *b, const size_t *sel, size_t n_sel,
                      const xp_tree_change *change, xp_tree_out_fn fn, void *ctx, xp_err *err)
{
    const xp_model *m = b->m;
    size_t E = m->shape.n_embd, n = sel ? n_sel : b->n_items;
    for (size_t k = 0; k < b->n_ckpt; k++) /* whatever happens, only this run may commit */
        b->pend_ok[k] = 0;
    b->ran_all = !sel;
    for (size_t i = 0; sel && i < n_sel; i++)
        if (sel[i] >= b->n_items)
            return xp_err_set(err, XP_EINVAL, "item %zu of %zu does not exist", sel[i],
                              b->n_items);
    if (change && change->kind == XP_CHANGE_FFN_ROW &&
        (change->row < 0 || change->row >= (int64_t)m->shape.n_ff))
        return xp_err_set(err, XP_EINVAL, "changed MLP row %lld is not below %u",
                          (long long)change->row, m->shape.n_ff);
    long c = change ? start_ckpt(b, change->layer) : -1;
    uint32_t start = c < 0 ? 0 : b->ckpt[c];
    /* an MLP change at a kept layer: from its mid-point, with its kept activation */
    bool at_down = c >= 0 && b->mlp && start == change->layer && change->kind != XP_CHANGE_LAYER;
    xp_fast_batch *fb = &b->fb;
    mark(b, sel, n_sel);
    size_t T = plan(b, false);
    output_tokens(b, sel, n, T);
    int rc = XP_OK;
    if (at_down) {
        gather(b, fb->x, b->cur[c].a[KEPT_MID], E, T);
        gather(b, fb->gate, b->cur[c].a[KEPT_ACT], m->shape.n_ff, T);
        if (change->kind == XP_CHANGE_FFN_ROW &&
            (rc = xp_fast_ffn_row(m, fb, start, change->row)))
            return xp_err_set(err, rc, "out of memory in a batch run");
    } else if (c >= 0)
        gather(b, fb->x, b->cur[c].a[KEPT_X], E, T);
    xp_fast_angles(m, fb);
    if (c < 0)
        xp_fast_embed(m, fb);
    /* what a run over every item (packed in node order) computes may become the kept
     * state: every array of the layers above the start; of the start layer, what the
     * run recomputed */
    unsigned all = b->mlp ? 1u << KEPT_X | 1u << KEPT_MID | 1u << KEPT_ACT : 1u << KEPT_X;
    xp_fast_keep keep[m->shape.n_layer + 1];
    memset(keep, 0, sizeof keep);
    for (size_t k = 0; k < b->n_ckpt && !sel; k++) {
        unsigned bits = c < 0 || (long)k > c ? all
                        : (long)k == c       ? all & (at_down ? 1u << KEPT_ACT
                                                              : 1u << KEPT_MID | 1u << KEPT_ACT)
                                             : 0;
        b->pend_ok[k] = bits;
        xp_fast_keep *kp = &keep[b->ckpt[k]];
        kp->x = bits & 1u << KEPT_X ? b->pend[k].a[KEPT_X] : NULL;
        kp->mid = bits & 1u << KEPT_MID ? b->pend[k].a[KEPT_MID] : NULL;
        kp->act = bits & 1u << KEPT_ACT ? b->pend[k].a[KEPT_ACT] : NULL;
    }
    if (!rc)
        rc = xp_fast_layers(m, fb, start, at_down, keep);
    if (rc) {
        for (size_t k = 0; k < b->n_ckpt; k++)
            b->pend_ok[k] = 0;
        return xp_err_set(err, rc, "out of memory in a batch run");
    }
    if ((rc = heads(b, sel, n, fn, ctx))) {
        for (size_t k = 0; k < b->n_ckpt; k++)
            b->pend_ok[k] = 0;
        return rc == XP_ENOMEM ? xp_err_set(err, rc, "out of memory for the LM head")
                               : xp_err_set(err, rc, "a batch output could not be taken (%s)",
                                            xp_err_code_name(rc));
    }
    return XP_OK;
}

void xp_tree_batch_commit(xp_tree_batch *b)
{
    for (size_t k = 0; k < b->n_ckpt; k++) {
        /* after a run over some items nothing is known of the new weights' residuals:
         * the kept ones are forgotten, so the next run starts from scratch */
        if (!b->ran_all)
            b->valid[k] = false;
        for (int i = 0; i < N_KEPT; i++)
            if (b->pend_ok[k] & 1u << i) {
                float *tmp = b->cur[k].a[i];
                b->cur[k].a[i] = b->pend[k].a[i];
                b->pend[k].a[i] = tmp;
            }
        /* a run from scratch fills every array; later ones only what they changed */
        b->valid[k] = b->valid[k] || (b->pend_ok[k] & 1u << KEPT_X);
        b->pend_ok[k] = 0;
    }
}
