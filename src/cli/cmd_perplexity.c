/* `xorpatch perplexity`: the model's perplexity on a text file, scored in chunks of the
 * context length (every position after the first of a chunk predicts the next token). */
#include <stdlib.h>
#include <string.h>

#include "cli/options.h"
#include "core/file.h"

static const char usage[] =
    "Usage: xorpatch perplexity -m MODEL -f TEXT_FILE [--ctx N] [options]\n"
    "\n"
    "Tokenises the file, cuts it into chunks of --ctx tokens, runs each chunk and scores\n"
    "the prediction of every token after the first of its chunk. Prints the perplexity\n"
    "exp(mean negative log-likelihood) and the token count.\n"
    "\n"
    "  -m, --model FILE   a Qwen3 GGUF\n"
    "  --patch PATCH      apply a patch in memory first (repeatable: stacked in order),\n"
    "                     as `apply -o` would write it\n"
    "  -f, --file FILE    the text\n"
    "  --ctx N            chunk length in tokens (default 512)\n"
    "  --max-chunks N     score at most N chunks\n"
    "  --plain            the plain reference path instead of the fast one\n"
    "  --kernel NAME      fast-path kernel: " CLI_KERNEL_NAMES " (default: best)\n"
    "  -t, --threads N    threads (default: all cores)\n"
    "  -q, --quiet        no progress\n"
    "  -h, --help         this text\n";

static const int options[] = {
    CLI_O_MODEL, CLI_O_FILE,   CLI_O_CTX,     CLI_O_MAX_CHUNKS,
    CLI_O_PLAIN, CLI_O_KERNEL, CLI_O_THREADS, CLI_O_PATCH | CLI_LONG_ONLY};
CLI_COMMAND(cli_perplexity, "perplexity", "perplexity of a model on a text file", usage, options,
            false, execute);

static int execute(const cli_values *v)
{
    const char *model = v->model, *file = v->file;
    if (!model || !file)
        return cli_usage_error("perplexity", "-m MODEL and -f TEXT_FILE are required");
    xp_err err = {0};
    char *text = NULL;
    size_t len;
    if (xp_read_file(file, &text, &len, &err))
        return cli_fail(&err);
    xp_model *m;
    int rc = cli_open_patched_model(model, v->kernel, v->patches.p, v->patches.n, &m);
    if (rc) {
        free(text);
        return rc;
    }
    int32_t *ids = NULL;
    size_t n = 0;
    const xp_tokenizer *tok = xp_model_tokenizer(m);
    rc = tok ? xp_tokenize(tok, text, len, false, &ids, &n, &err)
             : xp_err_set(&err, XP_EFORMAT, "%s has no tokenizer", model);
    free(text);
    cli_progress bar;
    xp_perplexity_opts po = {v->given[CLI_O_CTX] ? v->ctx : 512, v->max_chunks, cli_progress_update,
                             &bar};
    xp_perplexity_result r;
    cli_progress_start(&bar, "perplexity");
    double t0 = cli_now();
    if (!rc &&
        (rc = xp_perplexity(m, v->plain ? XP_PATH_PLAIN : XP_PATH_FAST, ids, n, &po, &r, &err)))
        xp_err_wrap(&err, "%s", file);
    cli_progress_end(&bar);
    if (!rc) {
        printf("perplexity %.4f over %zu tokens (%zu chunks of %zu)\n", r.perplexity, r.scored,
               r.chunks, r.chunk);
        cli_note("%.2f s, %.1f tokens/s", cli_now() - t0,
                 (double)(r.chunks * r.chunk) / (cli_now() - t0));
    }
    free(ids);
    xp_model_close(m);
    return rc ? cli_fail(&err) : EXIT_OK;
}
