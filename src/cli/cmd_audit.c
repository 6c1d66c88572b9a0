/* `xorpatch audit`: what a probe set can and cannot measure on a model, before anyone
 * searches with it — dead probes (under the chosen metric and under the legacy
 * single-token rule), how far down the model's ranking each distractor is, whether the
 * measured token is what the model emits, the current gap and greedy output, probes
 * already solved, and categories that are one contrast repeated. This file names the
 * options, runs the audit and prints its report (the job layer's) as text or JSON. */
#include "cli/options.h"

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
    "  --token-rule R       the one token of token_gap and of the single-token count:\n"
    "                       first (default: of the answer in context) or last (of the\n"
    "                       answer encoded alone, as Bankai measured)\n"
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
    "  --kernel NAME        fast-path kernel: " CLI_KERNEL_NAMES " (default: best)\n"
    "  -t, --threads N      threads (default: all cores)\n"
    "  -q, --quiet          nothing on stderr but errors\n"
    "  -h, --help           this text\n";

static const int options[] = {
    CLI_O_MODEL, CLI_O_PROBES, CLI_O_METRIC, CLI_O_NO_GENERATE, CLI_O_MAX_TOKENS | CLI_LONG_ONLY,
    CLI_O_JSON,  CLI_O_KERNEL, CLI_O_THREADS, CLI_O_TOKEN_RULE};
CLI_COMMAND(cli_audit, "audit",
            "what a probe set can measure: dead probes, ranks, solved, repeated contrasts", usage,
            options, false, execute);

static int execute(const cli_values *v)
{
    const char *model = v->model, *probes = v->probes;
    if (!model || !probes)
        return cli_usage_error("audit", "-m MODEL and --probes FILE are required");
    if (v->no_generate && v->metric == XP_METRIC_GENERATION)
        return cli_usage_error("audit", "--metric generation needs the greedy outputs: drop "
                                        "--no-generate");
    xp_model *m;
    int rc = cli_open_model(model, v->kernel, &m);
    if (rc)
        return rc;
    xp_err err = {0};
    xp_probe_set *s = NULL;
    xp_probe_tokens *pt = NULL;
    xp_audit au = {0};
    double t0 = cli_now();
    rc = xp_probe_set_load(&s, probes, &err);
    if (!rc)
        rc = xp_probe_set_check_metric(s, (xp_metric)v->metric, &err);
    if (!rc)
        rc = xp_probe_tokenize(s, xp_model_tokenizer(m), &pt, &err);
    if (!rc)
        rc = xp_probe_tokens_token_rule(s, xp_model_tokenizer(m), v->token_rule, pt, &err);
    if (!rc && v->max_tokens)
        s->max_tokens = v->max_tokens;
    if (!rc)
        rc = xp_probe_audit(m, s, pt, (xp_metric)v->metric, !v->no_generate, &au, &err);
    if (!rc) {
        if (v->json)
            cli_print_json(xp_audit_report_json(s, &au));
        else
            xp_audit_report_print(stdout, s, &au, xp_model_tokenizer(m));
        cli_note("audited %zu probes in %.1f s", s->n, cli_now() - t0);
    }
    xp_audit_free(&au);
    xp_probe_tokens_free(pt, s ? s->n : 0);
    xp_probe_set_free(s);
    xp_model_close(m);
    return rc ? cli_fail(&err) : EXIT_OK;
}
