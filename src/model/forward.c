/* xp_forward: checks a batch (token ids, cache room, context length), lends temporary
 * caches to sequences that keep none, and runs the chosen path. */
#include <stdlib.h>

#include "model/forward_paths.h"

size_t xp_forward_n_logits(const xp_seq *seqs, size_t n_seqs)
{
    size_t n = 0;
    for (size_t s = 0; s < n_seqs; s++)
        for (size_t i = 0; i < seqs[s].n_tokens; i++)
            n += seqs[s].logits_at ? seqs[s].logits_at[i] != 0 : i + 1 == seqs[s].n_tokens;
    return n;
}

static int check(const xp_model *m, const xp_seq *s, size_t idx, xp_err *err)
{
    for (size_t i = 0; i < s->n_tokens; i++)
        if (s->tokens[i] < 0 || (uint64_t)s->tokens[i] >= m->shape.n_vocab)
            return xp_err_set(err, XP_EINVAL, "sequence %zu, token %zu: id %d is not in the "
                              "vocabulary [0, %llu)", idx, i, s->tokens[i],
                              (unsigned long long)m->shape.n_vocab);
    size_t past = s->kv ? s->kv->len : 0, cap = s->kv ? s->kv->cap : m->shape.n_ctx;
    if (past + s->n_tokens > cap)
        return xp_err_set(err, XP_EINVAL, "sequence %zu: %zu + %zu tokens exceed the %s of %zu "
                          "positions", idx, past, s->n_tokens,
                          s->kv ? "cache" : "model's context", cap);
    return XP_OK;
}

int xp_forward(xp_model *m, xp_path path, const xp_seq *seqs, size_t n_seqs, float *logits,
               xp_err *err)
{
    int rc = XP_OK;
    for (size_t s = 0; s < n_seqs && !rc; s++)
        rc = check(m, &seqs[s], s, err);
    for (size_t s = 0; s < n_seqs && !rc && path == XP_PATH_PLAIN; s++)
        if (seqs[s].kv && seqs[s].kv->overlay)
            rc = xp_err_set(err, XP_EINVAL, "sequence %zu: overlays run on the fast path only", s);
    if (rc)
        return rc;
    xp_fwd_seq *fs = calloc(n_seqs ? n_seqs : 1, sizeof *fs);
    xp_kv **temp = calloc(n_seqs ? n_seqs : 1, sizeof *temp);
    if (!fs || !temp)
        rc = xp_err_set(err, XP_ENOMEM, "out of memory");
    for (size_t s = 0; s < n_seqs && !rc; s++) {
        fs[s] = (xp_fwd_seq){seqs[s].kv, seqs[s].tokens, seqs[s].n_tokens, seqs[s].logits_at};
        /* the fast path finishes each layer before the next: one layer of cache will do */
        size_t layers = path == XP_PATH_FAST ? 1 : m->shape.n_layer;
        if (!fs[s].kv && !(rc = xp_kv_new_layers(&temp[s], m, seqs[s].n_tokens, layers, err)))
            fs[s].kv = temp[s];
    }
    if (!rc)
        rc = path == XP_PATH_PLAIN ? xp_forward_plain(m, fs, n_seqs, logits, err)
                                   : xp_forward_fast(m, fs, n_seqs, logits, err);
    for (size_t s = 0; temp && s < n_seqs; s++)
        xp_kv_free(temp[s]);
    free(temp);
    free(fs);
    return rc;
}
