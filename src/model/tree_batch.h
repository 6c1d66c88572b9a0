/* Token sequences evaluated again and again while the weights change, as a search does.
 * An item (a probe) has sequences (its prompt followed by each answer) and asks for
 * outputs at some of their positions. All sequences of all items form one token trie:
 * a run computes every distinct prefix once, whichever items share it, and each other
 * sequence continues it through a cache fork. The tokens form one packed batch; the
 * residual stream is kept at chosen layers, so that a change in layer L recomputes from
 * the nearest kept layer at or below L (from L's MLP, when only that changed); and an
 * output is either every LM-head row or
 * only a fixed subset of rows. Every output is bit-identical to running its sequence
 * alone with xp_forward (fast path), whatever else is run with it. */
#ifndef XP_TREE_BATCH_H
#define XP_TREE_BATCH_H
#include "xorpatch.h"

typedef struct xp_tree_seq {
    const int32_t *tok; /* every token is run: at least one */
    size_t n;
} xp_tree_seq;

/* The final hidden state at position pos of the item's sequence seq, through the LM
 * head: every vocabulary row (full), or the batch's row subset only. */
typedef struct xp_tree_out {
    uint32_t seq, pos;
    bool full;
} xp_tree_out;

typedef struct xp_tree_item {
    const xp_tree_seq *seq;
    size_t n_seq;
    const xp_tree_out *out;
    size_t n_out;
} xp_tree_item;

typedef struct xp_tree_batch xp_tree_batch;

/* Packs the items (copied). ckpt: the layers at which to keep the residual, any order,
 * and with mlp also their mid-points and MLP activations (for XP_CHANGE_FFN_ROW and
 * XP_CHANGE_DOWN); rows: the row subset (n_rows ids, copied, in this order) that outputs not marked full
 * read; NULL when every output is full. */
int xp_tree_batch_new(xp_tree_batch **out, xp_model *m, const xp_tree_item *items, size_t n,
                      const uint32_t *ckpt, size_t n_ckpt, bool mlp, const int32_t *rows,
                      size_t n_rows, xp_err *err);
void xp_tree_batch_free(xp_tree_batch *b);

size_t xp_tree_batch_count(const xp_tree_batch *b); /* items */
size_t xp_tree_batch_width(const xp_tree_batch *b); /* n_rows: values per subset output */
/* Tokens a run over the items sel[0..n_sel) computes (every item when sel is NULL). */
size_t xp_tree_batch_tokens(xp_tree_batch *b, const size_t *sel, size_t n_sel);

/* Receives the outputs of item sel[s] (of item s when sel is NULL), valid during the
 * call: its full outputs in their order, n_vocab values each, and its subset outputs in
 * their order, xp_tree_batch_width values each. Calls for different items may run at the
 * same time on different threads. A non-zero return stops the run and is returned. */
typedef int (*xp_tree_out_fn)(void *ctx, size_t s, const float *full, const float *subset);

/* What changed in the weights since the last commit: nothing below `layer`; in that
 * layer anything (XP_CHANGE_LAYER), only one row of the gate or up projection
 * (XP_CHANGE_FFN_ROW: row `row`), or only the down projection (XP_CHANGE_DOWN). An MLP
 * change starts the run at the layer's MLP when that layer's mid-point and activation
 * are kept: the gate or up row changes one column of the activation, and nothing else
 * of the layer before its down projection. */
enum { XP_CHANGE_LAYER, XP_CHANGE_FFN_ROW, XP_CHANGE_DOWN };
typedef struct xp_tree_change {
    uint32_t layer;
    int kind;
    int64_t row;
} xp_tree_change;

/* Runs the items sel[0..n_sel) (every item when sel is NULL; repeats allowed) with the
 * weights as they are now, which the caller promises differ from the last committed ones
 * only as `change` says (NULL: nothing is assumed), and hands each item's outputs to fn.
 * The LM head runs over a few items at a time, so the full vocabulary's logits of a
 * large batch never have to fit in memory at once. */
int xp_tree_batch_run(xp_tree_batch *b, const size_t *sel, size_t n_sel,
                      const xp_tree_change *change, xp_tree_out_fn fn, void *ctx, xp_err *err);
/* Takes the weights of the last run as the committed ones: when that run was over every
 * item, the residuals it computed become the kept ones; after a run over some items the
 * kept residuals are forgotten, and the next run starts from scratch. */
void xp_tree_batch_commit(xp_tree_batch *b);
#endif
