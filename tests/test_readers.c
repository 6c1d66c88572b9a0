/* The patch readers at their edges, through the program as a user runs it: a flip listed
 * twice is refused by every reader (it would cancel itself), a NUL escaped in a JSON
 * string is refused naming its field, a truncated binary patch is reported as binary,
 * Neagari's minimal list of [layer, projection, group] triples is read, shown, converted
 * and applied, generation says when -n is more than the context holds, a search that
 * keeps no flip writes its record (a checkpoint without flips, which apply refuses),
 * show and stack say what they cannot know and count flips that cancel inside one
 * file, and text that is not valid UTF-8 in a patch or a probe file is refused. */
#include <string.h>
#include <sys/stat.h>

#include "test_patch_util.h"

#define FMT(buf, ...)                                                                              \
    cr_assert_lt(snprintf(buf, sizeof buf, __VA_ARGS__), (int)sizeof buf, "command too long")

/* Runs `xorpatch ARGS`, expects its exit code and (when given) a phrase on stdout+stderr;
 * returns stdout+stderr (malloc'd). */
static char *run_expect(const char *args, int code, const char *needle)
{
    char *cmd = malloc(strlen(args) + 600), *out, *err;
    sprintf(cmd, "NO_COLOR=1 %.500s %s", xp_test_bin(), args);
    int rc = xp_test_run(cmd, NULL, &out, &err);
    free(cmd);
    cr_expect_eq(rc, code, "`xorpatch %s` exited %d, expected %d\n%s%s", args, rc, code, out, err);
    size_t n = strlen(out) + strlen(err);
    char *all = malloc(n + 1);
    strcpy(all, out);
    strcat(all, err);
    free(out), free(err);
    if (needle)
        cr_expect(strstr(all, needle), "`xorpatch %s` lacks '%s':\n%s", args, needle, all);
    return all;
}

static void expect_cli(const char *args, int code, const char *needle)
{
    free(run_expect(args, code, needle));
}

/* A fresh temporary file holding text, with the given extension. */
static void tmp_file(char *out, size_t size, const char *stem, const char *ext, const char *text)
{
    char base[400];
    xp_test_tmp_path(base, sizeof base, stem);
    snprintf(out, size, "%s%s", base, ext);
    if (text)
        xp_test_write(out, text);
}

/* `show FILE` refuses the file (exit 2) with every phrase of needles (NULL-ended). */
static void expect_show_refused(const char *text, const char *ext, const char *const *needles)
{
    char path[512], args[700];
    tmp_file(path, sizeof path, "reader", ext, text);
    FMT(args, "show '%s'", path);
    char *all = run_expect(args, 2, path);
    for (size_t i = 0; needles[i]; i++)
        cr_expect(strstr(all, needles[i]), "show of %s lacks '%s':\n%s", text, needles[i], all);
    free(all);
    unlink(path);
}

/* ---- 4f: a flip listed twice, a NUL in a string ----------------------------------- */

Test(readers, a_flip_listed_twice_is_refused_by_every_json_reader)
{
    static const char *const own[] = {
        "{\"format\":\"xorpatch/1\",\"tensors\":{\"blk.0.ffn_up.weight\":{\"rows\":[31,5,31]}}}",
        "{\"format\":\"xorpatch/1\",\"tensors\":{\"blk.0.ffn_up.weight\":"
        "{\"scale_bits\":[[4,9],[4,9]]}}}",
        "{\"format\":\"xorpatch/1\",\"tensors\":{\"blk.0.ffn_up.weight\":"
        "{\"masks\":[[2,\"0f000000000000000000000000000000\"],"
        "[2,\"0f000000000000000000000000000000\"]]}}}",
    };
    static const char *const what[] = {"row 31", "scale bit 9 of block 4", "mask 2"};
    for (size_t i = 0; i < 3; i++) {
        const char *needles[] = {"blk.0.ffn_up.weight", what[i], "listed twice", NULL};
        expect_show_refused(own[i], ".json", needles);
    }
    /* Bankai v1 (also with a group), Neagari v2 under two spellings of one projection */
    const char *bankai[] = {"blk.1.ffn_up.weight row 3", "listed twice", NULL};
    expect_show_refused("{\"format\":\"bankai_row_xor_v1\",\"flips\":[{\"layer\":1,\"proj\":"
                        "\"up_proj\",\"row\":3},{\"layer\":1,\"proj\":\"up_proj\",\"row\":3}]}",
                        ".json", bankai);
    const char *group[] = {"blk.1.ffn_up.weight", "listed twice", NULL};
    expect_show_refused("{\"version\":1,\"flips\":[{\"layer\":1,\"proj\":\"up_proj\",\"row\":3,"
                        "\"group\":1},{\"layer\":1,\"proj\":\"ffn_up\",\"row\":3,\"group\":1}]}",
                        ".json", group);
    const char *neagari[] = {"blk.1.ffn_gate.weight block 7", "listed twice", NULL};
    expect_show_refused("{\"version\":2,\"flips\":[{\"layer\":1,\"proj\":\"ffn_gate.weight\","
                        "\"group\":7,\"type\":\"group\"},{\"layer\":1,\"proj\":\"ffn_gate\","
                        "\"group\":7}]}",
                        ".json", neagari);
    /* different flips on one block are not repeats: a block and a scale bit of it */
    char path[512], args[700];
    tmp_file(path, sizeof path, "reader", ".json",
             "{\"version\":2,\"flips\":[{\"layer\":1,\"proj\":\"ffn_gate.weight\",\"group\":7},"
             "{\"layer\":1,\"proj\":\"ffn_gate.weight\",\"group\":7,\"type\":\"scale\","
             "\"bit\":3}]}");
    FMT(args, "show '%s'", path);
    expect_cli(args, 0, "flips         2:");
    unlink(path);
}

Test(readers, a_nul_in_a_json_string_is_refused_naming_the_field)
{
    const char *name[] = {"\"name\"", "NUL", "line 1", NULL};
    expect_show_refused("{\"format\":\"xorpatch/1\",\"name\":\"ab\\u0000cd\",\"tensors\":"
                        "{\"blk.0.ffn_up.weight\":{\"rows\":[3]}}}",
                        ".json", name);
    const char *proj[] = {"\"proj\"", "NUL", NULL};
    expect_show_refused("{\"version\":1,\"flips\":[{\"layer\":1,\"proj\":\"up_proj\\u0000x\","
                        "\"row\":3}]}",
                        ".json", proj);
    const char *key[] = {"the key", "NUL", NULL};
    expect_show_refused("{\"format\":\"xorpatch/1\",\"tensors\":"
                        "{\"blk.0.ffn_up.weight\\u0000\":{\"rows\":[3]}}}",
                        ".json", key);
    /* an escaped backslash before u0000 is no NUL */
    char path[512], args[700];
    tmp_file(path, sizeof path, "reader", ".json",
             "{\"format\":\"xorpatch/1\",\"name\":\"a\\\\u0000\",\"tensors\":"
             "{\"blk.0.ffn_up.weight\":{\"rows\":[3]}}}");
    FMT(args, "show '%s'", path);
    expect_cli(args, 0, "a\\u0000");
    unlink(path);
}

Test(readers, generate_says_when_n_is_more_than_the_context_holds)
{
    /* the shipped tiny model: its context is 1,024 tokens */
    char model[512];
    snprintf(model, sizeof model, "%s/models/tiny-bonsai.gguf", xp_test_env("XP_ROOT", "."));
    xp_model *m;
    xp_err err = {0};
    cr_assert_eq(xp_model_open(&m, model, &err), XP_OK, "%s", err.msg);
    uint32_t n_ctx = xp_model_shape(m)->n_ctx;
    xp_model_close(m);
    cr_assert_leq(n_ctx, 4096, "a short context, so the prompt is quick to read");
    /* n_ctx - 10 one-token words, then -n 100 */
    char *prompt = malloc(2 * (size_t)n_ctx + 1), text[512], args[1500];
    strcpy(prompt, "a");
    for (uint32_t i = 1; i < n_ctx - 10; i++)
        strcat(prompt, " a");
    tmp_file(text, sizeof text, "prompt", ".txt", prompt);
    FMT(args, "generate -m '%s' -p \"$(cat '%s')\" -n 100 -t 1", model, text);
    char want[160];
    snprintf(want, sizeof want,
             "-n 100: the model's context holds %u tokens and the prompt takes %u, so at most "
             "10 new tokens follow it",
             n_ctx, n_ctx - 10);
    free(run_expect(args, 0, want));
    free(prompt);
    unlink(text);
}

/* ---- 4b: a truncated binary patch ------------------------------------------------- */

Test(readers, a_truncated_binary_patch_is_reported_as_binary)
{
    char json[512], xpb[512], cut[512], args[1600];
    tmp_file(json, sizeof json, "whole", ".json",
             "{\"format\":\"xorpatch/1\",\"tensors\":{\"blk.0.ffn_up.weight\":{\"rows\":[31,5]},"
             "\"blk.0.ffn_gate.weight\":{\"blocks\":[3]}}}");
    tmp_file(xpb, sizeof xpb, "whole", ".xpb", NULL);
    FMT(args, "convert '%s' -o '%s' -q", json, xpb);
    expect_cli(args, 0, NULL);
    struct stat st;
    cr_assert_eq(stat(xpb, &st), 0);
    size_t cuts[] = {0, 3, 7, 12, 20, (size_t)st.st_size - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof *cuts; i++) {
        tmp_file(cut, sizeof cut, "cut", ".xpb", NULL);
        FMT(args, "head -c %zu '%s' > '%s'", cuts[i], xpb, cut);
        cr_assert_eq(system(args), 0);
        FMT(args, "show '%s'", cut);
        char *all = run_expect(args, 2, cut);
        cr_expect(!strstr(all, "JSON"), "cut at %zu: %s", cuts[i], all);
        cr_expect(strstr(all, "binary"), "cut at %zu does not name the binary format: %s", cuts[i],
                  all);
        cr_expect(cuts[i] == 0 || strstr(all, "cut short"), "cut at %zu: %s", cuts[i], all);
        free(all);
        unlink(cut);
    }
    unlink(json), unlink(xpb);
}

/* ---- 6: Neagari's list of [layer, projection, group] triples ---------------------- */

/* The flips_sha256 `show` prints for a patch file. */
static void show_id(const char *path, char id[65])
{
    char args[700];
    FMT(args, "show '%s'", path);
    char *all = run_expect(args, 0, "flips_sha256");
    const char *at = strstr(all, "flips_sha256");
    cr_assert(at && sscanf(at, "flips_sha256 %64s", id) == 1, "%s", all);
    free(all);
}

Test(readers, neagari_list_is_read_shown_converted_and_applied)
{
    char model[512], list[512], own[512], back[512], out[512], args[2200];
    xp_test_small_model(model, sizeof model);
    /* ffn_gate is [128, 256] (1 block a row), ffn_down [256, 128] (2 blocks a row) */
    tmp_file(list, sizeof list, "list", ".json",
             "[[0, \"ffn_gate.weight\", 5],\n [0, \"ffn_up\", 2],\n"
             " [0, \"ffn_down.weight\", 255]]\n");
    FMT(args, "show '%s'", list);
    char *all = run_expect(args, 0, "neagari-list");
    cr_expect(strstr(all, "3: 0 rows, 3 blocks"), "%s", all);
    free(all);
    /* bound to the model, a block that is a whole row (gate, up) is that row */
    FMT(args, "show '%s' -m '%s'", list, model);
    expect_cli(args, 0, "3: 2 rows, 1 blocks");
    /* convert writes the project's own format from it, recording where it came from */
    tmp_file(own, sizeof own, "from-list", ".json", NULL);
    FMT(args, "convert '%s' -o '%s'", list, own);
    expect_cli(args, 0, "xorpatch, 3 flips");
    char *text = xp_test_slurp(own);
    cr_assert_not_null(text, "%s is not written", own);
    cr_expect(strstr(text, "\"xorpatch/1\"") && strstr(text, "\"neagari-list\""), "%s", text);
    free(text);
    char a[65], b[65], c[65];
    show_id(list, a);
    show_id(own, b);
    cr_expect_str_eq(a, b, "one patch, one identity in both formats");
    /* and back: a list again */
    tmp_file(back, sizeof back, "back", ".json", NULL);
    FMT(args, "convert '%s' --to neagari-list -o '%s'", own, back);
    expect_cli(args, 0, "neagari-list, 3 flips");
    text = xp_test_slurp(back);
    cr_assert_not_null(text, "%s is not written", back);
    cr_expect(strstr(text, "[0, \"ffn_gate.weight\", 5]"), "%s", text);
    free(text);
    show_id(back, c);
    cr_expect_str_eq(a, c);
    /* applied on a synthetic model, and verified bit for bit */
    tmp_file(out, sizeof out, "list-applied", ".gguf", NULL);
    FMT(args, "apply -m '%s' -p '%s' -o '%s'", model, list, out);
    expect_cli(args, 0, "3 flips");
    FMT(args, "verify -m '%s' -b '%s' -p '%s'", out, model, list);
    expect_cli(args, 0, NULL);
    unlink(list), unlink(own), unlink(back), unlink(out);
}

Test(readers, neagari_list_takes_rows_only_as_their_blocks)
{
    char model[512], rows[512], list[512], args[2200];
    xp_test_small_model(model, sizeof model);
    tmp_file(rows, sizeof rows, "rows", ".json",
             "{\"format\":\"xorpatch/1\",\"tensors\":{\"blk.0.ffn_down.weight\":{\"rows\":[3]},"
             "\"blk.0.ffn_up.weight\":{\"scale_bits\":[[1,4]]}}}");
    tmp_file(list, sizeof list, "list", ".json", NULL);
    FMT(args, "convert '%s' --to neagari-list -o '%s'", rows, list);
    expect_cli(args, 2, "give the model");
    tmp_file(rows, sizeof rows, "rows", ".json",
             "{\"format\":\"xorpatch/1\",\"tensors\":{\"blk.0.ffn_down.weight\":{\"rows\":[3]}}}");
    FMT(args, "convert '%s' --to neagari-list -m '%s' -o '%s'", rows, model, list);
    expect_cli(args, 0, "neagari-list");
    char *text = xp_test_slurp(list);
    cr_assert_not_null(text, "%s is not written", list);
    cr_expect(strstr(text, "[[0, \"ffn_down.weight\", 6], [0, \"ffn_down.weight\", 7]]"), "%s",
              text);
    free(text);
    unlink(rows), unlink(list);
}

Test(readers, malformed_triples_are_refused_clearly)
{
    const char *arity[] = {"[1]: expected a triple [layer, \"ffn_gate.weight\", group], found 2",
                           NULL};
    expect_show_refused("[[0, \"ffn_gate.weight\", 1], [0, \"ffn_gate.weight\"]]", ".json", arity);
    const char *four[] = {"[0]: expected a triple", "found 4 elements", NULL};
    expect_show_refused("[[0, \"ffn_gate.weight\", 1, 2]]", ".json", four);
    const char *value[] = {"[1]: expected a triple", "another JSON value", NULL};
    expect_show_refused("[[0, \"ffn_gate.weight\", 1], 7]", ".json", value);
    const char *name[] = {"[0][1]: \"mlp.weight\" is not a projection", "ffn_gate.weight", NULL};
    expect_show_refused("[[0, \"mlp.weight\", 1]]", ".json", name);
    const char *mlx[] = {"[0][1]: \"gate_proj\" is not a projection", NULL};
    expect_show_refused("[[0, \"gate_proj\", 1]]", ".json", mlx);
    const char *layer[] = {"[0][0]: the layer must be an integer", NULL};
    expect_show_refused("[[-1, \"ffn_gate.weight\", 1]]", ".json", layer);
    const char *neg[] = {"[0][2]: the group (a block's index in the tensor) must be an integer "
                         "from 0 to",
                         NULL};
    expect_show_refused("[[0, \"ffn_gate.weight\", -3]]", ".json", neg);
    expect_show_refused("[[0, \"ffn_gate.weight\", 2.5]]", ".json", neg);
    expect_show_refused("[[0, \"ffn_gate.weight\", 1e15]]", ".json", neg);
    const char *twice[] = {"flips 0 and 2 are the same flip (blk.3.ffn_up.weight block 9)",
                           "listed twice", NULL};
    expect_show_refused("[[3, \"ffn_up.weight\", 9], [3, \"ffn_up.weight\", 10],"
                        " [3, \"ffn_up\", 9]]",
                        ".json", twice);
    const char *empty[] = {"no flips", NULL};
    expect_show_refused("[]", ".json", empty);
    /* a group beyond the tensor: refused against the model, naming the range */
    char model[512], list[512], out[512], args[2200];
    xp_test_small_model(model, sizeof model);
    tmp_file(list, sizeof list, "list", ".json", "[[0, \"ffn_gate.weight\", 256]]");
    tmp_file(out, sizeof out, "list-applied", ".gguf", NULL);
    FMT(args, "apply -m '%s' -p '%s' -o '%s'", model, list, out);
    expect_cli(args, 2, "block out of range: the tensor has 256 blocks");
    struct stat st;
    cr_expect_neq(stat(out, &st), 0, "nothing written");
    unlink(list);
}

/* ---- 2: a search that keeps no flip ----------------------------------------------- */

/* The shipped tiny model already solves every probe of the behaviour record's deriv set,
 * so a focused search has nothing to fix and keeps no flip. */
static void solved_setup(char model[512], char probes[512])
{
    snprintf(model, 512, "%s/models/tiny-bonsai.gguf", xp_test_env("XP_ROOT", "."));
    snprintf(probes, 512, "%s/tests/behaviour/deriv.json", xp_test_env("XP_ROOT", "."));
}

Test(readers, a_search_that_keeps_no_flip_writes_its_record_which_apply_refuses)
{
    char model[512], probes[512], out[512], args[2200];
    solved_setup(model, probes);
    tmp_file(out, sizeof out, "unkept", ".json", "{\"an\": \"older file\"}\n");
    FMT(args,
        "search -m '%s' --probes '%s' --fitness focused --iterations 3 --no-eval -t 1 "
        "-o '%s'",
        model, probes, out);
    char *all = run_expect(args, 0, "no flip was kept");
    char said[700];
    snprintf(said, sizeof said, "%s is a patch without flips (the search's record", out);
    cr_expect(strstr(all, said), "%s", all);
    cr_expect(strstr(all, "patch       none: no flip was kept"), "%s", all);
    free(all);
    /* the older file is replaced by the search's record: no stale patch beside its log */
    char *text = xp_test_slurp(out);
    cr_expect(text && !strstr(text, "older file") && strstr(text, "\"run_sha256\""), "%s", text);
    free(text);
    FMT(args, "show '%s'", out);
    expect_cli(args, 0, "flips         0:");
    char applied[600];
    snprintf(applied, sizeof applied, "%s.gguf", out);
    FMT(args, "apply -m '%s' -p '%s' -o '%s'", model, out, applied);
    expect_cli(args, 2, "the patch has no flips (the checkpoint of a search that kept none)");
    struct stat st;
    cr_expect_neq(stat(applied, &st), 0, "apply wrote a model from an empty patch");
    /* and it is a checkpoint: the same search resumes from it */
    FMT(args,
        "search -m '%s' --probes '%s' --fitness focused --iterations 3 --no-eval -t 1 "
        "-o '%s' --resume '%s'",
        model, probes, out, out);
    expect_cli(args, 0, "resumed");
    /* other readers keep refusing a patch without flips: only a search's record is one */
    const char *needles[] = {"the patch has no flips", NULL};
    expect_show_refused("{\"format\":\"xorpatch/1\",\"tensors\":{}}", ".json", needles);
    char side[600];
    snprintf(side, sizeof side, "%s.log.jsonl", out), unlink(side);
    snprintf(side, sizeof side, "%s.html", out), unlink(side);
    unlink(out);
}

/* ---- 3: what show and stack cannot know, and flips that cancel inside one file ------ */

Test(readers, show_says_what_is_unknown_and_stack_and_show_report_cancelling_flips)
{
    char blocks[512], over[512], out[512], args[2000];
    /* blocks have 128 bits whatever the layout, but their share of the weights does not */
    tmp_file(blocks, sizeof blocks, "layoutless", ".json",
             "{\"format\":\"xorpatch/1\",\"tensors\":{\"blk.0.ffn_up.weight\":"
             "{\"blocks\":[2,3]}}}");
    FMT(args, "show '%s'", blocks);
    char *all = run_expect(args, 0, "share of the weights is unknown without the layout");
    cr_expect(!strstr(all, "0.000000%"), "%s", all);
    free(all);
    /* a block and its all-ones mask cancel; row 1 stays */
    tmp_file(over, sizeof over, "cancelling", ".json",
             "{\"format\":\"xorpatch/1\",\"tensors\":{\"blk.0.ffn_up.weight\":"
             "{\"blocks\":[2],\"masks\":[[2,\"ffffffffffffffffffffffffffffffff\"]],"
             "\"rows\":[1]}}}");
    FMT(args, "show '%s'", over);
    expect_cli(args, 0,
               "the file lists 3 flips: 2 merge or cancel within it (XOR), so it flips as 1");
    FMT(args, "show --json '%s'", over);
    expect_cli(args, 0, "\"flips_listed\":3");
    tmp_file(out, sizeof out, "stacked", ".json", NULL);
    FMT(args, "stack '%s' '%s' -o '%s'", over, blocks, out);
    expect_cli(args, 0, ": the file lists 3 flips: 2 merge or cancel within it, so it brings 1");
    unlink(blocks), unlink(over), unlink(out);
}

/* ---- 1: text that is not valid UTF-8 in a patch or a probe file ------------------- */

Test(readers, invalid_utf8_in_a_patch_or_a_probe_file_is_refused_naming_the_field)
{
    const char *name[] = {"name: not valid UTF-8 (byte 3 of 4)", NULL};
    expect_show_refused("{\"format\":\"xorpatch/1\",\"name\":\"ab\xff"
                        "c\",\"tensors\":"
                        "{\"blk.0.ffn_up.weight\":{\"rows\":[3]}}}",
                        ".json", name);
    const char *desc[] = {"description: not valid UTF-8", NULL};
    expect_show_refused("{\"format\":\"bankai_row_xor_v1\",\"description\":\"\xc3\",\"flips\":"
                        "[{\"layer\":1,\"proj\":\"up_proj\",\"row\":3}]}",
                        ".json", desc);
    /* probe files: the field and the probe are named, exit 2 */
    char model[512], probes[512], args[1400];
    snprintf(model, sizeof model, "%s/models/tiny-bonsai.gguf", xp_test_env("XP_ROOT", "."));
    tmp_file(probes, sizeof probes, "badutf8", ".json",
             "[{\"name\":\"p1\",\"prompt\":\"2+2=\",\"correct\":\"4\",\"wrong\":\"5\"},"
             "{\"name\":\"p\xe2\x82\",\"prompt\":\"1+1=\",\"correct\":\"2\",\"wrong\":\"3\"}]");
    FMT(args, "audit -m '%s' --probes '%s'", model, probes);
    expect_cli(args, 2, "probe probes[1]: field \"name\" is not valid UTF-8 (byte 2 of 3)");
    xp_test_write(probes, "[{\"name\":\"p1\",\"prompt\":\"2+2=\xf0\x9f\",\"correct\":\"4\"}]");
    expect_cli(args, 2, "probe \"p1\" (probes[0]): field \"prompt\" is not valid UTF-8");
    unlink(probes);
}

Test(readers, a_pipeline_step_that_keeps_no_flip_says_its_old_file_is_not_its_own)
{
    char model[512], probes[512], dir[512], step[600], stacked[600], args[2200];
    solved_setup(model, probes);
    xp_test_tmp_path(dir, sizeof dir, "unkept-pipe");
    cr_assert_eq(mkdir(dir, 0777), 0);
    snprintf(step, sizeof step, "%s/step-1-deriv.json", dir);
    snprintf(stacked, sizeof stacked, "%s/stacked.json", dir);
    xp_test_write(step, "{}\n");
    xp_test_write(stacked, "{}\n");
    FMT(args, "pipeline -m '%s' --fitness focused --iterations 3 -t 1 -o '%s' '%s'", model, dir,
        probes);
    char *all = run_expect(args, 0, "0 flips");
    cr_expect(strstr(all, "step 1: no flip was kept") && strstr(all, "is not this pipeline's"),
              "%s", all);
    cr_expect(strstr(all, "stacked: no step kept a flip") && strstr(all, "from before"), "%s", all);
    free(all);
    char *text = xp_test_slurp(step);
    cr_expect_str_eq(text, "{}\n");
    free(text);
    char cmd[700];
    FMT(cmd, "rm -rf '%s'", dir);
    cr_expect_eq(system(cmd), 0);
}
