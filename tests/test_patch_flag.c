/* --patch on the inference commands: generate, logits and perplexity given patches
 * (row, block, scale-bit and embedding flips, hand-made and found by a short search, in
 * the xorpatch, binary and Bankai formats, alone and stacked) print exactly what the
 * same command prints on the GGUF `apply -o` writes, and they refuse what apply refuses. */
#include <string.h>

#include "testutil.h"

static void patches_dir(char *out, size_t size)
{
    snprintf(out, size, "%s/tests/serve/patches", xp_test_env("XP_ROOT", "."));
}

static void tiny_bonsai(char *out, size_t size)
{
    snprintf(out, size, "%s/models/tiny-bonsai.gguf", xp_test_env("XP_ROOT", "."));
}

/* Runs cmd, asserting exit 0; returns stdout (malloc'd). */
static char *run_ok(const char *cmd)
{
    char *out = NULL, *err = NULL;
    int rc = xp_test_run(cmd, NULL, &out, &err);
    cr_assert_eq(rc, 0, "%s\nexit %d: %s", cmd, rc, err ? err : "");
    free(err);
    return out;
}

static bool same_file(const char *a, const char *b)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "cmp -s '%s' '%s'", a, b);
    return system(cmd) == 0;
}

/* The three commands on model (extra: "" or the --patch options), their outputs into
 * out[0..2] and the raw logits into f32. */
static void run_three(const char *model, const char *extra, const char *text, const char *f32,
                      char *out[3])
{
    char cmd[4096];
    const char *bin = xp_test_bin();
    snprintf(cmd, sizeof cmd, "%s generate -m '%s' %s -p 'The capital of France is' -n 16 -q", bin,
             model, extra);
    out[0] = run_ok(cmd);
    snprintf(
        cmd, sizeof cmd,
        "%s logits -m '%s' %s -p 'The capital of Italy is' --all-positions --json --out '%s' -q",
        bin, model, extra, f32);
    out[1] = run_ok(cmd);
    snprintf(cmd, sizeof cmd, "%s perplexity -m '%s' %s -f '%s' --ctx 16 -q", bin, model, extra,
             text);
    out[2] = run_ok(cmd);
}

static void check_same_as_applied(const char *const *names, size_t n)
{
    char model[512], dir[512], text[512], applied[512], f32a[512], f32b[512], f32c[512];
    char opts[2048] = "", dash_p[2048] = "", cmd[4096];
    tiny_bonsai(model, sizeof model);
    patches_dir(dir, sizeof dir);
    for (size_t i = 0; i < n; i++) {
        size_t a = strlen(opts), b = strlen(dash_p);
        snprintf(opts + a, sizeof opts - a, " --patch '%s/%s'", dir, names[i]);
        snprintf(dash_p + b, sizeof dash_p - b, " -p '%s/%s'", dir, names[i]);
    }
    xp_test_tmp_path(text, sizeof text, "ppl.txt");
    xp_test_write(text, "The quick brown fox jumps over the lazy dog. One, two, three, four, "
                        "five. The capital of France is Paris, and the capital of Italy is "
                        "Rome. Seven plus five is twelve.\n");
    xp_test_tmp_path(applied, sizeof applied, "applied.gguf");
    snprintf(cmd, sizeof cmd, "%s apply -m '%s' %s -o '%s' -q", xp_test_bin(), model, dash_p,
             applied);
    free(run_ok(cmd));
    xp_test_tmp_path(f32a, sizeof f32a, "a.f32");
    xp_test_tmp_path(f32b, sizeof f32b, "b.f32");
    xp_test_tmp_path(f32c, sizeof f32c, "c.f32");
    char *want[3], *got[3], *base[3];
    run_three(applied, "", text, f32a, want);
    run_three(model, opts, text, f32b, got);
    static const char *what[] = {"generate", "logits", "perplexity"};
    for (int k = 0; k < 3; k++)
        cr_expect_str_eq(got[k], want[k], "%s with%s", what[k], opts);
    cr_expect(same_file(f32a, f32b), "logits --out with%s", opts);
    run_three(model, "", text, f32c, base);
    cr_expect(!same_file(f32a, f32c),
              "the patches%s change the output (or the test proves nothing)", opts);
    for (int k = 0; k < 3; k++)
        free(want[k]), free(got[k]), free(base[k]);
    unlink(applied), unlink(text), unlink(f32a), unlink(f32b), unlink(f32c);
}

Test(patch_flag, rows_as_applied) { check_same_as_applied((const char *[]){"row.json"}, 1); }
Test(patch_flag, blocks_as_applied) { check_same_as_applied((const char *[]){"block.json"}, 1); }
Test(patch_flag, scale_bits_as_applied)
{
    check_same_as_applied((const char *[]){"scale.json"}, 1);
}
Test(patch_flag, embedding_and_head_as_applied)
{
    check_same_as_applied((const char *[]){"embd.json"}, 1);
}
Test(patch_flag, searched_patches_in_every_format_as_applied)
{
    check_same_as_applied((const char *[]){"search-block.json"}, 1);
    check_same_as_applied((const char *[]){"search-scale.xpb"}, 1);
    check_same_as_applied((const char *[]){"search-row-bankai.json"}, 1);
}
Test(patch_flag, stacked_in_order_as_applied)
{
    check_same_as_applied((const char *[]){"row.json", "block.json", "scale.json"}, 3);
}

/* What apply refuses, --patch refuses with apply's reason. */
Test(patch_flag, refuses_what_apply_refuses)
{
    char model[512], dir[512], cmd[4096], other[512];
    tiny_bonsai(model, sizeof model);
    patches_dir(dir, sizeof dir);
    char *out = NULL, *err = NULL;
    snprintf(cmd, sizeof cmd,
             "%s generate -m '%s' --patch '%s/row.json' --patch '%s/row.json' "
             "-p x -n 2 -q",
             xp_test_bin(), model, dir, dir);
    cr_expect_neq(xp_test_run(cmd, NULL, &out, &err), 0);
    cr_expect(strstr(err, "applying both would cancel them"), "%s", err);
    free(out), free(err);
    /* a patch made for another base: its fingerprint rewritten */
    xp_test_tmp_path(other, sizeof other, "other-base.json");
    snprintf(cmd, sizeof cmd,
             "sed 's/4008c36b926186c2023a7169d0de75a204104bb801ff948fd735835bee66f6c4/%064d/' "
             "'%s/search-block.json' > '%s'",
             0, dir, other);
    cr_assert_eq(system(cmd), 0);
    snprintf(cmd, sizeof cmd, "%s logits -m '%s' --patch '%s' -p x -q", xp_test_bin(), model,
             other);
    cr_expect_neq(xp_test_run(cmd, NULL, &out, &err), 0);
    cr_expect(strstr(err, "made for the base model with SHA-256 0000"), "%s", err);
    free(out), free(err);
    unlink(other);
}
