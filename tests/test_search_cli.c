/* The search and pipeline commands: a search writes its patch, a log line per iteration
 * and an HTML report; the same patch on 1 and 2 threads; a search killed with SIGKILL
 * and resumed from its checkpoint ends with the uninterrupted run's patch; dead targets
 * are refused unless allowed; bad input exits 2; a pipeline writes each step, the
 * stacked patch and its summary. */
#include <cjson/cJSON.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"
#include "xorpatch.h"

static const char probes_json[] =
    "[{\"name\":\"add\",\"category\":\"math\",\"prompt\":\"37 + 48 =\",\"correct\":\" 85\","
    "\"wrong\":\" 84\"},"
    "{\"name\":\"mul\",\"category\":\"math\",\"prompt\":\"6 * 7 =\",\"correct\":\" 42\","
    "\"wrong\":\" 48\"},"
    "{\"name\":\"deriv\",\"category\":\"calculus\",\"prompt\":\"d/dx [x^5 + 3x] =\","
    "\"correct\":\" 5x^4 + 3\",\"wrong\":\" 5x^4 + 3x\"},"
    "{\"name\":\"prime\",\"category\":\"prime\",\"prompt\":\"Is 97 prime?\",\"correct\":\" Yes\","
    "\"wrong\":\" No\"}]";
static const char controls_json[] =
    "[{\"name\":\"paris\",\"category\":\"capital\",\"prompt\":\"The capital of France is\","
    "\"correct\":\" Paris\",\"wrong\":\" Lyon\"}]";

typedef struct paths {
    char model[512], probes[512], controls[512];
} paths;

static paths setup(void)
{
    paths p;
    xp_test_tiny_model(p.model, sizeof p.model);
    xp_test_tmp_path(p.probes, sizeof p.probes, "search-probes.json");
    xp_test_tmp_path(p.controls, sizeof p.controls, "search-controls.json");
    xp_test_write(p.probes, probes_json);
    xp_test_write(p.controls, controls_json);
    return p;
}

static void flips_id(const char *path, char hex[65])
{
    xp_patch *p;
    xp_err err = {0};
    cr_assert_eq(xp_patch_read(&p, path, &err), XP_OK, "%s", err.msg);
    cr_assert_eq(xp_patch_flips_sha256(p, hex, &err), XP_OK);
    xp_patch_free(p);
}

static int search(const paths *p, const char *out, const char *extra)
{
    char cmd[4096], *o = NULL, *e = NULL;
    snprintf(cmd, sizeof cmd, "%s search -q -m '%s' --probes '%s' --controls '%s' -o '%s' "
             "--iterations 14 --granularity block --no-eval %s", xp_test_bin(), p->model,
             p->probes, p->controls, out, extra);
    int rc = xp_test_run(cmd, NULL, &o, &e);
    cr_expect_eq(rc, 0, "%s\n%s", cmd, e);
    free(o), free(e);
    return rc;
}

Test(search_cli, patch_log_report_and_the_same_patch_on_any_thread_count, .timeout = 240)
{
    paths p = setup();
    char out1[512], out2[512], id1[65], id2[65];
    xp_test_tmp_path(out1, sizeof out1, "search-t1.json");
    xp_test_tmp_path(out2, sizeof out2, "search-t2.json");
    cr_assert_eq(search(&p, out1, "-t 1"), 0);
    cr_assert_eq(search(&p, out2, "-t 2"), 0);
    flips_id(out1, id1);
    flips_id(out2, id2);
    cr_expect_str_eq(id1, id2, "1 and 2 threads keep the same flips");
    /* the patch carries its provenance */
    char *text = xp_test_slurp(out1);
    cJSON *j = cJSON_Parse(text);
    cr_assert(j);
    cJSON *s = cJSON_GetObjectItem(j, "search");
    cr_expect(cJSON_GetObjectItem(s, "settings") && cJSON_GetObjectItem(s, "probe_files") &&
              cJSON_GetObjectItem(s, "result"), "%s", text);
    cJSON_Delete(j);
    free(text);
    /* one log line per iteration, with the documented keys */
    char log[600];
    snprintf(log, sizeof log, "%s.log.jsonl", out1);
    text = xp_test_slurp(log);
    cr_assert(text, "%s", log);
    size_t lines = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n"), lines++) {
        cJSON *o = cJSON_Parse(line);
        const char *keys[] = {"iter", "layer", "proj", "kind", "index", "fitness", "best",
                              "accepted", "screened", "probes", "seconds", "flips"};
        for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++)
            cr_expect(cJSON_GetObjectItem(o, keys[k]), "log line lacks %s: %s", keys[k], line);
        cr_expect_eq(cJSON_GetObjectItem(o, "iter")->valueint, (int)lines + 1);
        cJSON_Delete(o);
    }
    cr_expect_eq(lines, 14);
    free(text);
    char html[600];
    snprintf(html, sizeof html, "%s.html", out1);
    text = xp_test_slurp(html);
    cr_assert(text, "%s", html);
    cr_expect(strstr(text, "<svg") && strstr(text, "</html>"), "a self-contained report");
    free(text);
}

Test(search_cli, killed_and_resumed_gives_the_uninterrupted_patch, .timeout = 240)
{
    paths p = setup();
    char full[512], part[512], id_full[65], id_part[65], cmd[4096];
    xp_test_tmp_path(full, sizeof full, "search-full.json");
    xp_test_tmp_path(part, sizeof part, "search-part.json");
    cr_assert_eq(search(&p, full, "--checkpoint-every 1"), 0);
    /* start the same search, kill it once its checkpoint holds a kept flip */
    snprintf(cmd, sizeof cmd, "exec %s search -q -m '%s' --probes '%s' --controls '%s' -o '%s' "
             "--iterations 14 --granularity block --no-eval --checkpoint-every 1 >/dev/null "
             "2>&1", xp_test_bin(), p.model, p.probes, p.controls, part);
    pid_t pid = fork();
    if (pid == 0) {
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    char log[600];
    snprintf(log, sizeof log, "%s.log.jsonl", part);
    bool killed = false;
    for (int i = 0; i < 6000 && !killed; i++) {
        usleep(10000);
        char *text = xp_test_slurp(log);
        if (text && strstr(text, "\"accepted\":true") && access(part, F_OK) == 0) {
            kill(pid, SIGKILL);
            killed = true;
        }
        free(text);
        int status;
        if (!killed && waitpid(pid, &status, WNOHANG) == pid)
            break; /* finished before we could kill it: the resume still has to agree */
    }
    cr_expect(killed, "the search was killed mid-run");
    if (killed)
        waitpid(pid, NULL, 0);
    char extra[1200];
    snprintf(extra, sizeof extra, "--checkpoint-every 1 --resume '%s'", part);
    cr_assert_eq(search(&p, part, extra), 0);
    flips_id(full, id_full);
    flips_id(part, id_part);
    cr_expect_str_eq(id_part, id_full, "resumed after SIGKILL: the same final patch");
    char *text = xp_test_slurp(log);
    size_t lines = 0;
    for (char *c = text; c && *c; c++)
        lines += *c == '\n';
    cr_expect_eq(lines, 14, "the log goes on where it stopped, no iteration twice");
    free(text);
    /* a checkpoint is refused for another base model */
    char other[512];
    xp_test_tmp_path(other, sizeof other, "search-other-base.gguf");
    snprintf(cmd, sizeof cmd, "%s synth -q --shape tiny --seed 8 -o '%s'", xp_test_bin(), other);
    cr_assert_eq(system(cmd), 0);
    paths q = p;
    snprintf(q.model, sizeof q.model, "%s", other);
    char *o = NULL, *e = NULL;
    snprintf(cmd, sizeof cmd, "%s search -m '%s' --probes '%s' -o '%s' --resume '%s' --no-eval",
             xp_test_bin(), other, p.probes, part, part);
    cr_expect_eq(xp_test_run(cmd, NULL, &o, &e), 2, "%s", e);
    cr_expect(strstr(e, "another base model"), "%s", e);
    free(o), free(e);
}

/* --controls repeated: the files add up, loaded and concatenated in order, and the patch
 * records each of them. */
Test(search_cli, repeated_controls_add_up, .timeout = 240)
{
    static const char berlin[] =
        "{\"name\":\"berlin\",\"category\":\"capital\",\"prompt\":\"The capital of "
        "Germany is\",\"correct\":\" Berlin\",\"wrong\":\" Munich\"}";
    paths two = setup(), one = two;
    char second[512], both[512], text[1024], out1[512], out2[512], extra[600], id1[65], id2[65];
    xp_test_tmp_path(second, sizeof second, "search-controls-2.json");
    xp_test_tmp_path(both, sizeof both, "search-controls-both.json");
    snprintf(text, sizeof text, "[%s]", berlin);
    xp_test_write(second, text);
    /* controls_json is one probe in brackets: the two files' probes in one list */
    snprintf(text, sizeof text, "%.*s,%s]", (int)strlen(controls_json) - 1, controls_json, berlin);
    xp_test_write(both, text);
    snprintf(one.controls, sizeof one.controls, "%s", both);
    xp_test_tmp_path(out1, sizeof out1, "search-two-controls.json");
    xp_test_tmp_path(out2, sizeof out2, "search-both-controls.json");
    snprintf(extra, sizeof extra, "--controls '%s'", second);
    cr_assert_eq(search(&two, out1, extra), 0);
    cr_assert_eq(search(&one, out2, ""), 0);
    flips_id(out1, id1);
    flips_id(out2, id2);
    cr_expect_str_eq(id1, id2, "two control files search as their concatenation does");
    char *json = xp_test_slurp(out1);
    cJSON *j = cJSON_Parse(json);
    cr_assert(j, "%s", json);
    const cJSON *files = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "search"), "probe_files");
    cr_assert_eq(cJSON_GetArraySize(files), 3, "the targets and both control files");
    const char *paths_in_order[] = {two.controls, second};
    for (int i = 0; i < 2; i++) {
        const cJSON *f = cJSON_GetArrayItem(files, i + 1);
        cr_expect_str_eq(cJSON_GetObjectItem(f, "role")->valuestring, "controls");
        cr_expect_str_eq(cJSON_GetObjectItem(f, "path")->valuestring, paths_in_order[i]);
    }
    cJSON_Delete(j);
    free(json);
}

Test(search_cli, dead_targets_and_bad_input_are_refused)
{
    paths p = setup();
    char dead[512], out[512], cmd[4096], *o = NULL, *e = NULL;
    xp_test_tmp_path(dead, sizeof dead, "search-dead.json");
    xp_test_tmp_path(out, sizeof out, "search-dead-out.json");
    /* two spellings of one text: NFC makes them the same tokens, so the probe is dead */
    xp_test_write(dead, "[{\"name\":\"same\",\"prompt\":\"Say\",\"correct\":\" caf\\u00e9\","
                     "\"wrong\":\" cafe\\u0301\"},"
                     "{\"name\":\"ok\",\"prompt\":\"2 + 3 =\",\"correct\":\" 5\",\"wrong\":\" 6\"}]");
    snprintf(cmd, sizeof cmd, "%s search -m '%s' --probes '%s' -o '%s' --iterations 2 --no-eval",
             xp_test_bin(), p.model, dead, out);
    cr_expect_eq(xp_test_run(cmd, NULL, &o, &e), 2);
    cr_expect(strstr(e, "dead") && strstr(e, "same") && strstr(e, "--allow-dead"), "%s", e);
    free(o), free(e);
    strcat(cmd, " --allow-dead -q");
    cr_expect_eq(xp_test_run(cmd, NULL, &o, &e), 0, "%s", e);
    free(o), free(e);
    const char *bad[] = {"--fitness best",    "--layers 3-1",       "--proj gate,foo",
                         "--scale-bits 9-4",  "--auto-stop 200",    "--iterations 0",
                         "--auto-stop -1:0.5", "--layers 4294967297", "--seed 99999999999999999999"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(cmd, sizeof cmd, "%s search -m '%s' --probes '%s' -o '%s' %s", xp_test_bin(),
                 p.model, p.probes, out, bad[i]);
        cr_expect_eq(xp_test_run(cmd, NULL, &o, &e), 2, "%s: %s", bad[i], e);
        free(o), free(e);
    }
    snprintf(cmd, sizeof cmd, "%s search -m '%s' --probes /nonexistent.json -o '%s'",
             xp_test_bin(), p.model, out);
    cr_expect_eq(xp_test_run(cmd, NULL, &o, &e), 2, "%s", e);
    free(o), free(e);
    snprintf(cmd, sizeof cmd, "%s search -m '%s' --probes '%s' -o '%s' --layers 40 --no-eval",
             xp_test_bin(), p.model, p.probes, out);
    cr_expect_eq(xp_test_run(cmd, NULL, &o, &e), 2, "%s", e);
    cr_expect(strstr(e, "layer 40"), "%s", e);
    free(o), free(e);
}

/* Every line of a log holds key, or none does. */
static size_t lines_with(const char *log, const char *key, size_t *lines)
{
    char *text = xp_test_slurp(log);
    cr_assert(text, "%s", log);
    size_t n = 0;
    *lines = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n"), ++*lines) {
        cJSON *o = cJSON_Parse(line);
        n += cJSON_GetObjectItem(o, key) != NULL;
        cJSON_Delete(o);
    }
    free(text);
    return n;
}

Test(search_cli, validation_split_early_stop_and_flip_detail, .timeout = 240)
{
    paths p = setup();
    char out[512], log[600], cmd[4096], *o = NULL, *e = NULL;
    xp_test_tmp_path(out, sizeof out, "search-valid.json");
    snprintf(log, sizeof log, "%s.log.jsonl", out);
    snprintf(cmd, sizeof cmd, "%s search -m '%s' --probes '%s' --controls '%s' -o '%s' "
             "--iterations 14 --granularity block --no-eval --validation-split 0.5 "
             "--validation-rule early-stop --log-flip-detail --fitness focused -t 2",
             xp_test_bin(), p.model, p.probes, p.controls, out);
    cr_assert_eq(xp_test_run(cmd, NULL, &o, &e), 0, "%s", e);
    cr_expect(strstr(e, "validation: 2 of the 4 targets") && strstr(e, "seed 1"),
              "the log says where the validation probes come from: %s", e);
    cr_expect(strstr(o, "validation  2 probes, rule early-stop") &&
                  strstr(o, "early stop: the patch is the first"),
              "%s", o);
    cr_expect(strstr(o, "kept flips changed some probe's sign"), "%s", o);
    cr_expect(strstr(o, "search: 2 targets") || strstr(e, "search: 2 targets"), "%s", e);
    size_t lines, accepted;
    cr_expect_eq(lines_with(log, "validation_now", &lines), lines);
    cr_expect_eq(lines_with(log, "validation_best_flips", &lines), lines);
    cr_expect_eq(lines, 14);
    size_t moved = lines_with(log, "moved", &lines);
    char *text = xp_test_slurp(log);
    accepted = 0;
    for (const char *q = text; (q = strstr(q, "\"accepted\":true")); q++)
        accepted++;
    free(text);
    cr_expect_gt(accepted, 0);
    cr_expect_eq(moved, accepted, "every kept flip and only they say which probes moved");
    free(o), free(e);
    /* the defaults log what they logged before */
    cr_assert_eq(search(&p, out, ""), 0);
    cr_expect_eq(lines_with(log, "validation", &lines), 0);
    cr_expect_eq(lines_with(log, "moved", &lines), 0);
    /* a plain {"prompt","answer"} validation file under margin */
    char plain[512];
    xp_test_tmp_path(plain, sizeof plain, "search-valid-plain.jsonl");
    xp_test_write(plain, "{\"prompt\":\"5 + 4 =\",\"answer\":\"9\"}\n"
                         "{\"prompt\":\"8 * 3 =\",\"answer\":\"24\"}\n");
    char extra[700];
    snprintf(extra, sizeof extra, "--metric margin --validation '%s'", plain);
    cr_assert_eq(search(&p, out, extra), 0);
    cr_expect_eq(lines_with(log, "validation", &lines), lines);
    /* what cannot go together is a usage error */
    const char *bad[] = {"--validation-split 1", "--validation-split 0",
                         "--validation-rule keep", "--validation-rule late",
                         "--validation-split 0.5 --validation x.json"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(cmd, sizeof cmd, "%s search -m '%s' --probes '%s' -o '%s' %s", xp_test_bin(),
                 p.model, p.probes, out, bad[i]);
        cr_expect_eq(xp_test_run(cmd, NULL, &o, &e), 2, "%s: %s", bad[i], e);
        free(o), free(e);
    }
    /* show --probes: the crossings of each flip of a patch */
    cr_assert_eq(search(&p, out, "--fitness borderline"), 0);
    snprintf(cmd, sizeof cmd, "%s show '%s' -m '%s' --probes '%s' --json", xp_test_bin(), out,
             p.model, p.probes);
    cr_assert_eq(xp_test_run(cmd, NULL, &o, &e), 0, "%s", e);
    cJSON *j = cJSON_Parse(o);
    const cJSON *c = cJSON_GetObjectItem(j, "crossings");
    cr_expect(cJSON_IsNumber(cJSON_GetObjectItem(c, "changed_sign")), "%s", o);
    cr_expect_eq(cJSON_GetArraySize(cJSON_GetObjectItem(c, "flips")),
                 (int)cJSON_GetObjectItem(j, "flips")->valuedouble, "a line per flip: %s", o);
    cJSON_Delete(j);
    free(o), free(e);
    snprintf(cmd, sizeof cmd, "%s show '%s' --probes '%s'", xp_test_bin(), out, p.probes);
    cr_expect_eq(xp_test_run(cmd, NULL, &o, &e), 2, "--probes needs -m: %s", e);
    free(o), free(e);
    /* a split that leaves no target */
    snprintf(cmd, sizeof cmd, "%s search -m '%s' --probes '%s' -o '%s' --validation-split 0.95",
             xp_test_bin(), p.model, p.probes, out);
    cr_expect_eq(xp_test_run(cmd, NULL, &o, &e), 2, "%s", e);
    cr_expect(strstr(e, "both need at least one"), "%s", e);
    free(o), free(e);
}

Test(search_cli, pipeline_steps_stack_and_summary, .timeout = 240)
{
    paths p = setup();
    char dir[512], cmd[4096], *o = NULL, *e = NULL;
    xp_test_tmp_path(dir, sizeof dir, "pipeline");
    snprintf(cmd, sizeof cmd, "%s pipeline -q -m '%s' -o '%s' --iterations 10 --granularity "
             "block '%s' '%s'", xp_test_bin(), p.model, dir, p.probes, p.controls);
    cr_assert_eq(xp_test_run(cmd, NULL, &o, &e), 0, "%s", e);
    cr_expect(strstr(o, "step 1") && strstr(o, "step 2"), "%s", o);
    free(o), free(e);
    char path[700];
    snprintf(path, sizeof path, "%s/pipeline.json", dir);
    char *text = xp_test_slurp(path);
    cJSON *j = cJSON_Parse(text);
    cr_assert(j, "%s", path);
    cJSON *steps = cJSON_GetObjectItem(j, "steps");
    cr_expect_eq(cJSON_GetArraySize(steps), 2);
    /* the targets the first step solved are the second step's controls (it has no others) */
    cJSON *s1 = cJSON_GetArrayItem(steps, 0), *s2 = cJSON_GetArrayItem(steps, 1);
    double promoted = cJSON_GetObjectItem(s1, "promoted")->valuedouble;
    cr_expect_eq(cJSON_GetObjectItem(s2, "controls")->valuedouble, promoted);
    cr_expect_leq(promoted, cJSON_GetObjectItem(s1, "solved_after")->valuedouble -
                                cJSON_GetObjectItem(s1, "solved_before")->valuedouble +
                                cJSON_GetObjectItem(s1, "targets")->valuedouble);
    cJSON_Delete(j);
    free(text);
    snprintf(cmd, sizeof cmd, "%s pipeline -m '%s' -o '%s'", xp_test_bin(), p.model, dir);
    cr_expect_eq(xp_test_run(cmd, NULL, &o, &e), 2, "no probe file: usage error");
    free(o), free(e);
}
