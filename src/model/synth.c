/* Synthetic Qwen3 models: Bonsai's exact layout (every matrix Q1_0, norms F32, the real
 * Qwen3 vocabulary and tokenizer metadata) with seeded random weights, for format work
 * and for speed measurements where no real Bonsai file can be had. Every Q1_0 block is
 * drawn from a counter-based generator keyed by (seed, tensor name, block index), so any
 * byte range of any tensor can be produced independently, in parallel and in any chunking,
 * and the same seed always gives the same file. */
#include "xorpatch/model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/strmap.h"

typedef struct synth_ctx {
    const xp_shape *shape;
    uint64_t seed;
} synth_ctx;

static uint64_t mix64(uint64_t z)
{
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double unit(uint64_t x) { return (double)(x >> 11) * 0x1.0p-53; }

/* The standard deviation a projection's output should have per unit input: 1 for the
 * inner projections; the LM head is a little sharper so that next-token distributions
 * are peaked as a trained model's are. */
static double output_gain(const char *name)
{
    return strcmp(name, "output.weight") == 0 || strcmp(name, "token_embd.weight") == 0 ? 2.0
                                                                                       : 1.0;
}

static void make_block(uint64_t key, uint64_t b, double scale, uint8_t out[XP_Q1_0_BYTES])
{
    uint64_t h0 = mix64(key ^ mix64(b));
    uint64_t h1 = mix64(h0), h2 = mix64(h1);
    /* d uniform in [0.5, 1.5] x scale: outputs keep a spread of magnitudes, as real
     * per-block scales do, which scale-weighted proposal needs */
    uint16_t d = xp_f32_to_fp16((float)(scale * (0.5 + unit(h0))));
    out[0] = (uint8_t)d;
    out[1] = (uint8_t)(d >> 8);
    memcpy(out + 2, &h1, 8);
    memcpy(out + 10, &h2, 8);
}

static int fill_q1_0(const synth_ctx *c, const xp_gguf_tensor *t, uint64_t offset, uint8_t *dst,
                     size_t n)
{
    uint64_t key = mix64(c->seed ^ xp_hash_bytes(t->name, strlen(t->name)));
    /* unit-RMS inputs times ne0 random signs of size d give an output of std d*sqrt(ne0) */
    double scale = output_gain(t->name) / sqrt((double)t->ne[0]);
    uint64_t first = offset / XP_Q1_0_BYTES, last = (offset + n - 1) / XP_Q1_0_BYTES;
#pragma omp parallel for schedule(static)
    for (int64_t b = (int64_t)first; b <= (int64_t)last; b++) {
        uint8_t block[XP_Q1_0_BYTES];
        make_block(key, (uint64_t)b, scale, block);
        uint64_t start = (uint64_t)b * XP_Q1_0_BYTES;
        uint64_t lo = start > offset ? start : offset;
        uint64_t hi = start + XP_Q1_0_BYTES < offset + n ? start + XP_Q1_0_BYTES : offset + n;
        memcpy(dst + (lo - offset), block + (lo - start), hi - lo);
    }
    return XP_OK;
}

/* Norm weights in [0.8, 1.2]. */
static int fill_f32(const synth_ctx *c, const xp_gguf_tensor *t, uint64_t offset, uint8_t *dst,
                    size_t n)
{
    uint64_t key = mix64(c->seed ^ xp_hash_bytes(t->name, strlen(t->name)));
    for (size_t i = 0; i < n; i++) {
        uint64_t e = (offset + i) / 4;
        float v = (float)(0.8 + 0.4 * unit(mix64(key ^ mix64(e))));
        uint8_t bytes[4];
        memcpy(bytes, &v, 4);
        dst[i] = bytes[(offset + i) % 4];
    }
    return XP_OK;
}

static int fill(void *ctx, const xp_gguf_tensor *t, uint64_t offset, uint8_t *dst, size_t n,
                xp_err *err)
{
    if (t->type == XP_TYPE_Q1_0)
        return fill_q1_0(ctx, t, offset, dst, n);
    if (t->type == XP_TYPE_F32)
        return fill_f32(ctx, t, offset, dst, n);
    return xp_err_set(err, XP_EINTERNAL, "synth: tensor '%s' has an unexpected type", t->name);
}

static int add(xp_gguf_writer *w, synth_ctx *c, const char *name, int64_t ne0, int64_t ne1,
               xp_err *err)
{
    int64_t ne[2] = {ne0, ne1};
    return xp_gguf_writer_add_tensor(w, name, ne1 ? 2 : 1, ne, ne1 ? XP_TYPE_Q1_0 : XP_TYPE_F32,
                                     NULL, fill, c, err);
}

static int add_proj(xp_gguf_writer *w, synth_ctx *c, uint32_t layer, int proj, xp_err *err)
{
    char name[XP_TENSOR_NAME_MAX];
    int64_t ne0, ne1;
    xp_tensor_name(name, sizeof name, layer, xp_proj_tensor(proj));
    xp_proj_shape(c->shape, proj, &ne0, &ne1);
    return add(w, c, name, ne0, ne1, err);
}

static int add_tensors(xp_gguf_writer *w, synth_ctx *c, xp_err *err)
{
    const xp_shape *s = c->shape;
    int rc = add(w, c, "token_embd.weight", s->n_embd, (int64_t)s->n_vocab, err);
    char name[XP_TENSOR_NAME_MAX];
#define NORM(norm, n) (xp_tensor_name(name, sizeof name, l, norm), add(w, c, name, n, 0, err))
    for (uint32_t l = 0; l < s->n_layer && !rc; l++) {
        if ((rc = NORM("attn_norm", s->n_embd)) || (rc = add_proj(w, c, l, XP_PROJ_Q, err)) ||
            (rc = add_proj(w, c, l, XP_PROJ_K, err)) || (rc = add_proj(w, c, l, XP_PROJ_V, err)) ||
            (rc = add_proj(w, c, l, XP_PROJ_O, err)) || (rc = NORM("attn_q_norm", s->head_dim)) ||
            (rc = NORM("attn_k_norm", s->head_dim)) || (rc = NORM("ffn_norm", s->n_embd)) ||
            (rc = add_proj(w, c, l, XP_PROJ_GATE, err)) ||
            (rc = add_proj(w, c, l, XP_PROJ_UP, err)))
            break;
        rc = add_proj(w, c, l, XP_PROJ_DOWN, err);
    }
#undef NORM
    if (!rc)
        rc = add(w, c, "output_norm.weight", s->n_embd, 0, err);
    if (!rc && !s->tied_output)
        rc = add(w, c, "output.weight", s->n_embd, (int64_t)s->n_vocab, err);
    return rc;
}

/* The vocabulary padded to n rows with unused "[PAD<i>]" tokens, as llama.cpp's converter
 * pads a vocabulary smaller than the embedding. */
static int padded_vocab(const xp_vocab *v, uint64_t n, xp_vocab *out, xp_err *err)
{
    *out = *v;
    if (n == v->n_tokens)
        return XP_OK;
    if (n < v->n_tokens)
        return xp_err_set(err, XP_EINVAL, "synth: vocabulary of %zu tokens does not fit in %llu "
                          "embedding rows", v->n_tokens, (unsigned long long)n);
    out->tokens = xp_calloc(n, sizeof *out->tokens);
    out->types = xp_calloc(n, sizeof *out->types);
    if (!out->tokens || !out->types)
        goto oom;
    out->n_tokens = n;
    memcpy(out->tokens, v->tokens, v->n_tokens * sizeof *out->tokens);
    memcpy(out->types, v->types, v->n_tokens * sizeof *out->types);
    for (uint64_t i = v->n_tokens; i < n; i++) {
        char buf[32];
        snprintf(buf, sizeof buf, "[PAD%llu]", (unsigned long long)i);
        if (!(out->tokens[i] = xp_strdup(buf)))
            goto oom;
        out->types[i] = XP_TOKEN_UNUSED;
    }
    return XP_OK;
oom:
    if (out->tokens)
        for (uint64_t i = v->n_tokens; i < n; i++)
            free(out->tokens[i]);
    free(out->tokens);
    free(out->types);
    return xp_err_set(err, XP_ENOMEM, "synth: out of memory padding the vocabulary");
}

int xp_synth_write(const xp_shape *s, uint64_t seed, const xp_vocab *vocab, const char *path,
                   xp_progress_fn progress, void *progress_ctx, xp_err *err)
{
    int rc = xp_shape_check(s, err);
    if (rc)
        return rc;
    xp_vocab padded = {0};
    if (vocab && (rc = padded_vocab(vocab, s->n_vocab, &padded, err)))
        return rc;
    xp_gguf_writer *w = xp_gguf_writer_new();
    if (!w) {
        rc = xp_err_set(err, XP_ENOMEM, "synth: out of memory");
    } else {
        synth_ctx c = {s, seed};
        xp_gguf_writer_set_progress(w, progress, progress_ctx);
        char desc[128];
        snprintf(desc, sizeof desc, "xorpatch synth seed=%llu (random weights)",
                 (unsigned long long)seed);
        if (!(rc = xp_qwen3_write_metadata(w, s, "xorpatch synthetic Qwen3 Q1_0", desc, err)) &&
            !(rc = vocab ? xp_vocab_write_gguf(&padded, w, err) : XP_OK) &&
            !(rc = add_tensors(w, &c, err)))
            rc = xp_gguf_writer_write(w, path, err);
        xp_gguf_writer_free(w);
    }
    if (vocab && padded.tokens != vocab->tokens) {
        for (size_t i = vocab->n_tokens; i < padded.n_tokens; i++)
            free(padded.tokens[i]);
        free(padded.tokens);
        free(padded.types);
    }
    return rc;
}
