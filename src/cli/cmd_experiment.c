/* `xorpatch experiment NAME`: the anchors' experiments (SPEC §6-§8) on any model, a
 * synthetic one or a real Bonsai file: random-flips, layer-map, scale-vs-random,
 * stacking, null-baseline and proposal-efficiency. This file names the options (refusing those the
 * chosen experiment does not use) and runs the experiment job (xorpatch/job.h) with a progress bar,
 * its table or JSON object on stdout. */
#include "cli/cli_job.h"
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
    "  proposal-efficiency  the same search with gradient-ranked proposals and with\n"
    "                   --proposal's (scale by default): the iterations (exact\n"
    "                   evaluations), probe measurements and seconds each needs to\n"
    "                   reach --target-fitness (default: the smaller final fitness;\n"
    "                   when only the gradient reaches it, a lower bound: all the\n"
    "                   baseline ran),\n"
    "                   the estimates' rank correlation with the measured changes,\n"
    "                   and with --heldout each patch's held-out fixed/broke (gap sign)\n"
    "                   and McNemar p; targets and promoted controls from --probes\n"
    "\n"
    "  -m, --model FILE     a Qwen3 GGUF\n"
    "  --probes FILE        probes (every experiment but random-flips)\n"
    "  --metric NAME        seq_logprob (default) or token_gap\n"
    "  --seed N             random-flips, scale-vs-random, null-baseline and\n"
    "                       proposal-efficiency (default 1; the searches' seed;\n"
    "                       null-baseline: N+1 randomises the copy)\n"
    "  --json               one JSON object instead of the table: \"experiment\",\n"
    "                       \"model\", \"seed\" and \"metric\" (where used), then\n"
    "                       random-flips: \"base\", \"points\"; layer-map: \"layers\";\n"
    "                       scale-vs-random: \"scale\", \"uniform\", \"ratio\"; stacking:\n"
    "                       \"patches\" (\"stacked\" last), \"interaction\"; null-baseline:\n"
    "                       \"settings\", \"targets\", \"controls\", \"trained\" and\n"
    "                       \"randomised\" {\"accepted\", \"iterations\", \"rate\", \"lo\",\n"
    "                       \"hi\", \"flips\"}; proposal-efficiency: \"settings\",\n"
    "                       \"start\", \"target\", \"runs\" [{\"proposal\", \"reached_at\",\n"
    "                       \"probes_to_reach\", \"seconds_to_reach\", \"spearman\",\n"
    "                       \"heldout\", ...}], \"ratio_iterations\", \"ratio_probes\",\n"
    "                       \"ratio_seconds\", \"ratio_lower_bound\"; entries hold the\n"
    "                       table's columns\n"
    "  -t, --threads N      threads (default: all cores)\n"
    "  -q, --quiet          no progress on stderr\n"
    "  -h, --help           this text\n";

static const char usage_more[] =
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
    "  --screen K           worst targets measured first (default 2, 0 = off)\n"
    "  --auto-stop N:RATE   as search's (default 200:0.01), or off\n"
    "  --mpi                both searches on mpirun's ranks (build/xorpatch-mpi; README)\n"
    "proposal-efficiency (and the null-baseline options above but --proposal: the\n"
    "baseline, scale or uniform):\n"
    "  --controls FILE      more controls; repeat to add files\n"
    "  --heldout FILE       probes evaluated only at the end, for each patch\n"
    "  --target-fitness X   the fitness both must reach (default: the smaller final)\n"
    "  --baseline-iterations N  the baseline's search runs N iterations (default:\n"
    "                       --iterations): a longer one tells how many it needs to\n"
    "                       reach what the gradient reached\n"
    "  --rerank-every K     the gradient ranks again after K accepts (default 1)\n";

static const int options[] = {
    CLI_SEARCH_SETTINGS, CLI_O_AUTO_STOP,  CLI_O_MODEL,          CLI_O_PROBES,
    CLI_O_METRIC,        CLI_O_CONTROLS,   CLI_O_HELDOUT,        CLI_O_TARGET_FITNESS,
    CLI_O_BASELINE_ITERATIONS,             CLI_O_SEED,           CLI_O_JSON,
    CLI_O_TEXT,          CLI_O_COUNTS,     CLI_O_STRATEGY,       CLI_O_TRIALS,
    CLI_O_CTX,           CLI_O_MAX_CHUNKS, CLI_O_SAMPLES,        CLI_O_PATCH_FILE,
    CLI_O_FORCE,         CLI_O_THREADS,    CLI_O_MPI};
CLI_COMMAND_LONG_HELP(cli_experiment, "experiment",
                      "run an anchor experiment (random-flips, layer-map, ...)", usage, usage_more,
                      options, true, execute);

#define ALL ((1u << XP_N_EXPERIMENTS) - 1)
#define ONLY(e) (1u << XP_EXP_##e)
#define SEARCHES (ONLY(NULL_BASELINE) | ONLY(PROPOSAL_EFFICIENCY))
/* Which experiments use each option; any other use is a usage error. */
static const struct {
    cli_option_id id;
    unsigned exps;
} uses[] = {
    {CLI_O_PROBES, ALL & ~ONLY(RANDOM_FLIPS)},
    {CLI_O_METRIC, ALL & ~ONLY(RANDOM_FLIPS)},
    {CLI_O_SEED, ONLY(RANDOM_FLIPS) | ONLY(SCALE_VS_RANDOM) | ONLY(NULL_BASELINE) | SEARCHES},
    {CLI_O_TEXT, ONLY(RANDOM_FLIPS)},
    {CLI_O_COUNTS, ONLY(RANDOM_FLIPS)},
    {CLI_O_STRATEGY, ONLY(RANDOM_FLIPS)},
    {CLI_O_TRIALS, ONLY(RANDOM_FLIPS)},
    {CLI_O_CTX, ONLY(RANDOM_FLIPS)},
    {CLI_O_MAX_CHUNKS, ONLY(RANDOM_FLIPS)},
    {CLI_O_SEARCH_LAYERS, ONLY(LAYER_MAP) | ONLY(SCALE_VS_RANDOM) | SEARCHES},
    {CLI_O_PROJ, ONLY(LAYER_MAP) | ONLY(SCALE_VS_RANDOM) | SEARCHES},
    {CLI_O_GRANULARITY, ONLY(SCALE_VS_RANDOM) | SEARCHES},
    {CLI_O_SAMPLES, ONLY(SCALE_VS_RANDOM)},
    {CLI_O_PATCH_FILE, ONLY(STACKING)},
    {CLI_O_FORCE, ONLY(STACKING)},
    {CLI_O_ITERATIONS, SEARCHES},
    {CLI_O_FITNESS, SEARCHES},
    {CLI_O_LAMBDA, SEARCHES},
    {CLI_O_PROPOSAL, SEARCHES},
    {CLI_O_SCREEN, SEARCHES},
    {CLI_O_AUTO_STOP, SEARCHES},
    {CLI_O_RERANK_EVERY, ONLY(PROPOSAL_EFFICIENCY)},
    {CLI_O_CONTROLS, ONLY(PROPOSAL_EFFICIENCY)},
    {CLI_O_HELDOUT, ONLY(PROPOSAL_EFFICIENCY)},
    {CLI_O_TARGET_FITNESS, ONLY(PROPOSAL_EFFICIENCY)},
    {CLI_O_BASELINE_ITERATIONS, ONLY(PROPOSAL_EFFICIENCY)},
    {CLI_O_MPI, ONLY(NULL_BASELINE)},
};

/* The experiment named and the options it does not use: -1 to go on, else an exit
 * code. */
static int check(const cli_values *v, int *experiment)
{
    const char *cmd = "experiment";
    if (v->n_args < 1)
        return cli_usage_error(cmd, "name an experiment: random-flips, layer-map, "
                                    "scale-vs-random, stacking, null-baseline or "
                                    "proposal-efficiency");
    if (v->n_args > 1)
        return cli_usage_error(cmd, "unexpected argument '%s'", v->args[1]);
    int e = *experiment = xp_experiment_from_name(v->args[0]);
    if (e < 0)
        return cli_usage_error(cmd,
                               "unknown experiment '%s' (random-flips, layer-map, "
                               "scale-vs-random, stacking, null-baseline or "
                               "proposal-efficiency)",
                               v->args[0]);
    if (v->given[CLI_O_METRIC] && v->metric == XP_METRIC_GENERATION)
        return cli_usage_error(cmd, "experiments measure gaps: --metric must be "
                                    "seq_logprob or token_gap");
    for (size_t i = 0; i < sizeof uses / sizeof *uses; i++) {
        const cli_option *o = &cli_options[uses[i].id];
        char letter[4] = "";
        if (o->letter)
            snprintf(letter, sizeof letter, "-%c/", o->letter);
        if (v->given[uses[i].id] && !(uses[i].exps & 1u << e))
            return cli_usage_error(cmd, "%s--%s is not an option of %s", letter, o->name,
                                   xp_experiment_name(e));
    }
    if (e == XP_EXP_SCALE_VS_RANDOM && v->given[CLI_O_GRANULARITY] &&
        v->search.granularity == XP_GRAN_SCALE_BIT)
        return cli_usage_error(cmd, "scale-vs-random compares rows or blocks: --granularity "
                                    "must be row or block");
    if (!v->model)
        return cli_usage_error(cmd, "-m MODEL is required");
    if (e == XP_EXP_RANDOM_FLIPS ? !v->text : !v->probes)
        return cli_usage_error(cmd, "%s needs %s", xp_experiment_name(e),
                               e == XP_EXP_RANDOM_FLIPS ? "--text FILE" : "--probes FILE");
    if (e == XP_EXP_STACKING && v->patch_files.n < 2)
        return cli_usage_error(cmd, "stacking needs two patches or more (-p A -p B)");
    return -1;
}

static int execute(const cli_values *v)
{
    static const size_t counts[] = {10, 100, 1000};
    static const int kinds[] = {XP_FLIP_MASK, XP_FLIP_ROW, XP_FLIP_BLOCK};
    xp_experiment_job j = {.model_path = v->model,
                           .probes = v->probes,
                           .metric = v->given[CLI_O_METRIC] ? (xp_metric)v->metric
                                                            : XP_METRIC_SEQ_LOGPROB,
                           .seed = v->given[CLI_O_SEED] ? v->seed : 1,
                           .json = v->json,
                           .text = v->text,
                           .counts = v->given[CLI_O_COUNTS] ? v->counts.v : counts,
                           .n_counts = v->given[CLI_O_COUNTS] ? v->counts.n : 3,
                           .kinds = v->given[CLI_O_STRATEGY] ? v->strategies.v : kinds,
                           .n_kinds = v->given[CLI_O_STRATEGY] ? v->strategies.n : 3,
                           .trials = v->given[CLI_O_TRIALS] ? v->trials : 1,
                           .ctx = v->ctx,
                           .max_chunks = v->max_chunks,
                           .samples = v->given[CLI_O_SAMPLES] ? v->samples : 20,
                           .patches = v->patch_files.v,
                           .n_patches = v->patch_files.n,
                           .force = v->force,
                           .controls = v->controls.v,
                           .n_controls = v->controls.n,
                           .heldout = v->heldout,
                           .has_target_fitness = v->given[CLI_O_TARGET_FITNESS],
                           .target_fitness = v->target_fitness,
                           .baseline_iterations =
                               v->given[CLI_O_BASELINE_ITERATIONS] ? v->baseline_iterations : 0,
                           .out = stdout};
    int rc = check(v, &j.experiment);
    if (rc >= 0)
        return rc;
    xp_search_opts_default(&j.search);
    j.search.iterations = 100;
    j.search.checkpoint_every = 0;
    cli_search_opts(v, &j.search);
    bool writes;
    if ((rc = cli_job_team_open(v->mpi, NULL, &j.search.team, &writes)) >= 0)
        return rc;
    j.out = writes ? stdout : NULL;
    cli_job_view view;
    xp_err err = {0};
    rc = xp_experiment_job_run(&j, cli_job_view_init(&view), &err);
    return cli_job_team_end(&view, j.search.team, rc, &err);
}
