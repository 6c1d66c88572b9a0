/* `xorpatch search`: the main job, from the command line. This file names its options
 * (and turns the search settings `pipeline` and `experiment` share into a search's),
 * runs the search job with a progress bar and notes on stderr and the text report on
 * stdout, and maps its outcome to an exit code; the job itself (audit, search, log,
 * checkpoints and resume, patch, evaluation, reports) is the library's (xorpatch/job.h). */
#include "cli/cmd_search.h"
#include "cli/cli_job.h"

static const char usage[] =
    "Usage: xorpatch search -m MODEL --probes FILE -o PATCH [options]\n"
    "\n"
    "Greedy search for XOR flips that raise the target probes' gaps without lowering the\n"
    "controls'. Each iteration proposes an untried flip in the chosen layers and\n"
    "projections, measures the worst targets first (screening), then every probe, and\n"
    "keeps the flip if the fitness beats the best so far. Gaps are bit-exact: a kept flip\n"
    "is never kernel noise, and the same seed gives the same patch on any thread count.\n"
    "The targets are audited first; dead ones (answers the metric cannot tell apart) are\n"
    "refused. The patch is written (and checkpointed every --checkpoint-every iterations)\n"
    "to PATCH; a log line per iteration goes to PATCH.log.jsonl; at the end the patch is\n"
    "evaluated (gaps and greedy generations, before and after) and reported on stdout and\n"
    "in PATCH.html.\n"
    "\n"
    "Probes:\n"
    "  -m, --model FILE       a Qwen3 GGUF (the base)\n"
    "  --probes FILE          targets (a Neagari set's promoted controls become controls)\n"
    "  --controls FILE        probes to keep; repeat to add files (default: none but promoted)\n"
    "  --heldout FILE         probes evaluated only at the end\n"
    "  --validation FILE      probes measured with the targets, never searched (plain\n"
    "                         {\"prompt\",\"answer\"} items too with margin/answer_logprob)\n"
    "  --validation-split F   or: a share 0<F<1 of the targets, drawn with --seed and\n"
    "                         taken out of them\n"
    "  --validation-rule R    keep (default: a flip may not lower the validation\n"
    "                         objective, the fitness's own on them) or early-stop (the\n"
    "                         fitness alone; the patch is the kept flips up to the best\n"
    "                         validation point)\n"
    "  --allow-dead           search even with dead targets\n"
    "Measure and fitness:\n"
    "  --metric NAME          seq_logprob (default), token_gap, margin, answer_logprob\n"
    "  --token-rule R         token_gap's one token: first (default) or last (audit --help)\n"
    "  --fitness NAME         mean (default), min, borderline or focused (SPEC 8)\n"
    "  --lambda X             control penalty (default 2.0)\n"
    "  --epsilon X            focused: how far a control may fall (default 0.5), never\n"
    "                         across zero\n"
    "  --min-gain X           keep a flip only if it beats the best by more (default 0;\n"
    "                         not with focused, whose rule is lexicographic)\n"
    "  --control-check C      none or generation: no control's greedy output may change\n"
    "Candidates:\n"
    "  --granularity G        row (default), block or scale-bit (block flips and, with\n"
    "                         probability --scale-ratio, scale-bit moves)\n"
    "  --scale-ratio R        share of scale-bit moves (default 0.7)\n"
    "  --scale-bits LO-HI     fp16 scale bits to flip (default 4-9)\n"
    "  --layers LIST          e.g. 1-4,26 (default: 1,2,3,4 and n_layer-2)\n"
    "  --proj LIST            of gate,up,down,q,k,v,o (default gate,up)\n"
    "  --proposal P           scale (default: by mean |scale|), uniform, or gradient:\n"
    "                         every candidate ranked by the first-order change of the\n"
    "                         objective (one backward pass through the model), best\n"
    "                         first; acceptance is still the exact measurement\n"
    "  --rerank-every K       gradient: rank again after every K accepts (default 1)\n";
/* the rest: one literal may hold at most 4,095 bytes */
static const char usage_more[] =
    "Run:\n"
    "  --iterations N         (default 300)\n"
    "  --screen K             worst targets measured first (default 2, 0 = off; focused\n"
    "                         measures its focal target first)\n"
    "  --auto-stop N:RATE     after N iterations stop when the accepts of the last N\n"
    "                         fall below RATE (default 200:0.01, SPEC 8; off to disable)\n"
    "  --seed N               (default 1)\n"
    "  --resume PATCH         continue from a patch: this command's checkpoint (same\n"
    "                         base, settings and probes) goes on exactly where it\n"
    "                         stopped; any other patch is a start point (said on stderr);\n"
    "                         a patch made for another base model is refused;\n"
    "                         gradient proposals go on from the kept flips with a\n"
    "                         fresh ranking (candidates tried and rejected before the\n"
    "                         checkpoint may be tried again)\n"
    "  --checkpoint-every N   (default 10)\n"
    "  --naive                each sequence alone, whole (the speed reference; same patch)\n"
    "  --mpi                  on the ranks of mpirun (build/xorpatch-mpi; README)\n"
    "Output:\n"
    "  -o, --out PATCH        the patch and its checkpoints (.xpb: binary; else\n"
    "                         xorpatch JSON)\n"
    "  --name NAME            the patch's name (default: the file's stem)\n"
    "  --log FILE             per-iteration JSONL (default PATCH.log.jsonl); each line\n"
    "                         {\"iter\", \"layer\", \"proj\", \"kind\", \"index\", \"bit\",\n"
    "                         \"fitness\", \"best\", \"accepted\", \"screened\", \"probes\",\n"
    "                         \"seconds\", \"flips\"} (fitness null when screened out;\n"
    "                         gradient: \"estimate\" and the measured \"change\");\n"
    "                         with validation also \"validation\" (the candidate's),\n"
    "                         \"validation_now\" (the kept flips'), \"validation_rejected\"\n"
    "                         and, early-stop, \"validation_best_flips\"\n"
    "  --log-flip-detail      per kept flip also \"moved\", \"largest\" (probes whose gaps\n"
    "                         moved most) and \"crossed\" (those that crossed zero); the\n"
    "                         report counts the kept flips that changed any sign\n"
    "  --report FILE          the HTML report (default PATCH.html)\n"
    "  --no-eval              skip the before/after generations (gaps only)\n"
    "  --random-baseline N    held-out p vs N random patches (20 more evals; 0: off)\n"
    "  --kernel NAME          " CLI_KERNEL_NAMES " (default: best)\n"
    "  -t, --threads N        threads (default: all cores)\n"
    "  -q, --quiet            no progress, notes or text report (files are written)\n"
    "  -h, --help             this text\n"
    "Testing: XORPATCH_CRASH_AT_ITERATION=N makes the search kill itself (SIGKILL) once\n"
    "iteration N is in its log.\n";

static const int options[] = {CLI_SEARCH_RUN_OPTIONS, CLI_O_PROBES,  CLI_O_HELDOUT,
                              CLI_O_RESUME_FROM,      CLI_O_NAME,    CLI_O_LOG,
                              CLI_O_REPORT,           CLI_O_NO_EVAL, CLI_O_RANDOM_BASELINE,
                              CLI_O_CONTROL_CHECK, CLI_O_VALIDATION, CLI_O_VALIDATION_SPLIT,
                              CLI_O_VALIDATION_RULE, CLI_O_LOG_FLIP_DETAIL, CLI_O_TOKEN_RULE};
CLI_COMMAND_LONG_HELP(cli_search, "search", "search a sparse XOR patch that fixes target probes",
                      usage, usage_more, options, false, execute);

void cli_search_opts(const cli_values *v, xp_search_opts *o)
{
    CLI_COPY_GIVEN(v, search, *o);
    if (v->given[CLI_O_SEED])
        o->seed = v->seed;
    if (v->given[CLI_O_METRIC])
        o->metric = (xp_metric)v->metric;
    if (v->given[CLI_O_CHECKPOINT_EVERY])
        o->checkpoint_every = v->checkpoint_every;
    if (v->given[CLI_O_CONTROL_CHECK])
        o->control_generation = v->control_check == 1;
    if (v->given[CLI_O_TOKEN_RULE])
        o->token_rule = v->token_rule;
}

static int execute(const cli_values *v)
{
    if (!v->model || !v->probes || !v->out)
        return cli_usage_error("search", "-m MODEL, --probes FILE and -o PATCH are required");
    if (v->given[CLI_O_VALIDATION_SPLIT] && !(v->validation_split < 1))
        return cli_usage_error("search", "--validation-split needs a share below 1, not %g",
                               v->validation_split);
    if (v->validation && v->given[CLI_O_VALIDATION_SPLIT])
        return cli_usage_error("search", "--validation and --validation-split exclude each "
                                         "other: validate on a file or on a split of the targets");
    if (v->given[CLI_O_VALIDATION_RULE] && !v->validation && !v->given[CLI_O_VALIDATION_SPLIT])
        return cli_usage_error("search", "--validation-rule needs --validation or "
                                         "--validation-split");
    xp_search_job job = {.model_path = v->model,
                         .kernel = v->kernel,
                         .probes = v->probes,
                         .controls = v->controls.v,
                         .n_controls = v->controls.n,
                         .heldout = v->heldout,
                         .validation = v->validation,
                         .validation_split = v->validation_split,
                         .log_flip_detail = v->log_flip_detail,
                         .out = v->out,
                         .name = v->name,
                         .log = v->log,
                         .html = v->report,
                         .resume = v->resume_from,
                         .allow_dead = v->allow_dead,
                         .no_eval = v->no_eval,
                         .random_baseline =
                             v->given[CLI_O_RANDOM_BASELINE] ? v->random_baseline : 20};
    xp_search_opts_default(&job.opts);
    cli_search_opts(v, &job.opts);
    bool writes;
    int code = cli_job_team_open(v->mpi, v->out, &job.opts.team, &writes);
    if (code >= 0)
        return code;
    job.report = cli.quiet || !writes ? NULL : stdout;
    cli_job_view view;
    xp_err err = {0};
    xp_search_job_result res;
    int rc = xp_search_job_run(&job, cli_job_view_init(&view), &res, &err);
    xp_search_job_result_free(&res);
    return cli_job_team_end(&view, job.opts.team, rc, &err);
}
