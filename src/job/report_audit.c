/* The audit report (job.h): what a probe set can and cannot measure on a model, per probe
 * (gap, dead or not, distractor rank, emitted against measured tokens, greedy output,
 * solved) and per category (distinct contrasts), as text or as one JSON object. */
#include <cjson/cJSON.h>
#include <stdlib.h>

#include "core/utf8.h"
#include "xorpatch/job.h"

/* A token's text, quoted ("#ID" when it cannot be shown). */
static const char *token_text(const xp_tokenizer *t, int32_t id, char *buf, size_t size)
{
    char *text;
    size_t len;
    if (!t || xp_detokenize(t, &id, 1, &text, &len, NULL)) {
        snprintf(buf, size, "#%d", id);
        return buf;
    }
    xp_text_quote(text, 16, buf, size);
    free(text);
    return buf;
}

cJSON *xp_audit_report_json(const xp_probe_set *s, const xp_audit *a)
{
    cJSON *o = cJSON_CreateObject();
    xp_json_add_string(o, "file", s->path);
    cJSON_AddStringToObject(o, "metric", xp_metric_name(a->metric));
    cJSON_AddNumberToObject(o, "n", (double)a->n);
    cJSON *probes = cJSON_AddArrayToObject(o, "probes");
    for (size_t i = 0; i < a->n; i++) {
        const xp_audit_probe *p = &a->probes[i];
        cJSON *e = xp_probe_json(&s->probes[i]);
        cJSON_AddBoolToObject(e, "dead", p->dead);
        cJSON_AddBoolToObject(e, "dead_token_gap", p->dead_token_gap);
        if (p->score.distractor_rank)
            cJSON_AddNumberToObject(e, "distractor_rank", (double)p->score.distractor_rank);
        else
            cJSON_AddNullToObject(e, "distractor_rank");
        cJSON_AddNumberToObject(e, "gap", p->score.gap);
        cJSON *ms = cJSON_AddArrayToObject(e, "measured");
        cJSON_AddItemToArray(ms, cJSON_CreateNumber(p->score.measured[0]));
        cJSON_AddItemToArray(ms, cJSON_CreateNumber(p->score.measured[1]));
        cJSON_AddNumberToObject(e, "emitted", p->score.emitted);
        cJSON_AddBoolToObject(e, "emitted_measured", p->emitted_measured);
        xp_json_add_string(e, "output", p->output); /* "output_bytes" when cut mid-character */
        cJSON_AddBoolToObject(e, "solved", p->solved);
        cJSON_AddItemToArray(probes, e);
    }
    cJSON *cats = cJSON_AddArrayToObject(o, "categories");
    for (size_t c = 0; c < a->n_categories; c++) {
        const xp_audit_category *ac = &a->categories[c];
        cJSON *e = cJSON_CreateObject();
        xp_json_add_string(e, "name", ac->name);
        cJSON_AddNumberToObject(e, "n", (double)ac->n);
        cJSON_AddNumberToObject(e, "contrasts", (double)ac->contrasts);
        cJSON_AddNumberToObject(e, "duplicates", (double)ac->duplicates);
        cJSON_AddBoolToObject(e, "one_contrast", ac->one_contrast);
        cJSON_AddItemToArray(cats, e);
    }
    cJSON *sum = cJSON_AddObjectToObject(o, "summary");
    cJSON_AddNumberToObject(sum, "dead", (double)a->dead);
    cJSON_AddNumberToObject(sum, "dead_token_gap", (double)a->dead_token_gap);
    cJSON_AddNumberToObject(sum, "solved", (double)a->solved);
    cJSON_AddNumberToObject(sum, "not_emitted", (double)a->not_emitted);
    cJSON_AddNumberToObject(sum, "one_contrast_categories", (double)a->one_contrast_categories);
    cJSON_AddNumberToObject(sum, "contrasts", (double)a->contrasts);
    return o;
}

void xp_audit_report_print(FILE *out, const xp_probe_set *s, const xp_audit *a,
                           const xp_tokenizer *t)
{
    static const char *const formats[] = {"Bankai list", "Neagari calibrated set",
                                          "Neagari verbatim set"};
    static const char *const matchers[] = {"math", "verbatim", "prefix"};
    fprintf(out, "%s: %s, %zu probes; metric %s; generation: %s matcher, at most %zu tokens%s\n\n",
            s->path, formats[s->format], s->n, xp_metric_name(a->metric), matchers[s->matcher],
            s->max_tokens, s->stop_newline ? ", stops at a newline" : "");
    fprintf(out, "%-28s %-18s %9s %7s  %-14s %-24s %-6s %s\n", "probe", "category", "gap", "rank",
            "emitted", "measured (right / wrong)", "solved", "greedy output");
    for (size_t i = 0; i < a->n; i++) {
        const xp_audit_probe *p = &a->probes[i];
        char e[64], m0[64], m1[64], output[160], rank[24], both[140];
        if (p->score.distractor_rank)
            snprintf(rank, sizeof rank, "%zu", p->score.distractor_rank);
        else
            snprintf(rank, sizeof rank, "-");
        token_text(t, p->score.emitted, e, sizeof e);
        snprintf(both, sizeof both, "%s / %s", token_text(t, p->score.measured[0], m0, sizeof m0),
                 token_text(t, p->score.measured[1], m1, sizeof m1));
        fprintf(out, "%-28.28s %-18.18s %9.3f %7s  %-14s %-24s %-6s %s", s->probes[i].name,
                s->probes[i].category, p->score.gap, rank, e, both, p->solved ? "yes" : "no",
                xp_text_quote(p->output, 40, output, sizeof output));
        if (p->dead)
            fprintf(out, "  DEAD");
        else if (p->dead_token_gap)
            fprintf(out, "  dead-under-token_gap");
        if (!p->emitted_measured)
            fprintf(out, "  emits-other");
        fprintf(out, "\n");
    }
    fprintf(out, "\n%-28s %6s %10s %11s\n", "category", "probes", "contrasts", "duplicates");
    for (size_t c = 0; c < a->n_categories; c++) {
        const xp_audit_category *ac = &a->categories[c];
        fprintf(out, "%-28.28s %6zu %10zu %11zu%s\n", *ac->name ? ac->name : "(none)", ac->n,
                ac->contrasts, ac->duplicates, ac->one_contrast ? "  ONE CONTRAST REPEATED" : "");
    }
    fprintf(out,
            "\nsummary: %zu probes, %zu distinct contrasts; dead under %s: %zu; dead under the"
            "\n         legacy token_gap rule: %zu; already solved: %zu; model emits another token"
            "\n         than the measured ones: %zu; categories that are one contrast repeated: "
            "%zu of %zu\n",
            a->n, a->contrasts, xp_metric_name(a->metric), a->dead, a->dead_token_gap, a->solved,
            a->not_emitted, a->one_contrast_categories, a->n_categories);
}
