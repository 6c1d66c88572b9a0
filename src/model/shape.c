/* Qwen3 hyper-parameters: the named shapes xorpatch synthesises (Bonsai's, and the tiny
 * one it trains) and the reading of a GGUF's qwen3.* keys, with every value checked
 * against what the engine can run. head_dim comes from qwen3.attention.key_length
 * because it is not n_embd / n_head on every model. */
#include "xorpatch/model.h"

#include <stdlib.h>
#include <string.h>

static const struct {
    const char *name;
    xp_shape shape;
} presets[] = {
    {"tiny", {4, 256, 768, 4, 2, 64, 151669, true, 40960, 1e6f, 1e-6f}},
    {"bonsai-1.7b", {28, 2048, 6144, 16, 8, 128, 151669, true, 40960, 1e6f, 1e-6f}},
    {"bonsai-4b", {36, 2560, 9728, 32, 8, 128, 151669, true, 40960, 1e6f, 1e-6f}},
    {"bonsai-8b", {36, 4096, 12288, 32, 8, 128, 151669, false, 40960, 1e6f, 1e-6f}},
};

int xp_shape_preset(const char *name, xp_shape *out, xp_err *err)
{
    for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++)
        if (strcmp(presets[i].name, name) == 0) {
            *out = presets[i].shape;
            return XP_OK;
        }
    return xp_err_set(err, XP_EINVAL,
                      "unknown shape '%s' (expected tiny, bonsai-1.7b, bonsai-4b or bonsai-8b)",
                      name);
}

int xp_shape_check(const xp_shape *s, xp_err *err)
{
    if (!s->n_layer || !s->n_embd || !s->n_ff || !s->n_head || !s->n_head_kv || !s->head_dim ||
        !s->n_vocab)
        return xp_err_set(err, XP_EINVAL, "shape: layers, widths, heads and vocabulary must "
                          "all be positive");
    if (s->n_embd % XP_Q1_0_WEIGHTS || s->n_ff % XP_Q1_0_WEIGHTS ||
        (s->n_head * s->head_dim) % XP_Q1_0_WEIGHTS)
        return xp_err_set(err, XP_EINVAL, "shape: n_embd (%u), n_ff (%u) and n_head*head_dim "
                          "(%u) must be multiples of %d (one Q1_0 block)", s->n_embd, s->n_ff,
                          s->n_head * s->head_dim, XP_Q1_0_WEIGHTS);
    if (s->n_head % s->n_head_kv)
        return xp_err_set(err, XP_EINVAL, "shape: %u heads cannot share %u KV heads evenly",
                          s->n_head, s->n_head_kv);
    if (s->head_dim % 2)
        return xp_err_set(err, XP_EINVAL, "shape: head_dim %u must be even for RoPE",
                          s->head_dim);
    if (s->n_layer > 1024 || s->n_embd > 65536 || s->n_ff > 262144 || s->n_head > 1024 ||
        s->head_dim > 1024 || s->n_vocab > (1u << 24))
        return xp_err_set(err, XP_EINVAL, "shape: a dimension is beyond what xorpatch supports");
    return XP_OK;
}

static int get_u32(const xp_gguf *g, const char *key, uint32_t *out, xp_err *err)
{
    int rc = xp_gguf_get_u32(g, key, out, err);
    return rc ? xp_err_wrap(err, "not a supported Qwen3 model") : XP_OK;
}

int xp_shape_from_gguf(const xp_gguf *g, xp_shape *s, xp_err *err)
{
    memset(s, 0, sizeof *s);
    char *arch = NULL;
    int rc = xp_gguf_get_str(g, "general.architecture", &arch, err);
    if (rc)
        return xp_err_wrap(err, "not a supported Qwen3 model");
    int is_qwen3 = strcmp(arch, "qwen3") == 0;
    if (!is_qwen3) {
        rc = xp_err_set(err, XP_EFORMAT, "%s: architecture is '%s'; xorpatch supports qwen3",
                        g->path ? g->path : "<memory>", arch);
        free(arch);
        return rc;
    }
    free(arch);
    uint32_t v;
    if ((rc = get_u32(g, "qwen3.block_count", &s->n_layer, err)) ||
        (rc = get_u32(g, "qwen3.embedding_length", &s->n_embd, err)) ||
        (rc = get_u32(g, "qwen3.feed_forward_length", &s->n_ff, err)) ||
        (rc = get_u32(g, "qwen3.attention.head_count", &s->n_head, err)) ||
        (rc = get_u32(g, "qwen3.attention.head_count_kv", &s->n_head_kv, err)))
        return rc;
    s->head_dim = s->n_head ? s->n_embd / s->n_head : 0;
    if (xp_gguf_get(g, "qwen3.attention.key_length") &&
        (rc = get_u32(g, "qwen3.attention.key_length", &s->head_dim, err)))
        return rc;
    if (xp_gguf_get(g, "qwen3.attention.value_length")) {
        if ((rc = get_u32(g, "qwen3.attention.value_length", &v, err)))
            return rc;
        if (v != s->head_dim)
            return xp_err_set(err, XP_EFORMAT, "%s: value_length %u differs from key_length "
                              "%u; xorpatch supports equal head sizes",
                              g->path ? g->path : "<memory>", v, s->head_dim);
    }
    s->n_ctx = 40960;
    if (xp_gguf_get(g, "qwen3.context_length") &&
        (rc = get_u32(g, "qwen3.context_length", &s->n_ctx, err)))
        return rc;
    s->rope_base = 1e6f;
    s->rms_eps = 1e-6f;
    if (xp_gguf_get(g, "qwen3.rope.freq_base") &&
        (rc = xp_gguf_get_f32(g, "qwen3.rope.freq_base", &s->rope_base, err)))
        return rc;
    if (xp_gguf_get(g, "qwen3.attention.layer_norm_rms_epsilon") &&
        (rc = xp_gguf_get_f32(g, "qwen3.attention.layer_norm_rms_epsilon", &s->rms_eps, err)))
        return rc;
    const xp_gguf_tensor *emb = xp_gguf_tensor_by_name(g, "token_embd.weight");
    if (!emb)
        return xp_err_set(err, XP_EFORMAT, "%s: tensor 'token_embd.weight' is missing",
                          g->path ? g->path : "<memory>");
    s->n_vocab = (uint64_t)emb->ne[1];
    s->tied_output = xp_gguf_tensor_by_name(g, "output.weight") == NULL;
    if ((rc = xp_shape_check(s, err)))
        return xp_err_wrap(err, "%s", g->path ? g->path : "<memory>");
    return XP_OK;
}
