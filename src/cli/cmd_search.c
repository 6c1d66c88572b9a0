/* `xorpatch search`: the main job, from the command line. This file parses the options
 * (and the search settings `pipeline` and `experiment` share), runs the search job with
 * a progress bar and notes on stderr and the text report on stdout, and maps its outcome
 * to an exit code; the job itself (audit, search, log, checkpoints and resume, patch,
 * evaluation, reports) is the library's (xorpatch/job.h). */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli_job.h"
#include "cli/cmd_probe_util.h"
#include "cli/cmd_search.h"

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
    "  --controls FILE        probes to keep (default: none but promoted ones)\n"
    "  --heldout FILE         probes evaluated only at the end\n"
    "  --allow-dead           search even with dead targets\n"
    "Measure and fitness:\n"
    "  --metric NAME          seq_logprob (default), token_gap, margin, answer_logprob\n"
    "  --fitness NAME         mean (default), min, borderline or focused (SPEC 8)\n"
    "  --lambda X             control penalty (default 2.0)\n"
    "  --epsilon X            focused: how far a control may fall (default 0.5)\n"
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
    "  --proposal P           scale (default: by mean |scale|) or uniform\n"
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
    "                         a patch made for another base model is refused\n"
    "  --checkpoint-every N   (default 10)\n"
    "  --naive                measure each sequence alone with every layer and the full\n"
    "                         LM head (the reference for speed; same gaps, same patch)\n"
    "Output:\n"
    "  -o, --out PATCH        the patch and its checkpoints (.xpb: binary; else\n"
    "                         xorpatch JSON)\n"
    "  --name NAME            the patch's name (default: the file's stem)\n"
    "  --log FILE             per-iteration JSONL (default PATCH.log.jsonl); each line\n"
    "                         {\"iter\", \"layer\", \"proj\", \"kind\", \"index\", \"bit\",\n"
    "                         \"fitness\", \"best\", \"accepted\", \"screened\", \"probes\",\n"
    "                         \"seconds\", \"flips\"} (fitness null when screened out)\n"
    "  --report FILE          the HTML report (default PATCH.html)\n"
    "  --no-eval              skip the before/after generations (gaps only)\n"
    "  --random-baseline N    held-out p vs N random patches (20 more evals; 0: off)\n"
    "  --kernel NAME          fast-path kernel: avx512, avx2 or portable (default: best)\n"
    "  -t, --threads N        threads (default: all cores)\n"
    "  -q, --quiet            no progress, notes or text report (files are written)\n"
    "  -h, --help             this text\n";

/* ---- parsing lists ---- */

int cli_parse_double(const char *s, double *out)
{
    char *end;
    double v = strtod(s, &end);
    if (!*s || *end || !isfinite(v))
        return -1;
    *out = v;
    return 0;
}

int cli_count_option(const char *cmd, const char *name, const char *arg, size_t *out)
{
    long v = cli_parse_count(arg);
    if (v < 0)
        return cli_usage_error(cmd, "%s needs a positive count, not '%s'", name, arg);
    *out = (size_t)v;
    return -1;
}

long cli_parse_layers(const char *s, uint32_t *out, size_t cap)
{
    size_t n = 0;
    const char *p = s;
    while (*p) {
        char *end;
        long a = strtol(p, &end, 10), b = a;
        if (end == p || a < 0 || a > 65535)
            return -1;
        if (*end == '-') {
            p = end + 1;
            b = strtol(p, &end, 10);
            if (end == p || b < a || b > 65535)
                return -1;
        }
        for (long l = a; l <= b; l++) {
            if (n == cap)
                return -1;
            out[n++] = (uint32_t)l;
        }
        if (*end == ',')
            end++;
        else if (*end)
            return -1;
        p = end;
    }
    return n ? (long)n : -1;
}

int cli_parse_projs(const char *s, unsigned *mask)
{
    char buf[128];
    snprintf(buf, sizeof buf, "%s", s);
    *mask = 0;
    for (char *save, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        int p = xp_proj_from_name(tok);
        if (p < 0)
            return -1;
        *mask |= 1u << p;
    }
    return *mask ? 0 : -1;
}

/* ---- the command ---- */

int cli_search_setting(const char *cmd, int opt, const char *arg, xp_search_opts *o,
                       uint32_t *layers, size_t cap)
{
    long v;
    int rc;
    switch (opt) {
    case CLI_SET_FITNESS:
        if ((o->fitness = xp_fitness_from_name(arg)) < 0)
            return cli_usage_error(cmd, "--fitness must be mean, min, borderline or focused");
        return 0;
    case CLI_SET_LAMBDA:
        if (cli_parse_double(arg, &o->lambda) || o->lambda < 0)
            return cli_usage_error(cmd, "--lambda needs a number >= 0");
        return 0;
    case CLI_SET_GRAN:
        if ((o->granularity = xp_granularity_from_name(arg)) < 0)
            return cli_usage_error(cmd, "--granularity must be row, block or scale-bit");
        return 0;
    case CLI_SET_PROPOSAL:
        if ((o->proposal = xp_proposal_from_name(arg)) < 0)
            return cli_usage_error(cmd, "--proposal must be scale or uniform");
        return 0;
    case CLI_SET_ITER:
        return (rc = cli_count_option(cmd, "--iterations", arg, &o->iterations)) >= 0 ? rc : 0;
    case CLI_SET_SCREEN:
        if (strcmp(arg, "0") && cli_parse_count(arg) < 0)
            return cli_usage_error(cmd, "--screen needs a count (0 = off), not '%s'", arg);
        o->screen = (size_t)atol(arg);
        return 0;
    case CLI_SET_LAYERS:
        if ((v = cli_parse_layers(arg, layers, cap)) < 0)
            return cli_usage_error(cmd, "--layers needs a list like 1-4,26, not '%s'", arg);
        o->layers = layers;
        o->n_layers = (size_t)v;
        return 0;
    case CLI_SET_PROJ:
        if (cli_parse_projs(arg, &o->projs))
            return cli_usage_error(cmd, "--proj needs a list of gate,up,down,q,k,v,o");
        return 0;
    default:
        return -1;
    }
}

int cli_search_parse(int argc, char **argv, cli_search_args *a)
{
    enum { O_PROBES = 256, O_CONTROLS, O_HELDOUT, O_ALLOW_DEAD, O_METRIC, O_EPSILON,
           O_MIN_GAIN, O_SCALE_RATIO, O_SCALE_BITS, O_AUTO_STOP, O_SEED, O_RESUME, O_CKPT,
           O_NAIVE, O_NAME, O_LOG, O_REPORT, O_NO_EVAL, O_KERNEL, O_PROMOTE_CAP, O_RANDOM,
           O_CONTROL_CHECK };
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'},        {"probes", required_argument, 0, O_PROBES},
        {"controls", required_argument, 0, O_CONTROLS}, {"heldout", required_argument, 0, O_HELDOUT},
        {"allow-dead", no_argument, 0, O_ALLOW_DEAD}, {"metric", required_argument, 0, O_METRIC},
        CLI_SEARCH_SETTINGS,
        {"epsilon", required_argument, 0, O_EPSILON}, {"min-gain", required_argument, 0, O_MIN_GAIN},
        {"scale-ratio", required_argument, 0, O_SCALE_RATIO},
        {"scale-bits", required_argument, 0, O_SCALE_BITS},
        {"auto-stop", required_argument, 0, O_AUTO_STOP}, {"seed", required_argument, 0, O_SEED},
        {"resume", required_argument, 0, O_RESUME},
        {"checkpoint-every", required_argument, 0, O_CKPT}, {"naive", no_argument, 0, O_NAIVE},
        {"out", required_argument, 0, 'o'},          {"name", required_argument, 0, O_NAME},
        {"log", required_argument, 0, O_LOG},        {"report", required_argument, 0, O_REPORT},
        {"no-eval", no_argument, 0, O_NO_EVAL}, {"random-baseline", required_argument, 0, O_RANDOM},
        {"control-check", required_argument, 0, O_CONTROL_CHECK},      {"kernel", required_argument, 0, O_KERNEL},
        {"promote-cap", required_argument, 0, O_PROMOTE_CAP},
        {"threads", required_argument, 0, 't'},      {"quiet", no_argument, 0, 'q'},
        {"help", no_argument, 0, 'h'},               {0, 0, 0, 0}};
    const char *cmd = a->command;
    xp_search_opts *o = &a->opts;
    int opt, rc;
    long v;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "m:o:t:qh", opts, NULL)) != -1) {
        switch (opt) {
        case 'm': a->model = optarg; break;
        case O_PROBES: a->probes = optarg; break;
        case O_CONTROLS: a->controls = optarg; break;
        case O_HELDOUT: a->heldout = optarg; break;
        case O_ALLOW_DEAD: a->allow_dead = true; break;
        case O_METRIC:
            if ((rc = cli_metric(cmd, optarg)) < 0)
                return EXIT_USAGE;
            o->metric = (xp_metric)rc;
            break;
        case O_EPSILON:
            if (cli_parse_double(optarg, &o->epsilon) || o->epsilon < 0)
                return cli_usage_error(cmd, "--epsilon needs a number >= 0");
            break;
        case O_MIN_GAIN:
            if (cli_parse_double(optarg, &o->min_gain) || o->min_gain < 0)
                return cli_usage_error(cmd, "--min-gain needs a number >= 0");
            break;
        case O_SCALE_RATIO:
            if (cli_parse_double(optarg, &o->scale_ratio) || o->scale_ratio < 0 || o->scale_ratio > 1)
                return cli_usage_error(cmd, "--scale-ratio needs a number in [0, 1]");
            break;
        case O_SCALE_BITS:
            if (sscanf(optarg, "%d-%d", &o->scale_bit_min, &o->scale_bit_max) != 2 ||
                o->scale_bit_min < 0 || o->scale_bit_max > 15 || o->scale_bit_min > o->scale_bit_max)
                return cli_usage_error(cmd, "--scale-bits needs LO-HI within 0-15, e.g. 4-9");
            break;
        case O_AUTO_STOP: {
            unsigned long n;
            double rate;
            char tail;
            if (!strcmp(optarg, "off")) {
                o->stop_window = 0;
                break;
            }
            if (optarg[0] == '-' || sscanf(optarg, "%lu:%lf%c", &n, &rate, &tail) != 2 ||
                n == 0 || n > 1000000 || !(rate > 0) || rate > 1)
                return cli_usage_error(cmd, "--auto-stop needs N:RATE with N in 1..1000000 "
                                       "and RATE in (0, 1] (e.g. 200:0.01), or off");
            o->stop_window = n;
            o->stop_rate = rate;
            break;
        }
        case O_SEED: {
            char *end;
            errno = 0;
            o->seed = strtoull(optarg, &end, 10);
            if (!*optarg || *end || optarg[0] == '-' || errno == ERANGE)
                return cli_usage_error(cmd, "--seed needs an integer in 0..2^64-1");
            break;
        }
        case O_RESUME: a->resume = optarg; break;
        case O_CKPT:
            if ((v = cli_parse_count(optarg)) < 0)
                return cli_usage_error(cmd, "--checkpoint-every needs a positive count");
            o->checkpoint_every = (size_t)v;
            break;
        case O_NAIVE: o->naive = true; break;
        case 'o': a->out = optarg; break;
        case O_NAME: a->name = optarg; break;
        case O_LOG: a->log = optarg; break;
        case O_REPORT: a->report = optarg; break;
        case O_NO_EVAL: a->no_eval = true; break;
        case O_CONTROL_CHECK:
            if (strcmp(optarg, "none") && strcmp(optarg, "generation"))
                return cli_usage_error(a->command, "--control-check must be none or "
                                       "generation, not '%s'", optarg);
            a->opts.control_generation = !strcmp(optarg, "generation");
            break;
        case O_RANDOM:
            if ((a->random_baseline = cli_parse_count(optarg)) < 0)
                return cli_usage_error(a->command, "--random-baseline needs a count, not '%s'",
                                       optarg);
            break;
        case O_KERNEL: a->kernel = optarg; break;
        case O_PROMOTE_CAP:
            if (!a->pipeline)
                return cli_usage_error(cmd, "--promote-cap is an option of pipeline");
            if (strcmp(optarg, "0") && (v = cli_parse_count(optarg)) < 0)
                return cli_usage_error(cmd, "--promote-cap needs a count");
            a->promote_cap = (size_t)atol(optarg);
            break;
        case 't':
            if ((rc = cli_set_threads(cmd, optarg)) >= 0)
                return rc;
            break;
        default:
            rc = cli_search_setting(cmd, opt, optarg, o, a->layers,
                                    sizeof a->layers / sizeof a->layers[0]);
            if (rc > 0)
                return rc;
            if (rc == 0) { /* given here: the pipeline leaves these alone */
                a->lambda_set |= opt == CLI_SET_LAMBDA;
                a->iterations_set |= opt == CLI_SET_ITER;
                a->layers_set |= opt == CLI_SET_LAYERS;
                break;
            }
            if ((rc = cli_common_option(a->self, opt)) >= 0)
                return rc;
        }
    }
    a->first_file = optind;
    if (optind < argc && !a->pipeline)
        return cli_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
    return -1;
}

static int run(int argc, char **argv)
{
    cli_search_args a = {.command = "search", .self = &cli_search, .random_baseline = -1};
    xp_search_opts_default(&a.opts);
    int rc = cli_search_parse(argc, argv, &a);
    if (rc >= 0)
        return rc;
    if (!a.model || !a.probes || !a.out)
        return cli_usage_error("search", "-m MODEL, --probes FILE and -o PATCH are required");
    xp_search_job job = {.model_path = a.model,
                         .kernel = a.kernel,
                         .probes = a.probes,
                         .controls = a.controls,
                         .heldout = a.heldout,
                         .out = a.out,
                         .name = a.name,
                         .log = a.log,
                         .html = a.report,
                         .resume = a.resume,
                         .allow_dead = a.allow_dead,
                         .no_eval = a.no_eval,
                         .random_baseline = a.random_baseline < 0 ? 20 : (size_t)a.random_baseline,
                         .opts = a.opts,
                         .report = cli.quiet ? NULL : stdout};
    cli_job_view view;
    xp_err err = {0};
    xp_search_job_result res;
    rc = xp_search_job_run(&job, cli_job_view_init(&view), &res, &err);
    xp_search_job_result_free(&res);
    return cli_job_view_end(&view, rc, &err);
}

const cli_command cli_search = {"search", "search a sparse XOR patch that fixes target probes",
                                usage, run};
