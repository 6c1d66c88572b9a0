/* The pipeline job (job.h): several domains searched in order on one model, each step on
 * top of the patches of the steps before it. A step's controls are its file's promoted
 * controls, the shared controls, and the targets earlier steps solved (promoted, up to a
 * cap, first solved first), so a later domain cannot undo an earlier one unpunished. A
 * Neagari file's search_config gives the step's lambda, iterations and layers unless the
 * caller does. */
#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/file.h"
#include "core/utf8.h"
#include "job/job_int.h"

/* The step's settings from its file's search_config where the caller is silent. */
static void step_settings(const xp_pipeline_job *job, const xp_probe_set *s, uint32_t n_layer,
                          xp_search_opts *o, uint32_t *layers)
{
    *o = job->opts;
    cJSON *cfg = s->search_config ? cJSON_Parse(s->search_config) : NULL;
    const cJSON *v;
    if (!job->lambda_given && cJSON_IsNumber(v = cJSON_GetObjectItem(cfg, "lambda_control")) &&
        v->valuedouble >= 0)
        o->lambda = v->valuedouble;
    if (!job->iterations_given && cJSON_IsNumber(v = cJSON_GetObjectItem(cfg, "min_iterations")) &&
        v->valuedouble >= 1)
        o->iterations = (size_t)v->valuedouble;
    if (!job->layers_given && cJSON_IsArray(v = cJSON_GetObjectItem(cfg, "recommended_layers"))) {
        size_t n = 0;
        const cJSON *l;
        cJSON_ArrayForEach(l, v) if (cJSON_IsNumber(l) && l->valuedouble >= 0 &&
                                     l->valuedouble < n_layer && n < 256) layers[n++] =
            (uint32_t)l->valuedouble;
        if (n) {
            o->layers = layers;
            o->n_layers = n;
        }
    }
    cJSON_Delete(cfg);
}

static size_t count_solved(const double *g, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        k += g[i] > 0;
    return k;
}

typedef struct step {
    xp_probe_set *set, *targets, *promoted;
    xp_probe_tokens *t, *p;
    xp_patch *patch;
    bool applied;
} step;

/* Everything a run holds, freed in one place. */
typedef struct pipeline {
    const xp_pipeline_job *job;
    const xp_job_callbacks *cb;
    xp_model *m;
    step *steps;
    size_t n_steps;
    xp_probe_set *extra; /* the shared controls */
    xp_probe_tokens *extra_t, *ctl;
    const xp_probe_tokens **promoted;
    size_t n_promoted;
    const char **after; /* the names of the earlier steps' patches */
    char base_sha[65];
    cJSON *summary, *jsteps;
    job_search search;
} pipeline;

static int load_step(pipeline *pl, step *st, const char *file, xp_err *err)
{
    const xp_tokenizer *tok = xp_model_tokenizer(pl->m);
    int rc;
    if ((rc = xp_probe_set_load(&st->set, file, err)) ||
        (rc = xp_probe_set_select_role(st->set, XP_ROLE_TARGET, &st->targets, err)) ||
        (rc = xp_probe_set_select_role(st->set, XP_ROLE_CONTROL, &st->promoted, err)) ||
        (rc = xp_probe_tokenize(st->targets, tok, &st->t, err)) ||
        (rc = xp_probe_tokenize(st->promoted, tok, &st->p, err)))
        return rc;
    if (st->targets->n == 0)
        return xp_err_set(err, XP_EINVAL, "%s: no target probes", file);
    xp_metric metric = pl->job->opts.metric;
    for (size_t i = 0; i < st->targets->n && !pl->job->allow_dead; i++)
        if (xp_probe_dead(&st->t[i], metric))
            return xp_err_set(err, XP_EINVAL,
                              "%s: target %s is dead under %s (its answers "
                              "cannot be told apart); drop it or pass --allow-dead",
                              file, st->targets->probes[i].name, xp_metric_name(metric));
    return XP_OK;
}

/* Step k: its search on the model patched by the steps before, its summary entry and
 * line, its solved targets promoted, its patch applied for the steps after. */
static int run_step(pipeline *pl, size_t k, xp_err *err)
{
    const xp_pipeline_job *job = pl->job;
    step *st = &pl->steps[k];
    const char *file = job->files[k];
    int rc = load_step(pl, st, file, err);
    if (rc)
        return rc;
    /* controls: the file's promoted ones, the shared ones, then earlier steps' solved */
    size_t n_extra = pl->extra ? pl->extra->n : 0, nc = st->promoted->n + n_extra + pl->n_promoted;
    free(pl->ctl);
    if (!(pl->ctl = calloc(nc + 1, sizeof *pl->ctl)))
        return xp_err_set(err, XP_ENOMEM, "out of memory");
    for (size_t i = 0; i < st->promoted->n; i++)
        pl->ctl[i] = st->p[i];
    for (size_t i = 0; i < n_extra; i++)
        pl->ctl[st->promoted->n + i] = pl->extra_t[i];
    for (size_t i = 0; i < pl->n_promoted; i++)
        pl->ctl[st->promoted->n + n_extra + i] = *pl->promoted[i];
    xp_search_opts o;
    uint32_t layers[256];
    step_settings(job, st->set, xp_model_shape(pl->m)->n_layer, &o, layers);
    char path[4096], name[128];
    /* the domain names a file: letters, digits, '-' and '_' only */
    snprintf(name, sizeof name, "%s", st->set->domain ? st->set->domain : "step");
    for (char *c = name; *c; c++)
        if (!isalnum((unsigned char)*c) && *c != '-' && *c != '_')
            *c = '_';
    snprintf(path, sizeof path, "%s/step-%zu-%s.json", job->out_dir, k + 1, name);
    size_t n_after = 0;
    for (size_t i = 0; i < k; i++)
        if (pl->steps[i].patch && pl->steps[i].patch->n_flips)
            pl->after[n_after++] = pl->steps[i].patch->name;
    xp_search_provenance pv = {.has_after = true, .after = pl->after, .n_after = n_after};
    pl->search = (job_search){{pl->cb, name},
                              o.iterations,
                              NULL,
                              {path, XP_PATCH_JSON, NULL, xp_model_gguf(pl->m)},
                              true};
    o.name = name;
    o.base_sha256 = pl->base_sha;
    o.provenance = &pv;
    job_search_hook(&pl->search, &o);
    job_note(pl->cb,
             "step %zu: %s, %zu targets, %zu controls (%zu promoted), lambda %g, %zu "
             "iterations",
             k + 1, name, st->targets->n, nc, pl->n_promoted, o.lambda, o.iterations);
    job_stage_start(&pl->search.stage, pl->search.total);
    xp_search_result r;
    if ((rc = xp_search_run(pl->m, st->t, st->targets->n, pl->ctl, nc, &o, NULL, &r, err)))
        return rc;
    st->patch = r.patch;
    r.patch = NULL;
    size_t broken = 0;
    for (size_t c = 0; c < nc; c++)
        broken += r.base_gaps[st->targets->n + c] > 0 && r.final_gaps[st->targets->n + c] <= 0;
    size_t before = count_solved(r.base_gaps, st->targets->n);
    size_t after = count_solved(r.final_gaps, st->targets->n), newly = 0;
    for (size_t i = 0; i < st->targets->n && pl->n_promoted < job->promote_cap; i++)
        if (r.base_gaps[i] <= 0 && r.final_gaps[i] > 0) {
            pl->promoted[pl->n_promoted++] = &st->t[i];
            newly++;
        }
    cJSON *js = cJSON_CreateObject();
    xp_json_add_string(js, "domain", name);
    xp_json_add_string(js, "file", file);
    xp_json_add_string(js, "patch", st->patch->n_flips ? path : "");
    cJSON_AddNumberToObject(js, "iterations", (double)r.iterations);
    cJSON_AddNumberToObject(js, "accepted", (double)r.accepted);
    cJSON_AddNumberToObject(js, "flips", (double)st->patch->n_flips);
    cJSON_AddNumberToObject(js, "lambda", o.lambda);
    cJSON_AddNumberToObject(js, "targets", (double)st->targets->n);
    cJSON_AddNumberToObject(js, "solved_before", (double)before);
    cJSON_AddNumberToObject(js, "solved_after", (double)after);
    cJSON_AddNumberToObject(js, "controls", (double)nc);
    cJSON_AddNumberToObject(js, "controls_broken", (double)broken);
    cJSON_AddNumberToObject(js, "promoted", (double)newly);
    cJSON_AddNumberToObject(js, "seconds", r.seconds);
    cJSON_AddItemToArray(pl->jsteps, js);
    if (job->out) {
        fprintf(job->out,
                "step %zu %-12s %4zu flips (%zu of %zu iterations kept), targets with "
                "gap > 0: %zu -> %zu of %zu, controls broken %zu of %zu, %zu promoted\n",
                k + 1, name, st->patch->n_flips, r.accepted, r.iterations, before, after,
                st->targets->n, broken, nc, newly);
        fflush(job->out);
    }
    /* a step without flips writes no patch; a file already at its path is left alone */
    if (!st->patch->n_flips && access(path, F_OK) == 0)
        job_warn(pl->cb,
                 "step %zu: no flip was kept: %s is not written (the file there is from "
                 "before: it is not this pipeline's)",
                 k + 1, path);
    xp_search_result_free(&r);
    if (st->patch->n_flips && !(rc = xp_model_patch_apply(pl->m, st->patch, err)))
        st->applied = true;
    return rc;
}

/* The steps' flips as one patch, for the base. */
static int write_stacked(pipeline *pl, xp_err *err)
{
    xp_patch **ps = calloc(pl->n_steps + 1, sizeof *ps);
    size_t n_ps = 0;
    int rc = ps ? XP_OK : xp_err_set(err, XP_ENOMEM, "out of memory");
    for (size_t k = 0; k < pl->n_steps && ps; k++)
        if (pl->steps[k].patch && pl->steps[k].patch->n_flips)
            ps[n_ps++] = pl->steps[k].patch;
    xp_patch *stacked;
    char path[4096];
    snprintf(path, sizeof path, "%s/stacked.json", pl->job->out_dir);
    if (!rc && !n_ps && pl->job->out)
        fprintf(pl->job->out, "stacked: no step kept a flip, %s is not written%s\n", path,
                access(path, F_OK) == 0 ? " (the file there is from before)" : "");
    if (!rc && n_ps && !(rc = xp_patch_stack(&stacked, ps, n_ps, false, err))) {
        snprintf(stacked->base_sha256, sizeof stacked->base_sha256, "%s", pl->base_sha);
        rc = job_patch_write(&(job_patch_out){path, XP_PATCH_JSON, "pipeline", NULL}, stacked, err);
        cJSON *js = cJSON_AddObjectToObject(pl->summary, "stacked");
        xp_json_add_string(js, "path", path);
        cJSON_AddNumberToObject(js, "flips", (double)stacked->n_flips);
        if (pl->job->out)
            fprintf(pl->job->out, "stacked: %zu flips in %s\n", stacked->n_flips, path);
        xp_patch_free(stacked);
    }
    free(ps);
    return rc;
}

static int write_summary(pipeline *pl, xp_err *err)
{
    char path[4096], *text = cJSON_Print(pl->summary);
    snprintf(path, sizeof path, "%s/pipeline.json", pl->job->out_dir);
    int rc = text ? xp_write_file_atomic(path, text, strlen(text), err)
                  : xp_err_set(err, XP_ENOMEM, "out of memory");
    free(text);
    return rc;
}

static void pipeline_free(pipeline *pl)
{
    for (size_t k = pl->n_steps; k-- > 0 && pl->steps;) {
        step *st = &pl->steps[k];
        if (st->applied)
            xp_model_patch_revert(pl->m, st->patch, NULL);
        xp_patch_free(st->patch);
        if (st->t)
            xp_probe_tokens_free(st->t, st->targets->n);
        if (st->p)
            xp_probe_tokens_free(st->p, st->promoted->n);
        xp_probe_set_free(st->set);
        xp_probe_set_free(st->targets);
        xp_probe_set_free(st->promoted);
    }
    if (pl->extra_t)
        xp_probe_tokens_free(pl->extra_t, pl->extra->n);
    xp_probe_set_free(pl->extra);
    free(pl->ctl), free(pl->promoted), free(pl->after), free(pl->steps);
    cJSON_Delete(pl->summary);
}

int xp_pipeline_job_run(const xp_pipeline_job *job, const xp_job_callbacks *cb, xp_err *err)
{
    if (!job->model_path || !job->out_dir || !job->n_files)
        return xp_err_set(err, XP_EINVAL,
                          "a pipeline job needs a model file, an output "
                          "directory and at least one probe file");
    if (job_writes(&job->opts) && mkdir(job->out_dir, 0777) != 0 && errno != EEXIST)
        return xp_err_set(err, XP_EIO, "%s: cannot make the directory", job->out_dir);
    pipeline pl = {.job = job, .cb = cb, .n_steps = job->n_files};
    int rc = job_model_take(job->model, job->model_path, job->kernel, &pl.m, err);
    if (rc)
        return rc;
    pl.steps = calloc(pl.n_steps, sizeof *pl.steps);
    pl.promoted = calloc(job->promote_cap + 1, sizeof *pl.promoted);
    pl.after = calloc(pl.n_steps + 1, sizeof *pl.after);
    pl.summary = cJSON_CreateObject();
    pl.jsteps = cJSON_AddArrayToObject(pl.summary, "steps");
    xp_json_add_string(pl.summary, "model", job->model_path);
    rc = pl.steps && pl.promoted && pl.after
             ? xp_job_base_sha256(job->model_path, xp_model_gguf(pl.m), pl.base_sha, err)
             : xp_err_set(err, XP_ENOMEM, "out of memory");
    if (!rc && !(rc = job_probe_files_load(job->controls, job->n_controls, &pl.extra, err)) &&
        pl.extra)
        rc = xp_probe_tokenize(pl.extra, xp_model_tokenizer(pl.m), &pl.extra_t, err);
    for (size_t k = 0; k < pl.n_steps && !rc; k++)
        rc = run_step(&pl, k, err);
    if (!rc && job_writes(&job->opts)) /* the other ranks of a team only help the searches */
        rc = write_stacked(&pl, err);
    if (!rc && job_writes(&job->opts))
        rc = write_summary(&pl, err);
    pipeline_free(&pl);
    job_model_release(job->model, pl.m);
    return rc;
}
