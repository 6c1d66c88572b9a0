/* Greedy generation for evaluation, many prompts at once: every prompt gets a KV cache,
 * the prompts are prefilled as one packed batch, and each decode step is one forward
 * call with one single-token sequence per unfinished prompt, so a weight row is read
 * once per step for all of them. The fast path's batch invariance makes each text
 * exactly what xp_generate would produce for its prompt alone. */
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "xorpatch/probe.h"

/* Prompts per chunk: bounded by the caches' memory and by the logits rows of a step
 * (600 KB each on Qwen3). A decode step reads every weight once for the whole chunk, so
 * bigger chunks are faster: 4 GiB of caches hold 75 verbatim probes (230 positions) of
 * the 1.7B model, 128 rows of logits are 78 MB. */
#define KV_BUDGET ((size_t)4 << 30)
#define MAX_CHUNK 128

typedef struct gen_state {
    xp_kv *kv;
    int32_t *ids;
    size_t n_ids, cap_ids;
    char *text;
    size_t len;
    bool done;
} gen_state;

static int append_text(gen_state *g, const char *s, size_t n)
{
    char *t = realloc(g->text, g->len + n + 1);
    if (!t)
        return XP_ENOMEM;
    memcpy(t + g->len, s, n);
    g->text = t;
    g->len += n;
    t[g->len] = '\0';
    return XP_OK;
}

/* Takes the step's token: ends the sequence at end of text, a newline (when asked) or
 * the token limit; otherwise keeps the token and its text. */
static int take(xp_model *m, gen_state *g, int32_t id, const int32_t eos[2], size_t max_new,
                bool stop_newline, xp_err *err)
{
    if (id == eos[0] || id == eos[1] || max_new == 0) {
        g->done = true;
        return XP_OK;
    }
    g->ids[g->n_ids++] = id;
    char *piece;
    size_t len;
    int rc = xp_detokenize(xp_model_tokenizer(m), &id, 1, &piece, &len, err);
    if (rc)
        return rc;
    char *nl = stop_newline ? memchr(piece, '\n', len) : NULL;
    if (append_text(g, piece, nl ? (size_t)(nl - piece) : len))
        rc = xp_err_set(err, XP_ENOMEM, "out of memory");
    free(piece);
    g->done = nl || g->n_ids == max_new;
    return rc;
}

static int32_t argmax(const float *row, size_t V)
{
    size_t b = 0;
    for (size_t i = 1; i < V; i++)
        b = row[i] > row[b] ? i : b;
    return (int32_t)b;
}

static int run_chunk(xp_model *m, const int32_t *const *prompts, const size_t *n_prompts,
                     size_t n, const xp_batch_gen_opts *o, gen_state *g, float *logits,
                     xp_seq *seqs, size_t *done_total, size_t total, xp_err *err)
{
    const xp_shape *sh = xp_model_shape(m);
    const xp_tokenizer *tok = xp_model_tokenizer(m);
    int32_t eos[2] = {xp_tokenizer_find(tok, "<|endoftext|>"), xp_tokenizer_find(tok, "<|im_end|>")};
    size_t V = sh->n_vocab, *slot = xp_calloc(n, sizeof *slot);
    int rc = slot ? XP_OK : xp_err_set(err, XP_ENOMEM, "out of memory");
    for (size_t i = 0; !rc && i < n; i++) {
        size_t max_new = o->max_tokens;
        if (n_prompts[i] + max_new > sh->n_ctx)
            max_new = sh->n_ctx - n_prompts[i];
        g[i].cap_ids = max_new;
        if (!(g[i].ids = xp_calloc(max_new, sizeof *g[i].ids)) || !(g[i].text = calloc(1, 1)))
            rc = xp_err_set(err, XP_ENOMEM, "out of memory");
        if (!rc)
            rc = xp_kv_new(&g[i].kv, m, n_prompts[i] + max_new, err);
        seqs[i] = (xp_seq){g[i].kv, prompts[i], n_prompts[i], NULL};
    }
    if (!rc)
        rc = xp_forward(m, XP_PATH_FAST, seqs, n, logits, err);
    size_t active = n;
    for (size_t i = 0; i < n; i++)
        slot[i] = i;
    while (!rc && active) {
        size_t still = 0;
        for (size_t k = 0; !rc && k < active; k++) {
            gen_state *s = &g[slot[k]];
            rc = take(m, s, argmax(logits + k * V, V), eos, s->cap_ids, o->stop_newline, err);
            if (!rc && !s->done) {
                seqs[still] = (xp_seq){s->kv, &s->ids[s->n_ids - 1], 1, NULL};
                slot[still++] = slot[k];
            } else if (!rc) {
                ++*done_total;
            }
        }
        if (o->progress)
            o->progress(o->progress_ctx, *done_total, total);
        active = still;
        if (!rc && active)
            rc = xp_forward(m, XP_PATH_FAST, seqs, active, logits, err);
    }
    free(slot);
    return rc;
}

int xp_generate_batch(xp_model *m, const int32_t *const *prompts, const size_t *n_prompts,
                      size_t n, const xp_batch_gen_opts *o, char **texts, xp_err *err)
{
    const xp_shape *sh = xp_model_shape(m);
    for (size_t i = 0; i < n; i++)
        texts[i] = NULL;
    if (!xp_model_tokenizer(m))
        return xp_err_set(err, XP_EINVAL, "generation needs a tokenizer; the model has none");
    for (size_t i = 0; i < n; i++)
        if (n_prompts[i] == 0 || n_prompts[i] >= sh->n_ctx)
            return xp_err_set(err, XP_EINVAL, "prompt %zu has %zu tokens; it needs at least one "
                              "and the model's context holds %u", i, n_prompts[i], sh->n_ctx);
    size_t pos_bytes = (size_t)sh->n_layer * 2 * sh->n_head_kv * sh->head_dim * sizeof(float);
    gen_state *g = xp_calloc(n, sizeof *g);
    size_t chunk_max = n < MAX_CHUNK ? n : MAX_CHUNK;
    float *logits = xp_calloc(chunk_max ? chunk_max : 1, sh->n_vocab * sizeof *logits);
    xp_seq *seqs = xp_calloc(chunk_max ? chunk_max : 1, sizeof *seqs);
    int rc = g && logits && seqs ? XP_OK : xp_err_set(err, XP_ENOMEM, "out of memory");
    size_t done = 0;
    for (size_t i = 0; !rc && i < n;) {
        size_t j = i, bytes = 0;
        while (j < n && j - i < MAX_CHUNK) {
            size_t need = (n_prompts[j] + o->max_tokens) * pos_bytes;
            if (j > i && bytes + need > KV_BUDGET)
                break;
            bytes += need;
            j++;
        }
        rc = run_chunk(m, prompts + i, n_prompts + i, j - i, o, g + i, logits, seqs, &done, n,
                       err);
        for (size_t k = i; k < j; k++) {
            xp_kv_free(g[k].kv);
            g[k].kv = NULL;
        }
        i = j;
    }
    for (size_t i = 0; g && i < n; i++) {
        free(g[i].ids);
        xp_kv_free(g[i].kv);
        if (rc)
            free(g[i].text);
        else
            texts[i] = g[i].text;
    }
    free(g), free(logits), free(seqs);
    return rc;
}

int xp_probe_generate(xp_model *m, const xp_probe_set *s, const xp_probe_tokens *pt,
                      size_t max_tokens, xp_progress_fn progress, void *progress_ctx,
                      char **texts, xp_err *err)
{
    const int32_t **prompts = xp_calloc(s->n, sizeof *prompts);
    size_t *lens = xp_calloc(s->n, sizeof *lens);
    int rc = prompts && lens ? XP_OK : xp_err_set(err, XP_ENOMEM, "out of memory");
    for (size_t i = 0; !rc && i < s->n; i++) {
        prompts[i] = pt[i].prompt;
        lens[i] = pt[i].n_prompt;
    }
    xp_batch_gen_opts o = {max_tokens ? max_tokens : s->max_tokens, s->stop_newline, progress,
                           progress_ctx};
    if (!rc && (rc = xp_generate_batch(m, prompts, lens, s->n, &o, texts, err)))
        xp_err_wrap(err, "%s", s->path);
    free(prompts);
    free(lens);
    return rc;
}
