/* The search settings `search`, `pipeline` and `experiment` share: their options on the
 * table, and how their values become the settings of a search. */
#ifndef XP_CLI_CMD_SEARCH_H
#define XP_CLI_CMD_SEARCH_H
#include "cli/options.h"

/* The settings all three take. */
#define CLI_SEARCH_SETTINGS                                                                        \
    CLI_O_FITNESS, CLI_O_LAMBDA, CLI_O_GRANULARITY, CLI_O_PROPOSAL, CLI_O_RERANK_EVERY,            \
        CLI_O_ITERATIONS, CLI_O_SCREEN, CLI_O_SEARCH_LAYERS, CLI_O_PROJ
/* What a search run takes besides them, in search and pipeline alike. */
#define CLI_SEARCH_RUN_OPTIONS                                                                     \
    CLI_SEARCH_SETTINGS, CLI_O_MODEL, CLI_O_CONTROLS, CLI_O_ALLOW_DEAD, CLI_O_METRIC,              \
        CLI_O_EPSILON, CLI_O_MIN_GAIN, CLI_O_SCALE_RATIO, CLI_O_SCALE_BITS, CLI_O_AUTO_STOP,       \
        CLI_O_SEED, CLI_O_CHECKPOINT_EVERY, CLI_O_NAIVE, CLI_O_OUT, CLI_O_KERNEL, CLI_O_THREADS,   \
        CLI_O_MPI

/* The given search settings over o (the caller's defaults): --seed, --metric and
 * --checkpoint-every too. */
void cli_search_opts(const cli_values *v, xp_search_opts *o);

#endif
