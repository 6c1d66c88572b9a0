/* The engine: one thread runs every request in one batch of the fast path. Between two
 * decode steps waiting requests join (their whole prompt is the step's part for them),
 * finished and cancelled ones leave and free their slot; each sequence's cache carries
 * the overlay of its patch, so one step holds sequences of any patches over the one
 * copy of the base. The fast path's logits of a sequence do not depend on what else is
 * in the batch, and each request samples and stops with its own xp_decoder, so a greedy
 * request gives exactly the tokens `generate --patch` gives for it alone. */
#include <omp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/lse.h"
#include "xorpatch/serve.h"

struct xp_gen {
    atomic_int refs;
    atomic_bool cancel;
    struct xp_gen *next; /* in the queue */
    int32_t *prompt;
    size_t n_prompt;
    xp_served *model;
    xp_gen_opts opts;
    char **stop;
    bool logprobs;
    size_t top;
    xp_gen_callbacks cb;
    /* while it runs (engine thread only) */
    xp_kv *kv;
    xp_decoder *dec;
    int32_t last;
    bool prefilled;
    size_t n_new;
    xp_gen_result res;
    /* tokens sampled since the last event */
    size_t n_pend, cap_pend;
    int32_t *pend_ids;
    float *pend_lp;
    int32_t *pend_top;
    float *pend_top_lp;
};

typedef struct model_count {
    char *id;
    uint64_t n;
} model_count;

#define RATE_STEPS 64

struct xp_engine {
    xp_model *m;
    xp_engine_opts o;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t wake, idle;
    bool stop, draining;
    xp_gen *head, *tail; /* waiting */
    size_t n_queued;
    xp_gen **slots;
    size_t n_running;
    xp_engine_stats st;
    model_count *counts;
    size_t n_counts;
    double rate_t[RATE_STEPS];
    size_t rate_n[RATE_STEPS], rate_at;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

void xp_gen_release(xp_gen *g)
{
    if (!g || atomic_fetch_sub(&g->refs, 1) != 1)
        return;
    for (char **s = g->stop; s && *s; s++)
        free(*s);
    free(g->stop);
    free(g->prompt);
    xp_served_release(g->model);
    xp_kv_free(g->kv);
    xp_decoder_free(g->dec);
    free(g->pend_ids), free(g->pend_lp), free(g->pend_top), free(g->pend_top_lp);
    free(g);
}

void xp_gen_cancel(xp_gen *g) { atomic_store(&g->cancel, true); }

/* The decoder's text: handed on with the tokens sampled since the last event. */
static int on_token(void *ctx, int32_t id, const char *text, size_t len)
{
    xp_gen *g = ctx;
    xp_gen_event ev = {text,       len,         g->n_pend,      g->pend_ids,
                       g->pend_lp, g->pend_top, g->pend_top_lp, g->top};
    int stop = g->cb.on_text ? g->cb.on_text(g->cb.ctx, &ev) : 0;
    g->n_pend = 0;
    if (stop)
        atomic_store(&g->cancel, true);
    return stop;
}

/* Room for one more pending token (text held back by a stop string keeps several). */
static bool pending_room(xp_gen *g)
{
    if (g->n_pend < g->cap_pend)
        return true;
    size_t cap = g->cap_pend ? 2 * g->cap_pend : 8, t = g->top ? g->top : 1;
    int32_t *ids = realloc(g->pend_ids, cap * sizeof *ids);
    g->pend_ids = ids ? ids : g->pend_ids;
    float *lp = ids ? realloc(g->pend_lp, cap * sizeof *lp) : NULL;
    g->pend_lp = lp ? lp : g->pend_lp;
    int32_t *top = lp ? realloc(g->pend_top, cap * t * sizeof *top) : NULL;
    g->pend_top = top ? top : g->pend_top;
    float *tlp = top ? realloc(g->pend_top_lp, cap * t * sizeof *tlp) : NULL;
    g->pend_top_lp = tlp ? tlp : g->pend_top_lp;
    if (tlp)
        g->cap_pend = cap;
    return tlp != NULL;
}

/* The token's log-probability and the top alternatives, from the raw logits. */
static void record_logprobs(xp_gen *g, const float *logits, size_t V, int32_t id)
{
    size_t k = g->n_pend;
    g->pend_ids[k] = id;
    g->n_pend++;
    if (!g->logprobs)
        return;
    double lse = xp_log_sum_exp(logits, V);
    g->pend_lp[k] = (float)(logits[id] - lse);
    int32_t *top = g->pend_top + k * g->top;
    float *tlp = g->pend_top_lp + k * g->top;
    size_t kept = 0; /* the top few in one pass, highest first (ties: the lower id) */
    for (size_t i = 0; i < V && g->top; i++) {
        if (kept == g->top && logits[i] <= logits[top[kept - 1]])
            continue;
        size_t at = kept < g->top ? kept++ : kept - 1;
        while (at > 0 && logits[i] > logits[top[at - 1]]) {
            top[at] = top[at - 1];
            at--;
        }
        top[at] = (int32_t)i;
    }
    for (size_t j = 0; j < kept; j++)
        tlp[j] = (float)(logits[top[j]] - lse);
}

int xp_engine_submit(xp_engine *e, const xp_gen_request *rq, const xp_gen_callbacks *cb,
                     xp_gen **out, xp_err *err)
{
    *out = NULL;
    size_t ctx = e->o.ctx;
    if (rq->n_prompt == 0)
        return xp_err_set(err, XP_EINVAL, "the prompt has no tokens");
    if (rq->n_prompt >= ctx)
        return xp_err_set(err, XP_EINVAL, "the prompt has %zu tokens; the context holds %zu",
                          rq->n_prompt, ctx);
    xp_gen *g = calloc(1, sizeof *g);
    if (!g)
        return xp_err_set(err, XP_ENOMEM, "out of memory");
    atomic_init(&g->refs, 2); /* the submitter's and the engine's */
    atomic_init(&g->cancel, false);
    size_t n_stop = 0;
    while (rq->stop && rq->stop[n_stop])
        n_stop++;
    size_t max_new = rq->max_tokens < ctx - rq->n_prompt ? rq->max_tokens : ctx - rq->n_prompt;
    g->top = rq->logprobs
                 ? (rq->top_logprobs < XP_TOP_LOGPROBS_MAX ? rq->top_logprobs : XP_TOP_LOGPROBS_MAX)
                 : 0;
    g->logprobs = rq->logprobs;
    g->prompt = malloc(rq->n_prompt * sizeof *g->prompt);
    g->stop = calloc(n_stop + 1, sizeof *g->stop);
    bool ok = g->prompt && g->stop;
    for (size_t i = 0; ok && i < n_stop; i++)
        ok = (g->stop[i] = strdup(rq->stop[i])) != NULL;
    g->model = xp_served_retain(rq->model);
    g->cb = *cb;
    g->last = -1;
    g->res.prompt_tokens = rq->n_prompt;
    g->opts = (xp_gen_opts){.sampler = rq->sampler,
                            .max_tokens = max_new,
                            .stop_strings = (const char *const *)g->stop,
                            .stop_at_eos = true,
                            .path = XP_PATH_FAST,
                            .on_token = on_token,
                            .ctx = g};
    int rc = ok ? XP_OK : xp_err_set(err, XP_ENOMEM, "out of memory");
    if (!rc) {
        memcpy(g->prompt, rq->prompt, rq->n_prompt * sizeof *g->prompt);
        g->n_prompt = rq->n_prompt;
        rc = xp_decoder_new(&g->dec, e->m, rq->n_prompt, &g->opts, err);
    }
    if (!rc)
        rc = xp_kv_new(&g->kv, e->m, rq->n_prompt + max_new, err);
    if (!rc)
        xp_kv_set_overlay(g->kv, xp_served_overlay(g->model));
    pthread_mutex_lock(&e->mu);
    if (!rc && (e->draining || e->stop))
        rc = xp_err_set(err, XP_EINVAL, "the server is shutting down");
    else if (!rc && e->n_queued >= e->o.queue)
        rc = xp_err_set(err, XP_ENOMEM, "%zu requests are waiting already", e->n_queued);
    if (!rc) {
        if (e->tail)
            e->tail->next = g;
        else
            e->head = g;
        e->tail = g;
        e->n_queued++;
        e->st.requests++;
        const char *id = xp_served_id(g->model);
        size_t i = 0;
        while (i < e->n_counts && strcmp(e->counts[i].id, id))
            i++;
        if (i == e->n_counts) {
            model_count *grown = realloc(e->counts, (e->n_counts + 1) * sizeof *grown);
            if (grown && (grown[i].id = strdup(id))) {
                grown[i].n = 0;
                e->counts = grown, e->n_counts++;
            } else if (grown) {
                e->counts = grown;
            }
        }
        if (i < e->n_counts)
            e->counts[i].n++;
        pthread_cond_signal(&e->wake);
    }
    pthread_mutex_unlock(&e->mu);
    if (rc) {
        atomic_store(&g->refs, 1);
        xp_gen_release(g);
        return rc;
    }
    *out = g;
    return XP_OK;
}

/* The request's end: on_done, its slot freed, the engine's hold released. */
static void finish(xp_engine *e, size_t slot, int how)
{
    xp_gen *g = e->slots[slot];
    g->res.finish = how;
    g->res.completion_tokens = g->n_new;
    if (g->cb.on_done)
        g->cb.on_done(g->cb.ctx, &g->res);
    pthread_mutex_lock(&e->mu);
    e->slots[slot] = NULL;
    e->n_running--;
    if (how == XP_FINISH_CANCELLED)
        e->st.cancelled++;
    else
        e->st.finished++;
    pthread_cond_broadcast(&e->idle);
    pthread_mutex_unlock(&e->mu);
    xp_gen_release(g);
}

/* Waits for work; moves waiting requests into free slots. false: stop. */
static bool admit(xp_engine *e)
{
    pthread_mutex_lock(&e->mu);
    while (!e->stop && !e->head && e->n_running == 0)
        pthread_cond_wait(&e->wake, &e->mu);
    for (size_t s = 0; s < e->o.parallel && e->head; s++)
        if (!e->slots[s]) {
            xp_gen *g = e->head;
            e->head = g->next;
            if (!e->head)
                e->tail = NULL;
            g->next = NULL;
            e->n_queued--;
            e->slots[s] = g;
            e->n_running++;
        }
    bool go = !e->stop;
    pthread_mutex_unlock(&e->mu);
    return go;
}

/* One step: every running sequence's new tokens in one forward pass, then each samples. */
static void step(xp_engine *e, xp_seq *seqs, size_t *slot_of, float **logits, size_t *cap)
{
    size_t V = xp_model_shape(e->m)->n_vocab, n = 0;
    for (size_t s = 0; s < e->o.parallel; s++) {
        xp_gen *g = e->slots[s];
        if (g && atomic_load(&g->cancel)) {
            finish(e, s, XP_FINISH_CANCELLED);
            continue;
        }
        if (!g)
            continue;
        seqs[n] = g->prefilled ? (xp_seq){g->kv, &g->last, 1, NULL}
                               : (xp_seq){g->kv, g->prompt, g->n_prompt, NULL};
        slot_of[n++] = s;
    }
    if (n == 0)
        return;
    if (n > *cap) {
        float *grown = realloc(*logits, n * V * sizeof **logits);
        if (grown)
            *logits = grown, *cap = n;
    }
    xp_err err = {0};
    int rc = n <= *cap ? xp_forward(e->m, XP_PATH_FAST, seqs, n, *logits, &err)
                       : xp_err_set(&err, XP_ENOMEM, "out of memory for the logits");
    size_t made = 0;
    for (size_t i = 0; i < n; i++) {
        xp_gen *g = e->slots[slot_of[i]];
        if (!rc) {
            if (!g->prefilled)
                e->st.prompt_tokens += g->n_prompt;
            g->prefilled = true;
            const float *l = *logits + i * V;
            size_t before = xp_decoder_tokens(g->dec);
            int32_t id = xp_decoder_sample(g->dec, l);
            int trc = pending_room(g) ? XP_OK : xp_err_set(&err, XP_ENOMEM, "out of memory");
            if (!trc) {
                record_logprobs(g, l, V, id);
                trc = xp_decoder_take(g->dec, id, &err);
            }
            g->n_new = xp_decoder_tokens(g->dec);
            if (g->n_new == before && g->n_pend)
                g->n_pend--; /* an end of sequence is no token of the text */
            made += g->n_new - before;
            g->last = id;
            if (trc) {
                g->res.rc = trc;
                snprintf(g->res.error, sizeof g->res.error, "%.255s", err.msg);
                finish(e, slot_of[i], XP_FINISH_CANCELLED);
            } else if (xp_decoder_finish(g->dec)) {
                finish(e, slot_of[i], xp_decoder_finish(g->dec));
            }
        } else {
            g->res.rc = rc;
            snprintf(g->res.error, sizeof g->res.error, "%.255s", err.msg);
            finish(e, slot_of[i], XP_FINISH_CANCELLED);
        }
    }
    pthread_mutex_lock(&e->mu);
    e->st.steps++;
    e->st.completion_tokens += made;
    e->rate_t[e->rate_at % RATE_STEPS] = now_s();
    e->rate_n[e->rate_at % RATE_STEPS] = made;
    e->rate_at++;
    pthread_mutex_unlock(&e->mu);
}

static void *run(void *arg)
{
    xp_engine *e = arg;
    if (e->o.threads > 0) /* a thread's own setting: the caller's does not carry over */
        omp_set_num_threads(e->o.threads);
    xp_seq *seqs = calloc(e->o.parallel, sizeof *seqs);
    size_t *slot_of = calloc(e->o.parallel, sizeof *slot_of), cap = 0;
    float *logits = NULL;
    while (seqs && slot_of && admit(e))
        step(e, seqs, slot_of, &logits, &cap);
    free(seqs), free(slot_of), free(logits);
    return NULL;
}

int xp_engine_new(xp_engine **out, xp_model *m, const xp_engine_opts *o, xp_err *err)
{
    *out = NULL;
    xp_engine *e = calloc(1, sizeof *e);
    if (!e)
        return xp_err_set(err, XP_ENOMEM, "out of memory");
    e->m = m;
    e->o = o ? *o : (xp_engine_opts){0};
    size_t n_ctx = xp_model_shape(m)->n_ctx;
    e->o.parallel = e->o.parallel ? e->o.parallel : 4;
    e->o.ctx = e->o.ctx && e->o.ctx < n_ctx ? e->o.ctx : n_ctx;
    e->o.queue = e->o.queue ? e->o.queue : 256;
    e->slots = calloc(e->o.parallel, sizeof *e->slots);
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->wake, NULL);
    pthread_cond_init(&e->idle, NULL);
    if (!e->slots || pthread_create(&e->thread, NULL, run, e) != 0) {
        free(e->slots);
        free(e);
        return xp_err_set(err, XP_ENOMEM, "cannot start the engine's thread");
    }
    *out = e;
    return XP_OK;
}

/* Cancels every request, waiting or running. */
static void cancel_all(xp_engine *e)
{
    pthread_mutex_lock(&e->mu);
    for (xp_gen *g = e->head; g; g = g->next)
        atomic_store(&g->cancel, true);
    for (size_t s = 0; s < e->o.parallel; s++)
        if (e->slots[s])
            atomic_store(&e->slots[s]->cancel, true);
    pthread_cond_signal(&e->wake);
    pthread_mutex_unlock(&e->mu);
}

void xp_engine_drain(xp_engine *e, double timeout_s)
{
    pthread_mutex_lock(&e->mu);
    e->draining = true;
    double until = now_s() + timeout_s;
    while ((e->head || e->n_running) && now_s() < until) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 50 * 1000 * 1000;
        if (ts.tv_nsec >= 1000000000)
            ts.tv_sec++, ts.tv_nsec -= 1000000000;
        pthread_cond_timedwait(&e->idle, &e->mu, &ts);
    }
    pthread_mutex_unlock(&e->mu);
    cancel_all(e);
    pthread_mutex_lock(&e->mu);
    while (e->head || e->n_running)
        pthread_cond_wait(&e->idle, &e->mu);
    pthread_mutex_unlock(&e->mu);
}

void xp_engine_free(xp_engine *e)
{
    if (!e)
        return;
    xp_engine_drain(e, 0);
    pthread_mutex_lock(&e->mu);
    e->stop = true;
    pthread_cond_signal(&e->wake);
    pthread_mutex_unlock(&e->mu);
    pthread_join(e->thread, NULL);
    for (size_t i = 0; i < e->n_counts; i++)
        free(e->counts[i].id);
    free(e->counts);
    free(e->slots);
    pthread_mutex_destroy(&e->mu);
    pthread_cond_destroy(&e->wake);
    pthread_cond_destroy(&e->idle);
    free(e);
}

void xp_engine_stats_get(xp_engine *e, xp_engine_stats *out)
{
    pthread_mutex_lock(&e->mu);
    *out = e->st;
    out->queued = e->n_queued;
    out->running = e->n_running;
    size_t n = e->rate_at < RATE_STEPS ? e->rate_at : RATE_STEPS, tokens = 0;
    if (n >= 2) {
        size_t first = (e->rate_at - n) % RATE_STEPS, last = (e->rate_at - 1) % RATE_STEPS;
        for (size_t i = 1; i < n; i++)
            tokens += e->rate_n[(e->rate_at - n + i) % RATE_STEPS];
        double dt = e->rate_t[last] - e->rate_t[first];
        /* only while the engine is busy: an idle minute is no throughput */
        out->tokens_per_s = dt > 0 && now_s() - e->rate_t[last] < 5 ? tokens / dt : 0;
    }
    pthread_mutex_unlock(&e->mu);
}

void xp_engine_per_model(xp_engine *e, void (*fn)(void *ctx, const char *id, uint64_t n), void *ctx)
{
    pthread_mutex_lock(&e->mu);
    for (size_t i = 0; i < e->n_counts; i++)
        fn(ctx, e->counts[i].id, e->counts[i].n);
    pthread_mutex_unlock(&e->mu);
}
