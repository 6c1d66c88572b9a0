/* What the patch files share and do not export. They form a tree; each file calls only
 * files of the groups listed before its own:
 *   1. the patch (patch.c: building, canonical form, binding, stats) and the flip kinds
 *      (flip.c);
 *   2. the JSON helpers (patch_json_util.c) and the provenance object
 *      (patch_provenance.c);
 *   3. the codecs: binary (patch_bin.c), then xorpatch/1 (patch_own.c), and Bankai v1
 *      (patch_bankai.c), Neagari v2 (patch_neagari.c) and Neagari's list of triples
 *      (patch_neagari_list.c) over what those share (patch_foreign.c, patch_foreign.h);
 *   4. the format dispatcher (patch_format.c: read, parse, serialise, write by format);
 *   5. what works on patches and files: applying (patch_apply.c), the record a patched
 *      file keeps (patch_record.c), patching files in place (patch_file.c) and the audit
 *      (patch_audit.c). */
#ifndef XP_PATCH_INTERNAL_H
#define XP_PATCH_INTERNAL_H
#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

#include "core/file.h"
#include "xorpatch/patch.h"

/* ---- 1. the patch ------------------------------------------------------------------ */

/* The largest row or block index any patch may name (2^40 blocks would be 18 TB of one
 * tensor): one bound for every format, and small enough for JSON's doubles. */
#define XP_PATCH_MAX_INDEX ((int64_t)1 << 40)
/* The largest layer a patch file may name by number. */
#define XP_PATCH_MAX_LAYER 99999
/* The most flips one patch may hold (a search's patch has hundreds; a whole-model diff of
 * unrelated files is refused rather than spelled out block by block). */
#define XP_PATCH_MAX_FLIPS (1 << 22)
/* The widest row a patch file may record for a tensor (Bonsai's widest is 12,288): it
 * bounds how many block flips one row flip can become, so a small file cannot expand
 * into millions of flips. Shapes learnt from a model are not limited. */
#define XP_PATCH_MAX_COLUMNS (1 << 20)

/* Name of the file (or "<memory>") a patch's messages cite. */
const char *xp_patch_where(const xp_patch *p);
/* "TENSOR row 17", "TENSOR scale bit 3 of block 9", ... for messages. */
void xp_flip_describe(const xp_patch *p, const xp_flip *f, char *out, size_t size);

/* Refuses a patch read from a file that lists one flip twice (same tensor, kind, index,
 * bit, group and mask): XOR would cancel it silently. Every reader calls it before
 * normalising; the error names the file, both positions and the flip. */
int xp_patch_refuse_repeats(const xp_patch *p, xp_err *err);

/* ---- 2. JSON helpers and provenance ---------------------------------------------- */

/* A malloc'd copy of a cJSON item printed unformatted, or NULL for NULL. */
char *xp_json_print(const cJSON *item);
/* 1 when a number is an integer in [0, max]; *out gets it. */
int xp_json_uint(const cJSON *item, uint64_t max, uint64_t *out);
/* s is 64 lowercase hex digits (a SHA-256). */
bool xp_hex64_valid(const char *s);
/* A format error "WHERE: what"; returns XP_EFORMAT. */
int xp_json_fail(xp_err *err, const char *where, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int xp_json_oom(xp_err *err, const char *where);
/* A string member, or an object member kept as its JSON text, copied into *dst (absent:
 * left alone); another type is an error. */
int xp_json_take_string(const cJSON *o, const char *key, char **dst, const char *where,
                        xp_err *err);
int xp_json_take_object(const cJSON *o, const char *key, char **dst, const char *where,
                        xp_err *err);
/* A member that must be an integer from 0 to max (path names the object in messages). */
int xp_json_member_uint(const cJSON *o, const char *key, uint64_t max, uint64_t *out,
                        const char *where, const char *path, xp_err *err);
/* Every key of o is one of allowed (NULL-terminated). */
int xp_json_check_keys(const cJSON *o, const char *const *allowed, const char *where,
                       const char *path, xp_err *err);
/* The 1-based line and column of at in text, for messages. */
void xp_json_line_col(const char *text, const char *at, int *line, int *col);
/* Refuses JSON text (already parsed) with a NUL escaped inside a string ("\u0000"),
 * naming the line, column and the key it belongs to: C strings would cut it short. */
int xp_json_refuse_nul(const char *text, size_t len, const char *where, xp_err *err);
/* Adds the JSON text (when it parses) as member key. */
void xp_json_add_text(cJSON *o, const char *key, const char *text);

/* The provenance fields as one JSON object (for the binary format) and back. */
cJSON *xp_patch_provenance_json(const xp_patch *p);
int xp_patch_provenance_from_json(xp_patch *p, const cJSON *o, const char *where, xp_err *err);

/* ---- 3. the codecs ------------------------------------------------------------------ */

/* Binary. flags select the optional parts (XP_BIN_*). */
enum { XP_BIN_BASE = 1, XP_BIN_NAME = 2, XP_BIN_PROVENANCE = 4, XP_BIN_SHAPES = 8 };
int xp_patch_encode(const xp_patch *p, unsigned flags, uint8_t **buf, size_t *len, xp_err *err);
int xp_patch_decode(xp_patch **out, const uint8_t *buf, size_t len, const char *where, xp_err *err);
/* Whether bytes begin as the binary magic does, as far as they go (a cut file too). */
bool xp_patch_binary_prefix(const void *buf, size_t len);

/* The JSON formats, by their "format" strings. Each reads its format from a parsed root
 * into p (what every JSON format shares is checked by the dispatcher), and writes a
 * canonical patch as one JSON object, or refuses a flip the format cannot hold. */
#define XP_PATCH_FORMAT_OWN "xorpatch/1"
#define XP_PATCH_FORMAT_BANKAI "bankai_row_xor_v1"
#define XP_PATCH_FORMAT_NEAGARI "bankai_group_xor_v2"
int xp_patch_own_read(xp_patch *p, const cJSON *root, const char *where, xp_err *err);
int xp_patch_own_write(const xp_patch *p, cJSON **out, xp_err *err);
int xp_patch_bankai_read(xp_patch *p, const cJSON *root, const char *where, xp_err *err);
int xp_patch_bankai_write(const xp_patch *p, cJSON **out, xp_err *err);
int xp_patch_neagari_read(xp_patch *p, const cJSON *root, const char *where, xp_err *err);
int xp_patch_neagari_write(const xp_patch *p, cJSON **out, xp_err *err);
/* Neagari's list of [layer, projection, group] triples: root is a JSON array. */
int xp_patch_neagari_list_read(xp_patch *p, const cJSON *root, const char *where, xp_err *err);
int xp_patch_neagari_list_write(const xp_patch *p, cJSON **out, xp_err *err);
/* A Neagari patch directory's patch_*.json names (malloc'd), in its manifest.json's step
 * order, then the others sorted; *missing counts manifest steps whose file is absent.
 * A directory without patch files is XP_ENOTFOUND. */
int xp_patch_neagari_dir(const char *dir, char ***names, size_t *n, size_t *missing, xp_err *err);

/* ---- 5. the record ------------------------------------------------------------------ */

/* The record string for base_sha256 and patches, padded with spaces to capacity (0:
 * what it needs plus room for later in-place changes); XP_EINVAL when it does not fit. */
int xp_record_format(const char *base_sha256, xp_patch *const *ps, size_t n, uint64_t capacity,
                     char **text, size_t *len, xp_err *err);
#endif
