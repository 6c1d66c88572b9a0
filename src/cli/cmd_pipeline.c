/* `xorpatch pipeline`: several domains searched in order on one model, each step on top
 * of the patches of the steps before it. A step's controls are its file's promoted
 * controls, the --controls file, and the targets earlier steps solved (promoted, up to a
 * cap, first solved first), so a later domain cannot undo an earlier one unpunished. A
 * Neagari file's search_config gives the step's λ, iterations and layers unless the
 * command line does. */
#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cmd_patch_util.h"
#include "cli/cmd_search.h"
#include "core/file.h"

static const char usage[] =
    "Usage: xorpatch pipeline -m MODEL -o DIR [options] PROBES...\n"
    "\n"
    "Runs the search once per probe file, in order, each step on the model patched by the\n"
    "steps before it. Targets a step solves (gap <= 0 before it, > 0 after) become\n"
    "controls of the later steps, at most --promote-cap of them in all (default 20),\n"
    "first solved first. Per step, a Neagari\n"
    "file's search_config sets lambda (lambda_control), the iterations (min_iterations)\n"
    "and the layers (recommended_layers below the model's count) unless given here.\n"
    "Writes DIR/step-K-DOMAIN.json per step (a step's patch applies on top of the earlier\n"
    "steps'; its search JSON lists them under \"after\"), DIR/stacked.json (every step's\n"
    "flips XORed together, for the base) and DIR/pipeline.json, a summary:\n"
    "  {\"model\", \"steps\": [{\"domain\", \"file\", \"patch\", \"iterations\", \"accepted\",\n"
    "   \"flips\", \"lambda\", \"targets\", \"solved_before\", \"solved_after\", \"controls\",\n"
    "   \"controls_broken\", \"promoted\", \"seconds\"}], \"stacked\": {\"path\", \"flips\"}}\n"
    "\n"
    "Options: -m, -o DIR, --controls FILE, --promote-cap N, and the search options\n"
    "(--metric, --fitness, --lambda, --epsilon, --min-gain, --granularity, --scale-ratio,\n"
    "--scale-bits, --layers, --proj, --proposal, --iterations, --screen, --auto-stop,\n"
    "--seed, --checkpoint-every, --allow-dead, --kernel, -t, -q, -h); see `xorpatch help\n"
    "search`.\n";

/* The step's settings from its file's search_config where the command line is silent. */
static void step_settings(const cli_search_args *a, const xp_probe_set *s, uint32_t n_layer,
                          xp_search_opts *o, uint32_t *layers)
{
    *o = a->opts;
    cJSON *cfg = s->search_config ? cJSON_Parse(s->search_config) : NULL;
    const cJSON *v;
    if (!a->lambda_set && cJSON_IsNumber(v = cJSON_GetObjectItem(cfg, "lambda_control")) &&
        v->valuedouble >= 0)
        o->lambda = v->valuedouble;
    if (!a->iterations_set && cJSON_IsNumber(v = cJSON_GetObjectItem(cfg, "min_iterations")) &&
        v->valuedouble >= 1)
        o->iterations = (size_t)v->valuedouble;
    if (!a->layers_set && cJSON_IsArray(v = cJSON_GetObjectItem(cfg, "recommended_layers"))) {
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

/* A step's patch was searched on the base patched by the steps before it: say so. */
static void note_after(xp_patch *p, const step *steps, int k)
{
    cJSON *s = p->search ? cJSON_Parse(p->search) : NULL;
    if (!s)
        return;
    cJSON *after = cJSON_AddArrayToObject(s, "after");
    for (int i = 0; i < k; i++)
        if (steps[i].patch && steps[i].patch->n_flips)
            cJSON_AddItemToArray(after, cJSON_CreateString(steps[i].patch->name));
    char *text = cJSON_PrintUnformatted(s);
    cJSON_Delete(s);
    if (text) {
        free(p->search);
        p->search = text;
    }
}

typedef struct progress {
    cli_progress bar;
    size_t total;
} progress;

static void on_iter(void *ctx, const xp_search_iter *it)
{
    progress *p = ctx;
    cli_progress_update(&p->bar, it->iter, p->total);
}

static int run(int argc, char **argv)
{
    cli_search_args a = {.command = "pipeline", .self = &cli_pipeline, .pipeline = true,
                         .promote_cap = 20};
    xp_search_opts_default(&a.opts);
    int rc = cli_search_parse(argc, argv, &a);
    if (rc >= 0)
        return rc;
    int n_files = argc - a.first_file;
    if (!a.model || !a.out || n_files < 1)
        return cli_usage_error("pipeline", "-m MODEL, -o DIR and at least one probe file are "
                               "required");
    if (a.probes || a.heldout || a.resume || a.name || a.log || a.report || a.no_eval)
        return cli_usage_error("pipeline", "--probes, --heldout, --resume, --name, --log, "
                               "--report and --no-eval belong to search; give the probe files "
                               "as arguments");
    if (mkdir(a.out, 0777) != 0 && errno != EEXIST)
        return cli_input_error("%s: cannot make the directory", a.out);
    xp_model *m;
    if ((rc = cli_open_model(a.model, a.kernel, &m)))
        return rc;
    xp_err err = {0};
    char base_sha[65] = "";
    step *steps = calloc((size_t)n_files, sizeof *steps);
    xp_probe_set *extra = NULL;
    xp_probe_tokens *extra_t = NULL, *ctl = NULL;
    const xp_probe_tokens **promoted = calloc(a.promote_cap + 1, sizeof *promoted);
    size_t n_promoted = 0;
    cJSON *summary = cJSON_CreateObject(), *jsteps = cJSON_AddArrayToObject(summary, "steps");
    cJSON_AddStringToObject(summary, "model", a.model);
    rc = steps && promoted ? cli_model_base(a.model, xp_model_gguf(m), base_sha, &err)
                           : xp_err_set(&err, XP_ENOMEM, "out of memory");
    if (!rc && a.controls &&
        !(rc = xp_probe_set_load(&extra, a.controls, &err)))
        rc = xp_probe_tokenize(extra, xp_model_tokenizer(m), &extra_t, &err);
    for (int k = 0; k < n_files && !rc; k++) {
        step *st = &steps[k];
        const char *file = argv[a.first_file + k];
        if ((rc = xp_probe_set_load(&st->set, file, &err)) ||
            (rc = xp_probe_set_select_role(st->set, XP_ROLE_TARGET, &st->targets, &err)) ||
            (rc = xp_probe_set_select_role(st->set, XP_ROLE_CONTROL, &st->promoted, &err)) ||
            (rc = xp_probe_tokenize(st->targets, xp_model_tokenizer(m), &st->t, &err)) ||
            (rc = xp_probe_tokenize(st->promoted, xp_model_tokenizer(m), &st->p, &err)))
            break;
        if (st->targets->n == 0) {
            rc = xp_err_set(&err, XP_EINVAL, "%s: no target probes", file);
            break;
        }
        for (size_t i = 0; i < st->targets->n && !a.allow_dead; i++)
            if (xp_probe_dead(&st->t[i], a.opts.metric)) {
                rc = xp_err_set(&err, XP_EINVAL, "%s: target %s is dead under %s (its answers "
                                "cannot be told apart); drop it or pass --allow-dead", file,
                                st->targets->probes[i].name, xp_metric_name(a.opts.metric));
                break;
            }
        if (rc)
            break;
        /* controls: the file's promoted ones, --controls, then earlier steps' solved */
        size_t n_extra = extra ? extra->n : 0, nc = st->promoted->n + n_extra + n_promoted;
        free(ctl);
        if (!(ctl = calloc(nc + 1, sizeof *ctl))) {
            rc = xp_err_set(&err, XP_ENOMEM, "out of memory");
            break;
        }
        for (size_t i = 0; i < st->promoted->n; i++)
            ctl[i] = st->p[i];
        for (size_t i = 0; i < n_extra; i++)
            ctl[st->promoted->n + i] = extra_t[i];
        for (size_t i = 0; i < n_promoted; i++)
            ctl[st->promoted->n + n_extra + i] = *promoted[i];
        xp_search_opts o;
        uint32_t layers[256];
        step_settings(&a, st->set, xp_model_shape(m)->n_layer, &o, layers);
        char path[4096], name[128];
        /* the domain names a file: letters, digits, '-' and '_' only */
        snprintf(name, sizeof name, "%s", st->set->domain ? st->set->domain : "step");
        for (char *c = name; *c; c++)
            if (!isalnum((unsigned char)*c) && *c != '-' && *c != '_')
                *c = '_';
        snprintf(path, sizeof path, "%s/step-%d-%s.json", a.out, k + 1, name);
        progress bar = {.total = o.iterations};
        o.checkpoint = path;
        o.name = name;
        o.base_sha256 = base_sha;
        o.on_iter = on_iter;
        o.ctx = &bar;
        cli_note("step %d: %s, %zu targets, %zu controls (%zu promoted), lambda %g, %zu "
                 "iterations", k + 1, name, st->targets->n, nc, n_promoted, o.lambda,
                 o.iterations);
        cli_progress_start(&bar.bar, name);
        xp_search_result r;
        rc = xp_search_run(m, st->t, st->targets->n, ctl, nc, &o, NULL, &r, &err);
        cli_progress_end(&bar.bar);
        if (rc)
            break;
        st->patch = r.patch;
        r.patch = NULL;
        cli_patch_stamp(st->patch, NULL);
        st->patch->architecture = cli_architecture_json(xp_model_gguf(m));
        note_after(st->patch, steps, k);
        size_t broken = 0;
        for (size_t c = 0; c < nc; c++)
            broken += r.base_gaps[st->targets->n + c] > 0 && r.final_gaps[st->targets->n + c] <= 0;
        size_t before = count_solved(r.base_gaps, st->targets->n);
        size_t after = count_solved(r.final_gaps, st->targets->n), newly = 0;
        for (size_t i = 0; i < st->targets->n && n_promoted < a.promote_cap; i++)
            if (r.base_gaps[i] <= 0 && r.final_gaps[i] > 0) {
                promoted[n_promoted++] = &st->t[i];
                newly++;
            }
        cJSON *js = cJSON_CreateObject();
        cJSON_AddStringToObject(js, "domain", name);
        cJSON_AddStringToObject(js, "file", file);
        cJSON_AddStringToObject(js, "patch", st->patch->n_flips ? path : "");
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
        cJSON_AddItemToArray(jsteps, js);
        printf("step %d %-12s %4zu flips (%zu of %zu iterations kept), targets with gap > 0: "
               "%zu -> %zu of %zu, controls broken %zu of %zu, %zu promoted\n", k + 1, name,
               st->patch->n_flips, r.accepted, r.iterations, before, after, st->targets->n,
               broken, nc, newly);
        fflush(stdout);
        xp_search_result_free(&r);
        if (st->patch->n_flips &&
            (!(rc = xp_patch_write(st->patch, XP_PATCH_JSON, path, &err))) &&
            !(rc = xp_model_patch_apply(m, st->patch, &err)))
            st->applied = true;
    }
    /* the steps' flips as one patch */
    xp_patch **ps = calloc((size_t)n_files + 1, sizeof *ps);
    size_t n_ps = 0;
    for (int k = 0; k < n_files && ps; k++)
        if (steps[k].patch && steps[k].patch->n_flips)
            ps[n_ps++] = steps[k].patch;
    if (!rc && n_ps) {
        xp_patch *stacked;
        char path[4096];
        snprintf(path, sizeof path, "%s/stacked.json", a.out);
        if (!(rc = xp_patch_stack(&stacked, ps, n_ps, false, &err))) {
            cli_patch_stamp(stacked, "pipeline");
            snprintf(stacked->base_sha256, sizeof stacked->base_sha256, "%s", base_sha);
            rc = xp_patch_write(stacked, XP_PATCH_JSON, path, &err);
            cJSON *js = cJSON_AddObjectToObject(summary, "stacked");
            cJSON_AddStringToObject(js, "path", path);
            cJSON_AddNumberToObject(js, "flips", (double)stacked->n_flips);
            printf("stacked: %zu flips in %s\n", stacked->n_flips, path);
            xp_patch_free(stacked);
        }
    }
    if (!rc) {
        char path[4096], *text = cJSON_Print(summary);
        snprintf(path, sizeof path, "%s/pipeline.json", a.out);
        rc = text ? xp_write_file_atomic(path, text, strlen(text), &err)
                  : xp_err_set(&err, XP_ENOMEM, "out of memory");
        free(text);
    }
    for (int k = n_files; k-- > 0 && steps;) {
        if (steps[k].applied)
            xp_model_patch_revert(m, steps[k].patch, NULL);
        xp_patch_free(steps[k].patch);
        if (steps[k].t)
            xp_probe_tokens_free(steps[k].t, steps[k].targets->n);
        if (steps[k].p)
            xp_probe_tokens_free(steps[k].p, steps[k].promoted->n);
        xp_probe_set_free(steps[k].set);
        xp_probe_set_free(steps[k].targets);
        xp_probe_set_free(steps[k].promoted);
    }
    if (extra_t)
        xp_probe_tokens_free(extra_t, extra->n);
    xp_probe_set_free(extra);
    free(ps), free(ctl), free(promoted), free(steps);
    cJSON_Delete(summary);
    xp_model_close(m);
    return rc ? cli_fail(&err) : EXIT_OK;
}

const cli_command cli_pipeline = {"pipeline", "search several domains in order, promoting "
                                              "solved targets into later controls", usage, run};
