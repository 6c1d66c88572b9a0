/* Patches on a loaded model: applying one changes what the model computes, reverting it
 * restores every logit bit for bit, and the model's log refuses a second application
 * (which XOR would turn into a silent revert) and a revert of what is not applied. */
#include <string.h>

#include "testutil.h"
#include "xorpatch.h"

Test(model_patch, apply_changes_logits_and_revert_restores_them_exactly)
{
    char path[512];
    xp_test_tiny_model(path, sizeof path);
    xp_model *m;
    xp_err err = {0};
    cr_assert_eq(xp_model_open(&m, path, &err), XP_OK, "%s", err.msg);
    size_t V = xp_model_shape(m)->n_vocab;
    int32_t tok[] = {785, 6722, 315, 9625, 374};
    xp_seq s = {NULL, tok, 5, NULL};
    float *base = malloc(V * sizeof *base), *now = malloc(V * sizeof *now);
    cr_assert_eq(xp_forward(m, XP_PATH_FAST, &s, 1, base, &err), XP_OK);

    xp_patch *p;
    cr_assert_eq(xp_patch_new(&p, &err), XP_OK);
    for (int r = 0; r < 40; r++)
        cr_assert_eq(xp_patch_add_row(p, "blk.1.ffn_up.weight", r * 7, &err), XP_OK, "%s",
                     err.msg);
    cr_assert_eq(xp_patch_add_scale_bit(p, "blk.0.ffn_gate.weight", 3, 9, &err), XP_OK);
    cr_assert_eq(xp_model_patch_apply(m, p, &err), XP_OK, "%s", err.msg);
    cr_expect_eq(xp_model_patches(m)->n, 1);
    cr_assert_eq(xp_forward(m, XP_PATH_FAST, &s, 1, now, &err), XP_OK);
    cr_expect(memcmp(now, base, V * sizeof *now) != 0, "the patch changes the logits");

    cr_expect_neq(xp_model_patch_apply(m, p, &err), XP_OK);
    cr_expect(strstr(err.msg, "already"), "%s", err.msg);

    cr_assert_eq(xp_model_patch_revert(m, p, &err), XP_OK, "%s", err.msg);
    cr_expect_eq(xp_model_patches(m)->n, 0);
    cr_assert_eq(xp_forward(m, XP_PATH_FAST, &s, 1, now, &err), XP_OK);
    cr_expect(memcmp(now, base, V * sizeof *now) == 0, "revert restores every bit");
    cr_expect_neq(xp_model_patch_revert(m, p, &err), XP_OK);

    xp_patch_free(p);
    free(base), free(now);
    xp_model_close(m);
}
