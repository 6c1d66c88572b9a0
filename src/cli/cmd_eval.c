/* `xorpatch eval`: an honest before/after report of patches on probe sets — per probe
 * the gap and greedy output without and with the patches and whether it was fixed,
 * broke, stayed right or stayed wrong; the same per category; accuracies with Wilson
 * intervals, the exact McNemar test and the paired difference; the verbatim cross-table;
 * on the training probes and on held-out ones (a second file or a split). This file
 * names the options, loads and evaluates the sets and prints the report (the job
 * layer's) as text or JSON. */
#include "cli/options.h"

static const char usage[] =
    "Usage: xorpatch eval -m MODEL --probes FILE [--heldout FILE | --split SPEC]\n"
    "                     [-p PATCH ...] [options]\n"
    "\n"
    "Measures the probes on the model without and with the patches (applied in memory in\n"
    "the order given, reverted after): seq_logprob gaps (token_gap with --metric token_gap)\n"
    "and greedy generations judged by the set's matcher (math, prefix, or verbatim: right\n"
    "means PASS). A probe is right by its generation (by its gap > 0 with --no-generate).\n"
    "Reports per probe, per category and overall: fixed / broke / stayed right / stayed\n"
    "wrong, accuracy with Wilson 95% intervals, the exact McNemar p-value and a 95% (Wald)\n"
    "interval for the paired difference; for verbatim sets the base x patched table of\n"
    "PASS / COPY / PARTIAL / OTHER. Without -p only the base is measured.\n"
    "\n"
    "  -m, --model FILE     a Qwen3 GGUF (the unpatched base)\n"
    "  --probes FILE        the training probes (any probe file format)\n"
    "  --heldout FILE       held-out probes from a second file\n"
    "  --split SPEC         or hold out part of --probes: FIELD=VALUE (category, role or name;\n"
    "                       VALUE* matches a prefix) or ratio:R[:SEED] (a seeded fraction);\n"
    "                       refused when a prompt repeats in --probes\n"
    "  -p, --patch PATH     a patch file in any format or a Neagari patch directory;\n"
    "                       repeat to stack several\n"
    "  --metric NAME        gaps as seq_logprob (default), token_gap (legacy), margin or\n"
    "                       answer_logprob (the correct answer alone, no wrong one needed;\n"
    "                       margin > 0: greedy emits each answer token under teacher\n"
    "                       forcing, see audit --help; answer_logprob is judged by margin)\n"
    "  --token-rule R       token_gap's one token: first (default) or last (audit --help)\n"
    "  --no-generate        judge by gap sign only (fast, no generation)\n"
    "  --max-tokens N       generation limit (default: the set's)\n"
    "  --random-baseline N  also N random patches like the one -p gives (its tensors and,\n"
    "                       per tensor, its number of rows, blocks and scale bits), judged\n"
    "                       on the held-out set (else --probes): the permutation p-value of\n"
    "                       the patch's fixed - broke among theirs, (1 + #{random >= it}) /\n"
    "                       (1 + N), next to McNemar's; costs N more evaluations of that set\n"
    "  --seed S             seed of the random patches (default 1)\n"
    "  --per-probe          list every probe in the text report (default: only the probes\n"
    "                       whose outcome or gap sign changed)\n"
    "  --json               one JSON object on stdout:\n"
    "                       {\"model\", \"patches\": [names], \"metric\", \"generate\",\n"
    "                        \"sets\": [{\"split\": \"train\"|\"heldout\", \"file\", \"n\",\n"
    "                          \"probes\": [{\"name\", \"category\", \"role\", \"gap\": [base,\n"
    "                            patched], \"output\": [base, patched] (null without\n"
    "                            generation), \"right\": [b, p], \"outcome\", \"verbatim\":\n"
    "                            [b, p] or null}, ...],\n"
    "                          \"categories\": [{\"name\", PAIRED}, ...], \"summary\": PAIRED,\n"
    "                          \"by_gap\": PAIRED, \"verbatim\": {\"classes\": [...],\n"
    "                          \"table\": [[base PASS x patched PASS, ...], ...]} or null}]}\n"
    "                       PAIRED = {\"n\", \"fixed\", \"broke\", \"stayed_right\",\n"
    "                         \"stayed_wrong\", \"accuracy\": {\"base\": {\"right\", \"rate\",\n"
    "                         \"lo\", \"hi\"}, \"patched\": {...}}, \"mcnemar_p\",\n"
    "                         \"diff\": {\"value\", \"lo\", \"hi\"}} (rates as fractions)\n"
    "  --kernel NAME        fast-path kernel: " CLI_KERNEL_NAMES " (default: best)\n"
    "  -t, --threads N      threads (default: all cores)\n"
    "  -q, --quiet          nothing on stderr but errors\n"
    "  -h, --help           this text\n";

static const int options[] = {
    CLI_O_MODEL,     CLI_O_PROBES, CLI_O_HELDOUT,     CLI_O_SPLIT,
    CLI_O_PATCH,     CLI_O_METRIC, CLI_O_NO_GENERATE, CLI_O_MAX_TOKENS | CLI_LONG_ONLY,
    CLI_O_PER_PROBE, CLI_O_JSON,   CLI_O_KERNEL,      CLI_O_THREADS,
    CLI_O_RANDOM_BASELINE, CLI_O_SEED, CLI_O_TOKEN_RULE};
CLI_COMMAND(cli_eval, "eval", "probes without and with patches: fixed/broke, Wilson, McNemar",
            usage, options, false, execute);

static int execute(const cli_values *v)
{
    const char *model = v->model, *probes = v->probes, *heldout = v->heldout, *split = v->split;
    bool generate = !v->no_generate;
    const cli_patches *list = &v->patches;
    if (!model || !probes)
        return cli_usage_error("eval", "-m MODEL and --probes FILE are required");
    if (heldout && split)
        return cli_usage_error("eval", "give --heldout FILE or --split SPEC, not both");
    if (v->random_baseline && list->n != 1)
        return cli_usage_error("eval", "--random-baseline compares one patch (-p) with random "
                               "ones");
    /* generation is judged anyway; its gap is seq_logprob */
    xp_metric metric = v->metric == XP_METRIC_GENERATION ? XP_METRIC_SEQ_LOGPROB : v->metric;
    xp_err err = {0};
    xp_probe_split how;
    if (split && xp_probe_split_parse(split, &how, &err))
        return cli_usage_error("eval", "%s", err.msg);
    xp_model *m = NULL;
    int rc = cli_open_model(model, v->kernel, &m);
    if (rc)
        return rc;
    struct {
        const char *split;
        xp_probe_set *s;
        xp_probe_tokens *pt;
        xp_eval e;
    } sets[2] = {{"train", NULL, NULL, {0}}, {"heldout", NULL, NULL, {0}}};
    size_t n_sets = heldout || split ? 2 : 1;
    rc = xp_probe_set_load(&sets[0].s, probes, &err);
    size_t rep = 0, n_rep = !rc && split ? xp_probe_set_repeats(sets[0].s, &rep) : 0;
    if (n_rep)
        rc = xp_err_set(&err, XP_EINVAL, "%s: %zu probes repeat an earlier prompt (the first: "
                        "\"%s\"), so a split could put one item on both sides; remove the "
                        "repeats or give --heldout FILE", probes, n_rep,
                        sets[0].s->probes[rep].name);
    if (!rc && split) {
        xp_probe_set *whole = sets[0].s;
        rc = xp_probe_set_split(whole, &how, &sets[0].s, &sets[1].s, &err);
        if (rc)
            sets[0].s = NULL;
        xp_probe_set_free(whole);
    } else if (!rc && heldout) {
        rc = xp_probe_set_load(&sets[1].s, heldout, &err);
    }
    if (!rc && generate && v->max_tokens >= xp_model_shape(m)->n_ctx)
        cli_note("--max-tokens %zu: the model's context holds %u tokens, the prompt included: "
                 "an answer stops where it fills the context",
                 v->max_tokens, xp_model_shape(m)->n_ctx);
    for (size_t k = 0; !rc && k < n_sets; k++) {
        if (v->max_tokens)
            sets[k].s->max_tokens = v->max_tokens;
        if (!(rc = xp_probe_set_check_metric(sets[k].s, metric, &err)) &&
            !(rc = xp_probe_tokenize(sets[k].s, xp_model_tokenizer(m), &sets[k].pt, &err)))
            rc = xp_probe_tokens_token_rule(sets[k].s, xp_model_tokenizer(m), v->token_rule,
                                            sets[k].pt, &err);
    }
    double t0 = cli_now();
    cli_progress bar;
    xp_eval_opts eo = {metric, generate, 0, cli_progress_update, &bar};
    for (size_t k = 0; !rc && k < n_sets; k++) {
        char label[64];
        snprintf(label, sizeof label, "eval %s", sets[k].split);
        cli_progress_start(&bar, label);
        rc = xp_eval_run(m, sets[k].s, sets[k].pt, list->p, list->n, &eo, &sets[k].e, &err);
        cli_progress_end(&bar);
    }
    xp_random_baseline rb = {0};
    size_t judged = n_sets - 1;
    if (!rc && v->random_baseline) {
        cli_progress_start(&bar, "random patches");
        if (!(rc = xp_patch_bind(list->p[0], xp_model_gguf(m), &err)))
            rc = xp_random_baseline_run(m, sets[judged].s, sets[judged].pt, list->p[0], &eo,
                                        v->random_baseline, v->given[CLI_O_SEED] ? v->seed : 1,
                                        &rb, &err);
        cli_progress_end(&bar);
    }
    xp_eval_report_set done[2];
    for (size_t k = 0; k < n_sets; k++)
        done[k] = (xp_eval_report_set){sets[k].split, sets[k].s, &sets[k].e};
    xp_eval_report report = {model,   list->p, list->n, metric, generate, v->per_probe, done,
                             n_sets, v->random_baseline ? &rb : NULL};
    if (!rc && v->json)
        cli_print_json(xp_eval_report_json(&report));
    else if (!rc)
        xp_eval_report_print(stdout, &report);
    xp_random_baseline_free(&rb);
    if (!rc)
        cli_note("evaluated in %.1f s", cli_now() - t0);
    for (size_t k = 0; k < 2; k++) {
        xp_eval_free(&sets[k].e);
        xp_probe_tokens_free(sets[k].pt, sets[k].s ? sets[k].s->n : 0);
        xp_probe_set_free(sets[k].s);
    }
    xp_model_close(m);
    return rc ? cli_fail(&err) : EXIT_OK;
}
