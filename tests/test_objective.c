/* The correctness objective: plain {"prompt", "answer"} items load (array and JSONL) and
 * are refused under the pair metrics; margin and answer_logprob equal a float64 reference
 * computed over the plain path's full logits; batched values equal values alone; the
 * search gauge measures them bit for bit as the naive path does; and a margin search on
 * plain items gives the same patch on 1 and 2 threads and when resumed. */
#include <math.h>
#include <omp.h>
#include <string.h>

#include "search/search_int.h"
#include "testutil.h"
#include "xorpatch.h"

static const char plain_items[] =
    "[{\"prompt\":\"73 + 67 =\",\"answer\":\" 140\"},"
    "{\"prompt\":\"d/dx [x^4 + 3x^2] =\",\"answer\":\" 4x^3 + 6x\"},"
    "{\"prompt\":\"Is 97 prime?\",\"answer\":\" Yes\"},"
    "{\"prompt\":\"The capital of France is\",\"answer\":\" Paris\"},"
    "{\"prompt\":\"12 * 11 =\",\"answer\":\" 132\"},"
    "{\"prompt\":\"The chemical symbol for iron is\",\"answer\":\" Fe\"}]";

static xp_probe_set *parse(const char *json)
{
    xp_probe_set *s = NULL;
    xp_err err = {0};
    cr_assert_eq(xp_probe_set_parse(&s, json, strlen(json), "items.json", &err), XP_OK, "%s",
                 err.msg);
    return s;
}

Test(objective, plain_items_load_as_an_array_and_as_jsonl)
{
    xp_probe_set *a = parse(plain_items);
    cr_assert_eq(a->n, 6);
    cr_expect_null(a->probes[0].wrong);
    cr_expect_str_eq(a->probes[0].correct, " 140");
    const char *lines = "{\"prompt\":\"1 + 1 =\",\"answer\":\" 2\"}\n\n"
                        "{\"prompt\":\"2 + 2 =\",\"answer\":\" 4\"}\n";
    xp_probe_set *b = parse(lines);
    cr_assert_eq(b->n, 2);
    cr_expect_str_eq(b->probes[1].prompt, "2 + 2 =");
    cr_expect_str_eq(b->probes[1].correct, " 4");
    cr_expect_eq(b->matcher, XP_MATCH_MATH);
    xp_err err = {0};
    cr_expect_eq(xp_probe_set_check_metric(b, XP_METRIC_MARGIN, &err), XP_OK);
    cr_expect_eq(xp_probe_set_check_metric(b, XP_METRIC_ANSWER_LOGPROB, &err), XP_OK);
    for (int m = XP_METRIC_SEQ_LOGPROB; m <= XP_METRIC_GENERATION; m++) {
        cr_expect_eq(xp_probe_set_check_metric(b, (xp_metric)m, &err), XP_EINVAL);
        cr_expect(strstr(err.msg, "no wrong answer") && strstr(err.msg, "line_1"), "%s", err.msg);
    }
    xp_probe_set *bad = NULL;
    cr_expect_neq(xp_probe_set_parse(&bad, "{\"prompt\":\"x\",\"answer\":\" y\"}\nnot json\n", 40,
                                     "t.jsonl", &err),
                  XP_OK);
    cr_expect(strstr(err.msg, "line 2"), "%s", err.msg);
    xp_probe_set_free(a);
    xp_probe_set_free(b);
}

/* The plain path's full logits at the prompt's last position and each answer token. */
static float *plain_rows(xp_model *m, const xp_probe_tokens *p)
{
    size_t V = xp_model_shape(m)->n_vocab, n = p->n_prompt + p->n_answer[0];
    int32_t *tok = malloc(n * sizeof *tok);
    memcpy(tok, p->prompt, p->n_prompt * sizeof *tok);
    memcpy(tok + p->n_prompt, p->answer[0], p->n_answer[0] * sizeof *tok);
    uint8_t *want = calloc(n, 1);
    memset(want + p->n_prompt - 1, 1, p->n_answer[0]);
    float *rows = malloc(p->n_answer[0] * V * sizeof *rows);
    xp_seq s = {NULL, tok, n, want};
    xp_err err = {0};
    cr_assert_eq(xp_forward(m, XP_PATH_PLAIN, &s, 1, rows, &err), XP_OK, "%s", err.msg);
    free(tok), free(want);
    return rows;
}

Test(objective, margin_and_answer_logprob_match_a_float64_reference, .timeout = 120)
{
    xp_model *m = xp_test_open_tiny();
    xp_err err = {0};
    xp_probe_set *s = parse(plain_items);
    xp_probe_tokens *pt;
    cr_assert_eq(xp_probe_tokenize(s, xp_model_tokenizer(m), &pt, &err), XP_OK, "%s", err.msg);
    size_t n = s->n, V = xp_model_shape(m)->n_vocab;
    double lp[8], mg[8], one;
    cr_assert_eq(xp_probe_gaps(m, pt, n, XP_METRIC_ANSWER_LOGPROB, lp, &err), XP_OK, "%s", err.msg);
    cr_assert_eq(xp_probe_gaps(m, pt, n, XP_METRIC_MARGIN, mg, &err), XP_OK, "%s", err.msg);
    xp_probe_score sc[8];
    cr_assert_eq(xp_probe_scores(m, pt, n, XP_METRIC_MARGIN, sc, &err), XP_OK, "%s", err.msg);
    for (size_t i = 0; i < n; i++) {
        cr_expect_eq(xp_probe_gaps(m, &pt[i], 1, XP_METRIC_MARGIN, &one, &err), XP_OK);
        cr_expect(one == mg[i], "probe %zu: margin batched %.17g, alone %.17g", i, mg[i], one);
        cr_expect(sc[i].gap == mg[i] && sc[i].margin == mg[i] && sc[i].logprob[0] == lp[i]);
        cr_expect(isnan(sc[i].logprob[1]) && sc[i].measured[1] == -1);
        float *rows = plain_rows(m, &pt[i]);
        double ref_lp = 0, ref_mg = INFINITY;
        for (size_t k = 0; k < pt[i].n_answer[0]; k++) {
            const float *r = rows + k * V;
            int32_t c = pt[i].answer[0][k];
            double mx = r[0], sum = 0, other = -INFINITY;
            for (size_t v = 0; v < V; v++) {
                mx = r[v] > mx ? r[v] : mx;
                if ((int32_t)v != c && r[v] > other)
                    other = r[v];
            }
            for (size_t v = 0; v < V; v++)
                sum += exp((double)r[v] - mx);
            ref_lp += (double)r[c] - mx - log(sum);
            ref_mg = fmin(ref_mg, (double)r[c] - other);
        }
        /* the fast path's int8 activations differ from the plain path's fp32 a little */
        cr_expect(fabs(ref_lp - lp[i]) < 0.05 * (1 + fabs(ref_lp)),
                  "probe %zu: answer_logprob %.9g, plain reference %.9g", i, lp[i], ref_lp);
        cr_expect(fabs(ref_mg - mg[i]) < 0.1 * (1 + fabs(ref_mg)),
                  "probe %zu: margin %.9g, plain reference %.9g", i, mg[i], ref_mg);
        cr_expect(lp[i] <= 0);
        /* a positive margin means the argmax is the answer's token at every position */
        if (sc[i].emitted != pt[i].answer[0][0])
            cr_expect(mg[i] <= 0, "probe %zu: the model emits another first token", i);
        free(rows);
    }
    xp_probe_tokens_free(pt, n);
    xp_probe_set_free(s);
    xp_model_close(m);
}

/* The fast gauge and the naive one on the same probes, after a flip too. */
Test(objective, the_gauge_measures_the_correctness_metrics_as_the_naive_path, .timeout = 180)
{
    xp_model *m = xp_test_open_tiny();
    xp_err err = {0};
    xp_probe_set *s = parse(plain_items);
    xp_probe_tokens *pt;
    cr_assert_eq(xp_probe_tokenize(s, xp_model_tokenizer(m), &pt, &err), XP_OK, "%s", err.msg);
    size_t n = s->n;
    const xp_probe_tokens *pp[8];
    for (size_t i = 0; i < n; i++)
        pp[i] = &pt[i];
    uint32_t layers[] = {1, 2};
    xp_metric metrics[] = {XP_METRIC_MARGIN, XP_METRIC_ANSWER_LOGPROB};
    xp_candidate c = {2, XP_PROJ_UP, XP_FLIP_ROW, 0, 17};
    for (int k = 0; k < 2; k++) {
        xp_gauge fast, naive;
        cr_assert_eq(xp_gauge_init(&fast, m, pp, n, metrics[k], false, layers, 2, true, &err),
                     XP_OK, "%s", err.msg);
        cr_assert_eq(xp_gauge_init(&naive, m, pp, n, metrics[k], true, layers, 2, true, &err),
                     XP_OK);
        double a[8], b[8], direct[8];
        cr_assert_eq(xp_gauge_run(&fast, NULL, 0, NULL, a, &err), XP_OK, "%s", err.msg);
        xp_gauge_commit(&fast);
        cr_assert_eq(xp_gauge_run(&naive, NULL, 0, NULL, b, &err), XP_OK, "%s", err.msg);
        cr_assert_eq(xp_probe_gaps(m, pt, n, metrics[k], direct, &err), XP_OK);
        cr_expect(memcmp(a, b, n * sizeof *a) == 0, "%s: fast = naive", xp_metric_name(metrics[k]));
        cr_expect(memcmp(a, direct, n * sizeof *a) == 0, "%s: = xp_probe_gaps",
                  xp_metric_name(metrics[k]));
        xp_candidate_flip(m, &c);
        xp_tree_change ch = xp_candidate_change(m, &c);
        size_t sel[] = {4, 1};
        double sa[2];
        cr_assert_eq(xp_gauge_run(&fast, NULL, 0, &ch, a, &err), XP_OK, "%s", err.msg);
        cr_assert_eq(xp_gauge_run(&fast, sel, 2, &ch, sa, &err), XP_OK, "%s", err.msg);
        cr_assert_eq(xp_gauge_run(&naive, NULL, 0, &ch, b, &err), XP_OK);
        cr_expect(memcmp(a, b, n * sizeof *a) == 0, "%s after a flip: fast = naive",
                  xp_metric_name(metrics[k]));
        cr_expect(sa[0] == a[4] && sa[1] == a[1], "a selection measures as the whole run");
        bool moved = false;
        for (size_t i = 0; i < n; i++)
            moved |= a[i] != direct[i];
        cr_expect(moved, "the flip moves some value");
        xp_candidate_flip(m, &c);
        xp_gauge_free(&fast);
        xp_gauge_free(&naive);
    }
    xp_probe_tokens_free(pt, n);
    xp_probe_set_free(s);
    xp_model_close(m);
}

static void flips_id(xp_patch *p, char hex[65])
{
    xp_err err = {0};
    cr_assert_eq(xp_patch_flips_sha256(p, hex, &err), XP_OK, "%s", err.msg);
}

Test(objective, a_margin_search_on_plain_items_is_the_same_on_threads_and_resumed, .timeout = 300)
{
    xp_model *m = xp_test_open_tiny();
    xp_err err = {0};
    xp_probe_set *s = parse(plain_items);
    xp_probe_tokens *pt;
    cr_assert_eq(xp_probe_tokenize(s, xp_model_tokenizer(m), &pt, &err), XP_OK, "%s", err.msg);
    size_t nt = 4, nc = 2;
    xp_search_opts o;
    xp_search_opts_default(&o);
    o.metric = XP_METRIC_MARGIN;
    o.iterations = 14;
    o.seed = 3;
    o.granularity = XP_GRAN_BLOCK;
    xp_search_result a, b;
    char ida[65], idb[65];
    omp_set_num_threads(2);
    cr_assert_eq(xp_search_run(m, pt, nt, pt + nt, nc, &o, NULL, &a, &err), XP_OK, "%s", err.msg);
    cr_assert_gt(a.accepted, 0, "some flip is kept");
    flips_id(a.patch, ida);
    double *g = malloc((nt + nc) * sizeof *g);
    cr_assert_eq(xp_model_patch_apply(m, a.patch, &err), XP_OK, "%s", err.msg);
    cr_assert_eq(xp_probe_gaps(m, pt, nt + nc, XP_METRIC_MARGIN, g, &err), XP_OK);
    cr_expect(memcmp(g, a.final_gaps, (nt + nc) * sizeof *g) == 0,
              "the patch gives the search's final margins");
    cr_assert_eq(xp_model_patch_revert(m, a.patch, &err), XP_OK);
    free(g);

    omp_set_num_threads(1);
    cr_assert_eq(xp_search_run(m, pt, nt, pt + nt, nc, &o, NULL, &b, &err), XP_OK);
    flips_id(b.patch, idb);
    cr_expect_str_eq(idb, ida, "one thread: the same patch");
    xp_search_result_free(&b);
    omp_set_num_threads(2);

    char ckpt[512];
    xp_test_tmp_path(ckpt, sizeof ckpt, "margin-ckpt.json");
    xp_search_opts part = o;
    part.iterations = 6;
    part.checkpoint = ckpt;
    part.checkpoint_every = 6;
    cr_assert_eq(xp_search_run(m, pt, nt, pt + nt, nc, &part, NULL, &b, &err), XP_OK);
    bool wrote = b.patch->n_flips > 0;
    xp_search_result_free(&b);
    if (wrote) {
        xp_patch *saved;
        cr_assert_eq(xp_patch_read(&saved, ckpt, &err), XP_OK, "%s", err.msg);
        cr_assert_eq(xp_search_run(m, pt, nt, pt + nt, nc, &o, saved, &b, &err), XP_OK);
        cr_expect_eq(b.resumed_at, 6);
        flips_id(b.patch, idb);
        cr_expect_str_eq(idb, ida, "resumed: the same patch");
        xp_search_result_free(&b);
        xp_patch_free(saved);
        remove(ckpt);
    }
    /* a pair metric on plain items is refused, naming what is missing */
    o.metric = XP_METRIC_SEQ_LOGPROB;
    cr_expect_eq(xp_search_run(m, pt, nt, pt + nt, nc, &o, NULL, &b, &err), XP_EINVAL);
    cr_expect(strstr(err.msg, "no wrong answer"), "%s", err.msg);
    xp_search_result_free(&a);
    xp_probe_tokens_free(pt, s->n);
    xp_probe_set_free(s);
    xp_model_close(m);
}

/* ---- clean data ------------------------------------------------------------------- */

Test(objective, corpus_heldout_prompts_are_asked_once_and_training_is_unchanged, .timeout = 120)
{
    xp_err err = {0};
    xp_corpus *c;
    cr_assert_eq(xp_corpus_generate(&c, 1, &err), XP_OK, "%s", err.msg);
    cr_expect_eq(c->n, 9859);
    /* the training items, in order, are what the shipped model was trained on */
    size_t cap = 1 << 20, len = 0;
    char *text = malloc(cap);
    for (size_t i = 0; i < c->n; i++) {
        const xp_doc *d = &c->docs[i];
        if (d->heldout)
            continue;
        size_t need = strlen(d->task) + strlen(d->prompt) + strlen(d->answer) + 8;
        if (len + need > cap)
            text = realloc(text, cap = 2 * (len + need));
        len += (size_t)snprintf(text + len, cap - len, "%s\t%s\t%s\t%d\n", d->task, d->prompt,
                                d->answer, d->chat);
    }
    char hex[65];
    xp_sha256_hex(text, len, hex);
    cr_expect_str_eq(hex, "b4de31fbdb031b356df13c1dbbb01833efab122dfe1814f9f638a1ea749fffc0",
                     "the training items changed: the shipped model no longer matches");
    free(text);
    /* no held-out prompt twice, none a training prompt; their tokens all occur in
     * training items, so the trained vocabulary rows are what they were */
    xp_model *m = xp_test_open_tiny();
    const xp_tokenizer *tok = xp_model_tokenizer(m);
    size_t V = xp_model_shape(m)->n_vocab, held = 0;
    bool *train_tok = calloc(V, 1);
    for (size_t i = 0; i < c->n; i++) {
        if (c->docs[i].heldout)
            continue;
        int32_t *ids;
        size_t n;
        cr_assert_eq(xp_doc_tokenize(tok, &c->docs[i], &ids, &n, &err), XP_OK, "%s", err.msg);
        for (size_t k = 0; k < n; k++)
            train_tok[ids[k]] = true;
        free(ids);
    }
    for (size_t i = 0; i < c->n; i++) {
        const xp_doc *d = &c->docs[i];
        if (!d->heldout)
            continue;
        held++;
        for (size_t j = 0; j < c->n; j++)
            if (j != i && !strcmp(c->docs[j].prompt, d->prompt)) {
                cr_expect(false, "held-out \"%s\" is also item %zu", d->prompt, j);
                break;
            }
        int32_t *ids;
        size_t n;
        cr_assert_eq(xp_doc_tokenize(tok, d, &ids, &n, &err), XP_OK, "%s", err.msg);
        for (size_t k = 0; k < n; k++)
            cr_expect(train_tok[ids[k]], "held-out \"%s\": token %d is in no training item",
                      d->prompt, ids[k]);
        free(ids);
    }
    cr_expect_eq(held, 1331);
    free(train_tok);
    xp_model_close(m);
    xp_corpus_free(c);
}

Test(objective, plain_heldout_items_on_request_are_distinct_and_never_trained)
{
    xp_err err = {0};
    xp_corpus *c, *items, *again;
    cr_assert_eq(xp_corpus_generate(&c, 1, &err), XP_OK, "%s", err.msg);
    cr_assert_eq(xp_corpus_heldout_items(1, "deriv", 400, &items, &err), XP_OK, "%s", err.msg);
    cr_assert_eq(xp_corpus_heldout_items(1, "deriv", 400, &again, &err), XP_OK);
    cr_assert_eq(items->n, 400);
    for (size_t i = 0; i < items->n; i++) {
        cr_expect_str_eq(items->docs[i].prompt, again->docs[i].prompt, "deterministic");
        for (size_t j = 0; j < i; j++)
            cr_expect_str_neq(items->docs[i].prompt, items->docs[j].prompt);
        for (size_t j = 0; j < c->n; j++)
            if (!c->docs[j].heldout)
                cr_expect_str_neq(items->docs[i].prompt, c->docs[j].prompt);
    }
    char path[512];
    xp_test_tmp_path(path, sizeof path, "items.jsonl");
    cr_assert_eq(xp_corpus_write_items(items, path, &err), XP_OK, "%s", err.msg);
    xp_probe_set *s;
    cr_assert_eq(xp_probe_set_load(&s, path, &err), XP_OK, "%s", err.msg);
    cr_expect_eq(s->n, 400);
    cr_expect_eq(xp_probe_set_repeats(s, NULL), 0);
    cr_expect_str_eq(s->probes[7].correct, items->docs[7].answer);
    xp_probe_set_free(s);
    unlink(path);
    xp_corpus *none = NULL;
    cr_expect_eq(xp_corpus_heldout_items(1, "deriv", 600, &none, &err), XP_EINVAL);
    cr_expect(strstr(err.msg, "distinct held-out items"), "%s", err.msg);
    cr_expect_eq(xp_corpus_heldout_items(1, "capital", 5, &none, &err), XP_EINVAL);
    xp_corpus_free(items);
    xp_corpus_free(again);
    xp_corpus_free(c);
}

Test(objective, eval_split_refuses_repeated_prompts, .timeout = 60)
{
    char model[512], probes[512], cmd[2048];
    xp_test_tiny_model(model, sizeof model);
    xp_test_tmp_path(probes, sizeof probes, "repeats.json");
    xp_test_write(probes, "[{\"prompt\":\"1 + 1 =\",\"answer\":\" 2\",\"name\":\"a\"},"
                          "{\"prompt\":\"2 + 2 =\",\"answer\":\" 4\",\"name\":\"b\"},"
                          "{\"prompt\":\"1 + 1 =\",\"answer\":\" 2\",\"name\":\"c\"}]");
    snprintf(cmd, sizeof cmd,
             "%s eval -m '%s' --probes '%s' --metric margin --no-generate "
             "--split ratio:0.5",
             xp_test_bin(), model, probes);
    char *out, *err;
    cr_expect_neq(xp_test_run(cmd, NULL, &out, &err), 0);
    cr_expect(strstr(err, "1 probes repeat an earlier prompt") && strstr(err, "\"c\""), "%s", err);
    free(out), free(err);
    unlink(probes);
}

/* ---- the random-patch baseline ----------------------------------------------------- */

Test(objective, permutation_p_on_a_hand_made_distribution)
{
    long random[] = {-2, 0, 1, 3, 3, 5, -1, 0, 2, 4};
    cr_expect_float_eq(xp_permutation_p(3, random, 10), (1.0 + 4) / 11, 1e-15);
    cr_expect_float_eq(xp_permutation_p(6, random, 10), 1.0 / 11, 1e-15);
    cr_expect_float_eq(xp_permutation_p(-5, random, 10), 1.0, 1e-15);
    cr_expect_float_eq(xp_permutation_p(0, NULL, 0), 1.0, 1e-15);
}

/* Per tensor: rows, blocks, masks, and scale flips per bit. */
static void kind_counts(const xp_patch *p, size_t counts[][4 + 16])
{
    for (size_t i = 0; i < p->n_flips; i++) {
        const xp_flip *f = &p->flips[i];
        counts[f->tensor][f->kind == XP_FLIP_SCALE ? 4 + f->bit : f->kind]++;
    }
}

Test(objective, random_patches_like_a_patch_have_its_kind_counts_and_repeat_by_seed, .timeout = 120)
{
    xp_model *m = xp_test_open_tiny();
    xp_err err = {0};
    xp_patch *p;
    cr_assert_eq(xp_patch_new(&p, &err), XP_OK);
    cr_assert_eq(xp_patch_add_row(p, "blk.1.ffn_up.weight", 3, &err), XP_OK);
    cr_assert_eq(xp_patch_add_row(p, "blk.1.ffn_up.weight", 9, &err), XP_OK);
    cr_assert_eq(xp_patch_add_block(p, "blk.1.ffn_up.weight", 40, &err), XP_OK);
    cr_assert_eq(xp_patch_add_scale_bit(p, "blk.2.ffn_gate.weight", 5, 7, &err), XP_OK);
    cr_assert_eq(xp_patch_add_scale_bit(p, "blk.2.ffn_gate.weight", 6, 9, &err), XP_OK);
    cr_assert_eq(xp_patch_add_block(p, "blk.2.ffn_gate.weight", 8, &err), XP_OK);
    cr_assert_eq(xp_patch_bind(p, xp_model_gguf(m), &err), XP_OK, "%s", err.msg);
    size_t want[2][20] = {{0}};
    kind_counts(p, want);
    char id[3][65];
    for (int k = 0; k < 3; k++) {
        xp_patch *r;
        cr_assert_eq(xp_random_like_patch(p, xp_model_gguf(m), k < 2 ? 11 : 12, &r, &err), XP_OK,
                     "%s", err.msg);
        cr_assert_eq(r->n_tensors, 2);
        cr_expect_str_eq(r->tensors[0].name, p->tensors[0].name);
        cr_expect_str_eq(r->tensors[1].name, p->tensors[1].name);
        size_t got[2][20] = {{0}};
        kind_counts(r, got);
        cr_expect(memcmp(got, want, sizeof got) == 0, "the random patch has the kind counts");
        cr_assert_eq(xp_patch_flips_sha256(r, id[k], &err), XP_OK);
        xp_patch_free(r);
    }
    cr_expect_str_eq(id[0], id[1], "the same seed, the same patch");
    cr_expect_str_neq(id[0], id[2], "another seed, another patch");

    /* the baseline: deterministic, and its p-value is the formula's */
    xp_probe_set *s = parse(plain_items);
    xp_probe_tokens *pt;
    cr_assert_eq(xp_probe_tokenize(s, xp_model_tokenizer(m), &pt, &err), XP_OK);
    xp_eval_opts eo = {.metric = XP_METRIC_MARGIN};
    xp_random_baseline a, b;
    cr_assert_eq(xp_random_baseline_run(m, s, pt, p, &eo, 5, 3, &a, &err), XP_OK, "%s", err.msg);
    cr_assert_eq(xp_random_baseline_run(m, s, pt, p, &eo, 5, 3, &b, &err), XP_OK);
    cr_expect_eq(a.observed, b.observed);
    cr_expect(memcmp(a.random, b.random, 5 * sizeof *a.random) == 0,
              "the same seed, the same gains");
    cr_expect_float_eq(a.p, xp_permutation_p(a.observed, a.random, 5), 1e-15);
    xp_eval e;
    cr_assert_eq(xp_eval_run(m, s, pt, &p, 1, &eo, &e, &err), XP_OK);
    cr_expect_eq(a.observed, (long)e.overall.fixed - (long)e.overall.broke);
    xp_eval_free(&e);
    xp_random_baseline_free(&a);
    xp_random_baseline_free(&b);
    xp_probe_tokens_free(pt, s->n);
    xp_probe_set_free(s);
    xp_patch_free(p);
    xp_model_close(m);
}

static void count_changed(void *ctx, const xp_search_iter *it)
{
    *(size_t *)ctx += it->control_changed;
}

static void control_texts(xp_model *m, const xp_probe_tokens *c, size_t n, char **texts)
{
    const int32_t *prompts[8];
    size_t lens[8];
    for (size_t i = 0; i < n; i++)
        prompts[i] = c[i].prompt, lens[i] = c[i].n_prompt;
    xp_batch_gen_opts go = {24, true, NULL, NULL};
    xp_err err = {0};
    cr_assert_eq(xp_generate_batch(m, prompts, lens, n, &go, texts, &err), XP_OK, "%s", err.msg);
}

Test(objective, control_check_generation_keeps_every_control_output, .timeout = 300)
{
    xp_model *m = xp_test_open_tiny();
    xp_err err = {0};
    xp_probe_set *s = parse(plain_items);
    xp_probe_tokens *pt;
    cr_assert_eq(xp_probe_tokenize(s, xp_model_tokenizer(m), &pt, &err), XP_OK, "%s", err.msg);
    size_t nt = 2, nc = 4, changed = 0;
    xp_search_opts o;
    xp_search_opts_default(&o);
    o.metric = XP_METRIC_MARGIN;
    o.iterations = 20;
    o.seed = 2;
    o.lambda = 0; /* nothing but the generation check guards the controls */
    o.granularity = XP_GRAN_ROW;
    o.control_generation = true;
    o.on_iter = count_changed;
    o.ctx = &changed;
    xp_search_result r;
    cr_assert_eq(xp_search_run(m, pt, nt, pt + nt, nc, &o, NULL, &r, &err), XP_OK, "%s", err.msg);
    char *before[4], *after[4];
    control_texts(m, pt + nt, nc, before);
    cr_assert_eq(xp_model_patch_apply(m, r.patch, &err), XP_OK, "%s", err.msg);
    control_texts(m, pt + nt, nc, after);
    cr_assert_eq(xp_model_patch_revert(m, r.patch, &err), XP_OK);
    for (size_t i = 0; i < nc; i++) {
        cr_expect_str_eq(after[i], before[i], "control %zu's greedy output is kept", i);
        free(before[i]), free(after[i]);
    }
    cr_expect_leq(changed + r.accepted, r.iterations);
    xp_search_result_free(&r);
    xp_probe_tokens_free(pt, s->n);
    xp_probe_set_free(s);
    xp_model_close(m);
}
