/* xorpatch's evaluation layer: paired statistics, a probe set measured before and after
 * patches, task benchmarks, and the experiments (random flips, layer map,
 * scale-vs-random, stacking, null baseline). */
#ifndef XORPATCH_EVAL_H
#define XORPATCH_EVAL_H

#include "xorpatch/search.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- evaluation statistics ------------------------------------------------- */

/* Wilson score interval for k successes in n at 95% (z = 1.959964); [0, 0] for n = 0. */
void xp_wilson(size_t k, size_t n, double *lo, double *hi);
/* Exact two-sided McNemar test on the discordant pairs b and c: 2·P(X ≤ min(b, c)) for
 * X ~ Binomial(b + c, 1/2), capped at 1 (1 when b + c = 0). */
double xp_mcnemar_exact(size_t b, size_t c);
/* 95% Wald interval for the paired difference of proportions (b − c) / n. */
void xp_paired_diff_ci(size_t b, size_t c, size_t n, double *diff, double *lo, double *hi);
/* Spearman's rank correlation of n pairs (ties get their mean rank; NAN when n < 2 or
 * either side is constant). */
double xp_spearman(const double *x, const double *y, size_t n);

/* Paired right/wrong outcomes of n items before and after (base, patched). */
typedef struct xp_paired {
    size_t n, fixed, broke, stayed_right, stayed_wrong;
    double acc[2], lo[2], hi[2]; /* accuracy base / patched with Wilson 95% */
    double mcnemar_p;            /* exact, on fixed vs broke */
    double diff, diff_lo, diff_hi; /* patched − base, 95% */
} xp_paired;
/* select may be NULL (every item). */
void xp_paired_tally(const bool *before, const bool *after, const bool *select, size_t n,
                     xp_paired *out);

/* ---- evaluation ---------------------------------------------------------------- */

typedef struct xp_eval_probe {
    double gap[2];      /* seq_logprob gap (or the metric's) base / patched */
    char *output[2];    /* greedy generations (NULL without generation) */
    bool right[2];      /* by the set's matcher; by gap > 0 without generation (answer_logprob:
                           by margin > 0) */
    int verbatim[2];    /* enum xp_verbatim, -1 for other sets */
} xp_eval_probe;
typedef struct xp_eval_opts {
    xp_metric metric;   /* for the gaps; generation metric means seq_logprob gaps */
    bool generate;      /* judge by generation (else by gap sign) */
    size_t max_tokens;  /* 0: the set's */
    xp_progress_fn progress; /* generations finished, per side; may be NULL */
    void *progress_ctx;
} xp_eval_opts;
typedef struct xp_eval {
    size_t n;
    xp_eval_probe *probes;
    xp_paired overall;  /* right before / after */
    xp_paired by_gap;   /* gap > 0 before / after */
    size_t verbatim[4][4]; /* [base][patched] counts, verbatim sets */
} xp_eval;
/* Measures the set on the model as it is, applies the patches in order, measures
 * again, reverts them (also on failure). Without patches the patched side is the base. */
int xp_eval_run(xp_model *m, const xp_probe_set *s, const xp_probe_tokens *pt,
                xp_patch *const *ps, size_t n_ps, const xp_eval_opts *o, xp_eval *out,
                xp_err *err);
void xp_eval_free(xp_eval *e);

/* ---- the random-patch baseline ----------------------------------------------------- */

/* The permutation p-value of a gain against n random gains, with the +1 correction:
 * (1 + #{random[i] >= observed}) / (1 + n). */
double xp_permutation_p(long observed, const long *random, size_t n);
/* A random patch like p (bound to g's model): the same tensors, and per tensor the same
 * number of flips of each kind (scale flips keep their bit, masks their mask) at
 * distinct random places, no two sign-bit flips of different kinds in one row, so its
 * canonical form has exactly p's counts. The same seed gives the same patch. */
int xp_random_like_patch(const xp_patch *p, const xp_gguf *g, uint64_t seed, xp_patch **out,
                         xp_err *err);
typedef struct xp_random_baseline {
    size_t n;            /* random patches */
    uint64_t seed;
    long observed;       /* the patch's fixed − broke on the set */
    long *random;        /* [n] each random patch's fixed − broke */
    size_t at_least;     /* random patches with a gain >= observed */
    double p;            /* xp_permutation_p */
} xp_random_baseline;
/* The patch and n random patches like it (seeded by seed and their index alone), each
 * judged on the set as xp_eval_run judges (the base once); progress counts patches. */
int xp_random_baseline_run(xp_model *m, const xp_probe_set *s, const xp_probe_tokens *pt,
                           xp_patch *patch, const xp_eval_opts *o, size_t n, uint64_t seed,
                           xp_random_baseline *out, xp_err *err);
void xp_random_baseline_free(xp_random_baseline *b);

/* ---- task benchmarks -------------------------------------------------------------- */

/* A JSONL task file read in: one {"prompt", "answer"} per line, of a kind (enum
 * xp_task_kind) that says how xp_task_score scores its outputs. */
typedef struct xp_task_set {
    size_t n;
    char **prompts, **answers;
    int kind;            /* NUMBER or CHOICE after loading */
    char *path;
} xp_task_set;
int xp_task_set_load(xp_task_set **out, const char *path, int kind, xp_err *err);
void xp_task_set_free(xp_task_set *t);

typedef struct xp_task_opts {
    bool chat;            /* prompts as the user turn of the chat template */
    const char *system;   /* with chat: a system message, or NULL */
    size_t max_tokens;
    bool stop_newline;
    xp_progress_fn progress; /* finished generations (per side) */
    void *progress_ctx;
} xp_task_opts;
typedef struct xp_task_result {
    size_t n;
    char **output[2];     /* greedy outputs without / with the patches */
    bool *right[2];
    xp_paired paired;     /* right without → with */
} xp_task_result;
/* Runs every task greedily (batched) without and then with the patches (applied in
 * order, reverted after, also on failure); no patch: both sides are the base. */
int xp_task_run(xp_model *m, const xp_task_set *t, xp_patch *const *ps, size_t n_ps,
                const xp_task_opts *o, xp_task_result *r, xp_err *err);
void xp_task_result_free(xp_task_result *r);

/* ---- experiments ---------------------------------------------------------------- */

/* The anchors' experiments (SPEC §6-§8), each a seeded, deterministic measurement that
 * leaves the model as it was given: every random or whole-layer change is made in the
 * model's private map and reverted before the function returns, also on failure. "MLP"
 * means the ffn_gate, ffn_up and ffn_down tensors of every layer. */

/* How the gaps of n probes moved from base to after. */
typedef struct xp_delta_stats {
    double mean, mean_abs, max_abs; /* of after − base */
    size_t right_before, right_after; /* gap > 0 */
    size_t crossed;                  /* probes whose gap changed sign (> 0 vs ≤ 0) */
} xp_delta_stats;
void xp_delta_stats_of(const double *base, const double *after, size_t n, xp_delta_stats *out);

/* A patch of count distinct random flips drawn uniformly over the MLP: kind XP_FLIP_MASK
 * flips single sign bits (one-bit masks), XP_FLIP_ROW whole rows, XP_FLIP_BLOCK 128-bit
 * blocks. Bound to the model; a count above the number of such items is XP_EINVAL. */
int xp_exp_random_mlp_patch(xp_model *m, int kind, size_t count, uint64_t seed, xp_patch **out,
                            xp_err *err);

/* random-flips: perplexity of the base, then for every kind × count × trial with a
 * patch from xp_exp_random_mlp_patch, seeded by (seed, kind, count, trial) alone (so a
 * point does not depend on which others are run), applied, measured, reverted. */
typedef struct xp_random_flips_opts {
    const int *kinds;     /* XP_FLIP_MASK (bits), XP_FLIP_ROW, XP_FLIP_BLOCK */
    size_t n_kinds;
    const size_t *counts; /* 0 is allowed: the base again */
    size_t n_counts;
    size_t trials;        /* at least 1 */
    uint64_t seed;
    xp_perplexity_opts ppl; /* chunking; its progress counts finished points instead */
} xp_random_flips_opts;
typedef struct xp_random_flips_point {
    int kind;
    size_t count, trial;
    uint64_t bits;        /* sign bits flipped */
    double perplexity;
} xp_random_flips_point;
typedef struct xp_random_flips {
    xp_perplexity_result base;
    size_t n;             /* n_kinds * n_counts * trials, kinds outermost, trials innermost */
    xp_random_flips_point *points;
} xp_random_flips;
int xp_exp_random_flips(xp_model *m, const int32_t *ids, size_t n_ids,
                        const xp_random_flips_opts *o, xp_random_flips *out, xp_err *err);
void xp_random_flips_free(xp_random_flips *r);

/* The flip set of layer-map: every row of the chosen projections of one layer (projs: bit
 * 1 << XP_PROJ_*; 0 means gate, up and down), which XORs every sign bit of them. */
int xp_exp_layer_patch(xp_model *m, uint32_t layer, unsigned projs, xp_patch **out,
                       xp_err *err);
/* layer-map: the probes' gaps on the base, then with each layer's flip set applied
 * alone. */
typedef struct xp_layer_map {
    size_t n_layers, n_probes;
    uint32_t *layers;
    double *base;          /* [n_probes] */
    double *after;         /* [n_layers][n_probes] */
    xp_delta_stats *stats; /* [n_layers] */
} xp_layer_map;
int xp_exp_layer_map(xp_model *m, const xp_probe_tokens *pt, size_t n, xp_metric metric,
                     const uint32_t *layers, size_t n_layers, unsigned projs,
                     xp_progress_fn progress, void *progress_ctx, xp_layer_map *out,
                     xp_err *err);
void xp_layer_map_free(xp_layer_map *r);

/* scale-vs-random: samples candidates two ways with the search's own proposer (o's
 * layers, projs, granularity and seed; its proposal is overridden): [0] drawn with
 * probability ∝ mean |scale| (the search's default), [1] uniformly. Each candidate is
 * flipped alone and its impact is the mean |Δgap| over the probes. */
typedef struct xp_scale_vs_random {
    size_t samples, n_probes;
    double *base;               /* [n_probes] */
    xp_candidate *cand[2];      /* [samples] */
    double *impact[2];          /* [samples] */
    double *scale[2];           /* [samples] mean |d| of the candidate's row or block */
    double mean_impact[2], mean_scale[2];
    double ratio;               /* mean_impact[0] / mean_impact[1] (NAN when 0) */
} xp_scale_vs_random;
int xp_exp_scale_vs_random(xp_model *m, const xp_probe_tokens *pt, size_t n,
                           const xp_search_opts *o, size_t samples, xp_progress_fn progress,
                           void *progress_ctx, xp_scale_vs_random *out, xp_err *err);
void xp_scale_vs_random_free(xp_scale_vs_random *r);

/* stacking: the probes' gaps on the base, with each patch alone, and with all of them
 * stacked by XOR (xp_patch_stack; force as there). Overlapping bits cancel. */
typedef struct xp_stacking {
    size_t n_patches, n_probes;
    double *base;               /* [n_probes] */
    double *after;              /* [n_patches + 1][n_probes]: each alone, then stacked */
    xp_delta_stats *stats;      /* [n_patches + 1] */
    uint64_t bits_in, bits_out; /* sign and scale bits of the patches, and of the stack */
    double interaction;         /* mean over probes of |Δstack − Σ Δalone| */
} xp_stacking;
int xp_exp_stacking(xp_model *m, const xp_probe_tokens *pt, size_t n, xp_metric metric,
                    xp_patch *const *ps, size_t n_ps, bool force, xp_stacking *out,
                    xp_err *err);
void xp_stacking_free(xp_stacking *r);

/* Flips every MLP sign bit of the model with probability 1/2 (independently, seeded);
 * scales, norms, attention and embeddings are kept. This changes the model's map for
 * good (it is private: the file is never touched), so it is meant for a second model
 * opened on the same file. */
int xp_exp_randomize_mlp_signs(xp_model *m, uint64_t seed, xp_err *err);
/* null-baseline: the same search (o) on the trained model and on random, a second model
 * opened on the same file whose MLP signs this randomises with random_seed; acceptance
 * rates accepted / iterations with Wilson 95% intervals ([0] trained, [1] randomised). */
typedef struct xp_null_baseline {
    xp_search_result run[2];
    double rate[2], lo[2], hi[2];
} xp_null_baseline;
int xp_exp_null_baseline(xp_model *m, xp_model *random, const xp_probe_tokens *targets,
                         size_t n_targets, const xp_probe_tokens *controls, size_t n_controls,
                         const xp_search_opts *o, uint64_t random_seed, xp_null_baseline *out,
                         xp_err *err);
void xp_null_baseline_free(xp_null_baseline *r);

/* proposal-efficiency: the same search (o) with gradient-ranked proposals and with
 * `baseline` proposals (scale or uniform), each run to o's iterations; how many exact
 * evaluations (iterations, and probe measurements) and seconds each needed to reach the
 * same fitness, `target` or, when NULL, the smaller of the two final ones (reached by
 * neither when it is not above the start); and, with a
 * held-out set, each patch's held-out fixed / broke (by gap sign) with McNemar's p.
 * Fitness mean, min or borderline: focused's "best" is a focal gap, not one objective. */
typedef struct xp_proposal_run {
    int proposal;               /* enum xp_proposal */
    xp_search_result res;
    size_t n;                   /* iterations recorded */
    double *best;               /* [n] the best fitness after each iteration */
    double *seconds;            /* [n] cumulative, the start-up measurement excluded */
    size_t *probes;             /* [n] cumulative probe measurements */
    double *estimate, *change;  /* [n] (estimate: NAN but for gradient proposals) */
    size_t reached_at;          /* 1-based iteration of reaching the target; 0: never */
    double spearman;            /* estimates against measured changes (NAN: none) */
    size_t n_ranked;            /* iterations with both an estimate and a change */
    bool has_heldout;
    xp_paired heldout;
} xp_proposal_run;
typedef struct xp_proposal_efficiency {
    double start, target;       /* the fitness before any flip, and the one to reach */
    bool target_given;
    xp_proposal_run run[2];     /* [0] gradient, [1] the baseline proposal */
    double ratio_iterations, ratio_probes, ratio_seconds; /* baseline / gradient to reach
                                                             (NAN unless the gradient
                                                             reached it) */
    bool lower_bound;           /* only the gradient reached it: the ratios are of all the
                                   baseline ran, so the true ones are larger */
} xp_proposal_efficiency;
int xp_exp_proposal_efficiency(xp_model *m, const xp_probe_tokens *targets, size_t n_targets,
                               const xp_probe_tokens *controls, size_t n_controls,
                               const xp_search_opts *o, int baseline,
                               size_t baseline_iterations, const double *target,
                               const xp_probe_set *heldout, const xp_probe_tokens *heldout_pt,
                               xp_proposal_efficiency *out, xp_err *err);
void xp_proposal_efficiency_free(xp_proposal_efficiency *r);

#ifdef __cplusplus
}
#endif
#endif
