/* `xorpatch convert`: one patch from any format to any other — Bankai and Neagari files
 * into the project's JSON or binary, and back where the flips fit those formats. */
#include <cjson/cJSON.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cmd_patch_util.h"

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
    cJSON_AddStringToObject(o, "file", in);
    cJSON_AddStringToObject(o, "sha256", sha);
    cJSON_AddStringToObject(o, "converted_by", "xorpatch " XP_VERSION);
    free(p->source);
    p->source = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return XP_OK;
}

static int run(int argc, char **argv)
{
    enum { O_TO = 256, O_SHAPE, O_NAME };
    static const struct option opts[] = {{"output", required_argument, 0, 'o'},
                                         {"to", required_argument, 0, O_TO},
                                         {"model", required_argument, 0, 'm'},
                                         {"shape", required_argument, 0, O_SHAPE},
                                         {"name", required_argument, 0, O_NAME},
                                         {"quiet", no_argument, 0, 'q'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *out = NULL, *to = NULL, *model = NULL, *shape = NULL, *name = NULL;
    int opt, rc;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "o:m:qh", opts, NULL)) != -1) {
        switch (opt) {
        case 'o': out = optarg; break;
        case O_TO: to = optarg; break;
        case 'm': model = optarg; break;
        case O_SHAPE: shape = optarg; break;
        case O_NAME: name = optarg; break;
        default:
            if ((rc = cli_common_option(&cli_convert, opt)) >= 0)
                return rc;
        }
    }
    if (argc - optind != 1)
        return cli_usage_error("convert", "give exactly one IN patch");
    if (!out)
        return cli_usage_error("convert", "-o OUT is required");
    if (model && shape)
        return cli_usage_error("convert", "give -m or --shape, not both");
    int format = cli_patch_out_format("convert", to, out);
    if (format < 0)
        return EXIT_USAGE;
    cli_patches list = {0};
    xp_err err = {0};
    rc = cli_patches_add(&list, argv[optind], &err);
    if (!rc && list.n != 1)
        rc = xp_err_set(&err, XP_EINVAL, "%s holds %zu patches: convert takes one (`xorpatch "
                        "stack` combines several)", argv[optind], list.n);
    xp_patch *p = rc ? NULL : list.p[0];
    if (!rc)
        rc = cli_patches_layout(list.p, 1, model, shape, &err);
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
        rc = stamp_source(p, argv[optind], &err);
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

const cli_command cli_convert = {"convert", "convert a patch between formats (xorpatch JSON / "
                                            "binary, Bankai v1, Neagari v2)", usage, run};
