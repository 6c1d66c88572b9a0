/* The eval report (job.h): patches judged on one or two probe sets, as text for a person
 * (the probes that changed, or every probe, the categories, the paired statistics and
 * the verbatim cross-table) or as one JSON object for a program. */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "core/utf8.h"
#include "xorpatch/job.h"

static const char *const vclasses[4] = {"PASS", "COPY", "PARTIAL", "OTHER"};

/* Categories in order of first appearance; each probe's category index into cat. */
static size_t categories(const xp_probe_set *s, size_t *cat)
{
    size_t n = 0;
    for (size_t i = 0; i < s->n; i++) {
        size_t c = 0;
        while (c < i && strcmp(s->probes[c].category, s->probes[i].category))
            c++;
        cat[i] = c == i ? n++ : cat[c];
    }
    return n;
}

static void tally_category(const xp_eval_report_set *es, const size_t *cat, size_t c, bool *sel,
                           xp_paired *t)
{
    size_t n = es->set->n;
    bool *b = calloc(2 * n + 1, sizeof *b);
    if (!b) {
        *t = (xp_paired){0};
        return;
    }
    for (size_t i = 0; i < n; i++) {
        sel[i] = cat[i] == c;
        b[i] = es->eval->probes[i].right[0];
        b[n + i] = es->eval->probes[i].right[1];
    }
    xp_paired_tally(b, b + n, sel, n, t);
    free(b);
}

static cJSON *set_json(const xp_eval_report_set *es)
{
    const xp_probe_set *s = es->set;
    const xp_eval *e = es->eval;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "split", es->split);
    xp_json_add_string(o, "file", s->path);
    cJSON_AddNumberToObject(o, "n", (double)s->n);
    cJSON *probes = cJSON_AddArrayToObject(o, "probes");
    for (size_t i = 0; i < s->n; i++) {
        const xp_eval_probe *p = &e->probes[i];
        cJSON *q = xp_probe_json(&s->probes[i]);
        cJSON *g = cJSON_AddArrayToObject(q, "gap");
        const char *const outs[2] = {p->output[0], p->output[1]};
        xp_json_add_strings(q, "output", outs, 2); /* "output_bytes" when cut mid-character */
        cJSON *r = cJSON_AddArrayToObject(q, "right");
        for (int k = 0; k < 2; k++) {
            cJSON_AddItemToArray(g, cJSON_CreateNumber(p->gap[k]));
            cJSON_AddItemToArray(r, cJSON_CreateBool(p->right[k]));
        }
        const char *oc = xp_outcome_name(p->right[0], p->right[1]);
        char under[16];
        snprintf(under, sizeof under, "%s", oc);
        for (char *c = under; *c; c++)
            *c = *c == ' ' ? '_' : *c;
        cJSON_AddStringToObject(q, "outcome", under);
        if (p->verbatim[0] >= 0) {
            cJSON *v = cJSON_AddArrayToObject(q, "verbatim");
            cJSON_AddItemToArray(v, cJSON_CreateString(vclasses[p->verbatim[0]]));
            cJSON_AddItemToArray(v, cJSON_CreateString(vclasses[p->verbatim[1]]));
        } else {
            cJSON_AddNullToObject(q, "verbatim");
        }
        cJSON_AddItemToArray(probes, q);
    }
    size_t *cat = calloc(s->n, sizeof *cat);
    bool *sel = calloc(s->n, sizeof *sel);
    cJSON *cats = cJSON_AddArrayToObject(o, "categories");
    size_t nc = cat && sel ? categories(s, cat) : 0;
    for (size_t c = 0; c < nc; c++) {
        xp_paired t;
        tally_category(es, cat, c, sel, &t);
        cJSON *j = xp_paired_json(&t);
        size_t first = 0;
        while (cat[first] != c)
            first++;
        xp_json_add_string(j, "name", s->probes[first].category);
        cJSON_AddItemToArray(cats, j);
    }
    free(cat), free(sel);
    cJSON_AddItemToObject(o, "summary", xp_paired_json(&e->overall));
    cJSON_AddItemToObject(o, "by_gap", xp_paired_json(&e->by_gap));
    if (s->matcher == XP_MATCH_VERBATIM && e->n && e->probes[0].verbatim[0] >= 0) {
        cJSON *v = cJSON_AddObjectToObject(o, "verbatim");
        cJSON_AddItemToObject(v, "classes", cJSON_CreateStringArray(vclasses, 4));
        cJSON *tab = cJSON_AddArrayToObject(v, "table");
        for (int b = 0; b < 4; b++) {
            cJSON *row = cJSON_CreateArray();
            for (int p = 0; p < 4; p++)
                cJSON_AddItemToArray(row, cJSON_CreateNumber((double)e->verbatim[b][p]));
            cJSON_AddItemToArray(tab, row);
        }
    } else {
        cJSON_AddNullToObject(o, "verbatim");
    }
    return o;
}

static void set_print(FILE *out, const xp_eval_report_set *es, bool patched, bool generate,
                      bool per_probe)
{
    const xp_probe_set *s = es->set;
    const xp_eval *e = es->eval;
    fprintf(out, "== %s: %s (%zu probes)\n", es->split, s->path, s->n);
    bool header = false;
    for (size_t i = 0; i < s->n; i++) {
        const xp_eval_probe *p = &e->probes[i];
        bool changed = p->right[0] != p->right[1] || (p->gap[0] > 0) != (p->gap[1] > 0);
        if (!per_probe && !(patched && changed))
            continue;
        if (!header) {
            fprintf(out, "  %-26s %-16s %19s  %-13s%s\n", "probe", "category",
                    patched ? "gap base → patched" : "gap", "outcome",
                    generate ? (patched ? " output base → patched" : " output") : "");
            header = true;
        }
        char g[48], o0[96], o1[96];
        if (patched)
            snprintf(g, sizeof g, "%8.3f → %8.3f", p->gap[0], p->gap[1]);
        else
            snprintf(g, sizeof g, "%8.3f", p->gap[0]);
        fprintf(out, "  %-26.26s %-16.16s %19s  %-13s", s->probes[i].name, s->probes[i].category, g,
                patched       ? xp_outcome_name(p->right[0], p->right[1])
                : p->right[0] ? "right"
                              : "wrong");
        if (s->matcher == XP_MATCH_VERBATIM && p->verbatim[0] >= 0)
            fprintf(out, " %s%s%s", vclasses[p->verbatim[0]], patched ? "→" : "",
                    patched ? vclasses[p->verbatim[1]] : "");
        if (generate) {
            fprintf(out, " %s", xp_text_quote(p->output[0], 24, o0, sizeof o0));
            if (patched)
                fprintf(out, " → %s", xp_text_quote(p->output[1], 24, o1, sizeof o1));
        }
        fprintf(out, "\n");
    }
    if (!header && patched)
        fprintf(out, "  no probe changed outcome or gap sign\n");
    size_t *cat = calloc(s->n, sizeof *cat);
    bool *sel = calloc(s->n, sizeof *sel);
    size_t nc = cat && sel ? categories(s, cat) : 0;
    fprintf(out, "\n  %-26s %5s %6s %6s %8s %8s  %s\n", "category", "n", "fixed", "broke",
            "st.right", "st.wrong", "accuracy base → patched");
    for (size_t c = 0; c < nc; c++) {
        xp_paired t;
        tally_category(es, cat, c, sel, &t);
        size_t first = 0;
        while (cat[first] != c)
            first++;
        const char *name = s->probes[first].category;
        fprintf(out, "  %-26.26s %5zu %6zu %6zu %8zu %8zu  %5.1f%% → %5.1f%%\n",
                *name ? name : "(none)", t.n, t.fixed, t.broke, t.stayed_right, t.stayed_wrong,
                100 * t.acc[0], 100 * t.acc[1]);
    }
    free(cat), free(sel);
    fprintf(out, "\n  judged by %s\n", generate ? "generation" : "gap sign");
    xp_paired_print(out, &e->overall, "probes", patched);
    if (generate)
        fprintf(out, "  gap > 0: base %zu/%zu, patched %zu/%zu (%zu crossed up, %zu down)\n",
                e->by_gap.stayed_right + e->by_gap.broke, e->n,
                e->by_gap.stayed_right + e->by_gap.fixed, e->n, e->by_gap.fixed, e->by_gap.broke);
    if (generate && s->matcher == XP_MATCH_VERBATIM) {
        fprintf(out, "\n  verbatim: base (rows) x patched (columns)\n  %-8s", "");
        for (int p = 0; p < 4; p++)
            fprintf(out, " %8s", vclasses[p]);
        fprintf(out, "\n");
        for (int b = 0; b < 4; b++) {
            fprintf(out, "  %-8s", vclasses[b]);
            for (int p = 0; p < 4; p++)
                fprintf(out, " %8zu", e->verbatim[b][p]);
            fprintf(out, "\n");
        }
    }
    fprintf(out, "\n");
}

static const char *patch_name(const xp_patch *p) { return p->name ? p->name : p->path; }

/* The "random_baseline" member: the patch's fixed - broke on the last set against those
 * of random patches like it. */
static cJSON *baseline_json(const xp_random_baseline *rb, const xp_eval_report_set *set)
{
    cJSON *b = cJSON_CreateObject();
    cJSON_AddStringToObject(b, "split", set->split);
    cJSON_AddNumberToObject(b, "n", (double)rb->n);
    cJSON_AddNumberToObject(b, "seed", (double)rb->seed);
    cJSON_AddNumberToObject(b, "fixed_minus_broke", (double)rb->observed);
    cJSON *g = cJSON_AddArrayToObject(b, "random");
    for (size_t i = 0; i < rb->n; i++)
        cJSON_AddItemToArray(g, cJSON_CreateNumber((double)rb->random[i]));
    cJSON_AddNumberToObject(b, "at_least", (double)rb->at_least);
    cJSON_AddNumberToObject(b, "permutation_p", rb->p);
    cJSON_AddNumberToObject(b, "mcnemar_p", set->eval->overall.mcnemar_p);
    return b;
}

cJSON *xp_eval_report_json(const xp_eval_report *r)
{
    cJSON *o = cJSON_CreateObject();
    xp_json_add_string(o, "model", r->model);
    cJSON *pn = cJSON_AddArrayToObject(o, "patches");
    for (size_t i = 0; i < r->n_patches; i++)
        cJSON_AddItemToArray(pn, cJSON_CreateString(patch_name(r->patches[i])));
    cJSON_AddStringToObject(o, "metric", xp_metric_name(r->metric));
    cJSON_AddBoolToObject(o, "generate", r->generate);
    cJSON *arr = cJSON_AddArrayToObject(o, "sets");
    for (size_t k = 0; k < r->n_sets; k++)
        cJSON_AddItemToArray(arr, set_json(&r->sets[k]));
    if (r->baseline)
        cJSON_AddItemToObject(o, "random_baseline",
                              baseline_json(r->baseline, &r->sets[r->n_sets - 1]));
    return o;
}

void xp_eval_report_print(FILE *out, const xp_eval_report *r)
{
    fprintf(out, "model %s; ", r->model);
    if (r->n_patches) {
        fprintf(out, "patches:");
        for (size_t i = 0; i < r->n_patches; i++)
            fprintf(out, " %s", patch_name(r->patches[i]));
    } else {
        fprintf(out, "no patch (base only)");
    }
    fprintf(out, "; gaps by %s\n\n", xp_metric_name(r->metric));
    for (size_t k = 0; k < r->n_sets; k++)
        set_print(out, &r->sets[k], r->n_patches > 0, r->generate, r->per_probe || !r->n_patches);
    const xp_random_baseline *rb = r->baseline;
    if (rb)
        fprintf(out,
                "random baseline (%s, %zu patches like it, seed %llu): fixed - broke %ld; %zu "
                "random patches did as well or better; permutation p = %.3g (McNemar p = "
                "%.3g)\n",
                r->sets[r->n_sets - 1].split, rb->n, (unsigned long long)rb->seed, rb->observed,
                rb->at_least, rb->p, r->sets[r->n_sets - 1].eval->overall.mcnemar_p);
}
