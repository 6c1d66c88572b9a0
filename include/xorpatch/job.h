/* xorpatch jobs — what the xorpatch commands do, as library calls.
 *
 * A job is the application around the engine: a search job loads and audits the
 * probes, searches with checkpoints and a per-iteration log (resuming a killed run where
 * it stopped), writes the patch with its provenance, evaluates it and writes the text
 * and HTML reports; the pipeline, the experiments and the task benchmark likewise. A job
 * takes a plain settings struct and tells its caller what happens through callbacks; it
 * never prints (it writes text only to a FILE* its caller passes). The command-line
 * front end, an HTTP server or any program linking libxorpatch runs the same job. */
#ifndef XORPATCH_JOB_H
#define XORPATCH_JOB_H

#include <stdio.h>

#include "xorpatch/eval.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- what a job tells its caller ---------------------------------------------- */

/* A message's level: a note (what the job is doing, what it found) or a warning (what
 * the caller may not have meant: a patch that is not a checkpoint, nothing kept). */
enum xp_job_level { XP_JOB_NOTE = 0, XP_JOB_WARNING = 1 };

/* Every callback may be NULL. A job calls progress at the start of a stage (done 0) and
 * as it goes; stage names it ("search", a pipeline step's domain, "layer-map", ...). */
typedef struct xp_job_callbacks {
    void (*progress)(void *ctx, const char *stage, uint64_t done, uint64_t total);
    void (*on_iter)(void *ctx, const xp_search_iter *it);    /* every search iteration */
    void (*message)(void *ctx, int level, const char *text); /* one line, no newline */
    void *ctx;
} xp_job_callbacks;

/* ---- the search job -------------------------------------------------------------- */

/* xorpatch search. The model is opened from model_path (with kernel, when given) unless
 * an open one is passed; model_path is needed either way (the base fingerprint, the
 * report). The job sets the fields of opts that are its own (name, base_sha256,
 * write_patch, provenance, on_iter, ctx, validation, n_validation); checkpoint and
 * checkpoint_format are unused. */
typedef struct xp_search_job {
    xp_model *model; /* borrowed; NULL: the job opens model_path */
    const char *model_path, *kernel;
    const char *probes;   /* targets (a Neagari set's promoted controls become controls) */
    const char *const *controls; /* probe files to keep, loaded and concatenated in order */
    size_t n_controls;           /* (0: only the promoted ones) */
    const char *heldout;  /* probes evaluated only at the end (NULL: none) */
    const char *validation;  /* probes the search validates on (NULL: none; see opts'
                                validation_rule); never trained on */
    double validation_split; /* or: this share (0 < F < 1) of the targets, drawn with the
                                search's seed and taken out of the targets (0: none) */
    bool log_flip_detail; /* the log says per kept flip which probes moved and crossed zero,
                             and the text report how many kept flips changed a sign */
    const char *out;      /* the patch and its checkpoints (.xpb binary, else JSON) */
    const char *name;     /* the patch's name (NULL: out's stem) */
    const char *log;      /* per-iteration JSONL (NULL: OUT.log.jsonl) */
    const char *html;     /* the HTML report (NULL: OUT.html) */
    const char *resume;   /* a patch to go on from (NULL: a fresh search) */
    bool allow_dead;      /* search even with dead targets */
    bool no_eval;         /* gaps only at the end, no generations */
    size_t random_baseline; /* random patches like the result judged on the held-out set
                               at the end, as it is judged (0: none) */
    xp_search_opts opts;
    FILE *report;     /* the text report goes here (NULL: nowhere) */
    bool report_text; /* and, when set, into the result's report_text */
} xp_search_job;

typedef struct xp_search_job_result {
    xp_search_result search; /* the patch (with its provenance), gaps and counts */
    bool written;            /* the patch file was written (without flips when none
                                was kept: the search's record, as its checkpoints) */
    char *report_text;       /* the text report, when asked for (malloc'd) */
    xp_random_baseline baseline; /* the held-out random-patch baseline (n 0: none) */
} xp_search_job_result;

/* Runs the job: audit (dead targets refused unless allowed), search (checkpointed to out
 * every opts.checkpoint_every iterations; the log trimmed to the resumed iteration),
 * the patch written, the targets, controls and held-out probes evaluated before and
 * after, the text report to job->report and the HTML report. */
int xp_search_job_run(const xp_search_job *job, const xp_job_callbacks *cb,
                      xp_search_job_result *out, xp_err *err);
void xp_search_job_result_free(xp_search_job_result *r);

/* ---- the pipeline job ------------------------------------------------------------ */

/* xorpatch pipeline: one search per probe file, in order, each on the model patched by
 * the steps before it; targets a step solves become controls of the later ones (at most
 * promote_cap in all, first solved first). A Neagari file's search_config sets a step's
 * lambda, iterations and layers unless the caller gave them. Writes
 * OUT_DIR/step-K-DOMAIN.json per step, OUT_DIR/stacked.json and OUT_DIR/pipeline.json;
 * a line per step and one for the stacked patch go to out. */
typedef struct xp_pipeline_job {
    xp_model *model; /* as in xp_search_job; patched during the run, then reverted */
    const char *model_path, *kernel;
    const char *const *files; /* the probe files, one step each */
    size_t n_files;
    const char *const *controls; /* probe files every step keeps, concatenated in order */
    size_t n_controls;
    const char *out_dir;  /* made when missing */
    size_t promote_cap;
    bool allow_dead;
    xp_search_opts opts;                               /* as in xp_search_job */
    bool lambda_given, iterations_given, layers_given; /* kept over a file's search_config */
    FILE *out;                                         /* the step lines (NULL: nowhere) */
} xp_pipeline_job;
int xp_pipeline_job_run(const xp_pipeline_job *job, const xp_job_callbacks *cb, xp_err *err);

/* ---- the experiments ------------------------------------------------------------- */

/* xorpatch experiment NAME: the measurements of the experiments section of xorpatch.h
 * run on files, their results written to out as a table or as one JSON object line. */
enum xp_experiment {
    XP_EXP_RANDOM_FLIPS = 0,
    XP_EXP_LAYER_MAP,
    XP_EXP_SCALE_VS_RANDOM,
    XP_EXP_STACKING,
    XP_EXP_NULL_BASELINE,
    XP_EXP_PROPOSAL_EFFICIENCY,
    XP_N_EXPERIMENTS
};
const char *xp_experiment_name(int e);         /* "random-flips", "layer-map", ... */
int xp_experiment_from_name(const char *name); /* -1 when unknown */

typedef struct xp_experiment_job {
    int experiment;  /* enum xp_experiment */
    xp_model *model; /* as in xp_search_job (null-baseline opens a second copy) */
    const char *model_path, *kernel;
    const char *probes; /* every experiment but random-flips */
    xp_metric metric;   /* seq_logprob or token_gap */
    uint64_t seed;      /* random-flips, scale-vs-random, null-baseline (the
                           searches'; seed + 1 randomises the copy) */
    bool json;          /* one JSON object instead of the table */
    /* random-flips */
    const char *text;
    const size_t *counts;
    size_t n_counts;
    const int *kinds; /* XP_FLIP_MASK (a bit), XP_FLIP_ROW, XP_FLIP_BLOCK */
    size_t n_kinds, trials;
    size_t ctx;        /* tokens per chunk (0: 512, or the whole text if shorter) */
    size_t max_chunks; /* 0: all */
    /* scale-vs-random */
    size_t samples;
    /* stacking: patch files or Neagari directories */
    const char *const *patches;
    size_t n_patches;
    bool force;
    /* proposal-efficiency: controls besides --probes' promoted ones, a held-out set, the
     * fitness both searches must reach (else the smaller final), the proposal the
     * gradient is compared with (search.proposal unless that is gradient: then scale)
     * and its search's iterations (0: search.iterations) */
    const char *const *controls;
    size_t n_controls;
    const char *heldout;
    bool has_target_fitness;
    double target_fitness;
    size_t baseline_iterations;
    /* layer-map (layers, projs), scale-vs-random, null-baseline and proposal-efficiency */
    xp_search_opts search;
    FILE *out;
} xp_experiment_job;
int xp_experiment_job_run(const xp_experiment_job *job, const xp_job_callbacks *cb, xp_err *err);

/* ---- the task benchmark ---------------------------------------------------------- */

/* xorpatch bench-task: a JSONL task file run greedily without and with the patches,
 * scored exactly, its paired statistics written to out as text or one JSON line. */
typedef struct xp_bench_task_job {
    xp_model *model; /* as in xp_search_job */
    const char *model_path, *kernel;
    const char *tasks;
    int kind;                 /* enum xp_task_kind */
    size_t limit;             /* only the first tasks (0: all) */
    xp_patch *const *patches; /* applied in order, reverted after */
    size_t n_patches;
    xp_task_opts opts; /* its progress is the job's */
    bool json;
    FILE *out;
} xp_bench_task_job;
int xp_bench_task_job_run(const xp_bench_task_job *job, const xp_job_callbacks *cb, xp_err *err);

/* ---- what the jobs share with other front ends ---------------------------------- */

/* Patch arguments as a growing list: files in any format, or Neagari directories (each
 * of their patches); a manifest step whose file is absent is said as a note. */
typedef struct xp_job_patches {
    xp_patch **p;
    size_t n;
} xp_job_patches;
int xp_job_patches_add(xp_job_patches *list, const char *path, const xp_job_callbacks *cb,
                       xp_err *err);
void xp_job_patches_free(xp_job_patches *list);

/* Applies patches to a loaded model's weights in memory, in order, after the checks
 * xp_patch_file_apply makes (none for another base, none already recorded in the file,
 * no two the same): the model then computes what the GGUF `apply -o` writes would. */
int xp_job_model_patch(xp_model *m, xp_patch *const *ps, size_t n, xp_err *err);
/* The base fingerprint of a model file: its record's base when it carries one, else the
 * SHA-256 of the file. */
int xp_job_base_sha256(const char *path, const xp_gguf *g, char sha[65], xp_err *err);
/* Records on a patch this program makes how it was made: the name (when given), the
 * tool and the time. */
void xp_job_stamp(xp_patch *p, const char *name);
/* The shape summary of a model as a JSON object text (malloc'd), or NULL. */
char *xp_job_architecture_json(const xp_gguf *g);
/* The format a patch is written in by its file name: .xpb binary, else xorpatch JSON. */
int xp_job_patch_format(const char *path);

/* Paired right/wrong statistics as text lines (label: "probes", "tasks"; without
 * patched only the base accuracy) and as a JSON object (cJSON, the caller's). */
void xp_paired_print(FILE *out, const xp_paired *p, const char *label, bool patched);
struct cJSON;
struct cJSON *xp_paired_json(const xp_paired *p);
/* The outcome of one paired item: "fixed", "broke", "stayed right", "stayed wrong". */
const char *xp_outcome_name(bool before, bool after);
/* s as a JSON string literal cut to at most max characters (… marks a cut), into buf;
 * NULL gives "-". */
const char *xp_text_quote(const char *s, size_t max, char *buf, size_t size);
/* 1234567 -> "1,234,567" into buf. */
const char *xp_thousands(uint64_t v, char *buf, size_t size);
/* A probe as a JSON object {"name", "category", "role"}, for the rest to be added. */
struct cJSON *xp_probe_json(const xp_probe *p);

/* ---- reports: what a command shows, as text and as JSON ------------------------- */

/* xorpatch eval: patches judged on one or two probe sets (train, and held-out). */
typedef struct xp_eval_report_set {
    const char *split; /* "train", "heldout" */
    const xp_probe_set *set;
    const xp_eval *eval; /* of set, without and with the patches */
} xp_eval_report_set;
typedef struct xp_eval_report {
    const char *model;
    xp_patch *const *patches;
    size_t n_patches;
    xp_metric metric; /* the gaps' */
    bool generate;    /* judged by generation, else by gap sign */
    bool per_probe;   /* text: every probe, not only those that changed (always so when
                         there is no patch) */
    const xp_eval_report_set *sets;
    size_t n_sets;
    const xp_random_baseline *baseline; /* judged on the last set; NULL: none */
} xp_eval_report;
/* The report as text (eval --help describes it), and as one JSON object (the caller's). */
void xp_eval_report_print(FILE *out, const xp_eval_report *r);
struct cJSON *xp_eval_report_json(const xp_eval_report *r);

/* xorpatch show: a patch described (provenance, flips per layer and projection, the bits
 * it touches, its size in each format); weights, the model's 1-bit weights, gives the
 * share it touches (0: unknown). */
void xp_patch_describe_print(FILE *out, xp_patch *p, uint64_t weights);
struct cJSON *xp_patch_describe_json(xp_patch *p, uint64_t weights);
/* The Q1_0 weights of a model file, or of a shape preset when model is NULL (0 when
 * neither can be read). */
uint64_t xp_model_file_weights(const char *model, const char *shape);

/* xorpatch show --probes: the patch's flips applied one after another in its order,
 * and per flip the probes whose gap moved and those that crossed zero. */
typedef struct xp_crossing_flip {
    const xp_flip *flip;      /* the patch's */
    const char *tensor;
    size_t moved;             /* probes whose gap changed */
    xp_probe_move *crossings; /* those that crossed zero (index: the probe's) */
    size_t n_crossings;
} xp_crossing_flip;
typedef struct xp_crossings {
    size_t n_probes, n_flips;
    xp_metric metric;
    double *base, *final;     /* the gaps without the patch, and with every flip */
    xp_crossing_flip *flips;  /* [n_flips] */
    size_t changed_sign;      /* flips that made some probe cross zero */
} xp_crossings;
/* Leaves the model as it was; p must outlive the result (its flips are pointed at). */
int xp_crossings_run(xp_model *m, xp_patch *p, const xp_probe_tokens *pt, size_t n,
                     xp_metric metric, xp_crossings *out, xp_err *err);
void xp_crossings_free(xp_crossings *c);
void xp_crossings_print(FILE *out, const xp_crossings *c, const xp_probe_set *s);
struct cJSON *xp_crossings_json(const xp_crossings *c, const xp_probe_set *s);

/* xorpatch inspect: a GGUF file (at path, read into g, its SHA-256 given) described: its
 * format, the model's shape, the tokenizer, the tensors (listed in the text when
 * tensors is set) and the totals by type. */
void xp_model_describe_print(FILE *out, const char *path, const xp_gguf *g, const char *sha256,
                             bool tensors);
struct cJSON *xp_model_describe_json(const xp_gguf *g, const char *sha256);

/* xorpatch logits: a sequence's next-token logits, the top candidates per position. */
typedef struct xp_logits_report {
    const int32_t *ids; /* the sequence */
    size_t n;
    const float *logits; /* n_vocab per position: every one's, or the last one's */
    size_t n_vocab;
    bool all_positions;
    size_t top;               /* candidates per position */
    const xp_tokenizer *tok;  /* for the text's token texts (NULL: "?") */
} xp_logits_report;
int xp_logits_report_print(FILE *out, const xp_logits_report *r, xp_err *err);
struct cJSON *xp_logits_report_json(const xp_logits_report *r); /* NULL: out of memory */

/* xorpatch audit: what a probe set can measure on a model (xp_probe_audit's result),
 * as text (token ids shown as the tokenizer's text, when given) and as JSON. */
void xp_audit_report_print(FILE *out, const xp_probe_set *s, const xp_audit *a,
                           const xp_tokenizer *t);
struct cJSON *xp_audit_report_json(const xp_probe_set *s, const xp_audit *a);

#ifdef __cplusplus
}
#endif
#endif
