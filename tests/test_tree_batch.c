/* Token-trie batches, the search's evaluator: every output equals, bit for bit, the fast
 * path run on its sequence alone, however the sequences share prefixes (within an item,
 * across items, one a prefix of another, two the same); so does a run over any subset of
 * the items, an output reading a row subset, a run on another thread count, and a run
 * that starts from a kept residual after a row, block or scale-bit flip at or above that
 * layer, or from a kept layer's MLP after a flip in its gate, up or down projection. */
#include <omp.h>
#include <string.h>

#include "core/rng.h"
#include "model/model.h"
#include "testutil.h"
#include "xorpatch.h"

#define MAX_ITEMS 24 /* more outputs than one LM-head pass takes */
#define MAX_LEN 14
#define MAX_OUT 8

typedef struct items {
    size_t n;
    xp_tree_item it[MAX_ITEMS];
    xp_tree_seq seq[MAX_ITEMS][2];
    xp_tree_out out[MAX_ITEMS][MAX_OUT];
    int32_t tok[MAX_ITEMS][2][MAX_LEN];
} items;

/* Items whose sequences start with one of three shared starts (or none), so they share
 * prefixes across items; an item's second sequence is its first with another ending, a
 * prefix of it, or the same. Outputs at random positions, full or from the row subset. */
static void random_items(items *s, size_t n, xp_rng *r, uint64_t vocab)
{
    int32_t starts[3][5];
    for (int k = 0; k < 3; k++)
        for (int j = 0; j < 5; j++)
            starts[k][j] = (int32_t)xp_rng_below(r, vocab);
    s->n = n;
    for (size_t i = 0; i < n; i++) {
        size_t n_start = xp_rng_below(r, 4) == 0 ? 0 : 1 + xp_rng_below(r, 5);
        int32_t *start = starts[xp_rng_below(r, 3)];
        size_t len0 = n_start + 1 + xp_rng_below(r, MAX_LEN - 5);
        for (size_t j = 0; j < len0; j++)
            s->tok[i][0][j] = j < n_start ? start[j] : (int32_t)xp_rng_below(r, vocab);
        size_t kind = xp_rng_below(r, 4), len1 = len0; /* 0: one sequence */
        memcpy(s->tok[i][1], s->tok[i][0], sizeof s->tok[i][1]);
        if (kind == 1) /* another ending */
            for (size_t j = xp_rng_below(r, len0); j < len0; j++)
                s->tok[i][1][j] = (int32_t)xp_rng_below(r, vocab);
        else if (kind == 2) /* a prefix */
            len1 = 1 + xp_rng_below(r, len0);
        s->it[i] = (xp_tree_item){s->seq[i], kind ? 2 : 1, s->out[i], 1 + xp_rng_below(r, MAX_OUT)};
        s->seq[i][0] = (xp_tree_seq){s->tok[i][0], len0};
        s->seq[i][1] = (xp_tree_seq){s->tok[i][1], len1};
        for (size_t o = 0; o < s->it[i].n_out; o++) {
            uint32_t q = (uint32_t)xp_rng_below(r, s->it[i].n_seq);
            s->out[i][o] = (xp_tree_out){q, (uint32_t)xp_rng_below(r, s->seq[i][q].n),
                                         xp_rng_below(r, 2) == 0};
        }
    }
    if (n > 3) /* an item the same as another */
        s->it[3] = s->it[2];
}

/* Every output of every item in item order, each a full row, by running each sequence
 * alone through xp_forward. */
static float *reference(xp_model *m, const items *s, size_t *n_out)
{
    size_t V = xp_model_shape(m)->n_vocab, n = 0;
    for (size_t i = 0; i < s->n; i++)
        n += s->it[i].n_out;
    float *out = malloc(n * V * sizeof *out), *o = out;
    float *buf = malloc(MAX_LEN * V * sizeof *buf);
    xp_err err = {0};
    uint8_t every[MAX_LEN];
    memset(every, 1, sizeof every);
    for (size_t i = 0; i < s->n; i++)
        for (size_t k = 0; k < s->it[i].n_out; k++) {
            const xp_tree_out *q = &s->it[i].out[k];
            const xp_tree_seq *sq = &s->it[i].seq[q->seq];
            xp_seq one = {NULL, sq->tok, sq->n, every};
            cr_assert_eq(xp_forward(m, XP_PATH_FAST, &one, 1, buf, &err), XP_OK, "%s", err.msg);
            memcpy(o, buf + q->pos * V, V * sizeof *o);
            o += V;
        }
    free(buf);
    *n_out = n;
    return out;
}

typedef struct collect {
    const xp_tree_batch *b;
    const items *s;
    const size_t *sel;
    float *out;     /* every output of the run as a full row (subset rows: the rows only) */
    size_t *offset; /* where the outputs of sel[s] go */
    const int32_t *rows;
    size_t V;
} collect;

/* Calls may come from several threads at once: each item has its own place. Subset
 * outputs are spread into their rows of a row otherwise zero. */
static int store(void *ctx, size_t s, const float *full, const float *subset)
{
    collect *c = ctx;
    const xp_tree_item *it = &c->s->it[c->sel ? c->sel[s] : s];
    size_t W = xp_tree_batch_width(c->b);
    float *o = c->out + c->offset[s] * c->V;
    for (size_t k = 0; k < it->n_out; k++, o += c->V) {
        memset(o, 0, c->V * sizeof *o);
        if (it->out[k].full) {
            memcpy(o, full, c->V * sizeof *o);
            full += c->V;
        } else {
            for (size_t j = 0; j < W; j++)
                o[c->rows[j]] = subset[j];
            subset += W;
        }
    }
    return 0;
}

static float *run_batch(xp_tree_batch *b, const items *s, const size_t *sel, size_t n_sel,
                        const xp_tree_change *change, const int32_t *rows, size_t V)
{
    size_t n = sel ? n_sel : s->n;
    collect c = {b, s, sel, NULL, calloc(n + 1, sizeof(size_t)), rows, V};
    for (size_t k = 0; k < n; k++)
        c.offset[k + 1] = c.offset[k] + s->it[sel ? sel[k] : k].n_out;
    c.out = malloc((c.offset[n] + 1) * V * sizeof(float));
    xp_err err = {0};
    cr_assert_eq(xp_tree_batch_run(b, sel, n_sel, change, store, &c, &err), XP_OK, "%s", err.msg);
    free(c.offset);
    return c.out;
}

/* Output k (in item order) of a run equals the reference: the whole row when full, else
 * the subset's rows. */
static bool same_output(const items *s, size_t item, size_t k, const float *got,
                        const float *want, const int32_t *rows, size_t n_rows, size_t V)
{
    if (s->it[item].out[k].full)
        return memcmp(got, want, V * sizeof *got) == 0;
    for (size_t j = 0; j < n_rows; j++)
        if (memcmp(&got[rows[j]], &want[rows[j]], sizeof *got))
            return false;
    return true;
}

static void expect_outputs(const items *s, const size_t *sel, size_t n_sel, const float *got,
                           const float *ref, const int32_t *rows, size_t n_rows, size_t V,
                           const char *what)
{
    size_t first[MAX_ITEMS + 1] = {0};
    for (size_t i = 0; i < s->n; i++)
        first[i + 1] = first[i] + s->it[i].n_out;
    size_t n = sel ? n_sel : s->n;
    for (size_t p = 0; p < n; p++) {
        size_t i = sel ? sel[p] : p;
        for (size_t k = 0; k < s->it[i].n_out; k++, got += V)
            cr_expect(same_output(s, i, k, got, ref + (first[i] + k) * V, rows, n_rows, V),
                      "%s: item %zu, output %zu differs from its sequence alone", what, i, k);
    }
}

Test(tree_batch, equals_each_sequence_alone_in_any_subset_and_row_choice, .timeout = 120)
{
    xp_model *m = xp_test_open_tiny();
    size_t V = xp_model_shape(m)->n_vocab;
    xp_rng r;
    xp_rng_seed(&r, 3);
    items s;
    random_items(&s, 12, &r, V);
    size_t n_out;
    float *ref = reference(m, &s, &n_out);
    int32_t rows[] = {17, 0, (int32_t)V - 1, 4242 % (int32_t)V};
    xp_tree_batch *b;
    xp_err err = {0};
    cr_assert_eq(xp_tree_batch_new(&b, m, s.it, s.n, NULL, 0, false, rows, 4, &err), XP_OK, "%s",
                 err.msg);
    cr_assert_eq(xp_tree_batch_width(b), 4);
    size_t separate = 0;
    for (size_t i = 0; i < s.n; i++)
        for (size_t q = 0; q < s.it[i].n_seq; q++)
            separate += s.it[i].seq[q].n;
    cr_expect_lt(xp_tree_batch_tokens(b, NULL, 0), separate, "shared prefixes run once");
    int threads[] = {1, 3};
    for (int ti = 0; ti < 2; ti++) {
        omp_set_num_threads(threads[ti]);
        float *all = run_batch(b, &s, NULL, 0, NULL, rows, V);
        expect_outputs(&s, NULL, 0, all, ref, rows, 4, V, threads[ti] == 1 ? "1 thread" : "3 threads");
        free(all);
    }
    /* a subset, out of order and with a repeat */
    size_t sel[] = {5, 2, 6, 2, 0, 3};
    float *some = run_batch(b, &s, sel, 6, NULL, rows, V);
    expect_outputs(&s, sel, 6, some, ref, rows, 4, V, "subset");
    free(some);
    xp_tree_batch_free(b);
    free(ref);
    xp_model_close(m);
}

/* Flips one thing in layer l of the model's map, by kind (a gate row, a down block, a
 * scale bit of q, an up block); again to undo. Returns what changed. */
static xp_tree_change flip(xp_model *m, uint32_t l, int kind, int64_t index)
{
    xp_layer *L = &m->layers[l];
    xp_weight *w = kind == 0 ? &L->gate : kind == 1 ? &L->down : kind == 2 ? &L->wq : &L->up;
    int64_t per_row = w->ne0 / 128, block = index % (w->ne1 * per_row);
    if (kind == 0)
        xp_q1_0_flip_row(w->data, w->ne0, index % w->ne1);
    else if (kind == 2)
        xp_q1_0_flip_scale_bit(w->data, block, 9);
    else
        xp_q1_0_flip_block(w->data, block);
    return kind == 0   ? (xp_tree_change){l, XP_CHANGE_FFN_ROW, index % w->ne1}
           : kind == 1 ? (xp_tree_change){l, XP_CHANGE_DOWN, 0}
           : kind == 2 ? (xp_tree_change){l, XP_CHANGE_LAYER, 0}
                       : (xp_tree_change){l, XP_CHANGE_FFN_ROW, block / per_row};
}

/* Every output of a fresh batch's full run: the reference for incremental runs. */
static float *fresh_run(xp_model *m, const items *s, const int32_t *rows, size_t n_rows, size_t V)
{
    xp_tree_batch *fresh;
    xp_err err = {0};
    cr_assert_eq(xp_tree_batch_new(&fresh, m, s->it, s->n, NULL, 0, false, rows, n_rows, &err), XP_OK);
    float *out = run_batch(fresh, s, NULL, 0, NULL, rows, V);
    xp_tree_batch_free(fresh);
    return out;
}

/* Flips of each kind at each layer, kept or undone, run incrementally on a batch that
 * keeps layers 1 and the last (with mlp, their mid-points and activations too). */
static void kept_layers_follow_flips(bool mlp)
{
    xp_model *m = xp_test_open_tiny();
    const xp_shape *sh = xp_model_shape(m);
    size_t V = sh->n_vocab;
    cr_assert_geq(sh->n_layer, 3);
    xp_rng r;
    xp_rng_seed(&r, 11);
    items s;
    random_items(&s, MAX_ITEMS, &r, V);
    /* full outputs are compared whole; mostly subset outputs keep it quick */
    for (size_t i = 0; i < s.n; i++)
        for (size_t k = 0; k < s.it[i].n_out; k++)
            s.out[i][k].full = i % 8 == 0 && k == 0;
    uint32_t keep[] = {sh->n_layer - 1, 1};
    int32_t rows[64];
    for (int j = 0; j < 64; j++)
        rows[j] = (int32_t)xp_rng_below(&r, V);
    xp_tree_batch *b;
    xp_err err = {0};
    cr_assert_eq(xp_tree_batch_new(&b, m, s.it, s.n, keep, 2, mlp, rows, 64, &err), XP_OK);
    free(run_batch(b, &s, NULL, 0, NULL, rows, V));
    xp_tree_batch_commit(b);
    /* a flip of each kind at each layer: the run from that layer (from its MLP, for an
     * MLP flip at a kept layer) equals a fresh batch's full run; kept flips are committed
     * and later runs build on them */
    for (uint32_t l = 0; l < sh->n_layer; l++)
        for (int kind = 0; kind < 4; kind++) {
            int64_t index = (int64_t)xp_rng_below(&r, 1 << 20);
            xp_tree_change ch = flip(m, l, kind, index);
            float *inc = run_batch(b, &s, NULL, 0, &ch, rows, V);
            float *full = fresh_run(m, &s, rows, 64, V);
            char what[64];
            snprintf(what, sizeof what, "layer %u, flip kind %d, mlp %d", l, kind, mlp);
            expect_outputs(&s, NULL, 0, inc, full, rows, 64, V, what);
            size_t sel[] = {3, 1, 17};
            float *sub = run_batch(b, &s, sel, 3, &ch, rows, V);
            expect_outputs(&s, sel, 3, sub, full, rows, 64, V, what);
            free(sub);
            if (kind <= 1) { /* keep it: rerun every item, then commit */
                free(run_batch(b, &s, NULL, 0, &ch, rows, V));
                xp_tree_batch_commit(b);
            } else if (kind == 2) { /* a commit after a run over some items forgets */
                xp_tree_batch_commit(b);
                flip(m, l, kind, index);
                float *again = run_batch(b, &s, NULL, 0, &ch, rows, V);
                float *before = fresh_run(m, &s, rows, 64, V);
                expect_outputs(&s, NULL, 0, again, before, rows, 64, V,
                               "after a commit that followed a subset run");
                free(again);
                free(before);
            } else
                flip(m, l, kind, index);
            free(inc);
            free(full);
        }
    xp_tree_batch_free(b);
    xp_model_close(m);
}

Test(tree_batch, a_run_from_a_kept_layer_equals_a_full_recompute, .timeout = 120)
{
    kept_layers_follow_flips(true);
}

/* Without kept MLP state, every full run ends with the last layer trimmed to its
 * output tokens. */
Test(tree_batch, a_run_from_a_kept_residual_alone_equals_a_full_recompute, .timeout = 120)
{
    kept_layers_follow_flips(false);
}

typedef struct takes {
    size_t calls, fail_at; /* fail_at: the item that returns 7 (SIZE_MAX: none) */
} takes;

static int take(void *ctx, size_t s, const float *full, const float *subset)
{
    (void)full, (void)subset;
    takes *t = ctx;
#pragma omp atomic
    t->calls++;
    return s == t->fail_at ? 7 : 0; /* a positive result */
}

Test(tree_batch, outputs_may_outnumber_nodes_and_a_callback_result_stops_the_run,
     .timeout = 120)
{
    xp_model *m = xp_test_open_tiny();
    int32_t tok[] = {5, 6};
    xp_tree_seq seq[] = {{tok, 2}};
    xp_tree_out out[8]; /* 8 outputs on 2 nodes */
    for (int k = 0; k < 8; k++)
        out[k] = (xp_tree_out){0, (uint32_t)(k % 2), k % 3 == 0};
    int32_t rows[] = {3, 4};
    xp_tree_item it[] = {{seq, 1, out, 8}, {seq, 1, out, 8}};
    xp_tree_batch *b;
    xp_err err = {0};
    cr_assert_eq(xp_tree_batch_new(&b, m, it, 2, NULL, 0, false, rows, 2, &err), XP_OK, "%s",
                 err.msg);
    size_t sel[] = {0, 0, 0, 0};
    takes t = {0, SIZE_MAX};
    cr_expect_eq(xp_tree_batch_run(b, sel, 4, NULL, take, &t, &err), XP_OK, "%s", err.msg);
    cr_expect_eq(t.calls, 4);
    t.fail_at = 1;
    cr_expect_eq(xp_tree_batch_run(b, NULL, 0, NULL, take, &t, &err), 7,
                 "the callback's result is the run's");
    xp_tree_change bad = {0, XP_CHANGE_FFN_ROW, (int64_t)xp_model_shape(m)->n_ff};
    cr_expect_eq(xp_tree_batch_run(b, NULL, 0, &bad, take, &t, &err), XP_EINVAL);
    xp_tree_batch_free(b);
    xp_model_close(m);
}

Test(tree_batch, items_without_outputs_run, .timeout = 120)
{
    xp_model *m = xp_test_open_tiny();
    int32_t tok[] = {5, 6, 7};
    xp_tree_seq seq[] = {{tok, 3}};
    /* more items than an LM-head pass has places for, as none adds to its outputs */
    enum { N = 300 };
    xp_tree_item it[N];
    for (int i = 0; i < N; i++)
        it[i] = (xp_tree_item){seq, 1, NULL, 0};
    uint32_t keep[] = {xp_model_shape(m)->n_layer - 1};
    xp_tree_batch *b;
    xp_err err = {0};
    takes t = {0, SIZE_MAX};
    cr_assert_eq(xp_tree_batch_new(&b, m, it, 1, keep, 1, false, NULL, 0, &err), XP_OK, "%s",
                 err.msg);
    cr_expect_eq(xp_tree_batch_run(b, NULL, 0, NULL, take, &t, &err), XP_OK, "%s", err.msg);
    cr_expect_eq(t.calls, 1);
    xp_tree_batch_free(b);
    t.calls = 0;
    cr_assert_eq(xp_tree_batch_new(&b, m, it, N, NULL, 0, false, NULL, 0, &err), XP_OK, "%s",
                 err.msg);
    cr_expect_eq(xp_tree_batch_run(b, NULL, 0, NULL, take, &t, &err), XP_OK, "%s", err.msg);
    cr_expect_eq(t.calls, N);
    xp_tree_batch_free(b);
    xp_model_close(m);
}

Test(tree_batch, bad_items_are_refused)
{
    xp_model *m = xp_test_open_tiny();
    int32_t ok[] = {1, 2}, bad[] = {1, -4};
    xp_tree_seq seq[] = {{ok, 2}, {bad, 2}};
    xp_tree_out out[] = {{0, 1, true}};
    xp_tree_item it[] = {{seq, 2, out, 1}};
    xp_tree_batch *b;
    xp_err err = {0};
    cr_expect_eq(xp_tree_batch_new(&b, m, it, 1, NULL, 0, false, NULL, 0, &err), XP_EINVAL);
    cr_expect(strstr(err.msg, "item 0, sequence 1, token 1"), "%s", err.msg);
    seq[1] = (xp_tree_seq){ok, 0};
    cr_expect_eq(xp_tree_batch_new(&b, m, it, 1, NULL, 0, false, NULL, 0, &err), XP_EINVAL);
    cr_expect(strstr(err.msg, "sequence 1 is empty"), "%s", err.msg);
    it[0].n_seq = 1;
    uint32_t layer = 999;
    cr_expect_eq(xp_tree_batch_new(&b, m, it, 1, &layer, 1, false, NULL, 0, &err), XP_EINVAL);
    out[0] = (xp_tree_out){0, 2, true};
    cr_expect_eq(xp_tree_batch_new(&b, m, it, 1, NULL, 0, false, NULL, 0, &err), XP_EINVAL);
    cr_expect(strstr(err.msg, "position 2 of sequence 0 does not exist"), "%s", err.msg);
    out[0] = (xp_tree_out){0, 1, false};
    cr_expect_eq(xp_tree_batch_new(&b, m, it, 1, NULL, 0, false, NULL, 0, &err), XP_EINVAL);
    cr_expect(strstr(err.msg, "reads a row subset, and none was given"), "%s", err.msg);
    xp_model_close(m);
}
