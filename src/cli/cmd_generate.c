/* `xorpatch generate`: runs a model on a prompt (plain text, or a Qwen3 chat turn) and
 * streams the continuation to stdout, greedy by default or sampled with a seed. */
#include <stdlib.h>
#include <string.h>

#include "cli/options.h"

static const char usage[] =
    "Usage: xorpatch generate -m MODEL -p TEXT [options]\n"
    "\n"
    "Prefills the prompt, then decodes and streams the new text to stdout. Greedy unless\n"
    "--temp is above 0. Stops at <|endoftext|> / <|im_end|>, at a --stop string (not\n"
    "printed), or after -n tokens.\n"
    "\n"
    "  -m, --model FILE     a Qwen3 GGUF\n"
    "  -p, --prompt TEXT    the prompt; special tokens in it are plain text\n"
    "  --chat               wrap the prompt in the Qwen3 chat template as the user turn\n"
    "  --system TEXT        with --chat: a system message\n"
    "  --think              with --chat: let the model think (default: the empty\n"
    "                       <think></think> block that turns thinking off)\n"
    "  -n, --max-tokens N   at most N new tokens (default 128)\n"
    "  --temp T             temperature (default 0: greedy)\n"
    "  --top-k K            sample among the K most likely tokens (default 0: all)\n"
    "  --top-p P            sample within cumulative probability P (default 1: all)\n"
    "  --seed N             sampling seed (default 0)\n"
    "  --stop TEXT          stop before this text (repeatable)\n"
    "  --plain              use the plain reference path (slow) instead of the fast one\n"
    "  --kernel NAME        fast-path kernel: avx512, avx2 or portable (default: best)\n"
    "  -t, --threads N      threads (default: all cores)\n"
    "  -q, --quiet          no statistics on stderr\n"
    "  -h, --help           this text\n";

static int on_token(void *ctx, int32_t id, const char *text, size_t len)
{
    (void)ctx, (void)id;
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    return 0;
}

typedef struct args {
    const char *model, *prompt, *system, *kernel;
    bool chat, think, plain;
    cli_texts stops;
    xp_gen_opts o;
} args;

static const cli_use uses[] = {
    {CLI_O_MODEL, CLI_AT(args, model)},
    {CLI_O_PROMPT, CLI_AT(args, prompt)},
    {CLI_O_CHAT, CLI_AT(args, chat)},
    {CLI_O_SYSTEM, CLI_AT(args, system)},
    {CLI_O_THINK, CLI_AT(args, think)},
    {CLI_O_MAX_TOKENS, CLI_AT(args, o.max_tokens)},
    {CLI_O_TEMP, CLI_AT(args, o.sampler.temperature)},
    {CLI_O_TOP_K, CLI_AT(args, o.sampler.top_k)},
    {CLI_O_TOP_P, CLI_AT(args, o.sampler.top_p)},
    {CLI_O_SEED, CLI_AT(args, o.sampler.seed)},
    {CLI_O_STOP, CLI_AT(args, stops)},
    {CLI_O_PLAIN, CLI_AT(args, plain)},
    {CLI_O_KERNEL, CLI_AT(args, kernel)},
    {.id = CLI_O_THREADS},
};
static const cli_spec spec = CLI_SPEC(&cli_generate, uses, false);

static int run(int argc, char **argv)
{
    args a = {.o = {.sampler = {0, 0, 1.0f, 0},
                    .max_tokens = 128,
                    .stop_at_eos = true,
                    .on_token = on_token}};
    cli_parsed p;
    int rc = cli_parse(&spec, argc, argv, &a, &p);
    if (rc >= 0)
        return rc;
    const char *model = a.model, *prompt = a.prompt;
    if (!model || !prompt)
        return cli_usage_error("generate", "-m MODEL and -p TEXT are required");
    if ((a.system || a.think) && !a.chat)
        return cli_usage_error("generate", "--system and --think need --chat");
    a.o.stop_strings = a.stops.v;
    a.o.path = a.plain ? XP_PATH_PLAIN : XP_PATH_FAST;
    xp_model *m;
    if ((rc = cli_open_model(model, a.kernel, &m)))
        return rc;
    xp_err err = {0};
    const xp_tokenizer *tok = xp_model_tokenizer(m);
    int32_t *ids = NULL, *out = NULL;
    size_t n_ids = 0, n_out = 0;
    if (!tok)
        rc = xp_err_set(&err, XP_EFORMAT, "%s has no tokenizer", model);
    else if (a.chat)
        rc = xp_chat_encode(tok, a.system, prompt, a.think, &ids, &n_ids, &err);
    else
        rc = xp_tokenize(tok, prompt, strlen(prompt), false, &ids, &n_ids, &err);
    double t0 = cli_now();
    if (!rc)
        rc = xp_generate(m, ids, n_ids, &a.o, &out, &n_out, &err);
    double secs = cli_now() - t0;
    if (!rc) {
        putchar('\n');
        cli_note("%zu prompt tokens, %zu generated in %.2f s (%.1f tokens/s, %s path, kernel %s)",
                 n_ids, n_out, secs, (double)(n_ids + n_out) / secs, a.plain ? "plain" : "fast",
                 xp_model_kernel(m));
    }
    free(ids);
    free(out);
    xp_model_close(m);
    return rc ? cli_fail(&err) : EXIT_OK;
}

const cli_command cli_generate = {"generate", "continue a prompt (greedy or sampled), streaming",
                                  usage, run};
