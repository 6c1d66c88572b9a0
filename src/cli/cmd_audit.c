/* `xorpatch audit`: what a probe set can and cannot measure on a model, before anyone
 * searches with it — dead probes (under the chosen metric and under the legacy
 * single-token rule), how far down the model's ranking each distractor is, whether the
 * measured token is what the model emits, the current gap and greedy output, probes
 * already solved, and categories that are one contrast repeated. */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cmd_probe_util.h"

static const char usage[] =
    "Usage: xorpatch audit -m MODEL --probes FILE [options]\n"
    "\n"
    "Audits a probe file (Bankai list, Neagari calibrated or verbatim set) on a model: per\n"
    "probe the gap under the metric, whether the probe is dead (the metric cannot tell its\n"
    "answers apart), the rank of the distractor among the model's next-token choices where\n"
    "the answers first differ, the token the model emits next against the tokens the metric\n"
    "measures, the greedy output and whether the probe is already solved; per category the\n"
    "number of distinct (correct, wrong) contrasts, flagging a category that is one contrast\n"
    "repeated. It always counts the probes the legacy token_gap rule kills (answers that\n"
    "share their first token, such as \" 20\" and \" 0\").\n"
    "\n"
    "  -m, --model FILE     a Qwen3 GGUF\n"
    "  --probes FILE        the probe file\n"
    "  --metric NAME        seq_logprob (default), token_gap (legacy: one id per answer) or\n"
    "                       generation (solved = the greedy output matches), margin (the\n"
    "                       correct answer alone: at each of its tokens its logit minus the\n"
    "                       strongest other's, the least of them; > 0 exactly when greedy\n"
    "                       decoding under teacher forcing emits every answer token, which\n"
    "                       the matcher's greedy generation then judges with what follows)\n"
    "                       or answer_logprob (its log-probability; solved by margin > 0);\n"
    "                       these two need no wrong answer ({\"prompt\", \"answer\"} items)\n"
    "  --no-generate        skip the greedy outputs (not with --metric generation)\n"
    "  --max-tokens N       generation limit (default: the set's, 24 for math and short\n"
    "                       answers, 80 for verbatim chat sets)\n"
    "  --json               one JSON object on stdout:\n"
    "                       {\"file\", \"metric\", \"n\",\n"
    "                        \"probes\": [{\"name\", \"category\", \"role\", \"dead\",\n"
    "                          \"dead_token_gap\", \"distractor_rank\" (null when dead or\n"
    "                          one answer is a prefix of the other), \"gap\", \"measured\":\n"
    "                          [id, id], \"emitted\", \"emitted_measured\", \"output\"\n"
    "                          (null without generation), \"solved\"}, ...],\n"
    "                        \"categories\": [{\"name\", \"n\", \"contrasts\", \"duplicates\",\n"
    "                          \"one_contrast\"}, ...],\n"
    "                        \"summary\": {\"dead\", \"dead_token_gap\", \"solved\",\n"
    "                          \"not_emitted\", \"one_contrast_categories\", \"contrasts\"\n"
    "                          (distinct (correct, wrong) pairs in the whole set)}}\n"
    "  --kernel NAME        fast-path kernel: avx512, avx2 or portable (default: best)\n"
    "  -t, --threads N      threads (default: all cores)\n"
    "  -q, --quiet          nothing on stderr but errors\n"
    "  -h, --help           this text\n";

static cJSON *audit_json(const xp_probe_set *s, const xp_audit *a)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "file", s->path);
    cJSON_AddStringToObject(o, "metric", xp_metric_name(a->metric));
    cJSON_AddNumberToObject(o, "n", (double)a->n);
    cJSON *probes = cJSON_AddArrayToObject(o, "probes");
    for (size_t i = 0; i < a->n; i++) {
        const xp_audit_probe *p = &a->probes[i];
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "name", s->probes[i].name);
        cJSON_AddStringToObject(e, "category", s->probes[i].category);
        cJSON_AddStringToObject(e, "role", s->probes[i].role == XP_ROLE_CONTROL ? "control" : "target");
        cJSON_AddBoolToObject(e, "dead", p->dead);
        cJSON_AddBoolToObject(e, "dead_token_gap", p->dead_token_gap);
        if (p->score.distractor_rank)
            cJSON_AddNumberToObject(e, "distractor_rank", (double)p->score.distractor_rank);
        else
            cJSON_AddNullToObject(e, "distractor_rank");
        cJSON_AddNumberToObject(e, "gap", p->score.gap);
        cJSON *ms = cJSON_AddArrayToObject(e, "measured");
        cJSON_AddItemToArray(ms, cJSON_CreateNumber(p->score.measured[0]));
        cJSON_AddItemToArray(ms, cJSON_CreateNumber(p->score.measured[1]));
        cJSON_AddNumberToObject(e, "emitted", p->score.emitted);
        cJSON_AddBoolToObject(e, "emitted_measured", p->emitted_measured);
        if (p->output)
            cJSON_AddStringToObject(e, "output", p->output);
        else
            cJSON_AddNullToObject(e, "output");
        cJSON_AddBoolToObject(e, "solved", p->solved);
        cJSON_AddItemToArray(probes, e);
    }
    cJSON *cats = cJSON_AddArrayToObject(o, "categories");
    for (size_t c = 0; c < a->n_categories; c++) {
        const xp_audit_category *ac = &a->categories[c];
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "name", ac->name);
        cJSON_AddNumberToObject(e, "n", (double)ac->n);
        cJSON_AddNumberToObject(e, "contrasts", (double)ac->contrasts);
        cJSON_AddNumberToObject(e, "duplicates", (double)ac->duplicates);
        cJSON_AddBoolToObject(e, "one_contrast", ac->one_contrast);
        cJSON_AddItemToArray(cats, e);
    }
    cJSON *sum = cJSON_AddObjectToObject(o, "summary");
    cJSON_AddNumberToObject(sum, "dead", (double)a->dead);
    cJSON_AddNumberToObject(sum, "dead_token_gap", (double)a->dead_token_gap);
    cJSON_AddNumberToObject(sum, "solved", (double)a->solved);
    cJSON_AddNumberToObject(sum, "not_emitted", (double)a->not_emitted);
    cJSON_AddNumberToObject(sum, "one_contrast_categories", (double)a->one_contrast_categories);
    cJSON_AddNumberToObject(sum, "contrasts", (double)a->contrasts);
    return o;
}

static void audit_print(const xp_probe_set *s, const xp_audit *a, const xp_tokenizer *t)
{
    static const char *const formats[] = {"Bankai list", "Neagari calibrated set",
                                          "Neagari verbatim set"};
    static const char *const matchers[] = {"math", "verbatim", "prefix"};
    printf("%s: %s, %zu probes; metric %s; generation: %s matcher, at most %zu tokens%s\n\n",
           s->path, formats[s->format], s->n, xp_metric_name(a->metric), matchers[s->matcher],
           s->max_tokens, s->stop_newline ? ", stops at a newline" : "");
    printf("%-28s %-18s %9s %7s  %-14s %-24s %-6s %s\n", "probe", "category", "gap", "rank",
           "emitted", "measured (right / wrong)", "solved", "greedy output");
    for (size_t i = 0; i < a->n; i++) {
        const xp_audit_probe *p = &a->probes[i];
        char e[64], m0[64], m1[64], out[160], rank[24], both[140];
        if (p->score.distractor_rank)
            snprintf(rank, sizeof rank, "%zu", p->score.distractor_rank);
        else
            snprintf(rank, sizeof rank, "-");
        cli_token_text(t, p->score.emitted, e, sizeof e);
        snprintf(both, sizeof both, "%s / %s", cli_token_text(t, p->score.measured[0], m0, sizeof m0),
                 cli_token_text(t, p->score.measured[1], m1, sizeof m1));
        printf("%-28.28s %-18.18s %9.3f %7s  %-14s %-24s %-6s %s", s->probes[i].name,
               s->probes[i].category, p->score.gap, rank, e, both, p->solved ? "yes" : "no",
               cli_quote(p->output, 40, out, sizeof out));
        if (p->dead)
            printf("  DEAD");
        else if (p->dead_token_gap)
            printf("  dead-under-token_gap");
        if (!p->emitted_measured)
            printf("  emits-other");
        printf("\n");
    }
    printf("\n%-28s %6s %10s %11s\n", "category", "probes", "contrasts", "duplicates");
    for (size_t c = 0; c < a->n_categories; c++) {
        const xp_audit_category *ac = &a->categories[c];
        printf("%-28.28s %6zu %10zu %11zu%s\n", *ac->name ? ac->name : "(none)", ac->n,
               ac->contrasts, ac->duplicates, ac->one_contrast ? "  ONE CONTRAST REPEATED" : "");
    }
    printf("\nsummary: %zu probes, %zu distinct contrasts; dead under %s: %zu; dead under the"
           "\n         legacy token_gap rule: %zu; already solved: %zu; model emits another token"
           "\n         than the measured ones: %zu; categories that are one contrast repeated: "
           "%zu of %zu\n", a->n, a->contrasts, xp_metric_name(a->metric), a->dead,
           a->dead_token_gap, a->solved, a->not_emitted, a->one_contrast_categories, a->n_categories);
}

static int run(int argc, char **argv)
{
    enum { O_PROBES = 256, O_METRIC, O_NOGEN, O_MAXTOK, O_JSON, O_KERNEL };
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'},      {"probes", required_argument, 0, O_PROBES},
        {"metric", required_argument, 0, O_METRIC}, {"no-generate", no_argument, 0, O_NOGEN},
        {"max-tokens", required_argument, 0, O_MAXTOK}, {"json", no_argument, 0, O_JSON},
        {"kernel", required_argument, 0, O_KERNEL}, {"threads", required_argument, 0, 't'},
        {"quiet", no_argument, 0, 'q'},            {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    const char *model = NULL, *probes = NULL, *kernel = NULL;
    int metric = XP_METRIC_SEQ_LOGPROB, opt, rc;
    bool generate = true, json = false;
    long max_tokens = 0;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "m:t:qh", opts, NULL)) != -1) {
        switch (opt) {
        case 'm': model = optarg; break;
        case O_PROBES: probes = optarg; break;
        case O_METRIC:
            if ((metric = cli_metric("audit", optarg)) < 0)
                return EXIT_USAGE;
            break;
        case O_NOGEN: generate = false; break;
        case O_MAXTOK:
            if ((max_tokens = cli_parse_count(optarg)) < 0)
                return cli_usage_error("audit", "--max-tokens needs a positive count, not '%s'",
                                       optarg);
            break;
        case O_JSON: json = true; break;
        case O_KERNEL: kernel = optarg; break;
        case 't':
            if ((rc = cli_set_threads("audit", optarg)) >= 0)
                return rc;
            break;
        default:
            if ((rc = cli_common_option(&cli_audit, opt)) >= 0)
                return rc;
        }
    }
    if (optind < argc)
        return cli_usage_error("audit", "unexpected argument '%s'", argv[optind]);
    if (!model || !probes)
        return cli_usage_error("audit", "-m MODEL and --probes FILE are required");
    if (!generate && metric == XP_METRIC_GENERATION)
        return cli_usage_error("audit", "--metric generation needs the greedy outputs: drop "
                               "--no-generate");
    xp_model *m;
    if ((rc = cli_open_model(model, kernel, &m)))
        return rc;
    xp_err err = {0};
    xp_probe_set *s = NULL;
    xp_probe_tokens *pt = NULL;
    xp_audit a = {0};
    double t0 = cli_now();
    rc = cli_probes_load(probes, m, &s, &pt, &err);
    if (!rc)
        rc = xp_probe_set_check_metric(s, (xp_metric)metric, &err);
    if (!rc && max_tokens)
        s->max_tokens = (size_t)max_tokens;
    if (!rc)
        rc = xp_probe_audit(m, s, pt, (xp_metric)metric, generate, &a, &err);
    if (!rc) {
        if (json)
            cli_print_json(audit_json(s, &a));
        else
            audit_print(s, &a, xp_model_tokenizer(m));
        cli_note("audited %zu probes in %.1f s", s->n, cli_now() - t0);
    }
    xp_audit_free(&a);
    xp_probe_tokens_free(pt, s ? s->n : 0);
    xp_probe_set_free(s);
    xp_model_close(m);
    return rc ? cli_fail(&err) : EXIT_OK;
}

const cli_command cli_audit = {"audit", "what a probe set can measure: dead probes, ranks, "
                               "solved, repeated contrasts", usage, run};
