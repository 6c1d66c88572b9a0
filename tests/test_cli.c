/* The program's conventions, end to end through the built binary: help and version,
 * exit codes (0 ok, 2 usage or bad input), errors on stderr in one format, quiet mode,
 * and synth → inspect → tokenize on a real file. */
#include <cjson/cJSON.h>
#include <string.h>

#include "testutil.h"
#include "xorpatch.h"

static int run(const char *args, const char *in, char **out, char **err)
{
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "NO_COLOR=1 %s %s", xp_test_bin(), args);
    return xp_test_run(cmd, in, out, err);
}

Test(cli, version_and_help)
{
    char *out, *err;
    cr_expect_eq(run("--version", NULL, &out, &err), 0);
    cr_expect(strstr(out, "xorpatch " XP_VERSION), "%s", out);
    free(out), free(err);
    cr_expect_eq(run("--help", NULL, &out, &err), 0);
    cr_expect(strstr(out, "Exit codes: 0 ok, 2 a usage error"), "%s", out);
    cr_expect(strstr(out, "synth") && strstr(out, "inspect") && strstr(out, "tokenize"));
    free(out), free(err);
    cr_expect_eq(run("", NULL, &out, &err), 2);
    cr_expect(strstr(err, "Usage: xorpatch COMMAND"));
    free(out), free(err);
}

Test(cli, every_command_has_help_that_names_its_options)
{
    const char *cmds[] = {"synth", "inspect", "tokenize"};
    const char *must[] = {"--shape", "--json", "--special"};
    for (int i = 0; i < 3; i++) {
        char args[64], *out1, *out2, *err;
        snprintf(args, sizeof args, "%s --help", cmds[i]);
        cr_expect_eq(run(args, NULL, &out1, &err), 0, "%s", args);
        free(err);
        snprintf(args, sizeof args, "help %s", cmds[i]);
        cr_expect_eq(run(args, NULL, &out2, &err), 0, "%s", args);
        free(err);
        char head[64];
        snprintf(head, sizeof head, "Usage: xorpatch %s", cmds[i]);
        cr_expect(strncmp(out1, head, strlen(head)) == 0, "%s", out1);
        cr_expect(strstr(out1, must[i]), "%s lacks %s", cmds[i], must[i]);
        cr_expect_str_eq(out1, out2);
        free(out1), free(out2);
    }
}

/* Every command that takes --kernel names, in its help, every kernel this CPU offers
 * (under qemu-aarch64 the Arm ones). */
Test(cli, kernel_help_names_the_kernels_this_cpu_offers)
{
    const char *cmds[] = {"generate", "logits", "perplexity", "search", "audit", "eval",
                          "bench-task"};
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        char args[64], *out, *err;
        snprintf(args, sizeof args, "%s --help", cmds[i]);
        cr_assert_eq(run(args, NULL, &out, &err), 0, "%s", args);
        const char *line = strstr(out, "--kernel NAME");
        cr_assert(line, "%s --help has no --kernel", cmds[i]);
        size_t len = strcspn(line, "\n");
        for (const char *const *k = xp_kernels_available(); *k; k++) {
            const char *at = strstr(line, *k);
            cr_expect(at && at < line + len, "%s --help does not name kernel %s: %.*s", cmds[i],
                      *k, (int)len, line);
        }
        free(out), free(err);
    }
}

Test(cli, usage_errors_exit_2_with_a_pointer_to_help)
{
    struct { const char *args, *msg; } cases[] = {
        {"frobnicate", "unknown command 'frobnicate'"},
        {"synth --shape tiny", "-o OUT.gguf is required"},
        {"synth --shape nope -o /tmp/x.gguf", "unknown shape 'nope'"},
        {"synth --layers x -o /tmp/x.gguf", "--layers needs a non-negative integer"},
        {"synth --embd 100 -o /tmp/x.gguf", "multiples of 128"},
        {"synth --bogus", "unknown option, or an option without its value: '--bogus'"},
        {"generate -m", "unknown option, or an option without its value: '-m'"},
        {"inspect", "FILE.gguf is required"},
        {"tokenize", "-m MODEL is required"},
        {"help nope", "unknown command 'nope'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *out, *err;
        cr_expect_eq(run(cases[i].args, NULL, &out, &err), 2, "%s", cases[i].args);
        cr_expect(strncmp(err, "xorpatch: error: ", 17) == 0, "%s: %s", cases[i].args, err);
        cr_expect(strstr(err, cases[i].msg), "%s: %s", cases[i].args, err);
        cr_expect(strstr(err, "Try 'xorpatch"), "%s: %s", cases[i].args, err);
        free(out), free(err);
    }
}

Test(cli, bad_input_exits_2)
{
    char *out, *err;
    cr_expect_eq(run("inspect /nonexistent/model.gguf", NULL, &out, &err), 2);
    cr_expect(strstr(err, "xorpatch: error: /nonexistent/model.gguf: cannot open"), "%s", err);
    free(out), free(err);
    char path[512];
    xp_test_tmp_path(path, sizeof path, "not-gguf.txt");
    xp_test_write(path, "hello, this is not a model\n");
    char args[2048];
    snprintf(args, sizeof args, "inspect '%s'", path);
    cr_expect_eq(run(args, NULL, &out, &err), 2);
    cr_expect(strstr(err, "offset 0: magic"), "%s", err);
    free(out), free(err);
    snprintf(args, sizeof args, "synth --tokenizer '%s' -o '%s.gguf'", path, path);
    cr_expect_eq(run(args, NULL, &out, &err), 2, "%s", err);
    free(out), free(err);
    unlink(path);
}

Test(cli, inspect_json_describes_the_model_and_its_fingerprint)
{
    char model[512], args[1024], *out, *err;
    xp_test_tiny_model(model, sizeof model);
    snprintf(args, sizeof args, "inspect --json '%s'", model);
    cr_assert_eq(run(args, NULL, &out, &err), 0, "%s", err);
    cJSON *j = cJSON_Parse(out);
    cr_assert(j, "not JSON: %s", out);
    cr_expect_str_eq(cJSON_GetObjectItem(j, "architecture")->valuestring, "qwen3");
    struct { const char *key; double v; } nums[] = {
        {"n_layer", 4}, {"n_embd", 256}, {"n_ff", 768}, {"n_head", 4},
        {"n_head_kv", 2}, {"head_dim", 64}, {"n_vocab", 151669}};
    for (size_t i = 0; i < sizeof nums / sizeof nums[0]; i++) {
        cJSON *e = cJSON_GetObjectItem(j, nums[i].key);
        cr_assert(cJSON_IsNumber(e), "%s", nums[i].key);
        cr_expect_eq(e->valuedouble, nums[i].v, "%s", nums[i].key);
    }
    cr_expect(cJSON_IsTrue(cJSON_GetObjectItem(j, "tied_output")));
    char sha[65];
    xp_err e = {0};
    cr_assert_eq(xp_sha256_file(model, sha, &e), XP_OK);
    cr_expect_str_eq(cJSON_GetObjectItem(j, "sha256")->valuestring, sha);
    cJSON *tensors = cJSON_GetObjectItem(j, "tensors");
    cr_expect_eq(cJSON_GetArraySize(tensors), 2 + 4 * 11);
    cJSON *first = cJSON_GetArrayItem(tensors, 0);
    cr_expect_str_eq(cJSON_GetObjectItem(first, "name")->valuestring, "token_embd.weight");
    cr_expect_str_eq(cJSON_GetObjectItem(first, "type")->valuestring, "q1_0");
    cr_expect_eq(cJSON_GetArrayItem(cJSON_GetObjectItem(first, "shape"), 1)->valuedouble, 151669);
    cr_expect_eq(cJSON_GetObjectItem(first, "bytes")->valuedouble, 151669.0 * 2 * 18);
    cr_expect_eq(cJSON_GetObjectItem(first, "offset")->valuedouble, 0);
    cJSON_Delete(j);
    free(out), free(err);

    /* the sha256 is the one any other tool computes */
    snprintf(args, sizeof args, "sha256sum '%s'", model);
    cr_assert_eq(xp_test_run(args, NULL, &out, NULL), 0);
    cr_expect(strncmp(out, sha, 64) == 0, "%s vs %s", out, sha);
    free(out);

    snprintf(args, sizeof args, "inspect '%s'", model);
    cr_assert_eq(run(args, NULL, &out, &err), 0, "%s", err);
    cr_expect(strstr(out, "4 layers, n_embd 256, n_ff 768, heads 4 / KV 2, head_dim 64"), "%s",
              out);
    cr_expect(strstr(out, "blk.3.ffn_down.weight"));
    cr_expect(strstr(out, "151669 tokens (151643 normal, 20 control, 6 user-defined)"), "%s", out);
    free(out), free(err);
}

Test(cli, synth_quiet_prints_nothing_and_reports_otherwise)
{
    char path[512], args[1024], *out, *err;
    xp_test_tmp_path(path, sizeof path, "cli-synth.gguf");
    snprintf(args, sizeof args, "synth --layers 1 --seed 5 -q -o '%s'", path);
    cr_assert_eq(run(args, NULL, &out, &err), 0, "%s", err);
    cr_expect_str_empty(out);
    cr_expect_str_empty(err);
    free(out), free(err);
    snprintf(args, sizeof args, "synth --layers 1 --seed 5 -o '%s'", path);
    cr_assert_eq(run(args, NULL, &out, &err), 0, "%s", err);
    cr_expect(strstr(err, "1 layers") && strstr(err, "seed 5"), "%s", err);
    cr_expect(!strchr(err, '\033'), "no colour without a terminal");
    free(out), free(err);
    unlink(path);
}

Test(cli, tokenize_lines_round_trip)
{
    char model[512], args[1024], *out, *err;
    xp_test_tiny_model(model, sizeof model);
    snprintf(args, sizeof args, "tokenize -m '%s'", model);
    const char *in = "\"Hello world\"\n\"12345\"\n\"\"\n";
    cr_assert_eq(run(args, in, &out, &err), 0, "%s", err);
    cr_expect_str_eq(out, "[9707,1879]\n[16,17,18,19,20]\n[]\n");
    free(out), free(err);
    /* without --special, a special token's text is plain text */
    cr_assert_eq(run(args, "\"<|im_end|>\"\n", &out, &err), 0, "%s", err);
    cr_expect(out[0] == '[' && !strstr(out, "151645") && strchr(out, ','), "%s", out);
    free(out), free(err);
    snprintf(args, sizeof args, "tokenize -m '%s' --special", model);
    cr_assert_eq(run(args, "\"<|im_end|>x\"\n", &out, &err), 0, "%s", err);
    cr_expect_str_eq(out, "[151645,87]\n");
    free(out), free(err);
    snprintf(args, sizeof args, "tokenize -m '%s' --decode", model);
    cr_assert_eq(run(args, "[9707,1879]\n[151645]\n[]\n", &out, &err), 0, "%s", err);
    cr_expect_str_eq(out, "\"Hello world\"\n\"<|im_end|>\"\n\"\"\n");
    free(out), free(err);
    snprintf(args, sizeof args, "tokenize -m '%s'", model);
    cr_expect_eq(run(args, "\"ok\"\n{not json\n", &out, &err), 2);
    cr_expect(strstr(err, "stdin line 2: not valid JSON"), "%s", err);
    free(out), free(err);
    snprintf(args, sizeof args, "tokenize -m '%s' --decode", model);
    cr_expect_eq(run(args, "[1, 999999]\n", &out, &err), 2);
    cr_expect(strstr(err, "stdin line 1: element 1 is not a token id"), "%s", err);
    free(out), free(err);
}
