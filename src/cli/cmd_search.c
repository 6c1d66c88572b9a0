/* `xorpatch search`: the main job. Loads the model and the probes, audits the targets
 * (dead ones are refused), runs the greedy search with a progress bar and a JSONL log of
 * every iteration, writes the patch with its provenance (checkpointed as it goes, so a
 * killed search resumes with --resume), then evaluates the patch on the targets, the
 * controls and the held-out probes and reports it as text and as an HTML page. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cmd_patch_util.h"
#include "cli/cmd_probe_util.h"
#include "cli/cmd_search.h"
#include "cli/search_report.h"
#include "core/file.h"

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
    "  --metric NAME          seq_logprob (default) or token_gap (legacy)\n"
    "  --fitness NAME         mean (default), min, borderline or focused (SPEC 8)\n"
    "  --lambda X             control penalty (default 2.0)\n"
    "  --epsilon X            focused: how far a control may fall (default 0.5)\n"
    "  --min-gain X           keep a flip only if it beats the best by more (default 0;\n"
    "                         not with focused, whose rule is lexicographic)\n"
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

/* ---- the iteration log and the progress bar ---- */

typedef struct run_log {
    FILE *f;
    const char *path;
    bool trim;          /* resuming: drop the log's lines from the first new iteration on */
    cli_progress bar;
    size_t total;
    xp_search_iter *iters;
    size_t n, cap;
    bool failed;
} run_log;

static cJSON *iter_json(const xp_search_iter *it)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "iter", (double)it->iter);
    cJSON_AddNumberToObject(o, "layer", it->cand.layer);
    cJSON_AddStringToObject(o, "proj", xp_proj_name(it->cand.proj));
    cJSON_AddStringToObject(o, "kind", it->cand.kind == XP_FLIP_ROW     ? "row"
                                       : it->cand.kind == XP_FLIP_BLOCK ? "block"
                                                                        : "scale");
    cJSON_AddNumberToObject(o, "index", (double)it->cand.index);
    if (it->cand.kind == XP_FLIP_SCALE)
        cJSON_AddNumberToObject(o, "bit", it->cand.bit);
    if (isnan(it->fitness))
        cJSON_AddNullToObject(o, "fitness");
    else
        cJSON_AddNumberToObject(o, "fitness", it->fitness);
    if (isnan(it->best))
        cJSON_AddNullToObject(o, "best");
    else
        cJSON_AddNumberToObject(o, "best", it->best);
    cJSON_AddBoolToObject(o, "accepted", it->accepted);
    cJSON_AddBoolToObject(o, "screened", it->screened);
    cJSON_AddNumberToObject(o, "probes", (double)it->probes_run);
    cJSON_AddNumberToObject(o, "seconds", it->seconds);
    cJSON_AddNumberToObject(o, "flips", (double)it->n_flips);
    return o;
}

static void remember(run_log *l, const xp_search_iter *it)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 256;
        xp_search_iter *v = realloc(l->iters, cap * sizeof *v);
        if (!v)
            return;
        l->iters = v;
        l->cap = cap;
    }
    l->iters[l->n++] = *it;
}

/* Keeps the lines of the log before iteration `first` (a resumed run repeats the ones
 * after its checkpoint; a run started afresh from a patch repeats them all). */
static void trim_log(run_log *l, size_t first)
{
    fclose(l->f);
    l->f = NULL;
    FILE *in = fopen(l->path, "r");
    char *buf = NULL, *line = NULL;
    size_t len = 0, cap = 0;
    FILE *out = open_memstream(&buf, &len);
    while (in && out && getline(&line, &cap, in) > 0) {
        cJSON *o = cJSON_Parse(line);
        const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, "iter");
        if (cJSON_IsNumber(it) && it->valuedouble < (double)first)
            fputs(line, out);
        cJSON_Delete(o);
    }
    free(line);
    if (in)
        fclose(in);
    if (!out || fclose(out) || xp_write_file_atomic(l->path, buf ? buf : "", len, NULL))
        l->failed = true;
    free(buf);
    if (!(l->f = fopen(l->path, "a")))
        l->failed = true;
}

static void on_iter(void *ctx, const xp_search_iter *it)
{
    run_log *l = ctx;
    if (l->trim) {
        trim_log(l, it->iter);
        l->trim = false;
    }
    if (!l->f)
        return;
    remember(l, it);
    cJSON *o = iter_json(it);
    char *line = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!line || fprintf(l->f, "%s\n", line) < 0 || fflush(l->f))
        l->failed = true;
    free(line);
    cli_progress_update(&l->bar, it->iter, l->total);
}

/* A resumed search's earlier iterations, from its log (for the report's curves). */
static void reread_log(run_log *l, const char *path, size_t upto)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    char *line = NULL;
    size_t cap = 0;
    while (getline(&line, &cap, f) > 0) {
        cJSON *o = cJSON_Parse(line);
        const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, "iter");
        if (cJSON_IsNumber(it) && it->valuedouble >= 1 && (size_t)it->valuedouble <= upto) {
            xp_search_iter r = {.iter = (size_t)it->valuedouble};
            const cJSON *v;
            r.fitness = cJSON_IsNumber(v = cJSON_GetObjectItem(o, "fitness")) ? v->valuedouble : NAN;
            r.best = cJSON_IsNumber(v = cJSON_GetObjectItem(o, "best")) ? v->valuedouble : NAN;
            r.accepted = cJSON_IsTrue(cJSON_GetObjectItem(o, "accepted"));
            r.screened = cJSON_IsTrue(cJSON_GetObjectItem(o, "screened"));
            r.seconds = cJSON_IsNumber(v = cJSON_GetObjectItem(o, "seconds")) ? v->valuedouble : 0;
            r.n_flips = cJSON_IsNumber(v = cJSON_GetObjectItem(o, "flips")) ? (size_t)v->valuedouble : 0;
            r.cand.layer = cJSON_IsNumber(v = cJSON_GetObjectItem(o, "layer")) ? (uint32_t)v->valuedouble : 0;
            v = cJSON_GetObjectItem(o, "proj");
            r.cand.proj = (uint8_t)(cJSON_IsString(v) && xp_proj_from_name(v->valuestring) >= 0
                                        ? xp_proj_from_name(v->valuestring) : 0);
            remember(l, &r);
        }
        cJSON_Delete(o);
    }
    free(line);
    fclose(f);
}

/* ---- probes ---- */

typedef struct probes {
    xp_probe_set *file, *targets, *promoted, *controls, *heldout;
    xp_probe_tokens *t, *p, *c, *h;
    xp_probe_tokens *ctl;  /* promoted then --controls, shallow copies */
    size_t n_ctl;
    const char **target_names, **control_names;
} probes;

static void probes_free(probes *p)
{
    xp_probe_set *sets[] = {p->file, p->targets, p->promoted, p->controls, p->heldout};
    xp_probe_tokens *toks[] = {NULL, p->t, p->p, p->c, p->h};
    for (int i = 0; i < 5; i++) {
        if (toks[i])
            xp_probe_tokens_free(toks[i], sets[i]->n);
        xp_probe_set_free(sets[i]);
    }
    free(p->ctl);
    free(p->target_names);
    free(p->control_names);
}

static int tokenize(xp_model *m, xp_probe_set *s, xp_probe_tokens **pt, xp_err *err)
{
    return s ? xp_probe_tokenize(s, xp_model_tokenizer(m), pt, err) : XP_OK;
}

static int load_probes(xp_model *m, const char *path, const char *controls, const char *heldout,
                       probes *p, xp_err *err)
{
    int rc = xp_probe_set_load(&p->file, path, err);
    if (!rc)
        rc = xp_probe_set_select_role(p->file, XP_ROLE_TARGET, &p->targets, err);
    if (!rc)
        rc = xp_probe_set_select_role(p->file, XP_ROLE_CONTROL, &p->promoted, err);
    if (!rc && controls)
        rc = xp_probe_set_load(&p->controls, controls, err);
    if (!rc && heldout)
        rc = xp_probe_set_load(&p->heldout, heldout, err);
    if (!rc && !(rc = tokenize(m, p->targets, &p->t, err)) &&
        !(rc = tokenize(m, p->promoted, &p->p, err)) && !(rc = tokenize(m, p->controls, &p->c, err)))
        rc = tokenize(m, p->heldout, &p->h, err);
    if (rc)
        return rc;
    size_t np = p->promoted->n, nc = p->controls ? p->controls->n : 0;
    p->n_ctl = np + nc;
    p->ctl = calloc(p->n_ctl + 1, sizeof *p->ctl);
    p->target_names = calloc(p->targets->n + 1, sizeof *p->target_names);
    p->control_names = calloc(p->n_ctl + 1, sizeof *p->control_names);
    if (!p->ctl || !p->target_names || !p->control_names)
        return xp_err_set(err, XP_ENOMEM, "out of memory");
    for (size_t i = 0; i < p->targets->n; i++)
        p->target_names[i] = p->targets->probes[i].name;
    for (size_t i = 0; i < p->n_ctl; i++) {
        p->ctl[i] = i < np ? p->p[i] : p->c[i - np];
        p->control_names[i] = i < np ? p->promoted->probes[i].name
                                     : p->controls->probes[i - np].name;
    }
    if (p->targets->n == 0)
        return xp_err_set(err, XP_EINVAL, "%s: no target probes", path);
    return XP_OK;
}

/* The audit before the search: dead targets refused unless allowed. */
static int audit_targets(xp_model *m, const probes *p, xp_metric metric, bool allow_dead,
                         xp_err *err)
{
    xp_audit a;
    int rc = xp_probe_audit(m, p->targets, p->t, metric, false, &a, err);
    if (rc)
        return rc;
    cli_note("audit: %zu targets, %zu dead under %s (%zu under the single-token rule), %zu "
             "already solved, %zu where the model's next token is not a measured one",
             a.n, a.dead, xp_metric_name(metric), a.dead_token_gap, a.solved, a.not_emitted);
    if (a.dead && !allow_dead) {
        char names[512] = "";
        size_t len = 0, shown = 0;
        for (size_t i = 0; i < a.n && len < sizeof names - 64; i++)
            if (a.probes[i].dead && shown++ < 8)
                len += (size_t)snprintf(names + len, sizeof names - len, "%s%s", len ? ", " : "",
                                        p->targets->probes[i].name);
        rc = xp_err_set(err, XP_EINVAL, "%zu dead target probe%s (%s%s): their answers cannot "
                        "be told apart under %s, so no flip can move them; fix or drop them, "
                        "or pass --allow-dead", a.dead, a.dead == 1 ? "" : "s", names,
                        a.dead > shown ? ", ..." : "", xp_metric_name(metric));
    }
    xp_audit_free(&a);
    return rc;
}

/* ---- provenance ---- */

static void add_file(cJSON *arr, const char *role, const char *path)
{
    if (!path)
        return;
    char sha[65] = "";
    xp_sha256_file(path, sha, NULL);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "role", role);
    cJSON_AddStringToObject(o, "path", path);
    cJSON_AddStringToObject(o, "sha256", sha);
    cJSON_AddItemToArray(arr, o);
}

/* Adds the probe files and the outcome to the patch's search JSON. */
static void provenance(xp_patch *patch, const xp_search_result *r, const char *probes_path,
                       const char *controls, const char *heldout)
{
    cJSON *s = patch->search ? cJSON_Parse(patch->search) : cJSON_CreateObject();
    if (!s)
        return;
    cJSON *files = cJSON_AddArrayToObject(s, "probe_files");
    add_file(files, "targets", probes_path);
    add_file(files, "controls", controls);
    add_file(files, "heldout", heldout);
    cJSON *res = cJSON_AddObjectToObject(s, "result");
    cJSON_AddNumberToObject(res, "iterations", (double)r->iterations);
    cJSON_AddNumberToObject(res, "accepted", (double)r->accepted);
    cJSON_AddNumberToObject(res, "screened_out", (double)r->screened_out);
    cJSON_AddNumberToObject(res, "seconds", r->seconds);
    cJSON_AddBoolToObject(res, "auto_stopped", r->auto_stopped);
    char *text = cJSON_PrintUnformatted(s);
    cJSON_Delete(s);
    if (text) {
        free(patch->search);
        patch->search = text;
    }
}

/* ---- the command ---- */

static char *with_suffix(const char *path, const char *suffix)
{
    size_t n = strlen(path), k = strlen(suffix);
    char *s = malloc(n + k + 1);
    if (s)
        memcpy(s, path, n), memcpy(s + n, suffix, k + 1);
    return s;
}

static int evaluate(xp_model *m, xp_probe_set *s, const xp_probe_tokens *pt, xp_patch *patch,
                    const xp_search_opts *o, bool generate, xp_eval *out, xp_err *err)
{
    memset(out, 0, sizeof *out);
    if (!s || s->n == 0)
        return XP_OK;
    xp_eval_opts eo = {.metric = o->metric, .generate = generate};
    return xp_eval_run(m, s, pt, &patch, 1, &eo, out, err);
}

int cli_search_setting(const char *cmd, int opt, const char *arg, xp_search_opts *o,
                       uint32_t *layers, size_t cap)
{
    long v;
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
        if ((v = cli_parse_count(arg)) < 0)
            return cli_usage_error(cmd, "--iterations needs a positive count, not '%s'", arg);
        o->iterations = (size_t)v;
        return 0;
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
           O_NAIVE, O_NAME, O_LOG, O_REPORT, O_NO_EVAL, O_KERNEL, O_PROMOTE_CAP };
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
        {"no-eval", no_argument, 0, O_NO_EVAL},      {"kernel", required_argument, 0, O_KERNEL},
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

int cli_search_run(cli_search_args *a, xp_model *m, xp_search_result *res, xp_err *err)
{
    xp_search_opts *o = &a->opts;
    probes p = {0};
    run_log log = {0};
    xp_patch *resume = NULL;
    xp_eval ev[4] = {{0}};
    char *log_path = a->log ? strdup(a->log) : with_suffix(a->out, ".log.jsonl");
    char *html = a->report ? strdup(a->report) : with_suffix(a->out, ".html");
    char base_sha[65] = "";
    memset(res, 0, sizeof *res);
    int rc = log_path && html ? XP_OK : xp_err_set(err, XP_ENOMEM, "out of memory");
    if (!rc)
        rc = load_probes(m, a->probes, a->controls, a->heldout, &p, err);
    if (!rc)
        rc = audit_targets(m, &p, o->metric, a->allow_dead, err);
    if (!rc && a->resume)
        rc = xp_patch_read(&resume, a->resume, err);
    if (!rc)
        rc = cli_model_base(a->model, xp_model_gguf(m), base_sha, err);
    if (!rc && resume && resume->base_sha256[0] && strcmp(resume->base_sha256, base_sha))
        rc = xp_err_set(err, XP_EINVAL, "%s was made for another base model (%.12s..., this one "
                        "is %.12s...): a search cannot continue from it", a->resume,
                        resume->base_sha256, base_sha);
    log.path = log_path;
    log.trim = resume != NULL;
    if (!rc && !(log.f = fopen(log_path, resume ? "a" : "w")))
        rc = xp_err_set(err, XP_EIO, "%s: cannot write the log", log_path);
    if (!rc) {
        const char *slash = strrchr(a->out, '/');
        char stem[256];
        snprintf(stem, sizeof stem, "%s", slash ? slash + 1 : a->out);
        char *dot = strrchr(stem, '.');
        if (dot && dot != stem)
            *dot = 0;
        o->name = a->name ? a->name : stem;
        o->base_sha256 = base_sha;
        o->checkpoint = a->out;
        o->checkpoint_format = cli_patch_out_format(a->command, NULL, a->out);
        o->on_iter = on_iter;
        o->ctx = &log;
        log.total = o->iterations;
        cli_note("search: %zu targets, %zu controls, %s, fitness %s, %s flips, %zu iterations%s",
                 p.targets->n, p.n_ctl, xp_metric_name(o->metric), xp_fitness_name(o->fitness),
                 xp_granularity_name(o->granularity), o->iterations,
                 o->naive ? ", naive measurement" : "");
        cli_progress_start(&log.bar, "search");
        rc = xp_search_run(m, p.t, p.targets->n, p.ctl, p.n_ctl, o, resume, res, err);
        cli_progress_end(&log.bar);
        if (!rc && resume && res->resumed_at)
            cli_note("resumed %s exactly after its iteration %zu", a->resume, res->resumed_at);
        else if (!rc && resume)
            cli_note("%s is not a checkpoint of this search (base, settings and probes): its "
                     "%zu flips were a starting point, iterations counted from 1", a->resume,
                     resume->n_flips);
    }
    if (log.f && fclose(log.f) && !rc)
        rc = xp_err_set(err, XP_EIO, "%s: cannot write the log", log_path);
    if (!rc && log.failed)
        rc = xp_err_set(err, XP_EIO, "%s: cannot write the log", log_path);
    if (!rc && res->resumed_at) { /* the earlier part of the curve, from the log */
        run_log old = {0};
        reread_log(&old, log_path, res->resumed_at);
        for (size_t i = 0; i < log.n; i++)
            remember(&old, &log.iters[i]);
        free(log.iters);
        log.iters = old.iters;
        log.n = old.n;
    }
    if (!rc) {
        cli_patch_stamp(res->patch, NULL);
        res->patch->architecture = cli_architecture_json(xp_model_gguf(m));
        provenance(res->patch, res, a->probes, a->controls, a->heldout);
        if (res->patch->n_flips == 0)
            cli_note("no flip was kept: %s is not written", a->out);
        else {
            int fmt = cli_patch_out_format(a->command, NULL, a->out);
            rc = xp_patch_write(res->patch, fmt, a->out, err);
        }
    }
    /* evaluated apart: targets, the probe file's promoted controls, --controls, held-out */
    static const char *const labels[4] = {"targets", "promoted controls", "controls",
                                          "held-out"};
    xp_probe_set *sets[4] = {p.targets, p.promoted, p.controls, p.heldout};
    const xp_probe_tokens *toks[4] = {p.t, p.p, p.c, p.h};
    bool evaluated[4] = {false};
    for (int i = 0; i < 4 && !rc && res->patch->n_flips; i++)
        if (sets[i] && sets[i]->n) {
            cli_note("evaluating %s ...", labels[i]);
            rc = evaluate(m, sets[i], toks[i], res->patch, o, !a->no_eval, &ev[i], err);
            evaluated[i] = !rc;
        }
    if (!rc) {
        search_report r = {a->model, a->out, o, res, log.iters, log.n, p.target_names,
                           p.control_names, {{0}}};
        for (int i = 0; i < 4; i++)
            r.sets[i] = (search_report_set){labels[i], sets[i], evaluated[i] ? &ev[i] : NULL};
        if (!cli.quiet)
            search_report_print(stdout, &r);
        rc = search_report_html(html, &r, err);
        if (!rc)
            cli_note("wrote %s, %s and %s", a->out, log_path, html);
    }
    for (int i = 0; i < 4; i++)
        xp_eval_free(&ev[i]);
    free(log.iters);
    free(log_path);
    free(html);
    xp_patch_free(resume);
    probes_free(&p);
    return rc;
}

static int run(int argc, char **argv)
{
    cli_search_args a = {.command = "search", .self = &cli_search};
    xp_search_opts_default(&a.opts);
    int rc = cli_search_parse(argc, argv, &a);
    if (rc >= 0)
        return rc;
    if (!a.model || !a.probes || !a.out)
        return cli_usage_error("search", "-m MODEL, --probes FILE and -o PATCH are required");
    xp_model *m;
    if ((rc = cli_open_model(a.model, a.kernel, &m)))
        return rc;
    xp_err err = {0};
    xp_search_result res;
    rc = cli_search_run(&a, m, &res, &err);
    xp_search_result_free(&res);
    xp_model_close(m);
    return rc ? cli_fail(&err) : EXIT_OK;
}

const cli_command cli_search = {"search", "search a sparse XOR patch that fixes target probes",
                                usage, run};
