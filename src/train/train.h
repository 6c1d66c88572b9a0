/* The trainer's insides: what its files share (the trainer, a batch and its activations,
 * and the parts of a step: schedule, quantiser, matrix products, forward and backward
 * passes) and what its tests look at (the parameter table, and the loss and gradient of
 * a given batch without an optimiser step, for gradient checks against finite
 * differences). */
#ifndef XP_TRAIN_TRAIN_H
#define XP_TRAIN_TRAIN_H
#include "xorpatch/train.h"

/* One named parameter tensor inside the flat parameter array. */
typedef struct xpt_tensor {
    char name[48];
    size_t off, n;
    int64_t ne0, ne1;  /* ne1 = 0 for vectors (norm weights) */
    bool quantised;    /* Q1_0 in the forward pass (matrices and the embedding) */
} xpt_tensor;

size_t xpt_n_tensors(const xp_trainer *t);
const xpt_tensor *xpt_tensor_at(const xp_trainer *t, size_t i);
float *xpt_params(xp_trainer *t);
const float *xpt_grads(const xp_trainer *t);
size_t xpt_n_params(const xp_trainer *t);
/* Tokens of the trained embedding rows (sorted ids). */
size_t xpt_n_used(const xp_trainer *t, const int32_t **ids);

/* Mean next-token loss of the given sequences (token ids of the full vocabulary, all
 * in the corpus) and its gradient with respect to every parameter (straight through the
 * quantiser when quantising), left in xpt_grads. */
int xpt_loss_grad(xp_trainer *t, const int32_t *const *seqs, const size_t *lens, size_t n,
                  double *loss, xp_err *err);

/* ---- shared by the trainer's files ------------------------------------------------ */

/* Where a layer's tensors start in the flat parameter array. */
typedef struct xpt_layer_off {
    size_t attn_norm, wq, wk, wv, wo, q_norm, k_norm, ffn_norm, gate, up, down;
} xpt_layer_off;

/* Activations of one batch, kept for the backward pass (all [tokens x width]). */
typedef struct xpt_acts {
    size_t cap_t, cap_p;
    float *x, *xn1, *qp, *kp, *q, *k, *v, *a, *xm, *xn2, *g, *u, *h; /* per layer */
    float *xf, *logits, *p;                                        /* p: attention */
    /* gradients, one layer at a time */
    float *dx, *dxm, *dxn, *dq, *dk, *dv, *da, *dg, *du, *dh, *dlogits;
} xpt_acts;

/* The trainer: the options, the training documents, the parameters with their gradient
 * and AdamW moments, and the forward weights of the current step. */
struct xp_trainer {
    xp_train_opts o;
    xp_shape s;
    size_t n_used;
    int32_t *used;  /* sorted token ids with a trained row */
    int32_t *local; /* n_vocab: row of a token in the trained embedding, or -1 */
    size_t n_docs;  /* training documents */
    int32_t **doc_ids;
    size_t *doc_len;
    size_t *doc_from; /* first token whose prediction is trained: the answer's first */
    size_t n_focus;   /* training documents of the focus task, and their indices */
    size_t *focus;
    size_t n_par;
    float *p, *grad, *m, *v;
    float *w, *wt; /* the forward weights (dequantised), and matrices transposed */
    xpt_tensor *tens;
    size_t n_tens;
    xpt_layer_off *L;
    size_t emb, out_norm;
    uint32_t step;
    size_t rope_max;
    float *rope_cos, *rope_sin;
    xpt_acts a;
    struct xpt_source *src; /* over a model's weights (model_grad.c); NULL: the trainer's */
};

/* The sequences of one forward (and backward) pass, packed one after another. */
typedef struct xpt_batch {
    size_t n, T, P;
    const int32_t *const *ids;
    const size_t *len;
    const size_t *from;     /* per sequence, the first token predicted; NULL: from 1 */
    size_t *start, *pstart; /* first token, first attention score of each sequence */
} xpt_batch;

/* Initialisation and the schedule (schedule.c): a 64-bit mixer (splitmix64's finaliser),
 * the learning rate of a step, document j of a step's batch, and the hash of the
 * options the schedule depends on besides the seed. */
uint64_t xpt_mix64(uint64_t z);
float xpt_lr_at(const xp_train_opts *o, uint32_t step);
size_t xpt_batch_doc(const xp_trainer *t, uint32_t step, uint32_t j);
uint64_t xpt_schedule_hash(const xp_train_opts *o);

/* The quantiser (quantise.c): this step's forward weights into t->w and t->wt, and the
 * Q1_0 bytes of n latent weights. */
void xpt_prepare_weights(xp_trainer *t);
void xpt_quantise_tensor(const float *w, size_t n, uint8_t *out);

/* Matrix products (matmul.c): y += a x; Y[t] = W X[t] with W transposed (wt: [k][n]);
 * dX[t] += W^T dY[t] (w: [n][k]); dW[r] += sum over t of dY[t][r] X[t]. */
void xpt_axpy(float *restrict y, float a, const float *restrict x, size_t n);
void xpt_mm_fwd(float *y, const float *x, const float *wt, size_t T, size_t k, size_t n);
void xpt_mm_bwd_x(float *dx, const float *dy, const float *w, size_t T, size_t k, size_t n);
void xpt_mm_bwd_w(float *dw, const float *dy, const float *x, size_t T, size_t k, size_t n);

/* Where a pass reads matrix `proj` of layer l: transposed ([k][n]) for the forward
 * product, as rows ([n][k]) for the backward one. The trainer's are this step's forward
 * weights; over a model (t->src), the model's weights as they are now, dequantised. */
const float *xpt_matrix(xp_trainer *t, uint32_t l, int proj, bool transposed);

/* Over a model's weights (model_grad.c): its matrices, what becomes of each weight
 * gradient (the per-block sums the caller asked for, or nothing), and its memory. */
const float *xpt_source_matrix(xp_trainer *t, uint32_t l, int proj, bool transposed);
void xpt_source_weight_grad(xp_trainer *t, uint32_t l, int proj, const float *dy,
                            const float *x, size_t T);
void xpt_source_free(struct xpt_source *src);

/* Batches and the forward pass (forward.c): a batch of n sequences (from: the first token
 * each predicts, NULL: from 1) with room for its activations; the forward pass; and the
 * mean cross-entropy of the predicted tokens, its gradient at the logits left in
 * t->a.dlogits. */
int xpt_batch_init(xp_trainer *t, xpt_batch *b, const int32_t *const *ids, const size_t *len,
                   const size_t *from, size_t n, xp_err *err);
void xpt_batch_free(xpt_batch *b);
void xpt_acts_free(xpt_acts *a);
void xpt_forward(xp_trainer *t, const xpt_batch *b);
/* The part of the forward pass after the embedding (in a.x's first rows): every layer and
 * the final norm, into a.xf. */
void xpt_forward_layers(xp_trainer *t, const xpt_batch *b);
double xpt_softmax_loss(xp_trainer *t, const xpt_batch *b, size_t *n_pred);

/* The loss of a batch and every parameter's gradient (backward.c): this step's weights,
 * the forward pass, the loss, and the backward pass into t->grad. Returns the loss. */
double xpt_batch_grad(xp_trainer *t, const xpt_batch *b, size_t *n_pred);
/* The backward pass from the gradient at the final norm's output (in a.dxn) down through
 * layers n_layer-1 .. lowest, leaving the gradient at layer lowest's input in a.dx. */
void xpt_backward_layers(xp_trainer *t, const xpt_batch *b, uint32_t lowest);
#endif
