/* Helpers of the probe commands: probe sets tokenised for a model, terminal quoting,
 * and the paired statistics as text and JSON (one format for eval and bench-task). */
#include <stdlib.h>
#include <string.h>

#include "cli/cmd_probe_util.h"

int cli_probes_load(const char *path, xp_model *m, xp_probe_set **s, xp_probe_tokens **pt,
                    xp_err *err)
{
    *pt = NULL;
    int rc = xp_probe_set_load(s, path, err);
    if (!rc && (rc = xp_probe_tokenize(*s, xp_model_tokenizer(m), pt, err))) {
        xp_probe_set_free(*s);
        *s = NULL;
    }
    return rc;
}

const char *cli_quote(const char *s, size_t max, char *buf, size_t size)
{
    return xp_text_quote(s, max, buf, size);
}

const char *cli_token_text(const xp_tokenizer *t, int32_t id, char *buf, size_t size)
{
    char *text;
    size_t len;
    if (!t || xp_detokenize(t, &id, 1, &text, &len, NULL)) {
        snprintf(buf, size, "#%d", id);
        return buf;
    }
    cli_quote(text, 16, buf, size);
    free(text);
    return buf;
}

cJSON *cli_probe_json(const xp_probe *p)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", p->name);
    cJSON_AddStringToObject(o, "category", p->category);
    cJSON_AddStringToObject(o, "role", p->role == XP_ROLE_CONTROL ? "control" : "target");
    return o;
}

cJSON *cli_paired_json(const xp_paired *p) { return xp_paired_json(p); }

void cli_paired_print(const xp_paired *p, const char *label, bool patched)
{
    xp_paired_print(stdout, p, label, patched);
}

const char *cli_outcome(bool before, bool after) { return xp_outcome_name(before, after); }
