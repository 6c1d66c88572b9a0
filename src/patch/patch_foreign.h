/* What Bankai v1, Neagari v2 and Neagari's block list share (patch_foreign.c): flips
 * named by layer and projection rather than by tensor, the same top-level strings, and
 * the same ways a flip can fail to fit them. Bankai's and Neagari's files are read
 * leniently (extra keys ignored), because they are what they are. */
#ifndef XP_PATCH_FOREIGN_H
#define XP_PATCH_FOREIGN_H
#include "patch/patch_internal.h"

/* Reads a foreign file of format (enum xp_patch_format) into p: "flips" (an array), the
 * strings "name", "description" and "base_model", then the format's own description of
 * its search (search), then each flip (flip, with its position). */
typedef int (*xp_foreign_part_fn)(xp_patch *p, const cJSON *root, const char *where, xp_err *err);
typedef int (*xp_foreign_flip_fn)(xp_patch *p, const cJSON *f, size_t i, const char *where,
                                  xp_err *err);
int xp_foreign_read(xp_patch *p, const cJSON *root, int format, xp_foreign_part_fn search,
                    xp_foreign_flip_fn flip, const char *where, xp_err *err);
/* The start of flip i (f): an object (else an error naming its "layer", "proj" and key),
 * its "layer" and its "proj", by GGUF name with or without ".weight" and with mlx also by
 * MLX name. Fills path ("flips[i]") and the flip's tensor name. */
int xp_foreign_read_flip(const cJSON *f, size_t i, bool mlx, const char *key, char path[48],
                         char tensor[XP_TENSOR_NAME_MAX], const char *where, xp_err *err);

/* The projection a foreign file names: by GGUF name, with ".weight" (as Neagari writes
 * it) or without, or when mlx also by MLX name (as Bankai writes it); -1 when none. */
int xp_foreign_find_proj(const char *s, bool mlx);
/* Every projection's name in a vocabulary (enum xp_naming), "a, b, ... f or g", in buf. */
const char *xp_foreign_proj_list(int naming, char *buf, size_t size);

/* The layer and projection of a flip that fmt is to hold; an error when its tensor is not
 * a layer's projection, or when unfit (why fmt cannot hold it) is not NULL. */
int xp_foreign_place(const xp_patch *p, const xp_flip *f, const char *fmt, const char *unfit,
                     uint32_t *layer, int *proj, xp_err *err);
/* A flip object {"layer", "proj"} to complete. */
cJSON *xp_foreign_flip_json(uint32_t layer, const char *proj);
#endif
