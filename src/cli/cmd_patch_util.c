/* Shared plumbing of the patch commands: patch arguments, layouts, output formats, file
 * options and the crash-test hook (see cmd_patch_util.h). */
#include "cli/cmd_patch_util.h"

#include <getopt.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli_job.h"

int cli_patches_add(cli_patches *list, const char *path, xp_err *err)
{
    return xp_job_patches_add(list, path, &cli_job_notes, err);
}

void cli_patches_free(cli_patches *list)
{
    xp_job_patches_free(list);
}

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

static void crash_step(void *ctx)
{
    long *left = ctx;
    if (--*left <= 0)
        raise(SIGKILL);
}

void cli_patch_file_opts(xp_patch_file_opts *o, bool force, cli_progress *bar)
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

const char *cli_thousands(uint64_t v, char *buf, size_t size)
{
    char digits[32];
    int n = snprintf(digits, sizeof digits, "%llu", (unsigned long long)v);
    size_t k = 0;
    for (int i = 0; i < n && k + 2 < size; i++) {
        if (i && (n - i) % 3 == 0)
            buf[k++] = ',';
        buf[k++] = digits[i];
    }
    buf[k] = '\0';
    return buf;
}

int cli_file_args_parse(const cli_command *cmd, int argc, char **argv, const char *model_role,
                        bool need_patch, cli_file_args *a)
{
    enum { O_IN_PLACE = 256, O_FORCE };
    static const struct option opts[] = {{"model", required_argument, 0, 'm'},
                                         {"patch", required_argument, 0, 'p'},
                                         {"output", required_argument, 0, 'o'},
                                         {"in-place", no_argument, 0, O_IN_PLACE},
                                         {"force", no_argument, 0, O_FORCE},
                                         {"quiet", no_argument, 0, 'q'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    memset(a, 0, sizeof *a);
    xp_err err = {0};
    int opt, rc;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "m:p:o:qh", opts, NULL)) != -1) {
        switch (opt) {
        case 'm': a->model = optarg; break;
        case 'o': a->out = optarg; break;
        case O_IN_PLACE: a->in_place = true; break;
        case O_FORCE: a->force = true; break;
        case 'p':
            if (cli_patches_add(&a->list, optarg, &err)) {
                cli_patches_free(&a->list);
                return cli_fail(&err);
            }
            break;
        default:
            if ((rc = cli_common_option(cmd, opt)) >= 0) {
                cli_patches_free(&a->list);
                return rc;
            }
        }
    }
    char need_model[64];
    snprintf(need_model, sizeof need_model, "-m %s is required", model_role);
    const char *problem = optind < argc                ? "unexpected argument"
                          : !a->model                  ? need_model
                          : need_patch && !a->list.n   ? "give at least one -p PATCH"
                          : !a->out == !a->in_place    ? "give -o OUT.gguf or --in-place (one of them)"
                                                       : NULL;
    if (problem) {
        cli_patches_free(&a->list);
        return cli_usage_error(cmd->name, "%s%s%s", problem, optind < argc ? " " : "",
                               optind < argc ? argv[optind] : "");
    }
    return -1;
}

int cli_file_run(const char *label, cli_file_op op, const cli_file_args *a,
                 xp_patch_file_result *res, xp_err *err)
{
    xp_patch_file_opts o;
    cli_progress bar;
    cli_progress_start(&bar, label);
    cli_patch_file_opts(&o, a->force, &bar);
    int rc = op(a->model, a->list.p, a->list.n, a->out, &o, res, err);
    cli_progress_end(&bar);
    if (res->recovered)
        cli_note("%s: completed an interrupted in-place operation first", a->model);
    return rc;
}
