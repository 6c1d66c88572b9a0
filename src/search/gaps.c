/* Gap measurement for the search. The fast gauge puts every probe's sequences (the prompt
 * followed by each answer) into one token trie, so what probes and answers share is run
 * once; keeps the residual at the layers a flip may touch; and computes only the LM-head
 * rows the gap reads: two rows where the answers part (or, for token_gap, at the prompt's
 * end) and every row only where a log-softmax needs them, after that; the correctness
 * metrics (answer_logprob, margin) read the correct continuation alone, one sequence
 * per probe with the full row at each of its positions. The naive gauge
 * runs each sequence alone through every layer with the full LM head at every position:
 * the reference the fast one is measured against. Both compute the gap in xp_probe_gap's
 * code from the same logits, so they give the same gaps bit for bit. */
#include <stdlib.h>
#include <string.h>

#include "search/search_int.h"

static int cmp_i32(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/* The gauge of the correctness metrics: per probe the prompt and the correct answer but
 * its last token, with the full LM-head row from the prompt's last position on. */
static int correct_gauge(xp_gauge *g, xp_model *m, const xp_probe_tokens **pt, size_t n,
                         const uint32_t *ckpt, size_t n_ckpt, bool mlp, xp_err *err)
{
    size_t n_outs = 0;
    for (size_t i = 0; i < n; i++)
        n_outs += pt[i]->n_answer[0];
    xp_tree_item *items = calloc(n + 1, sizeof *items);
    xp_tree_seq *seqs = calloc(n + 1, sizeof *seqs);
    int32_t **buf = calloc(n + 1, sizeof *buf);
    xp_tree_out *outs = malloc((n_outs + 1) * sizeof *outs);
    int rc = items && seqs && buf && outs ? XP_OK : xp_err_set(err, XP_ENOMEM, "out of memory");
    for (size_t i = 0, o = 0; i < n && !rc; i++) {
        const xp_probe_tokens *p = pt[i];
        size_t len = p->n_prompt + p->n_answer[0] - 1;
        if (!(buf[i] = malloc(len * sizeof **buf))) {
            rc = xp_err_set(err, XP_ENOMEM, "out of memory");
            break;
        }
        memcpy(buf[i], p->prompt, p->n_prompt * sizeof **buf);
        memcpy(buf[i] + p->n_prompt, p->answer[0], (len - p->n_prompt) * sizeof **buf);
        seqs[i] = (xp_tree_seq){buf[i], len};
        items[i] = (xp_tree_item){&seqs[i], 1, outs + o, p->n_answer[0]};
        for (size_t j = 0; j < p->n_answer[0]; j++)
            outs[o++] = (xp_tree_out){0, (uint32_t)(p->n_prompt - 1 + j), true};
    }
    if (!rc)
        rc = xp_tree_batch_new(&g->tb, m, items, n, ckpt, n_ckpt, mlp, NULL, 0, err);
    for (size_t i = 0; buf && i < n; i++)
        free(buf[i]);
    free(buf), free(seqs), free(items), free(outs);
    return rc;
}

int xp_gauge_init(xp_gauge *g, xp_model *m, const xp_probe_tokens **pt, size_t n, xp_metric metric,
                  bool naive, const uint32_t *ckpt, size_t n_ckpt, bool mlp, xp_err *err)
{
    *g = (xp_gauge){.m = m, .pt = pt, .n = n, .metric = metric, .naive = naive};
    bool token_gap = metric == XP_METRIC_TOKEN_GAP, pair = xp_metric_pair(metric);
    for (size_t i = 0; i < n; i++) {
        const xp_probe_tokens *p = pt[i];
        uint64_t V = xp_model_shape(m)->n_vocab;
        bool ids_ok = p->gap_id[0] >= 0 && (uint64_t)p->gap_id[0] < V && p->gap_id[1] >= 0 &&
                      (uint64_t)p->gap_id[1] < V;
        if (pair && !p->n_answer[1])
            return xp_err_set(err, XP_EINVAL,
                              "probe %zu has no wrong answer, and %s compares "
                              "with one (margin and answer_logprob do not)",
                              i, xp_metric_name(metric));
        if (p->n_prompt == 0 ||
            (token_gap ? !ids_ok : !p->n_answer[0] || (pair && !p->n_answer[1])))
            return xp_err_set(err, XP_EINVAL,
                              "probe %zu has an empty prompt, an empty answer "
                              "or a token_gap id outside the vocabulary",
                              i);
    }
    if (naive)
        return XP_OK;
    if (!pair) /* one sequence each: prompt + correct answer; the full row at each answer token */
        return correct_gauge(g, m, pt, n, ckpt, n_ckpt, mlp, err);
    /* per probe: up to two sequences, and outputs: the parting position (two rows of the
     * subset), then each answer's later positions (every row) */
    xp_tree_item *items = calloc(n + 1, sizeof *items);
    xp_tree_seq *seqs = calloc(2 * n + 1, sizeof *seqs);
    int32_t **buf = calloc(2 * n + 1, sizeof *buf);
    xp_tree_out *outs = NULL;
    int32_t *rows = malloc((2 * n + 1) * sizeof *rows);
    g->row_of = malloc((2 * n + 1) * sizeof *g->row_of);
    size_t n_outs = 0;
    for (size_t i = 0; i < n; i++)
        n_outs += token_gap ? 1 : pt[i]->n_answer[0] + pt[i]->n_answer[1];

    outs = malloc((n_outs + 1) * sizeof *outs);
    int rc = items && seqs && buf && outs && rows && g->row_of
                 ? XP_OK
                 : xp_err_set(err, XP_ENOMEM, "out of memory");
    size_t n_rows = 0, o = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        const xp_probe_tokens *p = pt[i];
        xp_tree_item *it = &items[i];
        it->seq = seqs + 2 * i;
        it->out = outs + o;
        if (token_gap) {
            seqs[2 * i] = (xp_tree_seq){p->prompt, p->n_prompt};
            it->n_seq = 1;
            outs[o++] = (xp_tree_out){0, (uint32_t)(p->n_prompt - 1), false};
            rows[n_rows++] = p->gap_id[0];
            rows[n_rows++] = p->gap_id[1];
            it->n_out = 1;
            continue;
        }
        size_t sh = xp_probe_shared(p);
        rows[n_rows++] = p->answer[0][sh];
        rows[n_rows++] = p->answer[1][sh];
        outs[o++] = (xp_tree_out){0, (uint32_t)(p->n_prompt - 1 + sh), false};
        for (int a = 0; a < 2; a++) {
            /* prompt + answer but its last token, which is never run */
            size_t own = p->n_answer[a] - sh - 1, len = p->n_prompt + p->n_answer[a] - 1;
            if (a == 1 && own == 0)
                break;
            if (!(buf[2 * i + a] = malloc(len * sizeof **buf))) {
                rc = xp_err_set(err, XP_ENOMEM, "out of memory");
                break;
            }
            memcpy(buf[2 * i + a], p->prompt, p->n_prompt * sizeof **buf);
            memcpy(buf[2 * i + a] + p->n_prompt, p->answer[a], (len - p->n_prompt) * sizeof **buf);
            seqs[2 * i + a] = (xp_tree_seq){buf[2 * i + a], len};
            it->n_seq = (size_t)a + 1;
            for (size_t j = 0; j < own; j++)
                outs[o++] = (xp_tree_out){(uint32_t)a, (uint32_t)(p->n_prompt + sh + j), true};
        }
        it->n_out = (size_t)(outs + o - it->out);
    }
    if (!rc) { /* the distinct ids, sorted, and where each probe's two are */
        for (size_t i = 0; i < n_rows; i++)
            g->row_of[i] = rows[i];
        qsort(rows, n_rows, sizeof *rows, cmp_i32);
        size_t u = 0;
        for (size_t i = 0; i < n_rows; i++)
            if (u == 0 || rows[i] != rows[u - 1])
                rows[u++] = rows[i];
        for (size_t i = 0; i < n_rows; i++)
            g->row_of[i] =
                (int32_t)((int32_t *)bsearch(&g->row_of[i], rows, u, sizeof *rows, cmp_i32) - rows);
        rc = xp_tree_batch_new(&g->tb, m, items, n, ckpt, n_ckpt, mlp, rows, u, err);
    }
    for (size_t i = 0; buf && i < 2 * n; i++)
        free(buf[i]);
    free(buf), free(seqs), free(items), free(outs), free(rows);
    return rc;
}

void xp_gauge_free(xp_gauge *g)
{
    xp_tree_batch_free(g->tb);
    free(g->row_of);
    free(g->logits);
    memset(g, 0, sizeof *g);
}

typedef struct gap_sink {
    xp_gauge *g;
    const size_t *sel;
    double *gaps;
} gap_sink;

/* One probe's gap from its outputs: the two ids' logits at the parting position, then
 * each answer's later rows. */
static int item_gap(void *ctx, size_t s, const float *full, const float *subset)
{
    gap_sink *k = ctx;
    xp_gauge *g = k->g;
    size_t i = k->sel ? k->sel[s] : s, V = xp_model_shape(g->m)->n_vocab;
    const xp_probe_tokens *p = g->pt[i];
    if (!xp_metric_pair(g->metric)) { /* the correct answer's rows, one after another */
        const float *rows[2] = {full + V, NULL};
        k->gaps[s] = xp_probe_gap(p, g->metric, full, rows, V);
        return 0;
    }
    float first[2] = {subset[g->row_of[2 * i]], subset[g->row_of[2 * i + 1]]};
    const float *own[2] = {NULL, NULL};
    if (g->metric != XP_METRIC_TOKEN_GAP) {
        size_t own0 = p->n_answer[0] - xp_probe_shared(p) - 1;
        own[0] = own0 ? full : NULL;
        own[1] = full + own0 * V; /* read only when answer 1 has rows of its own */
    }
    k->gaps[s] = xp_probe_gap_parts(p, g->metric, first, own, V);
    return 0;
}

/* The naive way: each answer's sequence alone, logits at every position. */
static int naive_gap(xp_gauge *g, const xp_probe_tokens *p, double *gap, xp_err *err)
{
    size_t V = xp_model_shape(g->m)->n_vocab, n_ans = g->metric == XP_METRIC_TOKEN_GAP ? 0
                                                      : xp_metric_pair(g->metric)      ? 2
                                                                                       : 1;
    size_t longest =
        p->n_prompt +
        (n_ans ? (p->n_answer[0] > p->n_answer[1] ? p->n_answer[0] : p->n_answer[1]) : 0);
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
    for (size_t a = 0; a < (n_ans ? n_ans : 1) && !rc; a++) {
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

int xp_gauge_run(xp_gauge *g, const size_t *sel, size_t n_sel, const xp_tree_change *change,
                 double *gaps, xp_err *err)
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
    return xp_tree_batch_run(g->tb, sel, n_sel, change, item_gap, &k, err);
}

size_t xp_gauge_tokens(const xp_gauge *g)
{
    if (g->tb)
        return xp_tree_batch_tokens(g->tb, NULL, 0);
    size_t t = 0; /* naive: each answer's sequence whole (token_gap: the prompt) */
    for (size_t i = 0; i < g->n; i++)
        t += g->metric == XP_METRIC_TOKEN_GAP ? g->pt[i]->n_prompt
             : !xp_metric_pair(g->metric)
                 ? g->pt[i]->n_prompt + g->pt[i]->n_answer[0]
                 : 2 * g->pt[i]->n_prompt + g->pt[i]->n_answer[0] + g->pt[i]->n_answer[1];
    return t;
}

xp_tree_change xp_candidate_change(const xp_model *m, const xp_candidate *c)
{
    const xp_weight *w = xp_proj_weight(xp_model_layer(m, c->layer), c->proj);
    const xp_proj_info *proj = xp_proj_info_of(c->proj);
    xp_flip f = xp_candidate_as_flip(c);
    int64_t row = xp_flip_kind_of(c->kind)->row(&f, w->ne0);
    int kind = !proj->mlp                           ? XP_CHANGE_LAYER
               : proj->in == XP_DIM_FF              ? XP_CHANGE_DOWN
               : proj->out == XP_DIM_FF && row >= 0 ? XP_CHANGE_FFN_ROW
                                                    : XP_CHANGE_LAYER;
    return (xp_tree_change){c->layer, kind, row};
}

void xp_gauge_commit(xp_gauge *g)
{
    if (g->tb)
        xp_tree_batch_commit(g->tb);
}
