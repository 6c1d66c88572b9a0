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

int cli_metric(const char *command, const char *name)
{
    int m = xp_metric_from_name(name);
    if (m < 0)
        return cli_usage_error(command, "--metric must be seq_logprob, token_gap, generation, "
                               "margin or answer_logprob, not '%s'", name), -1;
    return m;
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

cJSON *cli_paired_json(const xp_paired *p)
{
    return xp_paired_json(p);
}

void cli_paired_print(const xp_paired *p, const char *label, bool patched)
{
    xp_paired_print(stdout, p, label, patched);
}

const char *cli_outcome(bool before, bool after)
{
    return xp_outcome_name(before, after);
}
