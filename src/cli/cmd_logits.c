/* `xorpatch logits`: the model's next-token logits after each prompt position — the top
 * candidates as text or JSON, and optionally every logit as raw float32 for comparison
 * with other engines. */
#include <cjson/cJSON.h>
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
    "  --kernel NAME      fast-path kernel: avx512, avx2 or portable (default: best)\n"
    "  -t, --threads N    threads (default: all cores)\n"
    "  -q, --quiet        nothing on stderr but errors\n"
    "  -h, --help         this text\n";

typedef struct top_entry {
    int32_t id;
    float logit;
} top_entry;

/* The k largest logits, highest first (ties: lower id first). */
static void top_k(const float *logits, size_t n, size_t k, top_entry *out)
{
    size_t have = 0;
    for (size_t i = 0; i < n; i++) {
        float v = logits[i];
        if (have == k && !(v > out[k - 1].logit))
            continue;
        size_t j = have < k ? have++ : k - 1;
        while (j > 0 && v > out[j - 1].logit) {
            out[j] = out[j - 1];
            j--;
        }
        out[j] = (top_entry){(int32_t)i, v};
    }
}

static void print_piece(const xp_tokenizer *tok, int32_t id)
{
    char *text;
    size_t len;
    if (!tok || xp_detokenize(tok, &id, 1, &text, &len, NULL)) {
        printf("?");
        return;
    }
    cJSON *s = cJSON_CreateString(text);
    char *quoted = s ? cJSON_PrintUnformatted(s) : NULL;
    printf("%s", quoted ? quoted : "?");
    free(quoted);
    cJSON_Delete(s);
    free(text);
}

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
                              CLI_O_THREADS};
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
    int rc = cli_open_model(model, v->kernel, &m);
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
    top_entry *top = !rc ? malloc(k * sizeof *top) : NULL;
    if (!rc && !top)
        rc = xp_err_set(&err, XP_ENOMEM, "out of memory");
    if (!rc && v->json) {
        cJSON *o = cJSON_CreateObject(), *toks = cJSON_AddArrayToObject(o, "tokens");
        cJSON *positions = cJSON_AddArrayToObject(o, "positions");
        for (size_t i = 0; i < n; i++)
            cJSON_AddItemToArray(toks, cJSON_CreateNumber(ids[i]));
        for (size_t p = 0; p < n_pos; p++) {
            size_t kk = k < V ? k : V;
            top_k(logits + p * V, V, kk, top);
            cJSON *e = cJSON_CreateObject(), *arr;
            cJSON_AddNumberToObject(e, "pos", (double)(all ? p : n - 1));
            arr = cJSON_AddArrayToObject(e, "top");
            for (size_t j = 0; j < kk; j++) {
                cJSON *pair = cJSON_CreateArray();
                cJSON_AddItemToArray(pair, cJSON_CreateNumber(top[j].id));
                cJSON_AddItemToArray(pair, cJSON_CreateNumber(top[j].logit));
                cJSON_AddItemToArray(arr, pair);
            }
            cJSON_AddItemToArray(positions, e);
        }
        cli_print_json(o);
    } else if (!rc) {
        for (size_t p = 0; p < n_pos; p++) {
            size_t pos = all ? p : n - 1, kk = k < V ? k : V;
            printf("position %zu, token %d ", pos, ids[pos]);
            print_piece(tok, ids[pos]);
            printf("\n");
            top_k(logits + p * V, V, kk, top);
            for (size_t j = 0; j < kk; j++) {
                printf("  %8d %10.4f  ", top[j].id, (double)top[j].logit);
                print_piece(tok, top[j].id);
                printf("\n");
            }
        }
    }
    free(top);
    free(want);
    free(logits);
    free(tokens);
    xp_model_close(m);
    return rc ? cli_fail(&err) : EXIT_OK;
}
