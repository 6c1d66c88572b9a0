/* The parts of the search that search.c puts together: candidate proposal (propose.c),
 * fitness and screening rules (fitness.c) and gap measurement over a probe batch
 * (gaps.c). */
#ifndef XP_SEARCH_INT_H
#define XP_SEARCH_INT_H
#include "core/rng.h"
#include "xorpatch/search.h"

/* ---- proposal ---- */

/* One (layer, projection) tensor the search may flip, with its items' cumulative
 * proposal weights (rows or blocks; NULL for uniform proposals). */
typedef struct xp_unit {
    uint32_t layer;
    int proj;
    xp_weight *w;
    int64_t n_items;
    double *cum, total;
} xp_unit;

/* A candidate with its first-order estimate of the objective's change (gradient.c), and
 * its place in the enumeration (ties keep that order). */
typedef struct xp_ranked {
    xp_candidate c;
    double estimate;
    size_t order;
} xp_ranked;

typedef struct xp_proposer {
    xp_unit *units;
    size_t n_units;
    int granularity, proposal;
    double scale_ratio;
    int bit_min, bit_max;
    double total; /* sum of the units' totals (item counts when uniform) */
    xp_rng rng;
    uint64_t *tried; /* open-addressing set of candidate keys (0 = empty) */
    size_t tried_cap, n_tried;
    /* gradient proposals: every candidate, best estimate first, walked from next_rank */
    xp_ranked *ranked;
    size_t n_ranked, next_rank;
    size_t rerank_every, accepts; /* accepts since the ranking */
    bool stale;            /* rank (again) before the next proposal */
    long ranked_focal;     /* focused: the target the ranking is for */
    double estimate;       /* the last proposal's estimate (NAN unless gradient) */
    xp_candidate *back; /* given back (xp_proposer_unget), the next first: a stack */
    size_t n_back, cap_back;
    bool exhausted; /* a draw found nothing left: so do the later ones */
} xp_proposer;

/* Weights come from the model as it is now (the base) and stay fixed, so the sequence
 * of proposals depends on the seed alone and a resumed search can replay it. */
int xp_proposer_init(xp_proposer *p, xp_model *m, const xp_search_opts *o, const uint32_t *layers,
                     size_t n_layers, xp_err *err);
void xp_proposer_free(xp_proposer *p);
/* The next untried candidate; false when none is left (after many draws), and from
 * then on. */
bool xp_proposer_next(xp_proposer *p, xp_candidate *c);
/* Gives back a candidate drawn but not evaluated, newest first: the next draws return
 * them again, in the order they were first drawn, as if they had never been drawn (a
 * team's leader draws ahead, and gives back what a kept flip made stale). A proposer
 * whose order depends on the kept flips must keep this promise too: the candidates after
 * a kept flip are what a lone search would draw after it (gradient proposals: each is
 * untried again and the walk of the ranking goes back to it). XP_ENOMEM when there is no
 * room; XP_EINVAL when a gradient candidate is not one of the ranking's drawn. */
int xp_proposer_unget(xp_proposer *p, const xp_candidate *c);
/* Marks a candidate as tried (for a resumed patch's flips). */
void xp_proposer_mark(xp_proposer *p, const xp_candidate *c);
/* Counts an accepted flip: gradient proposals rank again after rerank_every of them. */
void xp_proposer_accepted(xp_proposer *p);
/* The candidate as a flip of its tensor (kind, index, bit). */
xp_flip xp_candidate_as_flip(const xp_candidate *c);

/* The projections a search with o flips, as bits 1 << enum xp_proj (default gate, up). */
unsigned xp_search_projs(const xp_search_opts *o);
/* The layers a search with o flips, ascending and distinct (o->layers, else 1..4 and
 * n_layer-2, those below n_layer), into out (room for n_layer); returns their count. */
size_t xp_search_layers(const xp_model *m, const xp_search_opts *o, uint32_t *out);

/* ---- fitness ---- */

typedef struct xp_fitness_ctx {
    int kind;
    double lambda, epsilon;
    size_t nt, nc;      /* targets, controls: gaps arrays are targets then controls */
    const double *base; /* baseline gaps */
    bool *solved;       /* focused: targets in S */
} xp_fitness_ctx;

/* mean, min, borderline: the fitness of gaps g. */
double xp_fitness_value(const xp_fitness_ctx *f, const double *g);
/* focused: the target to move (p*), or -1 when every target is solved. */
long xp_focused_target(const xp_fitness_ctx *f, const double *cur);
/* focused: whether g is accepted over cur with focal target p. */
bool xp_focused_accept(const xp_fitness_ctx *f, const double *cur, const double *g, size_t p);

/* ---- gradient-ranked proposals (gradient.c) ---- */

/* The search objective's gradient over the searched tensors: one forward and one
 * backward pass of the trainer over the model's current weights give, per block, the sum
 * S of sign times d objective / d weight, from which every candidate's first-order change
 * of the objective follows (a row flip: -2 d S summed over the row's blocks; a block
 * flip: -2 d S; a scale bit: (d' - d) S, d the block's fp16 scale). The targets' part of
 * the fitness is linearised: sum over targets of w_t gap_t, w_t = d fitness / d gap_t at
 * the current gaps (xp_gradient_weights). The control penalty of mean and min, a sum of
 * hinges max(0, b - g) that is flat at the base, is not: each control gets a backward
 * pass of its own, and the estimate puts each control's linear change through its hinge
 * (xp_gradient_estimate). pt: nt targets, then nc controls. */
typedef struct xp_gradient xp_gradient;
int xp_gradient_new(xp_gradient **out, xp_model *m, const xp_probe_tokens **pt, size_t nt,
                    size_t nc, xp_metric metric, const xp_proposer *p, xp_err *err);
void xp_gradient_free(xp_gradient *g);
/* d fitness / d gap of every target at gaps cur; focal: focused's target. mean: 1/nt;
 * min: 1 for the target of the least gain (ties: the first); borderline: the squashing's
 * slope (its fix and break counts are steps: 0); focused: 1 for the focal target alone
 * (its other rules are constraints, left to the exact measurement). */
void xp_gradient_weights(const xp_fitness_ctx *f, const double *cur, long focal, double *w);
/* Whether the estimates model the control penalty (mean and min with λ > 0 and
 * controls): borderline's control term is a count of crossings, focused's a constraint. */
bool xp_gradient_models_penalty(const xp_fitness_ctx *f);
/* The gradient at the model's current weights for the fitness at gaps cur (*value: the
 * targets' linearised objective as the pass measured it); then any candidate of the
 * proposer's units has its estimate, the first-order change of the fitness. */
int xp_gradient_pass(xp_gradient *g, const xp_fitness_ctx *f, const double *cur, long focal,
                     double *value, xp_err *err);
double xp_gradient_estimate(const xp_gradient *g, const xp_candidate *c);
/* Ranks the proposer again when it is stale or its focal target changed: a pass, then
 * every candidate of its units, best estimate first. */
int xp_gradient_refresh(xp_gradient *g, xp_proposer *p, const xp_fitness_ctx *f,
                        const double *cur, long focal, xp_err *err);

/* ---- gaps ---- */

/* Gaps of a fixed set of probes, measured again and again. */
typedef struct xp_gauge {
    xp_model *m;
    const xp_probe_tokens **pt; /* [n] */
    size_t n;
    xp_metric metric;
    bool naive;
    xp_tree_batch *tb; /* fast: one item per probe */
    int32_t *row_of;   /* fast: [2n] where each probe's two compared ids are in
                          the LM-head row subset */
    float *logits;     /* naive: one sequence's logits */
    size_t logits_cap;
} xp_gauge;

/* ckpt: the layers a flip may touch (kept residuals); mlp: flips may touch their MLP
 * projections (their mid-points and activations are kept too). */
int xp_gauge_init(xp_gauge *g, xp_model *m, const xp_probe_tokens **pt, size_t n, xp_metric metric,
                  bool naive, const uint32_t *ckpt, size_t n_ckpt, bool mlp, xp_err *err);
void xp_gauge_free(xp_gauge *g);
/* gaps[i] for probe sel[i] (every probe, in order, when sel is NULL). change: how the
 * weights differ from the last commit (NULL: nothing is assumed). */
int xp_gauge_run(xp_gauge *g, const size_t *sel, size_t n_sel, const xp_tree_change *change,
                 double *gaps, xp_err *err);
/* Tokens a run over every probe computes. */
size_t xp_gauge_tokens(const xp_gauge *g);
/* What flipping candidate c changes, for xp_gauge_run: when its kind changes one output
 * row of an MLP projection whose rows are activation columns (gate, up), that row;
 * within the MLP's down projection, the down projection; else the whole layer. */
xp_tree_change xp_candidate_change(const xp_model *m, const xp_candidate *c);
/* The weights of the last run over every probe are kept (see xp_tree_batch_commit). */
void xp_gauge_commit(xp_gauge *g);
#endif
