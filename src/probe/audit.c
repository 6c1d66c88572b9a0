/* The probe audit, run before a search and as its own command: which probes the chosen
 * metric cannot see (dead), which the legacy single-token rule kills, how far down the
 * model's ranking each distractor is, whether the token measured is the one the model
 * would emit, which probes are already solved, and which categories are one contrast
 * repeated (many probes that test one thing). */
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "xorpatch/probe.h"

void xp_audit_free(xp_audit *a)
{
    if (!a)
        return;
    for (size_t i = 0; i < a->n; i++)
        free(a->probes[i].output);
    for (size_t i = 0; i < a->n_categories; i++)
        free(a->categories[i].name);
    free(a->probes);
    free(a->categories);
    *a = (xp_audit){0};
}

/* Categories in order of first appearance, with their distinct (correct, wrong) pairs. */
static int tally_categories(const xp_probe_set *s, xp_audit *a, xp_err *err)
{
    size_t *cat = xp_calloc(s->n, sizeof *cat);
    a->categories = xp_calloc(s->n, sizeof *a->categories);
    if (!cat || !a->categories) {
        free(cat);
        return xp_err_set(err, XP_ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < s->n; i++) {
        const xp_probe *p = &s->probes[i];
        size_t c = 0;
        while (c < a->n_categories && strcmp(a->categories[c].name, p->category))
            c++;
        if (c == a->n_categories) {
            if (!(a->categories[c].name = xp_strdup(p->category))) {
                free(cat);
                return xp_err_set(err, XP_ENOMEM, "out of memory");
            }
            a->n_categories++;
        }
        cat[i] = c;
        xp_audit_category *ac = &a->categories[c];
        ac->n++;
        bool seen = false, seen_anywhere = false;
        for (size_t j = 0; j < i && !seen; j++) {
            bool same =
                !strcmp(s->probes[j].correct, p->correct) &&
                !strcmp(s->probes[j].wrong ? s->probes[j].wrong : "", p->wrong ? p->wrong : "");
            seen_anywhere = seen_anywhere || same;
            seen = same && cat[j] == c;
        }
        seen ? ac->duplicates++ : ac->contrasts++;
        a->contrasts += !seen_anywhere;
    }
    for (size_t c = 0; c < a->n_categories; c++) {
        a->categories[c].one_contrast = a->categories[c].n > 1 && a->categories[c].contrasts == 1;
        a->one_contrast_categories += a->categories[c].one_contrast;
    }
    free(cat);
    return XP_OK;
}

int xp_probe_audit(xp_model *m, const xp_probe_set *s, const xp_probe_tokens *pt, xp_metric metric,
                   bool generate, xp_audit *out, xp_err *err)
{
    *out = (xp_audit){0};
    out->metric = metric;
    out->n = s->n;
    xp_probe_score *sc = xp_calloc(s->n, sizeof *sc);
    char **texts = generate ? xp_calloc(s->n, sizeof *texts) : NULL;
    out->probes = xp_calloc(s->n, sizeof *out->probes);
    int rc = sc && out->probes && (texts || !generate)
                 ? XP_OK
                 : xp_err_set(err, XP_ENOMEM, "out of memory");
    if (!rc)
        rc = xp_probe_scores(m, pt, s->n, metric, sc, err);
    if (!rc && generate)
        rc = xp_probe_generate(m, s, pt, 0, NULL, NULL, texts, err);
    if (!rc)
        rc = tally_categories(s, out, err);
    for (size_t i = 0; !rc && i < s->n; i++) {
        xp_audit_probe *p = &out->probes[i];
        p->score = sc[i];
        p->dead = xp_probe_dead(&pt[i], metric);
        p->dead_token_gap = xp_probe_dead(&pt[i], XP_METRIC_TOKEN_GAP);
        p->emitted_measured =
            sc[i].emitted == sc[i].measured[0] || sc[i].emitted == sc[i].measured[1];
        p->output = texts ? texts[i] : NULL;
        p->solved = !p->dead && (metric == XP_METRIC_ANSWER_LOGPROB ? sc[i].margin : sc[i].gap) > 0;
        if (metric == XP_METRIC_GENERATION)
            p->solved = p->output && xp_probe_output_correct(s, i, p->output);
        out->dead += p->dead;
        out->dead_token_gap += p->dead_token_gap;
        out->solved += p->solved;
        out->not_emitted += !p->emitted_measured;
    }
    if (rc && texts)
        for (size_t i = 0; i < s->n; i++)
            free(texts[i]);
    free(texts);
    free(sc);
    if (rc)
        xp_audit_free(out);
    return rc;
}
