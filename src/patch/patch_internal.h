/* What the patch files share and do not export: the limits every format shares, the
 * binary codec's entry points, the record string and a few cJSON helpers. */
#ifndef XP_PATCH_INTERNAL_H
#define XP_PATCH_INTERNAL_H
#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

#include "core/file.h"
#include "xorpatch.h"

/* The largest row or block index any patch may name (2^40 blocks would be 18 TB of one
 * tensor): one bound for every format, and small enough for JSON's doubles. */
#define XP_PATCH_MAX_INDEX ((int64_t)1 << 40)
/* The most flips one patch may hold (a search's patch has hundreds; a whole-model diff of
 * unrelated files is refused rather than spelled out block by block). */
#define XP_PATCH_MAX_FLIPS (1 << 22)
/* The widest row a patch file may record for a tensor (Bonsai's widest is 12,288): it
 * bounds how many block flips one row flip can become, so a small file cannot expand
 * into millions of flips. Shapes learnt from a model are not limited. */
#define XP_PATCH_MAX_COLUMNS (1 << 20)

/* Name of the file (or "<memory>") a patch's messages cite. */
const char *xp_patch_where(const xp_patch *p);
/* "row 17", "block 9", "scale bit 3 of block 9", ... for messages. */
void xp_flip_describe(const xp_patch *p, const xp_flip *f, char *out, size_t size);

/* Binary codec. flags select the optional parts (XP_BIN_*). */
enum { XP_BIN_BASE = 1, XP_BIN_NAME = 2, XP_BIN_PROVENANCE = 4, XP_BIN_SHAPES = 8 };
int xp_patch_encode(const xp_patch *p, unsigned flags, uint8_t **buf, size_t *len,
                    xp_err *err);
int xp_patch_decode(xp_patch **out, const uint8_t *buf, size_t len, const char *where,
                    xp_err *err);
bool xp_patch_is_binary(const void *buf, size_t len);

/* The provenance fields as one JSON object (for the binary format) and back. */
cJSON *xp_patch_provenance_json(const xp_patch *p);
int xp_patch_provenance_from_json(xp_patch *p, const cJSON *o, const char *where, xp_err *err);

/* The record string for base_sha256 and patches, padded with spaces to capacity (0:
 * what it needs plus room for later in-place changes); XP_EINVAL when it does not fit. */
int xp_record_format(const char *base_sha256, xp_patch *const *ps, size_t n, uint64_t capacity,
                     char **text, size_t *len, xp_err *err);


/* A malloc'd copy of a cJSON item printed unformatted, or NULL for NULL. */
char *xp_json_print(const cJSON *item);
/* 1 when a number is an integer in [0, max]; *out gets it. */
int xp_json_uint(const cJSON *item, uint64_t max, uint64_t *out);
#endif
