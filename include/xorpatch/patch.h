/* xorpatch's patch layer: patches (sets of XOR flips on named Q1_0 tensors), their file
 * formats, applying them to a model or an open GGUF, patching GGUF files in place with a
 * journal, and their audit (verify, diff, stack). */
#ifndef XORPATCH_PATCH_H
#define XORPATCH_PATCH_H

#include "xorpatch/model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- patches ------------------------------------------------------------------ */

/* A patch is a set of XOR flips on named Q1_0 tensors; applying it twice restores the
 * bytes. Row: every sign bit of one output row. Block: the 128 sign bits of one block
 * (blocks numbered through the whole tensor: row * (ne0/128) + group). Scale: one bit
 * 0..15 of a block's fp16 scale (byte bit/8, bit bit%8). Mask: an explicit 128-bit mask
 * XORed into a block's sign bytes. Row-group: a block named as (row, group within the
 * row), as Bankai v1 files name it; it becomes a block flip once the tensor's row length
 * is known (xp_patch_bind*). Each kind is one entry of the table xp_flip_kind_of reads. */
enum xp_flip_kind {
    XP_FLIP_ROW = 0,
    XP_FLIP_BLOCK = 1,
    XP_FLIP_SCALE = 2,
    XP_FLIP_MASK = 3,
    XP_FLIP_ROW_GROUP = 4,
    XP_N_FLIP_KINDS
};

typedef struct xp_flip {
    uint32_t tensor;  /* index into xp_patch.tensors */
    uint32_t src;     /* position of the flip in the file it came from (messages) */
    int64_t index;    /* row (ROW, ROW_GROUP) or block (BLOCK, SCALE, MASK) */
    uint32_t group;   /* ROW_GROUP: block within the row */
    uint8_t kind;     /* enum xp_flip_kind */
    uint8_t bit;      /* SCALE: 0..15 */
    uint8_t mask[16]; /* MASK: XORed into the 16 sign bytes */
} xp_flip;
/* What a flip kind is and does, in one place (src/patch/flip.c): its names, how it
 * changes the bytes of a Q1_0 tensor of ne0 columns (index in range), how many bits,
 * which bytes, and which output row, which is what lets the search rerun less after it
 * (a row of an MLP gate or up projection is one column of the activation). */
typedef struct xp_flip_kind_info {
    const char *name; /* in text: "row", "block", "scale bit", "mask", "row group" */
    const char *key;  /* xorpatch/1's flip list and stats key: "rows", "blocks", ... */
    bool by_row;      /* index is a row (else a block of the tensor) */
    /* XORs the flip into the tensor: applying it twice restores the bytes */
    void (*apply)(uint8_t *tensor, int64_t ne0, const xp_flip *f);
    /* weight sign and scale bits it changes; false when that takes ne0 and ne0 is 0 */
    bool (*bits)(const xp_flip *f, int64_t ne0, uint64_t *n);
    /* the bytes of the tensor it lies in: [*off, *off + *len) */
    void (*span)(const xp_flip *f, int64_t ne0, uint64_t *off, uint64_t *len);
    /* the one output row it changes (-1 when it would change more than one) */
    int64_t (*row)(const xp_flip *f, int64_t ne0);
    /* one flip for messages: "row 17", "scale bit 3 of block 9", "row 4 group 2" */
    void (*describe)(const xp_flip *f, char *out, size_t size);
} xp_flip_kind_info;
/* The entry of kind (enum xp_flip_kind), or NULL when it is none. */
const xp_flip_kind_info *xp_flip_kind_of(int kind);

typedef struct xp_patch_tensor {
    char *name;
    int64_t ne0, ne1; /* columns and rows; 0 while unknown */
} xp_patch_tensor;

/* File formats. JSON is the project's own "xorpatch/1"; BINARY is the compact encoding
 * (sorted, delta + varint) with the provenance, BINARY_COMPACT the same without it
 * (name, base fingerprint, shapes and flips only); NEAGARI_LIST is Neagari's minimal
 * JSON list of [layer, "ffn_gate.weight", group] block flips. */
enum xp_patch_format {
    XP_PATCH_JSON = 0,
    XP_PATCH_BINARY = 1,
    XP_PATCH_BINARY_COMPACT = 2,
    XP_PATCH_BANKAI_V1 = 3,
    XP_PATCH_NEAGARI_V2 = 4,
    XP_PATCH_NEAGARI_LIST = 5,
};

/* One patch. Every string is malloc'd and owned by the patch (NULL when unknown); the
 * JSON fields hold the text of one JSON object each. Flips are in canonical order after
 * xp_patch_normalize: tensors sorted by name, flips by (tensor, kind, index, bit/group),
 * identical flips cancelled, masks on one block merged; once every tensor's shape is
 * known also row/block overlaps resolved, so two patches with the same effect have the
 * same flips (a row all of whose blocks are flipped is a row flip, an all-ones mask a
 * block flip). */
typedef struct xp_patch {
    char *name;
    char *description;
    char base_sha256[65]; /* SHA-256 of the unpatched GGUF; "" when the patch names none */
    char *base_model;     /* free-text base name (Bankai / Neagari "base_model") */
    char *tool;           /* "xorpatch 0.1.0", or the tool that made it */
    char *created;        /* ISO 8601 UTC */
    char *architecture;   /* JSON: the base's shape summary */
    char *search;         /* JSON: search settings, probe file hashes, final fitness */
    char *source;         /* JSON: the file this patch was converted or derived from */
    int format;           /* enum xp_patch_format it was read in */
    char *path;           /* the file it was read from, for messages */
    size_t n_tensors;
    xp_patch_tensor *tensors;
    size_t n_flips, cap_flips;
    xp_flip *flips;
    size_t n_listed; /* flips as added (read), before overlaps within the patch merged or
                        cancelled in the canonical form */
    bool canonical; /* flips normalised as far as the known shapes allow */
    bool bound;     /* every tensor's shape is known and the flips fully canonical */
} xp_patch;

int xp_patch_new(xp_patch **out, xp_err *err);
void xp_patch_free(xp_patch *p);
void xp_patch_list_free(xp_patch **ps, size_t n);
/* Adds one flip on a named tensor (f->tensor and f->src are ignored; src becomes the
 * flip's position in the patch). Checks what needs no model: kind, index >= 0, scale
 * bit 0..15, a tensor name of 1..63 bytes. */
int xp_patch_add(xp_patch *p, const char *tensor, const xp_flip *f, xp_err *err);
int xp_patch_add_row(xp_patch *p, const char *tensor, int64_t row, xp_err *err);
int xp_patch_add_block(xp_patch *p, const char *tensor, int64_t block, xp_err *err);
int xp_patch_add_scale_bit(xp_patch *p, const char *tensor, int64_t block, int bit,
                           xp_err *err);
int xp_patch_add_mask(xp_patch *p, const char *tensor, int64_t block, const uint8_t mask[16],
                      xp_err *err);
/* Sorts and cancels (see xp_patch); checks indices against the shapes already known. */
int xp_patch_normalize(xp_patch *p, xp_err *err);
/* Learns every tensor's shape from a model and validates every flip against it before
 * anything is touched: the tensor exists, is a 2-D Q1_0 matrix of the shape the patch
 * records (if any), every row / block / group is in range. Then normalises fully. A
 * failure names the patch file, the flip and what was expected. */
int xp_patch_bind(xp_patch *p, const xp_gguf *g, xp_err *err);
/* The same against a named shape's tensor table (no file needed). */
int xp_patch_bind_shape(xp_patch *p, const xp_shape *s, xp_err *err);
/* The patch's identity: SHA-256 of the binary encoding of its canonical flips alone
 * (tensor names and flips; no name, base or provenance), so one patch has one id in
 * every format. Normalises first. */
int xp_patch_flips_sha256(xp_patch *p, char hex[65], xp_err *err);

/* Per-tensor counts; bits is every weight sign and scale bit the patch flips (row flips
 * count ne0 bits, so bits is 0 with bits_known false while the shape is unknown). */
typedef struct xp_patch_stats {
    union {
        struct {
            uint64_t rows, blocks, scale_bits, masks, row_groups;
        };
        uint64_t by_kind[XP_N_FLIP_KINDS]; /* the same counts by enum xp_flip_kind */
    };
    uint64_t flips;
    uint64_t bits;
    bool bits_known;
    uint64_t weights; /* ne0 * ne1 when the shape is known */
} xp_patch_stats;
void xp_patch_tensor_stats(const xp_patch *p, size_t tensor, xp_patch_stats *s);
void xp_patch_total_stats(const xp_patch *p, xp_patch_stats *s);

/* Reading: one file in any format (found by content: binary magic, else JSON with its
 * "format"/"version" keys, or a top-level list of triples), or with _read_all also a Neagari patch
 * directory (its patch_*.json files in manifest.json's step order; *n_missing counts manifest steps
 * whose file is not there). Extra keys in Bankai / Neagari files are ignored; the
 * project's own format is read strictly. A patch that lists no flips, lists one flip
 * twice (XOR would cancel it), escapes a NUL in a JSON string or holds text that is not
 * valid UTF-8 is an error; the one patch without flips that is read is a search's
 * checkpoint (xp_patch_checkpoint_empty), which commands that change a model refuse. */
int xp_patch_read(xp_patch **out, const char *path, xp_err *err);
/* A patch without flips that carries a search's record ("search"), in the project's
 * JSON or binary format: the checkpoint of a search that has kept nothing yet. */
bool xp_patch_checkpoint_empty(const xp_patch *p);
int xp_patch_read_all(xp_patch ***out, size_t *n, size_t *n_missing, const char *path,
                      xp_err *err);
int xp_patch_parse(xp_patch **out, const void *buf, size_t len, const char *where,
                   xp_err *err);
/* Whether bytes begin as the binary encoding does (its magic). */
bool xp_patch_is_binary(const void *buf, size_t len);
/* Writing: into a malloc'd buffer, or a file (temporary file, fsync, rename). Bankai v1
 * takes row and row-group flips (block flips too once the shape is known); Neagari v2
 * block and scale flips (row flips too once the shape is known); Neagari's list block
 * flips (rows too once the shape is known); anything else is refused, naming the first
 * flip that does not fit. */
int xp_patch_serialize(const xp_patch *p, int format, uint8_t **buf, size_t *len,
                       xp_err *err);
int xp_patch_write(const xp_patch *p, int format, const char *path, xp_err *err);
const char *xp_patch_format_name(int format); /* "xorpatch", "binary", "bankai-v1", ... */
int xp_patch_format_from_name(const char *name); /* -1 when unknown */

/* Applies / reverts a patch on an open GGUF's private map (never the file): binds and
 * validates first, so either every flip lands or none does. With a log, applying a
 * patch already in it and reverting one not in it are refused; without one (NULL) the
 * flips are just XORed. */
int xp_patch_apply(xp_gguf *g, xp_patch *p, xp_patch_log *log, xp_err *err);
int xp_patch_revert(xp_gguf *g, xp_patch *p, xp_patch_log *log, xp_err *err);
/* The same on a loaded model, which keeps the log of what is applied to its weights. */
int xp_model_patch_apply(xp_model *m, xp_patch *p, xp_err *err);
int xp_model_patch_revert(xp_model *m, xp_patch *p, xp_err *err);

/* Adds a patch's flips to an overlay of model m (xorpatch/model.h) after binding the patch
 * to m's file: sequences that run with the overlay compute what m with the patch applied
 * computes. Patches added to one overlay stack as applying them in turn would. */
int xp_patch_overlay(xp_patch *p, xp_model *m, xp_overlay *ov, xp_err *err);

/* What a patched GGUF records (metadata key "xorpatch.applied", one JSON string padded
 * with spaces to a reserved length so it can be rewritten in place): the fingerprint of
 * the unpatched file and every applied patch (name, identity, compact encoding). */
#define XP_PATCH_RECORD_KEY "xorpatch.applied"
typedef struct xp_patch_record {
    char base_sha256[65];
    size_t n;
    xp_patch **patches; /* decoded from the record, in the order applied */
    uint64_t capacity;  /* reserved bytes of the record string */
} xp_patch_record;
/* *present false (and rec empty) when the file has no record. */
int xp_patch_record_read(const xp_gguf *g, xp_patch_record *rec, bool *present, xp_err *err);
void xp_patch_record_free(xp_patch_record *rec);

/* Patching GGUF files. With out == NULL the file is changed in place through a journal
 * beside it (FILE.xpjournal: the byte ranges with their old and new contents, written and
 * fsynced before the first byte of the file changes, removed when done), so a crash at any
 * instant leaves a file that xp_patch_file_recover (which every file operation, and
 * xp_gguf_open, runs first) completes to exactly the patched state, or leaves untouched. In place, the
 * record is rewritten within its reserved length; a file without a record is first
 * rewritten once (through a temporary copy) with room for it. */
typedef struct xp_patch_file_opts {
    bool force; /* apply despite a base fingerprint that differs from the file's */
    /* Test hook: called after every step that changes a file in place (journal written,
     * journal committed, each half of each range, file synced, journal removed). */
    void (*on_step)(void *ctx);
    void *step_ctx;
    xp_progress_fn progress; /* while a whole file is written */
    void *progress_ctx;
} xp_patch_file_opts;

typedef struct xp_patch_file_result {
    char base_sha256[65]; /* fingerprint of the unpatched file ("" when a file without a
                             record was reverted: its base is unknown) */
    bool recovered;       /* an interrupted in-place operation was completed first */
    bool prepared;        /* in place: the file was rewritten once to reserve the record */
    bool exact_base;      /* revert: nothing is left applied and the output's SHA-256
                             equals the base fingerprint */
    size_t n_applied;     /* patches the output records */
    uint64_t bytes_changed; /* in place: bytes rewritten (flips and record) */
} xp_patch_file_result;

/* Writes in ⊕ patches to out (or in place): refuses a patch already recorded in the
 * file, two identical patches, and (unless force) a patch whose base fingerprint differs
 * from the file's (its record's base, else the SHA-256 of the file). */
int xp_patch_file_apply(const char *in, xp_patch *const *ps, size_t n, const char *out,
                        const xp_patch_file_opts *o, xp_patch_file_result *res, xp_err *err);
/* Removes patches (n == 0: every recorded patch, with the flips kept in the record);
 * a patch the record does not list is refused unless force. When nothing is left
 * applied the record key is removed, so the output is byte-identical to the base. */
int xp_patch_file_revert(const char *in, xp_patch *const *ps, size_t n, const char *out,
                         const xp_patch_file_opts *o, xp_patch_file_result *res, xp_err *err);
/* What xp_patch_file_apply checks before it writes, for a front end that applies patches
 * in memory instead (generate --patch, the server's library): the base fingerprint of an
 * open file (its record's base, else the SHA-256 of the file), and whether ps may be
 * applied to it (each patch bound to g; none made for another base unless force, none
 * already recorded in the file, no two the same), with apply's messages. */
int xp_patch_file_base(xp_gguf *g, char base[65], xp_err *err);
int xp_patch_file_check(xp_gguf *g, const char *base, xp_patch *const *ps, size_t n, bool force,
                        xp_err *err);
/* Completes an interrupted in-place operation on path, if its journal says there was
 * one (*recovered tells), and removes the temporaries killed writers of path left. */
int xp_patch_file_recover(const char *path, bool *recovered, xp_err *err);

/* Audit. verify: proves patched == base ⊕ patches bit for bit, tensor by tensor (base's
 * private map is patched in memory on the way); metadata other than the record must be
 * equal too. diff: the patch between two files of one layout (whole rows and blocks as
 * such, other sign changes as masks, scale changes as scale bits). stack: XOR
 * composition (refuses differing base fingerprints unless force). */
typedef struct xp_verify_tensor {
    const char *name;     /* borrowed from the patched file */
    uint64_t bits_changed;  /* Hamming distance patched vs base */
    uint64_t bits_expected; /* Hamming distance (base ⊕ patches) vs base */
    uint64_t bits_wrong;    /* Hamming distance patched vs (base ⊕ patches) */
} xp_verify_tensor;
typedef struct xp_verify_report {
    size_t n; /* tensors with any changed, expected or wrong bit */
    xp_verify_tensor *tensors;
    uint64_t bits_changed, bits_expected, bits_wrong;
    size_t meta_differences; /* metadata keys (other than the record) that differ */
    char first_meta_difference[128];
    bool equal; /* no wrong bit and no metadata difference */
} xp_verify_report;
int xp_patch_verify(const xp_gguf *patched, xp_gguf *base, xp_patch *const *ps, size_t n,
                    xp_verify_report *r, xp_err *err);
void xp_verify_report_free(xp_verify_report *r);
int xp_patch_diff(xp_patch **out, const xp_gguf *a, const xp_gguf *b, xp_err *err);
int xp_patch_stack(xp_patch **out, xp_patch *const *ps, size_t n, bool force, xp_err *err);

#ifdef __cplusplus
}
#endif
#endif
