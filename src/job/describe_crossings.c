/* A patch's flips judged one by one on probes (job.h, `show --probes`): each flip is
 * applied on top of the ones before it, in the patch's order, and the probes that
 * crossed zero with it are named (fixed: up to right; broke: down to wrong), so a
 * person sees which flips change answers and which only move gaps. */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "xorpatch/job.h"

void xp_crossings_free(xp_crossings *c)
{
    for (size_t i = 0; c->flips && i < c->n_flips; i++)
        free(c->flips[i].crossings);
    free(c->flips);
    free(c->base);
    free(c->final);
    memset(c, 0, sizeof *c);
}

/* The patch of flip i of p alone. */
static int one_flip(const xp_patch *p, size_t i, const xp_gguf *g, xp_patch **out, xp_err *err)
{
    xp_patch *one;
    int rc = xp_patch_new(&one, err);
    if (!rc && (rc = xp_patch_add(one, p->tensors[p->flips[i].tensor].name, &p->flips[i], err)))
        xp_patch_free(one);
    if (!rc && (rc = xp_patch_bind(one, g, err)))
        xp_patch_free(one);
    if (!rc)
        *out = one;
    return rc;
}

int xp_crossings_run(xp_model *m, xp_patch *p, const xp_probe_tokens *pt, size_t n,
                     xp_metric metric, xp_crossings *out, xp_err *err)
{
    memset(out, 0, sizeof *out);
    out->n_probes = n;
    out->metric = metric;
    xp_patch **applied = calloc(p->n_flips + 1, sizeof *applied);
    double *before = malloc((n + 1) * sizeof *before), *after = malloc((n + 1) * sizeof *after);
    xp_probe_move *room = malloc((n + 1) * sizeof *room);
    out->flips = calloc(p->n_flips + 1, sizeof *out->flips);
    out->base = malloc((n + 1) * sizeof *out->base);
    int rc = applied && before && after && room && out->flips && out->base
                 ? xp_patch_bind(p, xp_model_gguf(m), err)
                 : xp_err_set(err, XP_ENOMEM, "out of memory");
    if (!rc && !(rc = xp_probe_gaps(m, pt, n, metric, before, err)))
        memcpy(out->base, before, n * sizeof *before);
    size_t k = 0, ends[3] = {n, n, n};
    for (; !rc && k < p->n_flips; k++) {
        if ((rc = one_flip(p, k, xp_model_gguf(m), &applied[k], err)))
            break;
        if ((rc = xp_model_patch_apply(m, applied[k], err))) {
            xp_patch_free(applied[k]);
            applied[k] = NULL;
            break;
        }
        if ((rc = xp_probe_gaps(m, pt, n, metric, after, err)))
            break;
        xp_flip_effect e = {.crossings = room};
        xp_flip_effect_measure(&e, before, after, ends);
        xp_crossing_flip *cf = &out->flips[k];
        cf->flip = &p->flips[k];
        cf->tensor = p->tensors[p->flips[k].tensor].name;
        cf->moved = e.moved;
        cf->n_crossings = e.n_crossings;
        if (e.n_crossings && !(cf->crossings = malloc(e.n_crossings * sizeof *cf->crossings))) {
            rc = xp_err_set(err, XP_ENOMEM, "out of memory");
            break;
        }
        if (e.n_crossings)
            memcpy(cf->crossings, room, e.n_crossings * sizeof *room);
        out->changed_sign += e.n_crossings > 0;
        out->n_flips = k + 1;
        memcpy(before, after, n * sizeof *before);
    }
    /* the model as it was given */
    for (size_t i = p->n_flips; i-- > 0;)
        if (applied[i]) {
            int r2 = xp_model_patch_revert(m, applied[i], rc ? NULL : err);
            rc = rc ? rc : r2;
            xp_patch_free(applied[i]);
        }
    if (!rc) {
        out->final = before;
        before = NULL;
    }
    free(applied), free(before), free(after), free(room);
    if (rc)
        xp_crossings_free(out);
    return rc;
}

static size_t right(const double *g, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        k += g[i] > 0;
    return k;
}

static const char *name_of(const xp_probe_set *s, size_t i)
{
    return s->probes[i].name ? s->probes[i].name : "?";
}

void xp_crossings_print(FILE *out, const xp_crossings *c, const xp_probe_set *s)
{
    fprintf(out, "crossings on %s (%zu probes, %s), the flips applied one after another:\n",
            s->path ? s->path : "probes", c->n_probes, xp_metric_name(c->metric));
    fprintf(out, "  base: %zu of %zu right (gap > 0)\n", right(c->base, c->n_probes), c->n_probes);
    for (size_t k = 0; k < c->n_flips; k++) {
        const xp_crossing_flip *f = &c->flips[k];
        char what[96];
        xp_flip_kind_of(f->flip->kind)->describe(f->flip, what, sizeof what);
        fprintf(out, "  flip %-4zu %s %s: moved %zu", k + 1, f->tensor, what, f->moved);
        if (!f->n_crossings)
            fprintf(out, ", none crossed\n");
        else
            fprintf(out, ", crossed %zu:\n", f->n_crossings);
        for (size_t j = 0; j < f->n_crossings; j++) {
            const xp_probe_move *mv = &f->crossings[j];
            fprintf(out, "    %-5s %-28s %+.4f -> %+.4f\n", mv->after > 0 ? "fixed" : "broke",
                    name_of(s, mv->index), mv->before, mv->after);
        }
    }
    fprintf(out, "  %zu of %zu flips changed some probe's sign; after all: %zu of %zu right\n",
            c->changed_sign, c->n_flips, right(c->final, c->n_probes), c->n_probes);
}

cJSON *xp_crossings_json(const xp_crossings *c, const xp_probe_set *s)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "probes", s->path ? s->path : "");
    cJSON_AddStringToObject(o, "metric", xp_metric_name(c->metric));
    cJSON_AddNumberToObject(o, "n", (double)c->n_probes);
    cJSON_AddNumberToObject(o, "right_before", (double)right(c->base, c->n_probes));
    cJSON_AddNumberToObject(o, "right_after", (double)right(c->final, c->n_probes));
    cJSON_AddNumberToObject(o, "changed_sign", (double)c->changed_sign);
    cJSON *flips = cJSON_AddArrayToObject(o, "flips");
    for (size_t k = 0; k < c->n_flips; k++) {
        const xp_crossing_flip *f = &c->flips[k];
        char what[96];
        xp_flip_kind_of(f->flip->kind)->describe(f->flip, what, sizeof what);
        cJSON *j = cJSON_CreateObject();
        cJSON_AddNumberToObject(j, "flip", (double)(k + 1));
        cJSON_AddStringToObject(j, "tensor", f->tensor);
        cJSON_AddStringToObject(j, "what", what);
        cJSON_AddNumberToObject(j, "moved", (double)f->moved);
        cJSON *cr = cJSON_AddArrayToObject(j, "crossed");
        for (size_t i = 0; i < f->n_crossings; i++) {
            const xp_probe_move *mv = &f->crossings[i];
            cJSON *x = cJSON_CreateObject();
            cJSON_AddNumberToObject(x, "probe", (double)mv->index);
            cJSON_AddStringToObject(x, "name", name_of(s, mv->index));
            cJSON_AddNumberToObject(x, "before", mv->before);
            cJSON_AddNumberToObject(x, "after", mv->after);
            cJSON_AddStringToObject(x, "direction", mv->after > 0 ? "up" : "down");
            cJSON_AddItemToArray(cr, x);
        }
        cJSON_AddItemToArray(flips, j);
    }
    return o;
}
