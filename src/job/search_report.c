/* The search report (search_report.h): the same facts as text for a terminal and as a
 * self-contained HTML page whose charts are inline SVG (no script, no external file). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/file.h"
#include "core/utf8.h"
#include "job/search_report.h"

/* Flips kept per layer and projection, from the patch's tensor names. */
typedef struct flip_map {
    uint32_t layers[64];
    size_t n_layers;
    size_t count[64][XP_N_PROJ];
    size_t max;
} flip_map;

static void map_flips(const xp_patch *p, flip_map *fm)
{
    memset(fm, 0, sizeof *fm);
    for (size_t i = 0; p && i < p->n_flips; i++) {
        uint32_t layer;
        int pi = xp_tensor_name_parse(p->tensors[p->flips[i].tensor].name, &layer);
        if (pi < 0)
            continue;
        size_t li = 0;
        while (li < fm->n_layers && fm->layers[li] != layer)
            li++;
        if (pi < 0 || li == 64)
            continue;
        if (li == fm->n_layers) {
            /* keep layers ascending */
            while (li > 0 && fm->layers[li - 1] > layer) {
                fm->layers[li] = fm->layers[li - 1];
                memcpy(fm->count[li], fm->count[li - 1], sizeof fm->count[li]);
                li--;
            }
            fm->layers[li] = layer;
            memset(fm->count[li], 0, sizeof fm->count[li]);
            fm->n_layers++;
        }
        size_t c = ++fm->count[li][pi];
        fm->max = c > fm->max ? c : fm->max;
    }
}

static void settings_line(FILE *out, const xp_search_opts *o, const xp_search_result *res)
{
    fprintf(out, "settings    %s, fitness %s (lambda %g", xp_metric_name(o->metric),
            xp_fitness_name(o->fitness), o->lambda);
    if (o->fitness == XP_FITNESS_FOCUSED)
        fprintf(out, ", epsilon %g", o->epsilon);
    fprintf(out, "), %s flips", xp_granularity_name(o->granularity));
    if (o->granularity == XP_GRAN_SCALE_BIT)
        fprintf(out, " (scale moves %g, bits %d-%d)", o->scale_ratio, o->scale_bit_min,
                o->scale_bit_max);
    fprintf(out, ", %s proposals, screen %zu, seed %llu\n", xp_proposal_name(o->proposal),
            o->screen, (unsigned long long)o->seed);
    (void)res;
}

/* Gradient proposals: how the estimates ranked the candidates measured in full. */
static void estimates_line(FILE *out, const search_report *r)
{
    double *e = malloc((r->n_iters + 1) * sizeof *e), *c = malloc((r->n_iters + 1) * sizeof *c);
    size_t n = 0;
    for (size_t i = 0; e && c && i < r->n_iters; i++)
        if (isfinite(r->iters[i].estimate) && isfinite(r->iters[i].change)) {
            e[n] = r->iters[i].estimate;
            c[n++] = r->iters[i].change;
        }
    double rho = e && c ? xp_spearman(e, c, n) : NAN;
    free(e), free(c);
    if (isnan(rho))
        fprintf(out, "estimates   too few candidates measured in full for a rank correlation\n");
    else
        fprintf(out, "estimates   Spearman %.3f between the gradient's estimates and the measured "
                     "changes (%zu candidates measured in full)\n",
                rho, n);
}

static size_t count_positive(const double *g, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        k += g[i] > 0;
    return k;
}

static double mean_of(const double *g, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += g[i];
    return n ? s / (double)n : 0;
}

static void print_set(FILE *out, const search_report_set *rs)
{
    const xp_eval *e = rs->eval;
    const xp_probe_set *s = rs->set;
    fprintf(out, "\n%s (%zu probes, %s):\n", rs->label, s->n, s->path ? s->path : "");
    xp_paired_print(out, &e->overall, "probes", true);
    size_t changed = 0;
    for (size_t i = 0; i < s->n; i++) {
        const xp_eval_probe *p = &e->probes[i];
        if (p->right[0] == p->right[1])
            continue;
        char b[96], a[96];
        if (!changed++)
            fprintf(out, "  changed:\n");
        fprintf(out, "    %-6s %-24s gap %+8.3f -> %+8.3f  %s -> %s\n",
                xp_outcome_name(p->right[0], p->right[1]), s->probes[i].name, p->gap[0], p->gap[1],
                xp_text_quote(p->output[0], 24, b, sizeof b), xp_text_quote(p->output[1], 24, a, sizeof a));
    }
    if (!changed)
        fprintf(out, "  no probe changed outcome\n");
}

/* Kept flips that changed some probe's sign: of any role ([3]), and per role. */
static void sign_changes(const search_report *r, size_t changed[4], size_t *kept)
{
    memset(changed, 0, 4 * sizeof *changed);
    *kept = 0;
    for (size_t i = 0; i < r->n_iters; i++) {
        const xp_search_iter *it = &r->iters[i];
        if (!it->accepted)
            continue;
        ++*kept;
        for (int k = 0; k < 3; k++)
            changed[k] += it->crossed[k] > 0;
        changed[3] += it->crossed[0] + it->crossed[1] + it->crossed[2] > 0;
    }
}

static void validation_lines(FILE *out, const search_report *r)
{
    const xp_search_result *res = r->res;
    const xp_search_opts *o = r->opts;
    fprintf(out, "validation  %zu probes, rule %s: objective %+.4g -> %+.4g", res->n_validation,
            xp_validation_rule_name(o->validation_rule), res->validation_base,
            res->validation_final);
    if (o->validation_rule == XP_VALIDATION_EARLY_STOP)
        fprintf(out, "; early stop: the patch is the first %zu of %zu kept flips\n",
                res->validation_best_flips, res->accepted);
    else
        fprintf(out, "; %zu flips the fitness took were refused by it\n",
                res->validation_rejected);
}

static void sign_change_line(FILE *out, const search_report *r)
{
    size_t changed[4], kept;
    sign_changes(r, changed, &kept);
    fprintf(out,
            "signs       %zu of %zu kept flips changed some probe's sign (targets %zu, "
            "controls %zu, validation %zu)\n",
            changed[3], kept, changed[0], changed[1], changed[2]);
}

void search_report_print(FILE *out, const search_report *r)
{
    const xp_search_result *res = r->res;
    const xp_search_opts *o = r->opts;
    size_t it = res->iterations, done = it - res->resumed_at;
    fprintf(out, "\n== search report ==\n");
    fprintf(out, "model       %s\n", r->model);
    if (res->patch && res->patch->n_flips)
        fprintf(out, "patch       %s (%zu flips)\n", r->patch_path, res->patch->n_flips);
    else
        fprintf(out, "patch       none: no flip was kept (%s holds the search's record only)\n",
                r->patch_path);
    settings_line(out, o, res);
    fprintf(out, "iterations  %zu", it);
    if (res->resumed_at)
        fprintf(out, " (resumed at %zu)", res->resumed_at);
    fprintf(out, ", %.2f s each (%.1f s in all)%s%s\n", done ? res->seconds / (double)done : 0,
            res->seconds, res->auto_stopped ? ", auto-stopped" : "",
            res->exhausted ? ", no untried candidate left" : "");
    double lo, hi;
    xp_wilson(res->accepted, it, &lo, &hi);
    fprintf(out, "accepted    %zu of %zu (%.1f%%, Wilson 95%% %.1f-%.1f%%); %zu screened out\n",
            res->accepted, it, it ? 100.0 * (double)res->accepted / (double)it : 0, 100 * lo,
            100 * hi, res->screened_out);
    if (!isnan(res->best))
        fprintf(out, "fitness     best %.6g\n", res->best);
    if (res->n_validation)
        validation_lines(out, r);
    if (r->flip_detail || res->n_validation)
        sign_change_line(out, r);
    if (o->proposal == XP_PROPOSE_GRADIENT)
        estimates_line(out, r);
    flip_map fm;
    map_flips(res->patch, &fm);
    if (fm.n_layers) {
        fprintf(out, "flips       layer");
        for (int p = 0; p < XP_N_PROJ; p++)
            fprintf(out, " %5s", xp_proj_name(p));
        fprintf(out, "\n");
        for (size_t l = 0; l < fm.n_layers; l++) {
            fprintf(out, "            %5u", fm.layers[l]);
            for (int p = 0; p < XP_N_PROJ; p++)
                fprintf(out, " %5zu", fm.count[l][p]);
            fprintf(out, "\n");
        }
    }
    size_t nt = res->n_targets, nc = res->n_controls;
    fprintf(out, "gaps        targets: mean %+.4f -> %+.4f, above 0: %zu -> %zu of %zu\n",
            mean_of(res->base_gaps, nt), mean_of(res->final_gaps, nt),
            count_positive(res->base_gaps, nt), count_positive(res->final_gaps, nt), nt);
    if (nc)
        fprintf(out, "            controls: mean %+.4f -> %+.4f, above 0: %zu -> %zu of %zu\n",
                mean_of(res->base_gaps + nt, nc), mean_of(res->final_gaps + nt, nc),
                count_positive(res->base_gaps + nt, nc), count_positive(res->final_gaps + nt, nc),
                nc);
    size_t nv = res->n_validation;
    if (nv)
        fprintf(out, "            validation: mean %+.4f -> %+.4f, above 0: %zu -> %zu of %zu\n",
                mean_of(res->base_gaps + nt + nc, nv), mean_of(res->final_gaps + nt + nc, nv),
                count_positive(res->base_gaps + nt + nc, nv),
                count_positive(res->final_gaps + nt + nc, nv), nv);
    for (int i = 0; i < 5; i++)
        if (r->sets[i].set && r->sets[i].eval)
            print_set(out, &r->sets[i]);
    fflush(out);
}

/* ---- HTML ---- */

#define W 720
#define H 240
#define PAD 44

/* The best fitness after each iteration as a line, every measured candidate as a dot
 * (kept ones filled). */
static void fitness_svg(FILE *f, const search_report *r)
{
    double lo = INFINITY, hi = -INFINITY;
    size_t n = r->n_iters, last = n ? r->iters[n - 1].iter : 1;
    for (size_t i = 0; i < n; i++) {
        double v[2] = {r->iters[i].best, r->iters[i].fitness};
        for (int k = 0; k < 2; k++)
            if (isfinite(v[k]))
                lo = v[k] < lo ? v[k] : lo, hi = v[k] > hi ? v[k] : hi;
    }
    if (!(lo < hi))
        lo = isfinite(lo) ? lo - 1 : 0, hi = isfinite(hi) ? hi + 1 : 1;
    fprintf(f, "<svg viewBox='0 0 %d %d' width='%d' height='%d' role='img'>\n", W, H, W, H);
    fprintf(f, "<rect x='%d' y='10' width='%d' height='%d' fill='#fafafa' stroke='#ccc'/>\n", PAD,
            W - PAD - 10, H - PAD - 10);
#define X(i) (PAD + (double)(i) / (double)(last ? last : 1) * (W - PAD - 10))
#define Y(v) (10 + (hi - (v)) / (hi - lo) * (H - PAD - 10))
    fprintf(f, "<text x='4' y='18' font-size='11'>%.3g</text><text x='4' y='%d' "
               "font-size='11'>%.3g</text>\n", hi, H - PAD, lo);
    fprintf(f, "<text x='%d' y='%d' font-size='11'>iteration %zu</text>\n", W - 110, H - 18, last);
    if (lo < 0 && hi > 0)
        fprintf(f, "<line x1='%d' x2='%d' y1='%.1f' y2='%.1f' stroke='#bbb' "
                   "stroke-dasharray='4 3'/>\n", PAD, W - 10, Y(0), Y(0));
    for (size_t i = 0; i < n; i++)
        if (isfinite(r->iters[i].fitness))
            fprintf(f, "<circle cx='%.1f' cy='%.1f' r='%s' fill='%s'/>\n", X(r->iters[i].iter),
                    Y(r->iters[i].fitness), r->iters[i].accepted ? "3" : "1.6",
                    r->iters[i].accepted ? "#1a7f37" : "#999");
    fprintf(f, "<polyline fill='none' stroke='#0b5cad' stroke-width='2' points='");
    for (size_t i = 0; i < n; i++)
        if (isfinite(r->iters[i].best))
            fprintf(f, "%.1f,%.1f ", X(r->iters[i].iter), Y(r->iters[i].best));
    fprintf(f, "'/>\n</svg>\n");
#undef X
#undef Y
}

/* The training fitness (best so far) and the validation objective of the kept flips,
 * per iteration (by_flip false) or per kept flip (by_flip: the start, then each kept
 * flip), on one axis; under early-stop a mark where the final patch ends. */
static void curves_svg(FILE *f, const search_report *r, bool by_flip)
{
    size_t n = r->n_iters, k = 0, last = 1;
    double lo = INFINITY, hi = -INFINITY;
    for (size_t i = 0; i < n; i++) {
        const xp_search_iter *it = &r->iters[i];
        if (by_flip && !it->accepted)
            continue;
        k++;
        double v[2] = {it->best, it->validation_now};
        for (int j = 0; j < 2; j++)
            if (isfinite(v[j]))
                lo = v[j] < lo ? v[j] : lo, hi = v[j] > hi ? v[j] : hi;
    }
    double v0 = r->res->validation_base;
    if (isfinite(v0))
        lo = v0 < lo ? v0 : lo, hi = v0 > hi ? v0 : hi;
    last = by_flip ? (k ? k : 1) : (n ? r->iters[n - 1].iter : 1);
    if (!(lo < hi))
        lo = isfinite(lo) ? lo - 1 : 0, hi = isfinite(hi) ? hi + 1 : 1;
    fprintf(f, "<svg viewBox='0 0 %d %d' width='%d' height='%d' role='img'>\n", W, H, W, H);
    fprintf(f, "<rect x='%d' y='10' width='%d' height='%d' fill='#fafafa' stroke='#ccc'/>\n", PAD,
            W - PAD - 10, H - PAD - 10);
#define X(i) (PAD + (double)(i) / (double)last * (W - PAD - 10))
#define Y(v) (10 + (hi - (v)) / (hi - lo) * (H - PAD - 10))
    fprintf(f, "<text x='4' y='18' font-size='11'>%.3g</text><text x='4' y='%d' "
               "font-size='11'>%.3g</text>\n", hi, H - PAD, lo);
    fprintf(f, "<text x='%d' y='%d' font-size='11'>%s %zu</text>\n", W - 130, H - 18,
            by_flip ? "kept flip" : "iteration", last);
    fprintf(f, "<text x='%d' y='%d' font-size='11' fill='#0b5cad'>train (fitness)</text>"
               "<text x='%d' y='%d' font-size='11' fill='#b35900'>validation</text>\n", PAD,
            H - 18, PAD + 110, H - 18);
    if (r->opts->validation_rule == XP_VALIDATION_EARLY_STOP && by_flip)
        fprintf(f, "<line x1='%.1f' x2='%.1f' y1='10' y2='%d' stroke='#cf222e' "
                   "stroke-dasharray='4 3'><title>the final patch: %zu flips</title></line>\n",
                X(r->res->validation_best_flips), X(r->res->validation_best_flips), H - PAD,
                r->res->validation_best_flips);
    for (int line = 0; line < 2; line++) {
        fprintf(f, "<polyline fill='none' stroke='%s' stroke-width='2' points='",
                line ? "#b35900" : "#0b5cad");
        if (line && by_flip && isfinite(v0))
            fprintf(f, "%.1f,%.1f ", X(0), Y(v0));
        for (size_t i = 0, j = 0; i < n; i++) {
            const xp_search_iter *it = &r->iters[i];
            if (by_flip && !it->accepted)
                continue;
            double v = line ? it->validation_now : it->best;
            j++;
            if (isfinite(v))
                fprintf(f, "%.1f,%.1f ", X(by_flip ? j : it->iter), Y(v));
        }
        fprintf(f, "'/>\n");
    }
    fprintf(f, "</svg>\n");
#undef X
#undef Y
}

/* Acceptance rate over a sliding window of iterations. */
static void acceptance_svg(FILE *f, const search_report *r)
{
    size_t n = r->n_iters, win = n < 20 ? (n ? n : 1) : 20;
    fprintf(f, "<svg viewBox='0 0 %d %d' width='%d' height='%d' role='img'>\n", W, H / 2, W, H / 2);
    fprintf(f, "<rect x='%d' y='10' width='%d' height='%d' fill='#fafafa' stroke='#ccc'/>\n", PAD,
            W - PAD - 10, H / 2 - 30);
    fprintf(f, "<text x='4' y='18' font-size='11'>100%%</text><text x='4' y='%d' "
               "font-size='11'>0%%</text>\n", H / 2 - 20);
    fprintf(f, "<polyline fill='none' stroke='#b35900' stroke-width='2' points='");
    size_t acc = 0;
    for (size_t i = 0; i < n; i++) {
        acc += r->iters[i].accepted;
        if (i >= win)
            acc -= r->iters[i - win].accepted;
        size_t span = i + 1 < win ? i + 1 : win;
        fprintf(f, "%.1f,%.1f ", PAD + (double)i / (double)(n > 1 ? n - 1 : 1) * (W - PAD - 10),
                10 + (1 - (double)acc / (double)span) * (H / 2 - 30));
    }
    fprintf(f, "'/>\n</svg>\n");
}

static void flips_svg(FILE *f, const flip_map *fm)
{
    static const char *colors[XP_N_PROJ] = {"#0b5cad", "#1a7f37", "#b35900", "#8250df",
                                            "#cf222e", "#57606a", "#bf8700"};
    int bar = 14, h = (int)fm->n_layers * (bar + 6) + 40;
    fprintf(f, "<svg viewBox='0 0 %d %d' width='%d' height='%d' role='img'>\n", W, h, W, h);
    size_t max_row = 1;
    for (size_t l = 0; l < fm->n_layers; l++) {
        size_t s = 0;
        for (int p = 0; p < XP_N_PROJ; p++)
            s += fm->count[l][p];
        max_row = s > max_row ? s : max_row;
    }
    for (size_t l = 0; l < fm->n_layers; l++) {
        double x = 80, y = 10 + (double)l * (bar + 6);
        fprintf(f, "<text x='4' y='%.0f' font-size='12'>layer %u</text>\n", y + bar - 2,
                fm->layers[l]);
        for (int p = 0; p < XP_N_PROJ; p++) {
            double w = (double)fm->count[l][p] / (double)max_row * (W - 140);
            if (fm->count[l][p])
                fprintf(f, "<rect x='%.1f' y='%.0f' width='%.1f' height='%d' fill='%s'><title>%s: "
                           "%zu</title></rect>\n", x, y, w, bar, colors[p], xp_proj_name(p),
                        fm->count[l][p]);
            x += w;
        }
    }
    double x = 80;
    for (int p = 0; p < XP_N_PROJ; p++) {
        fprintf(f, "<rect x='%.0f' y='%d' width='10' height='10' fill='%s'/><text x='%.0f' y='%d' "
                   "font-size='11'>%s</text>\n", x, h - 20, colors[p], x + 14, h - 11,
                xp_proj_name(p));
        x += 70;
    }
    fprintf(f, "</svg>\n");
}

/* Each probe's gap before (hollow) and after (filled) on one shared axis. */
static void gaps_svg(FILE *f, const double *before, const double *after, size_t n,
                     const char *const *names)
{
    double lo = 0, hi = 0;
    for (size_t i = 0; i < n; i++) {
        double v[2] = {before[i], after[i]};
        for (int k = 0; k < 2; k++)
            lo = v[k] < lo ? v[k] : lo, hi = v[k] > hi ? v[k] : hi;
    }
    if (!(hi > lo))
        hi = lo + 1;
    int row = 14, h = (int)n * row + 30;
    fprintf(f, "<svg viewBox='0 0 %d %d' width='%d' height='%d' role='img'>\n", W, h, W, h);
#define GX(v) (200 + ((v) - lo) / (hi - lo) * (W - 220))
    fprintf(f, "<line x1='%.1f' x2='%.1f' y1='5' y2='%d' stroke='#888'/>\n", GX(0), GX(0), h - 20);
    fprintf(f, "<text x='200' y='%d' font-size='11'>%.3g</text><text x='%d' y='%d' "
               "font-size='11' text-anchor='end'>%.3g</text>\n", h - 6, lo, W - 20, h - 6, hi);
    for (size_t i = 0; i < n; i++) {
        double y = 12 + (double)i * row;
        const char *color = after[i] > before[i] ? "#1a7f37" : after[i] < before[i] ? "#cf222e"
                                                                                     : "#888";
        fprintf(f, "<text x='4' y='%.0f' font-size='11'>", y + 4);
        xp_html_put(f, names ? names[i] : "");
        fprintf(f, "</text><line x1='%.1f' x2='%.1f' y1='%.0f' y2='%.0f' stroke='%s'/>"
                   "<circle cx='%.1f' cy='%.0f' r='3.5' fill='white' stroke='%s'/>"
                   "<circle cx='%.1f' cy='%.0f' r='3.5' fill='%s'><title>%.4f -> %.4f</title>"
                   "</circle>\n", GX(before[i]), GX(after[i]), y, y, color, GX(before[i]), y, color,
                GX(after[i]), y, color, before[i], after[i]);
    }
#undef GX
    fprintf(f, "</svg>\n");
}

static void set_table(FILE *f, const search_report_set *rs)
{
    const xp_eval *e = rs->eval;
    const xp_probe_set *s = rs->set;
    const xp_paired *pr = &e->overall;
    fprintf(f, "<h2>%s</h2>\n<p>", rs->label);
    xp_html_put(f, s->path);
    fprintf(f, ": right %zu &rarr; %zu of %zu (%.1f%% [%.1f, %.1f] &rarr; %.1f%% [%.1f, %.1f], "
               "Wilson 95%%); fixed %zu, broke %zu, stayed right %zu, stayed wrong %zu; exact "
               "McNemar p = %.3g</p>\n", pr->stayed_right + pr->broke, pr->stayed_right + pr->fixed,
            pr->n, 100 * pr->acc[0],
            100 * pr->lo[0], 100 * pr->hi[0], 100 * pr->acc[1], 100 * pr->lo[1], 100 * pr->hi[1],
            pr->fixed, pr->broke, pr->stayed_right, pr->stayed_wrong, pr->mcnemar_p);
    fprintf(f, "<table><tr><th>probe</th><th>category</th><th>gap before</th><th>gap after</th>"
               "<th>output before</th><th>output after</th><th>outcome</th></tr>\n");
    for (size_t i = 0; i < s->n; i++) {
        const xp_eval_probe *p = &e->probes[i];
        const char *oc = xp_outcome_name(p->right[0], p->right[1]);
        fprintf(f, "<tr class='%s'><td>", !strcmp(oc, "fixed") ? "fix" : !strcmp(oc, "broke")
                                                                            ? "broke" : "");
        xp_html_put(f, s->probes[i].name);
        fprintf(f, "</td><td>");
        xp_html_put(f, s->probes[i].category);
        fprintf(f, "</td><td>%+.3f</td><td>%+.3f</td><td><code>", p->gap[0], p->gap[1]);
        xp_html_put(f, p->output[0] ? p->output[0] : "-");
        fprintf(f, "</code></td><td><code>");
        xp_html_put(f, p->output[1] ? p->output[1] : "-");
        fprintf(f, "</code></td><td>%s</td></tr>\n", oc);
    }
    fprintf(f, "</table>\n");
}

int search_report_html(const char *path, const search_report *r, xp_err *err)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f)
        return xp_err_set(err, XP_ENOMEM, "out of memory");
    const xp_search_result *res = r->res;
    fprintf(f, "<!doctype html>\n<html><head><meta charset='utf-8'><title>xorpatch search: ");
    xp_html_put(f, r->patch_path);
    fprintf(f, "</title>\n<style>body{font:14px/1.45 system-ui,sans-serif;max-width:980px;"
               "margin:2em auto;padding:0 1em;color:#222}table{border-collapse:collapse;"
               "font-size:12px}td,th{border-bottom:1px solid #ddd;padding:2px 6px;text-align:"
               "left}tr.fix{background:#e6f4ea}tr.broke{background:#fde7e9}code{font-size:12px}"
               "pre{background:#f6f8fa;padding:8px}</style></head><body>\n");
    fprintf(f, "<h1>Search report</h1>\n<pre>");
    char *text = NULL;
    size_t tlen = 0;
    FILE *t = open_memstream(&text, &tlen);
    if (t) {
        search_report rr = *r;
        for (int i = 0; i < 5; i++)
            rr.sets[i].eval = NULL; /* the summary only; the sets have their own tables */
        search_report_print(t, &rr);
        fclose(t);
        xp_html_put(f, text);
        free(text);
    }
    fprintf(f, "</pre>\n<h2>Fitness</h2>\n<p>Best fitness after each iteration (line) and each "
               "measured candidate (dots; kept ones green and larger).</p>\n");
    fitness_svg(f, r);
    if (res->n_validation) {
        fprintf(f, "<h2>Train and validation</h2>\n<p>The training fitness (best so far) and "
                   "the validation objective of the kept flips (%zu probes never searched, "
                   "rule %s), per iteration and per kept flip.</p>\n",
                res->n_validation, xp_validation_rule_name(r->opts->validation_rule));
        curves_svg(f, r, false);
        curves_svg(f, r, true);
    }
    size_t changed[4], kept;
    sign_changes(r, changed, &kept);
    fprintf(f, "<p>Flip accounting: %zu of %zu kept flips changed some probe's sign "
               "(targets %zu, controls %zu, validation %zu).</p>\n",
            changed[3], kept, changed[0], changed[1], changed[2]);
    fprintf(f, "<h2>Acceptance</h2>\n<p>Share of kept flips over the last 20 iterations.</p>\n");
    acceptance_svg(f, r);
    flip_map fm;
    map_flips(res->patch, &fm);
    if (fm.n_layers) {
        fprintf(f, "<h2>Kept flips per layer and projection</h2>\n");
        flips_svg(f, &fm);
    }
    fprintf(f, "<h2>Gaps of the searched probes</h2>\n<p>Before (hollow) and after (filled); "
               "right of the line the model prefers the correct answer.</p>\n<h3>targets</h3>\n");
    gaps_svg(f, res->base_gaps, res->final_gaps, res->n_targets, r->target_names);
    if (res->n_controls) {
        fprintf(f, "<h3>controls</h3>\n");
        gaps_svg(f, res->base_gaps + res->n_targets, res->final_gaps + res->n_targets,
                 res->n_controls, r->control_names);
    }
    if (res->n_validation) {
        fprintf(f, "<h3>validation</h3>\n");
        size_t at = res->n_targets + res->n_controls;
        gaps_svg(f, res->base_gaps + at, res->final_gaps + at, res->n_validation,
                 r->validation_names);
    }
    for (int i = 0; i < 5; i++)
        if (r->sets[i].set && r->sets[i].eval)
            set_table(f, &r->sets[i]);
    fprintf(f, "</body></html>\n");
    if (fclose(f) || !buf) {
        free(buf);
        return xp_err_set(err, XP_ENOMEM, "out of memory for the report");
    }
    int rc = xp_write_file_atomic(path, buf, len, err);
    free(buf);
    return rc;
}
