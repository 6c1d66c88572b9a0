/* The layer check (scripts/check-layers.sh, which `make test` runs before the suites):
 * it passes on this tree, and on a copy of the tree with includes that break its rules
 * it fails, naming every file, line and rule broken and nothing else. The job layer
 * (above eval and search, below the command line) is known to it before its folder
 * exists. */
#include <stdarg.h>
#include <string.h>

#include "testutil.h"

static void sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void sh(const char *fmt, ...)
{
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    cr_assert_eq(system(cmd), 0, "%s", cmd);
}

/* Runs the check on the tree at root; returns its exit status, and what it wrote to
 * stdout and stderr (the caller frees them). */
static int check(const char *root, char **out, char **err)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "'%s/scripts/check-layers.sh' '%s'", xp_test_env("XP_ROOT", "."),
             root);
    return xp_test_run(cmd, NULL, out, err);
}

/* A new file in the copy at root whose line 2 includes header. */
static void add_file(const char *root, const char *file, const char *header)
{
    sh("mkdir -p \"$(dirname '%s/%s')\" && printf '/* injected */\\n#include \"%s\"\\n' > '%s/%s'",
       root, file, header, root, file);
}

static size_t count(const char *text, const char *needle)
{
    size_t n = 0;
    for (const char *p = text; (p = strstr(p, needle)); p++)
        n++;
    return n;
}

Test(layers, this_tree_keeps_the_rules)
{
    char *out = NULL, *err = NULL;
    int rc = check(xp_test_env("XP_ROOT", "."), &out, &err);
    cr_assert_eq(rc, 0, "check-layers fails on this tree:\n%s", err);
    cr_expect(strstr(out, "check-layers: ") == out && count(out, "\n") == 1,
              "one line saying what was checked, got:\n%s", out);
    cr_expect(strstr(out, "< search < eval < job < serve < cli"),
              "the order, with job and serve:\n%s", out);
    free(out);
    free(err);
}

Test(layers, injected_includes_fail_naming_file_line_and_rule)
{
    char tmp[512];
    xp_test_tmp_path(tmp, sizeof tmp, "layers");
    const char *root = xp_test_env("XP_ROOT", ".");
    sh("mkdir -p '%s' && cp -r '%s/src' '%s/include' '%s/fuzz' '%s'", tmp, root, root, root, tmp);
    /* one include of each kind the rules forbid, and two they allow */
    add_file(tmp, "src/model/upward.c", "xorpatch/search.h");
    add_file(tmp, "src/patch/sideways.c", "xorpatch/probe.h");
    add_file(tmp, "src/probe/private.c", "tok/tok_internal.h");
    add_file(tmp, "src/gguf/umbrella.c", "xorpatch.h");
    add_file(tmp, "src/eval/below_job.c", "xorpatch/job.h");
    add_file(tmp, "src/job/above_search.c", "xorpatch/search.h");
    add_file(tmp, "src/search/shared_base.c", "core/rng.h");
    add_file(tmp, "fuzz/fuzz_private.c", "core/alloc.h");
    sh("sed -i '1i #include \"model/kv.h\"' '%s/include/xorpatch/model.h'", tmp);

    char *out = NULL, *err = NULL;
    int rc = check(tmp, &out, &err);
    cr_assert_eq(rc, 1, "check-layers should fail (exit %d):\n%s%s", rc, out, err);
    const char *want[] = {
        "src/model/upward.c:2: includes xorpatch/search.h of layer search, which is above "
        "model",
        "src/patch/sideways.c:2: includes xorpatch/probe.h of layer probe, which patch does "
        "not build on",
        "src/probe/private.c:2: includes tok/tok_internal.h, a private header of layer tok",
        "src/gguf/umbrella.c:2: a library file includes the umbrella header xorpatch.h",
        "src/eval/below_job.c:2: includes xorpatch/job.h of layer job, which is above eval",
        "fuzz/fuzz_private.c:2: a program outside the library includes core/alloc.h",
        "include/xorpatch/model.h:1: a public header includes model/kv.h, a private header "
        "of layer model",
    };
    size_t n = sizeof want / sizeof want[0];
    for (size_t i = 0; i < n; i++)
        cr_expect(strstr(err, want[i]), "missing \"%s\" in:\n%s", want[i], err);
    cr_expect_eq(count(err, "\n"), n + 1, "those %zu and the count, nothing else:\n%s", n, err);
    cr_expect(strstr(err, "check-layers: 7 include(s) break the layer rules"), "%s", err);
    cr_expect_str_empty(out);
    free(out);
    free(err);
    sh("rm -rf '%s'", tmp);
}
