/* The two forward paths behind xp_forward. Both receive validated sequences whose
 * caches (the caller's, or temporary ones) have room for the new tokens, and write the
 * wanted logits in order. */
#ifndef XP_FORWARD_H
#define XP_FORWARD_H
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
#endif
