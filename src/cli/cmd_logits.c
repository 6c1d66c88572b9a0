/* `xorpatch logits`: the model's next-token logits after each prompt position — the top
 * candidates as text or JSON, and optionally every logit as raw float32 for comparison
 * with other engines. This file names the options, runs the forward pass and prints the
 * report (the job layer's). */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/options.h"
#include "core/file.h"

static const char usage[] =
    "Usage: xorpatch logits -m MODEL (-p TEXT | --ids N,N,...) [options]\n"
    "\n"
    "Runs the prompt and prints the highest logits at the last position (or at every\n"
    "position).\n"
    "\n"
    "  -m, --model FILE   a Qwen3 GGUF\n"
    "  --patch PATCH      apply a patch in memory first (repeatable: stacked in order),\n"
    "                     as `apply -o` would write it; -p stays the prompt\n"
    "  -p, --prompt TEXT  the prompt text\n"
    "  --ids LIST         the prompt as comma-separated token ids instead of text\n"
    "  --special          parse special tokens such as <|im_start|> in the text\n"
    "  --top K            how many logits to show per position (default 10)\n"
    "  --all-positions    every position, not only the last\n"
    "  --out FILE.f32     write all logits of the shown positions as little-endian float32,\n"
    "                     positions x vocabulary\n"
    "  --json             one JSON object: {\"tokens\": [ids], \"positions\": [{\"pos\": i,\n"
    "                     \"top\": [[id, logit], ...]}, ...]}\n"
    "  --plain            the plain reference path instead of the fast one\n"
    "  --kernel NAME      fast-path kernel: " CLI_KERNEL_NAMES " (default: best)\n"
    "  -t, --threads N    threads (default: all cores)\n"
    "  -q, --quiet        nothing on stderr but errors\n"
    "  -h, --help         this text\n";

static const int options[] = {CLI_O_MODEL,
                              CLI_O_PROMPT,
                              CLI_O_IDS,
                              CLI_O_SPECIAL,
                              CLI_O_TOP,
                              CLI_O_ALL_POSITIONS,
                              CLI_O_OUT | CLI_LONG_ONLY,
                              CLI_O_JSON,
                              CLI_O_PLAIN,
                              CLI_O_KERNEL,
                              CLI_O_THREADS,
                              CLI_O_PATCH | CLI_LONG_ONLY};
CLI_COMMAND(cli_logits, "logits", "next-token logits of a prompt (top K, JSON, raw f32)", usage,
            options, false, execute);

static int execute(const cli_values *v)
{
    const char *model = v->model, *prompt = v->prompt;
    if (!model || !prompt == !v->ids.v)
        return cli_usage_error("logits", "-m MODEL and one of -p TEXT or --ids LIST are required");
    const int32_t *ids = v->ids.v;
    int32_t *tokens = NULL; /* the prompt's */
    size_t n = v->ids.n, k = v->given[CLI_O_TOP] ? v->top : 10;
    xp_path path = v->plain ? XP_PATH_PLAIN : XP_PATH_FAST;
    bool all = v->all_positions;
    xp_model *m;
    int rc = cli_open_patched_model(model, v->kernel, v->patches.p, v->patches.n, &m);
    if (rc)
        return rc;
    size_t V = xp_model_shape(m)->n_vocab;
    const xp_tokenizer *tok = xp_model_tokenizer(m);
    xp_err err = {0};
    if (prompt) {
        if (!tok)
            rc = xp_err_set(&err, XP_EFORMAT, "%s has no tokenizer: give --ids", model);
        else
            rc = xp_tokenize(tok, prompt, strlen(prompt), v->special, &tokens, &n, &err);
        ids = tokens;
        if (!rc && n == 0)
            rc = xp_err_set(&err, XP_EINVAL, "the prompt has no tokens");
    }
    uint8_t *want = NULL;
    float *logits = NULL;
    size_t n_pos = all ? n : 1;
    if (!rc) {
        want = calloc(n, 1);
        logits = malloc(n_pos * V * sizeof *logits);
        if (!want || !logits)
            rc = xp_err_set(&err, XP_ENOMEM, "out of memory for %zu x %zu logits", n_pos, V);
    }
    if (!rc) {
        for (size_t i = 0; i < n; i++)
            want[i] = all || i + 1 == n;
        xp_seq seq = {NULL, ids, n, want};
        rc = xp_forward(m, path, &seq, 1, logits, &err);
    }
    if (!rc && v->out)
        rc = xp_write_file_atomic(v->out, logits, n_pos * V * sizeof *logits, &err);
    xp_logits_report report = {ids, n, logits, V, all, k, tok};
    if (!rc && v->json) {
        struct cJSON *o = xp_logits_report_json(&report);
        if (o)
            cli_print_json(o);
        else
            rc = xp_err_set(&err, XP_ENOMEM, "out of memory");
    } else if (!rc) {
        rc = xp_logits_report_print(stdout, &report, &err);
    }
    free(want);
    free(logits);
    free(tokens);
    xp_model_close(m);
    return rc ? cli_fail(&err) : EXIT_OK;
}
