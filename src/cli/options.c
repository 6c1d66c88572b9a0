/* The option table and its parser (see options.h): every option once, with its kind of
 * value, range, repetition rule and field; cli_run turns a command's list of options into
 * getopt_long's tables, checks each value against the table, stores it in a cli_values
 * and runs the command on them. */
#include "cli/options.h"

#include <errno.h>
#include <getopt.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli_job.h"

static const char *metric_name(int i) { return xp_metric_name((xp_metric)i); }

static const char *control_check_name(int i)
{
    return i == 0 ? "none" : i == 1 ? "generation" : NULL;
}

static const char *task_kind_name(int i)
{
    static const char *const names[] = {
        [XP_TASK_AUTO] = "auto", [XP_TASK_NUMBER] = "number", [XP_TASK_CHOICE] = "choice"};
    return names[i];
}

/* A list of whole numbers "1,2,3" (and, with ranges, "1-4,26"), each up to max, into
 * out[cap]; its length, or 0 when it is not one. */
static size_t read_list(const char *s, bool ranges, uint64_t max, uint64_t *out, size_t cap)
{
    size_t n = 0;
    while (*s) {
        char *end;
        if (*s < '0' || *s > '9')
            return 0;
        errno = 0;
        unsigned long long a = strtoull(s, &end, 10), b = a;
        if (ranges && *end == '-') {
            s = end + 1;
            if (*s < '0' || *s > '9')
                return 0;
            b = strtoull(s, &end, 10);
        }
        if (errno || a > max || b > max || b < a)
            return 0;
        for (unsigned long long x = a; x <= b; x++) {
            if (n == cap)
                return 0;
            out[n++] = x;
        }
        if (*end == ',' && end[1])
            end++;
        else if (*end)
            return 0;
        s = end;
    }
    return n;
}

/* --layers LIST: "1-4,26" into the search's layers (a list cli_run frees). */
static int take_layers(const char *s, void *field)
{
    xp_search_opts *o = (void *)((char *)field - offsetof(xp_search_opts, layers));
    uint64_t l[256];
    size_t n = read_list(s, true, 65535, l, sizeof l / sizeof *l);
    uint32_t *layers = n ? malloc(n * sizeof *layers) : NULL;
    if (!layers)
        return -1;
    for (size_t i = 0; i < n; i++)
        layers[i] = (uint32_t)l[i];
    o->layers = layers;
    o->n_layers = n;
    return 0;
}

/* --proj LIST: "gate,up" into 1 << XP_PROJ_* bits. */
static int take_projs(const char *s, void *field)
{
    char buf[128];
    unsigned mask = 0;
    snprintf(buf, sizeof buf, "%s", s);
    for (char *save, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        int p = xp_proj_from_name(tok);
        if (p < 0)
            return -1;
        mask |= 1u << p;
    }
    memcpy(field, &mask, sizeof mask);
    return mask ? 0 : -1;
}

/* --scale-bits LO-HI: into the search's scale_bit_min and scale_bit_max. */
static int take_scale_bits(const char *s, void *field)
{
    int lo, hi;
    char tail;
    if (sscanf(s, "%d-%d%c", &lo, &hi, &tail) != 2 || lo < 0 || hi > 15 || lo > hi)
        return -1;
    xp_search_opts *o = (void *)((char *)field - offsetof(xp_search_opts, scale_bit_min));
    o->scale_bit_min = lo;
    o->scale_bit_max = hi;
    return 0;
}

/* --auto-stop N:RATE or off: into the search's stop_window and stop_rate. */
static int take_auto_stop(const char *s, void *field)
{
    xp_search_opts *o = (void *)((char *)field - offsetof(xp_search_opts, stop_window));
    unsigned long n;
    double rate;
    char tail;
    if (!strcmp(s, "off")) {
        o->stop_window = 0;
        return 0;
    }
    if (s[0] == '-' || sscanf(s, "%lu:%lf%c", &n, &rate, &tail) != 2 || n == 0 || n > 1000000 ||
        !(rate > 0) || rate > 1)
        return -1;
    o->stop_window = n;
    o->stop_rate = rate;
    return 0;
}

/* --counts "10,100,1000" (0 allowed). */
static int take_counts(const char *s, void *field)
{
    cli_counts *c = field;
    uint64_t v[sizeof c->v / sizeof *c->v];
    size_t n = read_list(s, false, SIZE_MAX, v, sizeof v / sizeof *v);
    for (size_t i = 0; i < n; i++)
        c->v[i] = (size_t)v[i];
    c->n = n;
    return n ? 0 : -1;
}

/* --strategy "bit,row,block": distinct flip kinds. */
static int take_strategies(const char *s, void *field)
{
    cli_kinds *k = field;
    char buf[64];
    snprintf(buf, sizeof buf, "%s", s);
    k->n = 0;
    for (char *save, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        int kind = !strcmp(tok, "bit")     ? XP_FLIP_MASK
                   : !strcmp(tok, "row")   ? XP_FLIP_ROW
                   : !strcmp(tok, "block") ? XP_FLIP_BLOCK
                                           : -1;
        if (kind < 0 || k->n == sizeof k->v / sizeof *k->v)
            return -1;
        for (size_t i = 0; i < k->n; i++)
            if (k->v[i] == kind)
                return -1;
        k->v[k->n++] = kind;
    }
    return k->n ? 0 : -1;
}

/* "1,2,3" into a cli_ids. */
static int take_ids(const char *s, void *field)
{
    cli_ids *l = field;
    size_t cap = 16;
    int32_t *ids = malloc(cap * sizeof *ids);
    size_t n = 0;
    while (ids && *s) {
        char *end;
        errno = 0;
        long v = strtol(s, &end, 10);
        if (end == s || errno || v < 0 || v > INT32_MAX || (*end && *end != ','))
            break;
        if (n == cap) {
            int32_t *b = realloc(ids, (cap *= 2) * sizeof *ids);
            if (!b)
                break;
            ids = b;
        }
        ids[n++] = (int32_t)v;
        s = *end ? end + 1 : end;
    }
    if (!ids || *s || !n) {
        free(ids);
        return -1;
    }
    l->v = ids;
    l->n = n;
    return 0;
}

int cli_patches_add(cli_patches *list, const char *path, xp_err *err)
{
    return xp_job_patches_add(list, path, &cli_job_notes, err);
}

void cli_patches_free(cli_patches *list) { xp_job_patches_free(list); }

/* -p PATCH: loaded as it comes, so that an error names the first bad one. */
static int take_patch(const char *path, void *list)
{
    xp_err err = {0};
    return cli_patches_add(list, path, &err) ? cli_fail(&err) : 0;
}

/* Token counts up to what a GGUF context length can hold; vocabulary entries up to a
 * million (more than any Qwen3 vocabulary); training counts as the uint32 they become. */
#define TOKENS UINT32_MAX
#define VOCAB_ENTRIES 1000000
#define AT(member) CLI_AT(cli_values, member)
#define FLAG(member) .kind = CLI_FLAG, AT(member)
#define TEXT(member) .kind = CLI_TEXT, AT(member)
#define INT(member, lo, hi) .kind = CLI_INT, AT(member), .min = (lo), .max = (hi)
#define NUMBER(member, l, h) .kind = CLI_NUMBER, AT(member), .lo = (l), .hi = (h)
#define SHAPE_DIM(member) INT(shape.member, 0, UINT32_MAX) /* xp_shape_check judges them */
#define TRAIN_COUNT(member) INT(member, 1, UINT32_MAX)
#define TRAIN_RATE(member) NUMBER(train.member, 0, 1e6)
#define ENUM(member, name_of, n) .kind = CLI_ENUM, AT(member), .names = name_of, .n_names = (n)
#define LIST(member, take_it, what) .kind = CLI_LIST, AT(member), .take = take_it, .needs = what
/* A list whose take function fills several neighbouring fields of the search settings,
 * first to last: they are copied together when the option is given. */
#define SEARCH_FIELDS(first, last, take_it, what)                                                  \
    .kind = CLI_LIST, .at = offsetof(cli_values, search.first),                                    \
    .size = offsetof(xp_search_opts, last) + sizeof(((xp_search_opts *)0)->last) -                 \
            offsetof(xp_search_opts, first),                                                       \
    .take = take_it, .needs = what
#define COUNT UINT32_MAX /* iterations, trials and the like */

const cli_option cli_options[CLI_N_OPTIONS] = {
    [CLI_O_QUIET] = {"quiet", 'q', .kind = CLI_FLAG},
    [CLI_O_HELP] = {"help", 'h', .kind = CLI_FLAG},
    [CLI_O_MODEL] = {"model", 'm', TEXT(model)},
    [CLI_O_OUTPUT] = {"output", 'o', TEXT(output)},
    [CLI_O_OUT] = {"out", 'o', TEXT(out)},
    [CLI_O_THREADS] = {"threads", 't', .kind = CLI_INT, .min = 1, .max = 1024},
    [CLI_O_KERNEL] = {"kernel", 0, TEXT(kernel)},
    [CLI_O_PLAIN] = {"plain", 0, FLAG(plain)},
    [CLI_O_JSON] = {"json", 0, FLAG(json)},
    [CLI_O_SEED] = {"seed", 0, INT(seed, 0, UINT64_MAX)},
    [CLI_O_TOKENIZER] = {"tokenizer", 0, TEXT(tokenizer)},
    [CLI_O_NAME] = {"name", 0, TEXT(name)},
    [CLI_O_FORCE] = {"force", 0, FLAG(force)},

    [CLI_O_PROMPT] = {"prompt", 'p', TEXT(prompt)},
    [CLI_O_IDS] = {"ids", 0, LIST(ids, take_ids, "comma-separated token ids")},
    [CLI_O_SPECIAL] = {"special", 0, FLAG(special)},
    [CLI_O_DECODE] = {"decode", 0, FLAG(decode)},
    [CLI_O_FILE] = {"file", 'f', TEXT(file)},
    [CLI_O_CHAT] = {"chat", 0, FLAG(chat)},
    [CLI_O_SYSTEM] = {"system", 0, TEXT(system)},
    [CLI_O_THINK] = {"think", 0, FLAG(think)},
    [CLI_O_MAX_TOKENS] = {"max-tokens", 'n', INT(max_tokens, 1, TOKENS)},
    [CLI_O_TEMP] = {"temp", 0, NUMBER(sampler.temperature, 0, 100)},
    [CLI_O_TOP_K] = {"top-k", 0, INT(sampler.top_k, 0, VOCAB_ENTRIES)},
    [CLI_O_TOP_P] = {"top-p", 0, NUMBER(sampler.top_p, 0, 1), .open_lo = true},
    [CLI_O_STOP] = {"stop", 0, TEXT(stop), .repeats = 16},
    [CLI_O_TOP] = {"top", 0, INT(top, 1, VOCAB_ENTRIES)},
    [CLI_O_ALL_POSITIONS] = {"all-positions", 0, FLAG(all_positions)},
    [CLI_O_CTX] = {"ctx", 0, INT(ctx, 2, TOKENS)},
    [CLI_O_MAX_CHUNKS] = {"max-chunks", 0, INT(max_chunks, 1, UINT32_MAX)},
    [CLI_O_NO_TENSORS] = {"no-tensors", 0, FLAG(no_tensors)},

    [CLI_O_SHAPE] = {"shape", 0, TEXT(shape_name)},
    [CLI_O_N_LAYERS] = {"layers", 0, SHAPE_DIM(n_layer)},
    [CLI_O_EMBD] = {"embd", 0, SHAPE_DIM(n_embd)},
    [CLI_O_FF] = {"ff", 0, SHAPE_DIM(n_ff)},
    [CLI_O_HEADS] = {"heads", 0, SHAPE_DIM(n_head)},
    [CLI_O_KV_HEADS] = {"kv-heads", 0, SHAPE_DIM(n_head_kv)},
    [CLI_O_HEAD_DIM] = {"head-dim", 0, SHAPE_DIM(head_dim)},
    [CLI_O_VOCAB] = {"vocab", 0, SHAPE_DIM(n_vocab)},
    [CLI_O_TIED] = {"tied", 0, FLAG(tied)},
    [CLI_O_UNTIED] = {"untied", 0, FLAG(untied)},

    [CLI_O_PATCH] = {"patch", 'p', .kind = CLI_LIST, AT(patches), .take = take_patch,
                     .repeats = 1000000},
    [CLI_O_BASE] = {"base", 'b', TEXT(base)},
    [CLI_O_IN_PLACE] = {"in-place", 0, FLAG(in_place)},
    [CLI_O_TO] = {"to", 0, TEXT(to)},

    [CLI_O_PROBES] = {"probes", 0, TEXT(probes)},
    [CLI_O_HELDOUT] = {"heldout", 0, TEXT(heldout)},
    [CLI_O_SPLIT] = {"split", 0, TEXT(split)},
    [CLI_O_METRIC] = {"metric", 0, ENUM(metric, metric_name, XP_METRIC_MARGIN + 1)},
    [CLI_O_NO_GENERATE] = {"no-generate", 0, FLAG(no_generate)},
    [CLI_O_PER_PROBE] = {"per-probe", 0, FLAG(per_probe)},

    [CLI_O_CORPUS] = {"corpus", 0, TEXT(corpus)},
    [CLI_O_ITEMS] = {"items", 0, TEXT(items)},
    [CLI_O_STEPS] = {"steps", 0, TRAIN_COUNT(train.steps)},
    [CLI_O_STOP_AFTER] = {"stop-after", 0, TRAIN_COUNT(stop_after)},
    [CLI_O_BATCH] = {"batch", 0, TRAIN_COUNT(train.batch)},
    [CLI_O_WARMUP] = {"warmup", 0, TRAIN_COUNT(train.warmup)},
    [CLI_O_LR] = {"lr", 0, TRAIN_RATE(lr)},
    [CLI_O_LR_MIN] = {"lr-min", 0, TRAIN_RATE(lr_min)},
    [CLI_O_WD] = {"wd", 0, TRAIN_RATE(weight_decay)},
    [CLI_O_CLIP] = {"clip", 0, TRAIN_RATE(clip)},
    [CLI_O_FOCUS] = {"focus", 0, TEXT(train.focus_task)},
    [CLI_O_FOCUS_STEPS] = {"focus-steps", 0, TRAIN_COUNT(train.focus_steps)},
    [CLI_O_CHECKPOINT] = {"checkpoint", 0, TEXT(checkpoint)},
    [CLI_O_CHECKPOINT_EVERY] = {"checkpoint-every", 0, TRAIN_COUNT(checkpoint_every)},
    [CLI_O_RESUME] = {"resume", 0, FLAG(resume)},
    [CLI_O_LOG_EVERY] = {"log-every", 0, TRAIN_COUNT(log_every)},

    [CLI_O_FITNESS] = {"fitness", 0, ENUM(search.fitness, xp_fitness_name, XP_FITNESS_FOCUSED + 1)},
    [CLI_O_LAMBDA] = {"lambda", 0, NUMBER(search.lambda, 0, 1e6)},
    [CLI_O_EPSILON] = {"epsilon", 0, NUMBER(search.epsilon, 0, 1e6)},
    [CLI_O_MIN_GAIN] = {"min-gain", 0, NUMBER(search.min_gain, 0, 1e6)},
    [CLI_O_GRANULARITY] = {"granularity", 0,
                           ENUM(search.granularity, xp_granularity_name, XP_GRAN_SCALE_BIT + 1)},
    [CLI_O_SCALE_RATIO] = {"scale-ratio", 0, NUMBER(search.scale_ratio, 0, 1)},
    [CLI_O_SCALE_BITS] = {"scale-bits", 0,
                          SEARCH_FIELDS(scale_bit_min, scale_bit_max, take_scale_bits,
                                        "LO-HI within 0-15, e.g. 4-9")},
    [CLI_O_SEARCH_LAYERS] = {"layers", 0,
                             SEARCH_FIELDS(layers, n_layers, take_layers, "a list like 1-4,26")},
    [CLI_O_PROJ] = {"proj", 0, LIST(search.projs, take_projs, "a list of gate,up,down,q,k,v,o")},
    [CLI_O_PROPOSAL] = {"proposal", 0,
                        ENUM(search.proposal, xp_proposal_name, XP_PROPOSE_GRADIENT + 1)},
    [CLI_O_ITERATIONS] = {"iterations", 0, INT(search.iterations, 1, COUNT)},
    [CLI_O_SCREEN] = {"screen", 0, INT(search.screen, 0, COUNT)},
    [CLI_O_AUTO_STOP] = {"auto-stop", 0,
                         SEARCH_FIELDS(stop_window, stop_rate, take_auto_stop,
                                       "N:RATE with N in 1..1000000 and RATE in (0, 1] (e.g. "
                                       "200:0.01), or off")},
    [CLI_O_NAIVE] = {"naive", 0, FLAG(search.naive)},
    [CLI_O_RERANK_EVERY] = {"rerank-every", 0, INT(search.rerank_every, 1, COUNT)},

    [CLI_O_CONTROLS] = {"controls", 0, TEXT(controls), .repeats = CLI_MAX_TEXTS},
    [CLI_O_ALLOW_DEAD] = {"allow-dead", 0, FLAG(allow_dead)},
    [CLI_O_RESUME_FROM] = {"resume", 0, TEXT(resume_from)},
    [CLI_O_LOG] = {"log", 0, TEXT(log)},
    [CLI_O_REPORT] = {"report", 0, TEXT(report)},
    [CLI_O_NO_EVAL] = {"no-eval", 0, FLAG(no_eval)},
    [CLI_O_PROMOTE_CAP] = {"promote-cap", 0, INT(promote_cap, 0, 1000000)},
    [CLI_O_RANDOM_BASELINE] = {"random-baseline", 0, INT(random_baseline, 0, 100000)},
    [CLI_O_CONTROL_CHECK] = {"control-check", 0, ENUM(control_check, control_check_name, 2)},
    [CLI_O_VALIDATION] = {"validation", 0, TEXT(validation)},
    [CLI_O_VALIDATION_SPLIT] = {"validation-split", 0, NUMBER(validation_split, 0, 1),
                                .open_lo = true}, /* 1 itself: refused by the command */
    [CLI_O_VALIDATION_RULE] = {"validation-rule", 0,
                               ENUM(search.validation_rule, xp_validation_rule_name,
                                    XP_VALIDATION_EARLY_STOP + 1)},
    [CLI_O_LOG_FLIP_DETAIL] = {"log-flip-detail", 0, FLAG(log_flip_detail)},
    [CLI_O_TOKEN_RULE] = {"token-rule", 0,
                          ENUM(token_rule, xp_token_rule_name, XP_TOKEN_RULE_LAST + 1)},
    [CLI_O_MPI] = {"mpi", 0, FLAG(mpi)},

    [CLI_O_TEXT] = {"text", 0, TEXT(text)},
    [CLI_O_COUNTS] = {"counts", 0,
                      LIST(counts, take_counts,
                           "a list of counts like 0,10,100 "
                           "(at most 64)")},
    [CLI_O_STRATEGY] = {"strategy", 0,
                        LIST(strategies, take_strategies, "a list of distinct bit, row and block")},
    [CLI_O_TRIALS] = {"trials", 0, INT(trials, 1, COUNT)},
    [CLI_O_SAMPLES] = {"samples", 0, INT(samples, 1, 1000000)},
    [CLI_O_TARGET_FITNESS] = {"target-fitness", 0, NUMBER(target_fitness, -1e9, 1e9)},
    [CLI_O_BASELINE_ITERATIONS] = {"baseline-iterations", 0, INT(baseline_iterations, 1, COUNT)},
    [CLI_O_PATCH_FILE] = {"patch", 'p', TEXT(patch_files), .repeats = CLI_MAX_TEXTS},

    [CLI_O_TASKS] = {"tasks", 0, TEXT(tasks)},
    [CLI_O_KIND] = {"kind", 0, ENUM(task_kind, task_kind_name, XP_TASK_CHOICE + 1)},
    [CLI_O_STOP_NEWLINE] = {"stop-newline", 0, FLAG(stop_newline)},
    [CLI_O_LIMIT] = {"limit", 0, INT(limit, 1, COUNT)},

    [CLI_O_PATCHES] = {"patches", 0, TEXT(patches_dir)},
    [CLI_O_HOST] = {"host", 0, TEXT(host)},
    [CLI_O_PORT] = {"port", 0, INT(port, 0, 65535)},
    [CLI_O_API_KEY] = {"api-key", 0, TEXT(api_key)},
    [CLI_O_PARALLEL] = {"parallel", 0, INT(parallel, 1, 256)},
};

/* An option as a command takes it: its range and short letter after the command's
 * modifiers. */
typedef struct use {
    cli_option_id id;
    const cli_option *o;
    uint64_t min;
    char letter;
} use;

static use use_of(int named)
{
    cli_option_id id = (cli_option_id)(named & CLI_ID_MASK);
    const cli_option *o = &cli_options[id];
    return (use){id, o, named & CLI_POSITIVE && o->min < 1 ? 1 : o->min,
                 named & CLI_LONG_ONLY ? 0 : o->letter};
}

/* A mistake in a command's list or in the table, not in what the user typed. */
static _Noreturn void bad_table(const char *command, const cli_option *o, const char *why)
{
    fprintf(stderr, "xorpatch: internal error: %s, option --%s: %s\n", command, o->name, why);
    abort();
}

static int check_int(const char *command, const char *shown, uint64_t min, uint64_t max,
                     const char *value, uint64_t *out)
{
    char *end;
    errno = 0;
    bool digits = value[0] >= '0' && value[0] <= '9';
    unsigned long long v = digits ? strtoull(value, &end, 10) : 0;
    if (digits && !*end && !errno && v >= min && v <= max) {
        *out = v;
        return 0;
    }
    if (min == 0)
        return cli_usage_error(command, "%s needs a non-negative integer up to %llu, not '%s'",
                               shown, (unsigned long long)max, value);
    if (min == 1)
        return cli_usage_error(command, "%s needs a positive integer up to %llu, not '%s'", shown,
                               (unsigned long long)max, value);
    return cli_usage_error(command, "%s needs an integer from %llu to %llu, not '%s'", shown,
                           (unsigned long long)min, (unsigned long long)max, value);
}

static int check_number(const char *command, const char *shown, const cli_option *o,
                        const char *value, void *field)
{
    char *end;
    float f = 0;
    double d = o->size == sizeof f ? (double)(f = strtof(value, &end)) : strtod(value, &end);
    bool above_lo = o->open_lo ? d > o->lo : d >= o->lo;
    if (!*value || *end || !above_lo || !(d <= o->hi))
        return cli_usage_error(command, "%s needs a number in %c%g, %g], not '%s'", shown,
                               o->open_lo ? '(' : '[', o->lo, o->hi, value);
    if (o->size == sizeof f)
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

int cli_set_threads(const char *command, const char *value)
{
    const cli_option *o = &cli_options[CLI_O_THREADS];
    uint64_t n = 0;
    if (check_int(command, "-t", o->min, o->max, value, &n))
        return EXIT_USAGE;
    omp_set_num_threads((int)n);
    return -1;
}

/* Takes one value (shown: the option as typed) into v; -1 to go on, else an exit code. */
static int take(const char *cmd, const use *u, const char *shown, const char *value, cli_values *v)
{
    const cli_option *o = u->o;
    void *field = (char *)v + o->at;
    switch (o->kind) {
    case CLI_FLAG: {
        bool yes = true;
        if (o->size)
            memcpy(field, &yes, sizeof yes);
        return -1;
    }
    case CLI_TEXT:
        if (o->repeats) {
            cli_texts *t = field;
            t->v[t->n++] = value;
        } else {
            memcpy(field, &value, sizeof value);
        }
        return -1;
    case CLI_INT: {
        if (u->id == CLI_O_THREADS) /* no field: it sets the thread count */
            return cli_set_threads(cmd, value);
        uint64_t n = 0;
        int rc = check_int(cmd, shown, u->min, o->max, value, &n);
        if (rc)
            return rc;
        uint32_t n32 = (uint32_t)n;
        if (o->size == sizeof n32)
            memcpy(field, &n32, sizeof n32);
        else if (o->size == sizeof n)
            memcpy(field, &n, sizeof n);
        return -1;
    }
    case CLI_NUMBER: return check_number(cmd, shown, o, value, field) ? EXIT_USAGE : -1;
    case CLI_ENUM: {
        int i = 0;
        if (check_enum(cmd, shown, o, value, &i))
            return EXIT_USAGE;
        memcpy(field, &i, sizeof i);
        return -1;
    }
    case CLI_LIST: {
        int rc = o->take(value, field);
        if (rc == -1)
            return cli_usage_error(cmd, "%s needs %s, not '%s'", shown, o->needs, value);
        return rc ? rc : -1;
    }
    }
    return -1;
}

/* The size of the field an option of this kind has. */
static size_t field_size(const cli_option *o)
{
    switch (o->kind) {
    case CLI_FLAG: return sizeof(bool);
    case CLI_TEXT: return o->repeats ? sizeof(cli_texts) : sizeof(const char *);
    case CLI_INT: return o->max <= UINT32_MAX && o->size == 4 ? 4 : 8;
    case CLI_NUMBER: return o->size == sizeof(float) ? sizeof(float) : sizeof(double);
    case CLI_ENUM: return sizeof(int);
    case CLI_LIST: return o->size;
    }
    return 0;
}

static void check_table(const char *cmd, const cli_option *o)
{
    if (o->size && o->size != field_size(o))
        bad_table(cmd, o, "its field is not of its kind's type");
    if (o->kind == CLI_TEXT && o->repeats > CLI_MAX_TEXTS)
        bad_table(cmd, o, "more repeats than a cli_texts holds");
    if (o->kind == CLI_LIST && !o->take)
        bad_table(cmd, o, "a list without its take function");
}

_Static_assert(CLI_N_OPTIONS <= CLI_ID_MASK + 1, "an option id fits beside the modifiers");

#define MAX_OPTIONS 48

/* Parses into v; -1 to go on, else an exit code. */
static int parse(const cli_spec *spec, int argc, char **argv, cli_values *v)
{
    const cli_command *cmd = spec->cmd;
    use uses[MAX_OPTIONS];
    size_t n = 0;
    if (spec->n_options + 2 > MAX_OPTIONS)
        bad_table(cmd->name, &cli_options[CLI_O_HELP], "more options than the parser holds");
    for (size_t i = 0; i < spec->n_options; i++)
        uses[n++] = use_of(spec->options[i]);
    uses[n++] = use_of(CLI_O_QUIET);
    uses[n++] = use_of(CLI_O_HELP);

    struct option longs[MAX_OPTIONS + 1];
    char shorts[3 * MAX_OPTIONS + 1];
    size_t ns = 0;
    for (size_t i = 0; i < n; i++) {
        const use *u = &uses[i];
        check_table(cmd->name, u->o);
        for (size_t j = 0; j < i; j++)
            if (uses[j].id == u->id || (u->letter && uses[j].letter == u->letter))
                bad_table(cmd->name, u->o, "named twice, or its letter is another's");
        bool value = u->o->kind != CLI_FLAG;
        longs[i] = (struct option){u->o->name, value ? required_argument : no_argument, NULL,
                                   256 + (int)i};
        if (u->letter) {
            shorts[ns++] = u->letter;
            if (value)
                shorts[ns++] = ':';
        }
    }
    longs[n] = (struct option){0};
    shorts[ns] = '\0';

    unsigned times[MAX_OPTIONS] = {0};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, shorts, longs, NULL)) != -1) {
        size_t i = 0;
        if (c >= 256) /* a long option */
            i = (size_t)(c - 256);
        else /* a letter, or '?' */
            while (i < n && (c == '?' || uses[i].letter != c))
                i++;
        if (i == n) /* an unknown option, or one without its value */
            return cli_usage_error(cmd->name,
                                   "unknown option, or an option without its value: '%s'",
                                   optind > 0 ? argv[optind - 1] : "?");
        const use *u = &uses[i];
        char shown[64], both[64];
        name_as(shown, sizeof shown, u->o, c >= 256 ? 0 : u->letter, false);
        name_as(both, sizeof both, u->o, u->letter, true);
        if (times[i] && !u->o->repeats)
            return cli_usage_error(cmd->name, "%s is given twice; it is taken once", both);
        if (u->o->repeats && times[i] == u->o->repeats)
            return cli_usage_error(cmd->name, "%s is taken at most %u times", both, u->o->repeats);
        times[i]++;
        v->given[u->id] = true;
        if (u->id == CLI_O_HELP) {
            cli_print_usage(cmd);
            return EXIT_OK;
        }
        cli.quiet |= u->id == CLI_O_QUIET;
        int rc = u->id == CLI_O_QUIET ? -1 : take(cmd->name, u, shown, optarg, v);
        if (rc >= 0)
            return rc;
    }
    if (optind < argc && !spec->operands)
        return cli_usage_error(cmd->name, "unexpected argument '%s'", argv[optind]);
    v->args = argv + optind;
    v->n_args = argc - optind;
    return -1;
}

int cli_run(const cli_spec *spec, int argc, char **argv)
{
    cli_values v;
    memset(&v, 0, sizeof v);
    int rc = parse(spec, argc, argv, &v);
    if (rc < 0)
        rc = spec->execute(&v);
    cli_patches_free(&v.patches);
    free(v.ids.v);
    free((void *)v.search.layers);
    return rc;
}

void cli_copy_given(const cli_values *v, size_t member, size_t size, void *dst)
{
    for (int id = 0; id < CLI_N_OPTIONS; id++) {
        const cli_option *o = &cli_options[id];
        if (v->given[id] && o->size && o->at >= member && o->at + o->size <= member + size)
            memcpy((char *)dst + (o->at - member), (const char *)v + o->at, o->size);
    }
}
