/* Every JSON, JSONL and HTML output is valid UTF-8, also when greedy outputs end inside a
 * multi-byte character: the random-weight tiny model (synth seed 7) cuts the outputs of
 * three of the prompts below mid-character (found by running 200 prompts). Each
 * writer's file or stdout is checked with glibc's iconv (strictly, an implementation
 * apart from the project's), and JSON must also parse whole; where the text was cut,
 * "output_bytes" keeps its exact bytes. A patch whose name comes from a file name that
 * is not UTF-8 leaves a valid xorpatch.applied record in the model it is applied to. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <iconv.h>
#include <string.h>

#include "test_patch_util.h"

#define FMT(buf, ...)                                                                              \
    cr_assert_lt(snprintf(buf, sizeof buf, __VA_ARGS__), (int)sizeof buf, "command too long")

/* Prompts 14, 30 and 33 of the scan give outputs cut mid-character; the others do not. */
static const char probes_json[] =
    "[{\"name\":\"p14\",\"category\":\"c\",\"prompt\":\"b\xc3\xa9 14 42\",\"correct\":\" a\","
    "\"wrong\":\" b\"},"
    "{\"name\":\"p30\",\"category\":\"c\",\"prompt\":\"cat 30 cat\",\"correct\":\" a\","
    "\"wrong\":\" b\"},"
    "{\"name\":\"p33\",\"category\":\"d\",\"prompt\":\"\xe2\x82\xac 33 \xe6\x9d\xb1\xe4\xba\xac\","
    "\"correct\":\" a\",\"wrong\":\" b\"},"
    "{\"name\":\"p1\",\"category\":\"d\",\"prompt\":\"\xe6\x95\xb0\xe5\xad\xa6 1 Paris\","
    "\"correct\":\" a\",\"wrong\":\" b\"}]";

static const char tasks_jsonl[] = "{\"prompt\":\"b\xc3\xa9 14 42\",\"answer\":\"5\"}\n"
                                  "{\"prompt\":\"cat 30 cat\",\"answer\":\"7\"}\n"
                                  "{\"prompt\":\"\xe2\x82\xac 33 \xe6\x9d\xb1\xe4\xba\xac\","
                                  "\"answer\":\"9\"}\n";

/* Valid UTF-8 by iconv's strict decoder. */
static bool utf8_valid(const char *s, size_t n)
{
    iconv_t cd = iconv_open("UTF-32LE", "UTF-8");
    cr_assert_neq(cd, (iconv_t)-1);
    char *in = (char *)s, buf[4096];
    size_t left = n;
    bool ok = true;
    while (left && ok) {
        char *out = buf;
        size_t room = sizeof buf;
        if (iconv(cd, &in, &left, &out, &room) == (size_t)-1 && errno != E2BIG)
            ok = false;
    }
    iconv_close(cd);
    return ok;
}

typedef enum { WHOLE_JSON, JSON_LINES, HTML } kind;

/* Checks text (what a writer wrote); counts the "output_bytes" it holds. */
static size_t check_text(const char *what, const char *text, kind k)
{
    cr_assert_not_null(text, "%s: nothing written", what);
    size_t n = strlen(text);
    cr_expect(utf8_valid(text, n), "%s is not valid UTF-8", what);
    if (k == WHOLE_JSON) {
        const char *end = NULL;
        cJSON *o = cJSON_ParseWithOpts(text, &end, false);
        cr_expect(o, "%s is not JSON", what);
        cJSON_Delete(o);
    } else if (k == JSON_LINES) {
        char *copy = strdup(text);
        for (char *l = strtok(copy, "\n"); l; l = strtok(NULL, "\n")) {
            cJSON *o = cJSON_Parse(l);
            cr_expect(o, "%s: a line is not JSON: %s", what, l);
            cJSON_Delete(o);
        }
        free(copy);
    }
    size_t found = 0;
    for (const char *c = text; (c = strstr(c, "\"output_bytes\"")); c++)
        found++;
    return found;
}

static size_t check_file(const char *path, kind k)
{
    char *text = xp_test_slurp(path);
    size_t n = check_text(path, text, k);
    free(text);
    return n;
}

/* Runs `xorpatch ARGS`, expects exit 0 and returns stdout. */
static char *run_ok(const char *args)
{
    char cmd[4200], *out, *err;
    FMT(cmd, "%s %s", xp_test_bin(), args);
    int rc = xp_test_run(cmd, NULL, &out, &err);
    cr_assert_eq(rc, 0, "`xorpatch %s` exited %d:\n%s", args, rc, err);
    free(err);
    return out;
}

static size_t check_stdout(const char *args, kind k)
{
    char *out = run_ok(args);
    size_t n = check_text(args, out, k);
    free(out);
    return n;
}

Test(utf8, every_writer_stays_valid_utf8_on_outputs_cut_mid_character, .timeout = 300)
{
    char tiny[512], dir[512], probes[600], tasks[600], patch[700], pipe[700], path[800];
    char args[4000];
    xp_test_tiny_model(tiny, sizeof tiny);
    xp_test_tmp_path(dir, sizeof dir, "utf8-outputs");
    cr_assert_eq(mkdir(dir, 0777), 0);
    snprintf(probes, sizeof probes, "%s/probes.json", dir);
    snprintf(tasks, sizeof tasks, "%s/tasks.jsonl", dir);
    snprintf(patch, sizeof patch, "%s/s.json", dir);
    snprintf(pipe, sizeof pipe, "%s/pipe", dir);
    xp_test_write(probes, probes_json);
    xp_test_write(tasks, tasks_jsonl);

    size_t cut = 0;
    FMT(args, "audit -q -m '%s' --probes '%s' --json -t 2", tiny, probes);
    size_t audit_cut = check_stdout(args, WHOLE_JSON);
    cr_expect_geq(audit_cut, 3, "audit: %zu outputs cut mid-character, expected 3", audit_cut);
    cut += audit_cut;
    /* the search: its patch (provenance), log, HTML report and evaluation */
    FMT(args,
        "search -q -m '%s' --probes '%s' --heldout '%s' --iterations 3 --granularity block "
        "-t 2 -o '%s'",
        tiny, probes, probes, patch);
    free(run_ok(args));
    check_file(patch, WHOLE_JSON);
    snprintf(path, sizeof path, "%s.log.jsonl", patch);
    check_file(path, JSON_LINES);
    snprintf(path, sizeof path, "%s.html", patch);
    check_file(path, HTML);
    FMT(args, "eval -q -m '%s' --probes '%s' -p '%s' --json -t 2", tiny, probes, patch);
    cut += check_stdout(args, WHOLE_JSON);
    FMT(args, "bench-task -q -m '%s' --tasks '%s' -p '%s' --json -t 2", tiny, tasks, patch);
    cut += check_stdout(args, WHOLE_JSON);
    FMT(args, "experiment layer-map -q -m '%s' --probes '%s' --layers 1 --json -t 2", tiny, probes);
    check_stdout(args, WHOLE_JSON);
    FMT(args, "pipeline -q -m '%s' --iterations 2 -t 2 -o '%s' '%s'", tiny, pipe, probes);
    free(run_ok(args));
    snprintf(path, sizeof path, "%s/pipeline.json", pipe);
    check_file(path, WHOLE_JSON);
    FMT(args, "show --json '%s'", patch);
    check_stdout(args, WHOLE_JSON);
    FMT(args, "inspect --json '%s'", tiny);
    check_stdout(args, WHOLE_JSON);
    /* the top logits hold byte pieces of characters */
    FMT(args, "logits -q -m '%s' -p 'cat 30 cat' --top 200 --json", tiny);
    check_stdout(args, WHOLE_JSON);
    FMT(args, "logits -q -m '%s' -p 'cat 30 cat' --top 200", tiny);
    check_stdout(args, HTML); /* the text table: UTF-8 only */
    cr_expect_geq(cut, 6, "only %zu outputs kept their exact bytes", cut);

    /* a patch named by a file name that is not UTF-8: the model's record stays valid */
    char odd[800], applied[800];
    snprintf(odd, sizeof odd, "%s/caf\xc3.json", dir);
    xp_test_write(odd, "{\"format\":\"xorpatch/1\",\"tensors\":{\"blk.1.ffn_up.weight\":"
                       "{\"rows\":[3]}}}");
    snprintf(applied, sizeof applied, "%s/applied.gguf", dir);
    FMT(args, "apply -q -m '%s' -p '%s' -o '%s'", tiny, odd, applied);
    free(run_ok(args));
    xp_gguf *g;
    xp_err err = {0};
    cr_assert_eq(xp_gguf_open(&g, applied, &err), XP_OK, "%s", err.msg);
    char *record = NULL;
    cr_assert_eq(xp_gguf_get_str(g, "xorpatch.applied", &record, &err), XP_OK, "%s", err.msg);
    check_text("xorpatch.applied", record, WHOLE_JSON);
    free(record);
    xp_gguf_close(g);
    FMT(args, "show --json '%s'", odd);
    check_stdout(args, WHOLE_JSON);
}
