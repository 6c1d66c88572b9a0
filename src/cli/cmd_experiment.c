/* `xorpatch experiment NAME`: the anchors' experiments (SPEC §6-§8) on any model, a
 * synthetic one or a real Bonsai file: random-flips, layer-map, scale-vs-random,
 * stacking and null-baseline. This file parses the options (refusing those the chosen
 * experiment does not use) and runs the experiment job (xorpatch/job.h) with a progress
 * bar, its table or JSON object on stdout. */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli_job.h"
#include "cli/cmd_probe_util.h"
#include "cli/cmd_search.h"

static const char usage[] =
    "Usage: xorpatch experiment NAME -m MODEL [options]\n"
    "\n"
    "The anchors' experiments (SPEC 6-8), seeded and deterministic. Every change is made\n"
    "in memory and reverted; the file is never written. MLP = ffn_gate, ffn_up, ffn_down\n"
    "of every layer. Gaps are --metric gaps of every probe of --probes.\n"
    "\n"
    "  random-flips     perplexity of --text on the base, then after N distinct random\n"
    "                   MLP flips per N of --counts and --strategy: bit (one sign bit),\n"
    "                   row (a whole row), block (128 sign bits); each draw seeded by\n"
    "                   (--seed, strategy, N, trial) alone\n"
    "  layer-map        per layer of --layers: XOR every sign bit of its --proj tensors;\n"
    "                   mean |dgap|, mean dgap, max |dgap|, sign changes, probes right\n"
    "  scale-vs-random  --samples candidates drawn as the search draws them (prob. ~ mean\n"
    "                   |scale|) and as many uniformly, each flipped alone: mean |dgap|\n"
    "                   and mean |scale| per group, impact ratio scale / uniform\n"
    "  stacking         gaps with each -p patch alone and all stacked by XOR (overlaps\n"
    "                   cancel); interaction = mean |dgap(stack) - sum dgap(alone)|\n"
    "  null-baseline    the same search on the model and on an in-memory copy whose MLP\n"
    "                   sign bits are each flipped with probability 1/2 (scales kept);\n"
    "                   targets and promoted controls from --probes; accepted/iterations\n"
    "                   of each with Wilson 95% intervals\n"
    "\n"
    "  -m, --model FILE     a Qwen3 GGUF\n"
    "  --probes FILE        probes (every experiment but random-flips)\n"
    "  --metric NAME        seq_logprob (default) or token_gap\n"
    "  --seed N             random-flips, scale-vs-random, null-baseline (default 1;\n"
    "                       null-baseline: the searches' seed, N+1 randomises the copy)\n"
    "  --json               one JSON object instead of the table: \"experiment\",\n"
    "                       \"model\", \"seed\" and \"metric\" (where used), then\n"
    "                       random-flips: \"base\", \"points\"; layer-map: \"layers\";\n"
    "                       scale-vs-random: \"scale\", \"uniform\", \"ratio\"; stacking:\n"
    "                       \"patches\" (\"stacked\" last), \"interaction\"; null-baseline:\n"
    "                       \"settings\", \"targets\", \"controls\", \"trained\" and\n"
    "                       \"randomised\" {\"accepted\", \"iterations\", \"rate\", \"lo\",\n"
    "                       \"hi\", \"flips\"}; entries hold the table's columns\n"
    "  -t, --threads N      threads (default: all cores)\n"
    "  -q, --quiet          no progress on stderr\n"
    "  -h, --help           this text\n"
    "random-flips:\n"
    "  --text FILE          the text (required)\n"
    "  --counts LIST        e.g. 0,10,100 (default 10,100,1000)\n"
    "  --strategy LIST      of bit,row,block (default all three)\n"
    "  --trials K           draws per strategy and count (default 1)\n"
    "  --ctx N              tokens per chunk (default 512, or the whole text if shorter)\n"
    "  --max-chunks N       score at most N chunks (default: all)\n"
    "layer-map:\n"
    "  --layers LIST        e.g. 0-3 (default: every layer)\n"
    "  --proj LIST          of gate,up,down,q,k,v,o (default gate,up,down)\n"
    "scale-vs-random:\n"
    "  --layers, --proj     (default: the search's, layers 1-4 and n_layer-2, gate,up)\n"
    "  --granularity G      row (default) or block\n"
    "  --samples K          candidates per group (default 20)\n"
    "stacking:\n"
    "  -p, --patch FILE     a patch in any format or a Neagari directory; two or more\n"
    "  --force              stack patches made for different base models\n"
    "null-baseline (as `xorpatch search` has them):\n"
    "  --iterations N       (default 100)\n"
    "  --granularity G      row (default), block or scale-bit\n"
    "  --layers, --proj     (default: layers 1-4 and n_layer-2, gate,up)\n"
    "  --fitness NAME       mean (default), min, borderline or focused\n"
    "  --lambda X           control penalty (default 2.0)\n"
    "  --proposal P         scale (default) or uniform\n"
    "  --screen K           worst targets measured first (default 2, 0 = off)\n";

enum { O_PROBES = 256, O_METRIC, O_SEED, O_JSON, O_TEXT, O_COUNTS, O_STRATEGY, O_TRIALS, O_CTX,
       O_MAX_CHUNKS, O_SAMPLES, O_PATCH, O_FORCE };
#define N_OPT_IDS (CLI_SET_PROJ + 1) /* every option value, the search settings' included */

#define ALL ((1u << XP_N_EXPERIMENTS) - 1)
#define ONLY(e) (1u << XP_EXP_##e)
/* Which experiments use each option; any other use is a usage error. */
static const struct {
    int opt;
    const char *name;
    unsigned exps;
} uses[] = {
    {O_PROBES, "--probes", ALL & ~ONLY(RANDOM_FLIPS)},
    {O_METRIC, "--metric", ALL & ~ONLY(RANDOM_FLIPS)},
    {O_SEED, "--seed", ONLY(RANDOM_FLIPS) | ONLY(SCALE_VS_RANDOM) | ONLY(NULL_BASELINE)},
    {O_TEXT, "--text", ONLY(RANDOM_FLIPS)},
    {O_COUNTS, "--counts", ONLY(RANDOM_FLIPS)},
    {O_STRATEGY, "--strategy", ONLY(RANDOM_FLIPS)},
    {O_TRIALS, "--trials", ONLY(RANDOM_FLIPS)},
    {O_CTX, "--ctx", ONLY(RANDOM_FLIPS)},
    {O_MAX_CHUNKS, "--max-chunks", ONLY(RANDOM_FLIPS)},
    {CLI_SET_LAYERS, "--layers", ONLY(LAYER_MAP) | ONLY(SCALE_VS_RANDOM) | ONLY(NULL_BASELINE)},
    {CLI_SET_PROJ, "--proj", ONLY(LAYER_MAP) | ONLY(SCALE_VS_RANDOM) | ONLY(NULL_BASELINE)},
    {CLI_SET_GRAN, "--granularity", ONLY(SCALE_VS_RANDOM) | ONLY(NULL_BASELINE)},
    {O_SAMPLES, "--samples", ONLY(SCALE_VS_RANDOM)},
    {O_PATCH, "-p/--patch", ONLY(STACKING)},
    {O_FORCE, "--force", ONLY(STACKING)},
    {CLI_SET_ITER, "--iterations", ONLY(NULL_BASELINE)},
    {CLI_SET_FITNESS, "--fitness", ONLY(NULL_BASELINE)},
    {CLI_SET_LAMBDA, "--lambda", ONLY(NULL_BASELINE)},
    {CLI_SET_PROPOSAL, "--proposal", ONLY(NULL_BASELINE)},
    {CLI_SET_SCREEN, "--screen", ONLY(NULL_BASELINE)},
};

#define MAX_LIST 64
#define MAX_PATCHES 64

typedef struct args {
    xp_experiment_job job; /* what the options set; the lists below are its storage */
    const char *patches[MAX_PATCHES];
    size_t counts[MAX_LIST];
    int kinds[3];
    uint32_t layers[256];  /* job.search.layers, when given */
    bool given[N_OPT_IDS];
} args;

/* "10,100,1000" (0 allowed) into counts; count or -1. */
static long parse_counts(const char *s, size_t *out)
{
    size_t n = 0;
    const char *p = s;
    while (*p) {
        char *end;
        if (*p < '0' || *p > '9' || n == MAX_LIST)
            return -1;
        unsigned long long v = strtoull(p, &end, 10);
        out[n++] = (size_t)v;
        if (*end == ',' && end[1])
            end++;
        else if (*end)
            return -1;
        p = end;
    }
    return n ? (long)n : -1;
}

static long parse_strategies(const char *s, int *out)
{
    char buf[64];
    snprintf(buf, sizeof buf, "%s", s);
    size_t n = 0;
    for (char *save, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        int k = !strcmp(tok, "bit")     ? XP_FLIP_MASK
                : !strcmp(tok, "row")   ? XP_FLIP_ROW
                : !strcmp(tok, "block") ? XP_FLIP_BLOCK : -1;
        if (k < 0 || n == 3)
            return -1;
        for (size_t i = 0; i < n; i++)
            if (out[i] == k)
                return -1;
        out[n++] = k;
    }
    return n ? (long)n : -1;
}

/* The name of an option that takes a value, for messages. */
static const char *option_name(int opt)
{
    for (size_t i = 0; i < sizeof uses / sizeof *uses; i++)
        if (uses[i].opt == opt)
            return uses[i].name;
    return "?";
}

/* Parses argv into a; -1 to go on, else an exit code. */
static int parse(int argc, char **argv, args *a)
{
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'},     {"probes", required_argument, 0, O_PROBES},
        {"metric", required_argument, 0, O_METRIC}, {"seed", required_argument, 0, O_SEED},
        {"json", no_argument, 0, O_JSON},         {"text", required_argument, 0, O_TEXT},
        {"counts", required_argument, 0, O_COUNTS},
        {"strategy", required_argument, 0, O_STRATEGY},
        {"trials", required_argument, 0, O_TRIALS}, {"ctx", required_argument, 0, O_CTX},
        {"max-chunks", required_argument, 0, O_MAX_CHUNKS}, CLI_SEARCH_SETTINGS,
        {"samples", required_argument, 0, O_SAMPLES}, {"patch", required_argument, 0, 'p'},
        {"force", no_argument, 0, O_FORCE},       {"threads", required_argument, 0, 't'},
        {"quiet", no_argument, 0, 'q'},           {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    const char *cmd = "experiment";
    xp_experiment_job *j = &a->job;
    xp_search_opts *o = &j->search;
    int opt, rc;
    long v;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "m:p:t:qh", opts, NULL)) != -1) {
        if (opt == 'p')
            opt = O_PATCH;
        if (opt >= O_PROBES && opt < N_OPT_IDS)
            a->given[opt] = true;
        switch (opt) {
        case 'm': j->model_path = optarg; break;
        case O_PROBES: j->probes = optarg; break;
        case O_METRIC:
            if ((rc = cli_metric(cmd, optarg)) < 0)
                return EXIT_USAGE;
            if (rc == XP_METRIC_GENERATION)
                return cli_usage_error(cmd, "experiments measure gaps: --metric must be "
                                       "seq_logprob or token_gap");
            j->metric = o->metric = (xp_metric)rc;
            break;
        case O_SEED: {
            char *end;
            j->seed = o->seed = strtoull(optarg, &end, 10);
            if (!*optarg || *end || optarg[0] == '-')
                return cli_usage_error(cmd, "--seed needs a non-negative integer");
            break;
        }
        case O_JSON: j->json = true; break;
        case O_TEXT: j->text = optarg; break;
        case O_COUNTS:
            if ((v = parse_counts(optarg, a->counts)) < 0)
                return cli_usage_error(cmd, "--counts needs a list of counts like 0,10,100 "
                                       "(at most %d), not '%s'", MAX_LIST, optarg);
            j->n_counts = (size_t)v;
            break;
        case O_STRATEGY:
            if ((v = parse_strategies(optarg, a->kinds)) < 0)
                return cli_usage_error(cmd, "--strategy needs a list of distinct bit, row "
                                       "and block, not '%s'", optarg);
            j->n_kinds = (size_t)v;
            break;
        case O_TRIALS:
        case O_CTX:
        case O_MAX_CHUNKS:
        case O_SAMPLES: {
            size_t *n = opt == O_TRIALS ? &j->trials
                        : opt == O_CTX ? &j->ctx
                        : opt == O_MAX_CHUNKS ? &j->max_chunks : &j->samples;
            if ((rc = cli_count_option(cmd, option_name(opt), optarg, n)) >= 0)
                return rc;
            if (opt == O_CTX && j->ctx < 2)
                return cli_usage_error(cmd, "--ctx needs a count of at least 2");
            break;
        }
        case O_PATCH:
            if (j->n_patches == MAX_PATCHES)
                return cli_usage_error(cmd, "at most %d patches", MAX_PATCHES);
            a->patches[j->n_patches++] = optarg;
            break;
        case O_FORCE: j->force = true; break;
        case 't':
            if ((rc = cli_set_threads(cmd, optarg)) >= 0)
                return rc;
            break;
        default:
            if ((rc = cli_search_setting(cmd, opt, optarg, o, a->layers,
                                         sizeof a->layers / sizeof *a->layers)) > 0)
                return rc;
            if (rc < 0 && (rc = cli_common_option(&cli_experiment, opt)) >= 0)
                return rc;
        }
    }
    if (optind >= argc)
        return cli_usage_error(cmd, "name an experiment: random-flips, layer-map, "
                               "scale-vs-random, stacking or null-baseline");
    if (optind + 1 < argc)
        return cli_usage_error(cmd, "unexpected argument '%s'", argv[optind + 1]);
    if ((j->experiment = xp_experiment_from_name(argv[optind])) < 0)
        return cli_usage_error(cmd, "unknown experiment '%s' (random-flips, layer-map, "
                               "scale-vs-random, stacking or null-baseline)", argv[optind]);
    for (size_t i = 0; i < sizeof uses / sizeof *uses; i++)
        if (a->given[uses[i].opt] && !(uses[i].exps & 1u << j->experiment))
            return cli_usage_error(cmd, "%s is not an option of %s", uses[i].name,
                                   xp_experiment_name(j->experiment));
    if (j->experiment == XP_EXP_SCALE_VS_RANDOM && o->granularity == XP_GRAN_SCALE_BIT)
        return cli_usage_error(cmd, "scale-vs-random compares rows or blocks: --granularity "
                               "must be row or block");
    if (!j->model_path)
        return cli_usage_error(cmd, "-m MODEL is required");
    if (j->experiment == XP_EXP_RANDOM_FLIPS ? !j->text : !j->probes)
        return cli_usage_error(cmd, "%s needs %s", xp_experiment_name(j->experiment),
                               j->experiment == XP_EXP_RANDOM_FLIPS ? "--text FILE" : "--probes FILE");
    if (j->experiment == XP_EXP_STACKING && j->n_patches < 2)
        return cli_usage_error(cmd, "stacking needs two patches or more (-p A -p B)");
    return -1;
}

static int run(int argc, char **argv)
{
    args a = {.job = {.metric = XP_METRIC_SEQ_LOGPROB, .seed = 1, .n_counts = 3, .n_kinds = 3,
                      .trials = 1, .samples = 20, .out = stdout},
              .counts = {10, 100, 1000},
              .kinds = {XP_FLIP_MASK, XP_FLIP_ROW, XP_FLIP_BLOCK}};
    a.job.counts = a.counts;
    a.job.kinds = a.kinds;
    a.job.patches = a.patches;
    xp_search_opts_default(&a.job.search);
    a.job.search.iterations = 100;
    a.job.search.checkpoint_every = 0;
    int rc = parse(argc, argv, &a);
    if (rc >= 0)
        return rc;
    cli_job_view view;
    xp_err err = {0};
    rc = xp_experiment_job_run(&a.job, cli_job_view_init(&view), &err);
    return cli_job_view_end(&view, rc, &err);
}

const cli_command cli_experiment = {
    "experiment", "run an anchor experiment (random-flips, layer-map, ...)", usage, run};
