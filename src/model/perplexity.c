/* Perplexity of the model on a token stream: the stream is cut into chunks of a fixed
 * length, each chunk runs as one sequence, and every position after the first of a
 * chunk is scored on how well it predicts the next token. The `perplexity` command and
 * the random-flip experiment both measure the model with it. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/model.h"

/* -log softmax(logits)[target], in double so a 151k-way sum loses nothing. */
static double nll(const float *logits, size_t n, int32_t target)
{
    float max = logits[0];
    for (size_t i = 1; i < n; i++)
        max = logits[i] > max ? logits[i] : max;
    double sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += exp((double)logits[i] - max);
    return log(sum) - ((double)logits[target] - max);
}

int xp_perplexity(xp_model *m, xp_path path, const int32_t *ids, size_t n_ids,
                  const xp_perplexity_opts *o, xp_perplexity_result *out, xp_err *err)
{
    memset(out, 0, sizeof *out);
    size_t chunk = o->chunk;
    if (chunk < 2)
        return xp_err_set(err, XP_EINVAL, "a perplexity chunk needs at least 2 tokens, not %zu",
                          chunk);
    if (chunk > m->shape.n_ctx)
        chunk = m->shape.n_ctx;
    size_t chunks = n_ids / chunk;
    if (chunks == 0)
        return xp_err_set(err, XP_EINVAL, "the text has %zu tokens, fewer than one chunk of %zu",
                          n_ids, chunk);
    if (o->max_chunks && chunks > o->max_chunks)
        chunks = o->max_chunks;
    size_t n_vocab = (size_t)m->shape.n_vocab;
    float *logits = malloc(chunk * n_vocab * sizeof *logits);
    uint8_t *want = malloc(chunk);
    if (!logits || !want) {
        free(logits);
        free(want);
        return xp_err_set(err, XP_ENOMEM, "out of memory for %zu x %zu logits", chunk, n_vocab);
    }
    memset(want, 1, chunk);
    want[chunk - 1] = 0; /* the last position has nothing left to predict */
    double total = 0;
    int rc = XP_OK;
    for (size_t c = 0; c < chunks && !rc; c++) {
        const int32_t *tokens = ids + c * chunk;
        xp_seq seq = {NULL, tokens, chunk, want};
        if ((rc = xp_forward(m, path, &seq, 1, logits, err)))
            break;
        for (size_t i = 0; i + 1 < chunk; i++)
            total += nll(logits + i * n_vocab, n_vocab, tokens[i + 1]);
        if (o->progress)
            o->progress(o->progress_ctx, c + 1, chunks);
    }
    free(logits);
    free(want);
    if (rc)
        return rc;
    out->chunk = chunk;
    out->chunks = chunks;
    out->scored = chunks * (chunk - 1);
    out->nll = total / (double)out->scored;
    out->perplexity = exp(out->nll);
    return XP_OK;
}
