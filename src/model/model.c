/* The model view: reads the Qwen3 hyper-parameters, binds every tensor by name, checks
 * each one's type and shape against them, and refuses a file that is not a supported
 * Qwen3 layout with a message naming what is missing or mis-shaped. Weights stay in the
 * file's private map; only the small norm vectors are converted to fp32 copies. */
#include "model/model.h"

#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"

static const char *where(const xp_gguf *g) { return g->path ? g->path : "<memory>"; }

static bool matrix_type(uint32_t t)
{
    return t == XP_TYPE_Q1_0 || t == XP_TYPE_F32 || t == XP_TYPE_F16 || t == XP_TYPE_BF16;
}

static int bind_matrix(const xp_gguf *g, const char *name, int64_t ne0, int64_t ne1,
                       xp_weight *w, xp_err *err)
{
    const xp_gguf_tensor *t = xp_gguf_tensor_by_name(g, name);
    if (!t)
        return xp_err_set(err, XP_EFORMAT, "%s: tensor '%s' is missing", where(g), name);
    if (!matrix_type(t->type))
        return xp_err_set(err, XP_EFORMAT, "%s: tensor '%s' has type %s; xorpatch runs q1_0, "
                          "f32, f16 and bf16 matrices", where(g), name,
                          xp_tensor_type_name(t->type) ? xp_tensor_type_name(t->type) : "?");
    if (t->n_dims != 2 || t->ne[0] != ne0 || t->ne[1] != ne1)
        return xp_err_set(err, XP_EFORMAT, "%s: tensor '%s' has shape [%lld, %lld] (%u dims), "
                          "expected [%lld, %lld]", where(g), name, (long long)t->ne[0],
                          (long long)t->ne[1], t->n_dims, (long long)ne0, (long long)ne1);
    w->name = t->name;
    w->type = t->type;
    w->ne0 = ne0;
    w->ne1 = ne1;
    w->row_bytes = xp_tensor_row_bytes(t->type, ne0);
    w->data = t->data;
    return XP_OK;
}

/* A norm weight vector as an fp32 copy. */
static int bind_vector(const xp_gguf *g, const char *name, int64_t n, float **out, xp_err *err)
{
    const xp_gguf_tensor *t = xp_gguf_tensor_by_name(g, name);
    if (!t)
        return xp_err_set(err, XP_EFORMAT, "%s: tensor '%s' is missing", where(g), name);
    if (t->ne[0] != n || t->ne[1] != 1 || t->ne[2] != 1 || t->ne[3] != 1)
        return xp_err_set(err, XP_EFORMAT, "%s: tensor '%s' has %lld x %lld elements, expected "
                          "a vector of %lld", where(g), name, (long long)t->ne[0],
                          (long long)t->ne[1], (long long)n);
    if (t->type != XP_TYPE_F32 && t->type != XP_TYPE_F16 && t->type != XP_TYPE_BF16)
        return xp_err_set(err, XP_EFORMAT, "%s: tensor '%s' has type %s; norms must be f32, "
                          "f16 or bf16", where(g), name,
                          xp_tensor_type_name(t->type) ? xp_tensor_type_name(t->type) : "?");
    float *v = malloc((size_t)n * sizeof *v);
    if (!v)
        return xp_err_set(err, XP_ENOMEM, "out of memory binding '%s'", name);
    xp_weight w = {name, t->type, n, 1, t->nbytes, t->data};
    xp_weight_row(&w, 0, v);
    *out = v;
    return XP_OK;
}

void xp_weight_row(const xp_weight *w, int64_t r, float *out)
{
    const uint8_t *row = w->data + (uint64_t)r * w->row_bytes;
    switch (w->type) {
    case XP_TYPE_Q1_0:
        xp_q1_0_dequant_row(row, w->ne0, out);
        break;
    case XP_TYPE_F32:
        memcpy(out, row, (size_t)w->ne0 * sizeof *out);
        break;
    case XP_TYPE_F16:
        for (int64_t i = 0; i < w->ne0; i++)
            out[i] = xp_fp16_to_f32((uint16_t)(row[2 * i] | row[2 * i + 1] << 8));
        break;
    case XP_TYPE_BF16:
        for (int64_t i = 0; i < w->ne0; i++)
            out[i] = xp_bf16_to_f32((uint16_t)(row[2 * i] | row[2 * i + 1] << 8));
        break;
    }
}

const xp_weight *xp_model_embedding(const xp_model *m) { return &m->tok_embd; }
const xp_weight *xp_model_lm_head(const xp_model *m) { return &m->output; }
const float *xp_model_output_norm(const xp_model *m) { return m->output_norm; }

xp_weight *xp_proj_weight(xp_layer *L, int proj)
{
    xp_weight *w[XP_N_PROJ] = {&L->gate, &L->up, &L->down, &L->wq, &L->wk, &L->wv, &L->wo};
    return w[proj];
}

static int bind_layer(const xp_gguf *g, const xp_shape *s, uint32_t l, xp_layer *L, xp_err *err)
{
    char name[XP_TENSOR_NAME_MAX];
#define NAME(norm) (xp_tensor_name(name, sizeof name, l, norm), name)
    int rc;
    if ((rc = bind_vector(g, NAME("attn_norm"), s->n_embd, &L->attn_norm, err)) ||
        (rc = bind_vector(g, NAME("attn_q_norm"), s->head_dim, &L->q_norm, err)) ||
        (rc = bind_vector(g, NAME("attn_k_norm"), s->head_dim, &L->k_norm, err)) ||
        (rc = bind_vector(g, NAME("ffn_norm"), s->n_embd, &L->ffn_norm, err)))
        return rc;
#undef NAME
    /* in a file's order (q, k, v, o, gate, up, down): the first missing one is named */
    for (int i = 0; i < XP_N_PROJ; i++) {
        int proj = xp_proj_at_file_order(i);
        int64_t ne0, ne1;
        xp_proj_shape(s, proj, &ne0, &ne1);
        xp_tensor_name(name, sizeof name, l, xp_proj_tensor(proj));
        if ((rc = bind_matrix(g, name, ne0, ne1, xp_proj_weight(L, proj), err)))
            return rc;
    }
    return XP_OK;
}

static void free_layers(xp_model *m)
{
    if (!m->layers)
        return;
    for (uint32_t l = 0; l < m->shape.n_layer; l++) {
        free(m->layers[l].attn_norm);
        free(m->layers[l].q_norm);
        free(m->layers[l].k_norm);
        free(m->layers[l].ffn_norm);
    }
    free(m->layers);
}

void xp_model_close(xp_model *m)
{
    if (!m)
        return;
    free_layers(m);
    xp_patch_log_free(&m->applied);
    free(m->output_norm);
    xp_tokenizer_free(m->tok);
    xp_gguf_close(m->g);
    free(m);
}

static int bind(xp_model *m, xp_err *err)
{
    const xp_gguf *g = m->g;
    const xp_shape *s = &m->shape;
    int rc = xp_shape_from_gguf(g, &m->shape, err);
    if (rc)
        return rc;
    if ((rc = bind_matrix(g, "token_embd.weight", s->n_embd, (int64_t)s->n_vocab, &m->tok_embd,
                          err)) ||
        (rc = bind_vector(g, "output_norm.weight", s->n_embd, &m->output_norm, err)))
        return rc;
    if (s->tied_output)
        m->output = m->tok_embd;
    else if ((rc = bind_matrix(g, "output.weight", s->n_embd, (int64_t)s->n_vocab, &m->output,
                               err)))
        return rc;
    m->layers = xp_calloc(s->n_layer, sizeof *m->layers);
    if (!m->layers)
        return xp_err_set(err, XP_ENOMEM, "out of memory binding %u layers", s->n_layer);
    for (uint32_t l = 0; l < s->n_layer; l++)
        if ((rc = bind_layer(g, s, l, &m->layers[l], err)))
            return rc;
    /* the tokenizer is optional: a layout-only file still runs on token ids */
    if (xp_gguf_get(g, "tokenizer.ggml.tokens")) {
        xp_vocab *v = NULL;
        if ((rc = xp_vocab_from_gguf(&v, g, err)) || (rc = xp_tokenizer_new(&m->tok, v, err))) {
            xp_vocab_free(v);
            return rc;
        }
        xp_vocab_free(v);
    }
    m->kern = xp_kernels_best();
    return XP_OK;
}

int xp_model_from_gguf(xp_model **out, xp_gguf *g, xp_err *err)
{
    *out = NULL;
    xp_model *m = calloc(1, sizeof *m);
    if (!m) {
        xp_gguf_close(g);
        return xp_err_set(err, XP_ENOMEM, "out of memory");
    }
    m->g = g;
    int rc = bind(m, err);
    if (rc) {
        xp_model_close(m);
        return rc;
    }
    *out = m;
    return XP_OK;
}

int xp_model_open(xp_model **out, const char *path, xp_err *err)
{
    xp_gguf *g;
    *out = NULL;
    int rc = xp_gguf_open(&g, path, err);
    return rc ? rc : xp_model_from_gguf(out, g, err);
}

const xp_shape *xp_model_shape(const xp_model *m) { return &m->shape; }
const xp_tokenizer *xp_model_tokenizer(const xp_model *m) { return m->tok; }
xp_gguf *xp_model_gguf(xp_model *m) { return m->g; }
xp_layer *xp_model_layer(const xp_model *m, uint32_t layer) { return &m->layers[layer]; }
const char *xp_model_kernel(const xp_model *m) { return m->kern->name; }

int xp_model_set_kernel(xp_model *m, const char *name, xp_err *err)
{
    const xp_kernels *k = xp_kernels_find(name);
    if (!k)
        return xp_err_set(err, XP_EINVAL, "kernel '%s' is unknown or this CPU cannot run it",
                          name);
    m->kern = k;
    return XP_OK;
}
