/* The experiment job (job.h): the anchors' experiments (SPEC §6-§8) on files. Loads the
 * model, the probes, the text or the patches the experiment needs, runs its measurement
 * (the experiments section of xorpatch.h) and writes the result as a table or as one
 * JSON object line. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/file.h"
#include "core/utf8.h"
#include "job/job_int.h"

static const char *const names[XP_N_EXPERIMENTS] = {"random-flips",    "layer-map",
                                                    "scale-vs-random", "stacking",
                                                    "null-baseline",   "proposal-efficiency"};

const char *xp_experiment_name(int e) { return e >= 0 && e < XP_N_EXPERIMENTS ? names[e] : "?"; }

int xp_experiment_from_name(const char *name)
{
    for (int e = 0; e < XP_N_EXPERIMENTS; e++)
        if (!strcmp(name, names[e]))
            return e;
    return -1;
}

/* What one experiment runs on. */
typedef struct exp_run {
    const xp_experiment_job *job;
    const xp_job_callbacks *cb;
    xp_model *m;
    const xp_probe_set *s;
    const xp_probe_tokens *pt;
    size_t n; /* probes */
    job_stage stage;
} exp_run;

/* ---- output ---- */

static cJSON *header_json(const xp_experiment_job *j)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "experiment", xp_experiment_name(j->experiment));
    xp_json_add_string(o, "model", j->model_path);
    if (j->experiment != XP_EXP_LAYER_MAP && j->experiment != XP_EXP_STACKING) /* no chance */
        cJSON_AddNumberToObject(o, "seed", (double)j->seed);
    if (j->experiment != XP_EXP_RANDOM_FLIPS)
        cJSON_AddStringToObject(o, "metric", xp_metric_name(j->metric));
    return o;
}

/* The JSON object as one line of out; freed. */
static void put_json(FILE *out, cJSON *j)
{
    char *text = j ? cJSON_PrintUnformatted(j) : NULL;
    if (text && out)
        fprintf(out, "%s\n", text);
    free(text);
    cJSON_Delete(j);
}

static void stats_json(cJSON *o, const xp_delta_stats *s)
{
    cJSON_AddNumberToObject(o, "mean_abs", s->mean_abs);
    cJSON_AddNumberToObject(o, "mean", s->mean);
    cJSON_AddNumberToObject(o, "max_abs", s->max_abs);
    cJSON_AddNumberToObject(o, "crossed", (double)s->crossed);
    cJSON_AddNumberToObject(o, "right", (double)s->right_after);
}

static const char *projs_text(unsigned projs, char *buf, size_t size)
{
    size_t len = 0;
    buf[0] = 0;
    for (int p = 0; p < XP_N_PROJ; p++)
        if (projs & (1u << p))
            len += (size_t)snprintf(buf + len, size - len, "%s%s", len ? "," : "", xp_proj_name(p));
    return buf;
}

static const char *strategy_name(int kind)
{
    return kind == XP_FLIP_ROW ? "row" : kind == XP_FLIP_BLOCK ? "block" : "bit";
}

static size_t right_at_base(const double *base, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        k += base[i] > 0;
    return k;
}

/* ---- the experiments ---- */

static int random_flips(exp_run *e, xp_err *err)
{
    const xp_experiment_job *j = e->job;
    char *text = NULL;
    size_t len, n = 0;
    int32_t *ids = NULL;
    const xp_tokenizer *tok = xp_model_tokenizer(e->m);
    int rc = xp_read_file(j->text, &text, &len, err);
    if (!rc)
        rc = tok ? xp_tokenize(tok, text, len, false, &ids, &n, err)
                 : xp_err_set(err, XP_EFORMAT, "%s has no tokenizer", j->model_path);
    free(text);
    xp_random_flips_opts o = {j->kinds,
                              j->n_kinds,
                              j->counts,
                              j->n_counts,
                              j->trials,
                              j->seed,
                              {j->ctx    ? j->ctx
                               : n < 512 ? n
                                         : 512,
                               j->max_chunks, job_stage_progress, &e->stage}};
    xp_random_flips r = {0};
    job_stage_start(&e->stage, j->n_kinds * j->n_counts * j->trials + 1);
    if (!rc && (rc = xp_exp_random_flips(e->m, ids, n, &o, &r, err)))
        xp_err_wrap(err, "random-flips on %s", j->text);
    free(ids);
    if (rc)
        return rc;
    FILE *out = j->out;
    if (j->json) {
        cJSON *o = header_json(j), *base = cJSON_AddObjectToObject(o, "base");
        cJSON_AddNumberToObject(base, "perplexity", r.base.perplexity);
        cJSON_AddNumberToObject(base, "tokens", (double)r.base.scored);
        cJSON *pts = cJSON_AddArrayToObject(o, "points");
        for (size_t i = 0; i < r.n; i++) {
            const xp_random_flips_point *p = &r.points[i];
            cJSON *pj = cJSON_CreateObject();
            cJSON_AddStringToObject(pj, "strategy", strategy_name(p->kind));
            cJSON_AddNumberToObject(pj, "count", (double)p->count);
            cJSON_AddNumberToObject(pj, "trial", (double)p->trial + 1);
            cJSON_AddNumberToObject(pj, "bits", (double)p->bits);
            cJSON_AddNumberToObject(pj, "perplexity", p->perplexity);
            cJSON_AddNumberToObject(pj, "ratio", p->perplexity / r.base.perplexity);
            cJSON_AddItemToArray(pts, pj);
        }
        put_json(out, o);
    } else if (out) {
        fprintf(out,
                "random-flips: perplexity of %s (%zu tokens scored, %zu chunks of %zu) "
                "after random MLP flips, seed %llu\n",
                j->text, r.base.scored, r.base.chunks, r.base.chunk, (unsigned long long)j->seed);
        fprintf(out, "base perplexity %.4f\n\n", r.base.perplexity);
        fprintf(out, "%-8s %10s %6s %14s %14s %10s\n", "strategy", "flips", "trial", "bits",
                "perplexity", "ratio");
        for (size_t i = 0; i < r.n; i++) {
            const xp_random_flips_point *p = &r.points[i];
            fprintf(out, "%-8s %10zu %6zu %14llu %14.4f %10.4f\n", strategy_name(p->kind), p->count,
                    p->trial + 1, (unsigned long long)p->bits, p->perplexity,
                    p->perplexity / r.base.perplexity);
        }
    }
    xp_random_flips_free(&r);
    return XP_OK;
}

static int layer_map(exp_run *e, xp_err *err)
{
    const xp_experiment_job *j = e->job;
    const xp_search_opts *so = &j->search;
    size_t n = e->n;
    uint32_t n_layer = xp_model_shape(e->m)->n_layer, all[n_layer + 1];
    for (uint32_t l = 0; l < n_layer; l++)
        all[l] = l;
    const uint32_t *layers = so->layers ? so->layers : all;
    size_t n_layers = so->layers ? so->n_layers : n_layer;
    unsigned projs =
        so->projs ? so->projs : 1u << XP_PROJ_GATE | 1u << XP_PROJ_UP | 1u << XP_PROJ_DOWN;
    xp_layer_map r;
    job_stage_start(&e->stage, n_layers);
    int rc = xp_exp_layer_map(e->m, e->pt, n, j->metric, layers, n_layers, projs,
                              job_stage_progress, &e->stage, &r, err);
    if (rc)
        return rc;
    char pj[64];
    projs_text(projs, pj, sizeof pj);
    size_t base_right = right_at_base(r.base, n);
    FILE *out = j->out;
    if (j->json) {
        cJSON *o = header_json(j);
        cJSON_AddNumberToObject(o, "probes", (double)n);
        cJSON_AddStringToObject(o, "proj", pj);
        cJSON_AddNumberToObject(o, "base_right", (double)base_right);
        cJSON *ls = cJSON_AddArrayToObject(o, "layers");
        for (size_t i = 0; i < r.n_layers; i++) {
            cJSON *l = cJSON_CreateObject();
            cJSON_AddNumberToObject(l, "layer", r.layers[i]);
            stats_json(l, &r.stats[i]);
            cJSON *d = cJSON_AddArrayToObject(l, "deltas");
            for (size_t p = 0; p < n; p++)
                cJSON_AddItemToArray(d, cJSON_CreateNumber(r.after[i * n + p] - r.base[p]));
            cJSON_AddItemToArray(ls, l);
        }
        put_json(out, o);
    } else if (out) {
        fprintf(out,
                "layer-map: %zu probes, %s gaps, every sign bit of %s XORed per layer "
                "(%zu right at base)\n\n",
                n, xp_metric_name(j->metric), pj, base_right);
        fprintf(out, "%5s %12s %12s %12s %8s %6s\n", "layer", "mean|dgap|", "mean dgap",
                "max|dgap|", "crossed", "right");
        for (size_t i = 0; i < r.n_layers; i++) {
            const xp_delta_stats *s = &r.stats[i];
            fprintf(out, "%5u %12.4f %12.4f %12.4f %8zu %6zu\n", r.layers[i], s->mean_abs, s->mean,
                    s->max_abs, s->crossed, s->right_after);
        }
    }
    xp_layer_map_free(&r);
    return XP_OK;
}

static cJSON *candidates_json(const xp_scale_vs_random *r, int k)
{
    cJSON *g = cJSON_CreateObject();
    cJSON_AddNumberToObject(g, "mean_impact", r->mean_impact[k]);
    cJSON_AddNumberToObject(g, "mean_scale", r->mean_scale[k]);
    cJSON *cs = cJSON_AddArrayToObject(g, "candidates");
    for (size_t s = 0; s < r->samples; s++) {
        const xp_candidate *c = &r->cand[k][s];
        cJSON *e = cJSON_CreateObject();
        cJSON_AddNumberToObject(e, "layer", c->layer);
        cJSON_AddStringToObject(e, "proj", xp_proj_name(c->proj));
        cJSON_AddStringToObject(e, "kind", c->kind == XP_FLIP_ROW ? "row" : "block");
        cJSON_AddNumberToObject(e, "index", (double)c->index);
        cJSON_AddNumberToObject(e, "scale", r->scale[k][s]);
        cJSON_AddNumberToObject(e, "impact", r->impact[k][s]);
        cJSON_AddItemToArray(cs, e);
    }
    return g;
}

static int scale_vs_random(exp_run *e, xp_err *err)
{
    const xp_experiment_job *j = e->job;
    xp_scale_vs_random r;
    job_stage_start(&e->stage, 2 * j->samples);
    int rc = xp_exp_scale_vs_random(e->m, e->pt, e->n, &j->search, j->samples, job_stage_progress,
                                    &e->stage, &r, err);
    if (rc)
        return rc;
    FILE *out = j->out;
    if (j->json) {
        cJSON *o = header_json(j);
        cJSON_AddNumberToObject(o, "probes", (double)e->n);
        cJSON_AddNumberToObject(o, "samples", (double)r.samples);
        if (isnan(r.ratio))
            cJSON_AddNullToObject(o, "ratio");
        else
            cJSON_AddNumberToObject(o, "ratio", r.ratio);
        cJSON_AddItemToObject(o, "scale", candidates_json(&r, 0));
        cJSON_AddItemToObject(o, "uniform", candidates_json(&r, 1));
        put_json(out, o);
    } else if (out) {
        fprintf(out,
                "scale-vs-random: %zu %s candidates per group, each flipped alone; %zu "
                "probes, %s gaps\n\n",
                r.samples, xp_granularity_name(j->search.granularity), e->n,
                xp_metric_name(j->metric));
        fprintf(out, "%-22s %12s %12s\n", "proposal", "mean|dgap|", "mean|scale|");
        fprintf(out, "%-22s %12.5f %12.6f\n", "scale-weighted", r.mean_impact[0], r.mean_scale[0]);
        fprintf(out, "%-22s %12.5f %12.6f\n", "uniform", r.mean_impact[1], r.mean_scale[1]);
        fprintf(out, "\nimpact ratio scale / uniform: %.3f\n", r.ratio);
    }
    xp_scale_vs_random_free(&r);
    return XP_OK;
}

static const char *patch_name(const xp_stacking *r, xp_patch *const *ps, size_t i)
{
    return i < r->n_patches ? (ps[i]->name ? ps[i]->name : "?") : "stacked";
}

static int stacking(exp_run *e, xp_err *err)
{
    const xp_experiment_job *j = e->job;
    xp_job_patches list = {0};
    int rc = XP_OK;
    for (size_t i = 0; i < j->n_patches && !rc; i++)
        rc = xp_job_patches_add(&list, j->patches[i], e->cb, err);
    xp_stacking r = {0};
    if (!rc)
        rc = xp_exp_stacking(e->m, e->pt, e->n, j->metric, list.p, list.n, j->force, &r, err);
    if (rc) {
        xp_job_patches_free(&list);
        return rc;
    }
    size_t base_right = right_at_base(r.base, e->n);
    FILE *out = j->out;
    if (j->json) {
        cJSON *o = header_json(j);
        cJSON_AddNumberToObject(o, "probes", (double)e->n);
        cJSON_AddNumberToObject(o, "base_right", (double)base_right);
        cJSON_AddNumberToObject(o, "bits_in", (double)r.bits_in);
        cJSON_AddNumberToObject(o, "bits_out", (double)r.bits_out);
        cJSON_AddNumberToObject(o, "interaction", r.interaction);
        cJSON *ps = cJSON_AddArrayToObject(o, "patches");
        for (size_t i = 0; i <= r.n_patches; i++) {
            cJSON *p = cJSON_CreateObject();
            cJSON_AddStringToObject(p, "name", patch_name(&r, list.p, i));
            stats_json(p, &r.stats[i]);
            cJSON_AddItemToArray(ps, p);
        }
        put_json(out, o);
    } else if (out) {
        fprintf(out,
                "stacking: %zu patches alone and stacked by XOR; %zu probes, %s gaps (%zu "
                "right at base)\n\n",
                r.n_patches, e->n, xp_metric_name(j->metric), base_right);
        fprintf(out, "%-24s %12s %12s %12s %8s %6s\n", "patch", "mean dgap", "mean|dgap|",
                "max|dgap|", "crossed", "right");
        for (size_t i = 0; i <= r.n_patches; i++) {
            const xp_delta_stats *s = &r.stats[i];
            char name[25];
            snprintf(name, sizeof name, "%s", patch_name(&r, list.p, i));
            fprintf(out, "%-24s %12.4f %12.4f %12.4f %8zu %6zu\n", name, s->mean, s->mean_abs,
                    s->max_abs, s->crossed, s->right_after);
        }
        fprintf(out,
                "\nbits in %llu, out %llu (%llu cancelled); interaction mean|dstack - sum "
                "dalone| %.4f\n",
                (unsigned long long)r.bits_in, (unsigned long long)r.bits_out,
                (unsigned long long)(r.bits_in - r.bits_out), r.interaction);
    }
    xp_stacking_free(&r);
    xp_job_patches_free(&list);
    return XP_OK;
}

/* One progress over both searches: the second one's iterations count from 1 again. */
typedef struct nb_progress {
    exp_run *e;
    size_t total, offset, last;
} nb_progress;

static void nb_iter(void *ctx, const xp_search_iter *it)
{
    nb_progress *p = ctx;
    if (it->iter <= p->last)
        p->offset += p->last;
    p->last = it->iter;
    const xp_job_callbacks *cb = p->e->cb;
    if (cb && cb->on_iter)
        cb->on_iter(cb->ctx, it);
    job_stage_progress(&p->e->stage, p->offset + it->iter, p->total);
}

static cJSON *run_json(const xp_null_baseline *r, int k)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "iterations", (double)r->run[k].iterations);
    cJSON_AddNumberToObject(o, "accepted", (double)r->run[k].accepted);
    cJSON_AddNumberToObject(o, "rate", r->rate[k]);
    cJSON_AddNumberToObject(o, "lo", r->lo[k]);
    cJSON_AddNumberToObject(o, "hi", r->hi[k]);
    cJSON_AddNumberToObject(o, "flips", (double)r->run[k].patch->n_flips);
    return o;
}

/* The set's tokenised probes by role, appended to t (targets) and c (controls):
 * shallow copies, the tokens stay e->pt's. */
static void split_roles(const exp_run *e, xp_probe_tokens *t, size_t *nt, xp_probe_tokens *c,
                        size_t *nc)
{
    for (size_t i = 0; i < e->s->n; i++)
        if (e->s->probes[i].role == XP_ROLE_CONTROL)
            c[(*nc)++] = e->pt[i];
        else
            t[(*nt)++] = e->pt[i];
}

static int null_baseline(exp_run *e, xp_err *err)
{
    const xp_experiment_job *j = e->job;
    const xp_probe_set *s = e->s;
    xp_model *copy;
    int rc = xp_model_open(&copy, j->model_path, err);
    if (rc)
        return rc;
    xp_probe_tokens *t = calloc(s->n + 1, sizeof *t), *c = calloc(s->n + 1, sizeof *c);
    size_t nt = 0, nc = 0;
    if (!t || !c)
        rc = xp_err_set(err, XP_ENOMEM, "out of memory");
    if (!rc)
        split_roles(e, t, &nt, c, &nc);
    xp_search_opts o = j->search;
    nb_progress bar = {.e = e, .total = 2 * o.iterations};
    o.on_iter = nb_iter;
    o.ctx = &bar;
    xp_null_baseline r = {0};
    if (!rc) {
        job_note(e->cb,
                 "null-baseline: %zu targets, %zu controls, %zu iterations on the "
                 "model, then on the copy with random MLP signs",
                 nt, nc, o.iterations);
        job_stage_start(&e->stage, bar.total);
        rc = xp_exp_null_baseline(e->m, copy, t, nt, c, nc, &o, j->seed + 1, &r, err);
    }
    free(t), free(c);
    xp_model_close(copy);
    if (rc)
        return rc;
    FILE *out = j->out;
    if (j->json) {
        cJSON *oj = header_json(j);
        const char *settings = r.run[0].patch->search;
        cJSON *sj = settings ? cJSON_Parse(settings) : NULL;
        cJSON_AddItemToObject(oj, "settings",
                              sj ? cJSON_DetachItemFromObject(sj, "settings") : cJSON_CreateNull());
        cJSON_Delete(sj);
        cJSON_AddNumberToObject(oj, "targets", (double)nt);
        cJSON_AddNumberToObject(oj, "controls", (double)nc);
        cJSON_AddItemToObject(oj, "trained", run_json(&r, 0));
        cJSON_AddItemToObject(oj, "randomised", run_json(&r, 1));
        put_json(out, oj);
    } else if (out) {
        fprintf(out,
                "null-baseline: the same search (%s, %s fitness, %s flips, seed %llu) on "
                "the model and on a copy with every MLP sign bit flipped with probability "
                "1/2\n\n",
                xp_metric_name(o.metric), xp_fitness_name(o.fitness),
                xp_granularity_name(o.granularity), (unsigned long long)o.seed);
        fprintf(out, "%-12s %10s %10s %8s %20s %6s\n", "model", "accepted", "iterations", "rate",
                "Wilson 95%", "flips");
        for (int k = 0; k < 2; k++)
            fprintf(out, "%-12s %10zu %10zu %7.1f%% %9s%5.1f%%, %5.1f%%] %6zu\n",
                    k ? "randomised" : "trained", r.run[k].accepted, r.run[k].iterations,
                    100 * r.rate[k], "[", 100 * r.lo[k], 100 * r.hi[k], r.run[k].patch->n_flips);
    }
    xp_null_baseline_free(&r);
    return XP_OK;
}

/* ---- proposal efficiency ---- */

static cJSON *proposal_run_json(const xp_proposal_run *r)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "proposal", xp_proposal_name(r->proposal));
    cJSON_AddNumberToObject(o, "iterations", (double)r->res.iterations);
    cJSON_AddNumberToObject(o, "accepted", (double)r->res.accepted);
    cJSON_AddNumberToObject(o, "final", r->res.best);
    cJSON_AddNumberToObject(o, "seconds", r->n ? r->seconds[r->n - 1] : 0);
    if (r->reached_at) {
        cJSON_AddNumberToObject(o, "reached_at", (double)r->reached_at);
        cJSON_AddNumberToObject(o, "probes_to_reach", (double)r->probes[r->reached_at - 1]);
        cJSON_AddNumberToObject(o, "seconds_to_reach", r->seconds[r->reached_at - 1]);
    } else {
        cJSON_AddNullToObject(o, "reached_at");
    }
    if (isfinite(r->spearman)) {
        cJSON_AddNumberToObject(o, "spearman", r->spearman);
        cJSON_AddNumberToObject(o, "ranked", (double)r->n_ranked);
    }
    if (r->has_heldout) {
        cJSON *h = cJSON_AddObjectToObject(o, "heldout");
        cJSON_AddNumberToObject(h, "n", (double)r->heldout.n);
        cJSON_AddNumberToObject(h, "fixed", (double)r->heldout.fixed);
        cJSON_AddNumberToObject(h, "broke", (double)r->heldout.broke);
        cJSON_AddNumberToObject(h, "mcnemar_p", r->heldout.mcnemar_p);
    }
    return o;
}

static void number_json(cJSON *o, const char *key, double v)
{
    if (isfinite(v))
        cJSON_AddNumberToObject(o, key, v);
    else
        cJSON_AddNullToObject(o, key);
}

static void proposal_efficiency_write(const xp_experiment_job *j, const xp_search_opts *o,
                                      size_t nt, size_t nc, const xp_proposal_efficiency *r)
{
    FILE *out = j->out;
    if (j->json) {
        cJSON *oj = header_json(j);
        const char *settings = r->run[0].res.patch->search;
        cJSON *sj = settings ? cJSON_Parse(settings) : NULL;
        cJSON_AddItemToObject(oj, "settings",
                              sj ? cJSON_DetachItemFromObject(sj, "settings") : cJSON_CreateNull());
        cJSON_Delete(sj);
        cJSON_AddNumberToObject(oj, "targets", (double)nt);
        cJSON_AddNumberToObject(oj, "controls", (double)nc);
        cJSON_AddNumberToObject(oj, "start", r->start);
        cJSON_AddNumberToObject(oj, "target", r->target);
        cJSON_AddBoolToObject(oj, "target_given", r->target_given);
        cJSON *runs = cJSON_AddArrayToObject(oj, "runs");
        for (int k = 0; k < 2; k++)
            cJSON_AddItemToArray(runs, proposal_run_json(&r->run[k]));
        number_json(oj, "ratio_iterations", r->ratio_iterations);
        number_json(oj, "ratio_probes", r->ratio_probes);
        number_json(oj, "ratio_seconds", r->ratio_seconds);
        cJSON_AddBoolToObject(oj, "ratio_lower_bound", r->lower_bound);
        put_json(out, oj);
        return;
    }
    if (!out)
        return;
    fprintf(out,
            "proposal-efficiency: the same search (%s, %s fitness, %s flips, seed %llu, %zu "
            "targets, %zu controls) with gradient-ranked and with %s proposals, for at most "
            "%zu and %zu iterations\nfitness at the start %.6g; to reach: %.6g (%s)\n\n",
            xp_metric_name(o->metric), xp_fitness_name(o->fitness),
            xp_granularity_name(o->granularity), (unsigned long long)o->seed, nt, nc,
            xp_proposal_name(r->run[1].proposal), o->iterations,
            j->baseline_iterations ? j->baseline_iterations : o->iterations, r->start, r->target,
            r->target_given ? "given" : "the smaller final fitness");
    fprintf(out, "%-9s %6s %6s %11s %9s %10s %9s %8s %8s", "proposal", "iters", "kept", "final",
            "reached", "probes", "seconds", "total s", "rho");
    if (r->run[0].has_heldout)
        fprintf(out, " %14s %9s", "held-out f/b", "McNemar p");
    fprintf(out, "\n");
    for (int k = 0; k < 2; k++) {
        const xp_proposal_run *x = &r->run[k];
        char reached[24] = "-", probes[24] = "-", secs[24] = "-", rho[24] = "-";
        if (x->reached_at) {
            snprintf(reached, sizeof reached, "%zu", x->reached_at);
            snprintf(probes, sizeof probes, "%zu", x->probes[x->reached_at - 1]);
            snprintf(secs, sizeof secs, "%.2f", x->seconds[x->reached_at - 1]);
        }
        if (isfinite(x->spearman))
            snprintf(rho, sizeof rho, "%.3f", x->spearman);
        fprintf(out, "%-9s %6zu %6zu %11.6g %9s %10s %9s %8.2f %8s", xp_proposal_name(x->proposal),
                x->res.iterations, x->res.accepted, x->res.best, reached, probes, secs,
                x->n ? x->seconds[x->n - 1] : 0, rho);
        if (x->has_heldout) {
            char fb[32];
            snprintf(fb, sizeof fb, "%zu/%zu", x->heldout.fixed, x->heldout.broke);
            fprintf(out, " %14s %9.3g", fb, x->heldout.mcnemar_p);
        }
        fprintf(out, "\n");
    }
    const char *gt = r->lower_bound ? "> " : "";
    if (isfinite(r->ratio_iterations))
        fprintf(out,
                "\n%s / gradient to reach the target: %s%.1fx the iterations, %s%.1fx the "
                "probe measurements, %s%.1fx the seconds%s\n",
                xp_proposal_name(r->run[1].proposal), gt, r->ratio_iterations, gt, r->ratio_probes,
                gt, r->ratio_seconds,
                r->lower_bound ? " (it never reached it: all it ran, over the gradient's)" : "");
    else
        fprintf(out, "\nthe gradient did not reach a target above the start: no ratio\n");
    fprintf(out, "(reached: the first iteration whose best fitness is at least the target; "
                 "rho: Spearman of the gradient's estimates and the measured changes, over "
                 "the iterations measured in full)\n");
}

static int proposal_efficiency(exp_run *e, xp_err *err)
{
    const xp_experiment_job *j = e->job;
    const xp_probe_set *s = e->s;
    xp_probe_set *extra = NULL, *held = NULL;
    xp_probe_tokens *xt = NULL, *ht = NULL;
    int rc = XP_OK;
    if (j->n_controls && !(rc = job_probe_files_load(j->controls, j->n_controls, &extra, err)))
        rc = xp_probe_tokenize(extra, xp_model_tokenizer(e->m), &xt, err);
    if (!rc && j->heldout && !(rc = xp_probe_set_load(&held, j->heldout, err)))
        rc = xp_probe_tokenize(held, xp_model_tokenizer(e->m), &ht, err);
    size_t n_extra = extra ? extra->n : 0, nt = 0, nc = 0;
    xp_probe_tokens *t = calloc(s->n + 1, sizeof *t), *c = calloc(s->n + n_extra + 1, sizeof *c);
    if (!rc && (!t || !c))
        rc = xp_err_set(err, XP_ENOMEM, "out of memory");
    if (!rc)
        split_roles(e, t, &nt, c, &nc);
    for (size_t i = 0; i < n_extra && !rc; i++)
        c[nc++] = xt[i];
    xp_search_opts o = j->search;
    int baseline = o.proposal == XP_PROPOSE_GRADIENT ? XP_PROPOSE_SCALE : o.proposal;
    size_t b_iters = j->baseline_iterations ? j->baseline_iterations : o.iterations;
    nb_progress bar = {.e = e, .total = o.iterations + b_iters};
    o.on_iter = nb_iter;
    o.ctx = &bar;
    xp_proposal_efficiency r = {0};
    if (!rc) {
        job_note(e->cb,
                 "proposal-efficiency: %zu targets, %zu controls, %zu iterations with "
                 "gradient-ranked proposals, then %zu with %s ones",
                 nt, nc, o.iterations, b_iters, xp_proposal_name(baseline));
        job_stage_start(&e->stage, bar.total);
        rc = xp_exp_proposal_efficiency(e->m, t, nt, c, nc, &o, baseline, b_iters,
                                        j->has_target_fitness ? &j->target_fitness : NULL, held, ht,
                                        &r, err);
    }
    if (!rc)
        proposal_efficiency_write(j, &o, nt, nc, &r);
    xp_proposal_efficiency_free(&r);
    free(t), free(c);
    if (xt)
        xp_probe_tokens_free(xt, extra->n);
    if (ht)
        xp_probe_tokens_free(ht, held->n);
    xp_probe_set_free(extra);
    xp_probe_set_free(held);
    return rc;
}

int xp_experiment_job_run(const xp_experiment_job *job, const xp_job_callbacks *cb, xp_err *err)
{
    int x = job->experiment;
    if (x < 0 || x >= XP_N_EXPERIMENTS)
        return xp_err_set(err, XP_EINVAL, "unknown experiment %d", x);
    if (!job->model_path || (x == XP_EXP_RANDOM_FLIPS ? !job->text : !job->probes))
        return xp_err_set(err, XP_EINVAL, "%s needs a model file and %s", names[x],
                          x == XP_EXP_RANDOM_FLIPS ? "a text" : "probes");
    exp_run e = {.job = job, .cb = cb, .stage = {cb, names[x]}};
    xp_probe_set *s = NULL;
    xp_probe_tokens *pt = NULL;
    int rc = job_model_take(job->model, job->model_path, job->kernel, &e.m, err);
    if (!rc && job->probes && !(rc = xp_probe_set_load(&s, job->probes, err)))
        rc = xp_probe_tokenize(s, xp_model_tokenizer(e.m), &pt, err);
    e.s = s;
    e.pt = pt;
    e.n = s ? s->n : 0;
    if (!rc) {
        static int (*const run[XP_N_EXPERIMENTS])(exp_run *, xp_err *) = {
            random_flips, layer_map, scale_vs_random, stacking, null_baseline, proposal_efficiency};
        rc = run[x](&e, err);
    }
    if (pt)
        xp_probe_tokens_free(pt, s->n);
    xp_probe_set_free(s);
    job_model_release(job->model, e.m);
    return rc;
}
