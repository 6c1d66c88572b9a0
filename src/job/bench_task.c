/* The task-benchmark job (job.h): a JSONL task file run greedily without and with the
 * patches (the task section of xorpatch.h), its paired statistics and every item's
 * outputs as text or one JSON object line. */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <time.h>

#include "core/utf8.h"
#include "job/job_int.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void put_json(FILE *out, const xp_bench_task_job *job, const xp_task_set *t,
                     const xp_task_result *r, const char *kind)
{
    cJSON *o = cJSON_CreateObject();
    xp_json_add_string(o, "tasks", job->tasks);
    cJSON_AddStringToObject(o, "kind", kind);
    cJSON *pn = cJSON_AddArrayToObject(o, "patches");
    for (size_t i = 0; i < job->n_patches; i++) {
        const xp_patch *p = job->patches[i];
        cJSON_AddItemToArray(pn, xp_json_string(p->name ? p->name : p->path));
    }
    cJSON_AddItemToObject(o, "summary", xp_paired_json(&r->paired));
    cJSON *items = cJSON_AddArrayToObject(o, "items");
    for (size_t i = 0; i < t->n; i++) {
        cJSON *e = cJSON_CreateObject(), *rt = cJSON_AddArrayToObject(e, "right");
        xp_json_add_string(e, "answer", t->answers[i]);
        const char *const outs[2] = {r->output[0][i], r->output[1][i]};
        xp_json_add_strings(e, "output", outs, 2); /* "output_bytes" when cut mid-character */
        for (int k = 0; k < 2; k++)
            cJSON_AddItemToArray(rt, cJSON_CreateBool(r->right[k][i]));
        cJSON_AddItemToArray(items, e);
    }
    char *text = cJSON_PrintUnformatted(o);
    if (text)
        fprintf(out, "%s\n", text);
    free(text);
    cJSON_Delete(o);
}

int xp_bench_task_job_run(const xp_bench_task_job *job, const xp_job_callbacks *cb, xp_err *err)
{
    if (!job->model_path || !job->tasks)
        return xp_err_set(err, XP_EINVAL, "a task benchmark needs a model file and tasks");
    xp_model *m;
    int rc = job_model_take(job->model, job->model_path, job->kernel, &m, err);
    if (rc)
        return rc;
    xp_task_set *t = NULL;
    xp_task_result r = {0};
    rc = xp_task_set_load(&t, job->tasks, job->kind, err);
    if (!rc && job->limit && job->limit < t->n) {
        for (size_t i = job->limit; i < t->n; i++)
            free(t->prompts[i]), free(t->answers[i]);
        t->n = job->limit;
    }
    job_stage stage = {cb, "bench-task"};
    xp_task_opts o = job->opts;
    o.progress = job_stage_progress;
    o.progress_ctx = &stage;
    double t0 = now();
    if (!rc) {
        job_stage_start(&stage, t->n);
        rc = xp_task_run(m, t, job->patches, job->n_patches, &o, &r, err);
    }
    const char *kind = t && t->kind == XP_TASK_CHOICE ? "choice" : "number";
    if (!rc && job->out && job->json) {
        put_json(job->out, job, t, &r, kind);
    } else if (!rc && job->out) {
        fprintf(job->out, "%s: %zu tasks scored by %s; %s\n", job->tasks, t->n, kind,
                job->n_patches ? "without and with the patches" : "base only");
        xp_paired_print(job->out, &r.paired, "tasks", job->n_patches > 0);
    }
    if (!rc)
        job_note(cb, "%zu tasks in %.1f s", t->n, now() - t0);
    xp_task_result_free(&r);
    xp_task_set_free(t);
    job_model_release(job->model, m);
    return rc;
}
