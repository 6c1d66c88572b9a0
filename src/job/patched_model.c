/* Patches applied to a loaded model in memory with the checks `apply -o` makes, so an
 * inference command given --patch runs exactly the model `apply -o` would have written:
 * the same refusals (another base, already recorded in the file, one patch twice) and
 * the same flips, in the order given. */
#include "xorpatch/job.h"

static bool any_base(xp_patch *const *ps, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (ps[i]->base_sha256[0])
            return true;
    return false;
}

int xp_job_model_patch(xp_model *m, xp_patch *const *ps, size_t n, xp_err *err)
{
    xp_gguf *g = xp_model_gguf(m);
    char base[65] = "";
    /* the file's fingerprint (a hash of the whole file) only when a patch names a base */
    int rc = any_base(ps, n) ? xp_patch_file_base(g, base, err) : XP_OK;
    if (!rc)
        rc = xp_patch_file_check(g, base, ps, n, false, err);
    for (size_t i = 0; i < n && !rc; i++)
        rc = xp_model_patch_apply(m, ps[i], err);
    return rc;
}
