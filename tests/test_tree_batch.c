/* Token-tree batches, the search's evaluator: every output equals, bit for bit, the fast
 * path run on prefix + branch alone; so does a run over any subset of the trees, a run
 * restricted to some LM-head rows, a run on another thread count, and a run that starts
 * from a kept residual after a row, block or scale-bit flip at or above that layer. */
#include <omp.h>
#include <string.h>

#include "core/rng.h"
#include "model/model.h"
#include "model/tree_batch.h"
#include "testutil.h"
#include "xorpatch.h"

#define MAX_TREES 24 /* more outputs than one LM-head pass takes */

typedef struct trees {
    int n;
    xp_tree t[MAX_TREES];
    int32_t tok[MAX_TREES][3][9];
} trees;

static void random_trees(trees *tr, int n, xp_rng *r, uint64_t vocab)
{
    tr->n = n;
    for (int i = 0; i < n; i++) {
        for (int p = 0; p < 3; p++)
            for (int j = 0; j < 9; j++)
                tr->tok[i][p][j] = (int32_t)xp_rng_below(r, vocab);
        /* tree 0 has no branches, tree 1 one-token branches, the rest 0..5 tokens */
        size_t n0 = i == 0 ? 0 : i == 1 ? 1 : xp_rng_below(r, 6);
        size_t n1 = i == 0 ? 0 : i == 1 ? 1 : xp_rng_below(r, 6);
        size_t np = 1 + xp_rng_below(r, 8);
        /* some trees give outputs at several prefix positions (a shared answer start) */
        tr->t[i] = (xp_tree){tr->tok[i][0], np, {tr->tok[i][1], tr->tok[i][2]}, {n0, n1},
                             i % 3 == 2 ? 1 + xp_rng_below(r, np) : 0};
    }
}

/* Every output of every tree, by running prefix + branch alone through xp_forward. */
static float *reference(xp_model *m, const trees *tr, size_t *n_out)
{
    size_t V = xp_model_shape(m)->n_vocab, n = 0;
    for (int i = 0; i < tr->n; i++)
        n += (tr->t[i].prefix_outputs ? tr->t[i].prefix_outputs : 1) +
             (tr->t[i].n_branch[0] ? tr->t[i].n_branch[0] - 1 : 0) +
             (tr->t[i].n_branch[1] ? tr->t[i].n_branch[1] - 1 : 0);
    float *out = malloc(n * V * sizeof *out), *o = out;
    xp_err err = {0};
    for (int i = 0; i < tr->n; i++) {
        const xp_tree *t = &tr->t[i];
        float *tree_out = o;
        size_t k = t->prefix_outputs ? t->prefix_outputs : 1;
        for (int a = 0; a < 2; a++) {
            int32_t seq[20];
            size_t run = t->n_branch[a] ? t->n_branch[a] - 1 : 0, len = t->n_prefix + run;
            memcpy(seq, t->prefix, t->n_prefix * sizeof *seq);
            memcpy(seq + t->n_prefix, t->branch[a], run * sizeof *seq);
            uint8_t want[20] = {0};
            for (size_t j = t->n_prefix - k; j < len; j++)
                want[j] = 1;
            float *buf = malloc((run + k) * V * sizeof *buf);
            xp_seq s = {NULL, seq, len, want};
            cr_assert_eq(xp_forward(m, XP_PATH_FAST, &s, 1, buf, &err), XP_OK, "%s", err.msg);
            if (a == 0) { /* the prefix rows once, then branch 0's rows */
                memcpy(o, buf, (run + k) * V * sizeof *o);
                o += (run + k) * V;
            } else {
                cr_assert(memcmp(buf, tree_out, k * V * sizeof *buf) == 0);
                memcpy(o, buf + k * V, run * V * sizeof *o);
                o += run * V;
            }
            free(buf);
        }
    }
    *n_out = n;
    return out;
}

typedef struct collect {
    const size_t *sel;
    float *out;
    size_t *offset; /* where the outputs of sel[s] go */
    size_t width;
} collect;

/* Calls may come from several threads at once: each tree has its own place. */
static int store(void *ctx, size_t s, const float *outputs)
{
    collect *c = ctx;
    memcpy(c->out + c->offset[s] * c->width, outputs,
           (c->offset[s + 1] - c->offset[s]) * c->width * sizeof *outputs);
    return 0;
}

static float *run_batch(xp_tree_batch *b, const size_t *sel, size_t n_sel, uint32_t from,
                        size_t n_out, size_t width)
{
    size_t n = sel ? n_sel : xp_tree_batch_count(b);
    collect c = {sel, malloc(n_out * width * sizeof(float)), calloc(n + 1, sizeof(size_t)), width};
    for (size_t s = 0; s < n; s++)
        c.offset[s + 1] = c.offset[s] + xp_tree_batch_outputs(b, sel ? sel[s] : s);
    cr_assert_eq(c.offset[n], n_out);
    xp_err err = {0};
    cr_assert_eq(xp_tree_batch_run(b, sel, n_sel, from, store, &c, &err), XP_OK, "%s", err.msg);
    free(c.offset);
    return c.out;
}

Test(tree_batch, equals_each_sequence_alone_in_any_subset_and_row_choice, .timeout = 120)
{
    xp_model *m = xp_test_open_tiny();
    size_t V = xp_model_shape(m)->n_vocab;
    xp_rng r;
    xp_rng_seed(&r, 3);
    trees tr;
    random_trees(&tr, 10, &r, V);
    size_t n_out;
    float *ref = reference(m, &tr, &n_out);
    xp_tree_batch *b;
    xp_err err = {0};
    cr_assert_eq(xp_tree_batch_new(&b, m, tr.t, tr.n, NULL, 0, NULL, 0, &err), XP_OK, "%s",
                 err.msg);
    size_t first[MAX_TREES + 1] = {0};
    for (int i = 0; i < tr.n; i++)
        first[i + 1] = first[i] + xp_tree_batch_outputs(b, i);
    cr_assert_eq(first[tr.n], n_out);
    int threads[] = {1, 3};
    for (int ti = 0; ti < 2; ti++) {
        omp_set_num_threads(threads[ti]);
        float *all = run_batch(b, NULL, 0, 0, n_out, V);
        cr_expect(memcmp(all, ref, n_out * V * sizeof *all) == 0, "%d threads: batch differs "
                  "from each sequence alone", threads[ti]);
        free(all);
    }
    /* a subset, out of order and with a repeat */
    size_t sel[] = {5, 2, 6, 2, 0};
    size_t n_sel_out = 0;
    for (size_t i = 0; i < 5; i++)
        n_sel_out += xp_tree_batch_outputs(b, sel[i]);
    float *some = run_batch(b, sel, 5, 0, n_sel_out, V), *o = some;
    for (size_t i = 0; i < 5; i++) {
        size_t k = xp_tree_batch_outputs(b, sel[i]);
        cr_expect(memcmp(o, ref + first[sel[i]] * V, k * V * sizeof *o) == 0, "tree %zu", sel[i]);
        o += k * V;
    }
    free(some);
    xp_tree_batch_free(b);
    /* only some LM-head rows */
    int32_t rows[] = {17, 0, (int32_t)V - 1, 4242 % (int32_t)V};
    cr_assert_eq(xp_tree_batch_new(&b, m, tr.t, tr.n, NULL, 0, rows, 4, &err), XP_OK);
    cr_assert_eq(xp_tree_batch_width(b), 4);
    float *few = run_batch(b, NULL, 0, 0, n_out, 4);
    for (size_t p = 0; p < n_out; p++)
        for (int j = 0; j < 4; j++)
            cr_expect(memcmp(&few[p * 4 + j], &ref[p * V + (size_t)rows[j]], sizeof(float)) == 0,
                      "output %zu, row %d", p, rows[j]);
    free(few);
    xp_tree_batch_free(b);
    free(ref);
    xp_model_close(m);
}

/* Flips one thing in layer l of the model's map, by kind; again to undo. */
static void flip(xp_model *m, uint32_t l, int kind, int64_t index)
{
    xp_weight *w = kind == 0 ? &m->layers[l].gate : kind == 1 ? &m->layers[l].down
                                                           : &m->layers[l].wq;
    if (kind == 0)
        xp_q1_0_flip_row(w->data, w->ne0, index % w->ne1);
    else if (kind == 1)
        xp_q1_0_flip_block(w->data, index % (w->ne1 * (w->ne0 / 128)));
    else
        xp_q1_0_flip_scale_bit(w->data, index % (w->ne1 * (w->ne0 / 128)), 9);
}

Test(tree_batch, a_run_from_a_kept_layer_equals_a_full_recompute, .timeout = 120)
{
    xp_model *m = xp_test_open_tiny();
    const xp_shape *s = xp_model_shape(m);
    size_t V = s->n_vocab;
    cr_assert_geq(s->n_layer, 3);
    xp_rng r;
    xp_rng_seed(&r, 11);
    trees tr;
    random_trees(&tr, MAX_TREES, &r, V);
    uint32_t keep[] = {s->n_layer - 1, 1};
    /* a few LM-head rows keep it quick; the head is tested above */
    int32_t rows[64];
    for (int j = 0; j < 64; j++)
        rows[j] = (int32_t)xp_rng_below(&r, V);
    V = 64;
    xp_tree_batch *b, *fresh;
    xp_err err = {0};
    cr_assert_eq(xp_tree_batch_new(&b, m, tr.t, tr.n, keep, 2, rows, 64, &err), XP_OK);
    size_t n_out = 0;
    for (int i = 0; i < tr.n; i++)
        n_out += xp_tree_batch_outputs(b, i);
    free(run_batch(b, NULL, 0, 0, n_out, V));
    xp_tree_batch_commit(b);
    /* a flip of each kind at each layer: the run from that layer equals a fresh batch's
     * full run; a kept flip is committed and later runs build on it */
    for (uint32_t l = 0; l < s->n_layer; l++)
        for (int kind = 0; kind < 3; kind++) {
            int64_t index = (int64_t)xp_rng_below(&r, 1 << 20);
            flip(m, l, kind, index);
            float *inc = run_batch(b, NULL, 0, l, n_out, V);
            cr_assert_eq(xp_tree_batch_new(&fresh, m, tr.t, tr.n, NULL, 0, rows, 64, &err),
                         XP_OK);
            float *full = run_batch(fresh, NULL, 0, 0, n_out, V);
            cr_expect(memcmp(inc, full, n_out * V * sizeof *inc) == 0,
                      "layer %u, flip kind %d: incremental run differs", l, kind);
            size_t sel[] = {3, 1};
            size_t k = xp_tree_batch_outputs(b, 3) + xp_tree_batch_outputs(b, 1);
            float *sub = run_batch(b, sel, 2, l, k, V);
            size_t off3 = 0;
            for (int i = 0; i < 3; i++)
                off3 += xp_tree_batch_outputs(b, i);
            cr_expect(memcmp(sub, full + off3 * V,
                             xp_tree_batch_outputs(b, 3) * V * sizeof *sub) == 0,
                      "layer %u, kind %d: a subset from a kept layer differs", l, kind);
            free(sub);
            if (kind == 1) { /* keep it: rerun every tree, then commit */
                free(run_batch(b, NULL, 0, l, n_out, V));
                xp_tree_batch_commit(b);
            } else if (kind == 2) { /* a commit after a run over some trees keeps nothing */
                xp_tree_batch_commit(b);
                flip(m, l, kind, index);
                float *again = run_batch(b, NULL, 0, l, n_out, V);
                float *before = run_batch(fresh, NULL, 0, 0, n_out, V);
                cr_expect(memcmp(again, before, n_out * V * sizeof *again) == 0,
                          "layer %u: a commit after a subset run changed the kept layers", l);
                free(again);
                free(before);
            } else
                flip(m, l, kind, index);
            free(inc);
            free(full);
            xp_tree_batch_free(fresh);
        }
    xp_tree_batch_free(b);
    xp_model_close(m);
}

Test(tree_batch, bad_trees_are_refused)
{
    xp_model *m = xp_test_open_tiny();
    int32_t ok[] = {1, 2}, bad[] = {1, -4};
    xp_tree t[] = {{ok, 2, {bad, NULL}, {2, 0}, 0}};
    xp_tree_batch *b;
    xp_err err = {0};
    cr_expect_eq(xp_tree_batch_new(&b, m, t, 1, NULL, 0, NULL, 0, &err), XP_EINVAL);
    cr_expect(strstr(err.msg, "tree 0, branch token 1"), "%s", err.msg);
    t[0] = (xp_tree){ok, 0, {NULL, NULL}, {0, 0}, 0};
    cr_expect_eq(xp_tree_batch_new(&b, m, t, 1, NULL, 0, NULL, 0, &err), XP_EINVAL);
    cr_expect(strstr(err.msg, "prefix is empty"), "%s", err.msg);
    uint32_t layer = 999;
    t[0] = (xp_tree){ok, 2, {NULL, NULL}, {0, 0}, 0};
    cr_expect_eq(xp_tree_batch_new(&b, m, t, 1, &layer, 1, NULL, 0, &err), XP_EINVAL);
    t[0] = (xp_tree){ok, 2, {NULL, NULL}, {0, 0}, 3};
    cr_expect_eq(xp_tree_batch_new(&b, m, t, 1, NULL, 0, NULL, 0, &err), XP_EINVAL);
    cr_expect(strstr(err.msg, "3 prefix outputs"), "%s", err.msg);
    xp_model_close(m);
}
