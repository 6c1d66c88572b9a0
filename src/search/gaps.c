/* Gap measurement for the search. The fast gauge packs every probe as a token tree (the
 * prompt once, both answers continuing it) into one batch, keeps the residual at the
 * layers a flip may touch, and computes only the LM-head rows the metric reads. The
 * naive gauge runs each sequence alone through every layer with the full LM head at
 * every position: the reference the fast one is measured against. Both hand the same
 * logits to xp_probe_gap, so they give the same gaps bit for bit. */
#include <stdlib.h>
#include <string.h>

#include "search/search_int.h"

static int cmp_i32(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

int xp_gauge_init(xp_gauge *g, xp_model *m, const xp_probe_tokens **pt, size_t n,
                  xp_metric metric, bool naive, const uint32_t *ckpt, size_t n_ckpt, xp_err *err)
{
    *g = (xp_gauge){.m = m, .pt = pt, .n = n, .metric = metric, .naive = naive};
    bool token_gap = metric == XP_METRIC_TOKEN_GAP;
    for (size_t i = 0; i < n; i++) {
        const xp_probe_tokens *p = pt[i];
        bool ids_ok = p->gap_id[0] >= 0 && (uint64_t)p->gap_id[0] < m->shape.n_vocab &&
                      p->gap_id[1] >= 0 && (uint64_t)p->gap_id[1] < m->shape.n_vocab;
        if (p->n_prompt == 0 || (token_gap ? !ids_ok : !p->n_answer[0] || !p->n_answer[1]))
            return xp_err_set(err, XP_EINVAL, "probe %zu has an empty prompt, an empty answer "
                              "or a token_gap id outside the vocabulary", i);
    }
    if (naive)
        return XP_OK;
    xp_tree *trees = calloc(n + 1, sizeof *trees);
    int32_t **prefixes = calloc(n + 1, sizeof *prefixes);
    int32_t *rows = token_gap ? malloc((2 * n + 1) * sizeof *rows) : NULL;
    g->row_of = token_gap ? malloc((2 * n + 1) * sizeof *g->row_of) : NULL;
    g->shared = calloc(n + 1, sizeof *g->shared);
    if (!trees || !prefixes || !g->shared || (token_gap && (!rows || !g->row_of))) {
        free(trees), free(prefixes), free(rows);
        return xp_err_set(err, XP_ENOMEM, "out of memory");
    }
    size_t n_rows = 0;
    int rc = XP_OK;
    for (size_t i = 0; i < n && !rc; i++) {
        const xp_probe_tokens *p = pt[i];
        if (token_gap) {
            trees[i] = (xp_tree){p->prompt, p->n_prompt, {NULL, NULL}, {0, 0}, 1};
            rows[n_rows++] = p->gap_id[0];
            rows[n_rows++] = p->gap_id[1];
            continue;
        }
        /* the answers' common start is run once, as part of the prefix; each answer keeps
         * at least its last token, which is never run */
        size_t sh = 0, n0 = p->n_answer[0], n1 = p->n_answer[1];
        while (sh + 1 < n0 && sh + 1 < n1 && p->answer[0][sh] == p->answer[1][sh])
            sh++;
        g->shared[i] = sh;
        if (!(prefixes[i] = malloc((p->n_prompt + sh + 1) * sizeof **prefixes))) {
            rc = xp_err_set(err, XP_ENOMEM, "out of memory");
            break;
        }
        memcpy(prefixes[i], p->prompt, p->n_prompt * sizeof **prefixes);
        memcpy(prefixes[i] + p->n_prompt, p->answer[0], sh * sizeof **prefixes);
        trees[i] = (xp_tree){prefixes[i], p->n_prompt + sh, {p->answer[0] + sh, p->answer[1] + sh},
                             {n0 - sh, n1 - sh}, sh + 1};
    }
    if (token_gap && !rc) { /* the distinct ids, sorted, and where each probe's two are */
        qsort(rows, n_rows, sizeof *rows, cmp_i32);
        size_t u = 0;
        for (size_t i = 0; i < n_rows; i++)
            if (u == 0 || rows[i] != rows[u - 1])
                rows[u++] = rows[i];
        n_rows = u;
        for (size_t i = 0; i < 2 * n; i++) {
            int32_t id = pt[i / 2]->gap_id[i % 2];
            g->row_of[i] = (int32_t)((int32_t *)bsearch(&id, rows, n_rows, sizeof *rows,
                                                        cmp_i32) - rows);
        }
    }
    if (!rc)
        rc = xp_tree_batch_new(&g->tb, m, trees, n, ckpt, n_ckpt, rows, n_rows, err);
    for (size_t i = 0; i < n; i++)
        free(prefixes[i]);
    free(prefixes);
    free(trees);
    free(rows);
    return rc;
}

void xp_gauge_free(xp_gauge *g)
{
    xp_tree_batch_free(g->tb);
    free(g->row_of);
    free(g->shared);
    free(g->logits);
    memset(g, 0, sizeof *g);
}

typedef struct gap_sink {
    xp_gauge *g;
    const size_t *sel;
    double *gaps;
} gap_sink;

/* One probe's gap from its tree's outputs: the last prompt row, then each answer's. */
static int tree_gap(void *ctx, size_t s, const float *out)
{
    gap_sink *k = ctx;
    xp_gauge *g = k->g;
    size_t i = k->sel ? k->sel[s] : s;
    const xp_probe_tokens *p = g->pt[i];
    if (g->metric == XP_METRIC_TOKEN_GAP) { /* a row of its own: calls run side by side */
        float *row = malloc(g->m->shape.n_vocab * sizeof *row);
        if (!row)
            return XP_ENOMEM;
        row[p->gap_id[0]] = out[g->row_of[2 * i]];
        row[p->gap_id[1]] = out[g->row_of[2 * i + 1]];
        k->gaps[s] = xp_probe_gap(p, g->metric, row, NULL, g->m->shape.n_vocab);
        free(row);
        return 0;
    }
    /* outputs: the last prompt position and the shared answer start (sh + 1 rows), then
     * each answer's own rows; answer 0's rows follow the shared ones, answer 1's are
     * gathered behind a copy of them */
    size_t V = xp_tree_batch_width(g->tb), sh = g->shared[i];
    size_t own0 = p->n_answer[0] - sh - 1, own1 = p->n_answer[1] - sh - 1;
    float *gathered = NULL;
    const float *rows[2] = {out + V, out + V * (1 + sh + own0)};
    if (sh && own1) {
        if (!(gathered = malloc((sh + own1) * V * sizeof *gathered)))
            return XP_ENOMEM;
        memcpy(gathered, out + V, sh * V * sizeof *gathered);
        memcpy(gathered + sh * V, rows[1], own1 * V * sizeof *gathered);
        rows[1] = gathered;
    } else if (sh)
        rows[1] = out + V;
    k->gaps[s] = xp_probe_gap(p, g->metric, out, rows, V);
    free(gathered);
    return 0;
}

/* The naive way: each answer's sequence alone, logits at every position. */
static int naive_gap(xp_gauge *g, const xp_probe_tokens *p, double *gap, xp_err *err)
{
    size_t V = g->m->shape.n_vocab, n_ans = g->metric == XP_METRIC_TOKEN_GAP ? 0 : 2;
    size_t longest = p->n_prompt + (n_ans ? (p->n_answer[0] > p->n_answer[1] ? p->n_answer[0]
                                                                            : p->n_answer[1])
                                          : 0);
    if (longest > g->logits_cap) {
        free(g->logits);
        g->logits = malloc(longest * V * sizeof *g->logits);
        g->logits_cap = g->logits ? longest : 0;
        if (!g->logits)
            return xp_err_set(err, XP_ENOMEM, "out of memory");
    }
    int32_t *seq = malloc(longest * sizeof *seq);
    uint8_t *every = malloc(longest);
    float *rows_buf[2] = {NULL, NULL};
    float *last = malloc(V * sizeof *last);
    int rc = seq && every && last ? XP_OK : XP_ENOMEM;
    if (rc)
        xp_err_set(err, rc, "out of memory");
    else
        memset(every, 1, longest);
    for (size_t a = 0; a < (n_ans ? 2 : 1) && !rc; a++) {
        size_t n_a = n_ans ? p->n_answer[a] : 0, len = p->n_prompt + n_a;
        memcpy(seq, p->prompt, p->n_prompt * sizeof *seq);
        if (n_a)
            memcpy(seq + p->n_prompt, p->answer[a], n_a * sizeof *seq);
        xp_seq s = {NULL, seq, len, every};
        if ((rc = xp_forward(g->m, XP_PATH_FAST, &s, 1, g->logits, err)))
            break;
        if (a == 0)
            memcpy(last, g->logits + (p->n_prompt - 1) * V, V * sizeof *last);
        if (n_a > 1 && !(rows_buf[a] = malloc((n_a - 1) * V * sizeof(float))))
            rc = xp_err_set(err, XP_ENOMEM, "out of memory");
        else if (n_a > 1)
            memcpy(rows_buf[a], g->logits + p->n_prompt * V, (n_a - 1) * V * sizeof(float));
    }
    if (!rc) {
        const float *rows[2] = {rows_buf[0], rows_buf[1]};
        *gap = xp_probe_gap(p, g->metric, last, rows, V);
    }
    free(seq), free(every), free(last), free(rows_buf[0]), free(rows_buf[1]);
    return rc;
}

int xp_gauge_run(xp_gauge *g, const size_t *sel, size_t n_sel, uint32_t from, double *gaps,
                 xp_err *err)
{
    if (g->naive) {
        size_t n = sel ? n_sel : g->n;
        for (size_t s = 0; s < n; s++) {
            int rc = naive_gap(g, g->pt[sel ? sel[s] : s], &gaps[s], err);
            if (rc)
                return rc;
        }
        return XP_OK;
    }
    gap_sink k = {g, sel, gaps};
    return xp_tree_batch_run(g->tb, sel, n_sel, from, tree_gap, &k, err);
}

void xp_gauge_commit(xp_gauge *g)
{
    if (g->tb)
        xp_tree_batch_commit(g->tb);
}
