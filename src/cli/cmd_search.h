/* The search command's options and run, shared with `pipeline`, which runs the same
 * search once per domain. */
#ifndef XP_CLI_CMD_SEARCH_H
#define XP_CLI_CMD_SEARCH_H
#include "cli/cli.h"

typedef struct cli_search_args {
    const char *command;        /* for messages */
    const cli_command *self;    /* for --help */
    const char *model, *probes, *controls, *heldout, *out, *name, *log, *report, *resume,
        *kernel;
    bool allow_dead, no_eval;
    bool pipeline;              /* positional probe files and --promote-cap allowed */
    bool lambda_set, iterations_set, layers_set; /* given on the command line */
    size_t promote_cap;
    int first_file;             /* pipeline: argv index of the first probe file */
    uint32_t layers[256];
    xp_search_opts opts;
} cli_search_args;

/* Parses the search options into a (defaults set by the caller); -1 to go on, else an
 * exit code. */
int cli_search_parse(int argc, char **argv, cli_search_args *a);
/* Loads the probes, audits, searches, writes the patch, log and report. */
int cli_search_run(cli_search_args *a, xp_model *m, xp_search_result *res, xp_err *err);

#endif
