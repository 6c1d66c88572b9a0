/* The commands' options, each declared once, and the one parser that reads them.
 *
 * How a command declares its options: it names the ones it takes, and CLI_COMMAND makes
 * its run hand argv to cli_run, which parses them into a cli_values and calls the
 * command's execute with it:
 *
 *     static const int options[] = {CLI_O_MODEL, CLI_O_CTX, CLI_O_JSON, CLI_O_THREADS};
 *     CLI_COMMAND(cli_mine, "mine", "what it does, for xorpatch --help", usage, options,
 *                 false, execute);
 *     static int execute(const cli_values *v)
 *     {
 *         size_t ctx = v->given[CLI_O_CTX] ? v->ctx : 512;  -- its own defaults
 *         ... v->model, v->json, v->args[0 .. v->n_args - 1] (operands) ...
 *     }
 *
 * -q/--quiet and -h/--help are taken by every command without being named (-t/--threads
 * sets the thread count as it is parsed). A command that takes operands besides options
 * says so (CLI_COMMAND's `operands`) and checks how many it has; otherwise one is a
 * usage error.
 *
 * The table (cli_options, options.c) holds for each option its long name, short letter,
 * kind of value and its range, whether it may be repeated, and the field of cli_values
 * its value goes to. The parser checks every value against it: a bad or out-of-range
 * value is a usage error naming the option and its range (never a wrap-around); a second
 * use of an option that is not repeatable is refused; the values of a repeatable one add
 * up (texts into a cli_texts; -p PATCH is loaded as it comes). A command may add
 * CLI_LONG_ONLY to an option (no short letter) or CLI_POSITIVE (at least 1). A new
 * option is an id, a field and a line in the table; the commands that take it name it,
 * and their --help texts describe it (a test checks that every --help names exactly the
 * options its command takes). Options whose values fill a library struct (xp_train_opts,
 * xp_shape, xp_sampler) have it as their field, so a command starts from the library's
 * defaults and takes what was given with CLI_COPY_GIVEN; so do the search settings (an
 * xp_search_opts; --layers LIST is CLI_O_SEARCH_LAYERS, the shape's --layers N is
 * CLI_O_N_LAYERS), and --controls is a repeatable text. */
#ifndef XP_CLI_OPTIONS_H
#define XP_CLI_OPTIONS_H
#include <stddef.h>

#include "cli/cli.h"

typedef enum cli_option_id {
    /* every command */
    CLI_O_QUIET,
    CLI_O_HELP,
    /* common ones */
    CLI_O_MODEL,
    CLI_O_OUTPUT,
    CLI_O_OUT,
    CLI_O_THREADS,
    CLI_O_KERNEL,
    CLI_O_PLAIN,
    CLI_O_JSON,
    CLI_O_SEED,
    CLI_O_TOKENIZER,
    CLI_O_NAME,
    CLI_O_FORCE,
    /* models and text */
    CLI_O_PROMPT,
    CLI_O_IDS,
    CLI_O_SPECIAL,
    CLI_O_DECODE,
    CLI_O_FILE,
    CLI_O_CHAT,
    CLI_O_SYSTEM,
    CLI_O_THINK,
    CLI_O_MAX_TOKENS,
    CLI_O_TEMP,
    CLI_O_TOP_K,
    CLI_O_TOP_P,
    CLI_O_STOP,
    CLI_O_TOP,
    CLI_O_ALL_POSITIONS,
    CLI_O_CTX,
    CLI_O_MAX_CHUNKS,
    CLI_O_NO_TENSORS,
    /* shapes (synth, train) */
    CLI_O_SHAPE,
    CLI_O_N_LAYERS,
    CLI_O_EMBD,
    CLI_O_FF,
    CLI_O_HEADS,
    CLI_O_KV_HEADS,
    CLI_O_HEAD_DIM,
    CLI_O_VOCAB,
    CLI_O_TIED,
    CLI_O_UNTIED,
    /* patches */
    CLI_O_PATCH,
    CLI_O_BASE,
    CLI_O_IN_PLACE,
    CLI_O_TO,
    /* probes */
    CLI_O_PROBES,
    CLI_O_HELDOUT,
    CLI_O_SPLIT,
    CLI_O_METRIC,
    CLI_O_NO_GENERATE,
    CLI_O_PER_PROBE,
    /* corpus and training */
    CLI_O_CORPUS,
    CLI_O_ITEMS,
    CLI_O_STEPS,
    CLI_O_STOP_AFTER,
    CLI_O_BATCH,
    CLI_O_WARMUP,
    CLI_O_LR,
    CLI_O_LR_MIN,
    CLI_O_WD,
    CLI_O_CLIP,
    CLI_O_FOCUS,
    CLI_O_FOCUS_STEPS,
    CLI_O_CHECKPOINT,
    CLI_O_CHECKPOINT_EVERY,
    CLI_O_RESUME,
    CLI_O_LOG_EVERY,
    /* search settings (search, pipeline, experiment) */
    CLI_O_FITNESS,
    CLI_O_LAMBDA,
    CLI_O_EPSILON,
    CLI_O_MIN_GAIN,
    CLI_O_GRANULARITY,
    CLI_O_SCALE_RATIO,
    CLI_O_SCALE_BITS,
    CLI_O_SEARCH_LAYERS,
    CLI_O_PROJ,
    CLI_O_PROPOSAL,
    CLI_O_ITERATIONS,
    CLI_O_SCREEN,
    CLI_O_AUTO_STOP,
    CLI_O_NAIVE,
    CLI_O_RERANK_EVERY,
    /* search runs (search, pipeline) */
    CLI_O_CONTROLS,
    CLI_O_ALLOW_DEAD,
    CLI_O_RESUME_FROM,
    CLI_O_LOG,
    CLI_O_REPORT,
    CLI_O_NO_EVAL,
    CLI_O_PROMOTE_CAP,
    CLI_O_RANDOM_BASELINE,
    CLI_O_CONTROL_CHECK,
    CLI_O_VALIDATION,
    CLI_O_VALIDATION_SPLIT,
    CLI_O_VALIDATION_RULE,
    CLI_O_LOG_FLIP_DETAIL,
    CLI_O_TOKEN_RULE,
    CLI_O_MPI,
    /* experiments */
    CLI_O_TEXT,
    CLI_O_COUNTS,
    CLI_O_STRATEGY,
    CLI_O_TRIALS,
    CLI_O_SAMPLES,
    CLI_O_PATCH_FILE,
    CLI_O_TARGET_FITNESS,
    CLI_O_BASELINE_ITERATIONS,
    /* task benchmarks */
    CLI_O_TASKS,
    CLI_O_KIND,
    CLI_O_STOP_NEWLINE,
    CLI_O_LIMIT,
    /* serving */
    CLI_O_PATCHES,
    CLI_O_HOST,
    CLI_O_PORT,
    CLI_O_API_KEY,
    CLI_O_PARALLEL,
    CLI_N_OPTIONS
} cli_option_id;

/* What a command may add to an option it names. */
enum { CLI_LONG_ONLY = 1 << 8, CLI_POSITIVE = 1 << 9, CLI_ID_MASK = 0xff };

/* The values of a repeatable text option, in the order given, NULL-terminated. */
#define CLI_MAX_TEXTS 64
typedef struct cli_texts {
    const char *v[CLI_MAX_TEXTS + 1];
    size_t n;
} cli_texts;

/* The patches of -p PATCH ..., loaded (in the order given). */
typedef xp_job_patches cli_patches;

/* Reads one -p argument (a file, or a Neagari directory: each of its patches) and adds
 * what it holds to the list, noting manifest steps whose file is absent. */
int cli_patches_add(cli_patches *list, const char *path, xp_err *err);
void cli_patches_free(cli_patches *list);

/* The token ids of --ids. */
typedef struct cli_ids {
    int32_t *v;
    size_t n;
} cli_ids;

/* The counts of --counts, and the flip kinds of --strategy (XP_FLIP_*), in the order
 * given. */
typedef struct cli_counts {
    size_t v[64];
    size_t n;
} cli_counts;
typedef struct cli_kinds {
    int v[3];
    size_t n;
} cli_kinds;

/* Every option's value (what it holds when not given: 0, NULL, false). */
typedef struct cli_values {
    bool given[CLI_N_OPTIONS];
    char **args; /* the operands */
    int n_args;
    const char *model, *output, *out, *kernel, *tokenizer, *name;
    bool plain, json, force;
    uint64_t seed;
    const char *prompt, *file, *system;
    cli_ids ids;
    bool special, decode, chat, think, all_positions, no_tensors;
    size_t max_tokens, top, ctx, max_chunks;
    xp_sampler sampler; /* --temp, --top-k, --top-p */
    cli_texts stop;
    const char *shape_name;
    xp_shape shape; /* --layers, --embd, ... */
    bool tied, untied;
    cli_patches patches;
    const char *base, *to;
    const char *patches_dir, *host, *api_key;
    size_t port, parallel;
    bool in_place;
    const char *probes, *heldout, *split;
    int metric;
    bool no_generate, per_probe;
    const char *corpus, *checkpoint, *items;
    xp_train_opts train; /* --steps, --batch, --lr, --focus, ... */
    uint32_t stop_after, checkpoint_every, log_every;
    bool resume;
    xp_search_opts search; /* --fitness, --lambda, --layers LIST, --auto-stop, ... */
    cli_texts controls;
    bool allow_dead, no_eval;
    const char *resume_from, *log, *report;
    size_t promote_cap;
    size_t random_baseline;
    int control_check; /* 0 none, 1 generation */
    const char *validation;
    double validation_split;
    bool log_flip_detail;
    int token_rule; /* enum xp_token_rule */
    bool mpi;          /* the searches run on the ranks of an MPI job */
    const char *text;
    cli_counts counts;
    cli_kinds strategies;
    size_t trials, samples, baseline_iterations;
    double target_fitness;
    cli_texts patch_files; /* -p as paths, for a job that loads them itself */
    const char *tasks;
    int task_kind; /* enum xp_task_kind */
    bool stop_newline;
    size_t limit;
} cli_values;

typedef enum cli_kind {
    CLI_FLAG,   /* no value: a bool */
    CLI_TEXT,   /* a text or a file name, as given: a const char *, or a cli_texts */
    CLI_INT,    /* a whole number (digits only) in [min, max]: uint32_t or 64 bits */
    CLI_NUMBER, /* a finite number in [lo, hi], or (lo, hi]: float or double */
    CLI_ENUM,   /* one of names(0) ... names(n_names - 1): its index, an int */
    CLI_LIST,   /* a value the option's take function reads into its field */
} cli_kind;

typedef struct cli_option {
    const char *name; /* the long name, without -- */
    char letter;      /* the short letter, or 0 */
    cli_kind kind;
    size_t at, size;             /* its field in cli_values */
    unsigned repeats;            /* 0: once (a second use is refused); N: up to N uses, adding up */
    uint64_t min, max;           /* CLI_INT */
    double lo, hi;               /* CLI_NUMBER */
    bool open_lo;                /* CLI_NUMBER: lo itself is refused */
    const char *(*names)(int i); /* CLI_ENUM */
    int n_names;
    /* CLI_LIST: takes the value into the field: 0, -1 when it is not one (the usage error
     * says it `needs`), or an exit code after printing the error itself */
    int (*take)(const char *value, void *field);
    const char *needs;
} cli_option;

extern const cli_option cli_options[CLI_N_OPTIONS];

#define CLI_AT(type, member) .at = offsetof(type, member), .size = sizeof(((type *)0)->member)

/* What a command on the table takes, and what it does with the values. */
typedef struct cli_spec {
    const cli_command *cmd;
    const int *options; /* CLI_O_* ids, each perhaps with CLI_LONG_ONLY or CLI_POSITIVE */
    size_t n_options;
    bool operands; /* takes arguments besides options */
    int (*execute)(const cli_values *v);
} cli_spec;

/* Parses argv (argv[0] is the command's name) and runs the command on the values; the
 * exit code (after printing the usage error, or the help, when parsing stops). */
int cli_run(const cli_spec *spec, int argc, char **argv);

/* Defines the command `var` (cli_NAME): its spec, and the run that hands argv to cli_run
 * (execute, the command's function, is defined after it). */
#define CLI_COMMAND(var, name, summary, usage, options, operands, execute)                         \
    CLI_COMMAND_LONG_HELP(var, name, summary, usage, NULL, options, operands, execute)
/* The same for a --help text in two parts (cli_command's usage_more). */
#define CLI_COMMAND_LONG_HELP(var, name, summary, usage, usage_more, options, operands, execute)   \
    static int execute(const cli_values *v);                                                       \
    static const cli_spec var##_spec = {&var, options, sizeof options / sizeof *options, operands, \
                                        execute};                                                  \
    static int var##_run(int argc, char **argv) { return cli_run(&var##_spec, argc, argv); }       \
    const cli_command var = {name, summary, usage, var##_run, usage_more}

/* Copies into dst the given values of the options whose field is within v's member at
 * `member` (dst laid out as that member): the library's defaults stay where none was
 * given. */
void cli_copy_given(const cli_values *v, size_t member, size_t size, void *dst);
#define CLI_COPY_GIVEN(v, member, dst)                                                             \
    cli_copy_given(v, offsetof(cli_values, member), sizeof(dst), &(dst))

#endif
