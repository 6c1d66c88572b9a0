/* `xorpatch show`: what a patch is — where it came from, what it flips (per layer and
 * projection), how many weights it touches, and what it costs to store in each format —
 * so a person can judge a patch before applying it, and with --probes which of its flips
 * make which probes cross zero. This file names the options, reads the patch and prints
 * its description (the job layer's) as text or JSON. */
#include <cjson/cJSON.h>

#include "cli/cmd_patch_util.h"
#include "cli/options.h"

static const char usage[] =
    "Usage: xorpatch show PATCH [-m MODEL | --shape NAME] [--json]\n"
    "       xorpatch show PATCH -m MODEL --probes FILE [--metric NAME] [--json]\n"
    "\n"
    "Prints a patch's provenance (name, description, base fingerprint and name, tool,\n"
    "creation time, source, search settings), its identity (flips_sha256: the SHA-256 of\n"
    "its canonical flips, the same in every format), its flips by kind, per layer and\n"
    "projection, the bits it flips and the share of the model's 1-bit weights, and its\n"
    "size as xorpatch JSON, as binary (with and without provenance) and in Bankai's 12\n"
    "bytes per flip. PATCH may be a Neagari directory (each patch is shown). Bits count\n"
    "ne0 per row flip, so they need the layout: -m, --shape, or shapes the patch records.\n"
    "\n"
    "Every command that reads patches refuses (exit 2) a file that lists one flip twice\n"
    "(rows [31, 31], or a Bankai or Neagari entry repeated): XOR would cancel it without a\n"
    "word, so the error names the file, the tensor and the flip; keep it once or drop both.\n"
    "A NUL escaped in a JSON string (\\u0000) is refused too, naming its field.\n"
    "\n"
    "  -m, --model FILE    learn tensor shapes from this GGUF (and check every flip)\n"
    "      --shape NAME    or from a named shape: tiny, bonsai-1.7b, bonsai-4b, bonsai-8b\n"
    "      --probes FILE   also apply the flips one after another in the patch's order\n"
    "                      and list per flip the probes whose gap crossed zero with it\n"
    "                      (fixed or broke) and how many moved; needs -m (JSON: a\n"
    "                      \"crossings\" object: {probes, metric, n, right_before,\n"
    "                      right_after, changed_sign, flips [{flip, tensor, what, moved,\n"
    "                      crossed [{probe, name, before, after, direction}]}]})\n"
    "      --metric NAME   the gaps of --probes: seq_logprob (default), token_gap,\n"
    "                      margin or answer_logprob\n"
    "      --json          one JSON object per patch: name, format, flips_sha256, flips,\n"
    "                      rows, blocks, scale_bits, masks, row_groups, bits (null when\n"
    "                      unknown), weights_percent, sizes {json, binary, binary_compact,\n"
    "                      bankai}, layers [{layer, <projection>: flips, bits}]\n"
    "  -q, --quiet         nothing but results and errors\n"
    "  -h, --help          this text\n";

static const int options[] = {CLI_O_MODEL, CLI_O_SHAPE, CLI_O_JSON, CLI_O_PROBES, CLI_O_METRIC};
CLI_COMMAND(cli_show, "show", "show a patch: provenance, flips per layer, bits, sizes", usage,
            options, true, execute);

/* The model and the probes of --probes, tokenised. */
typedef struct probes_on {
    xp_model *m;
    xp_probe_set *s;
    xp_probe_tokens *pt;
} probes_on;

static int probes_open(probes_on *p, const char *model, const cli_values *v, xp_err *err)
{
    int rc = xp_model_open(&p->m, model, err);
    if (!rc)
        rc = xp_probe_set_load(&p->s, v->probes, err);
    if (!rc)
        rc = xp_probe_set_check_metric(p->s, (xp_metric)v->metric, err);
    if (!rc)
        rc = xp_probe_tokenize(p->s, xp_model_tokenizer(p->m), &p->pt, err);
    return rc;
}

static void probes_close(probes_on *p)
{
    xp_probe_tokens_free(p->pt, p->s ? p->s->n : 0);
    xp_probe_set_free(p->s);
    xp_model_close(p->m);
}

static int execute(const cli_values *v)
{
    if (v->n_args != 1)
        return cli_usage_error("show", "give exactly one PATCH");
    const char *model = v->model, *shape = v->shape_name;
    if (model && shape)
        return cli_usage_error("show", "give -m or --shape, not both");
    if (v->probes && !model)
        return cli_usage_error("show", "--probes needs -m MODEL");
    if (v->metric == XP_METRIC_GENERATION)
        return cli_usage_error("show", "--metric generation has no gap to cross zero");
    cli_patches list = {0};
    xp_err err = {0};
    int rc = cli_patches_add(&list, v->args[0], &err);
    if (!rc)
        rc = cli_patches_layout(list.p, list.n, model, shape, &err);
    if (rc) {
        cli_patches_free(&list);
        return cli_fail(&err);
    }
    uint64_t weights = xp_model_file_weights(model, shape);
    probes_on pr = {0};
    if (v->probes && (rc = probes_open(&pr, model, v, &err))) {
        cli_patches_free(&list);
        return cli_fail(&err);
    }
    for (size_t i = 0; i < list.n && !rc; i++) {
        xp_crossings c = {0};
        if (v->probes)
            rc = xp_crossings_run(pr.m, list.p[i], pr.pt, pr.s->n, (xp_metric)v->metric, &c,
                                  &err);
        if (rc)
            break;
        if (v->json) {
            cJSON *j = xp_patch_describe_json(list.p[i], weights);
            if (v->probes)
                cJSON_AddItemToObject(j, "crossings", xp_crossings_json(&c, pr.s));
            cli_print_json(j);
        } else {
            if (i)
                printf("\n");
            xp_patch_describe_print(stdout, list.p[i], weights);
            if (v->probes)
                xp_crossings_print(stdout, &c, pr.s);
        }
        xp_crossings_free(&c);
    }
    probes_close(&pr);
    cli_patches_free(&list);
    return rc ? cli_fail(&err) : EXIT_OK;
}
