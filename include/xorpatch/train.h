/* xorpatch's training layer: the deterministic corpus of the tiny model,
 * quantisation-aware training of a small Qwen3 on it, and the tiny model's probe sets. */
#ifndef XORPATCH_TRAIN_H
#define XORPATCH_TRAIN_H

#include "xorpatch/model.h"

#ifdef __cplusplus
extern "C" {
#endif

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
 * pairs, polynomials, numbers, sentences), not only in template, and no held-out prompt
 * repeats (training prompts do: the controls and primality are drilled). */
int xp_corpus_generate(xp_corpus **out, uint64_t seed, xp_err *err);
/* n held-out items of a plain task (arith, deriv, deriv2), distinct, none a training
 * prompt of the corpus of this seed, drawn by a generator of their own (so not the
 * corpus's held-out items, which they may meet); XP_EINVAL when the task has fewer. */
int xp_corpus_heldout_items(uint64_t seed, const char *task, size_t n, xp_corpus **out,
                            xp_err *err);
/* JSON lines, one item a line: {"task","prompt","answer","chat","heldout"}. */
int xp_corpus_write(const xp_corpus *c, const char *path, xp_err *err);
/* The items as plain probes, one {"prompt", "answer"} a line. */
int xp_corpus_write_items(const xp_corpus *c, const char *path, xp_err *err);
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

/* ---- the trainer's passes over a model's own weights ----------------------------- */

/* The trainer's forward and backward passes (the same fp32 Qwen3 layers, in the engine's
 * order of operations) run over the weights of a model as they are at each call, flips
 * included: what the search ranks its candidate flips by. Close to the engine's forward,
 * not bit-identical to its fast path. */
typedef struct xp_grad_seq {
    const int32_t *ids;
    size_t n;
    const uint8_t *want; /* per position: the objective reads the logits there */
} xp_grad_seq;
/* The objective of a pass: from the logits of the wanted positions (n_rows rows of
 * n_vocab, in the order of the sequences and positions) its value, and its gradient with
 * respect to those logits in dlogits (same shape, zeroed on entry). */
typedef int (*xp_grad_objective)(void *ctx, const float *logits, float *dlogits, size_t n_rows,
                                 size_t n_vocab, double *value, xp_err *err);
/* A Q1_0 projection whose weight gradient a pass sums per block: for block b (numbered
 * through the tensor, as block flips number them), the sum over its 128 weights of the
 * weight's sign (+1 where its bit is set) times d objective / d weight. */
typedef struct xp_grad_tensor {
    uint32_t layer;
    int proj;         /* enum xp_proj */
    float *block_sum; /* the caller's, ne1 * ne0 / 128 floats */
} xp_grad_tensor;
/* A trainer over model m (which it borrows): no corpus, no optimiser. */
int xp_trainer_over_model(xp_trainer **out, xp_model *m, xp_err *err);
/* One forward pass of the sequences, the objective, and one backward pass down to the
 * lowest layer asked for, filling each tensor's block sums. *value: the objective's. */
int xp_trainer_block_grads(xp_trainer *t, const xp_grad_seq *seqs, size_t n_seqs,
                           xp_grad_objective objective, void *ctx, xp_grad_tensor *tensors,
                           size_t n_tensors, double *value, xp_err *err);

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
