/* Token trees evaluated again and again while the weights change, as a search does. A
 * tree is a prefix with up to two branches (a probe's prompt and its two answers): the
 * prefix is computed once and each branch continues it through a cache fork. All trees
 * form one packed batch built once; the residual stream is kept at chosen layers so that
 * a change in layer L recomputes from the nearest kept layer at or below L; and only the
 * LM-head rows a metric needs are computed. Every output is bit-identical to evaluating
 * prefix + branch on its own with xp_forward (fast path), whatever else is run with it. */
#ifndef XP_TREE_BATCH_H
#define XP_TREE_BATCH_H
#include "xorpatch.h"

typedef struct xp_tree {
    const int32_t *prefix; /* at least one token */
    size_t n_prefix;
    const int32_t *branch[2];
    size_t n_branch[2];    /* 0: no branch */
    size_t prefix_outputs; /* the prefix's last positions that give outputs (0 means 1) */
} xp_tree;

typedef struct xp_tree_batch xp_tree_batch;

/* Packs the trees (copied). ckpt: the layers at which to keep the residual, any order;
 * rows: NULL for every vocabulary row at each output position, else only these ids
 * (n_rows of them, copied) in this order. */
int xp_tree_batch_new(xp_tree_batch **out, xp_model *m, const xp_tree *trees, size_t n,
                      const uint32_t *ckpt, size_t n_ckpt, const int32_t *rows, size_t n_rows,
                      xp_err *err);
void xp_tree_batch_free(xp_tree_batch *b);

size_t xp_tree_batch_count(const xp_tree_batch *b); /* trees */
/* The output positions of tree i, in order: the prefix's last prefix_outputs tokens
 * (the last one predicts each branch's first token), then branch 0's tokens but its
 * last, then branch 1's likewise (token j's row predicts token j + 1). A branch's last
 * token is never run. */
size_t xp_tree_batch_outputs(const xp_tree_batch *b, size_t tree);
/* Values per output position: n_vocab, or n_rows when rows were given. */
size_t xp_tree_batch_width(const xp_tree_batch *b);
/* Tokens run for the trees sel[0..n_sel) (every tree when sel is NULL). */
size_t xp_tree_batch_tokens(const xp_tree_batch *b, const size_t *sel, size_t n_sel);

/* Receives the outputs of the tree sel[s] (of tree s when sel is NULL): its
 * xp_tree_batch_outputs rows of xp_tree_batch_width values, valid during the call.
 * Calls for different trees may run at the same time on different threads. A non-zero
 * return stops the run and is returned. */
typedef int (*xp_tree_out_fn)(void *ctx, size_t s, const float *outputs);

/* Runs the trees sel[0..n_sel) (every tree when sel is NULL) with the weights as they are
 * now, which the caller promises equal the last committed ones below layer `from`
 * (0: nothing is assumed), and hands each tree's outputs to fn in the order of sel. The
 * LM head runs over a few trees at a time, so the full vocabulary's logits of a large
 * batch never have to fit in memory at once. */
int xp_tree_batch_run(xp_tree_batch *b, const size_t *sel, size_t n_sel, uint32_t from,
                      xp_tree_out_fn fn, void *ctx, xp_err *err);
/* Takes the weights of the last run as the committed ones, if that run was over every
 * tree: the residuals it computed become the kept ones. After a run over some trees it
 * keeps nothing. */
void xp_tree_batch_commit(xp_tree_batch *b);
#endif
