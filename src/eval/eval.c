/* Evaluation of patches on a probe set: gaps and greedy generations without and with
 * the patches, per-probe right/wrong by the set's matcher, the paired tallies (fixed,
 * broke, stayed right, stayed wrong) with their statistics, and for verbatim sets the
 * base × patched table of PASS/COPY/PARTIAL/OTHER. The model is left as it was found. */
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "eval/eval_int.h"

void xp_eval_free(xp_eval *e)
{
    if (!e)
        return;
    for (size_t i = 0; i < e->n; i++)
        free(e->probes[i].output[0]), free(e->probes[i].output[1]);
    free(e->probes);
    *e = (xp_eval){0};
}

/* One side (0 base, 1 patched): gaps, generations, judgements. */
static int measure_side(xp_model *m, const xp_probe_set *s, const xp_probe_tokens *pt,
                        const xp_eval_opts *o, int side, xp_eval *e, double *gaps, char **texts,
                        xp_err *err)
{
    xp_metric gm = o->metric == XP_METRIC_GENERATION ? XP_METRIC_SEQ_LOGPROB : o->metric;
    int rc = xp_probe_gaps(m, pt, s->n, gm, gaps, err);
    /* answer_logprob is never > 0: right by its sign is right by the margin's */
    double *margins = NULL;
    if (!rc && !o->generate && gm == XP_METRIC_ANSWER_LOGPROB) {
        if (!(margins = xp_calloc(s->n, sizeof *margins)))
            rc = xp_err_set(err, XP_ENOMEM, "out of memory");
        else
            rc = xp_probe_gaps(m, pt, s->n, XP_METRIC_MARGIN, margins, err);
    }
    if (!rc && o->generate)
        rc = xp_probe_generate(m, s, pt, o->max_tokens, o->progress, o->progress_ctx, texts, err);
    for (size_t i = 0; !rc && i < s->n; i++) {
        xp_eval_probe *p = &e->probes[i];
        p->gap[side] = gaps[i];
        p->verbatim[side] = -1;
        if (!o->generate) {
            p->right[side] = (margins ? margins[i] : gaps[i]) > 0;
            continue;
        }
        p->output[side] = texts[i];
        texts[i] = NULL;
        p->right[side] = xp_probe_output_correct(s, i, p->output[side]);
        const xp_probe *q = &s->probes[i];
        if (s->matcher == XP_MATCH_VERBATIM && q->target_span && q->passage)
            p->verbatim[side] = xp_verbatim_classify(p->output[side], q->target_span, q->passage);
    }
    free(margins);
    return rc;
}

int xp_eval_judge(xp_model *m, const xp_probe_set *s, const xp_probe_tokens *pt,
                  const xp_eval_opts *o, xp_patch *patch, bool *right, xp_err *err)
{
    xp_eval e;
    int rc = xp_eval_run(m, s, pt, patch ? &patch : NULL, patch ? 1 : 0, o, &e, err);
    for (size_t i = 0; !rc && i < s->n; i++)
        right[i] = e.probes[i].right[1];
    if (!rc)
        xp_eval_free(&e);
    return rc;
}

int xp_eval_run(xp_model *m, const xp_probe_set *s, const xp_probe_tokens *pt, xp_patch *const *ps,
                size_t n_ps, const xp_eval_opts *o, xp_eval *out, xp_err *err)
{
    *out = (xp_eval){0};
    out->n = s->n;
    out->probes = xp_calloc(s->n, sizeof *out->probes);
    double *gaps = xp_calloc(s->n, sizeof *gaps);
    char **texts = xp_calloc(s->n, sizeof *texts);
    bool *flags = xp_calloc(4 * s->n, sizeof *flags);
    int rc =
        out->probes && gaps && texts && flags ? XP_OK : xp_err_set(err, XP_ENOMEM, "out of memory");
    if (!rc)
        rc = measure_side(m, s, pt, o, 0, out, gaps, texts, err);
    size_t applied = 0;
    while (!rc && applied < n_ps) {
        if ((rc = xp_model_patch_apply(m, ps[applied], err)))
            break;
        applied++;
    }
    if (!rc && n_ps)
        rc = measure_side(m, s, pt, o, 1, out, gaps, texts, err);
    for (size_t i = 0; !rc && !n_ps && i < s->n; i++) { /* no patch: the base twice */
        xp_eval_probe *p = &out->probes[i];
        p->gap[1] = p->gap[0], p->right[1] = p->right[0], p->verbatim[1] = p->verbatim[0];
        if (p->output[0] && !(p->output[1] = xp_strdup(p->output[0])))
            rc = xp_err_set(err, XP_ENOMEM, "out of memory");
    }
    /* revert in reverse order even after a failure, so the caller's model is unchanged */
    while (applied > 0) {
        xp_err e2 = {0};
        int r2 = xp_model_patch_revert(m, ps[--applied], &e2);
        if (r2 && !rc) {
            rc = r2;
            if (err)
                *err = e2;
        }
    }
    if (!rc) {
        bool *before = flags, *after = flags + s->n, *gb = flags + 2 * s->n, *ga = flags + 3 * s->n;
        for (size_t i = 0; i < s->n; i++) {
            before[i] = out->probes[i].right[0];
            after[i] = out->probes[i].right[1];
            gb[i] = out->probes[i].gap[0] > 0;
            ga[i] = out->probes[i].gap[1] > 0;
            int vb = out->probes[i].verbatim[0], va = out->probes[i].verbatim[1];
            if (vb >= 0 && va >= 0)
                out->verbatim[vb][va]++;
        }
        xp_paired_tally(before, after, NULL, s->n, &out->overall);
        xp_paired_tally(gb, ga, NULL, s->n, &out->by_gap);
    }
    for (size_t i = 0; texts && i < s->n; i++)
        free(texts[i]);
    free(texts), free(gaps), free(flags);
    if (rc)
        xp_eval_free(out);
    return rc;
}
