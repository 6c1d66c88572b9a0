/* What the probe commands (audit, eval, bench-task) share: loading and tokenising a
 * probe set for a model, quoting text for a terminal table, and the paired statistics
 * in both output forms (a few lines of text, or a JSON object). */
#ifndef XP_CLI_PROBE_UTIL_H
#define XP_CLI_PROBE_UTIL_H
#include <cjson/cJSON.h>

#include "cli/cli.h"

/* Loads a probe file and tokenises it with the model's tokenizer. */
int cli_probes_load(const char *path, xp_model *m, xp_probe_set **s, xp_probe_tokens **pt,
                    xp_err *err);
/* s as a JSON string literal cut to at most max characters of it (… marks a cut), into
 * buf; NULL prints as -. */
const char *cli_quote(const char *s, size_t max, char *buf, size_t size);
/* A token's text, quoted. */
const char *cli_token_text(const xp_tokenizer *t, int32_t id, char *buf, size_t size);
/* A JSON object naming a probe: {"name", "category", "role"}, for the rest to be added. */
cJSON *cli_probe_json(const xp_probe *p);
/* Paired right/wrong statistics: JSON object, and text lines (label: "probes", "tasks"). */
cJSON *cli_paired_json(const xp_paired *p);
void cli_paired_print(const xp_paired *p, const char *label, bool patched);
/* The outcome of one paired item: "fixed", "broke", "stayed right", "stayed wrong". */
const char *cli_outcome(bool before, bool after);
#endif
