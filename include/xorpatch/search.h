/* xorpatch's search layer: greedy hill climbing over XOR flips of a model's weights,
 * measured on target and control probes, and what the experiments take from it. */
#ifndef XORPATCH_SEARCH_H
#define XORPATCH_SEARCH_H

#include "xorpatch/patch.h"
#include "xorpatch/probe.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- search ------------------------------------------------------------------ */

/* Greedy hill climbing over XOR flips (SPEC §4, §8): propose a flip, apply it, measure
 * the probes, keep it if the fitness beats the best so far, else flip it back. Every
 * gap is measured bit-exactly (the same bits alone, in any batch, on any thread count),
 * so a kept flip is never kernel noise, and the same seed and inputs give the same patch
 * on any machine with the same kernels' results (all kernels compute the same bits). */
enum xp_fitness { XP_FITNESS_MEAN = 0, XP_FITNESS_MIN, XP_FITNESS_BORDERLINE, XP_FITNESS_FOCUSED };
enum xp_granularity { XP_GRAN_ROW = 0, XP_GRAN_BLOCK, XP_GRAN_SCALE_BIT };
enum xp_proposal { XP_PROPOSE_SCALE = 0, XP_PROPOSE_UNIFORM };
const char *xp_fitness_name(int f);         /* "mean", "min", "borderline", "focused" */
int xp_fitness_from_name(const char *name); /* -1 when unknown; likewise below */
const char *xp_granularity_name(int g);     /* "row", "block", "scale-bit" */
int xp_granularity_from_name(const char *name);
const char *xp_proposal_name(int p);        /* "scale", "uniform" */
int xp_proposal_from_name(const char *name);

/* One candidate flip: a row (XP_FLIP_ROW), a block (XP_FLIP_BLOCK) or one bit of a
 * block's fp16 scale (XP_FLIP_SCALE) of tensor blk.LAYER.<proj>.weight. */
typedef struct xp_candidate {
    uint32_t layer;
    uint8_t proj, kind, bit;
    int64_t index; /* row, or block index in the tensor */
} xp_candidate;

typedef struct xp_search_iter {
    size_t iter;             /* 1-based */
    xp_candidate cand;
    double fitness;          /* the candidate's (NAN when screening rejected it) */
    double best;             /* the best after this iteration */
    bool accepted, screened; /* screened: rejected by screening alone */
    bool control_changed;    /* passed the fitness, rejected: a control's greedy output
                                changed (control_generation) */
    size_t probes_run;       /* probe evaluations this iteration */
    double seconds;
    size_t n_flips;          /* kept so far */
} xp_search_iter;

/* Where a search's patch came from, recorded in its search JSON after the settings and
 * the state (xp_search_opts.provenance). */
typedef struct xp_search_file {
    const char *role;            /* "targets", "controls", "heldout" */
    const char *path;
    char sha256[65];             /* of the file ("" when it could not be read) */
} xp_search_file;
typedef struct xp_search_provenance {
    const xp_search_file *files; /* "probe_files" (the key is left out when n_files is 0) */
    size_t n_files;
    bool has_after;              /* "after": the patches the base carried during the search */
    const char *const *after;
    size_t n_after;
    bool result;                 /* the final patch's "result": iterations, accepted,
                                    screened_out, seconds, auto_stopped */
} xp_search_provenance;

typedef struct xp_search_opts {
    xp_metric metric;            /* seq_logprob or token_gap */
    int fitness;                 /* enum xp_fitness */
    double lambda, epsilon;      /* control penalty (2.0); focused's control slack (0.5) */
    int granularity;             /* enum xp_granularity */
    double scale_ratio;          /* scale-bit granularity: share of scale moves (0.7), the
                                    rest block flips */
    int scale_bit_min, scale_bit_max; /* fp16 bits scale moves flip (4..9) */
    const uint32_t *layers;      /* NULL: 1..4 and n_layer-2 (those below n_layer) */
    size_t n_layers;
    unsigned projs;              /* bit (1 << XP_PROJ_*) per projection; 0: gate and up */
    int proposal;                /* enum xp_proposal */
    size_t iterations;
    size_t screen;               /* measure this many worst targets first (2; 0 = off);
                                    focused measures its focal target first whatever it is */
    size_t stop_window;          /* auto-stop: after stop_window iterations, stop when the */
    double stop_rate;            /* accepts in the last window / window < stop_rate (window
                                    0: off; default 200 and 0.01, SPEC 8) */
    double min_gain;             /* keep a flip only if it beats the best by more than this
                                    (mean, min, borderline) */
    bool control_generation;     /* a flip that passes the fitness is kept only if every
                                    control's greedy output (at most control_max_tokens,
                                    ending at a newline when control_stop_newline) is the
                                    base's: one batched generation of the controls per
                                    such candidate */
    size_t control_max_tokens;   /* 24 */
    bool control_stop_newline;   /* true */
    uint64_t seed;
    bool naive;                  /* the reference evaluation the fast one is measured
                                    against: each sequence alone, every layer, every
                                    position's full LM head; same gaps, bit for bit */
    const char *checkpoint;      /* write the patch and the search state here before the
                                    first iteration, every checkpoint_every iterations and
                                    at the end, flips kept or not (a patch without flips is
                                    the checkpoint of a search that has kept none yet) */
    size_t checkpoint_every;
    int checkpoint_format;       /* enum xp_patch_format of the checkpoints */
    int (*write_patch)(void *ctx, xp_patch *p, xp_err *err); /* when set, writes the
                                    checkpoints and the final patch (ctx below) in place of
                                    checkpoint and checkpoint_format */
    const xp_search_provenance *provenance; /* recorded in the patch; NULL: none */
    const char *name;            /* the patch's name, and its base model's SHA-256 */
    const char *base_sha256;
    void (*on_iter)(void *ctx, const xp_search_iter *it);
    void *ctx;                   /* for on_iter and write_patch */
} xp_search_opts;
void xp_search_opts_default(xp_search_opts *o);

typedef struct xp_search_result {
    xp_patch *patch;             /* the kept flips (canonical order), with the settings, the
                                    state a resume needs and the outcome in ->search */
    size_t n_targets, n_controls;
    double *base_gaps, *final_gaps; /* targets, then controls */
    size_t iterations, accepted, screened_out; /* over the whole run, resumed part included */
    size_t probes_run;           /* probe evaluations of this call */
    size_t measure_tokens;       /* tokens one measurement of every probe runs (the fast
                                    gauge runs what sequences share once) */
    double best, seconds;
    bool auto_stopped, exhausted; /* the window rule stopped it; no untried candidate left */
    size_t resumed_at;           /* iterations a resumed state had done (0 when fresh) */
    bool resumed;                /* resume was this run's checkpoint (resumed_at may be 0:
                                    one written before the first iteration) */
} xp_search_result;
void xp_search_result_free(xp_search_result *r);

/* Runs the search on the model as it is (the base) and leaves it so. resume, when
 * given, is a patch to start from: a checkpoint this search wrote with the same base
 * (o->base_sha256), settings and probes continues exactly where it stopped (the final
 * patch equals an uninterrupted run's; out->resumed_at says where); any other patch is a
 * starting point (its flips kept, iteration count from 0). */
int xp_search_run(xp_model *m, const xp_probe_tokens *targets, size_t n_targets,
                  const xp_probe_tokens *controls, size_t n_controls, const xp_search_opts *o,
                  xp_patch *resume, xp_search_result *out, xp_err *err);

/* ---- for the layers above: the search's candidates ------------------------------- */

/* What the experiments build on (not a stable API): candidates drawn as a search draws
 * them, and flipped as it flips them. */

/* Flips the candidate in the model's weights, as its kind's entry applies it; a second
 * call undoes it. */
void xp_candidate_flip(xp_model *m, const xp_candidate *c);
/* The first n candidates a search with o proposes on the model as it is (its layers,
 * projections, granularity, proposal and seed; fewer when they run out first): *n_out of
 * them into out. */
int xp_search_propose(xp_model *m, const xp_search_opts *o, size_t n, xp_candidate *out,
                      size_t *n_out, xp_err *err);

#ifdef __cplusplus
}
#endif
#endif
