/* Evaluation: the statistics reproduce published figures (Neagari's held-out 6/78, its
 * null-baseline acceptance rates, a GSM8K McNemar comparison), paired tallies add up,
 * an evaluation with a patch reports what the patched model does and leaves the model
 * exactly as it was, the audit finds dead probes, repeated contrasts and solved probes,
 * and task files load and score. */
#include <math.h>
#include <string.h>

#include "testutil.h"
#include "xorpatch.h"

#define NEAR(a, b, tol) (fabs((a) - (b)) <= (tol))

Test(eval_stats, wilson_matches_published_intervals)
{
    double lo, hi;
    xp_wilson(6, 78, &lo, &hi); /* Neagari held-out: 7.7% [3.6%, 15.8%] */
    cr_expect(NEAR(lo, 0.036, 0.0005) && NEAR(hi, 0.158, 0.0005), "[%f, %f]", lo, hi);
    xp_wilson(234, 500, &lo, &hi); /* null baseline, trained: 46.8% [42.5, 51.2] */
    cr_expect(NEAR(lo, 0.425, 0.0005) && NEAR(hi, 0.512, 0.0005), "[%f, %f]", lo, hi);
    xp_wilson(84, 500, &lo, &hi); /* randomised: 16.8% [13.8, 20.3] */
    cr_expect(NEAR(lo, 0.138, 0.0005) && NEAR(hi, 0.203, 0.0005), "[%f, %f]", lo, hi);
    xp_wilson(0, 10, &lo, &hi);
    cr_expect(lo == 0 && NEAR(hi, 0.2775, 0.0005), "[%f, %f]", lo, hi);
    xp_wilson(0, 0, &lo, &hi);
    cr_expect(lo == 0 && hi == 0);
}

Test(eval_stats, mcnemar_and_paired_interval_match_the_gsm8k_figures)
{
    /* GSM8K, 1,319 problems, 21 fixed vs 11 broke: p = 0.110, [−0.08, +1.60] pp */
    double p = xp_mcnemar_exact(21, 11);
    cr_expect(NEAR(p, 0.110, 0.0005), "p = %f", p);
    cr_expect_eq(xp_mcnemar_exact(11, 21), p, "symmetric");
    double d, lo, hi;
    xp_paired_diff_ci(21, 11, 1319, &d, &lo, &hi);
    cr_expect(NEAR(d * 100, 0.758, 0.0005), "%f", d * 100);
    cr_expect(NEAR(lo * 100, -0.08, 0.005) && NEAR(hi * 100, 1.60, 0.005), "[%f, %f] pp",
              lo * 100, hi * 100);
    cr_expect_eq(xp_mcnemar_exact(0, 0), 1.0);
    cr_expect(NEAR(xp_mcnemar_exact(0, 5), 0.0625, 1e-12), "2 * 2^-5");
    cr_expect(NEAR(xp_mcnemar_exact(3, 3), 1.0, 1e-12));
    /* thousands of discordant pairs stay finite */
    double big = xp_mcnemar_exact(2000, 2100);
    cr_expect(big > 0.1 && big < 0.15, "%f", big);
}

Test(eval_stats, paired_tally_adds_up)
{
    bool before[6] = {1, 1, 0, 0, 0, 1}, after[6] = {1, 0, 1, 1, 0, 1};
    bool sel[6] = {1, 1, 1, 1, 1, 0};
    xp_paired t;
    xp_paired_tally(before, after, NULL, 6, &t);
    cr_expect(t.n == 6 && t.stayed_right == 2 && t.broke == 1 && t.fixed == 2 && t.stayed_wrong == 1);
    cr_expect(NEAR(t.acc[0], 0.5, 1e-12) && NEAR(t.acc[1], 4.0 / 6, 1e-12));
    cr_expect(NEAR(t.mcnemar_p, 1.0, 1e-12));
    cr_expect(NEAR(t.diff, 1.0 / 6, 1e-12));
    xp_paired_tally(before, after, sel, 6, &t);
    cr_expect(t.n == 5 && t.stayed_right == 1);
}

static const char set_json[] =
    "[{\"prompt\":\"d/dx [x^4 + 3x^2] =\",\"correct\":\" 4x^3 + 6x\",\"wrong\":\" 4x^3 + 3x\","
    "\"name\":\"pd\",\"category\":\"poly\"},"
    "{\"prompt\":\"Is 97 prime?\",\"correct\":\" Yes\",\"wrong\":\" No\",\"name\":\"p1\","
    "\"category\":\"prime\"},"
    "{\"prompt\":\"Is 91 prime?\",\"correct\":\" No\",\"wrong\":\" Yes\",\"name\":\"p2\","
    "\"category\":\"prime\"},"
    "{\"prompt\":\"Is 89 prime?\",\"correct\":\" Yes\",\"wrong\":\" No\",\"name\":\"p3\","
    "\"category\":\"prime\"},"
    "{\"prompt\":\"10 + 10 =\",\"correct\":\" 20\",\"wrong\":\" 0\",\"name\":\"add\","
    "\"category\":\"add\"}]";

Test(eval, patched_side_is_the_patched_model_and_the_model_is_restored)
{
    xp_model *m = xp_test_open_tiny();
    xp_err err = {0};
    xp_probe_set *s;
    cr_assert_eq(xp_probe_set_parse(&s, set_json, strlen(set_json), "mem.json", &err), XP_OK);
    xp_probe_tokens *pt;
    cr_assert_eq(xp_probe_tokenize(s, xp_model_tokenizer(m), &pt, &err), XP_OK);
    xp_patch *p;
    cr_assert_eq(xp_patch_new(&p, &err), XP_OK);
    for (int r = 0; r < 200; r++)
        cr_assert_eq(xp_patch_add_row(p, "blk.0.ffn_up.weight", r, &err), XP_OK);
    double base[5], patched[5], after[5];
    cr_assert_eq(xp_probe_gaps(m, pt, 5, XP_METRIC_SEQ_LOGPROB, base, &err), XP_OK);
    cr_assert_eq(xp_model_patch_apply(m, p, &err), XP_OK, "%s", err.msg);
    cr_assert_eq(xp_probe_gaps(m, pt, 5, XP_METRIC_SEQ_LOGPROB, patched, &err), XP_OK);
    char *texts[5];
    cr_assert_eq(xp_probe_generate(m, s, pt, 0, NULL, NULL, texts, &err), XP_OK);
    cr_assert_eq(xp_model_patch_revert(m, p, &err), XP_OK);

    xp_eval e;
    xp_eval_opts o = {XP_METRIC_SEQ_LOGPROB, true, 0, NULL, NULL};
    cr_assert_eq(xp_eval_run(m, s, pt, &p, 1, &o, &e, &err), XP_OK, "%s", err.msg);
    cr_assert_eq(e.n, 5);
    size_t changed = 0;
    for (size_t i = 0; i < 5; i++) {
        cr_expect_eq(e.probes[i].gap[0], base[i]);
        cr_expect_eq(e.probes[i].gap[1], patched[i]);
        changed += base[i] != patched[i];
        cr_expect_str_eq(e.probes[i].output[1], texts[i]);
        cr_expect_eq(e.probes[i].right[1], xp_probe_output_correct(s, i, texts[i]));
        cr_expect_eq(e.probes[i].verbatim[0], -1);
        free(texts[i]);
    }
    cr_expect(changed > 0, "the patch moves some gap");
    const xp_paired *t = &e.by_gap;
    cr_expect_eq(t->fixed + t->broke + t->stayed_right + t->stayed_wrong, 5);
    size_t right0 = 0;
    for (size_t i = 0; i < 5; i++)
        right0 += base[i] > 0;
    cr_expect_eq(t->stayed_right + t->broke, right0);
    xp_eval_free(&e);
    cr_expect_eq(xp_model_patches(m)->n, 0, "the patch is reverted");
    cr_assert_eq(xp_probe_gaps(m, pt, 5, XP_METRIC_SEQ_LOGPROB, after, &err), XP_OK);
    cr_expect(!memcmp(after, base, sizeof base), "the model is bit for bit as before");
    xp_patch_free(p);
    xp_probe_tokens_free(pt, s->n);
    xp_probe_set_free(s);
    xp_model_close(m);
}

Test(eval, audit_finds_dead_probes_repeated_contrasts_and_solved)
{
    xp_model *m = xp_test_open_tiny();
    xp_err err = {0};
    xp_probe_set *s;
    cr_assert_eq(xp_probe_set_parse(&s, set_json, strlen(set_json), "mem.json", &err), XP_OK);
    xp_probe_tokens *pt;
    cr_assert_eq(xp_probe_tokenize(s, xp_model_tokenizer(m), &pt, &err), XP_OK);
    xp_audit a;
    cr_assert_eq(xp_probe_audit(m, s, pt, XP_METRIC_TOKEN_GAP, true, &a, &err), XP_OK, "%s", err.msg);
    cr_expect_eq(a.dead, 2, "pd and add start with the same space token");
    cr_expect(a.probes[0].dead && a.probes[4].dead && !a.probes[1].dead);
    cr_expect_eq(a.dead_token_gap, 2);
    cr_expect_eq(a.n_categories, 3);
    cr_expect_str_eq(a.categories[1].name, "prime");
    cr_expect_eq(a.categories[1].n, 3);
    cr_expect_eq(a.categories[1].contrasts, 2, "Yes/No twice, No/Yes once");
    cr_expect_eq(a.categories[1].duplicates, 1);
    cr_expect(!a.categories[1].one_contrast);
    cr_expect(!a.categories[0].one_contrast, "one probe is not a repetition");
    cr_expect_eq(a.contrasts, 4, "Yes/No repeats across the set");
    size_t solved = 0;
    for (size_t i = 0; i < 5; i++) {
        cr_expect_eq(a.probes[i].solved, !a.probes[i].dead && a.probes[i].score.gap > 0);
        cr_expect_not_null(a.probes[i].output);
        solved += a.probes[i].solved;
    }
    cr_expect_eq(a.solved, solved);
    xp_audit_free(&a);
    cr_assert_eq(xp_probe_audit(m, s, pt, XP_METRIC_SEQ_LOGPROB, false, &a, &err), XP_OK);
    cr_expect_eq(a.dead, 0, "seq_logprob separates them");
    cr_expect_eq(a.dead_token_gap, 2);
    cr_expect_null(a.probes[0].output);
    cr_expect_eq(a.probes[0].score.distractor_rank > 0, true, "pd's answers part at 6x vs 3x");
    xp_audit_free(&a);
    xp_probe_tokens_free(pt, s->n);
    xp_probe_set_free(s);
    xp_model_close(m);
}

Test(eval, task_files_load_strictly_and_run)
{
    char path[512];
    xp_test_tmp_path(path, sizeof path, "tasks.jsonl");
    xp_test_write(path, "{\"prompt\":\"What is 2+2?\",\"answer\":\"#### 4\"}\n\n"
                        "{\"prompt\":\"What is 3+3?\",\"answer\":6}\n");
    xp_task_set *t;
    xp_err err = {0};
    cr_assert_eq(xp_task_set_load(&t, path, XP_TASK_AUTO, &err), XP_OK, "%s", err.msg);
    cr_expect_eq(t->n, 2);
    cr_expect_eq(t->kind, XP_TASK_NUMBER);
    cr_expect_str_eq(t->answers[1], "6");
    xp_model *m = xp_test_open_tiny();
    xp_task_result r;
    xp_task_opts o = {.max_tokens = 6, .stop_newline = true};
    cr_assert_eq(xp_task_run(m, t, NULL, 0, &o, &r, &err), XP_OK, "%s", err.msg);
    cr_expect_eq(r.paired.n, 2);
    cr_expect_eq(r.paired.fixed + r.paired.broke, 0, "no patch, no change");
    for (size_t i = 0; i < 2; i++)
        cr_expect_eq(r.right[0][i], xp_task_score(t->kind, r.output[0][i], t->answers[i]));
    xp_task_result_free(&r);
    xp_model_close(m);
    xp_task_set_free(t);

    xp_test_write(path, "{\"prompt\":\"Q?\",\"answer\":\"(B)\"}\n{\"prompt\":\"R\"}\n");
    cr_expect_eq(xp_task_set_load(&t, path, XP_TASK_AUTO, &err), XP_EFORMAT);
    cr_expect(strstr(err.msg, ":2: field \"answer\" is missing"), "%s", err.msg);
    xp_test_write(path, "{\"prompt\":\"Q?\",\"answer\":\"(B)\"}\n{\"prompt\":\"R\",\"answer\":\"C\"}\n");
    cr_assert_eq(xp_task_set_load(&t, path, XP_TASK_AUTO, &err), XP_OK);
    cr_expect_eq(t->kind, XP_TASK_CHOICE);
    xp_task_set_free(t);
    unlink(path);
}
