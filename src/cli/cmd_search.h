/* The search command's options, shared with `pipeline`, which runs the same search
 * once per domain, and its settings and option-value parsers, shared with
 * `experiment`. */
#ifndef XP_CLI_CMD_SEARCH_H
#define XP_CLI_CMD_SEARCH_H
#include <getopt.h>

#include "cli/cli.h"

typedef struct cli_search_args {
    const char *command;        /* for messages */
    const cli_command *self;    /* for --help */
    const char *model, *probes, *controls, *heldout, *out, *name, *log, *report, *resume,
        *kernel;
    bool allow_dead, no_eval;
    long random_baseline; /* -1: the default */
    bool pipeline;              /* positional probe files and --promote-cap allowed */
    bool lambda_set, iterations_set, layers_set; /* given on the command line */
    size_t promote_cap;
    int first_file;             /* pipeline: argv index of the first probe file */
    uint32_t layers[256];
    xp_search_opts opts;
} cli_search_args;

/* Option values the job commands share; 0 / a count when s is one, else -1. A finite
 * number; "1-4,26" into at most cap layers; "gate,up" into 1 << XP_PROJ_* bits. */
int cli_parse_double(const char *s, double *out);
long cli_parse_layers(const char *s, uint32_t *out, size_t cap);
int cli_parse_projs(const char *s, unsigned *mask);
/* NAME's value ARG as a positive count into out: -1, or after a usage error its exit
 * code. */
int cli_count_option(const char *cmd, const char *name, const char *arg, size_t *out);

/* The search settings that `search`, `pipeline` and `experiment` all take: their
 * getopt_long values and table entries. */
enum {
    CLI_SET_FITNESS = 1024, CLI_SET_LAMBDA, CLI_SET_GRAN, CLI_SET_PROPOSAL, CLI_SET_ITER,
    CLI_SET_SCREEN, CLI_SET_LAYERS, CLI_SET_PROJ
};
#define CLI_SEARCH_SETTINGS                                                                    \
    {"fitness", required_argument, 0, CLI_SET_FITNESS},                                        \
        {"lambda", required_argument, 0, CLI_SET_LAMBDA},                                      \
        {"granularity", required_argument, 0, CLI_SET_GRAN},                                   \
        {"proposal", required_argument, 0, CLI_SET_PROPOSAL},                                  \
        {"iterations", required_argument, 0, CLI_SET_ITER},                                    \
        {"screen", required_argument, 0, CLI_SET_SCREEN},                                      \
        {"layers", required_argument, 0, CLI_SET_LAYERS},                                      \
        {"proj", required_argument, 0, CLI_SET_PROJ}
/* Takes the setting opt (value arg) into o, the layers into layers[cap]: 0 when taken,
 * an exit code when its value is bad, -1 when opt is not one of them. */
int cli_search_setting(const char *cmd, int opt, const char *arg, xp_search_opts *o,
                       uint32_t *layers, size_t cap);

/* Parses the search options into a (defaults set by the caller); -1 to go on, else an
 * exit code. */
int cli_search_parse(int argc, char **argv, cli_search_args *a);

#endif
