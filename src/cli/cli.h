/* What the subcommands share: the command table, exit codes, error printing in the
 * one format (`xorpatch: error: ...` on stderr), output settings (quiet, colour and
 * progress only on a terminal and never with NO_COLOR), and a progress bar. */
#ifndef XP_CLI_H
#define XP_CLI_H
#include <stdbool.h>
#include <stdio.h>

#include "xorpatch.h"

/* Documented exit codes (xorpatch --help lists them). */
/* A usage error (an option, a value out of range) and bad input (a file, a model) both
 * exit 2. */
enum { EXIT_OK = 0, EXIT_USAGE = 2, EXIT_BAD_INPUT = 2, EXIT_INTERNAL = 3 };

typedef struct cli_command {
    const char *name;
    const char *summary;
    const char *usage; /* the --help text, */
    int (*run)(int argc, char **argv);
    const char *usage_more; /* and its rest, for a text longer than one string literal may
                               be (4,095 bytes; NULL: none) */
} cli_command;
/* Prints a command's --help text on stdout. */
void cli_print_usage(const cli_command *cmd);

extern const cli_command cli_synth, cli_inspect, cli_tokenize;
extern const cli_command cli_generate, cli_logits, cli_perplexity;
extern const cli_command cli_apply, cli_revert, cli_verify, cli_diff, cli_stack, cli_show,
    cli_convert;
extern const cli_command cli_audit, cli_eval, cli_bench_task;
extern const cli_command cli_search, cli_pipeline, cli_experiment;
extern const cli_command cli_corpus, cli_train;
extern const cli_command cli_serve;

typedef struct cli_settings {
    bool quiet;    /* -q: nothing but results and errors */
    bool terminal; /* stderr is a terminal and NO_COLOR is unset: colour, progress bars */
} cli_settings;
extern cli_settings cli;

/* Prints the library error and returns the exit code its class maps to. */
int cli_fail(const xp_err *err);
/* Prints a usage error with a pointer to the command's help; returns EXIT_USAGE. */
int cli_usage_error(const char *command, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Prints `xorpatch: error: ...` and returns EXIT_BAD_INPUT. */
int cli_input_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Informational line on stderr unless quiet. */
void cli_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* A progress bar on stderr, drawn only on a terminal and not when quiet. */
typedef struct cli_progress {
    const char *label;
    double started;
    int last_permille;
} cli_progress;
void cli_progress_start(cli_progress *p, const char *label);
void cli_progress_update(void *p, uint64_t done, uint64_t total); /* an xp_progress_fn */
void cli_progress_end(cli_progress *p);
double cli_now(void);

/* Prints a JSON value on one line of stdout and frees it (--json output). */
struct cJSON;
void cli_print_json(struct cJSON *value);

/* Parses "-t N" as the option table has it (options.c): sets the thread count for
 * everything that follows. -1 to go on, or the usage error's exit code. */
int cli_set_threads(const char *command, const char *value);
/* Opens a model and applies --kernel when given; prints the error itself. */
#define CLI_KERNEL_NAMES "avx512, avx2, neon-dotprod, neon or portable"
int cli_open_model(const char *path, const char *kernel, xp_model **out);
/* The same with patches applied in memory, in order, as `apply -o` would apply them
 * (--patch on the inference commands). */
int cli_open_patched_model(const char *path, const char *kernel, xp_patch *const *ps, size_t n,
                           xp_model **out);

/* Finds the reference vocabulary: --tokenizer, then $XORPATCH_TOKENIZER, then the model
 * shipped in the source tree (models/tiny-bonsai.gguf, the real Qwen3 tokenizer keys),
 * then the npm cache ($XORPATCH_CACHE, else the build's). Loads a tokenizer.json or a
 * GGUF's tokenizer keys; *from (when given) is the file it read. */
int cli_load_vocab(const char *path, xp_vocab **out, const char **from, xp_err *err);
#endif
