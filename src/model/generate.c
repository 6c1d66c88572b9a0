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
    for (size_t i = 0; t->buf && stops && stops[i]; i++) {
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

struct xp_decoder {
    const xp_model *m;
    xp_gen_opts o;
    size_t max_new, n;
    int32_t eos[2], last;
    text_state text;
    uint64_t rng_state;
    int finish; /* enum xp_finish */
};

int xp_decoder_new(xp_decoder **out, const xp_model *m, size_t n_prompt, const xp_gen_opts *o,
                   xp_err *err)
{
    *out = NULL;
    if (n_prompt == 0)
        return xp_err_set(err, XP_EINVAL, "the prompt has no tokens");
    if (n_prompt >= m->shape.n_ctx)
        return xp_err_set(err, XP_EINVAL,
                          "the prompt has %zu tokens; the model's context holds "
                          "%u",
                          n_prompt, m->shape.n_ctx);
    xp_decoder *d = calloc(1, sizeof *d);
    if (!d)
        return xp_err_set(err, XP_ENOMEM, "out of memory");
    d->m = m;
    d->o = *o;
    d->max_new = o->max_tokens;
    if (n_prompt + d->max_new > m->shape.n_ctx)
        d->max_new = m->shape.n_ctx - n_prompt;
    d->eos[0] = d->eos[1] = -1;
    if (o->stop_at_eos && m->tok) {
        d->eos[0] = xp_tokenizer_find(m->tok, "<|endoftext|>");
        d->eos[1] = xp_tokenizer_find(m->tok, "<|im_end|>");
    }
    d->last = -1;
    d->rng_state = o->sampler.seed;
    d->finish = d->max_new ? XP_FINISH_NONE : XP_FINISH_LENGTH;
    *out = d;
    return XP_OK;
}

void xp_decoder_free(xp_decoder *d)
{
    if (!d)
        return;
    free(d->text.buf);
    free(d);
}

size_t xp_decoder_max_new(const xp_decoder *d) { return d->max_new; }
size_t xp_decoder_tokens(const xp_decoder *d) { return d->n; }
int xp_decoder_finish(const xp_decoder *d) { return d->finish; }

int32_t xp_decoder_sample(xp_decoder *d, const float *logits)
{
    return xp_sample(&d->o.sampler, logits, d->m->shape.n_vocab, &d->rng_state);
}

/* The end of the text: what is not held back by a stop string goes out. */
static void flush(xp_decoder *d)
{
    if (stop_at(&d->text, d->o.stop_strings) == d->text.len)
        emit(&d->o, &d->text, d->text.len, d->last);
}

int xp_decoder_take(xp_decoder *d, int32_t id, xp_err *err)
{
    if (d->finish)
        return XP_OK;
    if (id == d->eos[0] || id == d->eos[1]) {
        d->finish = XP_FINISH_STOP;
        flush(d);
        return XP_OK;
    }
    d->n++;
    d->last = id;
    if (d->m->tok) {
        char *piece;
        size_t len;
        int rc = xp_detokenize(d->m->tok, &id, 1, &piece, &len, err);
        if (rc)
            return rc;
        rc = append(&d->text, piece, len);
        free(piece);
        if (rc)
            return xp_err_set(err, XP_ENOMEM, "out of memory");
        size_t stop = stop_at(&d->text, d->o.stop_strings);
        if (stop < d->text.len) {
            emit(&d->o, &d->text, stop, id);
            d->finish = XP_FINISH_STOP;
            return XP_OK;
        }
        if (emit(&d->o, &d->text, d->text.len - held_back(&d->text, d->o.stop_strings), id))
            d->finish = XP_FINISH_STOP;
    } else if (d->o.on_token && d->o.on_token(d->o.ctx, id, "", 0)) {
        d->finish = XP_FINISH_STOP;
    }
    if (!d->finish && d->n == d->max_new)
        d->finish = XP_FINISH_LENGTH;
    if (d->finish)
        flush(d);
    return XP_OK;
}

int xp_generate(xp_model *m, const int32_t *prompt, size_t n_prompt, const xp_gen_opts *o,
                int32_t **out_ids, size_t *n_out, xp_err *err)
{
    *out_ids = NULL;
    *n_out = 0;
    xp_decoder *d;
    int rc = xp_decoder_new(&d, m, n_prompt, o, err);
    if (rc)
        return rc;
    size_t max_new = d->max_new;
    xp_kv *kv = NULL;
    float *logits = malloc(m->shape.n_vocab * sizeof *logits);
    int32_t *ids = malloc((max_new ? max_new : 1) * sizeof *ids);
    rc = logits && ids ? xp_kv_new(&kv, m, n_prompt + max_new, err)
                       : xp_err_set(err, XP_ENOMEM, "out of memory");
    xp_seq seq = {kv, prompt, n_prompt, NULL};
    if (!rc && max_new)
        rc = xp_forward(m, o->path, &seq, 1, logits, err);
    size_t n = 0;
    while (!rc && !d->finish) {
        int32_t id = xp_decoder_sample(d, logits);
        if ((rc = xp_decoder_take(d, id, err)) || d->n == n)
            break; /* an error, or the end of sequence */
        ids[n++] = id;
        if (d->finish)
            break;
        seq = (xp_seq){kv, &ids[n - 1], 1, NULL};
        rc = xp_forward(m, o->path, &seq, 1, logits, err);
    }
    xp_decoder_free(d);
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
