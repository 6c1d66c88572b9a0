/* The search job (job.h): loads the probes, audits the targets (dead ones are refused
 * unless allowed), runs the greedy search with a JSONL line per iteration and the patch
 * checkpointed as it goes (a killed search resumes from it), writes the patch with its
 * provenance, then evaluates it on the targets, the controls, the validation probes (a
 * file, or a seeded share of the targets taken out of them) and the held-out probes and
 * reports it as text and as an HTML page. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/file.h"
#include "job/job_int.h"
#include "job/search_log.h"
#include "job/search_report.h"

/* ---- probes ---- */

typedef struct probes {
    xp_probe_set *file, *targets, *promoted, *controls, *heldout, *validation;
    xp_probe_tokens *t, *p, *c, *h, *v;
    xp_probe_tokens *ctl; /* promoted then controls, shallow copies */
    size_t n_ctl;
    const char **target_names, **control_names, **validation_names;
} probes;

static void probes_free(probes *p)
{
    xp_probe_set *sets[] = {p->file,     p->targets, p->promoted,
                            p->controls, p->heldout, p->validation};
    xp_probe_tokens *toks[] = {NULL, p->t, p->p, p->c, p->h, p->v};
    for (int i = 0; i < 6; i++) {
        if (toks[i])
            xp_probe_tokens_free(toks[i], sets[i]->n);
        xp_probe_set_free(sets[i]);
    }
    free(p->ctl);
    free(p->target_names);
    free(p->control_names);
    free(p->validation_names);
}

/* The validation probes: a file, or a share of the targets drawn with the seed (and
 * taken out of them). */
static int load_validation(const xp_search_job *job, probes *p, xp_err *err)
{
    if (job->validation && job->validation_split > 0)
        return xp_err_set(err, XP_EINVAL,
                          "validation comes from a file or from a split of the targets, "
                          "not both");
    if (job->validation)
        return xp_probe_set_load(&p->validation, job->validation, err);
    if (!(job->validation_split > 0))
        return XP_OK;
    xp_probe_split how = {.ratio = job->validation_split, .seed = job->opts.seed};
    xp_probe_set *train;
    int rc = xp_probe_set_split(p->targets, &how, &train, &p->validation, err);
    if (rc)
        return rc;
    size_t n = p->targets->n;
    xp_probe_set_free(p->targets);
    p->targets = train;
    if (!p->validation->n || !train->n)
        return xp_err_set(err, XP_EINVAL,
                          "a validation split of %g of %zu targets leaves %zu for validation "
                          "and %zu to search: both need at least one",
                          job->validation_split, n, p->validation->n, train->n);
    return XP_OK;
}

static int tokenize(xp_model *m, xp_probe_set *s, int token_rule, xp_probe_tokens **pt, xp_err *err)
{
    int rc = s ? xp_probe_tokenize(s, xp_model_tokenizer(m), pt, err) : XP_OK;
    return rc || !s ? rc
                    : xp_probe_tokens_token_rule(s, xp_model_tokenizer(m), token_rule, *pt, err);
}

static int load_probes(xp_model *m, const xp_search_job *job, probes *p, xp_err *err)
{
    int rc = xp_probe_set_load(&p->file, job->probes, err);
    if (!rc)
        rc = xp_probe_set_select_role(p->file, XP_ROLE_TARGET, &p->targets, err);
    if (!rc)
        rc = xp_probe_set_select_role(p->file, XP_ROLE_CONTROL, &p->promoted, err);
    if (!rc)
        rc = job_probe_files_load(job->controls, job->n_controls, &p->controls, err);
    if (!rc && job->heldout)
        rc = xp_probe_set_load(&p->heldout, job->heldout, err);
    if (!rc)
        rc = load_validation(job, p, err);
    xp_probe_set *check[] = {p->file, p->controls, p->heldout, p->validation};
    for (int i = 0; i < 4 && !rc; i++)
        if (check[i])
            rc = xp_probe_set_check_metric(check[i], job->opts.metric, err);
    int tr = job->opts.token_rule;
    if (!rc && !(rc = tokenize(m, p->targets, tr, &p->t, err)) &&
        !(rc = tokenize(m, p->promoted, tr, &p->p, err)) &&
        !(rc = tokenize(m, p->controls, tr, &p->c, err)) &&
        !(rc = tokenize(m, p->heldout, tr, &p->h, err)))
        rc = tokenize(m, p->validation, tr, &p->v, err);
    if (rc)
        return rc;
    size_t np = p->promoted->n, nc = p->controls ? p->controls->n : 0;
    p->n_ctl = np + nc;
    p->ctl = calloc(p->n_ctl + 1, sizeof *p->ctl);
    p->target_names = calloc(p->targets->n + 1, sizeof *p->target_names);
    p->control_names = calloc(p->n_ctl + 1, sizeof *p->control_names);
    size_t nv = p->validation ? p->validation->n : 0;
    p->validation_names = calloc(nv + 1, sizeof *p->validation_names);
    if (!p->ctl || !p->target_names || !p->control_names || !p->validation_names)
        return xp_err_set(err, XP_ENOMEM, "out of memory");
    for (size_t i = 0; i < nv; i++)
        p->validation_names[i] = p->validation->probes[i].name;
    for (size_t i = 0; i < p->targets->n; i++)
        p->target_names[i] = p->targets->probes[i].name;
    for (size_t i = 0; i < p->n_ctl; i++) {
        p->ctl[i] = i < np ? p->p[i] : p->c[i - np];
        p->control_names[i] =
            i < np ? p->promoted->probes[i].name : p->controls->probes[i - np].name;
    }
    if (p->targets->n == 0)
        return xp_err_set(err, XP_EINVAL, "%s: no target probes", job->probes);
    return XP_OK;
}

/* The audit before the search: dead targets refused unless allowed. */
static int audit_targets(xp_model *m, const probes *p, xp_metric metric, bool allow_dead,
                         const xp_job_callbacks *cb, xp_err *err)
{
    xp_audit a;
    int rc = xp_probe_audit(m, p->targets, p->t, metric, false, &a, err);
    if (rc)
        return rc;
    job_note(cb,
             "audit: %zu targets, %zu dead under %s (%zu under the single-token rule), "
             "%zu already solved, %zu where the model's next token is not a measured one",
             a.n, a.dead, xp_metric_name(metric), a.dead_token_gap, a.solved, a.not_emitted);
    if (a.dead && !allow_dead) {
        char names[512] = "";
        size_t len = 0, shown = 0;
        for (size_t i = 0; i < a.n && len < sizeof names - 64; i++)
            if (a.probes[i].dead && shown++ < 8)
                len += (size_t)snprintf(names + len, sizeof names - len, "%s%s", len ? ", " : "",
                                        p->targets->probes[i].name);
        rc = xp_err_set(err, XP_EINVAL,
                        "%zu dead target probe%s (%s%s): their answers cannot "
                        "be told apart under %s, so no flip can move them; fix or drop them, "
                        "or pass --allow-dead",
                        a.dead, a.dead == 1 ? "" : "s", names, a.dead > shown ? ", ..." : "",
                        xp_metric_name(metric));
    }
    xp_audit_free(&a);
    return rc;
}

/* The probe files the patch records (the targets, every control file, the held-out
 * ones, the validation ones), with their SHA-256 ("" when unreadable); files holds
 * 3 + n_controls. */
static size_t probe_files(const xp_search_job *job, xp_search_file *files)
{
    size_t n = 0;
    for (size_t i = 0; i < job->n_controls + 3; i++) {
        const char *path = i == 0                     ? job->probes
                           : i <= job->n_controls     ? job->controls[i - 1]
                           : i == job->n_controls + 1 ? job->heldout
                                                      : job->validation;
        const char *role = i == 0                     ? "targets"
                           : i <= job->n_controls     ? "controls"
                           : i == job->n_controls + 1 ? "heldout"
                                                      : "validation";
        if (path) {
            files[n] = (xp_search_file){role, path, ""};
            xp_sha256_file(path, files[n++].sha256, NULL);
        }
    }
    return n;
}

/* ---- the run ---- */

static char *with_suffix(const char *path, const char *suffix)
{
    size_t n = strlen(path), k = strlen(suffix);
    char *s = malloc(n + k + 1);
    if (s)
        memcpy(s, path, n), memcpy(s + n, suffix, k + 1);
    return s;
}

static int evaluate(xp_model *m, xp_probe_set *s, const xp_probe_tokens *pt, xp_patch *patch,
                    const xp_search_opts *o, bool generate, xp_eval *out, xp_err *err)
{
    memset(out, 0, sizeof *out);
    if (!s || s->n == 0)
        return XP_OK;
    xp_eval_opts eo = {.metric = o->metric, .generate = generate};
    return xp_eval_run(m, s, pt, &patch, 1, &eo, out, err);
}

/* The text report into the caller's file and, when asked, into report_text. */
static int report(const xp_search_job *job, const search_report *sr, xp_search_job_result *out,
                  xp_err *err)
{
    if (job->report)
        search_report_print(job->report, sr);
    if (!job->report_text)
        return XP_OK;
    size_t len;
    FILE *f = open_memstream(&out->report_text, &len);
    if (!f)
        return xp_err_set(err, XP_ENOMEM, "out of memory for the report");
    search_report_print(f, sr);
    return fclose(f) ? xp_err_set(err, XP_ENOMEM, "out of memory for the report") : XP_OK;
}

void xp_search_job_result_free(xp_search_job_result *r)
{
    xp_search_result_free(&r->search);
    xp_random_baseline_free(&r->baseline);
    free(r->report_text);
    memset(r, 0, sizeof *r);
}

int xp_search_job_run(const xp_search_job *job, const xp_job_callbacks *cb,
                      xp_search_job_result *out, xp_err *err)
{
    memset(out, 0, sizeof *out);
    xp_search_result *res = &out->search;
    xp_search_opts o = job->opts;
    probes p = {0};
    search_log log = {0};
    job_search js = {.stage = {cb, "search"}, .total = o.iterations, .log = &log};
    xp_patch *resume = NULL;
    xp_eval ev[5] = {{0}};
    xp_model *m = NULL;
    char *log_path = NULL, *html = NULL, base_sha[65] = "", stem[256];
    xp_search_file *files = calloc(job->n_controls + 3, sizeof *files);
    xp_search_provenance pv;
    bool writes = job_writes(&o); /* the other ranks of a team only help the search */
    int rc = !job->model_path || !job->probes || !job->out
                 ? xp_err_set(err, XP_EINVAL,
                              "a search job needs a model file, probes and an "
                              "output path")
             : !files ? xp_err_set(err, XP_ENOMEM, "out of memory")
                      : job_model_take(job->model, job->model_path, job->kernel, &m, err);
    if (!rc) {
        log_path = job->log ? strdup(job->log) : with_suffix(job->out, ".log.jsonl");
        html = job->html ? strdup(job->html) : with_suffix(job->out, ".html");
        if (!log_path || !html)
            rc = xp_err_set(err, XP_ENOMEM, "out of memory");
    }
    if (!rc)
        rc = load_probes(m, job, &p, err);
    if (!rc)
        rc = audit_targets(m, &p, o.metric, job->allow_dead, cb, err);
    if (!rc && job->resume && writes) /* rank 0 sends the others where it resumes */
        rc = xp_patch_read(&resume, job->resume, err);
    if (!rc)
        rc = xp_job_base_sha256(job->model_path, xp_model_gguf(m), base_sha, err);
    if (!rc && resume && resume->base_sha256[0] && strcmp(resume->base_sha256, base_sha))
        rc = xp_err_set(err, XP_EINVAL,
                        "%s was made for another base model (%.12s..., this one "
                        "is %.12s...): a search cannot continue from it",
                        job->resume, resume->base_sha256, base_sha);
    /* the outputs are regular files (or none yet) before the search spends its time */
    if (!rc && writes && !(rc = xp_check_output_path(job->out, err)))
        rc = xp_check_output_path(html, err);
    if (!rc && writes)
        rc = search_log_open(&log, log_path, resume != NULL, err);
    if (!rc) {
        const char *slash = strrchr(job->out, '/');
        snprintf(stem, sizeof stem, "%s", slash ? slash + 1 : job->out);
        char *dot = strrchr(stem, '.');
        if (dot && dot != stem)
            *dot = 0;
        pv = (xp_search_provenance){
            .files = files, .n_files = probe_files(job, files), .result = true};
        js.out = (job_patch_out){job->out, xp_job_patch_format(job->out), NULL, xp_model_gguf(m)};
        o.name = job->name ? job->name : stem;
        o.base_sha256 = base_sha;
        o.provenance = &pv;
        const xp_probe_set *rule = p.controls ? p.controls : p.promoted;
        o.control_max_tokens = rule->max_tokens; /* the controls' generation rule */
        o.control_stop_newline = rule->stop_newline;
        job_search_hook(&js, &o);
        if (p.validation) {
            o.validation = p.v;
            o.n_validation = p.validation->n;
            if (job->validation)
                job_note(cb, "validation: %zu probes of %s, rule %s", p.validation->n,
                         job->validation, xp_validation_rule_name(o.validation_rule));
            else
                job_note(cb,
                         "validation: %zu of the %zu targets (a share of %g drawn with seed "
                         "%llu), not searched; rule %s",
                         p.validation->n, p.validation->n + p.targets->n, job->validation_split,
                         (unsigned long long)o.seed, xp_validation_rule_name(o.validation_rule));
        }
        log.validation = p.validation != NULL;
        log.early_stop = log.validation && o.validation_rule == XP_VALIDATION_EARLY_STOP;
        log.detail = job->log_flip_detail;
        log.names[0] = p.target_names;
        log.names[1] = p.control_names;
        log.names[2] = p.validation_names;
        job_note(cb,
                 "search: %zu targets, %zu controls, %s, fitness %s, %s flips, %zu "
                 "iterations%s",
                 p.targets->n, p.n_ctl, xp_metric_name(o.metric), xp_fitness_name(o.fitness),
                 xp_granularity_name(o.granularity), o.iterations,
                 o.naive ? ", naive measurement" : "");
        job_stage_start(&js.stage, js.total);
        rc = xp_search_run(m, p.t, p.targets->n, p.ctl, p.n_ctl, &o, resume, res, err);
        if (!rc && resume && res->resumed)
            job_note(cb, "resumed %s exactly after its iteration %zu", job->resume,
                     res->resumed_at);
        else if (!rc && resume)
            job_warn(cb,
                     "%s is not a checkpoint of this search (base, settings and probes): "
                     "its %zu flips were a starting point, iterations counted from 1",
                     job->resume, resume->n_flips);
    }
    int lrc = log.path ? search_log_close(&log, !rc, rc ? NULL : err) : XP_OK;
    rc = rc ? rc : lrc;
    if (!rc && res->resumed_at) /* the earlier part of the curve, from the log */
        search_log_reread(&log, res->resumed_at);
    out->written = !rc && writes;
    /* the patch without flips is the search's record (settings, state, provenance), which
     * a resume and `show` read; apply and revert refuse it */
    if (!rc && !res->patch->n_flips)
        job_warn(cb,
                 "no flip was kept: %s is a patch without flips (the search's record; "
                 "apply refuses it)",
                 job->out);
    /* evaluated apart: targets, the probe file's promoted controls, controls, validation,
     * held-out */
    static const char *const labels[5] = {"targets", "promoted controls", "controls", "validation",
                                          "held-out"};
    xp_probe_set *sets[5] = {p.targets, p.promoted, p.controls, p.validation, p.heldout};
    const xp_probe_tokens *toks[5] = {p.t, p.p, p.c, p.v, p.h};
    bool evaluated[5] = {false};
    for (int i = 0; i < 5 && !rc && writes && res->patch->n_flips; i++)
        if (sets[i] && sets[i]->n) {
            job_note(cb, "evaluating %s ...", labels[i]);
            rc = evaluate(m, sets[i], toks[i], res->patch, &o, !job->no_eval, &ev[i], err);
            evaluated[i] = !rc;
        }
    if (!rc && evaluated[4] && job->random_baseline) {
        job_note(cb, "random baseline: %zu random patches like it on the held-out set ...",
                 job->random_baseline);
        xp_eval_opts eo = {.metric = o.metric, .generate = !job->no_eval};
        rc = xp_random_baseline_run(m, p.heldout, p.h, res->patch, &eo, job->random_baseline,
                                    o.seed, &out->baseline, err);
        if (!rc)
            job_note(cb,
                     "random baseline: held-out fixed - broke %ld; %zu of %zu random patches "
                     "did as well or better: permutation p = %.3g (McNemar p = %.3g)",
                     out->baseline.observed, out->baseline.at_least, out->baseline.n,
                     out->baseline.p, ev[4].overall.mcnemar_p);
    }
    if (!rc && writes) {
        search_report sr = {.model = job->model_path,
                            .patch_path = job->out,
                            .opts = &o,
                            .res = res,
                            .iters = log.iters,
                            .n_iters = log.n,
                            .target_names = p.target_names,
                            .control_names = p.control_names,
                            .validation_names = p.validation_names,
                            .flip_detail = job->log_flip_detail};
        for (int i = 0; i < 5; i++)
            sr.sets[i] = (search_report_set){labels[i], sets[i], evaluated[i] ? &ev[i] : NULL};
        if (!(rc = report(job, &sr, out, err)))
            rc = search_report_html(html, &sr, err);
        if (!rc)
            job_note(cb, "wrote %s, %s and %s", job->out, log_path, html);
    }
    for (int i = 0; i < 5; i++)
        xp_eval_free(&ev[i]);
    search_log_free(&log);
    free(log_path);
    free(html);
    free(files);
    xp_patch_free(resume);
    probes_free(&p);
    job_model_release(job->model, m);
    if (rc)
        xp_search_job_result_free(out);
    return rc;
}
