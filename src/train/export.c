/* Export of a trained model as a Qwen3 Q1_0 GGUF with the vocabulary's tokenizer keys:
 * the norms in fp32, every matrix and the embedding quantised, the embedding rows of
 * tokens outside the corpus all zero (scale 0, so their logit is exactly 0, as in
 * training). */
#include "train/train.h"

#include <stdio.h>
#include <stdlib.h>

#include "core/alloc.h"

int xp_trainer_export(xp_trainer *t, const xp_vocab *v, const char *path, xp_err *err)
{
    if (v->n_tokens != t->s.n_vocab)
        return xp_err_set(err, XP_EINVAL, "export: the vocabulary has %zu tokens, the model "
                          "%llu rows", v->n_tokens, (unsigned long long)t->s.n_vocab);
    if (!t->o.quantise)
        return xp_err_set(err, XP_EINVAL, "export: a trainer without quantisation has no Q1_0 "
                          "model to write");
    xp_gguf_writer *w = xp_gguf_writer_new();
    uint8_t **data = xp_calloc(t->n_tens, sizeof *data);
    if (!w || !data) {
        xp_gguf_writer_free(w);
        free(data);
        return xp_err_set(err, XP_ENOMEM, "export: out of memory");
    }
    char desc[320], focus[96] = "";
    if (t->o.focus_steps)
        snprintf(focus, sizeof focus, " focus=%.64s:%u", t->o.focus_task, t->o.focus_steps);
    snprintf(desc, sizeof desc, "xorpatch train seed=%llu steps=%u batch=%u lr=%g%s: tiny "
             "quantisation-aware trained model, %zu trained embedding rows",
             (unsigned long long)t->o.seed, t->step, t->o.batch, (double)t->o.lr, focus,
             t->n_used);
    xp_shape s = t->s;
    int rc = xp_qwen3_write_metadata(w, &s, "xorpatch tiny-bonsai (trained Qwen3 Q1_0)", desc,
                                     err);
    if (!rc)
        rc = xp_vocab_write_gguf(v, w, err);
    for (size_t i = 0; i < t->n_tens && !rc; i++) {
        const xpt_tensor *x = &t->tens[i];
        int64_t ne[2] = {x->ne0, x->ne1};
        if (!x->quantised) {
            rc = xp_gguf_writer_add_tensor(w, x->name, 1, ne, XP_TYPE_F32, t->p + x->off, NULL,
                                           NULL, err);
            continue;
        }
        size_t row_bytes = (size_t)x->ne0 / XP_Q1_0_WEIGHTS * XP_Q1_0_BYTES;
        bool emb = x->off == t->emb;
        size_t rows = emb ? t->s.n_vocab : (size_t)x->ne1;
        /* untrained embedding rows stay all zero: scale 0, so their logit is exactly 0 */
        if (!(data[i] = xp_calloc(rows, row_bytes))) {
            rc = xp_err_set(err, XP_ENOMEM, "export: out of memory");
            break;
        }
        if (emb) {
            for (size_t r = 0; r < t->n_used; r++)
                xpt_quantise_tensor(t->p + x->off + r * (size_t)x->ne0, (size_t)x->ne0,
                                data[i] + (size_t)t->used[r] * row_bytes);
            ne[1] = (int64_t)rows;
        } else {
            xpt_quantise_tensor(t->p + x->off, x->n, data[i]);
        }
        rc = xp_gguf_writer_add_tensor(w, x->name, 2, ne, XP_TYPE_Q1_0, data[i], NULL, NULL,
                                       err);
    }
    if (!rc)
        rc = xp_gguf_writer_write(w, path, err);
    xp_gguf_writer_free(w);
    for (size_t i = 0; i < t->n_tens; i++)
        free(data[i]);
    free(data);
    return rc;
}
