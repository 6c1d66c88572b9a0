/* `xorpatch revert`: removes patches from a patched GGUF — the ones named, or every one
 * its record lists — into a new file or in place; with nothing left applied the record
 * goes too and the output is the base again, byte for byte. */
#include <stdlib.h>
#include <string.h>

#include "cli/cmd_patch_util.h"

static const char usage[] =
    "Usage: xorpatch revert -m PATCHED.gguf [-p PATCH ...] (-o OUT.gguf | --in-place)\n"
    "                       [--force]\n"
    "\n"
    "XORs patches out of a file that `xorpatch apply` patched. Without -p every patch its\n"
    "record (metadata xorpatch.applied) lists is removed, using the flips kept in the\n"
    "record; with -p only those, each of which must be recorded as applied (reverting a\n"
    "patch that is not applied would apply it) unless --force. When nothing is left applied\n"
    "the record is removed as well, and the output's SHA-256 is compared with the base\n"
    "fingerprint: equal means the base is restored byte for byte.\n"
    "\n"
    "  -m, --model FILE    the patched model\n"
    "  -p, --patch PATH    a patch to remove (any format, or a Neagari directory); repeat\n"
    "  -o, --output FILE   write the result here (temporary file, then rename)\n"
    "      --in-place      change FILE itself, journaled and crash-safe as for apply (the\n"
    "                      record keeps its reserved length, emptied)\n"
    "      --force         remove -p patches the record does not list (or a file without a\n"
    "                      record, with -o)\n"
    "  -q, --quiet         nothing but results and errors\n"
    "  -h, --help          this text\n";

static const int options[] = {CLI_O_MODEL, CLI_O_PATCH, CLI_O_OUTPUT, CLI_O_IN_PLACE, CLI_O_FORCE};
CLI_COMMAND(cli_revert, "revert", "remove patches from a patched GGUF (a new file, or in place)",
            usage, options, false, execute);

static int reverted(const cli_values *v, const xp_patch_file_result *res)
{
    const char *model = v->model, *out = v->output;
    if (!res->base_sha256[0]) {
        printf("%s: the input had no patch record, so its base is unknown\n", out);
        return EXIT_OK;
    }
    printf("%s: %zu patch(es) still recorded, base SHA-256 %s%s\n", out ? out : model,
           res->n_applied, res->base_sha256, v->in_place ? " (in place)" : "");
    if (out && !res->n_applied)
        printf("%s\n", res->exact_base ? "base restored exactly: the output's SHA-256 equals the "
                                         "base fingerprint"
                                       : "no patch left applied, but the output's SHA-256 differs "
                                         "from the base fingerprint");
    return EXIT_OK;
}

static int execute(const cli_values *v)
{
    return cli_file_command(v, "revert", "PATCHED.gguf", false, xp_patch_file_revert, reverted);
}
