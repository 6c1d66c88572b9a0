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
