/* `xorpatch stack`: composes patches into one (XOR), reporting per tensor where they
 * overlap — flips present in two patches cancel, so stacking is not concatenation. */
#include <stdlib.h>
#include <string.h>

#include "cli/cmd_patch_util.h"
#include "cli/options.h"

static const char usage[] =
    "Usage: xorpatch stack PATCH PATCH ... -o OUT [--to FORMAT] [-m MODEL | --shape NAME]\n"
    "                      [--force] [--name NAME]\n"
    "\n"
    "Writes the XOR composition of the patches (files in any format, or Neagari\n"
    "directories) as one canonical patch, and prints per tensor the flips and bits going in\n"
    "and coming out and the overlapping bits: those flipped by two patches, which cancel;\n"
    "flips that merge or cancel inside one file (overlapping kinds) are reported per file.\n"
    "Patches made for different base fingerprints are refused unless --force. Row flips\n"
    "count ne0 bits, so bits (and row/block overlaps) need the layout: -m or --shape.\n"
    "\n"
    "  -o, --output FILE   where to write the stacked patch (temporary file, then rename)\n"
    "      --to FORMAT     xorpatch (JSON, the default), binary (the default for .xpb),\n"
    "                      binary-compact, bankai-v1, neagari-v2 or neagari-list (when the\n"
    "                      flips fit)\n"
    "  -m, --model FILE    learn tensor shapes from this GGUF (and check every flip)\n"
    "      --shape NAME    or from a named shape: tiny, bonsai-1.7b, bonsai-4b, bonsai-8b\n"
    "      --force         stack patches made for different bases\n"
    "      --name NAME     the stacked patch's name (default: the inputs' names joined by +)\n"
    "  -q, --quiet         nothing but results and errors\n"
    "  -h, --help          this text\n";

typedef struct row {
    const char *name;
    uint64_t flips_in, bits_in, flips_out, bits_out;
    bool bits_known;
} row;

static row *row_for(row *rows, size_t *n, const char *name)
{
    for (size_t i = 0; i < *n; i++)
        if (strcmp(rows[i].name, name) == 0)
            return &rows[i];
    rows[*n] = (row){.name = name, .bits_known = true};
    return &rows[(*n)++];
}

static void report(xp_patch *const *ps, size_t n, const xp_patch *out)
{
    size_t cap = out->n_tensors, nr = 0;
    for (size_t i = 0; i < n; i++)
        cap += ps[i]->n_tensors;
    row *rows = calloc(cap ? cap : 1, sizeof *rows);
    if (!rows)
        return;
    for (size_t i = 0; i < n; i++)
        for (size_t t = 0; t < ps[i]->n_tensors; t++) {
            xp_patch_stats s;
            xp_patch_tensor_stats(ps[i], t, &s);
            row *r = row_for(rows, &nr, ps[i]->tensors[t].name);
            r->flips_in += s.flips, r->bits_in += s.bits, r->bits_known &= s.bits_known;
        }
    for (size_t t = 0; t < out->n_tensors; t++) {
        xp_patch_stats s;
        xp_patch_tensor_stats(out, t, &s);
        row *r = row_for(rows, &nr, out->tensors[t].name);
        r->flips_out += s.flips, r->bits_out += s.bits, r->bits_known &= s.bits_known;
    }
    for (size_t i = 0; i < n; i++) /* overlaps inside one file, before any stacking */
        if (ps[i]->n_listed != ps[i]->n_flips)
            printf("%s: the file lists %zu flips: %zu merge or cancel within it, so it brings "
                   "%zu\n",
                   ps[i]->name ? ps[i]->name : "?", ps[i]->n_listed,
                   ps[i]->n_listed - ps[i]->n_flips, ps[i]->n_flips);
    printf("%-32s %9s %9s %12s %12s %12s\n", "tensor", "flips in", "flips out", "bits in",
           "bits out", "overlap bits");
    row total = {.name = "total", .bits_known = true};
    for (size_t i = 0; i <= nr; i++) {
        row *r = i < nr ? &rows[i] : &total;
        if (i < nr) {
            total.flips_in += r->flips_in, total.flips_out += r->flips_out;
            total.bits_in += r->bits_in, total.bits_out += r->bits_out;
            total.bits_known &= r->bits_known;
        }
        char a[32], b[32], c[32];
        if (r->bits_known)
            printf("%-32s %9llu %9llu %12s %12s %12s\n", r->name, (unsigned long long)r->flips_in,
                   (unsigned long long)r->flips_out, xp_thousands(r->bits_in, a, sizeof a),
                   xp_thousands(r->bits_out, b, sizeof b),
                   xp_thousands((r->bits_in - r->bits_out) / 2, c, sizeof c));
        else
            printf("%-32s %9llu %9llu %12s %12s %12s\n", r->name, (unsigned long long)r->flips_in,
                   (unsigned long long)r->flips_out, "?", "?", "?");
    }
    free(rows);
}

static const int options[] = {CLI_O_OUTPUT, CLI_O_TO,    CLI_O_MODEL,
                              CLI_O_SHAPE,  CLI_O_FORCE, CLI_O_NAME};
CLI_COMMAND(cli_stack, "stack", "compose patches by XOR and report their overlaps", usage, options,
            true, execute);

static int execute(const cli_values *v)
{
    if (v->n_args < 2)
        return cli_usage_error("stack", "give at least two patches");
    const char *out = v->output;
    int format = cli_patch_output("stack", "-o OUT", v);
    if (format < 0)
        return EXIT_USAGE;
    cli_patches list = {0};
    xp_err err = {0};
    xp_patch *s = NULL;
    int rc = XP_OK;
    for (int i = 0; i < v->n_args && !rc; i++)
        rc = cli_patches_add(&list, v->args[i], &err);
    if (!rc)
        rc = cli_patches_layout(list.p, list.n, v->model, v->shape_name, &err);
    if (!rc)
        rc = xp_patch_stack(&s, list.p, list.n, v->force, &err);
    if (!rc && !s->n_flips)
        rc = xp_err_set(&err, XP_EINVAL, "the patches cancel completely: the stack is empty, "
                        "nothing written");
    if (!rc) {
        size_t len = 1;
        for (size_t i = 0; i < list.n; i++)
            len += strlen(list.p[i]->name ? list.p[i]->name : "?") + 3;
        char *joined = calloc(1, len);
        for (size_t i = 0; joined && i < list.n; i++) {
            if (i)
                strcat(joined, " + ");
            strcat(joined, list.p[i]->name ? list.p[i]->name : "?");
        }
        cli_patch_stamp(s, v->name ? v->name : joined);
        free(joined);
        rc = xp_patch_write(s, format, out, &err);
    }
    if (!rc) {
        report(list.p, list.n, s);
        printf("wrote %s (%s, %zu flips)\n", out, xp_patch_format_name(format), s->n_flips);
    }
    xp_patch_free(s);
    cli_patches_free(&list);
    return rc ? cli_fail(&err) : EXIT_OK;
}
