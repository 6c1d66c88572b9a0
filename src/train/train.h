/* The trainer's insides that its tests look at: the parameter table, and the loss and
 * gradient of a given batch without an optimiser step, for gradient checks against
 * finite differences. */
#ifndef XP_TRAIN_TRAIN_H
#define XP_TRAIN_TRAIN_H
#include "xorpatch.h"

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
#endif
