/* `xorpatch experiment NAME`: the anchors' experiments (SPEC §6-§8) on any model, a
 * synthetic one or a real Bonsai file: random-flips, layer-map, scale-vs-random,
 * stacking and null-baseline. This file parses the options (refusing those the chosen
 * experiment does not use), loads the probes, text and patches, calls the library's
 * xp_exp_* function and prints its result as a table or one JSON object. */
#include <cjson/cJSON.h>
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cmd_patch_util.h"
#include "cli/cmd_probe_util.h"
#include "cli/cmd_search.h"
#include "core/file.h"

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

enum { E_RANDOM_FLIPS, E_LAYER_MAP, E_SCALE_VS_RANDOM, E_STACKING, E_NULL_BASELINE, N_EXP };
static const char *const exp_names[N_EXP] = {"random-flips", "layer-map", "scale-vs-random",
                                             "stacking", "null-baseline"};

enum { O_PROBES = 256, O_METRIC, O_SEED, O_JSON, O_TEXT, O_COUNTS, O_STRATEGY, O_TRIALS, O_CTX,
       O_MAX_CHUNKS, O_SAMPLES, O_PATCH, O_FORCE };
#define N_OPT_IDS (CLI_SET_PROJ + 1) /* every option value, the search settings' included */

#define ALL ((1u << N_EXP) - 1)
#define ONLY(e) (1u << (e))
/* Which experiments use each option; any other use is a usage error. */
static const struct {
    int opt;
    const char *name;
    unsigned exps;
} uses[] = {
    {O_PROBES, "--probes", ALL & ~ONLY(E_RANDOM_FLIPS)},
    {O_METRIC, "--metric", ALL & ~ONLY(E_RANDOM_FLIPS)},
    {O_SEED, "--seed", ONLY(E_RANDOM_FLIPS) | ONLY(E_SCALE_VS_RANDOM) | ONLY(E_NULL_BASELINE)},
    {O_TEXT, "--text", ONLY(E_RANDOM_FLIPS)},
    {O_COUNTS, "--counts", ONLY(E_RANDOM_FLIPS)},
    {O_STRATEGY, "--strategy", ONLY(E_RANDOM_FLIPS)},
    {O_TRIALS, "--trials", ONLY(E_RANDOM_FLIPS)},
    {O_CTX, "--ctx", ONLY(E_RANDOM_FLIPS)},
    {O_MAX_CHUNKS, "--max-chunks", ONLY(E_RANDOM_FLIPS)},
    {CLI_SET_LAYERS, "--layers", ONLY(E_LAYER_MAP) | ONLY(E_SCALE_VS_RANDOM) | ONLY(E_NULL_BASELINE)},
    {CLI_SET_PROJ, "--proj", ONLY(E_LAYER_MAP) | ONLY(E_SCALE_VS_RANDOM) | ONLY(E_NULL_BASELINE)},
    {CLI_SET_GRAN, "--granularity", ONLY(E_SCALE_VS_RANDOM) | ONLY(E_NULL_BASELINE)},
    {O_SAMPLES, "--samples", ONLY(E_SCALE_VS_RANDOM)},
    {O_PATCH, "-p/--patch", ONLY(E_STACKING)},
    {O_FORCE, "--force", ONLY(E_STACKING)},
    {CLI_SET_ITER, "--iterations", ONLY(E_NULL_BASELINE)},
    {CLI_SET_FITNESS, "--fitness", ONLY(E_NULL_BASELINE)},
    {CLI_SET_LAMBDA, "--lambda", ONLY(E_NULL_BASELINE)},
    {CLI_SET_PROPOSAL, "--proposal", ONLY(E_NULL_BASELINE)},
    {CLI_SET_SCREEN, "--screen", ONLY(E_NULL_BASELINE)},
};

#define MAX_LIST 64
#define MAX_PATCHES 64

typedef struct args {
    int exp;
    const char *model, *probes, *text;
    const char *patches[MAX_PATCHES];
    size_t n_patches;
    bool json, force, given[N_OPT_IDS];
    xp_metric metric;
    uint64_t seed;
    size_t counts[MAX_LIST], n_counts;
    int kinds[3];
    size_t n_kinds, trials, ctx, max_chunks, samples;
    uint32_t layers[256];  /* search.layers, when given */
    xp_search_opts search; /* scale-vs-random and null-baseline */
} args;

static const char *strategy_name(int kind)
{
    return kind == XP_FLIP_ROW ? "row" : kind == XP_FLIP_BLOCK ? "block" : "bit";
}

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

static int parse_count_opt(const char *what, const char *s, size_t *out, bool zero_ok)
{
    long v = cli_parse_count(s);
    if (v < 0 && !(zero_ok && !strcmp(s, "0")))
        return cli_usage_error("experiment", "%s needs a %scount, not '%s'", what,
                               zero_ok ? "" : "positive ", s);
    *out = v < 0 ? 0 : (size_t)v;
    return -1;
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
    xp_search_opts *o = &a->search;
    int opt, rc;
    long v;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "m:p:t:qh", opts, NULL)) != -1) {
        if (opt == 'p')
            opt = O_PATCH;
        if (opt >= O_PROBES && opt < N_OPT_IDS)
            a->given[opt] = true;
        switch (opt) {
        case 'm': a->model = optarg; break;
        case O_PROBES: a->probes = optarg; break;
        case O_METRIC:
            if ((rc = cli_metric(cmd, optarg)) < 0)
                return EXIT_USAGE;
            if (rc == XP_METRIC_GENERATION)
                return cli_usage_error(cmd, "experiments measure gaps: --metric must be "
                                       "seq_logprob or token_gap");
            a->metric = o->metric = (xp_metric)rc;
            break;
        case O_SEED: {
            char *end;
            a->seed = o->seed = strtoull(optarg, &end, 10);
            if (!*optarg || *end || optarg[0] == '-')
                return cli_usage_error(cmd, "--seed needs a non-negative integer");
            break;
        }
        case O_JSON: a->json = true; break;
        case O_TEXT: a->text = optarg; break;
        case O_COUNTS:
            if ((v = parse_counts(optarg, a->counts)) < 0)
                return cli_usage_error(cmd, "--counts needs a list of counts like 0,10,100 "
                                       "(at most %d), not '%s'", MAX_LIST, optarg);
            a->n_counts = (size_t)v;
            break;
        case O_STRATEGY:
            if ((v = parse_strategies(optarg, a->kinds)) < 0)
                return cli_usage_error(cmd, "--strategy needs a list of distinct bit, row "
                                       "and block, not '%s'", optarg);
            a->n_kinds = (size_t)v;
            break;
        case O_TRIALS:
            if ((rc = parse_count_opt("--trials", optarg, &a->trials, false)) >= 0)
                return rc;
            break;
        case O_CTX:
            if ((rc = parse_count_opt("--ctx", optarg, &a->ctx, false)) >= 0)
                return rc;
            if (a->ctx < 2)
                return cli_usage_error(cmd, "--ctx needs a count of at least 2");
            break;
        case O_MAX_CHUNKS:
            if ((rc = parse_count_opt("--max-chunks", optarg, &a->max_chunks, false)) >= 0)
                return rc;
            break;
        case O_SAMPLES:
            if ((rc = parse_count_opt("--samples", optarg, &a->samples, false)) >= 0)
                return rc;
            break;
        case O_PATCH:
            if (a->n_patches == MAX_PATCHES)
                return cli_usage_error(cmd, "at most %d patches", MAX_PATCHES);
            a->patches[a->n_patches++] = optarg;
            break;
        case O_FORCE: a->force = true; break;
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
    a->exp = -1;
    for (int e = 0; e < N_EXP; e++)
        if (!strcmp(argv[optind], exp_names[e]))
            a->exp = e;
    if (a->exp < 0)
        return cli_usage_error(cmd, "unknown experiment '%s' (random-flips, layer-map, "
                               "scale-vs-random, stacking or null-baseline)", argv[optind]);
    for (size_t i = 0; i < sizeof uses / sizeof *uses; i++)
        if (a->given[uses[i].opt] && !(uses[i].exps & ONLY(a->exp)))
            return cli_usage_error(cmd, "%s is not an option of %s", uses[i].name,
                                   exp_names[a->exp]);
    if (a->exp == E_SCALE_VS_RANDOM && o->granularity == XP_GRAN_SCALE_BIT)
        return cli_usage_error(cmd, "scale-vs-random compares rows or blocks: --granularity "
                               "must be row or block");
    if (!a->model)
        return cli_usage_error(cmd, "-m MODEL is required");
    if (a->exp == E_RANDOM_FLIPS ? !a->text : !a->probes)
        return cli_usage_error(cmd, "%s needs %s", exp_names[a->exp],
                               a->exp == E_RANDOM_FLIPS ? "--text FILE" : "--probes FILE");
    if (a->exp == E_STACKING && a->n_patches < 2)
        return cli_usage_error(cmd, "stacking needs two patches or more (-p A -p B)");
    return -1;
}

/* ---- output ---- */

static cJSON *header_json(const args *a)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "experiment", exp_names[a->exp]);
    cJSON_AddStringToObject(o, "model", a->model);
    if (a->exp != E_LAYER_MAP && a->exp != E_STACKING) /* the two without chance */
        cJSON_AddNumberToObject(o, "seed", (double)a->seed);
    if (a->exp != E_RANDOM_FLIPS)
        cJSON_AddStringToObject(o, "metric", xp_metric_name(a->metric));
    return o;
}

static void stats_json(cJSON *o, const xp_delta_stats *s)
{
    cJSON_AddNumberToObject(o, "mean_abs", s->mean_abs);
    cJSON_AddNumberToObject(o, "mean", s->mean);
    cJSON_AddNumberToObject(o, "max_abs", s->max_abs);
    cJSON_AddNumberToObject(o, "crossed", (double)s->crossed);
    cJSON_AddNumberToObject(o, "right", (double)s->right_after);
}

static const char *projs_text(unsigned projs, char *buf, size_t size)
{
    size_t len = 0;
    buf[0] = 0;
    for (int p = 0; p < XP_N_PROJ; p++)
        if (projs & (1u << p))
            len += (size_t)snprintf(buf + len, size - len, "%s%s", len ? "," : "",
                                    xp_proj_name(p));
    return buf;
}

/* ---- the experiments ---- */

static int random_flips(xp_model *m, const args *a, xp_err *err)
{
    char *text = NULL;
    size_t len, n = 0;
    int32_t *ids = NULL;
    const xp_tokenizer *tok = xp_model_tokenizer(m);
    int rc = xp_read_file(a->text, &text, &len, err);
    if (!rc)
        rc = tok ? xp_tokenize(tok, text, len, false, &ids, &n, err)
                 : xp_err_set(err, XP_EFORMAT, "%s has no tokenizer", a->model);
    free(text);
    cli_progress bar;
    xp_random_flips_opts o = {a->kinds, a->n_kinds, a->counts, a->n_counts, a->trials, a->seed,
                              {a->ctx ? a->ctx : n < 512 ? n : 512, a->max_chunks,
                               cli_progress_update, &bar}};
    xp_random_flips r = {0};
    cli_progress_start(&bar, "random-flips");
    if (!rc && (rc = xp_exp_random_flips(m, ids, n, &o, &r, err)))
        xp_err_wrap(err, "random-flips on %s", a->text);
    cli_progress_end(&bar);
    free(ids);
    if (rc)
        return rc;
    if (a->json) {
        cJSON *j = header_json(a), *base = cJSON_AddObjectToObject(j, "base");
        cJSON_AddNumberToObject(base, "perplexity", r.base.perplexity);
        cJSON_AddNumberToObject(base, "tokens", (double)r.base.scored);
        cJSON *pts = cJSON_AddArrayToObject(j, "points");
        for (size_t i = 0; i < r.n; i++) {
            const xp_random_flips_point *p = &r.points[i];
            cJSON *e = cJSON_CreateObject();
            cJSON_AddStringToObject(e, "strategy", strategy_name(p->kind));
            cJSON_AddNumberToObject(e, "count", (double)p->count);
            cJSON_AddNumberToObject(e, "trial", (double)p->trial + 1);
            cJSON_AddNumberToObject(e, "bits", (double)p->bits);
            cJSON_AddNumberToObject(e, "perplexity", p->perplexity);
            cJSON_AddNumberToObject(e, "ratio", p->perplexity / r.base.perplexity);
            cJSON_AddItemToArray(pts, e);
        }
        cli_print_json(j);
    } else {
        printf("random-flips: perplexity of %s (%zu tokens scored, %zu chunks of %zu) after "
               "random MLP flips, seed %llu\n", a->text, r.base.scored, r.base.chunks,
               r.base.chunk, (unsigned long long)a->seed);
        printf("base perplexity %.4f\n\n", r.base.perplexity);
        printf("%-8s %10s %6s %14s %14s %10s\n", "strategy", "flips", "trial", "bits",
               "perplexity", "ratio");
        for (size_t i = 0; i < r.n; i++) {
            const xp_random_flips_point *p = &r.points[i];
            printf("%-8s %10zu %6zu %14llu %14.4f %10.4f\n", strategy_name(p->kind), p->count,
                   p->trial + 1, (unsigned long long)p->bits, p->perplexity,
                   p->perplexity / r.base.perplexity);
        }
    }
    xp_random_flips_free(&r);
    return XP_OK;
}

static int layer_map(xp_model *m, const args *a, const xp_probe_tokens *pt, size_t n,
                     xp_err *err)
{
    uint32_t n_layer = xp_model_shape(m)->n_layer, all[n_layer + 1];
    for (uint32_t l = 0; l < n_layer; l++)
        all[l] = l;
    const uint32_t *layers = a->search.layers ? a->search.layers : all;
    size_t n_layers = a->search.layers ? a->search.n_layers : n_layer;
    unsigned projs = a->search.projs ? a->search.projs
                                     : 1u << XP_PROJ_GATE | 1u << XP_PROJ_UP | 1u << XP_PROJ_DOWN;
    cli_progress bar;
    xp_layer_map r;
    cli_progress_start(&bar, "layer-map");
    int rc = xp_exp_layer_map(m, pt, n, a->metric, layers, n_layers, projs, cli_progress_update,
                              &bar, &r, err);
    cli_progress_end(&bar);
    if (rc)
        return rc;
    char pj[64];
    projs_text(projs, pj, sizeof pj);
    size_t base_right = 0;
    for (size_t i = 0; i < n; i++)
        base_right += r.base[i] > 0;
    if (a->json) {
        cJSON *j = header_json(a);
        cJSON_AddNumberToObject(j, "probes", (double)n);
        cJSON_AddStringToObject(j, "proj", pj);
        cJSON_AddNumberToObject(j, "base_right", (double)base_right);
        cJSON *ls = cJSON_AddArrayToObject(j, "layers");
        for (size_t i = 0; i < r.n_layers; i++) {
            cJSON *e = cJSON_CreateObject();
            cJSON_AddNumberToObject(e, "layer", r.layers[i]);
            stats_json(e, &r.stats[i]);
            cJSON *d = cJSON_AddArrayToObject(e, "deltas");
            for (size_t p = 0; p < n; p++)
                cJSON_AddItemToArray(d, cJSON_CreateNumber(r.after[i * n + p] - r.base[p]));
            cJSON_AddItemToArray(ls, e);
        }
        cli_print_json(j);
    } else {
        printf("layer-map: %zu probes, %s gaps, every sign bit of %s XORed per layer "
               "(%zu right at base)\n\n", n, xp_metric_name(a->metric), pj, base_right);
        printf("%5s %12s %12s %12s %8s %6s\n", "layer", "mean|dgap|", "mean dgap", "max|dgap|",
               "crossed", "right");
        for (size_t i = 0; i < r.n_layers; i++) {
            const xp_delta_stats *s = &r.stats[i];
            printf("%5u %12.4f %12.4f %12.4f %8zu %6zu\n", r.layers[i], s->mean_abs, s->mean,
                   s->max_abs, s->crossed, s->right_after);
        }
    }
    xp_layer_map_free(&r);
    return XP_OK;
}

static cJSON *candidates_json(const xp_scale_vs_random *r, int k)
{
    cJSON *g = cJSON_CreateObject();
    cJSON_AddNumberToObject(g, "mean_impact", r->mean_impact[k]);
    cJSON_AddNumberToObject(g, "mean_scale", r->mean_scale[k]);
    cJSON *cs = cJSON_AddArrayToObject(g, "candidates");
    for (size_t s = 0; s < r->samples; s++) {
        const xp_candidate *c = &r->cand[k][s];
        cJSON *e = cJSON_CreateObject();
        cJSON_AddNumberToObject(e, "layer", c->layer);
        cJSON_AddStringToObject(e, "proj", xp_proj_name(c->proj));
        cJSON_AddStringToObject(e, "kind", c->kind == XP_FLIP_ROW ? "row" : "block");
        cJSON_AddNumberToObject(e, "index", (double)c->index);
        cJSON_AddNumberToObject(e, "scale", r->scale[k][s]);
        cJSON_AddNumberToObject(e, "impact", r->impact[k][s]);
        cJSON_AddItemToArray(cs, e);
    }
    return g;
}

static int scale_vs_random(xp_model *m, const args *a, const xp_probe_tokens *pt, size_t n,
                           xp_err *err)
{
    cli_progress bar;
    xp_scale_vs_random r;
    cli_progress_start(&bar, "scale-vs-random");
    int rc = xp_exp_scale_vs_random(m, pt, n, &a->search, a->samples, cli_progress_update, &bar,
                                    &r, err);
    cli_progress_end(&bar);
    if (rc)
        return rc;
    if (a->json) {
        cJSON *j = header_json(a);
        cJSON_AddNumberToObject(j, "probes", (double)n);
        cJSON_AddNumberToObject(j, "samples", (double)r.samples);
        if (isnan(r.ratio))
            cJSON_AddNullToObject(j, "ratio");
        else
            cJSON_AddNumberToObject(j, "ratio", r.ratio);
        cJSON_AddItemToObject(j, "scale", candidates_json(&r, 0));
        cJSON_AddItemToObject(j, "uniform", candidates_json(&r, 1));
        cli_print_json(j);
    } else {
        printf("scale-vs-random: %zu %s candidates per group, each flipped alone; %zu probes, "
               "%s gaps\n\n", r.samples, xp_granularity_name(a->search.granularity), n,
               xp_metric_name(a->metric));
        printf("%-22s %12s %12s\n", "proposal", "mean|dgap|", "mean|scale|");
        printf("%-22s %12.5f %12.6f\n", "scale-weighted", r.mean_impact[0], r.mean_scale[0]);
        printf("%-22s %12.5f %12.6f\n", "uniform", r.mean_impact[1], r.mean_scale[1]);
        printf("\nimpact ratio scale / uniform: %.3f\n", r.ratio);
    }
    xp_scale_vs_random_free(&r);
    return XP_OK;
}

static int stacking(xp_model *m, const args *a, const xp_probe_tokens *pt, size_t n,
                    xp_err *err)
{
    cli_patches list = {0};
    int rc = XP_OK;
    for (size_t i = 0; i < a->n_patches && !rc; i++)
        rc = cli_patches_add(&list, a->patches[i], err);
    xp_stacking r = {0};
    if (!rc)
        rc = xp_exp_stacking(m, pt, n, a->metric, list.p, list.n, a->force, &r, err);
    if (rc) {
        cli_patches_free(&list);
        return rc;
    }
    size_t base_right = 0;
    for (size_t i = 0; i < n; i++)
        base_right += r.base[i] > 0;
    if (a->json) {
        cJSON *j = header_json(a);
        cJSON_AddNumberToObject(j, "probes", (double)n);
        cJSON_AddNumberToObject(j, "base_right", (double)base_right);
        cJSON_AddNumberToObject(j, "bits_in", (double)r.bits_in);
        cJSON_AddNumberToObject(j, "bits_out", (double)r.bits_out);
        cJSON_AddNumberToObject(j, "interaction", r.interaction);
        cJSON *ps = cJSON_AddArrayToObject(j, "patches");
        for (size_t i = 0; i <= r.n_patches; i++) {
            cJSON *e = cJSON_CreateObject();
            cJSON_AddStringToObject(e, "name", i < r.n_patches ? (list.p[i]->name ? list.p[i]->name
                                                                                 : "?")
                                                               : "stacked");
            stats_json(e, &r.stats[i]);
            cJSON_AddItemToArray(ps, e);
        }
        cli_print_json(j);
    } else {
        printf("stacking: %zu patches alone and stacked by XOR; %zu probes, %s gaps (%zu right "
               "at base)\n\n", r.n_patches, n, xp_metric_name(a->metric), base_right);
        printf("%-24s %12s %12s %12s %8s %6s\n", "patch", "mean dgap", "mean|dgap|", "max|dgap|",
               "crossed", "right");
        for (size_t i = 0; i <= r.n_patches; i++) {
            const xp_delta_stats *s = &r.stats[i];
            char name[25];
            snprintf(name, sizeof name, "%s",
                     i < r.n_patches ? (list.p[i]->name ? list.p[i]->name : "?") : "stacked");
            printf("%-24s %12.4f %12.4f %12.4f %8zu %6zu\n", name, s->mean, s->mean_abs,
                   s->max_abs, s->crossed, s->right_after);
        }
        printf("\nbits in %llu, out %llu (%llu cancelled); interaction mean|dstack - sum "
               "dalone| %.4f\n", (unsigned long long)r.bits_in, (unsigned long long)r.bits_out,
               (unsigned long long)(r.bits_in - r.bits_out), r.interaction);
    }
    xp_stacking_free(&r);
    cli_patches_free(&list);
    return XP_OK;
}

/* One bar over both searches: the second one's iterations count from 1 again. */
typedef struct nb_progress {
    cli_progress bar;
    size_t total, offset, last;
} nb_progress;

static void on_iter(void *ctx, const xp_search_iter *it)
{
    nb_progress *p = ctx;
    if (it->iter <= p->last)
        p->offset += p->last;
    p->last = it->iter;
    cli_progress_update(&p->bar, p->offset + it->iter, p->total);
}

static cJSON *run_json(const xp_null_baseline *r, int k)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "iterations", (double)r->run[k].iterations);
    cJSON_AddNumberToObject(o, "accepted", (double)r->run[k].accepted);
    cJSON_AddNumberToObject(o, "rate", r->rate[k]);
    cJSON_AddNumberToObject(o, "lo", r->lo[k]);
    cJSON_AddNumberToObject(o, "hi", r->hi[k]);
    cJSON_AddNumberToObject(o, "flips", (double)r->run[k].patch->n_flips);
    return o;
}

static int null_baseline(xp_model *m, args *a, const xp_probe_set *s, const xp_probe_tokens *pt,
                         xp_err *err)
{
    xp_model *copy;
    int rc = xp_model_open(&copy, a->model, err);
    if (rc)
        return rc;
    xp_probe_tokens *t = calloc(s->n + 1, sizeof *t), *c = calloc(s->n + 1, sizeof *c);
    size_t nt = 0, nc = 0;
    if (!t || !c)
        rc = xp_err_set(err, XP_ENOMEM, "out of memory");
    for (size_t i = 0; i < s->n && !rc; i++) /* shallow: the tokens stay pt's */
        if (s->probes[i].role == XP_ROLE_CONTROL)
            c[nc++] = pt[i];
        else
            t[nt++] = pt[i];
    xp_search_opts *o = &a->search;
    nb_progress bar = {.total = 2 * o->iterations};
    o->on_iter = on_iter;
    o->ctx = &bar;
    xp_null_baseline r = {0};
    if (!rc) {
        cli_note("null-baseline: %zu targets, %zu controls, %zu iterations on the model, then "
                 "on the copy with random MLP signs", nt, nc, o->iterations);
        cli_progress_start(&bar.bar, "null-baseline");
        rc = xp_exp_null_baseline(m, copy, t, nt, c, nc, o, a->seed + 1, &r, err);
        cli_progress_end(&bar.bar);
    }
    free(t), free(c);
    xp_model_close(copy);
    if (rc)
        return rc;
    if (a->json) {
        cJSON *j = header_json(a);
        const char *settings = r.run[0].patch->search;
        cJSON *sj = settings ? cJSON_Parse(settings) : NULL;
        cJSON_AddItemToObject(j, "settings",
                              sj ? cJSON_DetachItemFromObject(sj, "settings") : cJSON_CreateNull());
        cJSON_Delete(sj);
        cJSON_AddNumberToObject(j, "targets", (double)nt);
        cJSON_AddNumberToObject(j, "controls", (double)nc);
        cJSON_AddItemToObject(j, "trained", run_json(&r, 0));
        cJSON_AddItemToObject(j, "randomised", run_json(&r, 1));
        cli_print_json(j);
    } else {
        printf("null-baseline: the same search (%s, %s fitness, %s flips, seed %llu) on the "
               "model and on a copy with every MLP sign bit flipped with probability 1/2\n\n",
               xp_metric_name(o->metric), xp_fitness_name(o->fitness),
               xp_granularity_name(o->granularity), (unsigned long long)o->seed);
        printf("%-12s %10s %10s %8s %20s %6s\n", "model", "accepted", "iterations", "rate",
               "Wilson 95%", "flips");
        for (int k = 0; k < 2; k++)
            printf("%-12s %10zu %10zu %7.1f%% %9s%5.1f%%, %5.1f%%] %6zu\n",
                   k ? "randomised" : "trained", r.run[k].accepted, r.run[k].iterations,
                   100 * r.rate[k], "[", 100 * r.lo[k], 100 * r.hi[k], r.run[k].patch->n_flips);
    }
    xp_null_baseline_free(&r);
    return XP_OK;
}

static int run(int argc, char **argv)
{
    args a = {.metric = XP_METRIC_SEQ_LOGPROB, .seed = 1, .trials = 1, .samples = 20,
              .counts = {10, 100, 1000}, .n_counts = 3,
              .kinds = {XP_FLIP_MASK, XP_FLIP_ROW, XP_FLIP_BLOCK}, .n_kinds = 3};
    xp_search_opts_default(&a.search);
    a.search.iterations = 100;
    a.search.checkpoint_every = 0;
    int rc = parse(argc, argv, &a);
    if (rc >= 0)
        return rc;
    xp_model *m;
    if ((rc = cli_open_model(a.model, NULL, &m)))
        return rc;
    xp_err err = {0};
    xp_probe_set *s = NULL;
    xp_probe_tokens *pt = NULL;
    if (a.probes)
        rc = cli_probes_load(a.probes, m, &s, &pt, &err);
    if (!rc) {
        switch (a.exp) {
        case E_RANDOM_FLIPS: rc = random_flips(m, &a, &err); break;
        case E_LAYER_MAP: rc = layer_map(m, &a, pt, s->n, &err); break;
        case E_SCALE_VS_RANDOM: rc = scale_vs_random(m, &a, pt, s->n, &err); break;
        case E_STACKING: rc = stacking(m, &a, pt, s->n, &err); break;
        default: rc = null_baseline(m, &a, s, pt, &err);
        }
    }
    if (pt)
        xp_probe_tokens_free(pt, s->n);
    xp_probe_set_free(s);
    xp_model_close(m);
    return rc ? cli_fail(&err) : EXIT_OK;
}

const cli_command cli_experiment = {"experiment",
                                    "run an anchor experiment (random-flips, layer-map, ...)",
                                    usage, run};
