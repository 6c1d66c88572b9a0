/* The ggml tensor type table: block size (elements) and block bytes of every type id a
 * GGUF file may carry, so the reader can size any tensor even when xorpatch does not
 * compute with its type. */
#ifndef XP_GGUF_TYPES_H
#define XP_GGUF_TYPES_H
#include <stdint.h>

typedef struct xp_ggml_type_info {
    const char *name;
    uint32_t block; /* elements per block */
    uint32_t size;  /* bytes per block */
} xp_ggml_type_info;

/* NULL for ids that are unassigned or retired. */
const xp_ggml_type_info *xp_ggml_type(uint32_t id);
#endif
