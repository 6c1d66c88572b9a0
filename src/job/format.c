/* Results as text and JSON for a person or a program: the paired right/wrong statistics
 * (one format for eval, bench-task and the search report), an item's outcome, a probe's
 * name as JSON, counts with thousands separators, and text quoted for a terminal table. */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "core/utf8.h"
#include "xorpatch/job.h"

const char *xp_text_quote(const char *s, size_t max, char *buf, size_t size)
{
    if (!s) {
        snprintf(buf, size, "-");
        return buf;
    }
    size_t n = 0, chars = 0;
    while (s[n] && chars < max) { /* whole UTF-8 characters */
        n++;
        while ((s[n] & 0xC0) == 0x80)
            n++;
        chars++;
    }
    char *cut = malloc(n + 1);
    if (!cut) {
        snprintf(buf, size, "?");
        return buf;
    }
    memcpy(cut, s, n);
    cut[n] = '\0';
    cJSON *j = xp_json_string(cut);
    char *q = j ? cJSON_PrintUnformatted(j) : NULL;
    snprintf(buf, size, "%s%s", q ? q : "?", s[n] ? "…" : "");
    free(q);
    cJSON_Delete(j);
    free(cut);
    return buf;
}

const char *xp_thousands(uint64_t v, char *buf, size_t size)
{
    char digits[32];
    int n = snprintf(digits, sizeof digits, "%llu", (unsigned long long)v);
    size_t k = 0;
    for (int i = 0; i < n && k + 2 < size; i++) {
        if (i && (n - i) % 3 == 0)
            buf[k++] = ',';
        buf[k++] = digits[i];
    }
    buf[k] = '\0';
    return buf;
}

cJSON *xp_probe_json(const xp_probe *p)
{
    cJSON *o = cJSON_CreateObject();
    xp_json_add_string(o, "name", p->name);
    xp_json_add_string(o, "category", p->category);
    cJSON_AddStringToObject(o, "role", p->role == XP_ROLE_CONTROL ? "control" : "target");
    return o;
}

static cJSON *rate_json(size_t k, size_t n, double lo, double hi)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "right", (double)k);
    cJSON_AddNumberToObject(o, "rate", n ? (double)k / (double)n : 0);
    cJSON_AddNumberToObject(o, "lo", lo);
    cJSON_AddNumberToObject(o, "hi", hi);
    return o;
}

cJSON *xp_paired_json(const xp_paired *p)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "n", (double)p->n);
    cJSON_AddNumberToObject(o, "fixed", (double)p->fixed);
    cJSON_AddNumberToObject(o, "broke", (double)p->broke);
    cJSON_AddNumberToObject(o, "stayed_right", (double)p->stayed_right);
    cJSON_AddNumberToObject(o, "stayed_wrong", (double)p->stayed_wrong);
    cJSON *acc = cJSON_AddObjectToObject(o, "accuracy");
    cJSON_AddItemToObject(acc, "base",
                          rate_json(p->stayed_right + p->broke, p->n, p->lo[0], p->hi[0]));
    cJSON_AddItemToObject(acc, "patched",
                          rate_json(p->stayed_right + p->fixed, p->n, p->lo[1], p->hi[1]));
    cJSON_AddNumberToObject(o, "mcnemar_p", p->mcnemar_p);
    cJSON *d = cJSON_AddObjectToObject(o, "diff");
    cJSON_AddNumberToObject(d, "value", p->diff);
    cJSON_AddNumberToObject(d, "lo", p->diff_lo);
    cJSON_AddNumberToObject(d, "hi", p->diff_hi);
    return o;
}

void xp_paired_print(FILE *out, const xp_paired *p, const char *label, bool patched)
{
    size_t rb = p->stayed_right + p->broke, rp = p->stayed_right + p->fixed;
    fprintf(out, "  accuracy  base    %4zu/%-4zu %5.1f%%  95%% CI [%5.1f%%, %5.1f%%]\n", rb, p->n,
            100 * p->acc[0], 100 * p->lo[0], 100 * p->hi[0]);
    if (!patched)
        return;
    fprintf(out, "            patched %4zu/%-4zu %5.1f%%  95%% CI [%5.1f%%, %5.1f%%]\n", rp, p->n,
            100 * p->acc[1], 100 * p->lo[1], 100 * p->hi[1]);
    fprintf(out, "  %s: %zu fixed, %zu broke, %zu stayed right, %zu stayed wrong\n", label,
            p->fixed, p->broke, p->stayed_right, p->stayed_wrong);
    fprintf(out,
            "  paired difference %+.1f pp, 95%% CI [%+.1f, %+.1f] pp; exact McNemar p = %.3g\n",
            100 * p->diff, 100 * p->diff_lo, 100 * p->diff_hi, p->mcnemar_p);
}

const char *xp_outcome_name(bool before, bool after)
{
    return before ? (after ? "stayed right" : "broke") : (after ? "fixed" : "stayed wrong");
}
