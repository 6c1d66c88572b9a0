/* Probes: every fixture file loads with its roles and generation rules, malformed files
 * are refused naming the probe and the field, continuations are tokenised in context,
 * the legacy token_gap rule kills the multi-token probes that seq_logprob separates,
 * batched gaps equal gaps measured alone and by hand, batched generation equals
 * xp_generate, and the math / verbatim matchers follow SPEC §2 on hand-made cases. */
#include <glob.h>
#include <cjson/cJSON.h>
#include <math.h>
#include <string.h>

#include "testutil.h"
#include "xorpatch.h"

static xp_probe_set *parse(const char *json, xp_err *err)
{
    xp_probe_set *s = NULL;
    int rc = xp_probe_set_parse(&s, json, strlen(json), "mem.json", err);
    cr_assert(rc == XP_OK || s == NULL);
    return s;
}

static const struct fixture {
    const char *rel;
    size_t n, controls;
    int format, matcher;
    const char *domain;
} fixtures[] = {
    {"fixtures/probes/bankai/calculus_train.json", 60, 0, XP_PROBES_BANKAI, XP_MATCH_MATH,
     "calculus_train"},
    {"fixtures/probes/bankai/calculus_heldout.json", 30, 0, XP_PROBES_BANKAI, XP_MATCH_MATH,
     "calculus_heldout"},
    {"fixtures/probes/neagari/probes_coding.json", 50, 10, XP_PROBES_NEAGARI, XP_MATCH_PREFIX,
     "coding"},
    {"fixtures/probes/neagari/probes_editing.json", 48, 10, XP_PROBES_NEAGARI, XP_MATCH_PREFIX,
     "editing"},
    {"fixtures/probes/neagari/probes_instruction.json", 45, 5, XP_PROBES_NEAGARI,
     XP_MATCH_PREFIX, "instruction"},
    {"fixtures/probes/neagari/probes_math_gsm8k.json", 50, 10, XP_PROBES_NEAGARI, XP_MATCH_MATH,
     "math"},
    {"fixtures/probes/neagari/probes_verbatim_heldout.json", 100, 0, XP_PROBES_VERBATIM,
     XP_MATCH_VERBATIM, "probes_verbatim_heldout"},
};
#define N_FIXTURES (sizeof fixtures / sizeof fixtures[0])

Test(probe, every_fixture_file_loads_with_roles_and_rules)
{
    XP_NEED_SHARED(shared);
    for (size_t f = 0; f < N_FIXTURES; f++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", shared, fixtures[f].rel);
        xp_probe_set *s;
        xp_err err = {0};
        cr_assert_eq(xp_probe_set_load(&s, path, &err), XP_OK, "%s", err.msg);
        cr_expect_eq(s->n, fixtures[f].n, "%s: %zu probes", fixtures[f].rel, s->n);
        size_t controls = 0;
        for (size_t i = 0; i < s->n; i++)
            controls += s->probes[i].role == XP_ROLE_CONTROL;
        cr_expect_eq(controls, fixtures[f].controls, "%s", fixtures[f].rel);
        cr_expect_eq(s->format, fixtures[f].format, "%s", fixtures[f].rel);
        cr_expect_eq(s->matcher, fixtures[f].matcher, "%s", fixtures[f].rel);
        cr_expect_str_eq(s->domain, fixtures[f].domain);
        cr_expect_eq(s->search_config != NULL, s->format == XP_PROBES_NEAGARI);
        cr_expect_eq(s->stop_newline, s->format != XP_PROBES_VERBATIM);
        xp_probe_set_free(s);
    }
    /* field by field on one probe of each format */
    char path[4096];
    xp_probe_set *s;
    xp_err err = {0};
    snprintf(path, sizeof path, "%s/%s", shared, fixtures[2].rel);
    cr_assert_eq(xp_probe_set_load(&s, path, &err), XP_OK);
    cr_expect_str_eq(s->probes[0].name, "mbpp_222_2");
    cr_expect_str_eq(s->probes[0].correct, " (");
    cr_expect_eq(s->probes[0].base_id[0], 320);
    cr_expect_eq(s->probes[0].base_id[1], 592);
    cr_expect_str_eq(s->probes[40].name, "he_HumanEval_3_2");
    cr_expect_eq(s->probes[40].role, XP_ROLE_CONTROL);
    cr_expect(strstr(s->search_config, "\"lambda_control\":2"), "%s", s->search_config);
    xp_probe_set_free(s);
    snprintf(path, sizeof path, "%s/%s", shared, fixtures[6].rel);
    cr_assert_eq(xp_probe_set_load(&s, path, &err), XP_OK);
    cr_expect(s->probes[0].chat);
    cr_expect_str_eq(s->probes[0].correct, "This");
    cr_expect_str_eq(s->probes[0].category, "legal");
    cr_expect(!strncmp(s->probes[0].system, "Extract the exact sentence", 26));
    cr_expect_str_eq(s->probes[0].target_span,
                     "This product is sold as-is with no express or implied warranties.");
    cr_expect_eq(s->probes[0].base_id[0], -1);
    xp_probe_set_free(s);
    snprintf(path, sizeof path, "%s/%s", shared, fixtures[1].rel);
    cr_assert_eq(xp_probe_set_load(&s, path, &err), XP_OK);
    size_t with_alt = 0;
    for (size_t i = 0; i < s->n; i++)
        with_alt += s->probes[i].n_alternates > 0;
    cr_expect_eq(with_alt, 5);
    xp_probe_set_free(s);
}

/* Whatever else lands in the fixture folder loads too, and is one of the sets above. */
Test(probe, every_file_in_the_fixture_folder_loads)
{
    XP_NEED_SHARED(shared);
    char pattern[4096];
    snprintf(pattern, sizeof pattern, "%s/fixtures/probes/*/*.json", shared);
    glob_t g;
    cr_assert_eq(glob(pattern, 0, NULL, &g), 0, "no probe files under %s", pattern);
    cr_expect_eq(g.gl_pathc, N_FIXTURES);
    for (size_t i = 0; i < g.gl_pathc; i++) {
        xp_probe_set *s;
        xp_err err = {0};
        cr_expect_eq(xp_probe_set_load(&s, g.gl_pathv[i], &err), XP_OK, "%s", err.msg);
        xp_probe_set_free(s);
    }
    globfree(&g);
}

Test(probe, older_bankai_keys_and_alternates)
{
    xp_err err = {0};
    xp_probe_set *s = parse("[{\"prompt\":\"2+2=\",\"correct_token\":\" 4\",\"wrong_token\":\" 5\","
                            "\"name\":\"a\",\"alternates\":[\" four\"]}]", &err);
    cr_assert(s, "%s", err.msg);
    cr_expect_str_eq(s->probes[0].correct, " 4");
    cr_expect_str_eq(s->probes[0].wrong, " 5");
    cr_expect_eq(s->probes[0].n_alternates, 1);
    cr_expect_str_eq(s->probes[0].alternates[0], " four");
    cr_expect_str_eq(s->probes[0].category, "");
    cr_expect(!s->probes[0].chat);
    xp_probe_set_free(s);
}

Test(probe, malformed_files_name_the_probe_and_the_field)
{
    struct { const char *json, *msg; } cases[] = {
        {"[{\"prompt\":\"p\",\"correct\":\" 1\",\"wrong\":\"\",\"name\":\"n1\"}]",
         "mem.json: probe \"n1\" (probes[0]): field \"wrong\" is empty"},
        {"[{\"prompt\":\"p\",\"correct\":\" 1\",\"wrong\":\" 2\",\"name\":\"a\"},"
         "{\"prompt\":\"p\",\"correct\":1,\"wrong\":\" 2\",\"name\":\"b\"}]",
         "probe \"b\" (probes[1]): field \"correct\" must be a string"},
        {"[{\"correct\":\" 1\",\"wrong\":\" 2\"}]", "probe probes[0]: field \"prompt\" is missing"},
        {"{\"probes\":{\"target\":[{\"prompt\":\"p\",\"correct\":\"a\",\"wrong\":\"b\",\"name\":\"t\","
         "\"base_correct_id\":-3}]}}",
         "probe \"t\" (probes.target[0]): field \"base_correct_id\" must be a token id"},
        {"{\"probes\":{\"target\":[],\"promoted_controls\":[{\"prompt\":\"p\",\"correct\":\"a\","
         "\"wrong\":\"a\",\"name\":\"c\"}]}}",
         "probe \"c\" (probes.promoted_controls[0]): field \"wrong\" equals the correct answer"},
        {"{\"probes\":[{\"name\":\"v\",\"prompt\":\"p\",\"correct_token\":\"a\",\"wrong_token\":\"b\","
         "\"passage\":\"x\"}]}", "probe \"v\" (probes[0]): field \"target_span\" is missing"},
        {"[{\"prompt\":\"p\",\"correct\":\"a\",\"wrong\":\"b\",\"name\":\"x\",\"alternates\":[1]}]",
         "probe \"x\" (probes[0]): field \"alternates\" item 0 must be a string"},
        {"{\"domain\":\"d\"}", "field \"probes\" is missing"},
        {"{\"probes\":{\"controls\":[]}}", "field \"probes.target\" is missing"},
        {"[]", "holds no probes"},
        {"[{\"prompt\":", "not valid JSON"},
        {"42", "a probe file is a JSON array"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        xp_err err = {0};
        xp_probe_set *s = parse(cases[i].json, &err);
        cr_expect_null(s, "case %zu loaded", i);
        cr_expect_eq(err.code, XP_EFORMAT, "case %zu", i);
        cr_expect(strstr(err.msg, cases[i].msg), "case %zu: %s", i, err.msg);
        xp_probe_set_free(s);
    }
    xp_err err = {0};
    xp_probe_set *s;
    cr_expect_eq(xp_probe_set_load(&s, "/nonexistent/probes.json", &err), XP_EIO);
    cr_expect(strstr(err.msg, "/nonexistent/probes.json"), "%s", err.msg);
}

Test(probe, continuations_are_tokenised_in_context)
{
    xp_model *m = xp_test_open_tiny();
    const xp_tokenizer *t = xp_model_tokenizer(m);
    xp_err err = {0};
    /* digits are single tokens after a lone space: " 20" and " 0" share their first id */
    xp_probe_set *s = parse("[{\"prompt\":\"10 + 10 =\",\"correct\":\" 20\",\"wrong\":\" 0\",\"name\":\"d\"},"
                            "{\"prompt\":\"x\",\"correct\":\"</think>\",\"wrong\":\"The\",\"name\":\"s\"},"
                            "{\"prompt\":\"x\",\"correct\":\"a\",\"wrong\":\"b\",\"name\":\"ids\","
                            "\"base_correct_id\":64,\"base_wrong_id\":65}]", &err);
    cr_assert(s, "%s", err.msg);
    xp_probe_tokens *pt;
    cr_assert_eq(xp_probe_tokenize(s, t, &pt, &err), XP_OK, "%s", err.msg);
    int32_t *ids;
    size_t n;
    cr_assert_eq(xp_tokenize(t, "10 + 10 = 20", 12, false, &ids, &n, &err), XP_OK);
    cr_assert_eq(n, pt[0].n_prompt + pt[0].n_answer[0]);
    cr_expect(!memcmp(ids + pt[0].n_prompt, pt[0].answer[0], pt[0].n_answer[0] * sizeof *ids));
    free(ids);
    cr_expect_eq(pt[0].n_answer[0], 3); /* " ", "2", "0" */
    cr_expect_eq(pt[0].n_answer[1], 2);
    cr_expect_eq(pt[0].gap_id[0], pt[0].gap_id[1]);
    cr_expect(xp_probe_dead(&pt[0], XP_METRIC_TOKEN_GAP));
    cr_expect(!xp_probe_dead(&pt[0], XP_METRIC_SEQ_LOGPROB));
    /* the special token's text is the special token */
    cr_expect_eq(pt[1].n_answer[0], 1);
    cr_expect_eq(pt[1].answer[0][0], 151668);
    /* stored ids are the token_gap ids */
    cr_expect_eq(pt[2].gap_id[0], 64);
    cr_expect_eq(pt[2].gap_id[1], 65);
    xp_probe_tokens_free(pt, s->n);
    xp_probe_set_free(s);
    /* an id outside the vocabulary is refused naming the probe and field */
    s = parse("[{\"prompt\":\"x\",\"correct\":\"a\",\"wrong\":\"b\",\"name\":\"big\","
              "\"base_correct_id\":999999,\"base_wrong_id\":1}]", &err);
    cr_assert(s);
    cr_expect_eq(xp_probe_tokenize(s, t, &pt, &err), XP_EFORMAT);
    cr_expect(strstr(err.msg, "probe \"big\": field \"base_correct_id\": id 999999"), "%s", err.msg);
    xp_probe_set_free(s);
    xp_model_close(m);
}

/* Dead probes of the fixture sets under the legacy rule: found, and separated by
 * seq_logprob (whose only dead probes would be identical continuations: none). */
Test(probe, token_gap_kills_fixture_probes_that_seq_logprob_separates)
{
    XP_NEED_SHARED(shared);
    xp_model *m = xp_test_open_tiny();
    size_t total_dead = 0;
    /* expected token_gap dead counts per fixture, from the tokenizer */
    const size_t want[N_FIXTURES] = {38, 18, 0, 0, 0, 0, 0};
    for (size_t f = 0; f < N_FIXTURES; f++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", shared, fixtures[f].rel);
        xp_probe_set *s;
        xp_err err = {0};
        cr_assert_eq(xp_probe_set_load(&s, path, &err), XP_OK, "%s", err.msg);
        xp_probe_tokens *pt;
        cr_assert_eq(xp_probe_tokenize(s, xp_model_tokenizer(m), &pt, &err), XP_OK, "%s", err.msg);
        size_t dead = 0, dead_seq = 0;
        for (size_t i = 0; i < s->n; i++) {
            dead += xp_probe_dead(&pt[i], XP_METRIC_TOKEN_GAP);
            dead_seq += xp_probe_dead(&pt[i], XP_METRIC_SEQ_LOGPROB);
        }
        cr_expect_eq(dead, want[f], "%s: %zu dead under token_gap", fixtures[f].rel, dead);
        cr_expect_eq(dead_seq, 0, "%s: %zu dead under seq_logprob", fixtures[f].rel, dead_seq);
        total_dead += dead;
        xp_probe_tokens_free(pt, s->n);
        xp_probe_set_free(s);
    }
    cr_expect_eq(total_dead, 56);
    xp_model_close(m);
}

/* token_gap's one token: the first of the continuation in context (the default) or, as
 * Bankai measured, the last of the answer encoded alone; a file's stored ids either way. */
Test(probe, token_rule_first_or_last_sub_token)
{
    xp_model *m = xp_test_open_tiny();
    const xp_tokenizer *t = xp_model_tokenizer(m);
    xp_err err = {0};
    xp_probe_set *s = parse("[{\"prompt\":\"d/dx [x^3] =\",\"correct\":\" 3x^2\",\"wrong\":\" 3x^3\","
                            "\"name\":\"d\"},"
                            "{\"prompt\":\"x\",\"correct\":\"a\",\"wrong\":\"b\",\"name\":\"ids\","
                            "\"base_correct_id\":64,\"base_wrong_id\":65}]", &err);
    cr_assert(s, "%s", err.msg);
    xp_probe_tokens *pt;
    cr_assert_eq(xp_probe_tokenize(s, t, &pt, &err), XP_OK, "%s", err.msg);
    int32_t first[2] = {pt[0].gap_id[0], pt[0].gap_id[1]};
    cr_expect_eq(first[0], first[1], "both continue with \" \" (or \" 3\"): dead");
    cr_assert_eq(xp_probe_tokens_token_rule(s, t, XP_TOKEN_RULE_LAST, pt, &err), XP_OK);
    for (int a = 0; a < 2; a++) {
        int32_t *ids;
        size_t n;
        const char *text = a ? " 3x^3" : " 3x^2";
        cr_assert_eq(xp_tokenize(t, text, strlen(text), false, &ids, &n, &err), XP_OK);
        cr_expect_eq(pt[0].gap_id[a], ids[n - 1], "the last sub-token of %s alone", text);
        free(ids);
    }
    cr_expect_neq(pt[0].gap_id[0], pt[0].gap_id[1], "\"2\" against \"3\": alive");
    cr_expect(!xp_probe_dead(&pt[0], XP_METRIC_TOKEN_GAP));
    cr_expect(pt[1].gap_id[0] == 64 && pt[1].gap_id[1] == 65, "stored ids are kept");
    cr_assert_eq(xp_probe_tokens_token_rule(s, t, XP_TOKEN_RULE_FIRST, pt, &err), XP_OK);
    cr_expect(pt[0].gap_id[0] == first[0] && pt[0].gap_id[1] == first[1], "first: as tokenised");
    cr_expect_eq(xp_token_rule_from_name("last"), XP_TOKEN_RULE_LAST);
    cr_expect_eq(xp_token_rule_from_name("middle"), -1);
    xp_probe_tokens_free(pt, s->n);
    xp_probe_set_free(s);
    xp_model_close(m);
}

/* Bankai's calculus files: dead probes under each rule (on this tokenizer, Qwen3's). */
Test(probe, token_rule_dead_counts_on_bankai_calculus)
{
    XP_NEED_SHARED(shared);
    xp_model *m = xp_test_open_tiny();
    const size_t want[2][2] = {{38, 18}, {17, 9}}; /* [rule][train, heldout] */
    for (int rule = 0; rule < 2; rule++)
        for (size_t f = 0; f < 2; f++) {
            char path[4096];
            snprintf(path, sizeof path, "%s/%s", shared, fixtures[f].rel);
            xp_probe_set *s;
            xp_err err = {0};
            cr_assert_eq(xp_probe_set_load(&s, path, &err), XP_OK, "%s", err.msg);
            xp_probe_tokens *pt;
            cr_assert_eq(xp_probe_tokenize(s, xp_model_tokenizer(m), &pt, &err), XP_OK);
            cr_assert_eq(xp_probe_tokens_token_rule(s, xp_model_tokenizer(m), rule, pt, &err),
                         XP_OK);
            size_t dead = 0;
            for (size_t i = 0; i < s->n; i++)
                dead += xp_probe_dead(&pt[i], XP_METRIC_TOKEN_GAP);
            cr_expect_eq(dead, want[rule][f], "%s, rule %s: %zu dead", fixtures[f].rel,
                         xp_token_rule_name(rule), dead);
            xp_probe_tokens_free(pt, s->n);
            xp_probe_set_free(s);
        }
    xp_model_close(m);
    /* audit --token-rule counts the same */
    char model[512], cmd[6000], *o = NULL, *e = NULL;
    xp_test_tiny_model(model, sizeof model);
    snprintf(cmd, sizeof cmd, "%s audit -m '%s' --probes '%s/%s' --metric token_gap "
             "--token-rule last --no-generate --json", xp_test_bin(), model, shared,
             fixtures[0].rel);
    cr_assert_eq(xp_test_run(cmd, NULL, &o, &e), 0, "%s", e);
    cJSON *j = cJSON_Parse(o);
    size_t dead = 0;
    const cJSON *p;
    cJSON_ArrayForEach(p, cJSON_GetObjectItem(j, "probes"))
        dead += cJSON_IsTrue(cJSON_GetObjectItem(p, "dead"));
    cr_expect_eq(dead, 17);
    cJSON_Delete(j);
    free(o), free(e);
}

static const char small_set[] =
    "[{\"prompt\":\"d/dx [x^4 + 3x^2] =\",\"correct\":\" 4x^3 + 6x\",\"wrong\":\" 4x^3 + 3x\","
    "\"name\":\"pd\",\"category\":\"poly\"},"
    "{\"prompt\":\"Is 97 prime?\",\"correct\":\" Yes\",\"wrong\":\" No\",\"name\":\"pr\","
    "\"category\":\"prime\"},"
    "{\"prompt\":\"10 + 10 =\",\"correct\":\" 20\",\"wrong\":\" 0\",\"name\":\"add\","
    "\"category\":\"prime\"},"
    "{\"prompt\":\"The capital of France is\",\"correct\":\" Paris\",\"wrong\":\" Lyon\","
    "\"name\":\"cap\",\"category\":\"prime\"}]";

/* Σ log p(answer a) from full rows, in double: the definition, for comparison. */
static double full_logprob(const xp_probe_tokens *pt, int a, const float *last,
                           const float *rows, size_t V)
{
    double lp = 0;
    for (size_t i = 0; i < pt->n_answer[a]; i++) {
        const float *r = i == 0 ? last : rows + (i - 1) * V;
        double mx = r[0], sum = 0;
        for (size_t v = 1; v < V; v++)
            mx = r[v] > mx ? r[v] : mx;
        for (size_t v = 0; v < V; v++)
            sum += exp(r[v] - mx);
        lp += r[pt->answer[a][i]] - mx - log(sum);
    }
    return lp;
}

/* seq_logprob by hand from full forward passes of prompt + answer, in double */
static double logprob_by_hand(xp_model *m, const xp_probe_tokens *pt, int a)
{
    size_t V = xp_model_shape(m)->n_vocab, n = pt->n_prompt + pt->n_answer[a];
    int32_t *tok = malloc(n * sizeof *tok);
    memcpy(tok, pt->prompt, pt->n_prompt * sizeof *tok);
    memcpy(tok + pt->n_prompt, pt->answer[a], pt->n_answer[a] * sizeof *tok);
    uint8_t *want = calloc(n, 1);
    memset(want + pt->n_prompt - 1, 1, pt->n_answer[a]);
    float *logits = malloc(pt->n_answer[a] * V * sizeof *logits);
    xp_seq s = {NULL, tok, n - 0, want};
    xp_err err = {0};
    cr_assert_eq(xp_forward(m, XP_PATH_FAST, &s, 1, logits, &err), XP_OK, "%s", err.msg);
    double lp = full_logprob(pt, a, logits, logits + V, V);
    free(tok), free(want), free(logits);
    return lp;
}

Test(probe, batched_gaps_equal_gaps_alone_and_by_hand)
{
    xp_model *m = xp_test_open_tiny();
    xp_err err = {0};
    xp_probe_set *s = parse(small_set, &err);
    cr_assert(s, "%s", err.msg);
    xp_probe_tokens *pt;
    cr_assert_eq(xp_probe_tokenize(s, xp_model_tokenizer(m), &pt, &err), XP_OK);
    for (int metric = XP_METRIC_SEQ_LOGPROB; metric <= XP_METRIC_TOKEN_GAP; metric++) {
        double all[4], one;
        cr_assert_eq(xp_probe_gaps(m, pt, 4, (xp_metric)metric, all, &err), XP_OK, "%s", err.msg);
        for (size_t i = 0; i < 4; i++) {
            cr_assert_eq(xp_probe_gaps(m, &pt[i], 1, (xp_metric)metric, &one, &err), XP_OK);
            cr_expect(one == all[i], "probe %zu metric %d: batched %.17g alone %.17g", i, metric,
                      all[i], one);
        }
        if (metric == XP_METRIC_SEQ_LOGPROB)
            for (size_t i = 0; i < 4; i++) {
                double hand = logprob_by_hand(m, &pt[i], 0) - logprob_by_hand(m, &pt[i], 1);
                /* the log-sum-exp is computed in float steps: float precision, not double */
                cr_expect(fabs(hand - all[i]) < 1e-5, "probe %zu: %.17g vs %.17g", i, all[i], hand);
            }
        else
            cr_expect_eq(all[2], 0.0, "the dead probe's token gap is identically 0");
    }
    /* scores: emitted is the argmax, ranks are 1-based, dead has no rank */
    xp_probe_score sc[4];
    cr_assert_eq(xp_probe_scores(m, pt, 4, XP_METRIC_TOKEN_GAP, sc, &err), XP_OK);
    cr_expect_eq(sc[2].distractor_rank, 0);
    cr_expect(sc[1].distractor_rank >= 1 && sc[1].distractor_rank <= 151669);
    size_t V = xp_model_shape(m)->n_vocab;
    float *row = malloc(V * sizeof *row);
    xp_seq q = {NULL, pt[1].prompt, pt[1].n_prompt, NULL};
    cr_assert_eq(xp_forward(m, XP_PATH_FAST, &q, 1, row, &err), XP_OK);
    size_t above = 0;
    for (size_t v = 0; v < V; v++)
        above += row[v] > row[pt[1].gap_id[1]];
    cr_expect_eq(sc[1].distractor_rank, above + 1);
    cr_expect(row[sc[1].emitted] >= row[0] && row[sc[1].emitted] >= row[pt[1].gap_id[0]]);
    double direct = (double)row[pt[1].gap_id[0]] - (double)row[pt[1].gap_id[1]];
    cr_expect_eq(sc[1].gap, direct);
    free(row);
    xp_probe_tokens_free(pt, s->n);
    xp_probe_set_free(s);
    xp_model_close(m);
}

Test(probe, seq_logprob_gap_reads_nothing_of_the_answers_shared_start)
{
    /* answers 5 7 1 2 and 5 7 3: they part at token 2 */
    enum { V = 50 };
    int32_t a0[] = {5, 7, 1, 2}, a1[] = {5, 7, 3}, prompt[] = {9};
    xp_probe_tokens pt = {prompt, 1, {a0, a1}, {4, 3}, {5, 5}};
    cr_assert_eq(xp_probe_shared(&pt), 2);
    float last[V], rows0[3 * V], rows1[2 * V];
    for (int v = 0; v < V; v++) {
        last[v] = (float)((v * 37) % 11) * 0.3f;
        for (int i = 0; i < 3; i++)
            rows0[i * V + v] = (float)((v * 13 + i * 7) % 17) * 0.2f - 1.0f;
        for (int i = 0; i < 2; i++) /* the same context as answer 0's up to the parting */
            rows1[i * V + v] = rows0[i * V + v];
    }
    const float *rows[2] = {rows0, rows1};
    double g = xp_probe_gap(&pt, XP_METRIC_SEQ_LOGPROB, last, rows, V);
    double def = full_logprob(&pt, 0, last, rows0, V) - full_logprob(&pt, 1, last, rows1, V);
    cr_expect(fabs(g - def) < 1e-5, "gap %.17g, definition %.17g", g, def);
    /* the shared start's rows, and the parting row but its two logits, are not read */
    float nan_last[V], nan0[3 * V], nan1[2 * V];
    memcpy(nan0, rows0, sizeof nan0);
    memcpy(nan1, rows1, sizeof nan1);
    for (int v = 0; v < V; v++) {
        nan_last[v] = NAN;
        nan0[v] = nan1[v] = NAN; /* row 0 predicts token 1, shared */
        if (v != 1 && v != 3)
            nan0[V + v] = nan1[V + v] = NAN; /* the parting row: only ids 1 and 3 */
    }
    const float *nan_rows[2] = {nan0, nan1};
    cr_expect_eq(xp_probe_gap(&pt, XP_METRIC_SEQ_LOGPROB, nan_last, nan_rows, V), g);
    /* xp_probe_gap_parts: the same from the two parting logits and the later rows */
    float first[2] = {rows0[V + 1], rows0[V + 3]};
    const float *own[2] = {rows0 + 2 * V, NULL};
    cr_expect_eq(xp_probe_gap_parts(&pt, XP_METRIC_SEQ_LOGPROB, first, own, V), g);
}

Test(probe, batched_generation_equals_generate_alone)
{
    xp_model *m = xp_test_open_tiny();
    xp_err err = {0};
    xp_probe_set *s = parse(small_set, &err);
    cr_assert(s);
    xp_probe_tokens *pt;
    cr_assert_eq(xp_probe_tokenize(s, xp_model_tokenizer(m), &pt, &err), XP_OK);
    for (int nl = 0; nl < 2; nl++) {
        const int32_t *prompts[4];
        size_t lens[4];
        for (size_t i = 0; i < 4; i++)
            prompts[i] = pt[i].prompt, lens[i] = pt[i].n_prompt;
        char *texts[4];
        xp_batch_gen_opts o = {12, nl == 1, NULL, NULL};
        cr_assert_eq(xp_generate_batch(m, prompts, lens, 4, &o, texts, &err), XP_OK, "%s", err.msg);
        for (size_t i = 0; i < 4; i++) {
            const char *stops[] = {"\n", NULL};
            xp_gen_opts g = {.sampler = {0, 0, 1, 0}, .max_tokens = 12, .path = XP_PATH_FAST,
                             .stop_at_eos = true, .stop_strings = nl ? stops : NULL};
            int32_t *ids;
            size_t n;
            cr_assert_eq(xp_generate(m, pt[i].prompt, pt[i].n_prompt, &g, &ids, &n, &err), XP_OK);
            char *text;
            size_t len;
            cr_assert_eq(xp_detokenize(xp_model_tokenizer(m), ids, n, &text, &len, &err), XP_OK);
            char *cut = nl ? strchr(text, '\n') : NULL;
            if (cut)
                *cut = '\0';
            cr_expect_str_eq(texts[i], text, "probe %zu newline-stop %d", i, nl);
            free(text), free(ids), free(texts[i]);
        }
    }
    xp_probe_tokens_free(pt, s->n);
    xp_probe_set_free(s);
    xp_model_close(m);
}

Test(probe, math_matcher_follows_the_spec)
{
    const char *alt[] = {"4x^3+6x^1"};
    cr_expect(xp_math_match(" 4x^3 + 6x", " 4x^3 + 6x", NULL, 0));
    cr_expect(xp_math_match("4X^3+6X, so the answer", " 4x^3 + 6x", NULL, 0), "case, spaces, then a comma");
    cr_expect(xp_math_match("4x^3 + 6x + C", " 4x^3 + 6x", NULL, 0), "+c is allowed");
    cr_expect(!xp_math_match("4x^3 + 6x^2", " 4x^3 + 6x", NULL, 0), "^ continues the expression");
    cr_expect(!xp_math_match("4x^3 + 6x + 1", " 4x^3 + 6x", NULL, 0), "+ continues it");
    cr_expect(!xp_math_match("4x^3 + 6xy", " 4x^3 + 6x", NULL, 0), "a letter continues it");
    cr_expect(!xp_math_match(" 20", " 2", NULL, 0), "a digit continues it");
    cr_expect(xp_math_match("4x^3+6x^1.", " 4x^3 + 6x", alt, 1), "an alternate");
    cr_expect(xp_math_match("(1/2)√x", " 1/2 sqrt(x)", NULL, 0), "brackets dropped, √ is sqrt");
    cr_expect(xp_math_match("[7x^6 + 1]", "7x^6+1", NULL, 0));
    cr_expect(!xp_math_match("", " 4", NULL, 0));
    cr_expect(!xp_math_match("No", " Yes", NULL, 0));
    cr_expect(xp_math_match(" Yes, 97 is prime", " Yes", NULL, 0));
    cr_expect(xp_prefix_match("  True\n", " True", NULL, 0));
    cr_expect(!xp_prefix_match(" False", " True", NULL, 0));
}

Test(probe, verbatim_classifier_follows_the_spec)
{
    const char *passage = "This product is sold as-is with no express or implied warranties. "
                          "The manufacturer is not responsible for damages arising from misuse.";
    const char *span = "This product is sold as-is with no express or implied warranties.";
    cr_expect_eq(xp_verbatim_classify(span, span, passage), XP_VERBATIM_PASS);
    cr_expect_eq(xp_verbatim_classify("Sure: \"This product is sold as-is with no express or "
                                      "implied warranties.\"", span, passage), XP_VERBATIM_PASS,
                 "words around the span are not passage fragments");
    cr_expect_eq(xp_verbatim_classify("This product is sold as-is with no express or implied "
                                      "warranties. The manufacturer is not responsible", span,
                                      passage), XP_VERBATIM_COPY, "copies beyond the span");
    cr_expect_eq(xp_verbatim_classify("The manufacturer is not responsible.", span, passage),
                 XP_VERBATIM_COPY, "a fragment outside the span without the span");
    cr_expect_eq(xp_verbatim_classify("It is sold as-is with no express warranty.", span, passage),
                 XP_VERBATIM_PARTIAL, "15 characters of the span, not all of it");
    cr_expect_eq(xp_verbatim_classify("No warranty.", span, passage), XP_VERBATIM_OTHER);
    cr_expect_eq(xp_verbatim_classify("", span, passage), XP_VERBATIM_OTHER);
    /* fragments count code points, not bytes */
    cr_expect_eq(xp_verbatim_classify("ééééééééééééééé", "x", "ééééééééééééééé"),
                 XP_VERBATIM_COPY);
    cr_expect_eq(xp_verbatim_classify("éééééééééééééé", "x", "ééééééééééééééé"),
                 XP_VERBATIM_OTHER, "14 code points are no fragment");
    cr_expect_str_eq(xp_verbatim_name(XP_VERBATIM_PARTIAL), "PARTIAL");
}

Test(probe, splits_by_field_and_by_seeded_ratio)
{
    xp_err err = {0};
    xp_probe_set *s = parse(small_set, &err), *tr, *ho;
    cr_assert(s);
    xp_probe_split how;
    cr_assert_eq(xp_probe_split_parse("category=prime", &how, &err), XP_OK);
    cr_assert_eq(xp_probe_set_split(s, &how, &tr, &ho, &err), XP_OK);
    cr_expect_eq(tr->n, 1);
    cr_expect_eq(ho->n, 3);
    cr_expect_str_eq(tr->probes[0].name, "pd");
    cr_expect_str_eq(ho->probes[2].name, "cap");
    xp_probe_set_free(tr), xp_probe_set_free(ho);
    cr_assert_eq(xp_probe_split_parse("name=p*", &how, &err), XP_OK);
    cr_assert_eq(xp_probe_set_split(s, &how, &tr, &ho, &err), XP_OK);
    cr_expect_eq(ho->n, 2);
    xp_probe_set_free(tr), xp_probe_set_free(ho);
    cr_assert_eq(xp_probe_split_parse("ratio:0.5:3", &how, &err), XP_OK);
    cr_expect_eq(how.seed, 3);
    xp_probe_set *tr2, *ho2;
    cr_assert_eq(xp_probe_set_split(s, &how, &tr, &ho, &err), XP_OK);
    cr_assert_eq(xp_probe_set_split(s, &how, &tr2, &ho2, &err), XP_OK);
    cr_expect_eq(ho->n, 2);
    cr_expect_eq(tr->n, 2);
    for (size_t i = 0; i < 2; i++)
        cr_expect_str_eq(ho->probes[i].name, ho2->probes[i].name, "same seed, same split");
    cr_expect(strcmp(ho->probes[0].name, tr->probes[0].name) && strcmp(ho->probes[0].name, tr->probes[1].name));
    xp_probe_set_free(tr), xp_probe_set_free(ho), xp_probe_set_free(tr2), xp_probe_set_free(ho2);
    cr_expect_eq(xp_probe_split_parse("ratio:1.5", &how, &err), XP_EINVAL);
    cr_expect_eq(xp_probe_split_parse("colour=red", &how, &err), XP_EINVAL);
    cr_expect(strstr(err.msg, "category, role or name"), "%s", err.msg);
    xp_probe_set_free(s);
}

Test(probe, task_scoring_final_number_and_letter)
{
    cr_expect(xp_task_score(XP_TASK_NUMBER, "She pays 3 * 24 = 72 dollars. The answer is 72.", "#### 72"));
    cr_expect(xp_task_score(XP_TASK_NUMBER, "Total: 1,200", "1200"));
    cr_expect(xp_task_score(XP_TASK_NUMBER, "It costs $18.50", "18.5"));
    cr_expect(xp_task_score(XP_TASK_NUMBER, "The result is -4", "-4"));
    cr_expect(!xp_task_score(XP_TASK_NUMBER, "72 apples, then 73", "72"), "the final number counts");
    cr_expect(!xp_task_score(XP_TASK_NUMBER, "no number", "5"));
    cr_expect(!xp_task_score(XP_TASK_NUMBER, "10-4=6", "-4"), "a minus between numbers is no sign");
    cr_expect(xp_task_score(XP_TASK_CHOICE, "Answer: (B) because", "B"));
    cr_expect(xp_task_score(XP_TASK_CHOICE, " C. The mitochondria", "C"));
    cr_expect(!xp_task_score(XP_TASK_CHOICE, "Because A is wrong, B", "B"), "the first letter counts");
    cr_expect(!xp_task_score(XP_TASK_CHOICE, "Blue", "B"), "inside a word is no choice");
}
