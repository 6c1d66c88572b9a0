/* The option table and its parser (see options.h): every option once, with its kind of
 * value, range and repetition rule; cli_parse turns a command's list of options into
 * getopt_long's tables, checks each value against the table and stores it in the
 * command's struct. */
#include "cli/options.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

static const char *metric_name(int i) { return xp_metric_name((xp_metric)i); }

/* Token counts up to what a GGUF context length can hold; vocabulary entries up to a
 * million (more than any Qwen3 vocabulary); training counts as the uint32 they become. */
#define TOKENS UINT32_MAX
#define VOCAB_ENTRIES 1000000
#define COUNT(lo, hi) .kind = CLI_INT, .min = (lo), .max = (hi)
#define SHAPE_DIM COUNT(0, UINT32_MAX) /* 0 and other bad shapes: xp_shape_check says why */
#define TRAIN_COUNT COUNT(1, UINT32_MAX)
#define TRAIN_RATE .kind = CLI_NUMBER, .lo = 0, .hi = 1e6

const cli_option cli_options[CLI_N_OPTIONS] = {
    [CLI_O_QUIET] = {"quiet", 'q', .kind = CLI_FLAG},
    [CLI_O_HELP] = {"help", 'h', .kind = CLI_FLAG},
    [CLI_O_MODEL] = {"model", 'm', .kind = CLI_TEXT},
    [CLI_O_OUTPUT] = {"output", 'o', .kind = CLI_TEXT},
    [CLI_O_OUT] = {"out", 'o', .kind = CLI_TEXT},
    [CLI_O_THREADS] = {"threads", 't', COUNT(1, 1024)},
    [CLI_O_KERNEL] = {"kernel", 0, .kind = CLI_TEXT},
    [CLI_O_PLAIN] = {"plain", 0, .kind = CLI_FLAG},
    [CLI_O_JSON] = {"json", 0, .kind = CLI_FLAG},
    [CLI_O_SEED] = {"seed", 0, COUNT(0, UINT64_MAX)},
    [CLI_O_TOKENIZER] = {"tokenizer", 0, .kind = CLI_TEXT},
    [CLI_O_NAME] = {"name", 0, .kind = CLI_TEXT},
    [CLI_O_FORCE] = {"force", 0, .kind = CLI_FLAG},

    [CLI_O_PROMPT] = {"prompt", 'p', .kind = CLI_TEXT},
    [CLI_O_IDS] = {"ids", 0, .kind = CLI_LIST, .needs = "comma-separated token ids"},
    [CLI_O_SPECIAL] = {"special", 0, .kind = CLI_FLAG},
    [CLI_O_DECODE] = {"decode", 0, .kind = CLI_FLAG},
    [CLI_O_FILE] = {"file", 'f', .kind = CLI_TEXT},
    [CLI_O_CHAT] = {"chat", 0, .kind = CLI_FLAG},
    [CLI_O_SYSTEM] = {"system", 0, .kind = CLI_TEXT},
    [CLI_O_THINK] = {"think", 0, .kind = CLI_FLAG},
    [CLI_O_MAX_TOKENS] = {"max-tokens", 'n', COUNT(1, TOKENS)},
    [CLI_O_TEMP] = {"temp", 0, .kind = CLI_NUMBER, .lo = 0, .hi = 100},
    [CLI_O_TOP_K] = {"top-k", 0, COUNT(0, VOCAB_ENTRIES)},
    [CLI_O_TOP_P] = {"top-p", 0, .kind = CLI_NUMBER, .lo = 0, .hi = 1, .open_lo = true},
    [CLI_O_STOP] = {"stop", 0, .kind = CLI_TEXT, .repeats = 16},
    [CLI_O_TOP] = {"top", 0, COUNT(1, VOCAB_ENTRIES)},
    [CLI_O_ALL_POSITIONS] = {"all-positions", 0, .kind = CLI_FLAG},
    [CLI_O_CTX] = {"ctx", 0, COUNT(2, TOKENS)},
    [CLI_O_MAX_CHUNKS] = {"max-chunks", 0, COUNT(1, UINT32_MAX)},
    [CLI_O_NO_TENSORS] = {"no-tensors", 0, .kind = CLI_FLAG},

    [CLI_O_SHAPE] = {"shape", 0, .kind = CLI_TEXT},
    [CLI_O_N_LAYERS] = {"layers", 0, SHAPE_DIM},
    [CLI_O_EMBD] = {"embd", 0, SHAPE_DIM},
    [CLI_O_FF] = {"ff", 0, SHAPE_DIM},
    [CLI_O_HEADS] = {"heads", 0, SHAPE_DIM},
    [CLI_O_KV_HEADS] = {"kv-heads", 0, SHAPE_DIM},
    [CLI_O_HEAD_DIM] = {"head-dim", 0, SHAPE_DIM},
    [CLI_O_VOCAB] = {"vocab", 0, SHAPE_DIM},
    [CLI_O_TIED] = {"tied", 0, .kind = CLI_FLAG},
    [CLI_O_UNTIED] = {"untied", 0, .kind = CLI_FLAG},

    [CLI_O_PATCH] = {"patch", 'p', .kind = CLI_LIST, .repeats = CLI_REPEATS_ANY},
    [CLI_O_BASE] = {"base", 'b', .kind = CLI_TEXT},
    [CLI_O_IN_PLACE] = {"in-place", 0, .kind = CLI_FLAG},
    [CLI_O_TO] = {"to", 0, .kind = CLI_TEXT},

    [CLI_O_PROBES] = {"probes", 0, .kind = CLI_TEXT},
    [CLI_O_HELDOUT] = {"heldout", 0, .kind = CLI_TEXT},
    [CLI_O_SPLIT] = {"split", 0, .kind = CLI_TEXT},
    [CLI_O_METRIC] = {"metric", 0, .kind = CLI_ENUM, .names = metric_name,
                      .n_names = XP_METRIC_GENERATION + 1},
    [CLI_O_NO_GENERATE] = {"no-generate", 0, .kind = CLI_FLAG},
    [CLI_O_PER_PROBE] = {"per-probe", 0, .kind = CLI_FLAG},

    [CLI_O_CORPUS] = {"corpus", 0, .kind = CLI_TEXT},
    [CLI_O_STEPS] = {"steps", 0, TRAIN_COUNT},
    [CLI_O_STOP_AFTER] = {"stop-after", 0, TRAIN_COUNT},
    [CLI_O_BATCH] = {"batch", 0, TRAIN_COUNT},
    [CLI_O_WARMUP] = {"warmup", 0, TRAIN_COUNT},
    [CLI_O_LR] = {"lr", 0, TRAIN_RATE},
    [CLI_O_LR_MIN] = {"lr-min", 0, TRAIN_RATE},
    [CLI_O_WD] = {"wd", 0, TRAIN_RATE},
    [CLI_O_CLIP] = {"clip", 0, TRAIN_RATE},
    [CLI_O_FOCUS] = {"focus", 0, .kind = CLI_TEXT},
    [CLI_O_FOCUS_STEPS] = {"focus-steps", 0, TRAIN_COUNT},
    [CLI_O_CHECKPOINT] = {"checkpoint", 0, .kind = CLI_TEXT},
    [CLI_O_CHECKPOINT_EVERY] = {"checkpoint-every", 0, TRAIN_COUNT},
    [CLI_O_RESUME] = {"resume", 0, .kind = CLI_FLAG},
    [CLI_O_LOG_EVERY] = {"log-every", 0, TRAIN_COUNT},
};

/* A use's option, range and short letter after its own narrowing. */
typedef struct resolved {
    const cli_option *o;
    uint64_t min, max;
    char letter;
} resolved;

static resolved resolve(const cli_use *u)
{
    const cli_option *o = &cli_options[u->id];
    return (resolved){o, u->min ? u->min : o->min, u->max ? u->max : o->max,
                      u->long_only ? 0 : o->letter};
}

/* A mistake in a command's list, not in what the user typed. */
static _Noreturn void bad_use(const cli_spec *spec, const cli_use *u, const char *why)
{
    fprintf(stderr, "xorpatch: internal error: %s's option --%s: %s\n", spec->cmd->name,
            cli_options[u->id].name, why);
    abort();
}

static int check_int(const char *command, const char *shown, const resolved *r, const char *value,
                     uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = value[0] >= '0' && value[0] <= '9' ? strtoull(value, &end, 10) : 0;
    if (value[0] >= '0' && value[0] <= '9' && !*end && !errno && v >= r->min && v <= r->max) {
        *out = v;
        return 0;
    }
    if (r->min == 0)
        return cli_usage_error(command, "%s needs a non-negative integer up to %llu, not '%s'",
                               shown, (unsigned long long)r->max, value);
    if (r->min == 1)
        return cli_usage_error(command, "%s needs a positive integer up to %llu, not '%s'", shown,
                               (unsigned long long)r->max, value);
    return cli_usage_error(command, "%s needs an integer from %llu to %llu, not '%s'", shown,
                           (unsigned long long)r->min, (unsigned long long)r->max, value);
}

static int check_number(const char *command, const char *shown, const cli_option *o,
                        const char *value, size_t size, void *field)
{
    char *end;
    float f = 0;
    double d = size == sizeof(float) ? (double)(f = strtof(value, &end)) : strtod(value, &end);
    bool above_lo = o->open_lo ? d > o->lo : d >= o->lo;
    if (!*value || *end || !above_lo || !(d <= o->hi))
        return cli_usage_error(command, "%s needs a number in %c%g, %g], not '%s'", shown,
                               o->open_lo ? '(' : '[', o->lo, o->hi, value);
    if (size == sizeof(float))
        memcpy(field, &f, sizeof f);
    else
        memcpy(field, &d, sizeof d);
    return 0;
}

static int check_enum(const char *command, const char *shown, const cli_option *o,
                      const char *value, int *out)
{
    for (int i = 0; i < o->n_names; i++)
        if (!strcmp(value, o->names(i))) {
            *out = i;
            return 0;
        }
    char list[256];
    size_t len = 0;
    for (int i = 0; i < o->n_names && len < sizeof list; i++)
        len += (size_t)snprintf(list + len, sizeof list - len, "%s%s",
                                !i                   ? ""
                                : i + 1 < o->n_names ? ", "
                                                     : " or ",
                                o->names(i));
    return cli_usage_error(command, "%s must be %s, not '%s'", shown, list, value);
}

/* "-t" (with a letter), "--threads" (without), or "-t/--threads" (both). */
static void name_as(char *buf, size_t size, const cli_option *o, char letter, bool both)
{
    if (letter && both)
        snprintf(buf, size, "-%c/--%s", letter, o->name);
    else if (letter)
        snprintf(buf, size, "-%c", letter);
    else
        snprintf(buf, size, "--%s", o->name);
}

int cli_parse_int(const char *command, cli_option_id id, const char *value, uint64_t *out)
{
    const cli_option *o = &cli_options[id];
    char shown[64];
    name_as(shown, sizeof shown, o, o->letter, false);
    resolved r = {o, o->min, o->max, o->letter};
    return check_int(command, shown, &r, value, out);
}

/* Takes one value of use u into args; -1 to go on, else an exit code. */
static int take(const cli_spec *spec, const cli_use *u, const resolved *r, const char *shown,
                const char *value, void *args)
{
    const char *cmd = spec->cmd->name;
    const cli_option *o = r->o;
    void *field = (char *)args + u->at;
    bool store = u->size != 0;
    switch (o->kind) {
    case CLI_FLAG: {
        bool yes = true;
        if (store && u->size != sizeof yes)
            bad_use(spec, u, "a flag's field is a bool");
        if (store)
            memcpy(field, &yes, sizeof yes);
        return -1;
    }
    case CLI_TEXT:
        if (o->repeats && u->size != sizeof(cli_texts))
            bad_use(spec, u, "a repeatable text's field is a cli_texts");
        if (o->repeats) {
            cli_texts *t = field;
            t->v[t->n++] = value;
        } else if (store && u->size == sizeof value) {
            memcpy(field, &value, sizeof value);
        } else if (store) {
            bad_use(spec, u, "a text's field is a const char *");
        }
        return -1;
    case CLI_INT: {
        uint64_t v;
        int rc = check_int(cmd, shown, r, value, &v);
        if (rc)
            return rc;
        if (u->id == CLI_O_THREADS)
            omp_set_num_threads((int)v);
        if (store && u->size == sizeof(uint32_t) && r->max <= UINT32_MAX) {
            uint32_t v32 = (uint32_t)v;
            memcpy(field, &v32, sizeof v32);
        } else if (store && u->size == sizeof v) {
            memcpy(field, &v, sizeof v);
        } else if (store) {
            bad_use(spec, u, "an integer's field is a uint32_t (range within it) or 64 bits");
        }
        return -1;
    }
    case CLI_NUMBER:
        if (u->size != sizeof(float) && u->size != sizeof(double))
            bad_use(spec, u, "a number's field is a float or a double");
        return check_number(cmd, shown, o, value, u->size, field) ? EXIT_USAGE : -1;
    case CLI_ENUM: {
        int v = 0;
        if (u->size != sizeof v)
            bad_use(spec, u, "a name's field is an int");
        if (check_enum(cmd, shown, o, value, &v))
            return EXIT_USAGE;
        memcpy(field, &v, sizeof v);
        return -1;
    }
    case CLI_LIST: {
        if (!u->take)
            bad_use(spec, u, "a list needs its take function");
        int rc = u->take(value, field);
        if (rc == -1)
            return cli_usage_error(cmd, "%s needs %s, not '%s'", shown, o->needs, value);
        return rc ? rc : -1;
    }
    }
    return -1;
}

#define MAX_USES 48

int cli_parse(const cli_spec *spec, int argc, char **argv, void *args, cli_parsed *out)
{
    /* the command's uses, then -q and -h */
    static const cli_use common[] = {{.id = CLI_O_QUIET}, {.id = CLI_O_HELP}};
    const cli_use *uses[MAX_USES];
    size_t n = 0;
    if (spec->n_uses + 2 > MAX_USES)
        bad_use(spec, spec->uses, "more options than the parser holds");
    for (size_t i = 0; i < spec->n_uses; i++)
        uses[n++] = &spec->uses[i];
    for (size_t i = 0; i < 2; i++)
        uses[n++] = &common[i];

    struct option longs[MAX_USES + 1];
    char shorts[3 * MAX_USES + 1];
    size_t ns = 0;
    for (size_t i = 0; i < n; i++) {
        resolved r = resolve(uses[i]);
        bool value = r.o->kind != CLI_FLAG;
        for (size_t j = 0; j < i; j++)
            if (uses[j]->id == uses[i]->id || (r.letter && resolve(uses[j]).letter == r.letter))
                bad_use(spec, uses[i], "listed twice, or its letter is another's");
        longs[i] =
            (struct option){r.o->name, value ? required_argument : no_argument, NULL, 256 + (int)i};
        if (r.letter) {
            shorts[ns++] = r.letter;
            if (value)
                shorts[ns++] = ':';
        }
    }
    longs[n] = (struct option){0};
    shorts[ns] = '\0';

    memset(out, 0, sizeof *out);
    unsigned times[MAX_USES] = {0};
    const cli_command *cmd = spec->cmd;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, shorts, longs, NULL)) != -1) {
        size_t i = 0;
        if (c >= 256)
            i = (size_t)(c - 256);
        else
            while (i < n && !(c != '?' && resolve(uses[i]).letter == c))
                i++;
        if (i == n) /* an unknown option, or one without its value */
            return cli_common_option(cmd, '?');
        const cli_use *u = uses[i];
        resolved r = resolve(u);
        char shown[64], both[64];
        name_as(shown, sizeof shown, r.o, c >= 256 ? 0 : r.letter, false);
        name_as(both, sizeof both, r.o, r.letter, true);
        if (times[i] && !r.o->repeats)
            return cli_usage_error(cmd->name, "%s is given twice; it is taken once", both);
        if (r.o->repeats && times[i] == r.o->repeats)
            return cli_usage_error(cmd->name, "%s is taken at most %u times", both, r.o->repeats);
        times[i]++;
        out->given[u->id] = true;
        if (u->id == CLI_O_QUIET || u->id == CLI_O_HELP) {
            int rc = cli_common_option(cmd, r.letter);
            if (rc >= 0)
                return rc;
            continue;
        }
        int rc = take(spec, u, &r, shown, optarg, args);
        if (rc >= 0)
            return rc;
    }
    if (optind < argc && !spec->operands)
        return cli_usage_error(cmd->name, "unexpected argument '%s'", argv[optind]);
    out->args = argv + optind;
    out->n_args = argc - optind;
    return -1;
}
