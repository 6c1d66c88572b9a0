/* The greedy search (SPEC §4): measure the baseline, then per iteration propose an
 * untried flip, apply it, screen it on the worst targets, measure every probe and keep
 * it if the fitness beats the best, else flip it back. Flips touch only the chosen
 * layers, so each measurement reruns from the flip's layer. The state a run needs to go
 * on (iterations done, the recent accepts for auto-stop, focused's solved targets)
 * travels in the patch's "search" JSON, and the proposals are replayed from the seed, so
 * a search resumed from its checkpoint ends with the patch an uninterrupted one makes
 * (gradient proposals, which depend on the accepts, go on from the kept flips with a
 * fresh ranking instead).
 * Validation probes, when given, are measured with the others at every full measurement
 * (never screened, never in the fitness): under the keep rule a flip that lowers their
 * objective is refused; under early-stop the final patch is the prefix of kept flips at
 * the best validation point, and the acceptance order travels in the state. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/utf8.h"
#include "search/search_run.h"

void xp_search_opts_default(xp_search_opts *o)
{
    *o = (xp_search_opts){.metric = XP_METRIC_SEQ_LOGPROB,
                          .fitness = XP_FITNESS_MEAN,
                          .lambda = 2.0,
                          .epsilon = 0.5,
                          .granularity = XP_GRAN_ROW,
                          .scale_ratio = 0.7,
                          .scale_bit_min = 4,
                          .scale_bit_max = 9,
                          .proposal = XP_PROPOSE_SCALE,
                          .rerank_every = 1,
                          .iterations = 300,
                          .screen = 2,
                          .stop_window = 200,
                          .stop_rate = 0.01,
                          .seed = 1,
                          .control_max_tokens = 24,
                          .control_stop_newline = true,
                          .checkpoint_every = 10};
}

void xp_search_result_free(xp_search_result *r)
{
    xp_patch_free(r->patch);
    free(r->base_gaps);
    free(r->final_gaps);
    memset(r, 0, sizeof *r);
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---- what a run is: its settings, and the fingerprint a resume must match ---- */

static int check_opts(const xp_model *m, const xp_search_opts *o, xp_err *err)
{
    if (o->metric == XP_METRIC_GENERATION || xp_metric_name(o->metric)[0] == '?')
        return xp_err_set(err, XP_EINVAL,
                          "the search measures seq_logprob, token_gap, margin "
                          "or answer_logprob, not %s",
                          xp_metric_name(o->metric));
    if (o->fitness < 0 || o->fitness > XP_FITNESS_FOCUSED)
        return xp_err_set(err, XP_EINVAL, "unknown fitness %d", o->fitness);
    if (o->granularity < 0 || o->granularity > XP_GRAN_SCALE_BIT)
        return xp_err_set(err, XP_EINVAL, "unknown granularity %d", o->granularity);
    if (o->proposal < 0 || o->proposal > XP_PROPOSE_GRADIENT)
        return xp_err_set(err, XP_EINVAL, "unknown proposal %d", o->proposal);
    if (o->proposal == XP_PROPOSE_GRADIENT && o->rerank_every == 0)
        return xp_err_set(err, XP_EINVAL, "gradient proposals rank again every N >= 1 accepts");
    if (!(o->lambda >= 0) || !(o->epsilon >= 0) || !(o->min_gain >= 0))
        return xp_err_set(err, XP_EINVAL, "lambda, epsilon and min-gain must be >= 0");
    if (o->validation_rule < 0 || o->validation_rule > XP_VALIDATION_EARLY_STOP)
        return xp_err_set(err, XP_EINVAL, "unknown validation rule %d", o->validation_rule);
    if (o->n_validation && !o->validation)
        return xp_err_set(err, XP_EINVAL, "%zu validation probes, but none given", o->n_validation);
    if (!(o->scale_ratio >= 0 && o->scale_ratio <= 1))
        return xp_err_set(err, XP_EINVAL, "scale ratio %g is not in [0, 1]", o->scale_ratio);
    if (o->scale_bit_min < 0 || o->scale_bit_max > 15 || o->scale_bit_min > o->scale_bit_max)
        return xp_err_set(err, XP_EINVAL, "scale bits %d-%d are not a range within 0-15",
                          o->scale_bit_min, o->scale_bit_max);
    if (o->stop_window && !(o->stop_rate > 0 && o->stop_rate <= 1))
        return xp_err_set(err, XP_EINVAL, "auto-stop rate %g is not in (0, 1]", o->stop_rate);
    if (o->stop_window > 1000000)
        return xp_err_set(err, XP_EINVAL,
                          "an auto-stop window of %zu iterations is more than "
                          "the 1,000,000 allowed",
                          o->stop_window);
    for (size_t i = 0; i < o->n_layers; i++)
        if (o->layers[i] >= xp_model_shape(m)->n_layer)
            return xp_err_set(err, XP_EINVAL, "layer %u is not below the model's %u layers",
                              o->layers[i], xp_model_shape(m)->n_layer);
    return XP_OK;
}

size_t xp_search_layers(const xp_model *m, const xp_search_opts *o, uint32_t *out)
{
    uint32_t n_layer = xp_model_shape(m)->n_layer;
    uint32_t def[] = {1, 2, 3, 4, n_layer >= 2 ? n_layer - 2 : 0};
    const uint32_t *src = o->layers ? o->layers : def;
    size_t n = o->layers ? o->n_layers : 5, k = 0;
    for (uint32_t l = 0; l < n_layer; l++)
        for (size_t i = 0; i < n; i++)
            if (src[i] == l) {
                out[k++] = l;
                break;
            }
    return k;
}

int xp_search_propose(xp_model *m, const xp_search_opts *o, size_t n, xp_candidate *out,
                      size_t *n_out, xp_err *err)
{
    uint32_t layers[xp_model_shape(m)->n_layer + 1];
    size_t n_layers = xp_search_layers(m, o, layers);
    xp_proposer p;
    *n_out = 0;
    if (o->proposal == XP_PROPOSE_GRADIENT)
        return xp_err_set(err, XP_EINVAL,
                          "gradient proposals are ranked on a search's probes; "
                          "drawn alone they have no order");
    int rc = xp_proposer_init(&p, m, o, layers, n_layers, err);
    while (!rc && *n_out < n && xp_proposer_next(&p, &out[*n_out]))
        (*n_out)++;
    xp_proposer_free(&p);
    return rc;
}

static cJSON *settings_json(const xp_search_opts *o, const uint32_t *layers, size_t n_layers)
{
    cJSON *s = cJSON_CreateObject();
    cJSON_AddStringToObject(s, "metric", xp_metric_name(o->metric));
    if (o->metric == XP_METRIC_TOKEN_GAP && o->token_rule == XP_TOKEN_RULE_LAST)
        cJSON_AddStringToObject(s, "token_rule", xp_token_rule_name(o->token_rule));
    cJSON_AddStringToObject(s, "fitness", xp_fitness_name(o->fitness));
    cJSON_AddNumberToObject(s, "lambda", o->lambda);
    if (o->fitness == XP_FITNESS_FOCUSED)
        cJSON_AddNumberToObject(s, "epsilon", o->epsilon);
    cJSON_AddStringToObject(s, "granularity", xp_granularity_name(o->granularity));
    if (o->granularity == XP_GRAN_SCALE_BIT) {
        cJSON_AddNumberToObject(s, "scale_ratio", o->scale_ratio);
        cJSON_AddNumberToObject(s, "scale_bit_min", o->scale_bit_min);
        cJSON_AddNumberToObject(s, "scale_bit_max", o->scale_bit_max);
    }
    cJSON *ls = cJSON_AddArrayToObject(s, "layers");
    for (size_t i = 0; i < n_layers; i++)
        cJSON_AddItemToArray(ls, cJSON_CreateNumber(layers[i]));
    cJSON *ps = cJSON_AddArrayToObject(s, "proj");
    unsigned projs = xp_search_projs(o);
    for (int p = 0; p < XP_N_PROJ; p++)
        if (projs & (1u << p))
            cJSON_AddItemToArray(ps, cJSON_CreateString(xp_proj_name(p)));
    cJSON_AddStringToObject(s, "proposal", xp_proposal_name(o->proposal));
    if (o->proposal == XP_PROPOSE_GRADIENT)
        cJSON_AddNumberToObject(s, "rerank_every", (double)o->rerank_every);
    cJSON_AddNumberToObject(s, "screen", (double)o->screen);
    cJSON_AddNumberToObject(s, "min_gain", o->min_gain);
    cJSON_AddNumberToObject(s, "seed", (double)o->seed);
    if (o->n_validation) {
        cJSON_AddStringToObject(s, "validation", xp_validation_rule_name(o->validation_rule));
        cJSON_AddNumberToObject(s, "validation_probes", (double)o->n_validation);
    }
    if (o->control_generation) {
        cJSON_AddStringToObject(s, "control_check", "generation");
        cJSON_AddNumberToObject(s, "control_max_tokens", (double)o->control_max_tokens);
        cJSON_AddBoolToObject(s, "control_stop_newline", o->control_stop_newline);
    }
    return s;
}

/* SHA-256 of the base model's fingerprint (when known), the settings that shape the run
 * and every probe's tokens (the validation probes' after the others, when there are). */
static void run_fingerprint(const char *base, const cJSON *settings, const xp_probe_tokens **pt,
                            size_t nt, size_t nc, size_t nv, char hex[65])
{
    cJSON *what = cJSON_CreateObject();
    cJSON_AddStringToObject(what, "base", base ? base : "");
    cJSON_AddItemToObject(what, "settings", cJSON_Duplicate(settings, true));
    char *text = cJSON_PrintUnformatted(what);
    cJSON_Delete(what);
    size_t len = text ? strlen(text) : 0, cap = len + 64;
    for (size_t i = 0; i < nt + nc + nv; i++)
        cap += (pt[i]->n_prompt + pt[i]->n_answer[0] + pt[i]->n_answer[1] + 8) * 4;
    uint8_t *buf = malloc(cap), *w = buf;
    if (!buf) { /* cannot fingerprint: one that no resume matches */
        free(text);
        memset(hex, 'x', 64);
        hex[64] = 0;
        return;
    }
#define PUT(p, n) ((n) != 0 ? (memcpy(w, (p), (n)), w += (n)) : w)
    PUT(text ? text : "", len);
    uint32_t counts[3] = {(uint32_t)nt, (uint32_t)nc, (uint32_t)nv};
    PUT(counts, nv ? sizeof counts : 2 * sizeof *counts); /* as before validation, without */
    for (size_t i = 0; i < nt + nc + nv; i++) {
        const xp_probe_tokens *p = pt[i];
        uint32_t lens[3] = {(uint32_t)p->n_prompt, (uint32_t)p->n_answer[0],
                            (uint32_t)p->n_answer[1]};
        PUT(lens, sizeof lens);
        PUT(p->gap_id, sizeof p->gap_id);
        PUT(p->prompt, p->n_prompt * 4);
        PUT(p->answer[0], p->n_answer[0] * 4);
        PUT(p->answer[1], p->n_answer[1] * 4);
    }
#undef PUT
    xp_sha256_hex(buf, (size_t)(w - buf), hex);
    free(buf);
    free(text);
}

/* ---- the run ---- */

/* The controls' greedy outputs on the model as it is, into texts (freed first). */
static int control_outputs(run *r, char **texts, xp_err *err)
{
    const int32_t **prompts = calloc(r->nc + 1, sizeof *prompts);
    size_t *lens = calloc(r->nc + 1, sizeof *lens);
    if (!prompts || !lens) {
        free(prompts), free(lens);
        return xp_err_set(err, XP_ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < r->nc; i++) {
        prompts[i] = r->controls[i].prompt;
        lens[i] = r->controls[i].n_prompt;
        free(texts[i]);
        texts[i] = NULL;
    }
    xp_batch_gen_opts go = {r->o->control_max_tokens, r->o->control_stop_newline, NULL, NULL};
    int rc = xp_generate_batch(r->m, prompts, lens, r->nc, &go, texts, err);
    free(prompts), free(lens);
    return rc;
}

/* Whether the model as it is gives every control the base's greedy output. */
static int controls_unchanged(run *r, bool *same, xp_err *err)
{
    int rc = control_outputs(r, r->ctl_now, err);
    *same = true;
    for (size_t i = 0; !rc && i < r->nc; i++)
        *same = *same && !strcmp(r->ctl_now[i], r->ctl_text[i]);
    return rc;
}

static void run_free(run *r)
{
    xp_gauge_free(&r->gauge);
    xp_proposer_free(&r->prop);
    xp_gradient_free(r->grad);
    free(r->base), free(r->cur), free(r->g), free(r->sg), free(r->sel), free(r->solved);
    free(r->kept), free(r->window), free(r->effect.crossings);
    for (size_t i = 0; i < r->nc && r->ctl_text; i++)
        free(r->ctl_text[i]), free(r->ctl_now[i]);
    free(r->ctl_text), free(r->ctl_now);
    cJSON_Delete(r->settings);
}

int search_keep(run *r, const xp_candidate *c)
{
    if (r->n_kept == r->cap_kept) {
        size_t cap = r->cap_kept ? 2 * r->cap_kept : 64;
        xp_candidate *k = realloc(r->kept, cap * sizeof *k);
        if (!k)
            return XP_ENOMEM;
        r->kept = k;
        r->cap_kept = cap;
    }
    r->kept[r->n_kept++] = *c;
    return XP_OK;
}

/* The caller's record of where the run came from; `done` (the final patch only) gives
 * the outcome. */
static void add_provenance(cJSON *s, const xp_search_provenance *pv, const xp_search_result *done)
{
    if (pv->n_files) {
        cJSON *files = cJSON_AddArrayToObject(s, "probe_files");
        for (size_t i = 0; i < pv->n_files; i++) {
            cJSON *f = cJSON_CreateObject();
            cJSON_AddStringToObject(f, "role", pv->files[i].role);
            xp_json_add_string(f, "path", pv->files[i].path);
            cJSON_AddStringToObject(f, "sha256", pv->files[i].sha256);
            cJSON_AddItemToArray(files, f);
        }
    }
    if (pv->has_after) {
        cJSON *after = cJSON_AddArrayToObject(s, "after");
        for (size_t i = 0; i < pv->n_after; i++)
            cJSON_AddItemToArray(after, xp_json_string(pv->after[i]));
    }
    if (pv->result && done) {
        cJSON *res = cJSON_AddObjectToObject(s, "result");
        cJSON_AddNumberToObject(res, "iterations", (double)done->iterations);
        cJSON_AddNumberToObject(res, "accepted", (double)done->accepted);
        cJSON_AddNumberToObject(res, "screened_out", (double)done->screened_out);
        cJSON_AddNumberToObject(res, "seconds", done->seconds);
        cJSON_AddBoolToObject(res, "auto_stopped", done->auto_stopped);
    }
}

static cJSON *candidate_json(const xp_candidate *c)
{
    double v[5] = {c->layer, c->proj, c->kind, c->bit, (double)c->index};
    return cJSON_CreateDoubleArray(v, 5);
}

static bool candidate_from_json(const cJSON *a, xp_candidate *c)
{
    double v[5];
    if (!cJSON_IsArray(a) || cJSON_GetArraySize(a) != 5)
        return false;
    for (int i = 0; i < 5; i++) {
        const cJSON *e = cJSON_GetArrayItem(a, i);
        if (!cJSON_IsNumber(e) || e->valuedouble < 0)
            return false;
        v[i] = e->valuedouble;
    }
    if (v[1] >= XP_N_PROJ || v[3] > 15 ||
        (v[2] != XP_FLIP_ROW && v[2] != XP_FLIP_BLOCK && v[2] != XP_FLIP_SCALE))
        return false;
    *c = (xp_candidate){(uint32_t)v[0], (uint8_t)v[1], (uint8_t)v[2], (uint8_t)v[3], (int64_t)v[4]};
    return true;
}

/* The patch of the first n_flips kept flips, with the settings, the state and the
 * provenance; done: the outcome, for the final patch (NULL for a checkpoint). */
static int make_patch(run *r, size_t n_flips, const xp_search_result *done, xp_patch **out,
                      xp_err *err)
{
    xp_patch *p;
    int rc = xp_patch_new(&p, err);
    for (size_t i = 0; i < n_flips && !rc; i++) {
        const xp_candidate *c = &r->kept[i];
        char tensor[XP_TENSOR_NAME_MAX];
        xp_tensor_name(tensor, sizeof tensor, c->layer, xp_proj_tensor(c->proj));
        xp_flip f = xp_candidate_as_flip(c);
        rc = xp_patch_add(p, tensor, &f, err);
    }
    if (!rc)
        rc = xp_patch_bind(p, xp_model_gguf(r->m), err);
    if (rc) {
        xp_patch_free(p);
        return rc;
    }
    p->name = strdup(r->o->name ? r->o->name : "search");
    p->tool = strdup("xorpatch " XP_VERSION);
    if (r->o->base_sha256)
        snprintf(p->base_sha256, sizeof p->base_sha256, "%s", r->o->base_sha256);
    cJSON *s = cJSON_CreateObject();
    cJSON_AddItemToObject(s, "settings", cJSON_Duplicate(r->settings, true));
    cJSON_AddStringToObject(s, "run_sha256", r->fingerprint);
    cJSON *st = cJSON_AddObjectToObject(s, "state");
    cJSON_AddNumberToObject(st, "iterations", (double)r->iter);
    cJSON_AddNumberToObject(st, "accepted", (double)r->accepted);
    cJSON_AddNumberToObject(st, "screened_out", (double)r->screened_out);
    char best[64];
    snprintf(best, sizeof best, "%a", r->best); /* exact, NAN included */
    cJSON_AddStringToObject(st, "best", best);
    cJSON_AddStringToObject(st, "window", r->window);
    cJSON *sv = cJSON_AddArrayToObject(st, "solved");
    for (size_t t = 0; t < r->nt; t++)
        if (r->solved[t])
            cJSON_AddItemToArray(sv, cJSON_CreateNumber((double)t));
    if (r->nv) {
        cJSON_AddNumberToObject(st, "validation_rejected", (double)r->val_rejected);
        if (r->o->validation_rule == XP_VALIDATION_EARLY_STOP) {
            /* every kept flip in the order kept: the prefix is the patch */
            snprintf(best, sizeof best, "%a", r->val_best);
            cJSON_AddStringToObject(st, "validation_best", best);
            cJSON_AddNumberToObject(st, "validation_best_flips", (double)r->val_best_flips);
            cJSON *kept = cJSON_AddArrayToObject(st, "kept");
            for (size_t i = 0; i < r->n_kept; i++)
                cJSON_AddItemToArray(kept, candidate_json(&r->kept[i]));
        }
    }
    cJSON_AddNumberToObject(s, "best_fitness", r->best);
    cJSON_AddNumberToObject(s, "targets", (double)r->nt);
    cJSON_AddNumberToObject(s, "controls", (double)r->nc);
    if (r->o->provenance)
        add_provenance(s, r->o->provenance, done);
    p->search = cJSON_PrintUnformatted(s);
    cJSON_Delete(s);
    if (!p->name || !p->tool || !p->search) {
        xp_patch_free(p);
        return xp_err_set(err, XP_ENOMEM, "out of memory");
    }
    *out = p;
    return XP_OK;
}

/* The one way a run's patch reaches a file, checkpoint or final: the caller's writer,
 * else the checkpoint path. A patch without flips is written too: it is the state a
 * search that has kept nothing yet resumes from. */
static int write_patch(const run *r, xp_patch *p, xp_err *err)
{
    const xp_search_opts *o = r->o;
    if (search_team_follows(o))
        return XP_OK;
    if (o->write_patch)
        return o->write_patch(o->ctx, p, err);
    return o->checkpoint ? xp_patch_write(p, o->checkpoint_format, o->checkpoint, err) : XP_OK;
}

/* The kept flips a patch of the run holds: all, or under early-stop those up to the best
 * validation point (which only moves on, so a checkpoint never holds a flip the final
 * patch drops; the state holds the rest). */
static size_t patch_flips(const run *r)
{
    return r->nv && r->o->validation_rule == XP_VALIDATION_EARLY_STOP ? r->val_best_flips
                                                                      : r->n_kept;
}

static int write_checkpoint(run *r, xp_err *err)
{
    if (!r->o->checkpoint && !r->o->write_patch)
        return XP_OK;
    xp_patch *p;
    int rc = make_patch(r, patch_flips(r), NULL, &p, err);
    if (!rc) {
        rc = write_patch(r, p, err);
        xp_patch_free(p);
    }
    return rc;
}

/* Candidate for one flip of a patch, when it is one the search could have made. */
static int flip_candidate(const xp_patch *p, const xp_flip *f, const xp_model *m, xp_candidate *c,
                          xp_err *err)
{
    const char *name = p->tensors[f->tensor].name;
    uint32_t layer;
    int proj_i = xp_tensor_name_parse(name, &layer);
    if (proj_i < 0 || layer >= xp_model_shape(m)->n_layer ||
        (f->kind != XP_FLIP_ROW && f->kind != XP_FLIP_BLOCK && f->kind != XP_FLIP_SCALE))
        return xp_err_set(err, XP_EINVAL,
                          "%s: flip %u on %s is not a row, block or scale flip "
                          "of a layer's projection, so a search cannot continue from it",
                          p->path ? p->path : "resume patch", f->src, name);
    *c = (xp_candidate){layer, (uint8_t)proj_i, f->kind, f->bit, f->index};
    return XP_OK;
}

/* Keeps and applies candidate c; lowest: the lowest layer flipped so far. */
static int keep_applied(run *r, const xp_candidate *c, uint32_t *lowest, xp_err *err)
{
    if (c->layer >= xp_model_shape(r->m)->n_layer)
        return xp_err_set(err, XP_EINVAL, "a kept flip's layer %u is not in the model", c->layer);
    if (search_keep(r, c))
        return xp_err_set(err, XP_ENOMEM, "out of memory");
    xp_candidate_flip(r->m, c);
    *lowest = c->layer < *lowest ? c->layer : *lowest;
    return XP_OK;
}

/* Starts from a patch: its flips applied and kept; when it is this run's checkpoint,
 * the state restored and the proposals replayed (an early-stop run's flips from its
 * state, in the order kept, the patch holding only a prefix of them). */
static int resume_from(run *r, xp_patch *p, xp_search_result *out, xp_err *err)
{
    int rc = xp_patch_bind(p, xp_model_gguf(r->m), err);
    uint32_t n_layer = xp_model_shape(r->m)->n_layer, lowest = n_layer;
    cJSON *s = !rc && p->search ? cJSON_Parse(p->search) : NULL;
    const cJSON *fp = cJSON_GetObjectItemCaseSensitive(s, "run_sha256");
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(s, "state");
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(st, "iterations");
    const cJSON *win = cJSON_GetObjectItemCaseSensitive(st, "window");
    const cJSON *kept = cJSON_GetObjectItemCaseSensitive(st, "kept");
    bool ours = cJSON_IsString(fp) && !strcmp(fp->valuestring, r->fingerprint) &&
                cJSON_IsNumber(it) && it->valuedouble >= 0 && cJSON_IsString(win);
    bool early = r->nv && r->o->validation_rule == XP_VALIDATION_EARLY_STOP;
    if (ours && early && cJSON_IsArray(kept)) {
        const cJSON *k;
        cJSON_ArrayForEach(k, kept)
        {
            xp_candidate c;
            if (rc)
                break;
            rc = candidate_from_json(k, &c) ? keep_applied(r, &c, &lowest, err)
                                            : xp_err_set(err, XP_EFORMAT,
                                                         "%s: a kept flip of the search state is "
                                                         "not [layer, proj, kind, bit, index]",
                                                         p->path ? p->path : "resume patch");
        }
    } else
        for (size_t i = 0; i < p->n_flips && !rc; i++) {
            xp_candidate c;
            if (!(rc = flip_candidate(p, &p->flips[i], r->m, &c, err)))
                rc = keep_applied(r, &c, &lowest, err);
        }
    if (rc) {
        cJSON_Delete(s);
        return rc;
    }
    if (ours) {
        r->iter = (size_t)it->valuedouble;
        /* gradient proposals depend on the accepts, not the seed: the kept flips are not
         * proposed again, and the ranking starts afresh at the resumed weights */
        for (size_t i = 0; r->grad && i < r->n_kept; i++)
            xp_proposer_mark(&r->prop, &r->kept[i]);
        for (size_t i = 0; !r->grad && i < r->iter; i++) {
            xp_candidate c;
            if (!xp_proposer_next(&r->prop, &c))
                break;
        }
        /* the newest entries, should the window have shrunk */
        size_t len = strlen(win->valuestring), w = r->o->stop_window;
        snprintf(r->window, w + 1, "%s", win->valuestring + (len > w ? len - w : 0));
        const cJSON *v;
        if (cJSON_IsNumber(v = cJSON_GetObjectItemCaseSensitive(st, "accepted")))
            r->accepted = (size_t)v->valuedouble;
        if (cJSON_IsNumber(v = cJSON_GetObjectItemCaseSensitive(st, "screened_out")))
            r->screened_out = (size_t)v->valuedouble;
        if (cJSON_IsString(v = cJSON_GetObjectItemCaseSensitive(st, "best"))) {
            r->best = strtod(v->valuestring, NULL);
            r->best_restored = true;
        }
        const cJSON *t;
        cJSON_ArrayForEach(t, cJSON_GetObjectItemCaseSensitive(
                                  st, "solved")) if (cJSON_IsNumber(t) && t->valuedouble >= 0 &&
                                                     t->valuedouble < (double)r->nt)
            r->solved[(size_t)t->valuedouble] = true;
        if (cJSON_IsNumber(v = cJSON_GetObjectItemCaseSensitive(st, "validation_rejected")))
            r->val_rejected = (size_t)v->valuedouble;
        if (early && cJSON_IsString(v = cJSON_GetObjectItemCaseSensitive(st, "validation_best")))
            r->val_best = strtod(v->valuestring, NULL);
        if (early &&
            cJSON_IsNumber(v = cJSON_GetObjectItemCaseSensitive(st, "validation_best_flips")))
            r->val_best_flips =
                (size_t)v->valuedouble <= r->n_kept ? (size_t)v->valuedouble : r->n_kept;
        r->val_restored = true;
        out->resumed_at = r->iter;
        out->resumed = true;
    } else {
        for (size_t i = 0; i < r->n_kept; i++)
            xp_proposer_mark(&r->prop, &r->kept[i]);
    }
    cJSON_Delete(s);
    xp_tree_change from = {lowest < n_layer ? lowest : 0, XP_CHANGE_LAYER, 0};
    rc = xp_gauge_run(&r->gauge, NULL, 0, &from, r->cur, err);
    if (!rc)
        xp_gauge_commit(&r->gauge);
    return rc;
}

/* The k targets with the lowest current gaps (ties: lower index first). */
static size_t worst_targets(const run *r, size_t k, size_t *sel)
{
    size_t n = 0;
    for (size_t t = 0; t < r->nt && k; t++) {
        size_t j;
        if (n < k)
            j = n++;
        else if (r->cur[t] < r->cur[sel[k - 1]])
            j = k - 1;
        else
            continue;
        while (j > 0 && r->cur[t] < r->cur[sel[j - 1]]) {
            sel[j] = sel[j - 1];
            j--;
        }
        sel[j] = t;
    }
    return n;
}

static void push_window(run *r, bool accepted)
{
    size_t w = r->o->stop_window, len = strlen(r->window);
    if (!w)
        return;
    if (len == w)
        memmove(r->window, r->window + 1, --len);
    r->window[len] = accepted ? '1' : '0';
    r->window[len + 1] = 0;
}

static bool auto_stop(const run *r)
{
    size_t w = r->o->stop_window;
    if (!w || r->iter < w || strlen(r->window) < w)
        return false;
    size_t acc = 0;
    for (size_t i = 0; i < w; i++)
        acc += r->window[i] == '1';
    return (double)acc / (double)w < r->o->stop_rate;
}

int search_evaluate(run *r, const xp_candidate *c, long focal, xp_search_iter *it, xp_err *err)
{
    const xp_search_opts *o = r->o;
    xp_candidate_flip(r->m, c);
    xp_tree_change change = xp_candidate_change(r->m, c);
    int rc = XP_OK;
    size_t k = focal >= 0 ? 1 : worst_targets(r, o->screen < r->nt ? o->screen : r->nt, r->sel);
    if (focal >= 0)
        r->sel[0] = (size_t)focal;
    if (o->screen && k) {
        if ((rc = xp_gauge_run(&r->gauge, r->sel, k, &change, r->sg, err)))
            goto undo;
        it->probes_run += k;
        bool improved = false;
        for (size_t j = 0; j < k; j++)
            improved |= r->sg[j] > r->cur[r->sel[j]];
        it->screened = !improved;
    }
    if (!it->screened) {
        if ((rc = xp_gauge_run(&r->gauge, NULL, 0, &change, r->g, err)))
            goto undo;
        it->probes_run += r->n;
        if (focal >= 0) {
            it->fitness = r->g[focal];
            it->change = r->g[focal] - r->cur[focal];
            it->accepted = xp_focused_accept(&r->fit, r->cur, r->g, (size_t)focal);
        } else {
            it->fitness = xp_fitness_value(&r->fit, r->g);
            it->change = it->fitness - xp_fitness_value(&r->fit, r->cur);
            it->accepted = it->fitness > r->best + o->min_gain;
        }
        if (r->nv) {
            it->validation = xp_fitness_value(&r->vfit, r->g + r->nt + r->nc);
            if (it->accepted && o->validation_rule == XP_VALIDATION_KEEP &&
                !(it->validation >= r->val_now)) {
                it->accepted = false;
                it->validation_rejected = true;
            }
        }
    }
    if (it->accepted && o->control_generation && r->nc) {
        bool same;
        if ((rc = controls_unchanged(r, &same, err)))
            goto undo;
        it->accepted = same;
        it->control_changed = !same;
    }
    if (!it->accepted)
        xp_candidate_flip(r->m, c);
    return XP_OK;
undo:
    xp_candidate_flip(r->m, c);
    return rc;
}

int search_commit(run *r, const xp_candidate *c, long focal, double fitness, xp_search_iter *it,
                  xp_err *err)
{
    int rc = search_keep(r, c);
    if (rc) {
        xp_candidate_flip(r->m, c);
        return xp_err_set(err, rc, "out of memory");
    }
    xp_gauge_commit(&r->gauge);
    size_t ends[3] = {r->nt, r->nt + r->nc, r->n};
    xp_flip_effect_measure(&r->effect, r->cur, r->g, ends);
    xp_proposer_accepted(&r->prop);
    memcpy(r->cur, r->g, r->n * sizeof *r->cur);
    if (r->nv) { /* from the gaps, so that every rank of a team has it */
        r->val_now = xp_fitness_value(&r->vfit, r->cur + r->nt + r->nc);
        if (r->o->validation_rule == XP_VALIDATION_EARLY_STOP && r->val_now > r->val_best) {
            r->val_best = r->val_now;
            r->val_best_flips = r->n_kept;
        }
    }
    if (it) {
        it->effect = &r->effect;
        it->moved = r->effect.moved;
        memcpy(it->crossed, r->effect.crossed, sizeof it->crossed);
        if (r->nv)
            it->validation_now = r->val_now;
    }
    if (focal >= 0) {
        r->solved[focal] = r->cur[focal] > 0;
        r->best = r->cur[focal];
    } else
        r->best = fitness;
    r->accepted++;
    return XP_OK;
}

void search_record(run *r, xp_search_iter *it, xp_search_result *out)
{
    const xp_search_opts *o = r->o;
    r->screened_out += it->screened;
    out->probes_run += it->probes_run;
    push_window(r, it->accepted);
    r->val_rejected += it->validation_rejected;
    it->best = r->best;
    it->n_flips = r->n_kept;
    it->validation_best_flips = r->val_best_flips;
    if (o->on_iter)
        o->on_iter(o->ctx, it);
}

long search_focal(const run *r)
{
    return r->o->fitness == XP_FITNESS_FOCUSED ? xp_focused_target(&r->fit, r->cur) : -1;
}

/* One iteration; *stop when nothing is left to try. */
static int step(run *r, xp_search_result *out, bool *stop, xp_err *err)
{
    double t0 = now();
    long focal = search_focal(r);
    if (r->o->fitness == XP_FITNESS_FOCUSED && focal < 0) {
        *stop = true; /* every target solved */
        return XP_OK;
    }
    xp_candidate c;
    int rc = r->grad ? xp_gradient_refresh(r->grad, &r->prop, &r->fit, r->cur, focal, err) : 0;
    if (rc)
        return rc;
    if (!xp_proposer_next(&r->prop, &c)) {
        out->exhausted = *stop = true;
        return XP_OK;
    }
    r->iter++;
    xp_search_iter it = {.iter = r->iter,
                         .cand = c,
                         .fitness = NAN,
                         .validation = NAN,
                         .validation_now = r->nv ? r->val_now : NAN,
                         .estimate = r->prop.estimate,
                         .change = NAN};
    rc = search_evaluate(r, &c, focal, &it, err);
    if (!rc && it.accepted)
        rc = search_commit(r, &c, focal, it.fitness, &it, err);
    if (rc)
        return rc;
    it.seconds = now() - t0;
    search_record(r, &it, out);
    return XP_OK;
}

int xp_search_run(xp_model *m, const xp_probe_tokens *targets, size_t n_targets,
                  const xp_probe_tokens *controls, size_t n_controls, const xp_search_opts *o,
                  xp_patch *resume, xp_search_result *out, xp_err *err)
{
    memset(out, 0, sizeof *out);
    int rc = check_opts(m, o, err);
    if (rc)
        return rc;
    if (n_targets == 0)
        return xp_err_set(err, XP_EINVAL, "the search needs at least one target probe");
    double t_start = now();
    run r = {.m = m,
             .o = o,
             .nt = n_targets,
             .nc = n_controls,
             .nv = o->n_validation,
             .n = n_targets + n_controls + o->n_validation,
             .controls = controls};
    uint32_t layers[xp_model_shape(m)->n_layer + 1];
    size_t n_layers = xp_search_layers(m, o, layers);
    unsigned mlp = 1u << XP_PROJ_GATE | 1u << XP_PROJ_UP | 1u << XP_PROJ_DOWN;
    const xp_probe_tokens **pt = malloc((r.n + 1) * sizeof *pt);
    bool ok = pt && (r.base = calloc(r.n, sizeof *r.base)) &&
              (r.cur = calloc(r.n, sizeof *r.cur)) && (r.g = calloc(r.n, sizeof *r.g)) &&
              (r.sg = calloc(r.n, sizeof *r.sg)) && (r.sel = calloc(r.n, sizeof *r.sel)) &&
              (r.solved = calloc(r.nt, sizeof *r.solved)) &&
              (r.window = calloc(o->stop_window + 2, 1)) &&
              (r.ctl_text = calloc(r.nc + 1, sizeof *r.ctl_text)) &&
              (r.ctl_now = calloc(r.nc + 1, sizeof *r.ctl_now)) &&
              (r.effect.crossings = calloc(r.n, sizeof *r.effect.crossings));
    if (!ok) {
        free(pt);
        run_free(&r);
        return xp_err_set(err, XP_ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < r.n; i++)
        pt[i] = i < r.nt          ? &targets[i]
                : i < r.nt + r.nc ? &controls[i - r.nt]
                                  : &o->validation[i - r.nt - r.nc];
    r.settings = settings_json(o, layers, n_layers);
    run_fingerprint(o->base_sha256, r.settings, pt, r.nt, r.nc, r.nv, r.fingerprint);
    if (!(rc = search_team_follows(o) ? XP_OK
                                      : xp_proposer_init(&r.prop, m, o, layers, n_layers, err)) &&
        !(rc = xp_gauge_init(&r.gauge, m, pt, r.n, o->metric, o->naive, layers, n_layers,
                             (xp_search_projs(o) & mlp) != 0, err)) &&
        !(rc = xp_gauge_run(&r.gauge, NULL, 0, NULL, r.base, err)) &&
        !(rc = o->proposal == XP_PROPOSE_GRADIENT && !search_team_follows(o)
                   ? xp_gradient_new(&r.grad, m, pt, r.nt, r.nc, o->metric, &r.prop, err)
                   : XP_OK)) {
        xp_gauge_commit(&r.gauge);
        memcpy(r.cur, r.base, r.n * sizeof *r.cur);
        out->probes_run += r.n;
        out->measure_tokens = xp_gauge_tokens(&r.gauge);
        if (o->control_generation && r.nc) /* the base's outputs, before any flip */
            rc = control_outputs(&r, r.ctl_text, err);
    }
    r.fit = (xp_fitness_ctx){o->fitness, o->lambda, o->epsilon, r.nt, r.nc, r.base, r.solved};
    /* the fitness's objective on the validation probes, relative to their base gaps
     * (focused, which has no aggregate, is judged by the mean) */
    r.vfit = (xp_fitness_ctx){o->fitness == XP_FITNESS_FOCUSED ? XP_FITNESS_MEAN : o->fitness,
                              0,
                              0,
                              r.nv,
                              0,
                              r.base + r.nt + r.nc,
                              NULL};
    if (!rc && resume && !search_team_follows(o))
        rc = resume_from(&r, resume, out, err);
    if (!rc) {
        if (!out->resumed_at) /* targets right at the start count as solved */
            for (size_t t = 0; t < r.nt; t++)
                r.solved[t] = r.cur[t] > 0;
        if (!r.best_restored)
            r.best = o->fitness == XP_FITNESS_FOCUSED ? NAN : xp_fitness_value(&r.fit, r.cur);
        if (r.nv) {
            r.val_now = xp_fitness_value(&r.vfit, r.cur + r.nt + r.nc);
            if (!r.val_restored) { /* the start is the first validation point */
                r.val_best = r.val_now;
                r.val_best_flips = r.n_kept;
            }
        }
    }
    out->start = r.best;
    if (o->team)
        rc = search_team_start(&r, rc, out, err);
    /* a run that had already stopped by the window rule stays stopped */
    bool stop = !rc && auto_stop(&r);
    out->auto_stopped = stop;
    /* a search killed before its first checkpoint or kept flip resumes from this one */
    if (!rc && !stop && !out->resumed && o->checkpoint_every && r.iter < o->iterations)
        rc = write_checkpoint(&r, err);
    if (!rc && search_team_follows(o))
        rc = search_team_follow(&r, err);
    while (!rc && !stop && !search_team_follows(o) && r.iter < o->iterations) {
        rc = o->team ? search_team_step(&r, out, &stop, err) : step(&r, out, &stop, err);
        if (!rc && (auto_stop(&r)))
            out->auto_stopped = stop = true;
        if (!rc && o->checkpoint_every && r.iter % o->checkpoint_every == 0)
            rc = write_checkpoint(&r, err);
    }
    if (o->team)
        rc = search_team_finish(&r, rc, out, err);
    /* early-stop: the final patch is the prefix at the best validation point, and the
     * final gaps are its own */
    size_t n_final = patch_flips(&r);
    size_t applied = r.n_kept;
    if (!rc && n_final < r.n_kept) {
        for (size_t i = r.n_kept; i-- > n_final;)
            xp_candidate_flip(m, &r.kept[i]);
        applied = n_final;
        if (!(rc = xp_gauge_run(&r.gauge, NULL, 0, NULL, r.cur, err)))
            out->probes_run += r.n;
    }
    if (!rc) {
        out->iterations = r.iter;
        out->accepted = r.accepted;
        out->screened_out = r.screened_out;
        out->best = r.best;
        out->validation_rejected = r.val_rejected;
        out->validation_best_flips = n_final;
        out->validation_base = r.nv ? xp_fitness_value(&r.vfit, r.base + r.nt + r.nc) : NAN;
        out->validation_final = r.nv ? xp_fitness_value(&r.vfit, r.cur + r.nt + r.nc) : NAN;
        out->seconds = now() - t_start;
        /* the last checkpoint is the final patch */
        if (!(rc = make_patch(&r, n_final, out, &out->patch, err)))
            rc = write_patch(&r, out->patch, err);
    }
    /* leave the model as it was given */
    for (size_t i = applied; i-- > 0;)
        xp_candidate_flip(m, &r.kept[i]);
    if (!rc) {
        out->n_targets = r.nt;
        out->n_controls = r.nc;
        out->n_validation = r.nv;
        out->base_gaps = r.base;
        out->final_gaps = r.cur;
        r.base = r.cur = NULL;
    } else {
        xp_patch_free(out->patch);
        out->patch = NULL;
    }
    free(pt);
    run_free(&r);
    return rc;
}
