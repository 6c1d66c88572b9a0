/* The two forward paths behind xp_forward. Both receive validated sequences whose
 * caches (the caller's, or temporary ones) have room for the new tokens, and write the
 * wanted logits in order. */
#ifndef XP_FORWARD_PATHS_H
#define XP_FORWARD_PATHS_H
#include "model/kv.h"
#include "model/model.h"

typedef struct xp_fwd_seq {
    xp_kv *kv;            /* never NULL here */
    const int32_t *tokens;
    size_t n_tokens;
    const uint8_t *logits_at; /* NULL: last token only */
} xp_fwd_seq;

static inline bool xp_fwd_wants(const xp_fwd_seq *s, size_t i)
{
    return s->logits_at ? s->logits_at[i] != 0 : i + 1 == s->n_tokens;
}

int xp_forward_plain(xp_model *m, const xp_fwd_seq *seqs, size_t n, float *logits, xp_err *err);
int xp_forward_fast(xp_model *m, const xp_fwd_seq *seqs, size_t n, float *logits, xp_err *err);

/* The fast path in stages, for callers that pack their own batch (tree_batch.c): token t
 * of the batch has an id, a position and a cache; `forks` copy a prefix of one cache into
 * another before each layer's attention, so a sequence can continue another's prefix
 * without recomputing it. x holds the residual stream, [T][n_embd]. */
typedef struct xp_kv_fork {
    xp_kv *dst;
    const xp_kv *src;
    size_t n;
} xp_kv_fork;

typedef struct xp_fast_batch {
    size_t T;
    int32_t *tok;
    size_t *pos;
    xp_kv **kv;
    const xp_kv_fork *forks;
    size_t n_forks;
    const size_t *out;  /* the tokens whose final residual is read, ascending (NULL: all);
                           the others stop after the last layer's keys and values */
    size_t n_out;
    float *x, *xb, *q, *k, *v, *att, *o, *gate, *cos_v, *sin_v; /* gate: the activation */
    xp_qact qa;
} xp_fast_batch;

/* Scratch for T tokens (tok, pos and kv are the caller's to fill). */
int xp_fast_batch_alloc(const xp_shape *s, size_t T, xp_fast_batch *b);
void xp_fast_batch_free(xp_fast_batch *b);
/* Rotation angles of every token's position; then x = the tokens' embeddings. */
void xp_fast_angles(const xp_model *m, xp_fast_batch *b);
void xp_fast_embed(const xp_model *m, xp_fast_batch *b);
/* What a run keeps of layer l, where given ([T][n_embd] or [T][n_ff]): x as it enters,
 * x after attention (the mid-point), and the MLP activation silu(gate) * up. */
typedef struct xp_fast_keep {
    float *x, *mid, *act;
} xp_fast_keep;
/* Layers [from, n_layer) on x, keeping keep[l] (NULL: nothing). at_down: layer `from`
 * starts at its down projection, with x its mid-point and gate its activation. With
 * b->out, x is final for those tokens only. */
int xp_fast_layers(const xp_model *m, xp_fast_batch *b, uint32_t from, bool at_down,
                   const xp_fast_keep *keep);
/* With x layer l's mid-point and gate its activation, recomputes column `row` of the
 * activation after a change in that row of the gate or up projection: the rest of the
 * activation cannot change, so this is all of layer l's MLP input side that must be
 * redone, and it gives the bits a full recompute gives. */
int xp_fast_ffn_row(const xp_model *m, xp_fast_batch *b, uint32_t l, int64_t row);
/* Final norm and LM head for the n_at tokens `at`: logits[i][j] for row rows[j] (n_rows
 * of them), or every row of the vocabulary when rows is NULL. */
int xp_fast_head(const xp_model *m, xp_fast_batch *b, const size_t *at, size_t n_at,
                 const int32_t *rows, size_t n_rows, float *logits);

/* The patch overlays' hooks (overlay.c), one call after each base product: a product by
 * w (y[i * ldy + r] for qa's token row i, whose sequence's cache is kv[at ? at[i] : i]),
 * the MLP activation of layer L (after both its gate and up products), the embeddings. */
void xp_overlay_product(const xp_weight *w, xp_kv *const *kv, const size_t *at, const xp_qact *qa,
                        float *y, size_t ldy);
void xp_overlay_activation(const xp_layer *L, xp_fast_batch *b);
void xp_overlay_embed(const xp_model *m, xp_fast_batch *b);
#endif
