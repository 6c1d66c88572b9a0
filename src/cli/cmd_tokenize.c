/* `xorpatch tokenize`: a line-oriented tokenizer for scripts and conformance checks.
 * Each input line is one JSON string (or, with --decode, one JSON array of ids); each
 * output line is the JSON array of ids (or the decoded JSON string). */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "cli/options.h"

static const char usage[] =
    "Usage: xorpatch tokenize -m MODEL [--special] [--decode] < lines\n"
    "\n"
    "Reads one JSON string per line on stdin and writes one JSON array of token ids per\n"
    "line on stdout, in the same order. With --decode, reads one JSON array of ids per\n"
    "line and writes the decoded text as one JSON string per line (bytes that are not\n"
    "valid UTF-8 on their own, such as half a character, become U+FFFD).\n"
    "\n"
    "  -m, --model FILE   a Qwen3 GGUF (its tokenizer keys), or a tokenizer.json\n"
    "  --special          match special tokens such as <|im_start|> in the text (off by\n"
    "                     default: they are tokenised as plain text)\n"
    "  --decode           ids to text instead of text to ids\n"
    "  -q, --quiet        nothing on stderr but errors\n"
    "  -h, --help         this text\n"
    "\n"
    "Invalid UTF-8 inside a string is replaced as WHATWG's TextDecoder replaces it (each\n"
    "maximal ill-formed subsequence becomes U+FFFD) before tokenisation. A line that is not\n"
    "the expected JSON stops the run with exit code 2, naming the line.\n";

static int encode_line(const xp_tokenizer *t, const cJSON *j, bool special, size_t line,
                       xp_err *err)
{
    if (!cJSON_IsString(j))
        return xp_err_set(err, XP_EFORMAT, "stdin line %zu: expected a JSON string", line);
    int32_t *ids;
    size_t n;
    int rc = xp_tokenize(t, j->valuestring, strlen(j->valuestring), special, &ids, &n, err);
    if (rc)
        return xp_err_wrap(err, "stdin line %zu", line);
    putchar('[');
    for (size_t i = 0; i < n; i++)
        printf(i ? ",%d" : "%d", ids[i]);
    puts("]");
    free(ids);
    return XP_OK;
}

static int decode_line(const xp_tokenizer *t, const cJSON *j, size_t line, xp_err *err)
{
    if (!cJSON_IsArray(j))
        return xp_err_set(err, XP_EFORMAT, "stdin line %zu: expected a JSON array of ids", line);
    size_t n = (size_t)cJSON_GetArraySize(j), i = 0;
    int32_t *ids = malloc((n ? n : 1) * sizeof *ids);
    if (!ids)
        return xp_err_set(err, XP_ENOMEM, "stdin line %zu: out of memory", line);
    const cJSON *e;
    cJSON_ArrayForEach(e, j)
    {
        double v = cJSON_IsNumber(e) ? e->valuedouble : -1;
        if (v < 0 || v >= (double)xp_tokenizer_n_vocab(t) || v != (double)(int32_t)v) {
            free(ids);
            return xp_err_set(err, XP_EFORMAT, "stdin line %zu: element %zu is not a token id "
                              "in [0, %zu)", line, i, xp_tokenizer_n_vocab(t));
        }
        ids[i++] = (int32_t)v;
    }
    char *text, *clean = NULL;
    size_t len, clean_len;
    int rc = xp_detokenize(t, ids, n, &text, &len, err);
    free(ids);
    if (rc)
        return xp_err_wrap(err, "stdin line %zu", line);
    if (xp_tok_utf8_sanitize(text, len, &clean, &clean_len)) {
        free(text);
        return xp_err_set(err, XP_ENOMEM, "stdin line %zu: out of memory", line);
    }
    cJSON *s = cJSON_CreateString(clean ? clean : text);
    char *out = s ? cJSON_PrintUnformatted(s) : NULL;
    if (out)
        puts(out);
    free(out);
    cJSON_Delete(s);
    free(clean);
    free(text);
    return out ? XP_OK : xp_err_set(err, XP_ENOMEM, "stdin line %zu: out of memory", line);
}

static const int options[] = {CLI_O_MODEL, CLI_O_SPECIAL, CLI_O_DECODE};
CLI_COMMAND(cli_tokenize, "tokenize", "JSON strings to token ids and back, a line each", usage,
            options, false, execute);

static int execute(const cli_values *v)
{
    if (!v->model)
        return cli_usage_error("tokenize", "-m MODEL is required");
    xp_err err = {0};
    xp_vocab *vocab = NULL;
    xp_tokenizer *t = NULL;
    if (cli_load_vocab(v->model, &vocab, NULL, &err) || xp_tokenizer_new(&t, vocab, &err)) {
        xp_vocab_free(vocab);
        return cli_fail(&err);
    }
    xp_vocab_free(vocab);
    char *line = NULL;
    size_t cap = 0, line_no = 0;
    ssize_t len;
    int rc = XP_OK;
    while (!rc && (len = getline(&line, &cap, stdin)) >= 0) {
        line_no++;
        cJSON *j = cJSON_ParseWithLength(line, (size_t)len);
        if (!j)
            rc = xp_err_set(&err, XP_EFORMAT, "stdin line %zu: not valid JSON", line_no);
        else
            rc = v->decode ? decode_line(t, j, line_no, &err)
                           : encode_line(t, j, v->special, line_no, &err);
        cJSON_Delete(j);
    }
    free(line);
    xp_tokenizer_free(t);
    fflush(stdout);
    return rc ? cli_fail(&err) : EXIT_OK;
}
