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
enum xp_proposal { XP_PROPOSE_SCALE = 0, XP_PROPOSE_UNIFORM, XP_PROPOSE_GRADIENT };
/* What the validation probes decide: keep (a flip is kept only if it does not lower the
 * validation objective) or early-stop (flips kept by the training fitness alone; the
 * final patch, and every checkpoint, is the prefix of kept flips at the best validation
 * point so far; the state holds the rest for a resume). */
enum xp_validation_rule { XP_VALIDATION_KEEP = 0, XP_VALIDATION_EARLY_STOP };
const char *xp_fitness_name(int f);         /* "mean", "min", "borderline", "focused" */
int xp_fitness_from_name(const char *name); /* -1 when unknown; likewise below */
const char *xp_granularity_name(int g);     /* "row", "block", "scale-bit" */
int xp_granularity_from_name(const char *name);
const char *xp_proposal_name(int p);        /* "scale", "uniform", "gradient" */
int xp_proposal_from_name(const char *name);
const char *xp_validation_rule_name(int r); /* "keep", "early-stop" */
int xp_validation_rule_from_name(const char *name);

/* The roles of a search's probes; gaps arrays hold them in this order. */
enum xp_search_role { XP_SEARCH_TARGET = 0, XP_SEARCH_CONTROL, XP_SEARCH_VALIDATION };
const char *xp_search_role_name(int role); /* "target", "control", "validation" */

/* What one change of the weights did to the probes' gaps (flip accounting): how many
 * moved, and which crossed zero (a right answer became wrong, or the reverse). */
typedef struct xp_probe_move {
    int role;     /* enum xp_search_role */
    size_t index; /* within its role */
    double before, after;
} xp_probe_move;
#define XP_EFFECT_LARGEST 5
typedef struct xp_flip_effect {
    size_t moved;             /* probes whose gap changed at all */
    size_t crossed[3];        /* probes whose gap's sign (> 0 or not) changed, per role */
    xp_probe_move *crossings; /* every crossing, in probe order (the caller's room for
                                 every probe) */
    size_t n_crossings;
    xp_probe_move largest[XP_EFFECT_LARGEST]; /* the largest |after - before|, largest first */
    size_t n_largest;
} xp_flip_effect;
/* The effect of going from gaps before to after on n probes, whose roles end at ends[0]
 * (targets), ends[1] (controls) and ends[2] == n (validation). */
void xp_flip_effect_measure(xp_flip_effect *e, const double *before, const double *after,
                            const size_t ends[3]);

/* One candidate flip: a row (XP_FLIP_ROW), a block (XP_FLIP_BLOCK) or one bit of a
 * block's fp16 scale (XP_FLIP_SCALE) of tensor blk.LAYER.<proj>.weight. */
typedef struct xp_candidate {
    uint32_t layer;
    uint8_t proj, kind, bit;
    int64_t index; /* row, or block index in the tensor */
} xp_candidate;

typedef struct xp_search_iter {
    size_t iter; /* 1-based */
    xp_candidate cand;
    double fitness;          /* the candidate's (NAN when screening rejected it) */
    double best;             /* the best after this iteration */
    bool accepted, screened; /* screened: rejected by screening alone */
    bool control_changed;    /* passed the fitness, rejected: a control's greedy output
                                changed (control_generation) */
    double estimate;         /* gradient proposals: the first-order estimate of the
                                objective's change (NAN otherwise) */
    double change;           /* the measured change of the objective (the fitness;
                                focused: the focal target's gap); NAN when screened out */
    size_t probes_run;       /* probe evaluations this iteration */
    double seconds;
    size_t n_flips;          /* kept so far */
    /* validation (with validation probes only; NAN otherwise) */
    double validation;       /* the candidate's objective (NAN: not measured) */
    double validation_now;   /* the kept flips' objective after this iteration */
    bool validation_rejected; /* keep rule: passed the fitness, lowered the validation */
    size_t validation_best_flips; /* early-stop: kept flips at the best point so far */
    /* flip accounting, for an accepted flip (zero otherwise) */
    size_t moved, crossed[3]; /* probes whose gap moved; that crossed zero, per role */
    const xp_flip_effect *effect; /* accepted: the detail, valid during on_iter only */
} xp_search_iter;

/* Where a search's patch came from, recorded in its search JSON after the settings and
 * the state (xp_search_opts.provenance). */
typedef struct xp_search_file {
    const char *role; /* "targets", "controls", "heldout" */
    const char *path;
    char sha256[65]; /* of the file ("" when it could not be read) */
} xp_search_file;
typedef struct xp_search_provenance {
    const xp_search_file *files; /* "probe_files" (the key is left out when n_files is 0) */
    size_t n_files;
    bool has_after; /* "after": the patches the base carried during the search */
    const char *const *after;
    size_t n_after;
    bool result; /* the final patch's "result": iterations, accepted,
                    screened_out, seconds, auto_stopped */
} xp_search_provenance;

/* A team of processes (MPI ranks) that run each search together, with the result one
 * process gets (see "a search on several processes" below). */
typedef struct xp_search_team xp_search_team;

typedef struct xp_search_opts {
    xp_metric metric;                 /* seq_logprob or token_gap */
    int fitness;                      /* enum xp_fitness */
    double lambda, epsilon;           /* control penalty (2.0); focused's control slack (0.5) */
    int granularity;                  /* enum xp_granularity */
    double scale_ratio;               /* scale-bit granularity: share of scale moves (0.7), the
                                         rest block flips */
    int scale_bit_min, scale_bit_max; /* fp16 bits scale moves flip (4..9) */
    const uint32_t *layers;           /* NULL: 1..4 and n_layer-2 (those below n_layer) */
    size_t n_layers;
    unsigned projs;              /* bit (1 << XP_PROJ_*) per projection; 0: gate and up */
    int proposal;                /* enum xp_proposal: scale, uniform, or gradient (every
                                    candidate ranked by the first-order change of the
                                    objective one backward pass gives, best first) */
    size_t rerank_every;         /* gradient: rank again after this many accepts (1) */
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
    const xp_probe_tokens *validation; /* measured with the others at every full
                                    measurement, never screened, never in the fitness */
    size_t n_validation;         /* 0: no validation */
    int validation_rule;         /* enum xp_validation_rule */
    int token_rule;              /* enum xp_token_rule the caller's token_gap ids follow
                                    (the search job applies it; recorded when last) */
    uint64_t seed;
    bool naive;                  /* the reference evaluation the fast one is measured
                                    against: each sequence alone, every layer, every
                                    position's full LM head; same gaps, bit for bit */
    const char *checkpoint;      /* write the patch and the search state here before the
                                    first iteration, every checkpoint_every iterations and
                                    at the end, flips kept or not (a patch without flips is
                                    the checkpoint of a search that has kept none yet) */
    size_t checkpoint_every;
    int checkpoint_format; /* enum xp_patch_format of the checkpoints */
    int (*write_patch)(void *ctx, xp_patch *p, xp_err *err); /* when set, writes the
                                    checkpoints and the final patch (ctx below) in place of
                                    checkpoint and checkpoint_format */
    const xp_search_provenance *provenance;                  /* recorded in the patch; NULL: none */
    const char *name; /* the patch's name, and its base model's SHA-256 */
    const char *base_sha256;
    void (*on_iter)(void *ctx, const xp_search_iter *it);
    void *ctx;            /* for on_iter and write_patch */
    xp_search_team *team; /* NULL: this process alone; else every rank of the team
                             runs this search with the same model, probes and
                             settings, and only rank 0 calls on_iter and
                             write_patch (xp_search_team_open) */
} xp_search_opts;
void xp_search_opts_default(xp_search_opts *o);

typedef struct xp_search_result {
    xp_patch *patch;             /* the kept flips (canonical order), with the settings, the
                                    state a resume needs and the outcome in ->search */
    size_t n_targets, n_controls, n_validation;
    double *base_gaps, *final_gaps; /* targets, then controls, then validation */
    double validation_base, validation_final; /* the validation objective (NAN: none) */
    size_t validation_rejected;  /* keep rule: flips the validation refused */
    size_t validation_best_flips; /* the final patch's flips: under early-stop the first
                                    ones kept (the run kept `accepted`) */
    size_t iterations, accepted, screened_out; /* over the whole run, resumed part included */
    size_t probes_run;                         /* probe evaluations of this call */
    size_t measure_tokens; /* tokens one measurement of every probe runs (the fast
                              gauge runs what sequences share once) */
    double best, seconds;
    double start;                /* the fitness before this call's first iteration (NAN
                                    for focused) */
    bool auto_stopped, exhausted; /* the window rule stopped it; no untried candidate left */
    size_t resumed_at;           /* iterations a resumed state had done (0 when fresh) */
    bool resumed;                /* resume was this run's checkpoint (resumed_at may be 0:
                                    one written before the first iteration) */
} xp_search_result;
void xp_search_result_free(xp_search_result *r);

/* Runs the search on the model as it is (the base) and leaves it so. resume, when
 * given, is a patch to start from: a checkpoint this search wrote with the same base
 * (o->base_sha256), settings and probes continues exactly where it stopped (the final
 * patch equals an uninterrupted run's; out->resumed_at says where; gradient proposals
 * continue from the kept flips with a fresh ranking, which an uninterrupted run need not
 * have made); any other patch is a starting point (its flips kept, iteration count
 * from 0). */
int xp_search_run(xp_model *m, const xp_probe_tokens *targets, size_t n_targets,
                  const xp_probe_tokens *controls, size_t n_controls, const xp_search_opts *o,
                  xp_patch *resume, xp_search_result *out, xp_err *err);

/* ---- a search on several processes --------------------------------------------- */

/* With a team, the ranks of an MPI job (mpirun) run each search as one: rank 0 (the
 * leader) owns the proposal sequence and hands the next candidates out ahead, every rank
 * evaluates them on the current state, and the leader takes the results in the order of
 * the sequence; when one is kept, every rank applies that flip (a few bytes) and the
 * results evaluated on the old state are thrown away and handed out again. So the patch,
 * the iterations and the report are those of the process alone with the same seed. Each
 * rank maps the model and tokenises the probes itself: all must run the same program on
 * the same files (checked at each search's start: settings, probes and baseline gaps).
 * Only the leader proposes, calls on_iter and writes; a resumed search starts every rank
 * from the leader's checkpoint. Built only with MPI (make with Open MPI's mpicc present:
 * build/xorpatch-mpi); elsewhere xp_search_team_open says so. */
typedef struct xp_search_team_stats {
    size_t searches, iterations; /* the searches run, their iterations */
    size_t evaluations;          /* candidate evaluations on every rank */
    size_t thrown_away;          /* of them, evaluated on a state a kept flip had changed */
    size_t commits;              /* kept flips every rank applied */
    double seconds;              /* in the searches' loops */
} xp_search_team_stats;
/* Whether this library was built with MPI. */
bool xp_search_team_built(void);
/* Joins the MPI job this process is a rank of (MPI_Init; a process mpirun did not start
 * is a team of one). */
int xp_search_team_open(xp_search_team **t, xp_err *err);
int xp_search_team_rank(const xp_search_team *t);
int xp_search_team_size(const xp_search_team *t);
/* The leader's counts over the searches so far (the followers' are zero). */
void xp_search_team_stats_get(const xp_search_team *t, xp_search_team_stats *s);
/* Whether the last failure of a search failed on every rank, each knowing it (then
 * rank 0 alone need say it). */
bool xp_search_team_failed_together(const xp_search_team *t);
/* Leaves the team: exit_code 0, or a failure every rank knows of (one a search met:
 * they all return it), waits for the others and ends MPI. A failure this rank alone may
 * know of (exit_code != 0) stops the whole job (MPI_Abort: every rank exits with
 * exit_code, this one included), so no rank waits forever for it. */
void xp_search_team_close(xp_search_team *t, int exit_code);

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
