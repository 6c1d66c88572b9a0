/* The job layer through the library: a search job reports every iteration, its progress
 * and its messages through the callbacks and prints nothing itself; a search resumed
 * from its checkpoint (the log trimmed where a killed run went on past it) ends with the
 * uninterrupted run's patch; the pipeline, experiment and bench-task jobs write only to
 * the FILE* they are given; and build/examples/search, a program that links the library,
 * writes the same flips as `xorpatch search`. All on the shipped tiny model. */
#include <cjson/cJSON.h>
#include <fcntl.h>
#include <string.h>

#include "testutil.h"
#include "xorpatch.h"

static void model_path(char *out, size_t size)
{
    snprintf(out, size, "%s/models/tiny-bonsai.gguf", xp_test_env("XP_ROOT", "."));
}

static void probe_path(char *out, size_t size, const char *name)
{
    snprintf(out, size, "%s/tests/behaviour/%s", xp_test_env("XP_ROOT", "."), name);
}

/* What the callbacks saw. */
typedef struct seen {
    size_t iters, last_iter, progress, notes, warnings;
    uint64_t last_done, last_total;
    bool started; /* the first progress call was done 0 */
    char stage[32];
    char messages[8192]; /* every message, one a line */
} seen;

static void on_progress(void *ctx, const char *stage, uint64_t done, uint64_t total)
{
    seen *s = ctx;
    if (!s->progress++)
        s->started = done == 0;
    snprintf(s->stage, sizeof s->stage, "%s", stage);
    s->last_done = done;
    s->last_total = total;
}

static void on_iter(void *ctx, const xp_search_iter *it)
{
    seen *s = ctx;
    s->iters++;
    s->last_iter = it->iter;
}

static void on_message(void *ctx, int level, const char *text)
{
    seen *s = ctx;
    if (level == XP_JOB_WARNING)
        s->warnings++;
    else
        s->notes++;
    size_t len = strlen(s->messages);
    snprintf(s->messages + len, sizeof s->messages - len, "%s\n", text);
}

static xp_job_callbacks callbacks(seen *s)
{
    memset(s, 0, sizeof *s);
    return (xp_job_callbacks){on_progress, on_iter, on_message, s};
}

/* stdout and stderr into a file while a job runs: what a library call printed. */
typedef struct capture {
    int saved[2];
    char path[512];
} capture;

static void capture_start(capture *c)
{
    xp_test_tmp_path(c->path, sizeof c->path, "job-printed");
    fflush(stdout), fflush(stderr);
    int fd = open(c->path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    cr_assert(fd >= 0);
    for (int i = 0; i < 2; i++) {
        c->saved[i] = dup(i + 1);
        dup2(fd, i + 1);
    }
    close(fd);
}

/* Restores stdout and stderr; returns what was printed (malloc'd). */
static char *capture_end(capture *c)
{
    fflush(stdout), fflush(stderr);
    for (int i = 0; i < 2; i++) {
        dup2(c->saved[i], i + 1);
        close(c->saved[i]);
    }
    char *text = xp_test_slurp(c->path);
    unlink(c->path);
    return text;
}

/* A patch file's flips_sha256, as `xorpatch show --json` gives it. */
static void flips_id(const char *path, char hex[65])
{
    char cmd[1024], *o = NULL;
    snprintf(cmd, sizeof cmd, "%s show --json '%s'", xp_test_bin(), path);
    cr_assert_eq(xp_test_run(cmd, NULL, &o, NULL), 0, "%s", cmd);
    cJSON *j = cJSON_Parse(o);
    const cJSON *v = cJSON_GetObjectItem(j, "flips_sha256");
    cr_assert(cJSON_IsString(v), "%s: %s", cmd, o);
    snprintf(hex, 65, "%s", v->valuestring);
    cJSON_Delete(j);
    free(o);
}

static size_t log_lines(const char *patch, size_t *last_iter)
{
    char path[700];
    snprintf(path, sizeof path, "%s.log.jsonl", patch);
    char *text = xp_test_slurp(path);
    cr_assert(text, "%s", path);
    size_t n = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        cJSON *o = cJSON_Parse(line);
        n++;
        cr_expect_eq((size_t)cJSON_GetObjectItem(o, "iter")->valuedouble, n,
                     "the log's lines are iterations 1, 2, ... in order: %s", line);
        *last_iter = n;
        cJSON_Delete(o);
    }
    free(text);
    return n;
}

/* A search job on the tiny model: train.json against controls.json. */
static xp_search_job search_job(char model[512], char probes[512], char controls[512],
                                const char *out, size_t iterations)
{
    model_path(model, 512);
    probe_path(probes, 512, "train.json");
    probe_path(controls, 512, "controls.json");
    static const char *control_files[1];
    control_files[0] = controls;
    xp_search_job job = {.model_path = model,
                         .probes = probes,
                         .controls = control_files,
                         .n_controls = 1,
                         .out = out,
                         .no_eval = true};
    xp_search_opts_default(&job.opts);
    job.opts.fitness = XP_FITNESS_FOCUSED;
    job.opts.iterations = iterations;
    return job;
}

Test(job, search_reports_through_its_callbacks_and_prints_nothing, .timeout = 240)
{
    char model[512], probes[512], controls[512], heldout[512], out[512];
    xp_test_tmp_path(out, sizeof out, "job-search.json");
    xp_search_job job = search_job(model, probes, controls, out, 12);
    probe_path(heldout, sizeof heldout, "heldout.json");
    job.heldout = heldout;
    job.no_eval = false;
    char *text = NULL;
    size_t len = 0;
    job.report = open_memstream(&text, &len);
    job.report_text = true;
    seen s;
    xp_job_callbacks cb = callbacks(&s);
    xp_search_job_result res;
    xp_err err = {0};
    capture c;
    capture_start(&c);
    int rc = xp_search_job_run(&job, &cb, &res, &err);
    char *printed = capture_end(&c);
    fclose(job.report);
    cr_assert_eq(rc, XP_OK, "%s", err.msg);
    cr_expect_str_eq(printed, "", "the library printed: %s", printed);
    cr_expect_eq(s.iters, 12);
    cr_expect_eq(s.last_iter, 12);
    cr_expect(s.started && s.progress == 13, "progress 0, then once per iteration: %zu",
              s.progress);
    cr_expect(!strcmp(s.stage, "search") && s.last_done == 12 && s.last_total == 12);
    cr_expect(strstr(s.messages, "audit: 48 targets") && strstr(s.messages, "search: 48 targets") &&
                  strstr(s.messages, "evaluating held-out ...") && strstr(s.messages, "wrote "),
              "%s", s.messages);
    cr_expect_eq(s.warnings, 0, "%s", s.messages);
    /* the report went to the file and came back as text, the same */
    cr_assert(res.report_text);
    cr_expect_str_eq(text, res.report_text);
    cr_expect(strstr(text, "== search report ==") && strstr(text, "held-out (48 probes"), "%s",
              text);
    /* the patch on disk is the result's, with its provenance */
    cr_assert(res.written && res.search.patch->n_flips > 0);
    char a[65], b[65];
    flips_id(out, a);
    cr_assert_eq(xp_patch_flips_sha256(res.search.patch, b, &err), XP_OK);
    cr_expect_str_eq(a, b);
    cJSON *search = cJSON_Parse(res.search.patch->search);
    cr_expect_eq(cJSON_GetArraySize(cJSON_GetObjectItem(search, "probe_files")), 3);
    cr_expect_eq(
        cJSON_GetObjectItem(cJSON_GetObjectItem(search, "result"), "iterations")->valuedouble, 12);
    cJSON_Delete(search);
    size_t last;
    cr_expect_eq(log_lines(out, &last), 12);
    free(text);
    free(printed);
    xp_search_job_result_free(&res);
}

Test(job, resumed_search_equals_the_uninterrupted_one, .timeout = 240)
{
    char model[512], probes[512], controls[512], full[512], part[512], id_full[65], id_part[65];
    xp_test_tmp_path(full, sizeof full, "job-full.json");
    xp_test_tmp_path(part, sizeof part, "job-part.json");
    xp_err err = {0};
    seen s;
    xp_job_callbacks cb = callbacks(&s);
    xp_search_job_result res;
    xp_search_job job = search_job(model, probes, controls, full, 14);
    cr_assert_eq(xp_search_job_run(&job, &cb, &res, &err), XP_OK, "%s", err.msg);
    xp_search_job_result_free(&res);
    /* stopped after 7 (its final patch is its last checkpoint), with a log that went on
     * past it as a killed run's does */
    job = search_job(model, probes, controls, part, 7);
    cr_assert_eq(xp_search_job_run(&job, &cb, &res, &err), XP_OK, "%s", err.msg);
    cr_assert(res.written, "a flip is kept in the first 7 iterations");
    xp_search_job_result_free(&res);
    char log[700];
    snprintf(log, sizeof log, "%s.log.jsonl", part);
    FILE *f = fopen(log, "a");
    cr_assert(f);
    for (int i = 8; i <= 10; i++)
        fprintf(f, "{\"iter\":%d,\"accepted\":false}\n", i);
    fclose(f);
    /* resumed: the same patch as the run that never stopped, iteration 8 on appended */
    job = search_job(model, probes, controls, part, 14);
    job.resume = part;
    cb = callbacks(&s);
    cr_assert_eq(xp_search_job_run(&job, &cb, &res, &err), XP_OK, "%s", err.msg);
    cr_expect_eq(res.search.resumed_at, 7);
    cr_expect_eq(s.iters, 7, "iterations 8 to 14 run");
    cr_expect(strstr(s.messages, "exactly after its iteration 7"), "%s", s.messages);
    xp_search_job_result_free(&res);
    flips_id(full, id_full);
    flips_id(part, id_part);
    cr_expect_str_eq(id_part, id_full, "resumed: the same final patch");
    size_t last;
    cr_expect_eq(log_lines(part, &last), 14, "no iteration twice in the log");
    /* a patch of another search is a starting point, and the caller is warned */
    job = search_job(model, probes, controls, part, 3);
    job.resume = full;
    job.opts.seed = 2;
    cb = callbacks(&s);
    cr_assert_eq(xp_search_job_run(&job, &cb, &res, &err), XP_OK, "%s", err.msg);
    cr_expect_eq(res.search.resumed_at, 0);
    cr_expect_eq(s.warnings, 1, "%s", s.messages);
    cr_expect(strstr(s.messages, "is not a checkpoint of this search"), "%s", s.messages);
    xp_search_job_result_free(&res);
}

Test(job, dead_targets_are_refused_with_a_reason)
{
    char model[512], probes[512], controls[512], out[512];
    xp_test_tmp_path(out, sizeof out, "job-dead.json");
    xp_search_job job = search_job(model, probes, controls, out, 2);
    xp_test_tmp_path(probes, sizeof probes, "job-dead-probes.json");
    /* two spellings of one text: NFC makes them the same tokens */
    xp_test_write(probes, "[{\"name\":\"same\",\"prompt\":\"Say\",\"correct\":\" caf\\u00e9\","
                          "\"wrong\":\" cafe\\u0301\"}]");
    job.n_controls = 0;
    xp_search_job_result res;
    xp_err err = {0};
    cr_expect_eq(xp_search_job_run(&job, NULL, &res, &err), XP_EINVAL);
    cr_expect(strstr(err.msg, "1 dead target probe (same)"), "%s", err.msg);
    job.allow_dead = true;
    cr_expect_eq(xp_search_job_run(&job, NULL, &res, &err), XP_OK, "%s", err.msg);
    xp_search_job_result_free(&res);
}

Test(job, pipeline_experiment_and_bench_task_write_only_to_their_file, .timeout = 240)
{
    char model[512], arith[512], deriv[512], dir[512], tasks[512];
    model_path(model, sizeof model);
    probe_path(arith, sizeof arith, "arith.json");
    probe_path(deriv, sizeof deriv, "deriv.json");
    xp_test_tmp_path(dir, sizeof dir, "job-pipeline");
    xp_test_tmp_path(tasks, sizeof tasks, "job-tasks.jsonl");
    xp_test_write(tasks, "{\"prompt\":\"2 + 3 =\",\"answer\":\"5\"}\n"
                         "{\"prompt\":\"6 * 7 =\",\"answer\":\"42\"}\n");
    char *text[3] = {NULL};
    size_t len[3];
    FILE *out[3];
    for (int i = 0; i < 3; i++)
        out[i] = open_memstream(&text[i], &len[i]);
    const char *files[] = {arith, deriv};
    xp_pipeline_job pj = {.model_path = model,
                          .files = files,
                          .n_files = 2,
                          .out_dir = dir,
                          .promote_cap = 20,
                          .out = out[0]};
    xp_search_opts_default(&pj.opts);
    pj.opts.iterations = 6;
    xp_experiment_job ej = {.experiment = xp_experiment_from_name("layer-map"),
                            .model_path = model,
                            .probes = arith,
                            .metric = XP_METRIC_SEQ_LOGPROB,
                            .json = true,
                            .out = out[1]};
    xp_search_opts_default(&ej.search);
    xp_bench_task_job bj = {
        .model_path = model, .tasks = tasks, .opts = {.max_tokens = 4}, .out = out[2]};
    seen s[3];
    xp_job_callbacks cb[3] = {callbacks(&s[0]), callbacks(&s[1]), callbacks(&s[2])};
    xp_err err[3] = {{0}};
    int rc[3];
    capture c;
    capture_start(&c);
    rc[0] = xp_pipeline_job_run(&pj, &cb[0], &err[0]);
    rc[1] = xp_experiment_job_run(&ej, &cb[1], &err[1]);
    rc[2] = xp_bench_task_job_run(&bj, &cb[2], &err[2]);
    char *printed = capture_end(&c);
    for (int i = 0; i < 3; i++) {
        fclose(out[i]);
        cr_assert_eq(rc[i], XP_OK, "job %d: %s", i, err[i].msg);
    }
    cr_expect_str_eq(printed, "", "the library printed: %s", printed);
    cr_expect(strstr(text[0], "step 1 arith") && strstr(text[0], "step 2 deriv"), "%s", text[0]);
    cr_expect(strstr(s[0].messages, "step 2: deriv"), "%s", s[0].messages);
    cr_expect_eq(s[0].iters, 12, "two steps of 6 iterations");
    char summary[700];
    snprintf(summary, sizeof summary, "%s/pipeline.json", dir);
    char *sj = xp_test_slurp(summary);
    cr_expect(sj && strstr(sj, "\"steps\""), "%s", summary);
    free(sj);
    cJSON *lm = cJSON_Parse(text[1]);
    cr_assert(lm, "one JSON object: %s", text[1]);
    cr_expect_str_eq(cJSON_GetObjectItem(lm, "experiment")->valuestring, "layer-map");
    cr_expect_eq(cJSON_GetArraySize(cJSON_GetObjectItem(lm, "layers")), 4, "every layer");
    cr_expect(!strcmp(s[1].stage, "layer-map") && s[1].last_done == 4, "%s %llu", s[1].stage,
              (unsigned long long)s[1].last_done);
    cJSON_Delete(lm);
    cr_expect(strstr(text[2], "2 tasks scored by number; base only") &&
                  strstr(text[2], "accuracy  base"),
              "%s", text[2]);
    cr_expect(strstr(s[2].messages, "2 tasks in "), "%s", s[2].messages);
    for (int i = 0; i < 3; i++)
        free(text[i]);
    free(printed);
}

/* build/examples/search and `xorpatch search` with the same arguments: the same flips. */
Test(job, the_example_program_writes_the_flips_of_xorpatch_search, .timeout = 300)
{
    char model[512], probes[512], controls[512], cmd[4096];
    model_path(model, sizeof model);
    probe_path(probes, sizeof probes, "train.json");
    probe_path(controls, sizeof controls, "controls.json");
    const char *example = xp_test_env("XP_EXAMPLES", "build/examples");
    for (int seed = 1; seed <= 2; seed++) {
        char a[512], b[512], ida[65], idb[65], *o = NULL, *e = NULL;
        xp_test_tmp_path(a, sizeof a, "job-example.json");
        xp_test_tmp_path(b, sizeof b, "job-cli.json");
        snprintf(cmd, sizeof cmd, "'%s/search' '%s' '%s' '%s' 30 %d '%s'", example, model, probes,
                 controls, seed, a);
        cr_assert_eq(xp_test_run(cmd, NULL, &o, &e), 0, "%s\n%s", cmd, e);
        cr_expect(strstr(o, "== search report =="), "the example prints the report: %s", o);
        cr_expect(strstr(e, "search 30/30"), "and its own progress: %s", e);
        free(o), free(e);
        snprintf(cmd, sizeof cmd,
                 "%s search -q -m '%s' --probes '%s' --controls '%s' "
                 "--iterations 30 --seed %d --fitness focused -o '%s'",
                 xp_test_bin(), model, probes, controls, seed, b);
        cr_assert_eq(xp_test_run(cmd, NULL, NULL, &e), 0, "%s\n%s", cmd, e);
        free(e);
        flips_id(a, ida);
        flips_id(b, idb);
        cr_expect_str_eq(ida, idb, "seed %d: the example's flips are the CLI's", seed);
    }
}
