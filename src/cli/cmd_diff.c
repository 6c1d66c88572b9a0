/* `xorpatch diff`: the patch between two GGUF files of the same layout, so any change to
 * a model's 1-bit weights — made by xorpatch or not — can be audited, shown, stacked and
 * reverted like any patch. */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cmd_patch_util.h"
#include "cli/options.h"
#include "core/utf8.h"

static const char usage[] =
    "Usage: xorpatch diff A.gguf B.gguf -o PATCH [--to FORMAT] [--name NAME]\n"
    "\n"
    "Extracts the patch P with B = A XOR P. The files must have the same tensors (names,\n"
    "types, shapes); only Q1_0 matrices may differ. Whole rows and whole blocks whose sign\n"
    "bits all flipped become row and block flips, other sign changes 128-bit masks, scale\n"
    "changes single scale bits. The patch records A's base fingerprint (A's record's base\n"
    "when A is itself patched, else A's SHA-256) and A's architecture. Metadata is not part\n"
    "of a patch and is not compared.\n"
    "\n"
    "  -o, --output FILE   where to write the patch (temporary file, then rename)\n"
    "      --to FORMAT     xorpatch (JSON, the default), binary (the default for .xpb),\n"
    "                      binary-compact, bankai-v1, neagari-v2 or neagari-list (when the\n"
    "                      flips fit)\n"
    "      --name NAME     the patch's name (default: the output file's name)\n"
    "  -q, --quiet         nothing but results and errors\n"
    "  -h, --help          this text\n";

static const int options[] = {CLI_O_OUTPUT, CLI_O_TO, CLI_O_NAME};
CLI_COMMAND(cli_diff, "diff", "extract the patch between two GGUFs of one layout", usage, options,
            true, execute);

static int execute(const cli_values *v)
{
    if (v->n_args != 2)
        return cli_usage_error("diff", "give exactly two files, A.gguf and B.gguf");
    const char *out = v->output, *name = v->name;
    int format = cli_patch_output("diff", "-o PATCH", v);
    if (format < 0)
        return EXIT_USAGE;
    const char *a = v->args[0], *b = v->args[1];
    xp_err err = {0};
    xp_gguf *ga = NULL, *gb = NULL;
    xp_patch *p = NULL;
    bool rec_a = false, rec_b = false;
    int rc = xp_patch_file_recover(a, &rec_a, &err);
    if (!rc)
        rc = xp_patch_file_recover(b, &rec_b, &err);
    if (!rc)
        rc = xp_gguf_open(&ga, a, &err);
    if (!rc)
        rc = xp_gguf_open(&gb, b, &err);
    if (!rc)
        rc = xp_patch_diff(&p, ga, gb, &err);
    if (!rc)
        rc = cli_model_base(a, ga, p->base_sha256, &err);
    if (!rc) {
        cJSON *src = cJSON_CreateObject(), *d = cJSON_AddObjectToObject(src, "diff");
        xp_json_add_string(d, "a", a);
        xp_json_add_string(d, "b", b);
        p->source = cJSON_PrintUnformatted(src);
        cJSON_Delete(src);
        p->architecture = cli_architecture_json(ga);
        const char *slash = strrchr(out, '/'), *base = slash ? slash + 1 : out;
        const char *dot = strrchr(base, '.');
        char stem[256];
        snprintf(stem, sizeof stem, "%.*s", dot && dot != base ? (int)(dot - base) : 255, base);
        cli_patch_stamp(p, name ? name : stem);
        rc = xp_patch_write(p, format, out, &err);
    }
    if (!rc) {
        xp_patch_stats s;
        xp_patch_total_stats(p, &s);
        char bits[32];
        printf("%s: %llu flips (%llu rows, %llu blocks, %llu scale bits, %llu masks) on %zu "
               "tensors, %s bits\n", out, (unsigned long long)s.flips, (unsigned long long)s.rows,
               (unsigned long long)s.blocks, (unsigned long long)s.scale_bits,
               (unsigned long long)s.masks, p->n_tensors, xp_thousands(s.bits, bits, sizeof bits));
    }
    xp_patch_free(p);
    xp_gguf_close(ga);
    xp_gguf_close(gb);
    return rc ? cli_fail(&err) : EXIT_OK;
}
