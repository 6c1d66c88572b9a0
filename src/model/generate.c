/* Generation: prefill the prompt into a KV cache, then decode one token at a time with
 * greedy or seeded temperature / top-k / top-p sampling, until end of sequence, a stop
 * string or the token limit. Text is handed to the caller as it becomes final: bytes
 * that could still be the start of a stop string are held back until they cannot. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "model/kv.h"
#include "model/model.h"

typedef struct cand {
    float logit;
    int32_t id;
} cand;

static int by_logit_desc(const void *a, const void *b)
{
    const cand *x = a, *y = b;
    if (x->logit != y->logit)
        return x->logit > y->logit ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

static int32_t argmax(const float *logits, size_t n)
{
    size_t best = 0;
    for (size_t i = 1; i < n; i++)
        if (logits[i] > logits[best])
            best = i;
    return (int32_t)best;
}

int32_t xp_sample(const xp_sampler *s, const float *logits, size_t n_vocab, uint64_t *rng_state)
{
    if (s->temperature <= 0 || s->top_k == 1)
        return argmax(logits, n_vocab);
    cand *c = malloc(n_vocab * sizeof *c);
    if (!c)
        return argmax(logits, n_vocab);
    for (size_t i = 0; i < n_vocab; i++)
        c[i] = (cand){logits[i] / s->temperature, (int32_t)i};
    qsort(c, n_vocab, sizeof *c, by_logit_desc);
    size_t n = s->top_k > 0 && (size_t)s->top_k < n_vocab ? (size_t)s->top_k : n_vocab;
    /* softmax over the kept candidates, in descending order */
    double total = 0;
    double *p = malloc(n * sizeof *p);
    if (!p) {
        int32_t id = c[0].id;
        free(c);
        return id;
    }
    for (size_t i = 0; i < n; i++)
        total += p[i] = exp((double)(c[i].logit - c[0].logit));
    if (s->top_p > 0 && s->top_p < 1) {
        double cum = 0;
        size_t keep = 0;
        while (keep < n && cum < s->top_p * total)
            cum += p[keep++];
        n = keep ? keep : 1;
        total = cum > 0 ? cum : p[0];
    }
    xp_rng rng;
    xp_rng_seed(&rng, *rng_state);
    *rng_state = xp_rng_u64(&rng);
    double u = xp_rng_f64(&rng) * total, acc = 0;
    int32_t id = c[n - 1].id;
    for (size_t i = 0; i < n; i++) {
        acc += p[i];
        if (u < acc) {
            id = c[i].id;
            break;
        }
    }
    free(p);
    free(c);
    return id;
}

/* The text produced so far and how much of it was handed out. */
typedef struct text_state {
    char *buf;
    size_t len, cap, emitted;
} text_state;

static int append(text_state *t, const char *s, size_t n)
{
    if (t->len + n + 1 > t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 256;
        while (cap < t->len + n + 1)
            cap *= 2;
        char *b = realloc(t->buf, cap);
        if (!b)
            return XP_ENOMEM;
        t->buf = b;
        t->cap = cap;
    }
    memcpy(t->buf + t->len, s, n);
    t->len += n;
    t->buf[t->len] = '\0';
    return XP_OK;
}

/* Where the first stop string starts in the text, or len when none occurs. */
static size_t stop_at(const text_state *t, const char *const *stops)
{
    size_t at = t->len;
    for (size_t i = 0; stops && stops[i]; i++) {
        const char *hit = *stops[i] ? strstr(t->buf, stops[i]) : NULL;
        if (hit && (size_t)(hit - t->buf) < at)
            at = (size_t)(hit - t->buf);
    }
    return at;
}

/* How many final bytes could still begin a stop string, so must be held back. */
static size_t held_back(const text_state *t, const char *const *stops)
{
    size_t hold = 0;
    for (size_t i = 0; stops && stops[i]; i++) {
        size_t sl = strlen(stops[i]);
        for (size_t k = sl > 1 ? sl - 1 : 0; k > hold; k--)
            if (k <= t->len && memcmp(t->buf + t->len - k, stops[i], k) == 0) {
                hold = k;
                break;
            }
    }
    return hold;
}

static int emit(const xp_gen_opts *o, text_state *t, size_t upto, int32_t id)
{
    if (upto <= t->emitted)
        return 0;
    int stop = o->on_token ? o->on_token(o->ctx, id, t->buf + t->emitted, upto - t->emitted) : 0;
    t->emitted = upto;
    return stop;
}

int xp_generate(xp_model *m, const int32_t *prompt, size_t n_prompt, const xp_gen_opts *o,
                int32_t **out_ids, size_t *n_out, xp_err *err)
{
    *out_ids = NULL;
    *n_out = 0;
    if (n_prompt == 0)
        return xp_err_set(err, XP_EINVAL, "the prompt has no tokens");
    if (n_prompt >= m->shape.n_ctx)
        return xp_err_set(err, XP_EINVAL, "the prompt has %zu tokens; the model's context holds "
                          "%u", n_prompt, m->shape.n_ctx);
    size_t max_new = o->max_tokens;
    if (n_prompt + max_new > m->shape.n_ctx)
        max_new = m->shape.n_ctx - n_prompt;
    int32_t eos[3] = {-1, -1, -1};
    if (o->stop_at_eos && m->tok) {
        eos[0] = xp_tokenizer_find(m->tok, "<|endoftext|>");
        eos[1] = xp_tokenizer_find(m->tok, "<|im_end|>");
    }
    xp_kv *kv = NULL;
    float *logits = malloc(m->shape.n_vocab * sizeof *logits);
    int32_t *ids = malloc((max_new ? max_new : 1) * sizeof *ids);
    text_state text = {0};
    int rc = logits && ids ? xp_kv_new(&kv, m, n_prompt + max_new, err)
                           : xp_err_set(err, XP_ENOMEM, "out of memory");
    xp_seq seq = {kv, prompt, n_prompt, NULL};
    if (!rc)
        rc = xp_forward(m, o->path, &seq, 1, logits, err);
    uint64_t rng_state = o->sampler.seed;
    size_t n = 0;
    while (!rc && n < max_new) {
        int32_t id = xp_sample(&o->sampler, logits, m->shape.n_vocab, &rng_state);
        if (id == eos[0] || id == eos[1])
            break;
        ids[n++] = id;
        if (m->tok) {
            char *piece;
            size_t len;
            if ((rc = xp_detokenize(m->tok, &id, 1, &piece, &len, err)))
                break;
            rc = append(&text, piece, len) ? xp_err_set(err, XP_ENOMEM, "out of memory") : 0;
            free(piece);
            if (rc)
                break;
            size_t stop = stop_at(&text, o->stop_strings);
            if (stop < text.len) {
                emit(o, &text, stop, id);
                break;
            }
            if (emit(o, &text, text.len - held_back(&text, o->stop_strings), id))
                break;
        } else if (o->on_token && o->on_token(o->ctx, id, "", 0)) {
            break;
        }
        if (n == max_new)
            break;
        seq = (xp_seq){kv, &ids[n - 1], 1, NULL};
        rc = xp_forward(m, o->path, &seq, 1, logits, err);
    }
    if (!rc && stop_at(&text, o->stop_strings) == text.len)
        emit(o, &text, text.len, n ? ids[n - 1] : -1);
    free(text.buf);
    free(logits);
    xp_kv_free(kv);
    if (rc) {
        free(ids);
        return rc;
    }
    *out_ids = ids;
    *n_out = n;
    return XP_OK;
}
