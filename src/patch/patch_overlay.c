/* A patch as an overlay: each flip applied to the overlay's copy of the one row it lies
 * in, through the flip-kind table, so a batch can run the patch's sequences beside the
 * base's and other patches' (xorpatch/model.h, patch overlays). */
#include "patch/patch_internal.h"

int xp_patch_overlay(xp_patch *p, xp_model *m, xp_overlay *ov, xp_err *err)
{
    int rc = xp_patch_bind(p, xp_model_gguf(m), err);
    for (size_t i = 0; i < p->n_flips && !rc; i++) {
        const xp_flip *f = &p->flips[i];
        const xp_patch_tensor *t = &p->tensors[f->tensor];
        const xp_flip_kind_info *kind = xp_flip_kind_of(f->kind);
        int64_t row = kind->row(f, t->ne0), per_row = t->ne0 / XP_Q1_0_WEIGHTS;
        uint8_t *bytes;
        int64_t ne0;
        if ((rc = xp_overlay_row(ov, t->name, row, &bytes, &ne0, err)))
            break;
        xp_flip local = *f; /* the same flip on a one-row tensor */
        local.index = kind->by_row ? 0 : f->index - row * per_row;
        kind->apply(bytes, ne0, &local);
    }
    return rc ? xp_err_wrap(err, "%s", xp_patch_where(p)) : XP_OK;
}
