/* xorpatch's GGUF layer: the GGUF reader (files mapped privately, so in-memory flips never
 * reach them) and writer, and the operations on Q1_0 blocks. */
#ifndef XORPATCH_GGUF_H
#define XORPATCH_GGUF_H

#include "xorpatch/core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- GGUF -------------------------------------------------------------------- */

/* Metadata value types, numbered as in the GGUF specification. */
enum xp_gguf_type {
    XP_GGUF_UINT8 = 0,
    XP_GGUF_INT8 = 1,
    XP_GGUF_UINT16 = 2,
    XP_GGUF_INT16 = 3,
    XP_GGUF_UINT32 = 4,
    XP_GGUF_INT32 = 5,
    XP_GGUF_FLOAT32 = 6,
    XP_GGUF_BOOL = 7,
    XP_GGUF_STRING = 8,
    XP_GGUF_ARRAY = 9,
    XP_GGUF_UINT64 = 10,
    XP_GGUF_INT64 = 11,
    XP_GGUF_FLOAT64 = 12,
    XP_GGUF_NTYPES = 13,
};

/* Tensor types xorpatch computes with; any other ggml type id with a known block size
 * is still accepted by the reader (the table lives in gguf_types.c). */
enum xp_tensor_type {
    XP_TYPE_F32 = 0,
    XP_TYPE_F16 = 1,
    XP_TYPE_BF16 = 30,
    XP_TYPE_Q1_0 = 41,
};

/* One metadata value. Scalars and arrays of fixed-size elements point at their raw
 * little-endian bytes in the file (`data`); strings point at their bytes (`data`,
 * `n` = length, not NUL-terminated); arrays of strings or of arrays carry one parsed
 * value per element in `items`. */
typedef struct xp_gguf_value {
    uint32_t type;
    uint32_t elem_type; /* arrays only */
    uint64_t n;         /* string length in bytes, or array element count */
    const uint8_t *data;
    struct xp_gguf_value *items; /* arrays of strings / arrays, else NULL */
} xp_gguf_value;

typedef struct xp_gguf_kv {
    const char *key; /* NUL-terminated copy */
    xp_gguf_value value;
} xp_gguf_kv;

typedef struct xp_gguf_tensor {
    const char *name;   /* NUL-terminated copy */
    uint32_t n_dims;
    int64_t ne[4];      /* ne[0] = columns (fastest), unused dims are 1 */
    uint32_t type;
    uint64_t offset;    /* relative to the start of the data section */
    uint64_t nbytes;
    uint8_t *data;      /* into the private map: writable, never written back */
} xp_gguf_tensor;

/* The largest general.alignment taken (files use 32; more would only pad a rewrite of a
 * tiny file to gigabytes). */
#define XP_GGUF_MAX_ALIGNMENT 65536u

typedef struct xp_gguf {
    char *path;         /* NULL when opened from memory */
    uint32_t version;
    uint64_t alignment; /* a power of two, at most XP_GGUF_MAX_ALIGNMENT */
    uint64_t data_offset; /* file offset of the tensor data section */
    uint64_t file_size;
    size_t n_kv;
    xp_gguf_kv *kv;
    size_t n_tensors;
    xp_gguf_tensor *tensors;
    uint8_t *map;       /* whole file, MAP_PRIVATE (or a private copy) */
    size_t map_len;
    int mapped;
    void *index;        /* name look-up tables (private) */
} xp_gguf;

/* Opens and validates a GGUF v2/v3 file, mapped MAP_PRIVATE so in-memory flips never
 * reach the file. Every failure names the offset and the field. A file whose in-place
 * patch was interrupted (its journal FILE.xpjournal is there) is first completed, or
 * refused when that cannot be done (say, no write access), and the temporaries killed
 * writers of the file left beside it are removed: no reader sees a half-patched file. */
int xp_gguf_open(xp_gguf **out, const char *path, xp_err *err);
/* The same over a caller's buffer (copied; used by tests and fuzzers). */
int xp_gguf_open_memory(xp_gguf **out, const void *buf, size_t len, xp_err *err);
void xp_gguf_close(xp_gguf *g);

const xp_gguf_value *xp_gguf_get(const xp_gguf *g, const char *key);
const xp_gguf_tensor *xp_gguf_tensor_by_name(const xp_gguf *g, const char *name);
/* Typed look-ups: integers convert between widths when the value fits; a missing key
 * is XP_ENOTFOUND, a value of another kind XP_ETYPE. */
int xp_gguf_get_u64(const xp_gguf *g, const char *key, uint64_t *out, xp_err *err);
int xp_gguf_get_i64(const xp_gguf *g, const char *key, int64_t *out, xp_err *err);
int xp_gguf_get_u32(const xp_gguf *g, const char *key, uint32_t *out, xp_err *err);
int xp_gguf_get_f32(const xp_gguf *g, const char *key, float *out, xp_err *err);
int xp_gguf_get_bool(const xp_gguf *g, const char *key, bool *out, xp_err *err);
/* A malloc'd NUL-terminated copy of a string value. */
int xp_gguf_get_str(const xp_gguf *g, const char *key, char **out, xp_err *err);
/* Array of strings: count and element look-up (pointer + length into the map). */
int xp_gguf_get_str_array(const xp_gguf *g, const char *key, const xp_gguf_value **items,
                          uint64_t *n, xp_err *err);

const char *xp_gguf_type_name(uint32_t type);       /* metadata value type */
const char *xp_tensor_type_name(uint32_t type);     /* "q1_0", "f32", ... or NULL */
/* Bytes of a row of ne0 elements of `type`; 0 when ne0 is not a whole number of blocks,
 * the type is unknown or the size does not fit in 64 bits. */
uint64_t xp_tensor_row_bytes(uint32_t type, int64_t ne0);

/* Writer: collects metadata and tensors, then writes a temporary file beside the
 * target and renames it over, so a failed write never leaves a half file. */
typedef struct xp_gguf_writer xp_gguf_writer;
/* Produces a tensor's bytes in chunks at write time (for files too big to hold). */
typedef int (*xp_tensor_fill_fn)(void *ctx, const xp_gguf_tensor *t, uint64_t offset,
                                 uint8_t *dst, size_t n, xp_err *err);

xp_gguf_writer *xp_gguf_writer_new(void);
void xp_gguf_writer_free(xp_gguf_writer *w);
int xp_gguf_writer_set_version(xp_gguf_writer *w, uint32_t version);
/* Adds a key (or replaces an existing one in place). The value is deep-copied. */
int xp_gguf_writer_set(xp_gguf_writer *w, const char *key, const xp_gguf_value *v, xp_err *err);
int xp_gguf_writer_set_u32(xp_gguf_writer *w, const char *key, uint32_t v, xp_err *err);
int xp_gguf_writer_set_i32(xp_gguf_writer *w, const char *key, int32_t v, xp_err *err);
int xp_gguf_writer_set_u64(xp_gguf_writer *w, const char *key, uint64_t v, xp_err *err);
int xp_gguf_writer_set_f32(xp_gguf_writer *w, const char *key, float v, xp_err *err);
int xp_gguf_writer_set_bool(xp_gguf_writer *w, const char *key, bool v, xp_err *err);
int xp_gguf_writer_set_str(xp_gguf_writer *w, const char *key, const char *s, xp_err *err);
int xp_gguf_writer_set_arr(xp_gguf_writer *w, const char *key, uint32_t elem_type,
                           uint64_t n, const void *elems, xp_err *err);
int xp_gguf_writer_set_str_arr(xp_gguf_writer *w, const char *key, uint64_t n,
                               const char *const *strs, const size_t *lens, xp_err *err);
int xp_gguf_writer_remove(xp_gguf_writer *w, const char *key);
/* Tensor bytes either borrowed (`data`, valid until the write) or produced by `fill`. */
int xp_gguf_writer_add_tensor(xp_gguf_writer *w, const char *name, uint32_t n_dims,
                              const int64_t *ne, uint32_t type, const void *data,
                              xp_tensor_fill_fn fill, void *fill_ctx, xp_err *err);
/* Copies every key and tensor of an open file (tensor bytes borrowed from its map). */
int xp_gguf_writer_copy_from(xp_gguf_writer *w, const xp_gguf *g, xp_err *err);
/* Called as tensor bytes are written (done and total in bytes), for a progress bar. */
typedef void (*xp_progress_fn)(void *ctx, uint64_t done, uint64_t total);
void xp_gguf_writer_set_progress(xp_gguf_writer *w, xp_progress_fn fn, void *ctx);
int xp_gguf_writer_write(xp_gguf_writer *w, const char *path, xp_err *err);

/* ---- Q1_0 ------------------------------------------------------------------- */

/* A block: 128 weights in 18 bytes, fp16 scale d then 16 bytes of sign bits, LSB
 * first; bit j set means weight +d, clear means -d. */
#define XP_Q1_0_WEIGHTS 128
#define XP_Q1_0_BYTES 18
#define XP_Q1_0_QS 16

/* Weight j of a block. */
float xp_q1_0_weight(const uint8_t *block, int j);
/* Dequantises ne0 weights (a whole number of blocks) starting at a row's first block. */
void xp_q1_0_dequant_row(const uint8_t *row, int64_t ne0, float *out);
/* Flips in place: every sign bit of row r; every sign bit of block b (blocks numbered
 * through the whole tensor); one bit 0..15 of block b's fp16 scale. */
void xp_q1_0_flip_row(uint8_t *tensor, int64_t ne0, int64_t row);
void xp_q1_0_flip_block(uint8_t *tensor, int64_t block);
void xp_q1_0_flip_scale_bit(uint8_t *tensor, int64_t block, int bit);
/* |d| of block b, and the mean |d| over the blocks of row r. */
float xp_q1_0_block_scale(const uint8_t *tensor, int64_t block);
float xp_q1_0_row_mean_scale(const uint8_t *tensor, int64_t ne0, int64_t row);

#ifdef __cplusplus
}
#endif
#endif
