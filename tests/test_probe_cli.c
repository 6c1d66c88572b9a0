/* The probe commands end to end through the built binary: audit, eval and bench-task
 * exit codes, their documented --json shapes and the numbers in them, the dead probes of
 * the Bankai fixtures under the legacy rule, and errors that name the probe and field. */
#include <cjson/cJSON.h>
#include <string.h>

#include "testutil.h"
#include "xorpatch.h"

static int run(const char *args, char **out, char **err)
{
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "NO_COLOR=1 OMP_WAIT_POLICY=passive %s %.3900s", xp_test_bin(), args);
    return xp_test_run(cmd, NULL, out, err);
}

static const char probes_json[] =
    "[{\"prompt\":\"d/dx [x^4 + 3x^2] =\",\"correct\":\" 4x^3 + 6x\",\"wrong\":\" 4x^3 + 3x\","
    "\"name\":\"pd\",\"category\":\"poly\"},"
    "{\"prompt\":\"Is 97 prime?\",\"correct\":\" Yes\",\"wrong\":\" No\",\"name\":\"p1\","
    "\"category\":\"prime\"},"
    "{\"prompt\":\"Is 89 prime?\",\"correct\":\" Yes\",\"wrong\":\" No\",\"name\":\"p2\","
    "\"category\":\"prime\"}]";

/* A patch that changes the tiny model's behaviour: many rows of one MLP projection. */
static void write_patch(const char *path)
{
    xp_patch *p;
    xp_err err = {0};
    cr_assert_eq(xp_patch_new(&p, &err), XP_OK);
    p->name = strdup("test-rows");
    for (int r = 0; r < 300; r++)
        cr_assert_eq(xp_patch_add_row(p, "blk.1.ffn_gate.weight", r, &err), XP_OK);
    cr_assert_eq(xp_patch_normalize(p, &err), XP_OK, "%s", err.msg);
    cr_assert_eq(xp_patch_write(p, XP_PATCH_JSON, path, &err), XP_OK, "%s", err.msg);
    xp_patch_free(p);
}

static cJSON *item(const cJSON *o, const char *k) { return cJSON_GetObjectItemCaseSensitive(o, k); }

Test(probe_cli, audit_json_has_the_documented_shape)
{
    char model[512], probes[512], args[4096], *out, *err;
    xp_test_tiny_model(model, sizeof model);
    xp_test_tmp_path(probes, sizeof probes, "probes.json");
    xp_test_write(probes, probes_json);
    snprintf(args, sizeof args, "audit -m '%s' --probes '%s' --json -q", model, probes);
    cr_assert_eq(run(args, &out, &err), 0, "%s", err);
    cJSON *j = cJSON_Parse(out);
    cr_assert(j, "%s", out);
    cr_expect_str_eq(item(j, "metric")->valuestring, "seq_logprob");
    cr_expect_eq(item(j, "n")->valueint, 3);
    cJSON *ps = item(j, "probes");
    cr_assert_eq(cJSON_GetArraySize(ps), 3);
    const char *keys[] = {"name", "category", "role", "dead", "dead_token_gap", "distractor_rank",
                          "gap", "measured", "emitted", "emitted_measured", "output", "solved"};
    for (int i = 0; i < 3; i++)
        for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++)
            cr_expect_not_null(item(cJSON_GetArrayItem(ps, i), keys[k]), "probe %d lacks %s", i, keys[k]);
    cJSON *p0 = cJSON_GetArrayItem(ps, 0);
    cr_expect_str_eq(item(p0, "name")->valuestring, "pd");
    cr_expect(cJSON_IsFalse(item(p0, "dead")));
    cr_expect(cJSON_IsTrue(item(p0, "dead_token_gap")), "\" 4x^3...\" twice starts with \" \"");
    cr_expect(cJSON_IsString(item(p0, "output")));
    cr_expect(cJSON_IsNumber(item(cJSON_GetArrayItem(ps, 1), "distractor_rank")));
    cJSON *cats = item(j, "categories");
    cr_assert_eq(cJSON_GetArraySize(cats), 2);
    cJSON *prime = cJSON_GetArrayItem(cats, 1);
    cr_expect_eq(item(prime, "contrasts")->valueint, 1);
    cr_expect(cJSON_IsTrue(item(prime, "one_contrast")), "Yes/No twice is one contrast repeated");
    cJSON *sum = item(j, "summary");
    cr_expect_eq(item(sum, "dead")->valueint, 0);
    cr_expect_eq(item(sum, "dead_token_gap")->valueint, 1);
    cr_expect_eq(item(sum, "one_contrast_categories")->valueint, 1);
    cr_expect_eq(item(sum, "contrasts")->valueint, 2);
    cJSON_Delete(j);
    free(out), free(err);

    /* the text report says the same in words */
    snprintf(args, sizeof args, "audit -m '%s' --probes '%s' --no-generate", model, probes);
    cr_assert_eq(run(args, &out, &err), 0, "%s", err);
    cr_expect(strstr(out, "ONE CONTRAST REPEATED"), "%s", out);
    cr_expect(strstr(out, "legacy token_gap rule: 1;"), "%s", out);
    free(out), free(err);
    unlink(probes);
}

Test(probe_cli, audit_counts_the_dead_probes_of_the_bankai_fixtures)
{
    XP_NEED_SHARED(shared);
    char model[512], args[4096], *out, *err;
    xp_test_tiny_model(model, sizeof model);
    const char *files[] = {"calculus_train.json", "calculus_heldout.json"};
    const int dead[] = {38, 18};
    for (int f = 0; f < 2; f++) {
        snprintf(args, sizeof args, "audit -m '%s' --probes '%s/fixtures/probes/bankai/%s' "
                 "--metric token_gap --no-generate --json -q", model, shared, files[f]);
        cr_assert_eq(run(args, &out, &err), 0, "%s", err);
        cJSON *j = cJSON_Parse(out);
        cr_assert(j);
        cJSON *sum = item(j, "summary");
        cr_expect_eq(item(sum, "dead")->valueint, dead[f], "%s", files[f]);
        cr_expect_eq(item(sum, "dead_token_gap")->valueint, dead[f]);
        cJSON *p;
        int zero = 0;
        cJSON_ArrayForEach(p, item(j, "probes"))
            zero += cJSON_IsTrue(item(p, "dead")) && item(p, "gap")->valuedouble == 0.0;
        cr_expect_eq(zero, dead[f], "a dead probe's token gap is exactly 0");
        cJSON_Delete(j);
        free(out), free(err);
        snprintf(args, sizeof args, "audit -m '%s' --probes '%s/fixtures/probes/bankai/%s' "
                 "--no-generate --json -q", model, shared, files[f]);
        cr_assert_eq(run(args, &out, &err), 0, "%s", err);
        j = cJSON_Parse(out);
        cr_expect_eq(item(item(j, "summary"), "dead")->valueint, 0, "seq_logprob separates them");
        cJSON_Delete(j);
        free(out), free(err);
    }
}

Test(probe_cli, eval_json_with_a_patch_and_held_out_probes)
{
    char model[512], probes[512], patch[512], args[4096], *out, *err;
    xp_test_tiny_model(model, sizeof model);
    xp_test_tmp_path(probes, sizeof probes, "probes.json");
    xp_test_tmp_path(patch, sizeof patch, "patch.json");
    xp_test_write(probes, probes_json);
    write_patch(patch);
    snprintf(args, sizeof args, "eval -m '%s' --probes '%s' --split name=p2 -p '%s' --json -q",
             model, probes, patch);
    cr_assert_eq(run(args, &out, &err), 0, "%s", err);
    cJSON *j = cJSON_Parse(out);
    cr_assert(j, "%s", out);
    cr_expect_str_eq(cJSON_GetArrayItem(item(j, "patches"), 0)->valuestring, "test-rows");
    cJSON *sets = item(j, "sets");
    cr_assert_eq(cJSON_GetArraySize(sets), 2);
    cJSON *train = cJSON_GetArrayItem(sets, 0), *held = cJSON_GetArrayItem(sets, 1);
    cr_expect_str_eq(item(train, "split")->valuestring, "train");
    cr_expect_eq(item(train, "n")->valueint, 2);
    cr_expect_eq(item(held, "n")->valueint, 1);
    cr_expect_str_eq(item(cJSON_GetArrayItem(item(held, "probes"), 0), "name")->valuestring, "p2");
    int moved = 0;
    cJSON *p;
    cJSON_ArrayForEach(p, item(train, "probes"))
    {
        cJSON *gap = item(p, "gap"), *right = item(p, "right");
        cr_expect_eq(cJSON_GetArraySize(gap), 2);
        cr_expect(cJSON_IsString(cJSON_GetArrayItem(item(p, "output"), 1)));
        moved += cJSON_GetArrayItem(gap, 0)->valuedouble != cJSON_GetArrayItem(gap, 1)->valuedouble;
        const char *oc = item(p, "outcome")->valuestring;
        bool b = cJSON_IsTrue(cJSON_GetArrayItem(right, 0)), a = cJSON_IsTrue(cJSON_GetArrayItem(right, 1));
        cr_expect_str_eq(oc, b ? (a ? "stayed_right" : "broke") : (a ? "fixed" : "stayed_wrong"));
        cr_expect(cJSON_IsNull(item(p, "verbatim")));
    }
    cr_expect(moved > 0, "the patch moves the gaps");
    cJSON *sum = item(train, "summary");
    cr_expect_eq(item(sum, "n")->valueint, 2);
    cr_expect_eq(item(sum, "fixed")->valueint + item(sum, "broke")->valueint +
                 item(sum, "stayed_right")->valueint + item(sum, "stayed_wrong")->valueint, 2);
    cJSON *acc = item(item(sum, "accuracy"), "base");
    cr_expect(item(acc, "lo")->valuedouble <= item(acc, "rate")->valuedouble);
    cr_expect(cJSON_IsNumber(item(sum, "mcnemar_p")));
    cr_expect(cJSON_IsNumber(item(item(sum, "diff"), "hi")));
    cr_expect_eq(cJSON_GetArraySize(item(train, "categories")), 2);
    cr_expect(cJSON_IsNull(item(train, "verbatim")));
    cJSON_Delete(j);
    free(out), free(err);

    /* the text report */
    snprintf(args, sizeof args, "eval -m '%s' --probes '%s' -p '%s' --per-probe", model, probes,
             patch);
    cr_assert_eq(run(args, &out, &err), 0, "%s", err);
    cr_expect(strstr(out, "exact McNemar p ="), "%s", out);
    cr_expect(strstr(out, "95% CI"), "%s", out);
    free(out), free(err);
    unlink(probes), unlink(patch);
}

Test(probe_cli, eval_verbatim_cross_table)
{
    char model[512], probes[512], args[4096], *out, *err;
    xp_test_tiny_model(model, sizeof model);
    xp_test_tmp_path(probes, sizeof probes, "verbatim.json");
    xp_test_write(probes, "{\"probes\":[{\"name\":\"v1\",\"domain\":\"legal\",\"system\":\"Extract.\","
               "\"prompt\":\"Passage: \\\"A b c. D e f.\\\"\",\"correct_token\":\"A\","
               "\"wrong_token\":\"D\",\"target_span\":\"A b c.\",\"passage\":\"A b c. D e f.\"}]}");
    snprintf(args, sizeof args, "eval -m '%s' --probes '%s' --max-tokens 4 --json -q", model, probes);
    cr_assert_eq(run(args, &out, &err), 0, "%s", err);
    cJSON *j = cJSON_Parse(out);
    cr_assert(j, "%s", out);
    cJSON *set = cJSON_GetArrayItem(item(j, "sets"), 0);
    cJSON *v = item(set, "verbatim");
    cr_assert(cJSON_IsObject(v), "%s", out);
    cr_expect_str_eq(cJSON_GetArrayItem(item(v, "classes"), 3)->valuestring, "OTHER");
    int total = 0;
    cJSON *row, *cell;
    cJSON_ArrayForEach(row, item(v, "table")) cJSON_ArrayForEach(cell, row) total += cell->valueint;
    cr_expect_eq(total, 1);
    cJSON_Delete(j);
    free(out), free(err);
    unlink(probes);
}

Test(probe_cli, bench_task_json)
{
    char model[512], tasks[512], patch[512], args[4096], *out, *err;
    xp_test_tiny_model(model, sizeof model);
    xp_test_tmp_path(tasks, sizeof tasks, "tasks.jsonl");
    xp_test_tmp_path(patch, sizeof patch, "patch.json");
    write_patch(patch);
    xp_test_write(tasks, "{\"prompt\":\"Q: 2+2?\\nA:\",\"answer\":\"4\"}\n"
                      "{\"prompt\":\"Q: 3+4?\\nA:\",\"answer\":\"#### 7\"}\n"
                      "{\"prompt\":\"Q: 5+5?\\nA:\",\"answer\":10}\n");
    snprintf(args, sizeof args, "bench-task -m '%s' --tasks '%s' -p '%s' -n 4 --limit 2 --json -q",
             model, tasks, patch);
    cr_assert_eq(run(args, &out, &err), 0, "%s", err);
    cJSON *j = cJSON_Parse(out);
    cr_assert(j, "%s", out);
    cr_expect_str_eq(item(j, "kind")->valuestring, "number");
    cr_expect_eq(cJSON_GetArraySize(item(j, "items")), 2);
    cr_expect_eq(item(item(j, "summary"), "n")->valueint, 2);
    cJSON *it = cJSON_GetArrayItem(item(j, "items"), 1);
    cr_expect_str_eq(item(it, "answer")->valuestring, "#### 7");
    cr_expect_eq(cJSON_GetArraySize(item(it, "output")), 2);
    cJSON_Delete(j);
    free(out), free(err);
    snprintf(args, sizeof args, "bench-task -m '%s' --tasks '%s' -n 2", model, tasks);
    cr_assert_eq(run(args, &out, &err), 0, "%s", err);
    cr_expect(strstr(out, "3 tasks scored by number; base only"), "%s", out);
    free(out), free(err);
    unlink(tasks), unlink(patch);
}

Test(probe_cli, errors_name_the_probe_and_field_and_exit_codes_hold)
{
    char model[512], probes[512], args[4096], *out, *err;
    xp_test_tiny_model(model, sizeof model);
    xp_test_tmp_path(probes, sizeof probes, "bad.json");
    xp_test_write(probes, "[{\"prompt\":\"p\",\"correct\":\" 1\",\"wrong\":\" 2\",\"name\":\"ok\"},"
                       "{\"prompt\":\"p\",\"correct\":\" 1\",\"name\":\"broken\"}]");
    struct { const char *fmt; int code; const char *msg;
    } cases[] = {
        {"audit -m '%s' --probes '%s'", 2, "probe \"broken\" has no wrong answer"},
        {"eval -m '%s' --probes '%s'", 2, "probe \"broken\""},
        {"audit -m '%s' --probes '%s' --metric nope", 2, "--metric must be seq_logprob"},
        {"eval -m '%s' --probes '%s' --heldout x --split ratio:0.5", 2, "not both"},
        {"eval -m '%s' --probes '%s' --split color=red", 2, "category, role or name"},
        {"audit -m '%s' --probes '%s' --metric generation --no-generate", 2, "needs the greedy"},
        {"bench-task -m '%s' --tasks '%s'", 2, "not a JSON object"},
        {"bench-task -m '%s' --tasks '%s' --kind maybe", 2, "--kind must be"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(args, sizeof args, cases[i].fmt, model, probes);
        cr_expect_eq(run(args, &out, &err), cases[i].code, "%s: %s", args, err);
        cr_expect(strstr(err, cases[i].msg), "%s: %s", args, err);
        cr_expect(strncmp(err, "xorpatch: error: ", 17) == 0, "%s", err);
        free(out), free(err);
    }
    cr_expect_eq(run("audit --probes x", &out, &err), 2);
    cr_expect(strstr(err, "-m MODEL and --probes FILE are required"), "%s", err);
    free(out), free(err);
    const char *cmds[] = {"audit", "eval", "bench-task"};
    for (int i = 0; i < 3; i++) {
        snprintf(args, sizeof args, "help %s", cmds[i]);
        cr_expect_eq(run(args, &out, &err), 0);
        cr_expect(strstr(out, "--json") && strstr(out, "Usage: xorpatch"), "%s", out);
        free(out), free(err);
    }
    cr_expect_eq(run("--help", &out, &err), 0);
    cr_expect(strstr(out, "audit") && strstr(out, "bench-task"), "%s", out);
    free(out), free(err);
    unlink(probes);
}
