/* Faults and hard edges of the commands that write files: a device node or a FIFO at the
 * output path is refused, never replaced; the read commands complete an in-place patch
 * that a crash interrupted before they use the file; the temporaries a killed writer left
 * are removed by the next command on that file (and a live writer's are not); a search
 * refused for its settings leaves no log. Then the fault suite: every output-writing
 * command (apply -o, apply in place, revert -o, convert, stack, diff, search -o with its
 * checkpoints) on a full disk (the LD_PRELOAD shim tests/shim/enospc.c, which makes
 * writes fail with ENOSPC after N bytes), in a folder it cannot write and killed at
 * random instants: afterwards the target is exactly the old or exactly the new file
 * (SHA-256), no temporary file is left, and the message names the file and the reason.
 * The suite faults_long (`make test-long`) kills an in-place apply on a bonsai-1.7b
 * shape at random instants. */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <signal.h>
#include <stdarg.h>
#include <string.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <time.h>

#include "test_patch_util.h"

/* snprintf that fails the test instead of truncating a command */
#define FMT(buf, ...)                                                                              \
    cr_assert_lt(snprintf(buf, sizeof buf, __VA_ARGS__), (int)sizeof buf, "command too long")

static const char probes_json[] =
    "[{\"name\":\"add\",\"category\":\"math\",\"prompt\":\"37 + 48 =\",\"correct\":\" 85\","
    "\"wrong\":\" 84\"},"
    "{\"name\":\"prime\",\"category\":\"prime\",\"prompt\":\"Is 97 prime?\",\"correct\":\" Yes\","
    "\"wrong\":\" No\"},"
    "{\"name\":\"paris\",\"role\":\"control\",\"category\":\"capital\",\"prompt\":\"The capital "
    "of France is\",\"correct\":\" Paris\",\"wrong\":\" Lyon\"}]";

/* Runs `xorpatch ARGS` (env: variables before the program); returns the exit code and
 * stdout+stderr in *said (malloc'd) when asked. */
static int xp(char **said, const char *env, const char *fmt, ...)
{
    char args[4000], cmd[5000];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    cr_assert_lt(n, (int)sizeof args, "command too long");
    FMT(cmd, "NO_COLOR=1 %s %s %s", env ? env : "", xp_test_bin(), args);
    char *out = NULL, *err = NULL;
    int rc = xp_test_run(cmd, NULL, &out, &err);
    if (said) {
        size_t a = out ? strlen(out) : 0, b = err ? strlen(err) : 0;
        *said = malloc(a + b + 1);
        memcpy(*said, out ? out : "", a);
        memcpy(*said + a, err ? err : "", b + 1);
    }
    free(out), free(err);
    return rc;
}

/* A fresh folder in the test temp folder. */
static void fresh_dir(char *out, size_t size, const char *stem)
{
    xp_test_tmp_path(out, size, stem);
    cr_assert_eq(mkdir(out, 0755), 0, "mkdir %s", out);
}

/* The first entry of dir whose name holds a temporary's or a journal's mark, or NULL. */
static char *leftover(const char *dir)
{
    static char name[512];
    DIR *d = opendir(dir);
    cr_assert(d, "cannot list %s", dir);
    struct dirent *e;
    char *found = NULL;
    while ((e = readdir(d)) && !found)
        if (strstr(e->d_name, ".tmp.") || strstr(e->d_name, ".xpjournal")) {
            snprintf(name, sizeof name, "%s", e->d_name);
            found = name;
        }
    closedir(d);
    return found;
}

static void sha_of(const char *path, char hex[65])
{
    xp_err err = {0};
    cr_assert_eq(xp_sha256_file(path, hex, &err), XP_OK, "%s", err.msg);
}

static bool same_sha(const char *path, const char *hex)
{
    char have[65];
    xp_err err = {0};
    return xp_sha256_file(path, have, &err) == XP_OK && strcmp(have, hex) == 0;
}

/* A random patch of n flips on model, written as xorpatch JSON with its base fingerprint. */
static void random_patch(const char *model, uint64_t seed, int n, const char *path)
{
    xp_gguf *g = xp_test_open(model);
    xp_patch *p = xp_test_random_patch(g, seed, n);
    xp_err err = {0};
    cr_assert_eq(xp_patch_bind(p, g, &err), XP_OK, "%s", err.msg);
    sha_of(model, p->base_sha256);
    cr_assert_eq(xp_patch_write(p, XP_PATCH_JSON, path, &err), XP_OK, "%s", err.msg);
    xp_patch_free(p);
    xp_gguf_close(g);
}

/* ---- the inputs every command below works on -------------------------------------- */

typedef struct inputs {
    char dir[512];                /* where the inputs are */
    char base[600], applied[600]; /* the small model, and it with p applied (-o) */
    char p[600], q[600];          /* two patches of it */
} inputs;

static inputs make_inputs(void)
{
    inputs in;
    char small[512];
    fresh_dir(in.dir, sizeof in.dir, "faults-in");
    xp_test_small_model(small, sizeof small);
    snprintf(in.base, sizeof in.base, "%s/base.gguf", in.dir);
    snprintf(in.applied, sizeof in.applied, "%s/applied.gguf", in.dir);
    snprintf(in.p, sizeof in.p, "%s/p.json", in.dir);
    snprintf(in.q, sizeof in.q, "%s/q.json", in.dir);
    xp_test_copy(small, in.base);
    random_patch(in.base, 3, 20, in.p);
    random_patch(in.base, 4, 20, in.q);
    char *said;
    cr_assert_eq(xp(&said, NULL, "apply -q -m '%s' -p '%s' -o '%s'", in.base, in.p, in.applied), 0,
                 "%s", said);
    free(said);
    return in;
}

/* The commands that write one output file, OUT standing for it. */
typedef struct writer {
    const char *name, *args; /* printf format: inputs by position, then the output */
} writer;

static const writer writers[] = {
    {"apply -o", "apply -q -m '%1$s' -p '%3$s' -o '%5$s'"},
    {"revert -o", "revert -q -m '%2$s' -o '%5$s'"},
    {"convert", "convert '%3$s' -o '%5$s'"},
    {"stack", "stack '%3$s' '%4$s' -o '%5$s'"},
    {"diff", "diff '%1$s' '%2$s' -o '%5$s'"},
};
#define N_WRITERS (sizeof writers / sizeof *writers)

static void writer_args(char *buf, size_t size, const writer *w, const inputs *in, const char *out)
{
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
    snprintf(buf, size, w->args, in->base, in->applied, in->p, in->q, out);
#pragma GCC diagnostic pop
}

/* ---- 4c: only a regular file is replaced --------------------------------------------- */

static void expect_node_kept(const char *node, mode_t type, const char *what, int rc,
                             const char *said)
{
    struct stat st;
    cr_expect_neq(rc, 0, "%s over %s exited 0:\n%s", what, node, said);
    cr_expect(strstr(said, node) && strstr(said, "not a regular file"),
              "%s over %s: the message names neither the file nor the reason:\n%s", what, node,
              said);
    cr_expect(stat(node, &st) == 0 && (st.st_mode & S_IFMT) == type,
              "%s replaced the node %s with a regular file", what, node);
}

Test(faults, a_device_or_fifo_at_the_output_is_refused_not_replaced, .timeout = 120)
{
    inputs in = make_inputs();
    char dir[512], fifo[600], dev[600], tiny[512], probes[600], args[3900];
    fresh_dir(dir, sizeof dir, "faults-nodes");
    snprintf(fifo, sizeof fifo, "%s/fifo", dir);
    snprintf(dev, sizeof dev, "%s/null", dir);
    cr_assert_eq(mkfifo(fifo, 0644), 0);
    /* as root, a node of the null device made here, never the system's */
    bool root = geteuid() == 0 && mknod(dev, S_IFCHR | 0644, makedev(1, 3)) == 0;
    const char *nodes[2] = {fifo, dev};
    mode_t types[2] = {S_IFIFO, S_IFCHR};
    xp_test_tiny_model(tiny, sizeof tiny);
    snprintf(probes, sizeof probes, "%s/probes.json", dir);
    xp_test_write(probes, probes_json);
    for (int k = 0; k < (root ? 2 : 1); k++) {
        char *said;
        for (size_t i = 0; i < N_WRITERS; i++) {
            writer_args(args, sizeof args, &writers[i], &in, nodes[k]);
            int rc = xp(&said, NULL, "%s", args);
            expect_node_kept(nodes[k], types[k], writers[i].name, rc, said);
            free(said);
        }
        int rc = xp(&said, NULL,
                    "synth --layers 1 --embd 128 --ff 128 --heads 2 --kv-heads 1 "
                    "--head-dim 64 -q -o '%s'",
                    nodes[k]);
        expect_node_kept(nodes[k], types[k], "synth", rc, said);
        free(said);
        rc = xp(&said, NULL, "search -q -m '%s' --probes '%s' --iterations 1 --no-eval -o '%s'",
                tiny, probes, nodes[k]);
        expect_node_kept(nodes[k], types[k], "search", rc, said);
        free(said);
    }
    if (!root)
        fprintf(stderr, "faults: not root, so only the FIFO was tried (no device node)\n");
}

/* ---- 4d: no command reads a half-patched file ----------------------------------------- */

Test(faults, read_commands_complete_an_interrupted_in_place_apply_first, .timeout = 120)
{
    char dir[512], tiny[512], base[600], ref[600], k[600], p[600], probes[600];
    fresh_dir(dir, sizeof dir, "faults-torn");
    xp_test_tiny_model(tiny, sizeof tiny);
    snprintf(base, sizeof base, "%s/base.gguf", dir);
    snprintf(ref, sizeof ref, "%s/ref.gguf", dir);
    snprintf(k, sizeof k, "%s/k.gguf", dir);
    snprintf(p, sizeof p, "%s/p.json", dir);
    snprintf(probes, sizeof probes, "%s/probes.json", dir);
    xp_test_write(probes, probes_json);
    xp_test_copy(tiny, base);
    random_patch(base, 5, 40, p);
    /* the state a finished in-place apply leaves */
    xp_test_copy(base, ref);
    char *said;
    cr_assert_eq(xp(&said, NULL, "apply -q -m '%s' -p '%s' --in-place", ref, p), 0, "%s", said);
    free(said);
    char patched[65];
    sha_of(ref, patched);
    const char *reads[] = {"inspect '%1$s'", "show '%2$s' -m '%1$s'",
                           "logits -m '%1$s' -p 'The capital of France is'",
                           "eval -m '%1$s' --probes '%3$s'"};
    for (size_t i = 0; i < sizeof reads / sizeof *reads; i++) {
        char cmd[2000], journal[700];
        xp_test_copy(base, k);
        int rc = xp(NULL, "XORPATCH_CRASH_AFTER=4", "apply -q -m '%s' -p '%s' --in-place", k, p);
        cr_assert_neq(rc, 0, "the crash hook did not crash");
        snprintf(journal, sizeof journal, "%s.xpjournal", k);
        cr_assert_eq(access(journal, F_OK), 0, "the crash left no journal");
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
        snprintf(cmd, sizeof cmd, reads[i], k, p, probes);
#pragma GCC diagnostic pop
        rc = xp(&said, NULL, "%s", cmd);
        cr_expect_eq(rc, 0, "`%s` after the crash exited %d:\n%s", cmd, rc, said);
        cr_expect_neq(access(journal, F_OK), 0,
                      "`%s` read the half-patched file and left its "
                      "journal",
                      cmd);
        cr_expect(same_sha(k, patched), "after `%s` the file is not the patched one", cmd);
        cr_expect_null(leftover(dir), "`%s` left %s", cmd, leftover(dir));
        free(said);
    }
}

/* ---- 4b: leftovers ------------------------------------------------------------------ */

Test(faults, a_killed_writers_temporaries_go_at_the_next_command_and_a_live_ones_stay)
{
    inputs in = make_inputs();
    char stale[700], live[700], other[700], alien[700];
    snprintf(stale, sizeof stale, "%s.tmp.Ab12Cd", in.applied);
    snprintf(live, sizeof live, "%s.tmp.Zz98Yx", in.applied);
    snprintf(other, sizeof other, "%s.tmp.short", in.applied);
    snprintf(alien, sizeof alien, "%s/notmine.gguf.tmp.Ab12Cd", in.dir);
    const char *all[] = {stale, live, other, alien};
    for (int i = 0; i < 4; i++)
        xp_test_copy(in.applied, all[i]);
    /* a writer that is still at work holds the lock on its temporary */
    int fd = open(live, O_RDONLY);
    cr_assert(fd >= 0 && flock(fd, LOCK_EX) == 0);
    char *said;
    cr_expect_eq(xp(&said, NULL, "verify -q -m '%s' -b '%s'", in.applied, in.base), 0, "%s", said);
    free(said);
    cr_expect_neq(access(stale, F_OK), 0, "verify left the killed writer's %s", stale);
    cr_expect_eq(access(live, F_OK), 0, "the live writer's temporary was removed");
    cr_expect_eq(access(other, F_OK), 0, "a file not of the temporaries' naming was removed");
    cr_expect_eq(access(alien, F_OK), 0, "another file's temporary was removed");
    close(fd);
    /* the same for a patch: its next write removes what a killed one left */
    char pstale[700];
    snprintf(pstale, sizeof pstale, "%s/c.xpb.tmp.Q1w2E3", in.dir);
    xp_test_copy(in.p, pstale);
    char out[700];
    snprintf(out, sizeof out, "%s/c.xpb", in.dir);
    cr_expect_eq(xp(&said, NULL, "convert '%s' -o '%s'", in.p, out), 0, "%s", said);
    free(said);
    cr_expect_neq(access(pstale, F_OK), 0, "convert left the killed writer's %s", pstale);
    for (int i = 1; i < 4; i++)
        unlink(all[i]);
}

Test(faults, a_search_refused_for_its_settings_leaves_no_log, .timeout = 60)
{
    char dir[512], tiny[512], probes[600], out[600], log[700], html[700];
    fresh_dir(dir, sizeof dir, "faults-search-bad");
    xp_test_tiny_model(tiny, sizeof tiny);
    snprintf(probes, sizeof probes, "%s/probes.json", dir);
    snprintf(out, sizeof out, "%s/p.json", dir);
    snprintf(log, sizeof log, "%s.log.jsonl", out);
    snprintf(html, sizeof html, "%s.html", out);
    xp_test_write(probes, probes_json);
    char *said;
    int rc = xp(&said, NULL, "search -q -m '%s' --probes '%s' --layers 99 --no-eval -o '%s'", tiny,
                probes, out);
    cr_expect_neq(rc, 0, "%s", said);
    cr_expect(strstr(said, "layer 99"), "%s", said);
    free(said);
    cr_expect_neq(access(log, F_OK), 0, "the refused search left %s", log);
    cr_expect_neq(access(html, F_OK), 0, "the refused search left %s", html);
    cr_expect_neq(access(out, F_OK), 0, "the refused search left %s", out);
}

/* ---- 7: full disk, unwritable folder, kill -9 ------------------------------------------ */

static const char *shim(void)
{
    static char line[1200];
    const char *so = getenv("XP_ENOSPC_SHIM");
    struct stat st;
    if (!so || stat(so, &st) != 0 || !S_ISREG(st.st_mode))
        cr_skip_test("the ENOSPC shim is not built (make builds it with the tests)");
    /* the sanitised program wants its runtime first; the shim is loaded ahead of it */
    snprintf(line, sizeof line,
             "ASAN_OPTIONS=$ASAN_OPTIONS:verify_asan_link_order=0 "
             "LD_PRELOAD='%s'",
             so);
    return line;
}

/* Whether out is the new file: for a model the same bytes as ref; for a patch (whose
 * creation time and name vary) a whole patch with ref's flips. */
static bool is_new(const char *out, const char *ref, const char *ref_sha)
{
    if (!strstr(out, ".json"))
        return same_sha(out, ref_sha);
    xp_patch *a = NULL, *b = NULL;
    char ia[65] = "a", ib[65] = "b";
    if (xp_patch_read(&a, out, NULL) == XP_OK && xp_patch_read(&b, ref, NULL) == XP_OK)
        xp_patch_flips_sha256(a, ia, NULL), xp_patch_flips_sha256(b, ib, NULL);
    xp_patch_free(a), xp_patch_free(b);
    return strcmp(ia, ib) == 0;
}

static const char *const OLD_TEXT = "the old file, which a failed write must leave as it is\n";

/* The states an in-place apply goes through from the pristine base. */
typedef struct inplace_states {
    char old[65], prepared[65], patched[65];
} inplace_states;

static inplace_states inplace_refs(const inputs *in)
{
    inplace_states s;
    char x[700], *said;
    snprintf(x, sizeof x, "%s/ref-inplace.gguf", in->dir);
    xp_test_copy(in->base, x);
    sha_of(x, s.old);
    cr_assert_eq(xp(&said, NULL, "apply -q -m '%s' -p '%s' --in-place", x, in->p), 0, "%s", said);
    free(said);
    sha_of(x, s.patched);
    cr_assert_eq(xp(&said, NULL, "revert -q -m '%s' --in-place", x), 0, "%s", said);
    free(said);
    sha_of(x, s.prepared);
    unlink(x);
    return s;
}

Test(faults, a_full_disk_leaves_the_old_file_or_the_new_one_and_says_so, .timeout = 240)
{
    const char *env = shim();
    inputs in = make_inputs();
    char dir[512], out[700], ref[700], args[3900], envb[1400];
    fresh_dir(dir, sizeof dir, "faults-full");
    const long budgets[] = {0, 300, 4000, 40000};
    int failed = 0, whole = 0;
    for (size_t w = 0; w < N_WRITERS; w++) {
        snprintf(ref, sizeof ref, "%s/ref-%zu%s", dir, w, w >= 2 ? ".json" : ".gguf");
        snprintf(out, sizeof out, "%s/out-%zu%s", dir, w, w >= 2 ? ".json" : ".gguf");
        char *said, new_sha[65], old_sha[65];
        writer_args(args, sizeof args, &writers[w], &in, ref);
        cr_assert_eq(xp(&said, NULL, "%s", args), 0, "%s", said);
        free(said);
        sha_of(ref, new_sha);
        for (size_t b = 0; b < sizeof budgets / sizeof *budgets; b++) {
            xp_test_write(out, OLD_TEXT);
            sha_of(out, old_sha);
            snprintf(envb, sizeof envb, "%s XP_ENOSPC_AFTER=%ld", env, budgets[b]);
            writer_args(args, sizeof args, &writers[w], &in, out);
            int rc = xp(&said, envb, "%s", args);
            if (rc) {
                failed++;
                cr_expect(same_sha(out, old_sha), "%s on a full disk (%ld B) changed %s",
                          writers[w].name, budgets[b], out);
                cr_expect(strstr(said, out) && strstr(said, "No space left on device"),
                          "%s on a full disk: the message names neither %s nor the reason:\n%s",
                          writers[w].name, out, said);
            } else {
                whole++;
                cr_expect(is_new(out, ref, new_sha), "%s succeeded but wrote other bytes",
                          writers[w].name);
            }
            cr_expect_null(leftover(dir), "%s on a full disk (%ld B) left %s", writers[w].name,
                           budgets[b], leftover(dir));
            free(said);
        }
    }
    /* in place, from the pristine base (whole rewrite first) and from a recorded file */
    inplace_states s = inplace_refs(&in);
    char k[700], from_prepared[700];
    snprintf(k, sizeof k, "%s/k.gguf", dir);
    snprintf(from_prepared, sizeof from_prepared, "%s/prepared.gguf", dir);
    xp_test_copy(in.base, from_prepared);
    char *said;
    cr_assert_eq(xp(&said, NULL, "apply -q -m '%s' -p '%s' --in-place", from_prepared, in.p), 0);
    free(said);
    cr_assert_eq(xp(&said, NULL, "revert -q -m '%s' --in-place", from_prepared), 0);
    free(said);
    const long ip_budgets[] = {0, 300, 5000, 50000, 120000};
    for (int from = 0; from < 2; from++)
        for (size_t b = 0; b < sizeof ip_budgets / sizeof *ip_budgets; b++) {
            xp_test_copy(from ? from_prepared : in.base, k);
            snprintf(envb, sizeof envb, "%s XP_ENOSPC_AFTER=%ld", env, ip_budgets[b]);
            int rc = xp(&said, envb, "apply -q -m '%s' -p '%s' --in-place", k, in.p);
            if (rc) {
                failed++;
                cr_expect(strstr(said, k) && strstr(said, "No space left on device"),
                          "in-place apply on a full disk: the message names neither %s nor the "
                          "reason:\n%s",
                          k, said);
            } else {
                whole++;
            }
            free(said);
            cr_expect_null(strstr(leftover(dir) ? leftover(dir) : "", ".tmp."),
                           "in-place apply on a full disk left %s", leftover(dir));
            /* the next command completes a committed journal; the file is in an exact state */
            cr_expect_eq(xp(&said, NULL, "inspect '%s'", k), 0, "%s", said);
            free(said);
            cr_expect(same_sha(k, s.old) || same_sha(k, s.prepared) || same_sha(k, s.patched),
                      "in-place apply on a full disk (%ld B, from %s) left no exact state",
                      ip_budgets[b], from ? "a recorded file" : "the base");
            cr_expect_null(leftover(dir), "left %s", leftover(dir));
        }
    fprintf(stderr,
            "faults: full disk: %d writes refused with the file and the reason, %d "
            "fitted, every target exact, nothing left behind\n",
            failed, whole);
}

Test(faults, a_search_on_a_full_disk_keeps_whole_log_lines_and_a_whole_patch, .timeout = 240)
{
    const char *env = shim();
    char dir[512], tiny[512], probes[600], out[700], log[800], envb[1400];
    fresh_dir(dir, sizeof dir, "faults-search-full");
    xp_test_tiny_model(tiny, sizeof tiny);
    snprintf(probes, sizeof probes, "%s/probes.json", dir);
    snprintf(out, sizeof out, "%s/s.json", dir);
    snprintf(log, sizeof log, "%s.log.jsonl", out);
    xp_test_write(probes, probes_json);
    const long budgets[] = {0, 150, 700, 2500};
    for (size_t b = 0; b < sizeof budgets / sizeof *budgets; b++) {
        unlink(log);
        xp_test_write(out, OLD_TEXT);
        snprintf(envb, sizeof envb, "%s XP_ENOSPC_AFTER=%ld", env, budgets[b]);
        char *said;
        int rc = xp(&said, envb,
                    "search -q -m '%s' --probes '%s' --iterations 6 "
                    "--checkpoint-every 1 --granularity block --no-eval -o '%s'",
                    tiny, probes, out);
        cr_expect_neq(rc, 0, "the search fitted in %ld bytes", budgets[b]);
        cr_expect(strstr(said, dir) && strstr(said, "No space left on device"),
                  "the message names neither the file nor the reason:\n%s", said);
        free(said);
        /* the patch: the old file or a whole checkpoint */
        char *text = xp_test_slurp(out);
        xp_patch *p = NULL;
        cr_expect(text && (!strcmp(text, OLD_TEXT) || xp_patch_read(&p, out, NULL) == XP_OK),
                  "%s is neither the old file nor a whole patch", out);
        xp_patch_free(p);
        free(text);
        /* the log: whole lines only */
        char *lines = xp_test_slurp(log);
        for (char *l = lines, *nl; l && *l; l = nl + 1) {
            nl = strchr(l, '\n');
            cr_assert(nl, "the log ends in a cut line: '%s'", l);
            *nl = '\0';
            cJSON *o = cJSON_Parse(l);
            cr_expect(o, "a log line is not whole JSON: '%s'", l);
            cJSON_Delete(o);
        }
        free(lines);
        cr_expect_null(leftover(dir), "the search left %s", leftover(dir));
    }
}

/* Makes dir unwritable (as root, immutable: chattr +i); false when that cannot be done. */
static bool lock_dir(const char *dir, bool lock)
{
    char cmd[700];
    if (geteuid() != 0)
        return chmod(dir, lock ? 0555 : 0755) == 0;
    snprintf(cmd, sizeof cmd, "chattr %ci '%s' 2>/dev/null", lock ? '+' : '-', dir);
    return system(cmd) == 0;
}

Test(faults, an_unwritable_folder_is_named_and_nothing_changes, .timeout = 120)
{
    inputs in = make_inputs();
    char dir[512], out[700], args[3900], k[700], old_sha[65];
    fresh_dir(dir, sizeof dir, "faults-ro");
    snprintf(k, sizeof k, "%s/k.gguf", dir);
    xp_test_copy(in.base, k);
    sha_of(k, old_sha);
    if (!lock_dir(dir, true))
        cr_skip_test("cannot make %s unwritable here", dir);
    char *said;
    for (size_t w = 0; w < N_WRITERS; w++) {
        snprintf(out, sizeof out, "%s/out-%zu.gguf", dir, w);
        writer_args(args, sizeof args, &writers[w], &in, out);
        int rc = xp(&said, NULL, "%s", args);
        cr_expect_neq(rc, 0, "%s wrote into an unwritable folder", writers[w].name);
        cr_expect(strstr(said, out) &&
                      (strstr(said, "Permission denied") || strstr(said, "not permitted")),
                  "%s: the message names neither %s nor the reason:\n%s", writers[w].name, out,
                  said);
        free(said);
    }
    int rc = xp(&said, NULL, "apply -q -m '%s' -p '%s' --in-place", k, in.p);
    cr_expect_neq(rc, 0, "in-place apply in an unwritable folder exited 0");
    cr_expect(strstr(said, k) &&
                  (strstr(said, "Permission denied") || strstr(said, "not permitted")),
              "in-place apply: the message names neither %s nor the reason:\n%s", k, said);
    free(said);
    cr_assert(lock_dir(dir, false));
    cr_expect(same_sha(k, old_sha), "the file changed");
    cr_expect_null(leftover(dir), "left %s", leftover(dir));
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Runs `sh -c cmd` and kills it with SIGKILL after delay seconds (< 0: lets it end). */
static void kill_after(const char *cmd, double delay)
{
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        freopen("/dev/null", "w", stdout);
        freopen("/dev/null", "w", stderr);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    if (delay >= 0) {
        struct timespec ts = {(time_t)delay, (long)((delay - (time_t)delay) * 1e9)};
        nanosleep(&ts, NULL);
        kill(pid, SIGKILL);
    }
    int status;
    waitpid(pid, &status, 0);
}

Test(faults, writers_killed_at_random_instants_leave_the_old_or_the_new_file, .timeout = 240)
{
    inputs in = make_inputs();
    char dir[512], out[700], ref[700], args[3900], cmd[4200];
    fresh_dir(dir, sizeof dir, "faults-kill");
    xp_rng r;
    xp_rng_seed(&r, 22);
    int trials = 0, old = 0, new = 0;
    for (size_t w = 0; w < N_WRITERS; w++) {
        snprintf(ref, sizeof ref, "%s/ref-%zu%s", dir, w, w >= 2 ? ".json" : ".gguf");
        snprintf(out, sizeof out, "%s/out-%zu%s", dir, w, w >= 2 ? ".json" : ".gguf");
        char *said, new_sha[65], old_sha[65];
        writer_args(args, sizeof args, &writers[w], &in, ref);
        double t0 = now();
        cr_assert_eq(xp(&said, NULL, "%s", args), 0, "%s", said);
        double span = now() - t0;
        free(said);
        sha_of(ref, new_sha);
        writer_args(args, sizeof args, &writers[w], &in, out);
        FMT(cmd, "exec %s %s", xp_test_bin(), args);
        for (int t = 0; t < 4; t++, trials++) {
            xp_test_write(out, OLD_TEXT);
            sha_of(out, old_sha);
            kill_after(cmd, span * 1.2 * xp_rng_f64(&r));
            bool was_old = same_sha(out, old_sha), was_new = is_new(out, ref, new_sha);
            cr_expect(was_old || was_new, "%s killed: %s is neither the old nor the new file",
                      writers[w].name, out);
            old += was_old, new += was_new;
            /* the next write of the same file leaves nothing of the killed one */
            cr_expect_eq(xp(&said, NULL, "%s", args), 0, "%s", said);
            free(said);
            cr_expect(is_new(out, ref, new_sha), "%s did not write %s", writers[w].name, out);
            cr_expect_null(leftover(dir), "%s: left %s", writers[w].name, leftover(dir));
        }
    }
    fprintf(stderr,
            "faults: %d kills of apply -o, revert -o, convert, stack and diff -> %d old, "
            "%d new, every one exact\n",
            trials, old, new);
}

/* ---- 4e: a search killed before a checkpoint holds a flip resumes -------------------- */

static void flips_of(const char *path, char id[65])
{
    xp_patch *p = NULL;
    xp_err err = {0};
    cr_assert_eq(xp_patch_read(&p, path, &err), XP_OK, "%s", err.msg);
    cr_assert_eq(xp_patch_flips_sha256(p, id, &err), XP_OK, "%s", err.msg);
    xp_patch_free(p);
}

static size_t lines_of(const char *path, bool *accepted)
{
    char *text = xp_test_slurp(path);
    size_t n = 0;
    for (char *c = text; c && *c; c++)
        n += *c == '\n';
    if (accepted)
        *accepted = text && strstr(text, "\"accepted\":true");
    free(text);
    return n;
}

Test(faults, a_search_killed_before_a_checkpoint_holds_a_flip_resumes_exactly, .timeout = 240)
{
    char dir[512], tiny[512], probes[600], full[700], part[700], log[800], cmd[4000];
    fresh_dir(dir, sizeof dir, "faults-search-early");
    xp_test_tiny_model(tiny, sizeof tiny);
    snprintf(probes, sizeof probes, "%s/probes.json", dir);
    snprintf(full, sizeof full, "%s/full.json", dir);
    snprintf(part, sizeof part, "%s/part.json", dir);
    snprintf(log, sizeof log, "%s.log.jsonl", part);
    xp_test_write(probes, probes_json);
    const char *how = "--iterations 8 --granularity block --no-eval --checkpoint-every 4 -t 1";
    char *said;
    cr_assert_eq(
        xp(&said, NULL, "search -q -m '%s' --probes '%s' %s -o '%s'", tiny, probes, how, full), 0,
        "%s", said);
    free(said);
    char want[65], have[65];
    flips_of(full, want);
    /* trials 0 and 1 kill it by the crash hook once iteration 1 or 2 (which keep flips)
     * is in its log: the only checkpoint then is the one before iteration 1, which has
     * no flips; trials 2-5 kill it (t - 2) * 0.1 ms after that checkpoint is there, which
     * on a fast machine is often after iteration 1 kept its flip */
    int flipless = 0, before_first = 0;
    for (int t = 0; t < 6; t++) {
        unlink(part), unlink(log);
        bool hooked = t < 2;
        char env[64] = "";
        if (hooked)
            snprintf(env, sizeof env, "XORPATCH_CRASH_AT_ITERATION=%d ", t + 1);
        FMT(cmd, "%sexec %s search -q -m '%s' --probes '%s' %s -o '%s' >/dev/null 2>&1", env,
            xp_test_bin(), tiny, probes, how, part);
        pid_t pid = fork();
        cr_assert_geq(pid, 0);
        if (pid == 0) {
            execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
            _exit(127);
        }
        bool killed = false, accepted = false;
        int status = 0;
        if (hooked) {
            cr_assert_eq(waitpid(pid, &status, 0), pid);
            killed = WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
            cr_assert(killed, "trial %d: the crash hook did not kill the search (status %d)", t,
                      status);
            cr_assert_eq(lines_of(log, NULL), (size_t)t + 1, "trial %d: the log at the kill", t);
        } else
            for (int i = 0; i < 20000 && !killed; i++) {
                usleep(200);
                if (access(part, F_OK) == 0) {
                    usleep(100 * (useconds_t)(t - 2));
                    kill(pid, SIGKILL);
                    killed = true;
                }
                if (!killed && waitpid(pid, &status, WNOHANG) == pid)
                    break;
            }
        if (killed && !hooked)
            waitpid(pid, NULL, 0);
        lines_of(log, &accepted);
        before_first += killed && !accepted;
        if (killed) { /* the checkpoint left: none of its flips is kept yet */
            xp_patch *cp = NULL;
            xp_err err = {0};
            cr_assert_eq(xp_patch_read(&cp, part, &err), XP_OK, "trial %d: %s", t, err.msg);
            flipless += cp->n_flips == 0;
            xp_patch_free(cp);
        }
        cr_expect_eq(xp(&said, NULL, "search -q -m '%s' --probes '%s' %s -o '%s' --resume '%s'",
                        tiny, probes, how, part, part),
                     0, "trial %d: the killed search does not resume:\n%s", t, said);
        free(said);
        flips_of(part, have);
        cr_expect_str_eq(have, want, "trial %d: resumed, not the uninterrupted patch", t);
        cr_expect_eq(lines_of(log, NULL), 8, "trial %d: the log repeats or misses iterations", t);
        cr_expect_null(leftover(dir), "trial %d: left %s", t, leftover(dir));
    }
    cr_expect_geq(flipless, 2, "only %d of 6 kills left the flip-less checkpoint alone",
                  flipless);
    fprintf(stderr,
            "faults: 6 searches killed (2 by the crash hook), %d with only the flip-less "
            "checkpoint, %d before their first kept flip; all resumed\n",
            flipless, before_first);
}

/* ---- make test-long: in-place apply on a bonsai-1.7b shape, killed at random ---------- */

Test(faults_long, in_place_apply_on_a_bonsai_1_7b_shape_killed_at_random_instants, .timeout = 1800)
{
    if (!getenv("XP_LONG"))
        cr_skip_test("make test-long runs it");
    char dir[512], base[700], k[700], p[700], ref[700], *said;
    fresh_dir(dir, sizeof dir, "faults-1.7b");
    snprintf(base, sizeof base, "%s/base.gguf", dir);
    snprintf(k, sizeof k, "%s/k.gguf", dir);
    snprintf(ref, sizeof ref, "%s/ref.gguf", dir);
    snprintf(p, sizeof p, "%s/p.json", dir);
    cr_assert_eq(xp(&said, NULL, "synth --shape bonsai-1.7b -q -o '%s'", base), 0, "%s", said);
    free(said);
    random_patch(base, 17, 300, p);
    char states[3][65];
    xp_test_copy(base, ref);
    sha_of(ref, states[0]);
    double t0 = now();
    cr_assert_eq(xp(&said, NULL, "apply -q -m '%s' -p '%s' --in-place", ref, p), 0, "%s", said);
    double span = now() - t0;
    free(said);
    sha_of(ref, states[2]);
    cr_assert_eq(xp(&said, NULL, "revert -q -m '%s' --in-place", ref), 0, "%s", said);
    free(said);
    sha_of(ref, states[1]);
    char cmd[2000];
    FMT(cmd, "exec %s apply -q -m '%s' -p '%s' --in-place", xp_test_bin(), k, p);
    xp_rng r;
    xp_rng_seed(&r, 1717);
    int outcome[3] = {0}, trials = 24;
    for (int i = 0; i < trials; i++) {
        /* half from the pristine base (whole rewrite first), half from a recorded file */
        xp_test_copy(i % 2 ? ref : base, k);
        kill_after(cmd, span * 1.2 * xp_rng_f64(&r));
        cr_expect_eq(xp(&said, NULL, "verify -q -m '%s' -b '%s'", k, base) >= 0, 1);
        free(said);
        int st = same_sha(k, states[0])   ? 0
                 : same_sha(k, states[1]) ? 1
                 : same_sha(k, states[2]) ? 2
                                          : -1;
        cr_expect_geq(st, 0, "trial %d: the file is in no exact state", i);
        if (st >= 0)
            outcome[st]++;
        cr_expect_null(leftover(dir), "trial %d: left %s", i, leftover(dir));
    }
    fprintf(stderr,
            "faults_long: %d kills of an in-place apply on a bonsai-1.7b shape (0-%.0f "
            "ms) -> %d pristine, %d recorded base, %d patched, nothing left behind\n",
            trials, span * 1200, outcome[0], outcome[1], outcome[2]);
}
