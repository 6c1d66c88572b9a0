/* The general.* and qwen3.* keys of a Qwen3 Q1_0 GGUF (declared in xorpatch/model.h). */
#include "xorpatch/model.h"

int xp_qwen3_write_metadata(xp_gguf_writer *w, const xp_shape *s, const char *name,
                            const char *description, xp_err *err)
{
    int rc;
    if ((rc = xp_gguf_writer_set_str(w, "general.architecture", "qwen3", err)) ||
        (rc = xp_gguf_writer_set_str(w, "general.type", "model", err)) ||
        (rc = xp_gguf_writer_set_str(w, "general.name", name, err)) ||
        (rc = xp_gguf_writer_set_str(w, "general.description", description, err)) ||
        (rc = xp_gguf_writer_set_u32(w, "qwen3.block_count", s->n_layer, err)) ||
        (rc = xp_gguf_writer_set_u32(w, "qwen3.context_length", s->n_ctx, err)) ||
        (rc = xp_gguf_writer_set_u32(w, "qwen3.embedding_length", s->n_embd, err)) ||
        (rc = xp_gguf_writer_set_u32(w, "qwen3.feed_forward_length", s->n_ff, err)) ||
        (rc = xp_gguf_writer_set_u32(w, "qwen3.attention.head_count", s->n_head, err)) ||
        (rc = xp_gguf_writer_set_u32(w, "qwen3.attention.head_count_kv", s->n_head_kv, err)) ||
        (rc = xp_gguf_writer_set_f32(w, "qwen3.rope.freq_base", s->rope_base, err)) ||
        (rc = xp_gguf_writer_set_f32(w, "qwen3.attention.layer_norm_rms_epsilon", s->rms_eps,
                                     err)) ||
        (rc = xp_gguf_writer_set_u32(w, "qwen3.attention.key_length", s->head_dim, err)) ||
        (rc = xp_gguf_writer_set_u32(w, "qwen3.attention.value_length", s->head_dim, err)) ||
        /* llama.cpp's file type for an all-Q1_0 model, as the reference files carry it */
        (rc = xp_gguf_writer_set_u32(w, "general.file_type", 40, err)) ||
        (rc = xp_gguf_writer_set_u32(w, "general.quantization_version", 2, err)))
        return rc;
    return XP_OK;
}
