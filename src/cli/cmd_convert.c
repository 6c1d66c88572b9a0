/* `xorpatch convert`: one patch from any format to any other — Bankai and Neagari files
 * into the project's JSON or binary, and back where the flips fit those formats. */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cmd_patch_util.h"
#include "cli/options.h"
#include "core/utf8.h"

static const char usage[] =
    "Usage: xorpatch convert IN -o OUT [--to FORMAT] [-m MODEL | --shape NAME] [--name NAME]\n"
    "\n"
    "Reads a patch in any format (xorpatch JSON or binary, Bankai bankai_row_xor_v1,\n"
    "Neagari bankai_group_xor_v2, a Neagari directory holding one patch, or Neagari's list\n"
    "of [layer, \"ffn_gate.weight\", group] block flips) and writes it in another. Flips are\n"
    "written in canonical order. Bankai v1 holds rows and blocks within rows; Neagari v2\n"
    "holds blocks and scale bits (a row becomes its blocks), Neagari's list blocks only; a\n"
    "flip that does not fit is refused, naming it. Turning blocks into v1 rows and groups,\n"
    "or rows into blocks, needs the layout. Converting a Bankai or Neagari file records\n"
    "where it came from (format, file, SHA-256) as the patch's source.\n"
    "\n"
    "  -o, --output FILE   where to write (temporary file, then rename)\n"
    "      --to FORMAT     xorpatch (JSON, the default), binary (the default for .xpb),\n"
    "                      binary-compact, bankai-v1, neagari-v2 or neagari-list\n"
    "  -m, --model FILE    learn tensor shapes from this GGUF and check every flip; a patch\n"
    "                      without a base fingerprint gets this model's (its record's base,\n"
    "                      else its SHA-256) and its architecture\n"
    "      --shape NAME    or learn shapes from a named shape: tiny, bonsai-1.7b, bonsai-4b,\n"
    "                      bonsai-8b\n"
    "      --name NAME     the patch's name\n"
    "  -q, --quiet         nothing but results and errors\n"
    "  -h, --help          this text\n";

static int stamp_source(xp_patch *p, const char *in, xp_err *err)
{
    if (p->format != XP_PATCH_BANKAI_V1 && p->format != XP_PATCH_NEAGARI_V2 &&
        p->format != XP_PATCH_NEAGARI_LIST)
        return XP_OK;
    char sha[65];
    int rc = xp_sha256_file(p->path, sha, err);
    if (rc)
        return rc;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "format", xp_patch_format_name(p->format));
    xp_json_add_string(o, "file", in);
    cJSON_AddStringToObject(o, "sha256", sha);
    cJSON_AddStringToObject(o, "converted_by", "xorpatch " XP_VERSION);
    free(p->source);
    p->source = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return XP_OK;
}

static const int options[] = {CLI_O_OUTPUT, CLI_O_TO, CLI_O_MODEL, CLI_O_SHAPE, CLI_O_NAME};
CLI_COMMAND(cli_convert, "convert",
            "convert a patch between formats (xorpatch JSON / binary, Bankai v1, Neagari v2)",
            usage, options, true, execute);

static int execute(const cli_values *v)
{
    if (v->n_args != 1)
        return cli_usage_error("convert", "give exactly one IN patch");
    const char *out = v->output, *model = v->model, *name = v->name, *in = v->args[0];
    int format = cli_patch_output("convert", "-o OUT", v);
    if (format < 0)
        return EXIT_USAGE;
    cli_patches list = {0};
    xp_err err = {0};
    int rc = cli_patches_add(&list, in, &err);
    if (!rc && list.n != 1)
        rc = xp_err_set(&err, XP_EINVAL,
                        "%s holds %zu patches: convert takes one (`xorpatch "
                        "stack` combines several)",
                        in, list.n);
    xp_patch *p = rc ? NULL : list.p[0];
    if (!rc)
        rc = cli_patches_layout(list.p, 1, model, v->shape_name, &err);
    if (!rc && model && !p->base_sha256[0]) {
        xp_gguf *g;
        if (!(rc = xp_gguf_open(&g, model, &err))) {
            rc = cli_model_base(model, g, p->base_sha256, &err);
            if (!p->architecture)
                p->architecture = cli_architecture_json(g);
            xp_gguf_close(g);
        }
    }
    if (!rc)
        rc = stamp_source(p, in, &err);
    if (!rc && name) {
        free(p->name);
        p->name = strdup(name);
    }
    if (!rc)
        rc = xp_patch_write(p, format, out, &err);
    if (!rc)
        printf("wrote %s (%s, %zu flips)\n", out, xp_patch_format_name(format), p->n_flips);
    cli_patches_free(&list);
    return rc ? cli_fail(&err) : EXIT_OK;
}
