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
    "  --patch PATCH        apply a patch in memory first (repeatable: stacked in order),\n"
    "                       as `apply -o` would write it; -p stays the prompt\n"
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
    "  --kernel NAME        fast-path kernel: " CLI_KERNEL_NAMES " (default: best)\n"
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

static const int options[] = {
    CLI_O_MODEL,      CLI_O_PROMPT, CLI_O_CHAT,   CLI_O_SYSTEM,  CLI_O_THINK,
    CLI_O_MAX_TOKENS, CLI_O_TEMP,   CLI_O_TOP_K,  CLI_O_TOP_P,   CLI_O_SEED,
    CLI_O_STOP,       CLI_O_PLAIN,  CLI_O_KERNEL, CLI_O_THREADS, CLI_O_PATCH | CLI_LONG_ONLY};
CLI_COMMAND(cli_generate, "generate", "continue a prompt (greedy or sampled), streaming", usage,
            options, false, execute);

static int execute(const cli_values *v)
{
    const char *model = v->model, *prompt = v->prompt;
    if (!model || !prompt)
        return cli_usage_error("generate", "-m MODEL and -p TEXT are required");
    if ((v->system || v->think) && !v->chat)
        return cli_usage_error("generate", "--system and --think need --chat");
    xp_gen_opts o = {.sampler = {0, 0, 1.0f, v->seed},
                     .max_tokens = v->given[CLI_O_MAX_TOKENS] ? v->max_tokens : 128,
                     .stop_strings = v->stop.v,
                     .stop_at_eos = true,
                     .path = v->plain ? XP_PATH_PLAIN : XP_PATH_FAST,
                     .on_token = on_token};
    CLI_COPY_GIVEN(v, sampler, o.sampler);
    xp_model *m;
    int rc = cli_open_patched_model(model, v->kernel, v->patches.p, v->patches.n, &m);
    if (rc)
        return rc;
    xp_err err = {0};
    const xp_tokenizer *tok = xp_model_tokenizer(m);
    int32_t *ids = NULL, *out = NULL;
    size_t n_ids = 0, n_out = 0;
    if (!tok)
        rc = xp_err_set(&err, XP_EFORMAT, "%s has no tokenizer", model);
    else if (v->chat)
        rc = xp_chat_encode(tok, v->system, prompt, v->think, &ids, &n_ids, &err);
    else
        rc = xp_tokenize(tok, prompt, strlen(prompt), false, &ids, &n_ids, &err);
    size_t n_ctx = xp_model_shape(m)->n_ctx;
    if (!rc && n_ids < n_ctx && n_ids + o.max_tokens > n_ctx)
        cli_note("-n %zu: the model's context holds %zu tokens and the prompt takes %zu, so at "
                 "most %zu new tokens follow it",
                 o.max_tokens, n_ctx, n_ids, n_ctx - n_ids);
    double t0 = cli_now();
    if (!rc)
        rc = xp_generate(m, ids, n_ids, &o, &out, &n_out, &err);
    double secs = cli_now() - t0;
    if (!rc) {
        putchar('\n');
        cli_note("%zu prompt tokens, %zu generated in %.2f s (%.1f tokens/s, %s path, kernel %s)",
                 n_ids, n_out, secs, (double)(n_ids + n_out) / secs, v->plain ? "plain" : "fast",
                 xp_model_kernel(m));
    }
    free(ids);
    free(out);
    xp_model_close(m);
    return rc ? cli_fail(&err) : EXIT_OK;
}
