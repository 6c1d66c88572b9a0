/* `xorpatch eval`: an honest before/after report of patches on probe sets — per probe
 * the gap and greedy output without and with the patches and whether it was fixed,
 * broke, stayed right or stayed wrong; the same per category; accuracies with Wilson
 * intervals, the exact McNemar test and the paired difference; the verbatim cross-table;
 * on the training probes and on held-out ones (a second file or a split). */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cmd_patch_util.h"
#include "cli/cmd_probe_util.h"

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
    "                       VALUE* matches a prefix) or ratio:R[:SEED] (a seeded fraction)\n"
    "  -p, --patch PATH     a patch file in any format or a Neagari patch directory;\n"
    "                       repeat to stack several\n"
    "  --metric NAME        gaps as seq_logprob (default) or token_gap (legacy)\n"
    "  --no-generate        judge by gap sign only (fast, no generation)\n"
    "  --max-tokens N       generation limit (default: the set's)\n"
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
    "  --kernel NAME        fast-path kernel: avx512, avx2 or portable (default: best)\n"
    "  -t, --threads N      threads (default: all cores)\n"
    "  -q, --quiet          nothing on stderr but errors\n"
    "  -h, --help           this text\n";

typedef struct eval_set {
    const char *split;
    xp_probe_set *s;
    xp_probe_tokens *pt;
    xp_eval e;
} eval_set;

static const char *const vclasses[4] = {"PASS", "COPY", "PARTIAL", "OTHER"};

/* Categories in order of first appearance; each probe's category index into cat. */
static size_t categories(const xp_probe_set *s, size_t *cat)
{
    size_t n = 0;
    for (size_t i = 0; i < s->n; i++) {
        size_t c = 0;
        while (c < i && strcmp(s->probes[c].category, s->probes[i].category))
            c++;
        cat[i] = c == i ? n++ : cat[c];
    }
    return n;
}

static void tally_category(const eval_set *es, const size_t *cat, size_t c, bool *sel,
                           xp_paired *t)
{
    size_t n = es->s->n;
    bool *b = calloc(2 * n + 1, sizeof *b);
    if (!b) {
        *t = (xp_paired){0};
        return;
    }
    for (size_t i = 0; i < n; i++) {
        sel[i] = cat[i] == c;
        b[i] = es->e.probes[i].right[0];
        b[n + i] = es->e.probes[i].right[1];
    }
    xp_paired_tally(b, b + n, sel, n, t);
    free(b);
}

static cJSON *set_json(const eval_set *es)
{
    const xp_probe_set *s = es->s;
    const xp_eval *e = &es->e;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "split", es->split);
    cJSON_AddStringToObject(o, "file", s->path);
    cJSON_AddNumberToObject(o, "n", (double)s->n);
    cJSON *probes = cJSON_AddArrayToObject(o, "probes");
    for (size_t i = 0; i < s->n; i++) {
        const xp_eval_probe *p = &e->probes[i];
        cJSON *q = cJSON_CreateObject();
        cJSON_AddStringToObject(q, "name", s->probes[i].name);
        cJSON_AddStringToObject(q, "category", s->probes[i].category);
        cJSON_AddStringToObject(q, "role", s->probes[i].role == XP_ROLE_CONTROL ? "control" : "target");
        cJSON *g = cJSON_AddArrayToObject(q, "gap"), *out = cJSON_AddArrayToObject(q, "output");
        cJSON *r = cJSON_AddArrayToObject(q, "right");
        for (int k = 0; k < 2; k++) {
            cJSON_AddItemToArray(g, cJSON_CreateNumber(p->gap[k]));
            cJSON_AddItemToArray(out, p->output[k] ? cJSON_CreateString(p->output[k]) : cJSON_CreateNull());
            cJSON_AddItemToArray(r, cJSON_CreateBool(p->right[k]));
        }
        const char *oc = cli_outcome(p->right[0], p->right[1]);
        char under[16];
        snprintf(under, sizeof under, "%s", oc);
        for (char *c = under; *c; c++)
            *c = *c == ' ' ? '_' : *c;
        cJSON_AddStringToObject(q, "outcome", under);
        if (p->verbatim[0] >= 0) {
            cJSON *v = cJSON_AddArrayToObject(q, "verbatim");
            cJSON_AddItemToArray(v, cJSON_CreateString(vclasses[p->verbatim[0]]));
            cJSON_AddItemToArray(v, cJSON_CreateString(vclasses[p->verbatim[1]]));
        } else {
            cJSON_AddNullToObject(q, "verbatim");
        }
        cJSON_AddItemToArray(probes, q);
    }
    size_t *cat = calloc(s->n, sizeof *cat);
    bool *sel = calloc(s->n, sizeof *sel);
    cJSON *cats = cJSON_AddArrayToObject(o, "categories");
    size_t nc = cat && sel ? categories(s, cat) : 0;
    for (size_t c = 0; c < nc; c++) {
        xp_paired t;
        tally_category(es, cat, c, sel, &t);
        cJSON *j = cli_paired_json(&t);
        size_t first = 0;
        while (cat[first] != c)
            first++;
        cJSON_AddItemToObject(j, "name", cJSON_CreateString(s->probes[first].category));
        cJSON_AddItemToArray(cats, j);
    }
    free(cat), free(sel);
    cJSON_AddItemToObject(o, "summary", cli_paired_json(&e->overall));
    cJSON_AddItemToObject(o, "by_gap", cli_paired_json(&e->by_gap));
    if (s->matcher == XP_MATCH_VERBATIM && e->n && e->probes[0].verbatim[0] >= 0) {
        cJSON *v = cJSON_AddObjectToObject(o, "verbatim");
        cJSON_AddItemToObject(v, "classes", cJSON_CreateStringArray(vclasses, 4));
        cJSON *tab = cJSON_AddArrayToObject(v, "table");
        for (int b = 0; b < 4; b++) {
            cJSON *row = cJSON_CreateArray();
            for (int p = 0; p < 4; p++)
                cJSON_AddItemToArray(row, cJSON_CreateNumber((double)e->verbatim[b][p]));
            cJSON_AddItemToArray(tab, row);
        }
    } else {
        cJSON_AddNullToObject(o, "verbatim");
    }
    return o;
}

static void set_print(const eval_set *es, bool patched, bool generate, bool per_probe)
{
    const xp_probe_set *s = es->s;
    const xp_eval *e = &es->e;
    printf("== %s: %s (%zu probes)\n", es->split, s->path, s->n);
    bool header = false;
    for (size_t i = 0; i < s->n; i++) {
        const xp_eval_probe *p = &e->probes[i];
        bool changed = p->right[0] != p->right[1] || (p->gap[0] > 0) != (p->gap[1] > 0);
        if (!per_probe && !(patched && changed))
            continue;
        if (!header) {
            printf("  %-26s %-16s %19s  %-13s%s\n", "probe", "category",
                   patched ? "gap base → patched" : "gap", "outcome",
                   generate ? (patched ? " output base → patched" : " output") : "");
            header = true;
        }
        char g[48], o0[96], o1[96];
        if (patched)
            snprintf(g, sizeof g, "%8.3f → %8.3f", p->gap[0], p->gap[1]);
        else
            snprintf(g, sizeof g, "%8.3f", p->gap[0]);
        printf("  %-26.26s %-16.16s %19s  %-13s", s->probes[i].name, s->probes[i].category, g,
               patched ? cli_outcome(p->right[0], p->right[1]) : p->right[0] ? "right" : "wrong");
        if (s->matcher == XP_MATCH_VERBATIM && p->verbatim[0] >= 0)
            printf(" %s%s%s", vclasses[p->verbatim[0]], patched ? "→" : "",
                   patched ? vclasses[p->verbatim[1]] : "");
        if (generate) {
            printf(" %s", cli_quote(p->output[0], 24, o0, sizeof o0));
            if (patched)
                printf(" → %s", cli_quote(p->output[1], 24, o1, sizeof o1));
        }
        printf("\n");
    }
    if (!header && patched)
        printf("  no probe changed outcome or gap sign\n");
    size_t *cat = calloc(s->n, sizeof *cat);
    bool *sel = calloc(s->n, sizeof *sel);
    size_t nc = cat && sel ? categories(s, cat) : 0;
    printf("\n  %-26s %5s %6s %6s %8s %8s  %s\n", "category", "n", "fixed", "broke", "st.right",
           "st.wrong", "accuracy base → patched");
    for (size_t c = 0; c < nc; c++) {
        xp_paired t;
        tally_category(es, cat, c, sel, &t);
        size_t first = 0;
        while (cat[first] != c)
            first++;
        const char *name = s->probes[first].category;
        printf("  %-26.26s %5zu %6zu %6zu %8zu %8zu  %5.1f%% → %5.1f%%\n", *name ? name : "(none)",
               t.n, t.fixed, t.broke, t.stayed_right, t.stayed_wrong, 100 * t.acc[0], 100 * t.acc[1]);
    }
    free(cat), free(sel);
    printf("\n  judged by %s\n", generate ? "generation" : "gap sign");
    cli_paired_print(&e->overall, "probes", patched);
    if (generate)
        printf("  gap > 0: base %zu/%zu, patched %zu/%zu (%zu crossed up, %zu down)\n",
               e->by_gap.stayed_right + e->by_gap.broke, e->n,
               e->by_gap.stayed_right + e->by_gap.fixed, e->n, e->by_gap.fixed, e->by_gap.broke);
    if (generate && s->matcher == XP_MATCH_VERBATIM) {
        printf("\n  verbatim: base (rows) x patched (columns)\n  %-8s", "");
        for (int p = 0; p < 4; p++)
            printf(" %8s", vclasses[p]);
        printf("\n");
        for (int b = 0; b < 4; b++) {
            printf("  %-8s", vclasses[b]);
            for (int p = 0; p < 4; p++)
                printf(" %8zu", e->verbatim[b][p]);
            printf("\n");
        }
    }
    printf("\n");
}

static int run(int argc, char **argv)
{
    enum { O_PROBES = 256, O_HELDOUT, O_SPLIT, O_METRIC, O_NOGEN, O_MAXTOK, O_PER, O_JSON,
           O_KERNEL };
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'},      {"probes", required_argument, 0, O_PROBES},
        {"heldout", required_argument, 0, O_HELDOUT}, {"split", required_argument, 0, O_SPLIT},
        {"patch", required_argument, 0, 'p'},      {"metric", required_argument, 0, O_METRIC},
        {"no-generate", no_argument, 0, O_NOGEN},  {"max-tokens", required_argument, 0, O_MAXTOK},
        {"per-probe", no_argument, 0, O_PER},      {"json", no_argument, 0, O_JSON},
        {"kernel", required_argument, 0, O_KERNEL}, {"threads", required_argument, 0, 't'},
        {"quiet", no_argument, 0, 'q'},            {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    const char *model = NULL, *probes = NULL, *heldout = NULL, *split = NULL, *kernel = NULL;
    int metric = XP_METRIC_SEQ_LOGPROB, opt, rc;
    bool generate = true, json = false, per_probe = false;
    long max_tokens = 0;
    cli_patches list = {0};
    xp_err err = {0};
    optind = 1;
    while ((opt = getopt_long(argc, argv, "m:p:t:qh", opts, NULL)) != -1) {
        rc = -1;
        switch (opt) {
        case 'm': model = optarg; break;
        case O_PROBES: probes = optarg; break;
        case O_HELDOUT: heldout = optarg; break;
        case O_SPLIT: split = optarg; break;
        case 'p':
            if (cli_patches_add(&list, optarg, &err))
                rc = cli_fail(&err);
            break;
        case O_METRIC:
            if ((metric = cli_metric("eval", optarg)) < 0)
                rc = EXIT_USAGE;
            break;
        case O_NOGEN: generate = false; break;
        case O_MAXTOK:
            if ((max_tokens = cli_parse_count(optarg)) < 0)
                rc = cli_usage_error("eval", "--max-tokens needs a positive count, not '%s'", optarg);
            break;
        case O_PER: per_probe = true; break;
        case O_JSON: json = true; break;
        case O_KERNEL: kernel = optarg; break;
        case 't': rc = cli_set_threads("eval", optarg); break;
        default: rc = cli_common_option(&cli_eval, opt);
        }
        if (rc >= 0) {
            cli_patches_free(&list);
            return rc;
        }
    }
    rc = -1;
    if (optind < argc)
        rc = cli_usage_error("eval", "unexpected argument '%s'", argv[optind]);
    else if (!model || !probes)
        rc = cli_usage_error("eval", "-m MODEL and --probes FILE are required");
    else if (heldout && split)
        rc = cli_usage_error("eval", "give --heldout FILE or --split SPEC, not both");
    else if (metric == XP_METRIC_GENERATION)
        metric = XP_METRIC_SEQ_LOGPROB; /* generation is judged anyway; its gap is seq_logprob */
    xp_probe_split how;
    if (rc < 0 && split && xp_probe_split_parse(split, &how, &err))
        rc = cli_usage_error("eval", "%s", err.msg);
    xp_model *m = NULL;
    if (rc < 0 && (rc = cli_open_model(model, kernel, &m)) == EXIT_OK)
        rc = -1;
    if (rc >= 0) {
        cli_patches_free(&list);
        return rc;
    }
    eval_set sets[2] = {{"train", NULL, NULL, {0}}, {"heldout", NULL, NULL, {0}}};
    size_t n_sets = heldout || split ? 2 : 1;
    rc = xp_probe_set_load(&sets[0].s, probes, &err);
    if (!rc && split) {
        xp_probe_set *whole = sets[0].s;
        rc = xp_probe_set_split(whole, &how, &sets[0].s, &sets[1].s, &err);
        if (rc)
            sets[0].s = NULL;
        xp_probe_set_free(whole);
    } else if (!rc && heldout) {
        rc = xp_probe_set_load(&sets[1].s, heldout, &err);
    }
    if (!rc && generate && max_tokens >= (long)xp_model_shape(m)->n_ctx)
        cli_note("--max-tokens %ld: the model's context holds %u tokens, the prompt included: "
                 "an answer stops where it fills the context",
                 max_tokens, xp_model_shape(m)->n_ctx);
    for (size_t k = 0; !rc && k < n_sets; k++) {
        if (max_tokens)
            sets[k].s->max_tokens = (size_t)max_tokens;
        rc = xp_probe_tokenize(sets[k].s, xp_model_tokenizer(m), &sets[k].pt, &err);
    }
    double t0 = cli_now();
    cli_progress bar;
    xp_eval_opts eo = {(xp_metric)metric, generate, 0, cli_progress_update, &bar};
    for (size_t k = 0; !rc && k < n_sets; k++) {
        char label[64];
        snprintf(label, sizeof label, "eval %s", sets[k].split);
        cli_progress_start(&bar, label);
        rc = xp_eval_run(m, sets[k].s, sets[k].pt, list.p, list.n, &eo, &sets[k].e, &err);
        cli_progress_end(&bar);
    }
    if (!rc && json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "model", model);
        cJSON *pn = cJSON_AddArrayToObject(o, "patches");
        for (size_t i = 0; i < list.n; i++)
            cJSON_AddItemToArray(pn, cJSON_CreateString(list.p[i]->name ? list.p[i]->name
                                                                        : list.p[i]->path));
        cJSON_AddStringToObject(o, "metric", xp_metric_name((xp_metric)metric));
        cJSON_AddBoolToObject(o, "generate", generate);
        cJSON *arr = cJSON_AddArrayToObject(o, "sets");
        for (size_t k = 0; k < n_sets; k++)
            cJSON_AddItemToArray(arr, set_json(&sets[k]));
        cli_print_json(o);
    } else if (!rc) {
        printf("model %s; ", model);
        if (list.n) {
            printf("patches:");
            for (size_t i = 0; i < list.n; i++)
                printf(" %s", list.p[i]->name ? list.p[i]->name : list.p[i]->path);
        } else {
            printf("no patch (base only)");
        }
        printf("; gaps by %s\n\n", xp_metric_name((xp_metric)metric));
        for (size_t k = 0; k < n_sets; k++)
            set_print(&sets[k], list.n > 0, generate, per_probe || !list.n);
    }
    if (!rc)
        cli_note("evaluated in %.1f s", cli_now() - t0);
    for (size_t k = 0; k < 2; k++) {
        xp_eval_free(&sets[k].e);
        xp_probe_tokens_free(sets[k].pt, sets[k].s ? sets[k].s->n : 0);
        xp_probe_set_free(sets[k].s);
    }
    cli_patches_free(&list);
    xp_model_close(m);
    return rc ? cli_fail(&err) : EXIT_OK;
}

const cli_command cli_eval = {"eval", "probes without and with patches: fixed/broke, Wilson, "
                              "McNemar", usage, run};
