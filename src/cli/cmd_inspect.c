/* `xorpatch inspect`: what a GGUF file holds — architecture and hyper-parameters, the
 * tensor table, totals by type, the tokenizer and the file's SHA-256 fingerprint — as
 * text for a person or as one JSON object for a program. This file names the options,
 * opens the file and prints its description (the job layer's). */
#include "cli/options.h"

static const char usage[] =
    "Usage: xorpatch inspect FILE.gguf [--json] [--no-tensors]\n"
    "\n"
    "Prints the architecture and hyper-parameters, the tensor table (name, type, shape,\n"
    "bytes, data offset), totals by type, a tokenizer summary and the SHA-256 of the file.\n"
    "\n"
    "  --json          one JSON object with the keys architecture, n_layer, n_embd, n_ff,\n"
    "                  n_head, n_head_kv, head_dim, n_vocab, tied_output, rope_base,\n"
    "                  rms_eps, sha256, version, alignment, file_size, tokenizer and\n"
    "                  tensors ([{name, type, shape, offset, bytes}]); the shape keys are\n"
    "                  null when the file is not a supported Qwen3 model\n"
    "  --no-tensors    leave the tensor table out of the text output\n"
    "  -q, --quiet     no progress\n"
    "  -h, --help      this text\n";

static const int options[] = {CLI_O_JSON, CLI_O_NO_TENSORS};
CLI_COMMAND(cli_inspect, "inspect", "show a GGUF file's model, tensors, tokenizer and SHA-256",
            usage, options, true, execute);

static int execute(const cli_values *v)
{
    if (v->n_args != 1)
        return cli_usage_error("inspect",
                               v->n_args ? "give exactly one FILE.gguf" : "FILE.gguf is required");
    const char *path = v->args[0];
    xp_err err = {0};
    xp_gguf *g;
    if (xp_gguf_open(&g, path, &err))
        return cli_fail(&err);
    char sha[65];
    if (xp_sha256_file(path, sha, &err)) {
        xp_gguf_close(g);
        return cli_fail(&err);
    }
    if (v->json)
        cli_print_json(xp_model_describe_json(g, sha));
    else
        xp_model_describe_print(stdout, path, g, sha, !v->no_tensors);
    xp_gguf_close(g);
    return EXIT_OK;
}
