/* A search run's state, which the greedy loop (search.c) and the team that runs one
 * search on several processes (search_mpi.c) share: the gauge, the proposer, the gaps
 * and the kept flips, and the steps of an iteration both drive. */
#ifndef XP_SEARCH_RUN_H
#define XP_SEARCH_RUN_H
#include <cjson/cJSON.h>

#include "search/search_int.h"

typedef struct run {
    xp_model *m;
    const xp_search_opts *o;
    size_t nt, nc, nv, n;
    xp_gauge gauge;
    xp_proposer prop;
    xp_fitness_ctx fit, vfit; /* vfit: the fitness's own objective on the validation probes */
    double val_now;           /* the kept flips' validation objective */
    double val_best;          /* early-stop: the best validation point, */
    size_t val_best_flips;    /* and the kept flips there */
    size_t val_rejected;
    xp_flip_effect effect;
    xp_gradient *grad; /* gradient proposals */
    double *base, *cur, *g, *sg;
    size_t *sel;
    bool *solved;
    xp_candidate *kept;
    size_t n_kept, cap_kept;
    char *window;                        /* '0'/'1' per iteration, the last stop_window */
    size_t iter, accepted, screened_out; /* over the whole run, resumed parts included */
    double best;
    bool best_restored, val_restored;
    cJSON *settings;
    char fingerprint[65];
    const xp_probe_tokens *controls;
    char **ctl_text, **ctl_now; /* control_generation: the base's greedy outputs, a
                                   candidate's */
} run;
/* Adds c to the kept flips (XP_ENOMEM when it cannot). */
int search_keep(run *r, const xp_candidate *c);
/* Evaluates candidate c on the run as it is (focal: focused's target, else -1) into it
 * (screened, fitness, accepted, control_changed, probes_run). An accepted c stays
 * flipped, its gaps in r->g and in the gauge's last run, for search_commit; else the
 * model is left as it was. */
int search_evaluate(run *r, const xp_candidate *c, long focal, xp_search_iter *it, xp_err *err);
/* Makes c, flipped and measured by the gauge's last run over every probe (r->g), a kept
 * flip: the gauge committed, the gaps, the best (fitness) and focused's solved set
 * updated, and it (when not NULL) given the flip's effect on the probes and the validation
 * objective now. On failure c is flipped back. */
int search_commit(run *r, const xp_candidate *c, long focal, double fitness, xp_search_iter *it,
                  xp_err *err);
/* The iteration done: the counts, the auto-stop window, the best and flips in it, and
 * the caller's on_iter. */
void search_record(run *r, xp_search_iter *it, xp_search_result *out);
/* Focused fitness: the target the next candidate must move (-1: every target solved);
 * -1 for the other fitnesses. */
long search_focal(const run *r);

/* ---- the team (search_mpi.c) ---- */

/* Whether this process follows a team's leader in the searches of o (a rank other than
 * 0): it proposes nothing and writes nothing. */
bool search_team_follows(const xp_search_opts *o);
/* After the run's set-up (rc: how it went here): every rank agrees it went well, checks
 * it has the leader's settings, probes and baseline gaps, and starts from the leader's
 * state (its resumed flips, best and solved targets). */
int search_team_start(run *r, int rc, xp_search_result *out, xp_err *err);
/* The leader's iteration, as step() is the lone process's: the next candidate in the
 * sequence, evaluated (by any rank, speculatively ahead) on the current state. */
int search_team_step(run *r, xp_search_result *out, bool *stop, xp_err *err);
/* A follower's part of the loop: evaluates what the leader hands out and applies the
 * flips it keeps, until the leader ends the loop. */
int search_team_follow(run *r, xp_err *err);
/* The end of the loop (rc: how it went here): the leader stops the followers and every
 * rank gets the leader's counts and window, or its error. */
int search_team_finish(run *r, int rc, xp_search_result *out, xp_err *err);
#endif
