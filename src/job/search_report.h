/* The report of a search, for a person: what ran, how the fitness climbed, which flips
 * were kept where, how the validation objective went, how many kept flips changed any
 * probe's sign, and what changed on every probe (gaps, and generations judged by the
 * set's matcher) on the training targets, the controls and the held-out probes. As text
 * for a terminal, and as one self-contained HTML file with SVG charts. */
#ifndef XP_JOB_SEARCH_REPORT_H
#define XP_JOB_SEARCH_REPORT_H
#include <stdio.h>

#include "xorpatch/job.h"

/* One probe set's before/after: the set and, when measured, its evaluation. */
typedef struct search_report_set {
    const char *label;        /* "targets", "controls", "held-out", ... */
    const xp_probe_set *set;  /* NULL: none */
    const xp_eval *eval;      /* NULL: not evaluated */
} search_report_set;

typedef struct search_report {
    const char *model, *patch_path;
    const xp_search_opts *opts;
    const xp_search_result *res;
    const xp_search_iter *iters; /* every iteration run (resumed ones included when the
                                    log had them) */
    size_t n_iters;
    const char *const *target_names, *const *control_names; /* per search probe */
    const char *const *validation_names;
    bool flip_detail; /* the text says how many kept flips changed a probe's sign (the
                         HTML always does; so does the text with validation probes) */
    search_report_set sets[5]; /* targets, promoted controls, controls, validation, held-out */
} search_report;

void search_report_print(FILE *out, const search_report *r);
int search_report_html(const char *path, const search_report *r, xp_err *err);
#endif
