/* `xorpatch perplexity`: the model's perplexity on a text file, scored in chunks of the
 * context length (every position after the first of a chunk predicts the next token). */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "core/file.h"

static const char usage[] =
    "Usage: xorpatch perplexity -m MODEL -f TEXT_FILE [--ctx N] [options]\n"
    "\n"
    "Tokenises the file, cuts it into chunks of --ctx tokens, runs each chunk and scores\n"
    "the prediction of every token after the first of its chunk. Prints the perplexity\n"
    "exp(mean negative log-likelihood) and the token count.\n"
    "\n"
    "  -m, --model FILE   a Qwen3 GGUF\n"
    "  -f, --file FILE    the text\n"
    "  --ctx N            chunk length in tokens (default 512)\n"
    "  --max-chunks N     score at most N chunks\n"
    "  --plain            the plain reference path instead of the fast one\n"
    "  --kernel NAME      fast-path kernel: avx512, avx2 or portable (default: best)\n"
    "  -t, --threads N    threads (default: all cores)\n"
    "  -q, --quiet        no progress\n"
    "  -h, --help         this text\n";

static int run(int argc, char **argv)
{
    enum { O_CTX = 256, O_MAX, O_PLAIN, O_KERNEL };
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'}, {"file", required_argument, 0, 'f'},
        {"ctx", required_argument, 0, O_CTX}, {"max-chunks", required_argument, 0, O_MAX},
        {"plain", no_argument, 0, O_PLAIN},   {"kernel", required_argument, 0, O_KERNEL},
        {"threads", required_argument, 0, 't'}, {"quiet", no_argument, 0, 'q'},
        {"help", no_argument, 0, 'h'},        {0, 0, 0, 0}};
    const char *model = NULL, *file = NULL, *kernel = NULL;
    long ctx = 512, max_chunks = -1;
    xp_path path = XP_PATH_FAST;
    int opt, rc;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "m:f:t:qh", opts, NULL)) != -1) {
        switch (opt) {
        case 'm': model = optarg; break;
        case 'f': file = optarg; break;
        case O_CTX:
            if ((ctx = cli_parse_count(optarg)) < 2)
                return cli_usage_error("perplexity", "--ctx needs a count of at least 2");
            break;
        case O_MAX:
            if ((max_chunks = cli_parse_count(optarg)) < 0)
                return cli_usage_error("perplexity", "--max-chunks needs a positive count");
            break;
        case O_PLAIN: path = XP_PATH_PLAIN; break;
        case O_KERNEL: kernel = optarg; break;
        case 't':
            if ((rc = cli_set_threads("perplexity", optarg)) >= 0)
                return rc;
            break;
        default:
            if ((rc = cli_common_option(&cli_perplexity, opt)) >= 0)
                return rc;
        }
    }
    if (optind < argc)
        return cli_usage_error("perplexity", "unexpected argument '%s'", argv[optind]);
    if (!model || !file)
        return cli_usage_error("perplexity", "-m MODEL and -f TEXT_FILE are required");
    xp_err err = {0};
    char *text = NULL;
    size_t len;
    if (xp_read_file(file, &text, &len, &err))
        return cli_fail(&err);
    xp_model *m;
    if ((rc = cli_open_model(model, kernel, &m))) {
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
    xp_perplexity_opts po = {(size_t)ctx, max_chunks > 0 ? (size_t)max_chunks : 0,
                             cli_progress_update, &bar};
    xp_perplexity_result r;
    cli_progress_start(&bar, "perplexity");
    double t0 = cli_now();
    if (!rc && (rc = xp_perplexity(m, path, ids, n, &po, &r, &err)))
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

const cli_command cli_perplexity = {"perplexity", "perplexity of a model on a text file", usage,
                                    run};
