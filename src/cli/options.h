/* The commands' options, each declared once, and the one parser that reads them.
 *
 * How a command declares its options: it lists the ones it takes, each with the field of
 * its own arguments struct that receives the value, and calls cli_parse:
 *
 *     typedef struct args { const char *model; size_t max_tokens; bool json; } args;
 *     static const cli_use uses[] = {
 *         {CLI_O_MODEL, CLI_AT(args, model)},
 *         {CLI_O_MAX_TOKENS, CLI_AT(args, max_tokens)},
 *         {CLI_O_JSON, CLI_AT(args, json)},
 *         {.id = CLI_O_THREADS},        -- no field: the parser sets the thread count
 *     };
 *     static const cli_spec spec = CLI_SPEC(&cli_mycommand, uses, false);
 *     args a = {.max_tokens = 128};     -- defaults first; given options overwrite them
 *     cli_parsed p;
 *     int rc = cli_parse(&spec, argc, argv, &a, &p);
 *     if (rc >= 0)
 *         return rc;                    -- an error was printed, or --help
 *
 * -q/--quiet and -h/--help are taken by every command without being listed. The table
 * (cli_options, options.c) says for each option its long name, short letter, the kind
 * of value and its range, and whether it may be repeated; the parser checks every value
 * against it (a bad or out-of-range value is a usage error naming the option, never a
 * wrap-around), refuses a second use of an option that is not repeatable, and adds up
 * the values of one that is. A new option is one line in the table and one in each
 * command's list; the command's --help text names it (tests check that every --help
 * lists exactly the options its command takes).
 *
 * The field's type follows the kind: CLI_FLAG bool; CLI_TEXT const char *, or cli_texts
 * when repeatable; CLI_INT uint32_t or a 64-bit unsigned (uint64_t, size_t); CLI_NUMBER
 * float or double; CLI_ENUM int; CLI_LIST whatever the use's take function fills. A use
 * may narrow the table's integer range (.min, .max) and drop the short letter
 * (.long_only); the values of options several commands share in the same struct (such
 * as the search settings in an xp_search_opts) can be one macro of uses. */
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
    CLI_N_OPTIONS
} cli_option_id;

typedef enum cli_kind {
    CLI_FLAG,   /* no value */
    CLI_TEXT,   /* a text or a file name, as given */
    CLI_INT,    /* a whole number (digits only) in [min, max] */
    CLI_NUMBER, /* a finite number in [lo, hi], or (lo, hi] */
    CLI_ENUM,   /* one of the names name(0) ... name(n_names - 1): its index */
    CLI_LIST,   /* a value the use's take function reads (a comma list, a file to load) */
} cli_kind;

/* Takes a CLI_LIST value into field: 0 when taken, -1 when it is not one (the parser
 * prints the usage error, with the option's `needs`), else an exit code after printing
 * the error itself. */
typedef int (*cli_take_fn)(const char *value, void *field);

typedef struct cli_option {
    const char *name; /* the long name, without -- */
    char letter;      /* the short letter, or 0 */
    cli_kind kind;
    unsigned repeats;            /* 0: once (a second use is refused); N: up to N uses, adding up */
    uint64_t min, max;           /* CLI_INT */
    double lo, hi;               /* CLI_NUMBER */
    bool open_lo;                /* CLI_NUMBER: lo itself is refused */
    const char *(*names)(int i); /* CLI_ENUM */
    int n_names;
    const char *needs; /* CLI_LIST: what the value must be, for the error */
} cli_option;

extern const cli_option cli_options[CLI_N_OPTIONS];
#define CLI_REPEATS_ANY 1000000u

/* The values of a repeatable text option, in the order given, NULL-terminated. */
#define CLI_MAX_TEXTS 64
typedef struct cli_texts {
    const char *v[CLI_MAX_TEXTS + 1];
    size_t n;
} cli_texts;

/* One option a command takes and where its value goes. */
typedef struct cli_use {
    cli_option_id id;
    size_t at, size;   /* the field (CLI_AT); size 0: none */
    cli_take_fn take;  /* CLI_LIST */
    uint64_t min, max; /* CLI_INT: a narrower range than the table's (0: the table's) */
    bool long_only;    /* without the table's short letter */
} cli_use;
#define CLI_AT(type, member) .at = offsetof(type, member), .size = sizeof(((type *)0)->member)

typedef struct cli_spec {
    const cli_command *cmd;
    const cli_use *uses;
    size_t n_uses;
    bool operands; /* takes arguments besides options (the command checks them) */
} cli_spec;
#define CLI_SPEC(cmd, uses, operands)                                                              \
    {                                                                                              \
        cmd, uses, sizeof uses / sizeof *uses, operands                                            \
    }

typedef struct cli_parsed {
    bool given[CLI_N_OPTIONS];
    char **args; /* the operands */
    int n_args;
} cli_parsed;

/* Parses argv (argv[0] is the command's name) into args, the struct the spec's fields are
 * in. -1 to go on; else an exit code, after printing the usage error or the help. */
int cli_parse(const cli_spec *spec, int argc, char **argv, void *args, cli_parsed *out);

/* Checks value as option id's (for a command not yet on the table): 0 with *out set, or
 * the usage error's exit code after printing it. */
int cli_parse_int(const char *command, cli_option_id id, const char *value, uint64_t *out);
#endif
