/* The plumbing every job shares (job_int.h): messages and progress through the caller's
 * callbacks, the model a job runs on, probe files loaded as one set, its hooks into a
 * search, and the one writer of the patches a job makes; and for every front end (job.h)
 * patch arguments and what a patch this program makes records about its making. */
#include <cjson/cJSON.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/alloc.h"
#include "job/job_int.h"
#include "job/search_log.h"

static void say(const xp_job_callbacks *cb, int level, const char *fmt, va_list ap)
{
    if (!cb || !cb->message)
        return;
    char text[2048];
    vsnprintf(text, sizeof text, fmt, ap);
    cb->message(cb->ctx, level, text);
}

void job_note(const xp_job_callbacks *cb, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    say(cb, XP_JOB_NOTE, fmt, ap);
    va_end(ap);
}

void job_warn(const xp_job_callbacks *cb, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    say(cb, XP_JOB_WARNING, fmt, ap);
    va_end(ap);
}

void job_stage_progress(void *stage, uint64_t done, uint64_t total)
{
    const job_stage *s = stage;
    if (s->cb && s->cb->progress)
        s->cb->progress(s->cb->ctx, s->name, done, total);
}

void job_stage_start(const job_stage *s, uint64_t total)
{
    job_stage_progress((void *)s, 0, total);
}

int job_probe_files_load(const char *const *paths, size_t n, xp_probe_set **out, xp_err *err)
{
    *out = NULL;
    for (size_t i = 0; i < n; i++) {
        xp_probe_set *s;
        int rc = xp_probe_set_load(&s, paths[i], err);
        if (rc) {
            xp_probe_set_free(*out);
            *out = NULL;
            return rc;
        }
        if (!*out) {
            *out = s;
            continue;
        }
        xp_probe *all = xp_realloc_array((*out)->probes, (*out)->n + s->n, sizeof *all);
        if (!all) {
            xp_probe_set_free(s);
            xp_probe_set_free(*out);
            *out = NULL;
            return xp_err_set(err, XP_ENOMEM, "out of memory");
        }
        /* the probes move: s keeps none of them */
        memcpy(all + (*out)->n, s->probes, s->n * sizeof *all);
        (*out)->probes = all;
        (*out)->n += s->n;
        s->n = 0;
        xp_probe_set_free(s);
    }
    return XP_OK;
}

int job_model_take(xp_model *given, const char *path, const char *kernel, xp_model **m, xp_err *err)
{
    *m = given;
    if (given)
        return XP_OK;
    if (!path)
        return xp_err_set(err, XP_EINVAL, "a job needs a model or a model file");
    int rc = xp_model_open(m, path, err);
    if (!rc && kernel)
        rc = xp_model_set_kernel(*m, kernel, err);
    if (rc) {
        xp_model_close(*m);
        *m = NULL;
    }
    return rc;
}

void job_model_release(xp_model *given, xp_model *m)
{
    if (m != given)
        xp_model_close(m);
}

int xp_job_patches_add(xp_job_patches *list, const char *path, const xp_job_callbacks *cb,
                       xp_err *err)
{
    xp_patch **ps;
    size_t n, missing;
    int rc = xp_patch_read_all(&ps, &n, &missing, path, err);
    if (rc)
        return rc;
    xp_patch **all = realloc(list->p, (list->n + n) * sizeof *all);
    if (!all) {
        xp_patch_list_free(ps, n);
        return xp_err_set(err, XP_ENOMEM, "out of memory");
    }
    memcpy(all + list->n, ps, n * sizeof *ps);
    free(ps);
    list->p = all;
    list->n += n;
    if (missing)
        job_note(cb,
                 "%s: its manifest names %zu step(s) whose patch file is not in the "
                 "directory; using the %zu that are",
                 path, missing, n);
    return XP_OK;
}

void xp_job_patches_free(xp_job_patches *list)
{
    xp_patch_list_free(list->p, list->n);
    memset(list, 0, sizeof *list);
}

/* ---- the patches a job makes ---- */

int xp_job_base_sha256(const char *path, const xp_gguf *g, char sha[65], xp_err *err)
{
    xp_patch_record rec;
    bool present;
    int rc = xp_patch_record_read(g, &rec, &present, err);
    if (rc)
        return rc;
    if (present)
        memcpy(sha, rec.base_sha256, 65);
    xp_patch_record_free(&rec);
    return present ? XP_OK : xp_sha256_file(path, sha, err);
}

void xp_job_stamp(xp_patch *p, const char *name)
{
    char created[32];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(created, sizeof created, "%Y-%m-%dT%H:%M:%SZ", &tm);
    if (name) {
        free(p->name);
        p->name = strdup(name);
    }
    free(p->tool);
    free(p->created);
    p->tool = strdup("xorpatch " XP_VERSION);
    p->created = strdup(created);
}

char *xp_job_architecture_json(const xp_gguf *g)
{
    xp_shape s;
    if (xp_shape_from_gguf(g, &s, NULL) != XP_OK)
        return NULL;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "architecture", "qwen3");
    cJSON_AddNumberToObject(o, "n_layer", s.n_layer);
    cJSON_AddNumberToObject(o, "n_embd", s.n_embd);
    cJSON_AddNumberToObject(o, "n_ff", s.n_ff);
    cJSON_AddNumberToObject(o, "n_head", s.n_head);
    cJSON_AddNumberToObject(o, "n_head_kv", s.n_head_kv);
    cJSON_AddNumberToObject(o, "head_dim", s.head_dim);
    cJSON_AddNumberToObject(o, "n_vocab", (double)s.n_vocab);
    cJSON_AddBoolToObject(o, "tied_output", s.tied_output);
    char *text = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return text;
}

int xp_job_patch_format(const char *path)
{
    size_t n = strlen(path);
    return n >= 4 && !strcmp(path + n - 4, ".xpb") ? XP_PATCH_BINARY : XP_PATCH_JSON;
}

int job_patch_write(const job_patch_out *o, xp_patch *p, xp_err *err)
{
    xp_job_stamp(p, o->name);
    if (o->base) {
        free(p->architecture);
        p->architecture = xp_job_architecture_json(o->base);
    }
    return xp_patch_write(p, o->format, o->path, err);
}

static void search_iter(void *ctx, const xp_search_iter *it)
{
    job_search *s = ctx;
    if (s->log)
        search_log_write(s->log, it);
    const xp_job_callbacks *cb = s->stage.cb;
    if (cb && cb->on_iter)
        cb->on_iter(cb->ctx, it);
    job_stage_progress(&s->stage, it->iter, s->total);
}

static int search_write(void *ctx, xp_patch *p, xp_err *err)
{
    job_search *s = ctx;
    return s->no_empty && !p->n_flips ? XP_OK : job_patch_write(&s->out, p, err);
}

bool job_writes(const xp_search_opts *o) { return !o->team || xp_search_team_rank(o->team) == 0; }

void job_search_hook(job_search *s, xp_search_opts *o)
{
    o->on_iter = search_iter;
    o->write_patch = search_write;
    o->ctx = s;
}
