/* The model's insides, shared by the forward paths, the KV cache and generation: the
 * bound weights of every layer (views into the GGUF map, whose types the layers above
 * see in xorpatch/model.h), norm weights as fp32 copies, and the kernel table chosen at
 * open. */
#ifndef XP_MODEL_H
#define XP_MODEL_H
#include "model/kernels.h"
#include "xorpatch/model.h"

struct xp_model {
    xp_gguf *g;
    xp_shape shape;
    xp_weight tok_embd, output; /* output aliases tok_embd when tied */
    float *output_norm;
    xp_layer *layers;
    xp_tokenizer *tok;
    const xp_kernels *kern;
    xp_patch_log applied; /* patches flipped into the map, in order */
};

#endif
