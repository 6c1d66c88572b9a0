/* `xorpatch logits`: the model's next-token logits after each prompt position — the top
 * candidates as text or JSON, and optionally every logit as raw float32 for comparison
 * with other engines. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
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

static int parse_ids(const char *s, int32_t **out, size_t *n)
{
    size_t cap = 16;
    int32_t *ids = malloc(cap * sizeof *ids);
    *n = 0;
    while (ids && *s) {
        char *end;
        errno = 0;
        long v = strtol(s, &end, 10);
        if (end == s || errno || v < 0 || v > INT32_MAX || (*end && *end != ','))
            break;
        if (*n == cap) {
            int32_t *b = realloc(ids, (cap *= 2) * sizeof *ids);
            if (!b)
                break;
            ids = b;
        }
        ids[(*n)++] = (int32_t)v;
        s = *end ? end + 1 : end;
    }
    if (!ids || *s || !*n) {
        free(ids);
        return -1;
    }
    *out = ids;
    return 0;
}

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

static int run(int argc, char **argv)
{
    enum { O_IDS = 256, O_SPECIAL, O_TOP, O_ALL, O_OUT, O_JSON, O_PLAIN, O_KERNEL };
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'},  {"prompt", required_argument, 0, 'p'},
        {"ids", required_argument, 0, O_IDS},  {"special", no_argument, 0, O_SPECIAL},
        {"top", required_argument, 0, O_TOP},  {"all-positions", no_argument, 0, O_ALL},
        {"out", required_argument, 0, O_OUT},  {"json", no_argument, 0, O_JSON},
        {"plain", no_argument, 0, O_PLAIN},    {"kernel", required_argument, 0, O_KERNEL},
        {"threads", required_argument, 0, 't'}, {"quiet", no_argument, 0, 'q'},
        {"help", no_argument, 0, 'h'},         {0, 0, 0, 0}};
    const char *model = NULL, *prompt = NULL, *ids_arg = NULL, *out_path = NULL, *kernel = NULL;
    bool special = false, all = false, json = false;
    xp_path path = XP_PATH_FAST;
    long k = 10;
    int opt, rc;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "m:p:t:qh", opts, NULL)) != -1) {
        switch (opt) {
        case 'm': model = optarg; break;
        case 'p': prompt = optarg; break;
        case O_IDS: ids_arg = optarg; break;
        case O_SPECIAL: special = true; break;
        case O_TOP:
            if ((k = cli_parse_count(optarg)) < 0)
                return cli_usage_error("logits", "--top needs a positive count, not '%s'", optarg);
            break;
        case O_ALL: all = true; break;
        case O_OUT: out_path = optarg; break;
        case O_JSON: json = true; break;
        case O_PLAIN: path = XP_PATH_PLAIN; break;
        case O_KERNEL: kernel = optarg; break;
        case 't':
            if ((rc = cli_set_threads("logits", optarg)) >= 0)
                return rc;
            break;
        default:
            if ((rc = cli_common_option(&cli_logits, opt)) >= 0)
                return rc;
        }
    }
    if (optind < argc)
        return cli_usage_error("logits", "unexpected argument '%s'", argv[optind]);
    if (!model || !prompt == !ids_arg)
        return cli_usage_error("logits", "-m MODEL and one of -p TEXT or --ids LIST are required");
    int32_t *ids = NULL;
    size_t n = 0;
    if (ids_arg && parse_ids(ids_arg, &ids, &n))
        return cli_usage_error("logits", "--ids needs comma-separated token ids, not '%s'",
                               ids_arg);
    xp_model *m;
    if ((rc = cli_open_model(model, kernel, &m))) {
        free(ids);
        return rc;
    }
    xp_err err = {0};
    const xp_tokenizer *tok = xp_model_tokenizer(m);
    size_t V = xp_model_shape(m)->n_vocab;
    if (prompt) {
        if (!tok)
            rc = xp_err_set(&err, XP_EFORMAT, "%s has no tokenizer: give --ids", model);
        else
            rc = xp_tokenize(tok, prompt, strlen(prompt), special, &ids, &n, &err);
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
    if (!rc && out_path)
        rc = xp_write_file_atomic(out_path, logits, n_pos * V * sizeof *logits, &err);
    top_entry *top = !rc ? malloc((size_t)k * sizeof *top) : NULL;
    if (!rc && !top)
        rc = xp_err_set(&err, XP_ENOMEM, "out of memory");
    if (!rc && json) {
        cJSON *o = cJSON_CreateObject(), *toks = cJSON_AddArrayToObject(o, "tokens");
        cJSON *positions = cJSON_AddArrayToObject(o, "positions");
        for (size_t i = 0; i < n; i++)
            cJSON_AddItemToArray(toks, cJSON_CreateNumber(ids[i]));
        for (size_t p = 0; p < n_pos; p++) {
            size_t kk = (size_t)k < V ? (size_t)k : V;
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
            size_t pos = all ? p : n - 1, kk = (size_t)k < V ? (size_t)k : V;
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
    free(ids);
    xp_model_close(m);
    return rc ? cli_fail(&err) : EXIT_OK;
}

const cli_command cli_logits = {"logits", "next-token logits of a prompt (top K, JSON, raw f32)",
                                usage, run};
