/* `xorpatch verify`: proves that a patched file is its base XOR its patches, bit for bit,
 * and reports the Hamming distance per tensor — what a deployer runs before trusting a
 * file someone else patched. */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cmd_patch_util.h"
#include "cli/options.h"
#include "core/utf8.h"

static const char usage[] =
    "Usage: xorpatch verify -m PATCHED.gguf -b BASE.gguf [-p PATCH ...] [--json]\n"
    "\n"
    "Proves PATCHED = BASE XOR PATCHES bit for bit: for every tensor, the bits that differ\n"
    "between BASE and PATCHED (the Hamming distance), the bits the patches flip, and the\n"
    "bits of PATCHED that are not BASE XOR PATCHES (must be 0); metadata other than the\n"
    "patch record must be equal too. Without -p the patches PATCHED's record lists are\n"
    "used. Also compares the base fingerprint PATCHED records with BASE's SHA-256. An\n"
    "interrupted in-place operation on either file is completed first.\n"
    "\n"
    "Exit status 0 when proven, 2 when any bit or key differs.\n"
    "\n"
    "  -m, --model FILE    the patched model\n"
    "  -b, --base FILE     the unpatched model\n"
    "  -p, --patch PATH    a patch (any format, or a Neagari directory); repeat\n"
    "      --json          one JSON object: equal, bits_changed, bits_expected, bits_wrong,\n"
    "                      metadata_differences, base_fingerprint and tensors [{name,\n"
    "                      bits_changed, bits_expected, bits_wrong}]\n"
    "  -q, --quiet         nothing but results and errors\n"
    "  -h, --help          this text\n";

static void print_text(const xp_verify_report *r, const char *fp_note)
{
    char a[32], b[32], c[32];
    printf("%-32s %14s %14s %12s\n", "tensor", "bits changed", "bits expected", "bits wrong");
    for (size_t i = 0; i < r->n; i++)
        printf("%-32s %14s %14s %12s\n", r->tensors[i].name,
               xp_thousands(r->tensors[i].bits_changed, a, sizeof a),
               xp_thousands(r->tensors[i].bits_expected, b, sizeof b),
               xp_thousands(r->tensors[i].bits_wrong, c, sizeof c));
    printf("%-32s %14s %14s %12s\n", "total", xp_thousands(r->bits_changed, a, sizeof a),
           xp_thousands(r->bits_expected, b, sizeof b), xp_thousands(r->bits_wrong, c, sizeof c));
    printf("base fingerprint: %s\n", fp_note);
    if (r->meta_differences)
        printf("metadata: %zu key(s) differ (first: %s)\n", r->meta_differences,
               r->first_meta_difference);
    printf("%s\n", r->equal ? "VERIFIED: PATCHED = BASE XOR PATCHES, bit for bit"
                            : "MISMATCH: PATCHED is not BASE XOR PATCHES");
}

static void print_json(const xp_verify_report *r, const char *fp_note)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddBoolToObject(o, "equal", r->equal);
    cJSON_AddNumberToObject(o, "bits_changed", (double)r->bits_changed);
    cJSON_AddNumberToObject(o, "bits_expected", (double)r->bits_expected);
    cJSON_AddNumberToObject(o, "bits_wrong", (double)r->bits_wrong);
    cJSON_AddNumberToObject(o, "metadata_differences", (double)r->meta_differences);
    cJSON_AddStringToObject(o, "base_fingerprint", fp_note);
    cJSON *arr = cJSON_AddArrayToObject(o, "tensors");
    for (size_t i = 0; i < r->n; i++) {
        cJSON *e = cJSON_CreateObject();
        xp_json_add_string(e, "name", r->tensors[i].name);
        cJSON_AddNumberToObject(e, "bits_changed", (double)r->tensors[i].bits_changed);
        cJSON_AddNumberToObject(e, "bits_expected", (double)r->tensors[i].bits_expected);
        cJSON_AddNumberToObject(e, "bits_wrong", (double)r->tensors[i].bits_wrong);
        cJSON_AddItemToArray(arr, e);
    }
    cli_print_json(o);
}

static const int options[] = {CLI_O_MODEL, CLI_O_BASE, CLI_O_PATCH, CLI_O_JSON};
CLI_COMMAND(cli_verify, "verify", "prove a patched GGUF is base XOR patches, bit for bit", usage,
            options, false, execute);

static int execute(const cli_values *v)
{
    const char *model = v->model, *base = v->base;
    if (!model)
        return cli_usage_error("verify", "-m PATCHED.gguf is required");
    if (!base)
        return cli_usage_error("verify", "-b BASE.gguf is required");
    const cli_patches *list = &v->patches;
    xp_err err = {0};
    bool rec_m = false, rec_b = false, present = false;
    xp_gguf *gp = NULL, *gb = NULL;
    xp_patch_record rec = {0};
    char base_sha[65] = "";
    xp_verify_report r = {0};
    int rc = xp_patch_file_recover(model, &rec_m, &err);
    if (!rc)
        rc = xp_patch_file_recover(base, &rec_b, &err);
    if (rec_m || rec_b)
        cli_note("completed an interrupted in-place operation on %s first",
                 rec_m ? model : base);
    if (!rc)
        rc = xp_gguf_open(&gp, model, &err);
    if (!rc)
        rc = xp_gguf_open(&gb, base, &err);
    if (!rc)
        rc = xp_patch_record_read(gp, &rec, &present, &err);
    if (!rc && !list->n && !present)
        rc = xp_err_set(&err, XP_EINVAL, "%s has no patch record: name the patches with -p",
                        model);
    if (!rc)
        rc = cli_model_base(base, gb, base_sha, &err);
    char note[256];
    if (!present)
        snprintf(note, sizeof note, "%s records none; BASE is %.16s", model, base_sha);
    else
        snprintf(note, sizeof note, "%s (recorded %.16s, BASE %.16s)",
                 strcmp(rec.base_sha256, base_sha) ? "DIFFERS" : "matches", rec.base_sha256,
                 base_sha);
    xp_patch *const *ps = list->n ? list->p : rec.patches;
    size_t n = list->n ? list->n : rec.n;
    if (!rc)
        rc = xp_patch_verify(gp, gb, ps, n, &r, &err);
    if (!rc) {
        if (v->json)
            print_json(&r, note);
        else
            print_text(&r, note);
    }
    bool equal = r.equal;
    xp_verify_report_free(&r);
    xp_patch_record_free(&rec);
    xp_gguf_close(gp);
    xp_gguf_close(gb);
    if (rc)
        return cli_fail(&err);
    return equal ? EXIT_OK : EXIT_BAD_INPUT;
}
