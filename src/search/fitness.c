/* The search's fitness rules, exactly as SPEC §8 gives them. Gaps arrays hold the
 * targets, then the controls. mean and min are baseline-relative with a penalty of λ
 * times the mean control loss; borderline sums a squashed gap per target so the pressure
 * sits on targets near zero; focused is lexicographic: move the unsolved target nearest
 * its boundary, break no solved target and lose no control by more than ε, nor a right control
 * at all: ε never takes one across zero. */
#include <math.h>
#include <string.h>

#include "search/search_int.h"

static const char *const fitness_names[] = {"mean", "min", "borderline", "focused"};
static const char *const granularity_names[] = {"row", "block", "scale-bit"};
static const char *const validation_rule_names[] = {"keep", "early-stop"};
static const char *const role_names[] = {"target", "control", "validation"};
static const char *const proposal_names[] = {"scale", "uniform", "gradient"};

static int find(const char *const *names, int n, const char *name)
{
    for (int i = 0; i < n && name; i++)
        if (!strcmp(names[i], name))
            return i;
    return -1;
}

#define NAMED(fn_name, fn_from, table)                                                             \
    const char *fn_name(int v)                                                                     \
    {                                                                                              \
        int n = (int)(sizeof table / sizeof table[0]);                                             \
        return v >= 0 && v < n ? table[v] : "?";                                                   \
    }                                                                                              \
    int fn_from(const char *name)                                                                  \
    {                                                                                              \
        return find(table, (int)(sizeof table / sizeof table[0]), name);                           \
    }
NAMED(xp_fitness_name, xp_fitness_from_name, fitness_names)
NAMED(xp_granularity_name, xp_granularity_from_name, granularity_names)
NAMED(xp_proposal_name, xp_proposal_from_name, proposal_names)
NAMED(xp_validation_rule_name, xp_validation_rule_from_name, validation_rule_names)

const char *xp_search_role_name(int role) { return role >= 0 && role < 3 ? role_names[role] : "?"; }

/* λ · mean over controls of max(0, b − g). */
static double control_penalty(const xp_fitness_ctx *f, const double *g)
{
    if (f->nc == 0)
        return 0;
    double loss = 0;
    for (size_t c = f->nt; c < f->nt + f->nc; c++)
        loss += f->base[c] > g[c] ? f->base[c] - g[c] : 0;
    return f->lambda * loss / (double)f->nc;
}

double xp_fitness_value(const xp_fitness_ctx *f, const double *g)
{
    if (f->kind == XP_FITNESS_BORDERLINE) {
        double sum = 0;
        long fixes = 0, breaks = 0, breaks_c = 0;
        for (size_t t = 0; t < f->nt; t++) {
            sum += g[t] / (0.1 + fabs(g[t]));
            fixes += f->base[t] <= 0 && g[t] > 0;
            breaks += f->base[t] > 0 && g[t] <= 0;
        }
        for (size_t c = f->nt; c < f->nt + f->nc; c++)
            breaks_c += f->base[c] > 0 && g[c] <= 0;
        return sum + 0.5 * (double)(fixes - breaks) - f->lambda * (double)breaks_c;
    }
    double agg = f->kind == XP_FITNESS_MIN ? INFINITY : 0;
    for (size_t t = 0; t < f->nt; t++) {
        double d = g[t] - f->base[t];
        if (f->kind == XP_FITNESS_MIN)
            agg = d < agg ? d : agg;
        else
            agg += d;
    }
    if (f->nt == 0)
        agg = 0;
    else if (f->kind != XP_FITNESS_MIN)
        agg /= (double)f->nt;
    return agg - control_penalty(f, g);
}

long xp_focused_target(const xp_fitness_ctx *f, const double *cur)
{
    long best = -1;
    for (size_t t = 0; t < f->nt; t++)
        if (!f->solved[t] && cur[t] <= 0 && (best < 0 || fabs(cur[t]) < fabs(cur[best])))
            best = (long)t;
    return best;
}

bool xp_focused_accept(const xp_fitness_ctx *f, const double *cur, const double *g, size_t p)
{
    if (!(g[p] > cur[p]))
        return false;
    for (size_t t = 0; t < f->nt; t++)
        if (f->solved[t] && !(g[t] > 0))
            return false;
    for (size_t c = f->nt; c < f->nt + f->nc; c++)
        if (!(g[c] >= f->base[c] - f->epsilon) || (f->base[c] > 0 && !(g[c] > 0)))
            return false; /* the slack never takes a right control across zero */
    return true;
}
