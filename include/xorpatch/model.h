/* xorpatch's model layer: Qwen3 shapes and synthetic models, the model over a mapped
 * GGUF with its two forward paths, KV caches, generation and perplexity, and the log of
 * the patches applied to it. Its last sections are for the layers above (the patch,
 * search and train layers): the model's weight views, the tree batch, the fp32
 * operations of a layer and the metadata of a Qwen3 file. */
#ifndef XORPATCH_MODEL_H
#define XORPATCH_MODEL_H

#include "xorpatch/tok.h"

#ifdef __cplusplus
extern "C" {
#endif

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

/* ---- tensor names: the projections of a layer ------------------------------- */

/* The seven projection matrices of a Qwen3 layer, numbered in the order of the --proj
 * names gate,up,down,q,k,v,o (a set of them is the bits 1 << XP_PROJ_*). */
enum xp_proj {
    XP_PROJ_GATE = 0,
    XP_PROJ_UP,
    XP_PROJ_DOWN,
    XP_PROJ_Q,
    XP_PROJ_K,
    XP_PROJ_V,
    XP_PROJ_O,
    XP_N_PROJ
};
/* The vocabularies a projection is named in: the GGUF tensor's ("ffn_gate", of the
 * tensor blk.L.ffn_gate.weight), MLX's as Bankai v1 patches use it ("gate_proj"),
 * Neagari v2 patches' ("ffn_gate.weight") and the command line's ("gate"). */
enum xp_naming {
    XP_NAMING_GGUF = 0,
    XP_NAMING_MLX,
    XP_NAMING_NEAGARI,
    XP_NAMING_CLI,
    XP_N_NAMINGS
};
/* The widths of a layer as the model shape names them: n_embd, n_ff, n_head * head_dim
 * (queries) and n_head_kv * head_dim (keys and values). */
enum xp_dim { XP_DIM_EMBD = 0, XP_DIM_FF, XP_DIM_Q, XP_DIM_KV };

/* One projection: its names, its role, and its place in a file. */
typedef struct xp_proj_info {
    const char *name[XP_N_NAMINGS]; /* indexed by enum xp_naming */
    bool mlp;                       /* part of the MLP, else of attention */
    uint8_t in, out;                /* enum xp_dim of its input (columns, ne0) and output
                                       (rows, ne1): an MLP projection whose output is n_ff
                                       (gate, up) makes one activation column per row */
    uint8_t file_order;             /* 0..6: its place among a layer's projections in a GGUF
                                       file, llama.cpp's order q, k, v, o, gate, up, down */
} xp_proj_info;

/* The entry of a projection, or NULL when proj is not one. */
const xp_proj_info *xp_proj_info_of(int proj);
/* The projection whose file_order is order, or -1. */
int xp_proj_at_file_order(int order);
/* The projection a name stands for in one vocabulary (enum xp_naming), or -1. */
int xp_proj_find(const char *name, int naming);
/* The names asked most: the command line's and the GGUF tensor's ("?" when proj is not a
 * projection), and the projection of a command-line name (-1 when none). */
const char *xp_proj_name(int proj);      /* "gate", "up", ... "o" */
const char *xp_proj_tensor(int proj);    /* "ffn_gate", "ffn_up", ... "attn_output" */
int xp_proj_from_name(const char *name); /* NULL is no name */
/* A projection's [ne0, ne1] (columns, rows) in a model of shape s. */
void xp_proj_shape(const xp_shape *s, int proj, int64_t *ne0, int64_t *ne1);

/* A layer's tensor is named "blk.LAYER.NAME.weight", NAME a projection's GGUF name or a
 * norm's ("attn_norm", "attn_q_norm", "attn_k_norm", "ffn_norm"). xp_tensor_name writes
 * it (and returns its length, as snprintf does: XP_TENSOR_NAME_MAX bytes hold every
 * projection's and norm's); xp_tensor_name_parse reads a projection's back: its number
 * (enum xp_proj) and *layer, or -1 for any name but exactly "blk.", a decimal layer below
 * 2^32 without leading zeros, ".", a projection's GGUF name and ".weight". */
#define XP_TENSOR_NAME_MAX 64
int xp_tensor_name(char *out, size_t size, uint32_t layer, const char *name);
int xp_tensor_name_parse(const char *name, uint32_t *layer);

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

/* ---- patch overlays: one batch, many patches -------------------------------------- */

/* The rows a patch changes, copied beside the shared base weights: a sequence whose cache
 * carries an overlay runs (fast path only) as if the patch were applied, bit for bit,
 * while the other sequences of its batch run with theirs or the base. The patch layer
 * fills one from a patch (xp_patch_overlay); an overlay must outlive every cache that
 * carries it and is never changed while one runs. */
typedef struct xp_overlay xp_overlay;
int xp_overlay_new(xp_overlay **out, const xp_model *m, xp_err *err);
void xp_overlay_free(xp_overlay *ov);
/* The bytes of row `row` of a Q1_0 matrix (a tensor name of the model: a projection,
 * token_embd.weight or output.weight) as the overlay holds it, a copy of the base row
 * made on first use, for the caller to flip; *ne0 its columns. */
int xp_overlay_row(xp_overlay *ov, const char *tensor, int64_t row, uint8_t **bytes,
                   int64_t *ne0, xp_err *err);
/* Rows held (memory: that many rows of their tensors). */
size_t xp_overlay_rows(const xp_overlay *ov);
/* The overlay the cache's sequence runs with from its next token (NULL: the base). */
void xp_kv_set_overlay(xp_kv *kv, const xp_overlay *ov);

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

/* One sequence's generation a step at a time, for callers that run the forward passes
 * themselves (a server batching many sequences): the stop rules and text hand-out of
 * xp_generate, which is built on it. The caller prefills the prompt, then repeatedly
 * samples from the last logits (xp_decoder_sample, the sampler's seeded state) and hands
 * the token to xp_decoder_take, which calls o->on_token with the text that became final,
 * until xp_decoder_finish says why it ended. At most xp_decoder_max_new tokens are taken
 * (-n capped by the context after the prompt); each token taken but the end of sequence
 * must be run before the next is sampled. */
enum xp_finish { XP_FINISH_NONE = 0, XP_FINISH_STOP, XP_FINISH_LENGTH };
typedef struct xp_decoder xp_decoder;
int xp_decoder_new(xp_decoder **out, const xp_model *m, size_t n_prompt, const xp_gen_opts *o,
                   xp_err *err);
void xp_decoder_free(xp_decoder *d);
size_t xp_decoder_max_new(const xp_decoder *d);
/* Tokens taken so far, an end of sequence not counted. */
size_t xp_decoder_tokens(const xp_decoder *d);
int32_t xp_decoder_sample(xp_decoder *d, const float *logits);
int xp_decoder_take(xp_decoder *d, int32_t id, xp_err *err);
/* XP_FINISH_NONE while going on; STOP: end of sequence, a stop string, or on_token asked
 * to stop; LENGTH: the token limit. */
int xp_decoder_finish(const xp_decoder *d);

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

/* ---- patches applied to a model ----------------------------------------------- */

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
/* The patches applied to a loaded model's weights (xp_model_patch_apply keeps it). */
const xp_patch_log *xp_model_patches(const xp_model *m);

/* ---- for the layers above: the model's weights ----------------------------------- */

/* What the layers above build on besides the API above (not a stable API): views of the
 * model's weights in its private map, which the patch and search layers flip in place. */

/* A 2-D weight in the map: ne0 inputs (columns), ne1 outputs (rows). */
typedef struct xp_weight {
    const char *name;
    uint32_t type;
    int64_t ne0, ne1;
    uint64_t row_bytes;
    uint8_t *data;
} xp_weight;

typedef struct xp_layer {
    float *attn_norm, *q_norm, *k_norm, *ffn_norm; /* fp32 copies */
    xp_weight wq, wk, wv, wo, gate, up, down;
} xp_layer;

/* The weights of layer `layer` (below n_layer). Views of the map, which a flip changes
 * whether or not the model is const. */
xp_layer *xp_model_layer(const xp_model *m, uint32_t layer);
/* The weight of projection proj (enum xp_proj) of a layer. */
xp_weight *xp_proj_weight(xp_layer *L, int proj);
/* The token embedding, the LM head (the embedding when tied) and the final norm's
 * weights (fp32, n_embd). */
const xp_weight *xp_model_embedding(const xp_model *m);
const xp_weight *xp_model_lm_head(const xp_model *m);
const float *xp_model_output_norm(const xp_model *m);
/* Row r of a weight of any supported type as fp32 (ne0 values). */
void xp_weight_row(const xp_weight *w, int64_t r, float *out);
/* The log of the patches applied to the model, which the patch layer keeps. */
xp_patch_log *xp_model_patch_log(xp_model *m);

/* ---- for the layers above: the tree batch ----------------------------------------- */

/* Token sequences evaluated again and again while the weights change, as a search does.
 * An item (a probe) has sequences (its prompt followed by each answer) and asks for
 * outputs at some of their positions. All sequences of all items form one token trie:
 * a run computes every distinct prefix once, whichever items share it, and each other
 * sequence continues it through a cache fork. The tokens form one packed batch; the
 * residual stream is kept at chosen layers, so that a change in layer L recomputes from
 * the nearest kept layer at or below L (from L's MLP, when only that changed); and an
 * output is either every LM-head row or
 * only a fixed subset of rows. Every output is bit-identical to running its sequence
 * alone with xp_forward (fast path), whatever else is run with it. */

typedef struct xp_tree_seq {
    const int32_t *tok; /* every token is run: at least one */
    size_t n;
} xp_tree_seq;

/* The final hidden state at position pos of the item's sequence seq, through the LM
 * head: every vocabulary row (full), or the batch's row subset only. */
typedef struct xp_tree_out {
    uint32_t seq, pos;
    bool full;
} xp_tree_out;

typedef struct xp_tree_item {
    const xp_tree_seq *seq;
    size_t n_seq;
    const xp_tree_out *out;
    size_t n_out;
} xp_tree_item;

typedef struct xp_tree_batch xp_tree_batch;

/* Packs the items (copied). ckpt: the layers at which to keep the residual, any order,
 * and with mlp also their mid-points and MLP activations (for XP_CHANGE_FFN_ROW and
 * XP_CHANGE_DOWN); rows: the row subset (n_rows ids, copied, in this order) that outputs not marked full
 * read; NULL when every output is full. */
int xp_tree_batch_new(xp_tree_batch **out, xp_model *m, const xp_tree_item *items, size_t n,
                      const uint32_t *ckpt, size_t n_ckpt, bool mlp, const int32_t *rows,
                      size_t n_rows, xp_err *err);
void xp_tree_batch_free(xp_tree_batch *b);

size_t xp_tree_batch_count(const xp_tree_batch *b); /* items */
size_t xp_tree_batch_width(const xp_tree_batch *b); /* n_rows: values per subset output */
/* Tokens a run over the items sel[0..n_sel) computes (every item when sel is NULL). */
size_t xp_tree_batch_tokens(xp_tree_batch *b, const size_t *sel, size_t n_sel);

/* Receives the outputs of item sel[s] (of item s when sel is NULL), valid during the
 * call: its full outputs in their order, n_vocab values each, and its subset outputs in
 * their order, xp_tree_batch_width values each. Calls for different items may run at the
 * same time on different threads. A non-zero return stops the run and is returned. */
typedef int (*xp_tree_out_fn)(void *ctx, size_t s, const float *full, const float *subset);

/* What changed in the weights since the last commit: nothing below `layer`; in that
 * layer anything (XP_CHANGE_LAYER), only one row of the gate or up projection
 * (XP_CHANGE_FFN_ROW: row `row`), or only the down projection (XP_CHANGE_DOWN). An MLP
 * change starts the run at the layer's MLP when that layer's mid-point and activation
 * are kept: the gate or up row changes one column of the activation, and nothing else
 * of the layer before its down projection. */
enum { XP_CHANGE_LAYER, XP_CHANGE_FFN_ROW, XP_CHANGE_DOWN };
typedef struct xp_tree_change {
    uint32_t layer;
    int kind;
    int64_t row;
} xp_tree_change;

/* Runs the items sel[0..n_sel) (every item when sel is NULL; repeats allowed) with the
 * weights as they are now, which the caller promises differ from the last committed ones
 * only as `change` says (NULL: nothing is assumed), and hands each item's outputs to fn.
 * The LM head runs over a few items at a time, so the full vocabulary's logits of a
 * large batch never have to fit in memory at once. */
int xp_tree_batch_run(xp_tree_batch *b, const size_t *sel, size_t n_sel,
                      const xp_tree_change *change, xp_tree_out_fn fn, void *ctx, xp_err *err);
/* Takes the weights of the last run as the committed ones: when that run was over every
 * item, the residuals it computed become the kept ones; after a run over some items the
 * kept residuals are forgotten, and the next run starts from scratch. */
void xp_tree_batch_commit(xp_tree_batch *b);

/* ---- for the layers above: the fp32 operations of a layer -------------------------- */

/* The fp32 operations of a Qwen3 layer that both forward paths share: RMSNorm, RoPE
 * (NeoX style: the halves of a head are rotated against each other), causal attention
 * of one query head over a sequence's cache, SwiGLU, and the sequential dot product of
 * the plain path. Each is written once so that the two paths differ only in how they
 * multiply by a weight matrix. */

/* out = x / sqrt(mean(x^2) + eps) * w, n values (out may alias x). */
void xp_rmsnorm(float *out, const float *x, const float *w, size_t n, float eps);
/* cos and sin of the rotation angles of position pos: half = head_dim / 2 values each,
 * angle i = pos * base^(-2i / head_dim), computed in double. */
void xp_rope_angles(int64_t pos, size_t half, float base, float *cos_out, float *sin_out);
/* Rotates one head in place with the angles of its position. */
void xp_rope_apply(float *head, size_t half, const float *cos_v, const float *sin_v);
/* One query head q attends to positions 0..n-1 of a cache laid out with `stride` floats
 * between positions (keys k, values v, head_dim values each); out gets head_dim values;
 * scores is scratch for n floats. */
void xp_attend(const float *q, const float *k, const float *v, size_t n, size_t stride,
               size_t head_dim, float scale, float *scores, float *out);
/* Up to XP_ATTEND_BLOCK query heads that share one KV head and one cache, query j seeing
 * positions 0..n[j]-1, each with exactly xp_attend's arithmetic: the block only lets
 * them share every key and value read. scores is scratch for XP_ATTEND_BLOCK * max(n). */
#define XP_ATTEND_BLOCK 16
void xp_attend_block(const float *const *q, const size_t *n, size_t nq, const float *k,
                     const float *v, size_t stride, size_t head_dim, float scale, float *scores,
                     float *const *out);
/* out[i] = silu(gate[i]) * up[i]. */
void xp_swiglu(float *out, const float *gate, const float *up, size_t n);
/* Sum of a[i] * b[i] in index order, in fp32. */
float xp_dot_f32(const float *a, const float *b, size_t n);

/* ---- for the layers above: the metadata of a Qwen3 file ---------------------------- */

/* The qwen3.* and general.* GGUF keys of a Qwen3 Q1_0 model, written in one place so
 * that every model xorpatch makes (synthetic or trained) carries the same metadata as
 * llama.cpp's converter writes for the reference files. */

/* Adds general.* (architecture, type, name, description, file type) and the qwen3.*
 * hyper-parameters of s to w. */
int xp_qwen3_write_metadata(xp_gguf_writer *w, const xp_shape *s, const char *name,
                            const char *description, xp_err *err);

#ifdef __cplusplus
}
#endif
#endif
