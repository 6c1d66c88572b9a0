/* `xorpatch apply`: writes BASE ⊕ patches to a new GGUF, or flips the bytes of the file
 * itself (--in-place, journaled and crash-safe), recording in the file what was applied
 * so that the same patch is never applied twice and revert needs nothing else. */
#include <stdlib.h>
#include <string.h>

#include "cli/cmd_patch_util.h"

static const char usage[] =
    "Usage: xorpatch apply -m BASE.gguf -p PATCH [-p PATCH ...] (-o OUT.gguf | --in-place)\n"
    "                      [--force]\n"
    "\n"
    "XORs the patches into the model's 1-bit weights. Every flip of every patch is checked\n"
    "against the model first (tensor exists and is Q1_0, row / block in range, scale bit\n"
    "0-15): all or nothing. A patch already applied to the file is refused (XOR would\n"
    "silently revert it), and so is a patch whose base fingerprint (the SHA-256 of the\n"
    "unpatched file it was made for) differs from the file's, unless --force. Bankai and\n"
    "Neagari files name no fingerprint; they are applied without that check. A patch\n"
    "without flips (the record of a search that kept none) is refused: nothing to apply.\n"
    "\n"
    "The output records what was applied in one metadata string, xorpatch.applied: the\n"
    "base fingerprint and each patch's name, identity (flips_sha256) and flips. The string\n"
    "is padded to a reserved length (what it needs plus 64 KiB) so that --in-place can later\n"
    "rewrite it without changing the file's length; llama.cpp ignores the extra key.\n"
    "\n"
    "  -m, --model FILE    the model to patch (a patched file works too: its record says\n"
    "                      what is applied already and what its base was)\n"
    "  -p, --patch PATH    a patch: xorpatch JSON or binary (.xpb), Bankai\n"
    "                      bankai_row_xor_v1, Neagari bankai_group_xor_v2, or a Neagari patch\n"
    "                      directory (its patch_*.json in manifest order); repeat for several\n"
    "  -o, --output FILE   write the patched model here (temporary file, then rename); a\n"
    "                      device, FIFO or directory at FILE is refused, never replaced\n"
    "      --in-place      change FILE itself: the changed bytes go first to a journal beside\n"
    "                      it (FILE.xpjournal), then into the file. A file without a record (a\n"
    "                      pristine base) is first rewritten once, whole, through a temporary\n"
    "                      copy, to reserve the record's room; later runs flip bytes directly\n"
    "      --force         apply despite a differing base fingerprint\n"
    "  -q, --quiet         nothing but results and errors\n"
    "  -h, --help          this text\n"
    "\n"
    "What a crash (kill -9, power loss) leaves, and what the next command does with it:\n"
    "  -o OUT       OUT is what it was before (or absent) or the complete new file; a\n"
    "               leftover OUT.tmp.XXXXXX is removed by the next command that writes\n"
    "               or opens OUT.\n"
    "  --in-place   FILE is exactly one of: as it was; for a pristine base, the same\n"
    "               weights with an empty record reserved (the rewrite was done, no flip\n"
    "               yet); partly patched, with FILE.xpjournal beside it; or completely\n"
    "               patched. Every xorpatch command that opens FILE (apply, revert,\n"
    "               verify, diff, inspect, show -m, eval, logits, search, ...) first\n"
    "               completes a journal to exactly the patched state and removes it, or\n"
    "               refuses, saying so, when it cannot write FILE; leftover\n"
    "               FILE.tmp.XXXXXX and FILE.xpjournal.tmp files (from before any byte of\n"
    "               FILE changed) are removed. Other programs do not know the journal:\n"
    "               while FILE.xpjournal exists, run `xorpatch verify -m FILE` before\n"
    "               giving FILE to them.\n"
    "\n"
    "Testing: XORPATCH_CRASH_AFTER=N makes the process kill itself after the Nth step that\n"
    "changes a file in place (journal written, committed, each half of each range, sync,\n"
    "journal removed).\n";

static void report(const xp_patch *p)
{
    xp_patch_stats s;
    xp_patch_total_stats(p, &s);
    char id[65] = "", bits[32];
    xp_patch_flips_sha256((xp_patch *)p, id, NULL);
    printf("applied %s: %llu flips (%llu rows, %llu blocks, %llu scale bits, %llu masks), "
           "%s bits, flips_sha256 %.16s\n", p->name ? p->name : p->path,
           (unsigned long long)s.flips, (unsigned long long)s.rows,
           (unsigned long long)s.blocks, (unsigned long long)s.scale_bits,
           (unsigned long long)s.masks, xp_thousands(s.bits, bits, sizeof bits), id);
    if (!p->base_sha256[0])
        cli_note("%s names no base fingerprint (%s file): applied without that check",
                 p->path, xp_patch_format_name(p->format));
}

static const int options[] = {CLI_O_MODEL, CLI_O_PATCH, CLI_O_OUTPUT, CLI_O_IN_PLACE, CLI_O_FORCE};
CLI_COMMAND(cli_apply, "apply", "apply patches to a GGUF (a new file, or in place, crash-safe)",
            usage, options, false, execute);

static int applied(const cli_values *v, const xp_patch_file_result *res)
{
    const char *model = v->model, *out = v->output;
    if (res->prepared)
        cli_note("%s had no patch record: rewrote it once with room for one (later --in-place "
                 "runs flip bytes directly)", model);
    for (size_t i = 0; i < v->patches.n; i++)
        report(v->patches.p[i]);
    printf("%s: %zu patch(es) recorded, base SHA-256 %s%s\n", out ? out : model, res->n_applied,
           res->base_sha256, v->in_place ? " (in place)" : "");
    return EXIT_OK;
}

static int execute(const cli_values *v)
{
    return cli_file_command(v, "apply", "BASE.gguf", true, xp_patch_file_apply, applied);
}
