/* Patching files through the xorpatch program: apply -o / revert -o restore the base byte
 * for byte and leave a file the GGUF reader accepts; verify proves base ⊕ patch and finds
 * a single stray bit; double application, a wrong base and reverting what is not applied
 * are refused; --in-place keeps the file's length; and the crash test: `apply --in-place`
 * and `revert --in-place` killed after every one of their write steps, and at random
 * instants, always leave a file that the next command restores to exactly the base or
 * exactly the patched state. Also diff, stack, show and convert end to end. */
#include <cjson/cJSON.h>
#include <signal.h>
#include <string.h>
#include <time.h>

#include "test_patch_util.h"

/* snprintf that fails the test instead of truncating a command */
#define FMT(buf, ...)                                                                       \
    cr_assert_lt(snprintf(buf, sizeof buf, __VA_ARGS__), (int)sizeof buf, "command too long")

static int run(const char *args, char **out, char **err)
{
    char cmd[6000];
    FMT(cmd, "NO_COLOR=1 %s %s", xp_test_bin(), args);
    return xp_test_run(cmd, NULL, out, err);
}

/* Runs and expects an exit code and (when given) a phrase on stdout+stderr. */
static void expect_run(const char *args, int code, const char *needle)
{
    char *out, *err;
    int rc = run(args, &out, &err);
    cr_expect_eq(rc, code, "`xorpatch %s` exited %d, expected %d\n%s%s", args, rc, code, out,
                 err);
    if (needle)
        cr_expect(strstr(out, needle) || strstr(err, needle), "`xorpatch %s` lacks '%s':\n%s%s",
                  args, needle, out, err);
    free(out), free(err);
}

/* A random patch on the small model, bound, written as xorpatch JSON; base fingerprint
 * set when base_sha is given. */
static void write_patch(const char *model, uint64_t seed, int n, const char *base_sha,
                        const char *path)
{
    xp_gguf *g = xp_test_open(model);
    xp_patch *p = xp_test_random_patch(g, seed, n);
    xp_err err = {0};
    cr_assert_eq(xp_patch_bind(p, g, &err), XP_OK, "%s", err.msg);
    cr_assert_gt(p->n_flips, 0);
    if (base_sha)
        memcpy(p->base_sha256, base_sha, 65);
    free(p->name);
    char name[32];
    snprintf(name, sizeof name, "random-%llu", (unsigned long long)seed);
    p->name = strdup(name);
    cr_assert_eq(xp_patch_write(p, XP_PATCH_JSON, path, &err), XP_OK, "%s", err.msg);
    xp_patch_free(p);
    xp_gguf_close(g);
}

static void sha_of(const char *path, char hex[65])
{
    xp_err err = {0};
    cr_assert_eq(xp_sha256_file(path, hex, &err), XP_OK, "%s", err.msg);
}

/* A fresh temporary path that keeps stem's extension (formats are chosen by it). */
static void tmp(char *out, const char *stem)
{
    const char *dot = strrchr(stem, '.');
    char base[64];
    snprintf(base, sizeof base, "%.*s", dot ? (int)(dot - stem) : 63, stem);
    char path[400];
    xp_test_tmp_path(path, sizeof path, base);
    snprintf(out, 512, "%s%s", path, dot ? dot : "");
}

Test(patch_file, apply_and_revert_copies_restore_the_base_exactly)
{
    char base[512], p[512], a[512], r[512], args[4096], sha[65];
    xp_test_small_model(base, sizeof base);
    sha_of(base, sha);
    tmp(p, "p.json"), tmp(a, "a.gguf"), tmp(r, "r.gguf");
    write_patch(base, 1, 30, sha, p);
    FMT(args, "apply -m '%s' -p '%s' -o '%s'", base, p, a);
    expect_run(args, 0, "1 patch(es) recorded");
    /* a valid GGUF: the same tensors, one more key, holding the record */
    xp_gguf *gb = xp_test_open(base), *ga = xp_test_open(a);
    cr_expect_eq(ga->n_tensors, gb->n_tensors);
    cr_expect_eq(ga->n_kv, gb->n_kv + 1);
    const xp_gguf_value *v = xp_gguf_get(ga, XP_PATCH_RECORD_KEY);
    cr_assert(v && v->type == XP_GGUF_STRING);
    cr_expect_eq(v->n % 4096, 0, "the record is padded to its reserved length");
    xp_patch_record rec;
    bool present;
    xp_err err = {0};
    cr_assert_eq(xp_patch_record_read(ga, &rec, &present, &err), XP_OK, "%s", err.msg);
    cr_expect(present);
    cr_expect_str_eq(rec.base_sha256, sha);
    cr_assert_eq(rec.n, 1);
    cr_expect_str_eq(rec.patches[0]->name, "random-1");
    for (size_t i = 0; i < ga->n_tensors; i++)
        cr_expect_eq(ga->tensors[i].offset % ga->alignment, 0);
    xp_patch_record_free(&rec);
    xp_gguf_close(ga), xp_gguf_close(gb);
    FMT(args, "verify -m '%s' -b '%s'", a, base);
    expect_run(args, 0, "VERIFIED");
    FMT(args, "verify -m '%s' -b '%s' -p '%s' --json", a, base, p);
    expect_run(args, 0, "\"bits_wrong\":0");
    FMT(args, "revert -m '%s' -o '%s'", a, r);
    expect_run(args, 0, "base restored exactly");
    cr_expect(xp_test_same_file(r, base), "revert(apply(base)) is the base, byte for byte");
    FMT(args, "revert -m '%s' -p '%s' -o '%s'", a, p, r);
    expect_run(args, 0, "base restored exactly");
}

Test(patch_file, refusals)
{
    char base[512], p[512], q[512], a[512], b[512], args[4096], sha[65];
    xp_test_small_model(base, sizeof base);
    sha_of(base, sha);
    tmp(p, "p.json"), tmp(q, "q.json"), tmp(a, "a.gguf"), tmp(b, "b.gguf");
    write_patch(base, 2, 20, sha, p);
    write_patch(base, 3, 20, "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff", q);
    FMT(args, "apply -m '%s' -p '%s' -o '%s'", base, p, a);
    expect_run(args, 0, NULL);
    FMT(args, "apply -m '%s' -p '%s' -o '%s'", a, p, b);
    expect_run(args, 2, "already applied");
    FMT(args, "apply -m '%s' -p '%s' -p '%s' -o '%s'", base, p, p, b);
    expect_run(args, 2, "the same patch as");
    FMT(args, "apply -m '%s' -p '%s' -o '%s'", a, q, b);
    expect_run(args, 2, "refused (--force applies it anyway)");
    FMT(args, "apply -m '%s' -p '%s' -o '%s' --force", a, q, b);
    expect_run(args, 0, "2 patch(es) recorded");
    FMT(args, "revert -m '%s' -p '%s' -o '%s'", a, q, b);
    expect_run(args, 2, "not recorded as applied");
    FMT(args, "revert -m '%s' -o '%s'", base, b);
    expect_run(args, 2, "records no applied patch");
    /* a file patched by another tool (no record): reverting needs the patch and --force */
    xp_gguf *ga = xp_test_open(a);
    xp_gguf_writer *w = xp_gguf_writer_new();
    xp_err err = {0};
    cr_assert_eq(xp_gguf_writer_copy_from(w, ga, &err), XP_OK);
    cr_assert_eq(xp_gguf_writer_remove(w, XP_PATCH_RECORD_KEY), XP_OK);
    cr_assert_eq(xp_gguf_writer_write(w, b, &err), XP_OK, "%s", err.msg);
    xp_gguf_writer_free(w);
    xp_gguf_close(ga);
    char r[512];
    tmp(r, "r.gguf");
    FMT(args, "revert -m '%s' -p '%s' -o '%s'", b, p, r);
    expect_run(args, 2, "--force reverts it anyway");
    FMT(args, "revert -m '%s' -p '%s' -o '%s' --force", b, p, r);
    expect_run(args, 0, "its base is unknown");
    cr_expect(xp_test_same_file(r, base));
    FMT(args, "apply -m '%s' -o '%s'", base, b);
    expect_run(args, 2, "give at least one -p PATCH");
    FMT(args, "apply -m '%s' -p '%s' -o '%s' --in-place", base, p, b);
    expect_run(args, 2, "one of them");
    FMT(args, "verify -m '%s' -b '%s'", base, base);
    expect_run(args, 2, "has no patch record");
}

Test(patch_file, verify_finds_a_single_stray_bit)
{
    char base[512], p[512], a[512], args[4096];
    xp_test_small_model(base, sizeof base);
    tmp(p, "p.json"), tmp(a, "a.gguf");
    write_patch(base, 4, 10, NULL, p);
    FMT(args, "apply -m '%s' -p '%s' -o '%s' -q", base, p, a);
    expect_run(args, 0, NULL);
    xp_gguf *g = xp_test_open(a);
    const xp_gguf_tensor *t = xp_gguf_tensor_by_name(g, "output.weight");
    uint64_t off = g->data_offset + t->offset + 7 * 18 + 5;
    xp_gguf_close(g);
    FILE *f = fopen(a, "r+b");
    fseek(f, (long)off, SEEK_SET);
    int c = fgetc(f);
    fseek(f, (long)off, SEEK_SET);
    fputc(c ^ 0x10, f);
    fclose(f);
    char *out, *err;
    FMT(args, "verify -m '%s' -b '%s' --json", a, base);
    cr_expect_eq(run(args, &out, &err), 2, "%s", err);
    cJSON *o = cJSON_Parse(out);
    cr_assert_not_null(o, "%s", out);
    cr_expect(cJSON_IsFalse(cJSON_GetObjectItem(o, "equal")));
    cr_expect_eq(cJSON_GetObjectItem(o, "bits_wrong")->valuedouble, 1);
    bool found = false;
    cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(o, "tensors"))
    if (strcmp(cJSON_GetObjectItem(e, "name")->valuestring, "output.weight") == 0)
        found = cJSON_GetObjectItem(e, "bits_wrong")->valuedouble == 1;
    cr_expect(found, "%s", out);
    cJSON_Delete(o);
    free(out), free(err);
}

Test(patch_file, in_place_keeps_the_length_and_tracks_patches)
{
    char base[512], p[512], q[512], f[512], args[4096];
    xp_test_small_model(base, sizeof base);
    tmp(p, "p.json"), tmp(q, "q.json"), tmp(f, "inplace.gguf");
    write_patch(base, 5, 25, NULL, p);
    write_patch(base, 6, 25, NULL, q);
    xp_test_copy(base, f);
    FMT(args, "apply -m '%s' -p '%s' --in-place", f, p);
    expect_run(args, 0, "rewrote it once with room");
    struct stat st0, st;
    stat(f, &st0);
    FMT(args, "apply -m '%s' -p '%s' --in-place", f, q);
    expect_run(args, 0, "2 patch(es) recorded");
    stat(f, &st);
    cr_expect_eq(st.st_size, st0.st_size, "in place keeps the length");
    FMT(args, "apply -m '%s' -p '%s' --in-place", f, q);
    expect_run(args, 2, "already applied");
    FMT(args, "verify -m '%s' -b '%s'", f, base);
    expect_run(args, 0, "VERIFIED");
    FMT(args, "revert -m '%s' -p '%s' --in-place", f, p);
    expect_run(args, 0, "1 patch(es) still recorded");
    FMT(args, "verify -m '%s' -b '%s' -p '%s'", f, base, q);
    expect_run(args, 0, "VERIFIED");
    FMT(args, "revert -m '%s' --in-place", f);
    expect_run(args, 0, "0 patch(es) still recorded");
    stat(f, &st);
    cr_expect_eq(st.st_size, st0.st_size);
    FMT(args, "verify -m '%s' -b '%s'", f, base);
    expect_run(args, 0, "VERIFIED");
    char r[512];
    tmp(r, "r.gguf");
    FMT(args, "apply -m '%s' -p '%s' --in-place -q", f, p);
    expect_run(args, 0, NULL);
    FMT(args, "revert -m '%s' -o '%s'", f, r);
    expect_run(args, 0, "base restored exactly");
    cr_expect(xp_test_same_file(r, base));
}

/* ---- the crash test -------------------------------------------------------------------- */

typedef struct states {
    char base[512], prepared[512], patched[512], patch[512];
} states;

/* The pristine base, the same with an empty record (what an in-place apply makes first),
 * and that with the patch applied in place. */
static void make_states(states *s)
{
    char args[4096];
    xp_test_small_model(s->base, sizeof s->base);
    tmp(s->prepared, "prepared.gguf"), tmp(s->patched, "patched.gguf"), tmp(s->patch, "kp.json");
    write_patch(s->base, 7, 24, NULL, s->patch);
    xp_test_copy(s->base, s->prepared);
    FMT(args, "apply -m '%s' -p '%s' --in-place -q", s->prepared, s->patch);
    expect_run(args, 0, NULL);
    xp_test_copy(s->prepared, s->patched);
    FMT(args, "revert -m '%s' --in-place -q", s->prepared);
    expect_run(args, 0, NULL);
    cr_assert_not(xp_test_same_file(s->prepared, s->patched));
}

/* Which exact state a file is in: 0 base, 1 prepared base, 2 patched, -1 none. */
static int state_of(const states *s, const char *f)
{
    return xp_test_same_file(f, s->base)       ? 0
           : xp_test_same_file(f, s->prepared) ? 1
           : xp_test_same_file(f, s->patched)  ? 2
                                               : -1;
}

static bool exists(const char *path, const char *suffix)
{
    char p[600];
    snprintf(p, sizeof p, "%s%s", path, suffix);
    return access(p, F_OK) == 0;
}

/* Crashes `command` after each of its steps in turn, until it runs to the end. */
static void crash_every_step(const states *s, const char *from, const char *command,
                             int counts[3], int *steps)
{
    char k[512], args[4096];
    tmp(k, "crash.gguf");
    for (int n = 1;; n++) {
        cr_assert_lt(n, 500, "the command never finished");
        xp_test_copy(from, k);
        char a2[4200];
        FMT(a2, "-p '%s'", s->patch);
        FMT(args, "XORPATCH_CRASH_AFTER=%d %s %s -m '%s' %s --in-place -q", n,
                 xp_test_bin(), command, k, strcmp(command, "apply") == 0 ? a2 : "");
        int rc = xp_test_run(args, NULL, NULL, NULL);
        if (rc == 0) {
            *steps = n - 1;
            break;
        }
        /* killed: the shell reports 128 + SIGKILL, or system() no exit at all */
        cr_assert(rc == 128 + SIGKILL || rc == 128, "step %d: exit %d instead of being killed",
                  n, rc);
        /* the next command recognises the interruption and completes it */
        FMT(args, "verify -m '%s' -b '%s' -q", k, s->base);
        run(args, NULL, NULL);
        cr_expect_not(exists(k, ".xpjournal") || exists(k, ".xpjournal.tmp"),
                      "step %d: journal left after recovery", n);
        int st = state_of(s, k);
        cr_expect(st == 1 || st == 2, "%s killed after step %d: neither base nor patched",
                  command, n);
        if (st >= 1)
            counts[st]++;
    }
    cr_expect_eq(state_of(s, k), strcmp(command, "apply") ? 1 : 2);
    unlink(k);
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Starts `xorpatch apply --in-place` and kills it after delay seconds (or lets it end). */
static void kill_after(const states *s, const char *file, double delay)
{
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        freopen("/dev/null", "w", stdout);
        freopen("/dev/null", "w", stderr);
        execl(xp_test_bin(), "xorpatch", "apply", "-m", file, "-p", s->patch, "--in-place", "-q",
              (char *)NULL);
        _exit(127);
    }
    if (delay >= 0) {
        struct timespec ts = {(time_t)delay, (long)((delay - (time_t)delay) * 1e9)};
        nanosleep(&ts, NULL);
        kill(pid, SIGKILL);
    }
    int status;
    waitpid(pid, &status, 0);
    cr_assert(WIFSIGNALED(status) || (WIFEXITED(status) && WEXITSTATUS(status) == 0),
              "apply exited %d", WEXITSTATUS(status));
}

Test(patch_file, killed_at_every_step_and_at_random_instants, .timeout = 300)
{
    states s;
    make_states(&s);
    int apply_counts[3] = {0}, revert_counts[3] = {0}, apply_steps = 0, revert_steps = 0;
    crash_every_step(&s, s.prepared, "apply", apply_counts, &apply_steps);
    crash_every_step(&s, s.patched, "revert", revert_counts, &revert_steps);
    cr_expect_gt(apply_counts[1], 0, "some crashes left the base");
    cr_expect_gt(apply_counts[2], 0, "some crashes were completed to patched");
    cr_expect_gt(revert_counts[2], 0);
    cr_expect_gt(revert_counts[1], 0);

    /* random instants: from the prepared base, and from the pristine base (where the
     * in-place apply first rewrites the whole file) */
    bool asan = getenv("XP_ASAN") != NULL;
    int trials = asan ? 24 : 60, outcome[3] = {0}, interrupted = 0;
    char k[512], args[4096];
    tmp(k, "random-kill.gguf");
    double t0 = now();
    for (int i = 0; i < 3; i++) {
        xp_test_copy(s.prepared, k);
        kill_after(&s, k, -1);
    }
    double span = (now() - t0) / 3;
    xp_rng r;
    xp_rng_seed(&r, 2024);
    for (int i = 0; i < trials; i++) {
        const char *from = i % 4 == 3 ? s.base : s.prepared;
        xp_test_copy(from, k);
        kill_after(&s, k, span * 1.2 * xp_rng_f64(&r));
        interrupted += exists(k, ".xpjournal") || exists(k, ".xpjournal.tmp");
        /* the next command: verify (state kept), or revert (which must end at the base) */
        bool by_revert = i % 2;
        if (by_revert)
            FMT(args, "revert -m '%s' --in-place -q", k);
        else
            FMT(args, "verify -m '%s' -b '%s' -q", k, s.base);
        run(args, NULL, NULL);
        int st = state_of(&s, k);
        cr_expect(st >= 0, "trial %d: the file is in no exact state", i);
        if (by_revert)
            cr_expect(st == 1 || (st == 0 && from == s.base), "trial %d: revert left state %d",
                      i, st);
        if (st >= 0)
            outcome[st]++;
        /* nothing of the killed run is left: no journal, no temporary copy */
        char left[1200];
        snprintf(left, sizeof left, "ls '%s'.tmp.* '%s'.xpjournal* >/dev/null 2>&1", k, k);
        cr_expect_neq(system(left), 0, "trial %d: a temporary or journal of %s was left", i, k);
    }
    unlink(k);
    fprintf(stderr, "patch kill test: apply killed after each of its %d steps -> %d base, %d "
            "patched; revert after each of its %d steps -> %d patched, %d base; %d random kills "
            "(0-%.0f ms, %d mid-journal) -> %d pristine, %d base, %d patched, every one exact\n",
            apply_steps, apply_counts[1], apply_counts[2], revert_steps, revert_counts[2],
            revert_counts[1], trials, span * 1200, interrupted, outcome[0], outcome[1],
            outcome[2]);
}

/* ---- diff, stack, show, convert ---------------------------------------------------------- */

Test(patch_file, diff_stack_show_and_convert)
{
    char base[512], p[512], q[512], a[512], d[512], x[512], bin[512], args[4096];
    xp_test_small_model(base, sizeof base);
    tmp(p, "p.json"), tmp(q, "q.json"), tmp(a, "a.gguf"), tmp(d, "d.json"), tmp(x, "x.json");
    tmp(bin, "p.xpb");
    write_patch(base, 8, 30, NULL, p);
    write_patch(base, 9, 30, NULL, q);
    FMT(args, "apply -m '%s' -p '%s' -o '%s' -q", base, p, a);
    expect_run(args, 0, NULL);
    FMT(args, "diff '%s' '%s' -o '%s'", base, a, d);
    expect_run(args, 0, "flips");
    /* the diff is the patch: same identity, and applying it again is refused */
    xp_patch *pp, *dp;
    xp_err err = {0};
    cr_assert_eq(xp_patch_read(&pp, p, &err), XP_OK, "%s", err.msg);
    cr_assert_eq(xp_patch_read(&dp, d, &err), XP_OK, "%s", err.msg);
    char ip[65], id[65];
    xp_patch_flips_sha256(pp, ip, NULL);
    xp_patch_flips_sha256(dp, id, NULL);
    cr_expect_str_eq(ip, id);
    char sha[65];
    sha_of(base, sha);
    cr_expect_str_eq(dp->base_sha256, sha, "the diff records A's fingerprint");
    cr_expect(dp->architecture && strstr(dp->architecture, "\"n_embd\":128"));
    xp_patch_free(pp), xp_patch_free(dp);
    FMT(args, "show '%s' -m '%s'", d, base);
    expect_run(args, 0, ip);
    FMT(args, "stack '%s' '%s' -o '%s'", p, d, x);
    expect_run(args, 2, "cancel completely");
    FMT(args, "stack '%s' '%s' -o '%s' -m '%s'", p, q, x, base);
    expect_run(args, 0, "overlap bits");
    FMT(args, "convert '%s' -o '%s'", p, bin);
    expect_run(args, 0, "binary");
    FMT(args, "show '%s' --json", bin);
    expect_run(args, 0, ip);
    FMT(args, "convert '%s' -o '%s' --to bankai-v1", p, x);
    expect_run(args, 2, "does not fit bankai_row_xor_v1");
}

Test(patch_file, bad_patch_arguments_give_clear_errors)
{
    char base[512], dir[512], bad[512], out[512], args[4096];
    xp_test_small_model(base, sizeof base);
    tmp(dir, "emptydir"), tmp(bad, "bad.json"), tmp(out, "o.gguf");
    mkdir(dir, 0777);
    FILE *f = fopen(bad, "w");
    fputs("{\"version\": 1, \"flips\": [{\"layer\": 0, \"proj\": \"up_proj\", \"row\": 99999}]}", f);
    fclose(f);
    FMT(args, "show '%s'", dir);
    expect_run(args, 2, "has none");
    FMT(args, "apply -m '%s' -p '%s' -o '%s'", base, bad, out);
    expect_run(args, 2, "flip 0 (blk.0.ffn_up.weight row 99999): row out of range");
    cr_expect_not(access(out, F_OK) == 0, "nothing written");
    FMT(args, "show '%s.missing'", bad);
    expect_run(args, 2, "cannot open");
    FMT(args, "apply -m '%s' -p '%s' -o '%s'", base, base, out);
    expect_run(args, 2, "a GGUF model, not a patch");
}

Test(patch_file, fixtures_through_the_program)
{
    XP_SHARED_PATH(root, "fixtures/patches");
    char out[512], args[8192];
    tmp(out, "v2.json");
    FMT(args, "show '%s/bankai/calculus_v1.json' --shape bonsai-8b", root);
    expect_run(args, 0, "294,912 of 8,188,239,872");
    FMT(args, "convert '%s/bankai/calculus_v1.json' --shape bonsai-8b -o '%s' "
             "--to neagari-v2", root, out);
    expect_run(args, 0, "neagari-v2");
    FMT(args, "show '%s' --shape bonsai-8b", out);
    expect_run(args, 0, "72 rows");
    FMT(args, "show '%s/neagari/v3_patches'", root);
    expect_run(args, 0, "31 scale bits");
    FMT(args, "stack '%s/bankai/calculus_v1.json' '%s/bankai/patch_math_v1.json' "
             "--shape bonsai-8b -o '%s'", root, root, out);
    expect_run(args, 0, "total");
}

Test(patch_file, every_patch_command_has_help)
{
    const char *cmds[] = {"apply", "revert", "verify", "diff", "stack", "show", "convert"};
    const char *must[] = {"--in-place", "--in-place", "--base", "--to", "overlap", "--shape",
                          "bankai-v1"};
    for (size_t i = 0; i < sizeof cmds / sizeof *cmds; i++) {
        char args[64], head[64], *out1, *out2, *err;
        FMT(args, "%s --help", cmds[i]);
        cr_expect_eq(run(args, &out1, &err), 0, "%s", args);
        free(err);
        FMT(args, "help %s", cmds[i]);
        cr_expect_eq(run(args, &out2, &err), 0, "%s", args);
        free(err);
        FMT(head, "Usage: xorpatch %s", cmds[i]);
        cr_expect(strncmp(out1, head, strlen(head)) == 0, "%s", out1);
        cr_expect(strstr(out1, must[i]), "%s lacks %s", cmds[i], must[i]);
        cr_expect_str_eq(out1, out2);
        free(out1), free(out2);
    }
}
