/* The trainer's set-up: the options' defaults; the corpus tokenised into training
 * documents, each trained from its answer on; the embedding rows that exist (the tokens of
 * the corpus and the end markers); the table of parameter tensors and their initial
 * values; and the accessors its tests read the insides with. */
#include "train/train.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"

/* ---- parameters ------------------------------------------------------------------- */

static size_t add_tensor(xp_trainer *t, const char *name, int64_t ne0, int64_t ne1, bool q)
{
    xpt_tensor *x = &t->tens[t->n_tens++];
    snprintf(x->name, sizeof x->name, "%s", name);
    x->off = t->n_par;
    x->ne0 = ne0;
    x->ne1 = ne1;
    x->n = (size_t)ne0 * (size_t)(ne1 ? ne1 : 1);
    x->quantised = q;
    t->n_par += x->n;
    return x->off;
}

static int layout(xp_trainer *t)
{
    const xp_shape *s = &t->s;
    size_t qd = (size_t)s->n_head * s->head_dim, kvd = (size_t)s->n_head_kv * s->head_dim;
    t->tens = xp_calloc(3 + 11 * (size_t)s->n_layer, sizeof *t->tens);
    t->L = xp_calloc(s->n_layer, sizeof *t->L);
    if (!t->tens || !t->L)
        return XP_ENOMEM;
    t->emb = add_tensor(t, "token_embd.weight", s->n_embd, (int64_t)t->n_used, true);
    char nm[48];
#define T(field, tensor, ne0, ne1, q)                                                              \
    (xp_tensor_name(nm, sizeof nm, l, tensor), L->field = add_tensor(t, nm, ne0, ne1, q))
    for (uint32_t l = 0; l < s->n_layer; l++) {
        xpt_layer_off *L = &t->L[l];
        T(attn_norm, "attn_norm", s->n_embd, 0, false);
        T(wq, xp_proj_tensor(XP_PROJ_Q), s->n_embd, (int64_t)qd, true);
        T(wk, xp_proj_tensor(XP_PROJ_K), s->n_embd, (int64_t)kvd, true);
        T(wv, xp_proj_tensor(XP_PROJ_V), s->n_embd, (int64_t)kvd, true);
        T(wo, xp_proj_tensor(XP_PROJ_O), (int64_t)qd, s->n_embd, true);
        T(q_norm, "attn_q_norm", s->head_dim, 0, false);
        T(k_norm, "attn_k_norm", s->head_dim, 0, false);
        T(ffn_norm, "ffn_norm", s->n_embd, 0, false);
        T(gate, xp_proj_tensor(XP_PROJ_GATE), s->n_embd, s->n_ff, true);
        T(up, xp_proj_tensor(XP_PROJ_UP), s->n_embd, s->n_ff, true);
        T(down, xp_proj_tensor(XP_PROJ_DOWN), s->n_ff, s->n_embd, true);
    }
#undef T
    t->out_norm = add_tensor(t, "output_norm.weight", s->n_embd, 0, false);
    return XP_OK;
}

/* A standard normal from two counter-keyed uniforms (Box-Muller), so initialisation
 * depends on the seed and the element only. */
static float normal_at(uint64_t seed, uint64_t i)
{
    uint64_t a = xpt_mix64(seed ^ xpt_mix64(2 * i)), b = xpt_mix64(seed ^ xpt_mix64(2 * i + 1));
    double u1 = ((double)(a >> 11) + 1.0) * 0x1.0p-53, u2 = (double)(b >> 11) * 0x1.0p-53;
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

/* Norms start at 1; matrices and the embedding at GPT-2's 0.02, the projections that
 * write into the residual stream smaller by sqrt(2 x layers) so that depth does not
 * inflate it. */
static void init_params(xp_trainer *t)
{
    uint64_t seed = xpt_mix64(t->o.seed ^ 0x7472616e696e67ull);
    for (size_t i = 0; i < t->n_tens; i++) {
        const xpt_tensor *x = &t->tens[i];
        float std = 0.02f;
        uint32_t layer;
        int proj = xp_tensor_name_parse(x->name, &layer);
        if (proj >= 0 && xp_proj_info_of(proj)->out == XP_DIM_EMBD)
            std /= sqrtf(2.0f * (float)t->s.n_layer);
        for (size_t j = 0; j < x->n; j++)
            t->p[x->off + j] = x->quantised ? std * normal_at(seed, x->off + j) : 1.0f;
    }
}

/* ---- set-up ----------------------------------------------------------------------- */

void xp_train_opts_default(xp_train_opts *o)
{
    memset(o, 0, sizeof *o);
    xp_shape_preset("tiny", &o->shape, NULL);
    o->shape.n_ctx = 1024; /* what the corpus needs, with room: the trained context */
    o->seed = 1;
    o->steps = 4200;
    o->batch = 48;
    o->warmup = 60;
    o->lr = 1e-3f;
    o->lr_min = 1e-4f;
    o->weight_decay = 0.05f;
    o->clip = 1.0f;
    o->beta1 = 0.9f;
    o->beta2 = 0.98f;
    o->quantise = true;
}

/* Marks tokens (ids from the tokenizer, so in range) as having a trained row. */
static void add_used(xp_trainer *t, const int32_t *ids, size_t n)
{
    for (size_t i = 0; i < n; i++)
        t->local[ids[i]] = 0;
}

/* Where a document's answer starts: after the tokens it shares with its prompt alone.
 * Only the answer (and end marker) is trained, as in instruction tuning: the operands and
 * passages of the prompts are random draws a model cannot and need not predict, and
 * their noise would drown the answers' gradient. */
static int answer_start(const xp_tokenizer *tok, const xp_doc *d, const int32_t *ids, size_t n,
                        size_t *from, xp_err *err)
{
    int32_t *p;
    size_t np;
    int rc = xp_tokenize(tok, d->prompt, strlen(d->prompt), d->chat, &p, &np, err);
    if (rc)
        return rc;
    size_t k = 0;
    while (k < np && k < n && p[k] == ids[k])
        k++;
    free(p);
    *from = k ? k : 1;
    return XP_OK;
}

int xp_trainer_new(xp_trainer **out, const xp_train_opts *o, const xp_tokenizer *tok,
                   const xp_corpus *c, xp_err *err)
{
    *out = NULL;
    int rc = xp_shape_check(&o->shape, err);
    if (rc)
        return rc;
    if (o->shape.n_vocab != xp_tokenizer_n_vocab(tok))
        return xp_err_set(err, XP_EINVAL, "train: the shape has %llu embedding rows but the "
                          "tokenizer %zu tokens", (unsigned long long)o->shape.n_vocab,
                          xp_tokenizer_n_vocab(tok));
    if (!o->shape.tied_output)
        return xp_err_set(err, XP_EINVAL, "train: only a tied LM head is trained");
    if (o->batch == 0 || o->steps == 0 || !(o->lr > 0))
        return xp_err_set(err, XP_EINVAL, "train: steps, batch and learning rate must be "
                          "positive");
    xp_trainer *t = xp_calloc(1, sizeof *t);
    if (!t)
        return xp_err_set(err, XP_ENOMEM, "train: out of memory");
    t->o = *o;
    t->s = o->shape;
    t->local = malloc(t->s.n_vocab * sizeof *t->local);
    t->doc_ids = xp_calloc(c->n, sizeof *t->doc_ids);
    t->doc_len = xp_calloc(c->n, sizeof *t->doc_len);
    t->doc_from = xp_calloc(c->n, sizeof *t->doc_from);
    t->focus = xp_calloc(c->n, sizeof *t->focus);
    if (!t->local || !t->doc_ids || !t->doc_len || !t->doc_from || !t->focus) {
        rc = xp_err_set(err, XP_ENOMEM, "train: out of memory");
        goto fail;
    }
    for (uint64_t i = 0; i < t->s.n_vocab; i++)
        t->local[i] = -1;
    /* every token of every item (held-out ones too, so their rows exist and evaluation
     * sees the same softmax), and the end markers generation stops at */
    for (size_t i = 0; i < c->n; i++) {
        int32_t *ids;
        size_t n;
        if ((rc = xp_doc_tokenize(tok, &c->docs[i], &ids, &n, err)))
            goto fail;
        add_used(t, ids, n);
        size_t from = 1;
        if (!c->docs[i].heldout && (rc = answer_start(tok, &c->docs[i], ids, n, &from, err))) {
            free(ids);
            goto fail;
        }
        if (!c->docs[i].heldout && from < n) {
            if (o->focus_task && !strcmp(c->docs[i].task, o->focus_task))
                t->focus[t->n_focus++] = t->n_docs;
            t->doc_ids[t->n_docs] = ids;
            t->doc_from[t->n_docs] = from;
            t->doc_len[t->n_docs++] = n;
        } else {
            free(ids);
        }
    }
    if (o->focus_steps && !t->n_focus) {
        rc = xp_err_set(err, XP_EINVAL, "train: the corpus has no training items of the "
                        "focus task '%s'", o->focus_task ? o->focus_task : "");
        goto fail;
    }
    const char *markers[] = {"<|im_end|>", "<|endoftext|>"};
    for (size_t i = 0; i < 2; i++) {
        int32_t id = xp_tokenizer_find(tok, markers[i]);
        if (id >= 0)
            add_used(t, &id, 1);
    }
    for (uint64_t i = 0; i < t->s.n_vocab; i++)
        t->n_used += t->local[i] == 0;
    t->used = xp_calloc(t->n_used, sizeof *t->used);
    if (!t->used) {
        rc = xp_err_set(err, XP_ENOMEM, "train: out of memory");
        goto fail;
    }
    size_t k = 0;
    for (uint64_t i = 0; i < t->s.n_vocab; i++)
        if (t->local[i] == 0) {
            t->used[k] = (int32_t)i;
            t->local[i] = (int32_t)k++;
        }
    if ((rc = layout(t)) != XP_OK) {
        rc = xp_err_set(err, XP_ENOMEM, "train: out of memory");
        goto fail;
    }
    float **bufs[] = {&t->p, &t->grad, &t->m, &t->v, &t->w, &t->wt};
    for (size_t i = 0; i < 6; i++)
        if (!(*bufs[i] = xp_calloc(t->n_par, sizeof(float)))) {
            rc = xp_err_set(err, XP_ENOMEM, "train: out of memory for %zu parameters",
                            t->n_par);
            goto fail;
        }
    init_params(t);
    *out = t;
    return XP_OK;
fail:
    xp_trainer_free(t);
    return rc;
}

void xp_trainer_free(xp_trainer *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->n_docs; i++)
        free(t->doc_ids[i]);
    free(t->doc_ids);
    free(t->doc_len);
    free(t->doc_from);
    free(t->focus);
    free(t->used);
    free(t->local);
    float *bufs[] = {t->p, t->grad, t->m, t->v, t->w, t->wt, t->rope_cos, t->rope_sin};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        free(bufs[i]);
    free(t->tens);
    free(t->L);
    xpt_acts_free(&t->a);
    xpt_source_free(t->src);
    free(t);
}

/* ---- introspection for tests ------------------------------------------------------ */

size_t xpt_n_tensors(const xp_trainer *t) { return t->n_tens; }
const xpt_tensor *xpt_tensor_at(const xp_trainer *t, size_t i) { return &t->tens[i]; }
float *xpt_params(xp_trainer *t) { return t->p; }
const float *xpt_grads(const xp_trainer *t) { return t->grad; }
size_t xpt_n_params(const xp_trainer *t) { return t->n_par; }
size_t xpt_n_used(const xp_trainer *t, const int32_t **ids)
{
    *ids = t->used;
    return t->n_used;
}
