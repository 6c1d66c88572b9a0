/* The random-patch baseline: a searched patch's held-out gain (fixed − broke) against
 * the gains of random patches of its size, the same tensors with the same number of
 * flips of each kind (rows, blocks, scale bits of each bit, masks) per tensor, so what a
 * patch of that size does by chance is measured on the same items. The p-value is the
 * permutation test's, with the +1 correction: (1 + #{random gain ≥ the patch's}) /
 * (1 + N). The base is judged once; the model is left as it was found. */
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/rng.h"
#include "eval/eval_int.h"

double xp_permutation_p(long observed, const long *random, size_t n)
{
    size_t at_least = 0;
    for (size_t i = 0; i < n; i++)
        at_least += random[i] >= observed;
    return (1.0 + (double)at_least) / (1.0 + (double)n);
}

/* The row a flip lies in (its index for row flips, else its block's row). */
static int64_t row_of(const xp_flip *f, int64_t blocks_per_row)
{
    return xp_flip_kind_of(f->kind)->by_row ? f->index : f->index / blocks_per_row;
}

/* Whether flip f of tensor t would meet one already drawn: the same place for its kind
 * and bit, or a row a sign-bit flip of another kind shares (normalising would merge
 * them, and the counts would no longer be the patch's). */
static bool meets(const xp_flip *drawn, size_t n, const xp_flip *f, int64_t bpr)
{
    bool sign = f->kind != XP_FLIP_SCALE;
    for (size_t i = 0; i < n; i++) {
        const xp_flip *d = &drawn[i];
        if (d->kind == f->kind && d->index == f->index && d->bit == f->bit)
            return true;
        if (sign && d->kind != XP_FLIP_SCALE && d->kind != f->kind &&
            row_of(d, bpr) == row_of(f, bpr))
            return true;
    }
    return false;
}

int xp_random_like_patch(const xp_patch *p, const xp_gguf *g, uint64_t seed, xp_patch **out,
                         xp_err *err)
{
    *out = NULL;
    if (!p->bound)
        return xp_err_set(err, XP_EINVAL,
                          "a random patch like another needs it bound to its "
                          "model first");
    xp_patch *r;
    int rc = xp_patch_new(&r, err);
    xp_flip *drawn = rc ? NULL : xp_calloc(p->n_flips + 1, sizeof *drawn);
    if (!rc && !drawn)
        rc = xp_err_set(err, XP_ENOMEM, "out of memory");
    xp_rng rng;
    xp_rng_seed(&rng, seed);
    for (size_t t = 0; t < p->n_tensors && !rc; t++) {
        const xp_patch_tensor *pt = &p->tensors[t];
        int64_t bpr = pt->ne0 / 128, rows = pt->ne1, blocks = rows * bpr;
        size_t n = 0;
        for (size_t i = 0; i < p->n_flips && !rc; i++) {
            const xp_flip *f = &p->flips[i];
            if (f->tensor != t)
                continue;
            int64_t range = xp_flip_kind_of(f->kind)->by_row ? rows : blocks;
            xp_flip nf = *f;
            long tries = 0;
            do
                nf.index = (int64_t)xp_rng_below(&rng, (uint64_t)range);
            while (meets(drawn, n, &nf, bpr) && ++tries < 1000000);
            if (tries >= 1000000)
                rc = xp_err_set(err, XP_EINVAL,
                                "%s: no room for %zu random flips like the "
                                "patch's",
                                pt->name, n + 1);
            else {
                drawn[n++] = nf;
                rc = xp_patch_add(r, pt->name, &nf, err);
            }
        }
    }
    free(drawn);
    if (!rc)
        rc = xp_patch_bind(r, g, err);
    if (rc) {
        xp_patch_free(r);
        return rc;
    }
    *out = r;
    return XP_OK;
}

/* fixed − broke from right-before and right-after. */
static long gain(const bool *before, const bool *after, size_t n)
{
    long d = 0;
    for (size_t i = 0; i < n; i++)
        d += (long)(!before[i] && after[i]) - (long)(before[i] && !after[i]);
    return d;
}

/* The seed of random patch k: apart for each k, the same for the same (seed, k). */
static uint64_t patch_seed(uint64_t seed, size_t k)
{
    xp_rng r;
    xp_rng_seed(&r, seed ^ (0x9e3779b97f4a7c15ull * (k + 1)));
    return xp_rng_u64(&r);
}

void xp_random_baseline_free(xp_random_baseline *b)
{
    if (!b)
        return;
    free(b->random);
    *b = (xp_random_baseline){0};
}

int xp_random_baseline_run(xp_model *m, const xp_probe_set *s, const xp_probe_tokens *pt,
                           xp_patch *patch, const xp_eval_opts *o, size_t n, uint64_t seed,
                           xp_random_baseline *out, xp_err *err)
{
    *out = (xp_random_baseline){.n = n, .seed = seed};
    bool *base = xp_calloc(s->n + 1, sizeof *base), *after = xp_calloc(s->n + 1, sizeof *after);
    out->random = xp_calloc(n + 1, sizeof *out->random);
    int rc = base && after && out->random ? XP_OK : xp_err_set(err, XP_ENOMEM, "out of memory");
    xp_eval_opts quiet = *o;
    quiet.progress = NULL;
    if (!rc)
        rc = xp_eval_judge(m, s, pt, &quiet, NULL, base, err);
    if (!rc)
        rc = xp_eval_judge(m, s, pt, &quiet, patch, after, err);
    if (!rc)
        out->observed = gain(base, after, s->n);
    for (size_t k = 0; k < n && !rc; k++) {
        xp_patch *r;
        if ((rc = xp_random_like_patch(patch, xp_model_gguf(m), patch_seed(seed, k), &r, err)))
            break;
        rc = xp_eval_judge(m, s, pt, &quiet, r, after, err);
        xp_patch_free(r);
        if (!rc)
            out->random[k] = gain(base, after, s->n);
        if (o->progress)
            o->progress(o->progress_ctx, k + 1, n);
    }
    if (!rc) {
        for (size_t k = 0; k < n; k++)
            out->at_least += out->random[k] >= out->observed;
        out->p = xp_permutation_p(out->observed, out->random, n);
    }
    free(base), free(after);
    if (rc)
        xp_random_baseline_free(out);
    return rc;
}
