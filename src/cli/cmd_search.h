/* The search command's options and run, shared with `pipeline`, which runs the same
 * search once per domain, and its option-value parsers, shared with `experiment`. */
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

/* Option values the search and the experiments share; 0 / a count when s is one, else
 * -1. A finite number; "1-4,26" into at most cap layers; "gate,up" into 1 << XP_PROJ_*
 * bits. */
int cli_parse_double(const char *s, double *out);
long cli_parse_layers(const char *s, uint32_t *out, size_t cap);
int cli_parse_projs(const char *s, unsigned *mask);

/* Parses the search options into a (defaults set by the caller); -1 to go on, else an
 * exit code. */
int cli_search_parse(int argc, char **argv, cli_search_args *a);
/* Loads the probes, audits, searches, writes the patch, log and report. */
int cli_search_run(cli_search_args *a, xp_model *m, xp_search_result *res, xp_err *err);

#endif
