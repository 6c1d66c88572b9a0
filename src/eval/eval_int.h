/* What the evaluation files share inside the eval layer: judging a set right or wrong
 * with a patch applied (eval.c), for the random-patch baseline (baseline.c). */
#ifndef XP_EVAL_INT_H
#define XP_EVAL_INT_H
#include "xorpatch/eval.h"

/* right[i]: probe i right on the model with patch applied (NULL: as it is), judged as
 * xp_eval_run judges; the patch is reverted after, also on failure. */
int xp_eval_judge(xp_model *m, const xp_probe_set *s, const xp_probe_tokens *pt,
                  const xp_eval_opts *o, xp_patch *patch, bool *right, xp_err *err);
#endif
