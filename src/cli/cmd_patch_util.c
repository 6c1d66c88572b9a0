/* Shared plumbing of the patch commands: patch arguments, layouts, output formats, file
 * options and the crash-test hook (see cmd_patch_util.h). */
#include "cli/cmd_patch_util.h"

#include <cjson/cJSON.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli_job.h"

int cli_patches_layout(xp_patch *const *ps, size_t n, const char *model, const char *shape,
                       xp_err *err)
{
    int rc = XP_OK;
    if (model) {
        xp_gguf *g;
        if ((rc = xp_gguf_open(&g, model, err)))
            return rc;
        for (size_t i = 0; i < n && !rc; i++)
            rc = xp_patch_bind(ps[i], g, err);
        xp_gguf_close(g);
    } else if (shape) {
        xp_shape s;
        rc = xp_shape_preset(shape, &s, err);
        for (size_t i = 0; i < n && !rc; i++)
            rc = xp_patch_bind_shape(ps[i], &s, err);
    }
    return rc;
}

int cli_patch_out_format(const char *command, const char *to, const char *path)
{
    if (to) {
        int f = xp_patch_format_from_name(to);
        if (f < 0)
            cli_usage_error(command, "unknown format '%s' (expected xorpatch, binary, "
                            "binary-compact, bankai-v1, neagari-v2 or neagari-list)", to);
        return f;
    }
    return xp_job_patch_format(path);
}

int cli_patch_output(const char *command, const char *out_role, const cli_values *v)
{
    if (!v->output)
        return cli_usage_error(command, "%s is required", out_role), -1;
    if (v->model && v->shape_name)
        return cli_usage_error(command, "give -m or --shape, not both"), -1;
    return cli_patch_out_format(command, v->to, v->output);
}

static void crash_step(void *ctx)
{
    long *left = ctx;
    if (--*left <= 0)
        raise(SIGKILL);
}

/* Options for file operations: progress bar (when on a terminal) and, for tests, the crash
 * hook: with XORPATCH_CRASH_AFTER=N the process kills itself (SIGKILL) after the Nth step
 * that changes a file in place. */
static void file_opts(xp_patch_file_opts *o, bool force, cli_progress *bar)
{
    static long crash_left;
    memset(o, 0, sizeof *o);
    o->force = force;
    o->progress = cli_progress_update;
    o->progress_ctx = bar;
    const char *crash = getenv("XORPATCH_CRASH_AFTER");
    if (crash && *crash) {
        crash_left = strtol(crash, NULL, 10);
        o->on_step = crash_step;
        o->step_ctx = &crash_left;
    }
}

int cli_model_base(const char *path, const xp_gguf *g, char sha[65], xp_err *err)
{
    return xp_job_base_sha256(path, g, sha, err);
}

void cli_patch_stamp(xp_patch *p, const char *name)
{
    xp_job_stamp(p, name);
}

char *cli_architecture_json(const xp_gguf *g)
{
    return xp_job_architecture_json(g);
}


int cli_file_command(const cli_values *v, const char *command, const char *model_role,
                     bool need_patch, cli_file_op op, cli_file_report report)
{
    if (!v->model)
        return cli_usage_error(command, "-m %s is required", model_role);
    if (need_patch && !v->patches.n)
        return cli_usage_error(command, "give at least one -p PATCH");
    if (!v->output == !v->in_place)
        return cli_usage_error(command, "give -o OUT.gguf or --in-place (one of them)");
    xp_patch_file_opts o;
    xp_patch_file_result res = {0};
    xp_err err = {0};
    cli_progress bar;
    cli_progress_start(&bar, command);
    file_opts(&o, v->force, &bar);
    int rc = op(v->model, v->patches.p, v->patches.n, v->output, &o, &res, &err);
    cli_progress_end(&bar);
    if (res.recovered)
        cli_note("%s: completed an interrupted in-place operation first", v->model);
    return rc ? cli_fail(&err) : report(v, &res);
}
