/* `xorpatch generate`: runs a model on a prompt (plain text, or a Qwen3 chat turn) and
 * streams the continuation to stdout, greedy by default or sampled with a seed. */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

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

static int parse_float(const char *s, float lo, float hi, float *out)
{
    char *end;
    float v = strtof(s, &end);
    if (!*s || *end || !(v >= lo && v <= hi))
        return -1;
    *out = v;
    return 0;
}

static int run(int argc, char **argv)
{
    enum { O_CHAT = 256, O_SYSTEM, O_THINK, O_TEMP, O_TOPK, O_TOPP, O_SEED, O_STOP, O_PLAIN,
           O_KERNEL };
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'},     {"prompt", required_argument, 0, 'p'},
        {"chat", no_argument, 0, O_CHAT},         {"system", required_argument, 0, O_SYSTEM},
        {"think", no_argument, 0, O_THINK},       {"max-tokens", required_argument, 0, 'n'},
        {"temp", required_argument, 0, O_TEMP},   {"top-k", required_argument, 0, O_TOPK},
        {"top-p", required_argument, 0, O_TOPP},  {"seed", required_argument, 0, O_SEED},
        {"stop", required_argument, 0, O_STOP},   {"plain", no_argument, 0, O_PLAIN},
        {"kernel", required_argument, 0, O_KERNEL}, {"threads", required_argument, 0, 't'},
        {"quiet", no_argument, 0, 'q'},           {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    const char *model = NULL, *prompt = NULL, *system = NULL, *kernel = NULL;
    bool chat = false, think = false;
    const char *stops[17] = {0};
    size_t n_stops = 0;
    xp_gen_opts o = {.sampler = {0, 0, 1.0f, 0}, .max_tokens = 128, .stop_at_eos = true,
                     .path = XP_PATH_FAST, .on_token = on_token};
    int opt, rc;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "m:p:n:t:qh", opts, NULL)) != -1) {
        long v;
        switch (opt) {
        case 'm': model = optarg; break;
        case 'p': prompt = optarg; break;
        case O_CHAT: chat = true; break;
        case O_SYSTEM: system = optarg; break;
        case O_THINK: think = true; break;
        case 'n':
            if ((v = cli_parse_count(optarg)) < 0)
                return cli_usage_error("generate", "-n needs a positive count, not '%s'", optarg);
            o.max_tokens = (size_t)v;
            break;
        case O_TEMP:
            if (parse_float(optarg, 0, 100, &o.sampler.temperature))
                return cli_usage_error("generate", "--temp needs a number in [0, 100]");
            break;
        case O_TOPK:
            if (strcmp(optarg, "0") && (v = cli_parse_count(optarg)) < 0)
                return cli_usage_error("generate", "--top-k needs a count (0 = off)");
            o.sampler.top_k = atoi(optarg);
            break;
        case O_TOPP:
            if (parse_float(optarg, 0, 1, &o.sampler.top_p) || o.sampler.top_p == 0)
                return cli_usage_error("generate", "--top-p needs a number in (0, 1]");
            break;
        case O_SEED: {
            char *end;
            o.sampler.seed = strtoull(optarg, &end, 10);
            if (!*optarg || *end || optarg[0] == '-')
                return cli_usage_error("generate", "--seed needs a non-negative integer");
            break;
        }
        case O_STOP:
            if (n_stops == 16)
                return cli_usage_error("generate", "at most 16 --stop strings");
            stops[n_stops++] = optarg;
            break;
        case O_PLAIN: o.path = XP_PATH_PLAIN; break;
        case O_KERNEL: kernel = optarg; break;
        case 't':
            if ((rc = cli_set_threads("generate", optarg)) >= 0)
                return rc;
            break;
        default:
            if ((rc = cli_common_option(&cli_generate, opt)) >= 0)
                return rc;
        }
    }
    if (optind < argc)
        return cli_usage_error("generate", "unexpected argument '%s'", argv[optind]);
    if (!model || !prompt)
        return cli_usage_error("generate", "-m MODEL and -p TEXT are required");
    if ((system || think) && !chat)
        return cli_usage_error("generate", "--system and --think need --chat");
    o.stop_strings = stops;
    xp_model *m;
    if ((rc = cli_open_model(model, kernel, &m)))
        return rc;
    xp_err err = {0};
    const xp_tokenizer *tok = xp_model_tokenizer(m);
    int32_t *ids = NULL, *out = NULL;
    size_t n_ids = 0, n_out = 0;
    if (!tok)
        rc = xp_err_set(&err, XP_EFORMAT, "%s has no tokenizer", model);
    else if (chat)
        rc = xp_chat_encode(tok, system, prompt, think, &ids, &n_ids, &err);
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
                 n_ids, n_out, secs, (double)(n_ids + n_out) / secs,
                 o.path == XP_PATH_PLAIN ? "plain" : "fast", xp_model_kernel(m));
    }
    free(ids);
    free(out);
    xp_model_close(m);
    return rc ? cli_fail(&err) : EXIT_OK;
}

const cli_command cli_generate = {"generate", "continue a prompt (greedy or sampled), streaming",
                                  usage, run};
