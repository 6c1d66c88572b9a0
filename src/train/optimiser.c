/* One optimiser step: the step's batch, the forward and backward passes, global-norm
 * clipping and AdamW with bias correction at the schedule's learning rate. */
#include "train/train.h"

#include <math.h>
#include <stdlib.h>

#include "core/alloc.h"

/* AdamW with bias correction; weight decay only on matrices and the embedding. */
static void adamw(xp_trainer *t, float lr, float clip_scale)
{
    const xp_train_opts *o = &t->o;
    double bc1 = 1 - pow(o->beta1, t->step + 1), bc2 = 1 - pow(o->beta2, t->step + 1);
    for (size_t ti = 0; ti < t->n_tens; ti++) {
        const xpt_tensor *x = &t->tens[ti];
        float wd = x->quantised ? o->weight_decay : 0;
        float *p = t->p + x->off, *m = t->m + x->off, *v = t->v + x->off;
        const float *g = t->grad + x->off;
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < x->n; i++) {
            float gi = g[i] * clip_scale;
            m[i] = o->beta1 * m[i] + (1 - o->beta1) * gi;
            v[i] = o->beta2 * v[i] + (1 - o->beta2) * gi * gi;
            float mh = (float)(m[i] / bc1), vh = (float)(v[i] / bc2);
            p[i] -= lr * (mh / (sqrtf(vh) + 1e-8f) + wd * p[i]);
        }
    }
}

int xp_trainer_step(xp_trainer *t, xp_train_stats *st, xp_err *err)
{
    if (!t->n_docs)
        return xp_err_set(err, XP_EINVAL, "train: the corpus has no training items");
    uint32_t B = t->o.batch;
    const int32_t **ids = xp_calloc(B, sizeof *ids);
    size_t *len = xp_calloc(B, sizeof *len), *from = xp_calloc(B, sizeof *from);
    if (!ids || !len || !from) {
        free(ids);
        free(len);
        free(from);
        return xp_err_set(err, XP_ENOMEM, "train: out of memory");
    }
    for (uint32_t j = 0; j < B; j++) {
        size_t di = xpt_batch_doc(t, t->step, j);
        ids[j] = t->doc_ids[di];
        len[j] = t->doc_len[di];
        from[j] = t->doc_from[di];
    }
    xpt_batch b;
    int rc = xpt_batch_init(t, &b, ids, len, from, B, err);
    if (!rc) {
        size_t n_pred;
        double loss = xpt_batch_grad(t, &b, &n_pred);
        double ss = 0;
        for (size_t i = 0; i < t->n_par; i++)
            ss += (double)t->grad[i] * t->grad[i];
        double norm = sqrt(ss);
        float clip = t->o.clip > 0 && norm > t->o.clip ? (float)(t->o.clip / norm) : 1.0f;
        float lr = xpt_lr_at(&t->o, t->step);
        adamw(t, lr, clip);
        t->step++;
        if (st)
            *st = (xp_train_stats){t->step, loss, norm, lr, n_pred};
    }
    xpt_batch_free(&b);
    free(ids);
    free(len);
    free(from);
    return rc;
}

uint32_t xp_trainer_steps_done(const xp_trainer *t) { return t->step; }
