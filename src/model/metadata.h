/* The qwen3.* and general.* GGUF keys of a Qwen3 Q1_0 model, written in one place so
 * that every model xorpatch makes (synthetic or trained) carries the same metadata as
 * llama.cpp's converter writes for the reference files. */
#ifndef XP_MODEL_METADATA_H
#define XP_MODEL_METADATA_H
#include "xorpatch.h"

/* Adds general.* (architecture, type, name, description, file type) and the qwen3.*
 * hyper-parameters of s to w. */
int xp_qwen3_write_metadata(xp_gguf_writer *w, const xp_shape *s, const char *name,
                            const char *description, xp_err *err);
#endif
