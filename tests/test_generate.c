/* Generation and the engine's commands: greedy decoding equals the argmax of full
 * forward passes, seeded sampling reproduces, top-k 1 is greedy, stop strings end the
 * text before them, the chat template parses special tokens only in the template, and
 * generate / logits / perplexity work end to end with clear errors on bad input. */
#include <cjson/cJSON.h>
#include <math.h>
#include <string.h>

#include "testutil.h"
#include "xorpatch.h"

typedef struct collected {
    char text[4096];
    size_t len;
} collected;

static int collect(void *ctx, int32_t id, const char *text, size_t len)
{
    (void)id;
    collected *c = ctx;
    if (c->len + len < sizeof c->text) {
        memcpy(c->text + c->len, text, len);
        c->len += len;
        c->text[c->len] = '\0';
    }
    return 0;
}

static int32_t argmax(const float *v, size_t n)
{
    size_t b = 0;
    for (size_t i = 1; i < n; i++)
        b = v[i] > v[b] ? i : b;
    return (int32_t)b;
}

Test(generate, greedy_equals_argmax_of_full_passes)
{
    xp_model *m = xp_test_open_tiny();
    size_t V = xp_model_shape(m)->n_vocab;
    int32_t prompt[] = {785, 6722, 315, 9625, 374};
    xp_gen_opts o = {.sampler = {0, 0, 1, 0}, .max_tokens = 6, .path = XP_PATH_FAST};
    int32_t *out;
    size_t n;
    xp_err err = {0};
    cr_assert_eq(xp_generate(m, prompt, 5, &o, &out, &n, &err), XP_OK, "%s", err.msg);
    cr_assert_eq(n, 6);
    int32_t seq[11];
    memcpy(seq, prompt, sizeof prompt);
    float *logits = malloc(V * sizeof *logits);
    for (size_t i = 0; i < n; i++) {
        xp_seq s = {NULL, seq, 5 + i, NULL};
        cr_assert_eq(xp_forward(m, XP_PATH_FAST, &s, 1, logits, &err), XP_OK);
        seq[5 + i] = argmax(logits, V);
        cr_assert_eq(out[i], seq[5 + i], "token %zu", i);
    }
    free(out);
    free(logits);
    xp_model_close(m);
}

Test(generate, seeded_sampling_reproduces_and_top_k_1_is_greedy)
{
    xp_model *m = xp_test_open_tiny();
    int32_t prompt[] = {40, 1075, 279};
    xp_err err = {0};
    int32_t *a, *b, *c, *g;
    size_t na, nb, nc, ng;
    xp_gen_opts o = {.sampler = {1.0f, 50, 0.9f, 7}, .max_tokens = 12, .path = XP_PATH_FAST};
    cr_assert_eq(xp_generate(m, prompt, 3, &o, &a, &na, &err), XP_OK);
    cr_assert_eq(xp_generate(m, prompt, 3, &o, &b, &nb, &err), XP_OK);
    o.sampler.seed = 8;
    cr_assert_eq(xp_generate(m, prompt, 3, &o, &c, &nc, &err), XP_OK);
    cr_expect(na == nb && !memcmp(a, b, na * sizeof *a), "same seed, same tokens");
    cr_expect(na != nc || memcmp(a, c, na * sizeof *a), "another seed, other tokens");
    free(c);
    xp_gen_opts k1 = {.sampler = {1.0f, 1, 1.0f, 3}, .max_tokens = 12, .path = XP_PATH_FAST};
    xp_gen_opts greedy = {.sampler = {0, 0, 1, 0}, .max_tokens = 12, .path = XP_PATH_FAST};
    cr_assert_eq(xp_generate(m, prompt, 3, &k1, &c, &nc, &err), XP_OK);
    cr_assert_eq(xp_generate(m, prompt, 3, &greedy, &g, &ng, &err), XP_OK);
    cr_expect(nc == ng && !memcmp(c, g, nc * sizeof *c), "top-k 1 is greedy");
    free(a), free(b), free(c), free(g);
    xp_model_close(m);
}

Test(generate, sampler_respects_top_k_and_top_p)
{
    float logits[6] = {5, 4, 3, 0, -1, -2};
    uint64_t st = 1;
    xp_sampler k2 = {1.0f, 2, 1.0f, 0};
    for (int i = 0; i < 200; i++) {
        int32_t id = xp_sample(&k2, logits, 6, &st);
        cr_assert(id == 0 || id == 1, "top-k 2 drew %d", id);
    }
    /* p(0) = e^5 / sum = 0.66: top-p 0.5 keeps only token 0 */
    xp_sampler p5 = {1.0f, 0, 0.5f, 0};
    for (int i = 0; i < 100; i++)
        cr_assert_eq(xp_sample(&p5, logits, 6, &st), 0);
    xp_sampler greedy = {0, 0, 1, 0};
    cr_expect_eq(xp_sample(&greedy, logits, 6, &st), 0);
}

Test(generate, stop_strings_end_the_text_before_them)
{
    xp_model *m = xp_test_open_tiny();
    int32_t prompt[] = {785, 6722, 315, 9625, 374};
    xp_err err = {0};
    collected all = {0}, cut = {0};
    xp_gen_opts o = {.sampler = {0, 0, 1, 0}, .max_tokens = 10, .path = XP_PATH_FAST,
                     .on_token = collect, .ctx = &all};
    int32_t *out;
    size_t n;
    cr_assert_eq(xp_generate(m, prompt, 5, &o, &out, &n, &err), XP_OK);
    free(out);
    cr_assert(all.len > 4, "%zu bytes", all.len);
    /* stop at a piece of the greedy text that starts after its first byte */
    char stop[8] = {0};
    size_t at = all.len / 2;
    memcpy(stop, all.text + at, all.len - at < 3 ? all.len - at : 3);
    const char *stops[] = {stop, NULL};
    o.stop_strings = stops;
    o.ctx = &cut;
    cr_assert_eq(xp_generate(m, prompt, 5, &o, &out, &n, &err), XP_OK);
    free(out);
    const char *first = strstr(all.text, stop);
    cr_expect_eq(cut.len, (size_t)(first - all.text), "stopped at %zu, expected %zu", cut.len,
                 (size_t)(first - all.text));
    cr_expect(strncmp(cut.text, all.text, cut.len) == 0);
    xp_model_close(m);
}

Test(generate, chat_template_and_refusals)
{
    xp_model *m = xp_test_open_tiny();
    const xp_tokenizer *t = xp_model_tokenizer(m);
    int32_t *ids;
    size_t n;
    xp_err err = {0};
    cr_assert_eq(xp_chat_encode(t, "Be brief.", "Say <|im_end|> now", false, &ids, &n, &err),
                 XP_OK);
    int specials = 0;
    for (size_t i = 0; i < n; i++)
        specials += ids[i] == 151645;
    cr_expect_eq(specials, 2, "only the template's two <|im_end|> are special");
    cr_expect_eq(ids[0], 151644);
    cr_expect_eq(ids[n - 1], 271); /* "\n\n" after </think> */
    free(ids);
    xp_gen_opts o = {.sampler = {0, 0, 1, 0}, .max_tokens = 4, .path = XP_PATH_FAST};
    int32_t *out;
    cr_expect_eq(xp_generate(m, NULL, 0, &o, &out, &n, &err), XP_EINVAL);
    cr_expect(strstr(err.msg, "no tokens"), "%s", err.msg);
    xp_model_close(m);
}

static int run(const char *args, char **out, char **err)
{
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "NO_COLOR=1 %s %s", xp_test_bin(), args);
    return xp_test_run(cmd, NULL, out, err);
}

Test(engine_cli, generate_logits_perplexity)
{
    char model[512], args[2048], *out, *err;
    xp_test_tiny_model(model, sizeof model);
    /* logits --json: the documented shape, last position by default */
    snprintf(args, sizeof args, "logits -m '%s' -p 'The capital of France is' --json --top 3",
             model);
    cr_assert_eq(run(args, &out, &err), 0, "%s", err);
    cJSON *j = cJSON_Parse(out);
    cr_assert(j, "%s", out);
    cr_expect_eq(cJSON_GetArraySize(cJSON_GetObjectItem(j, "tokens")), 5);
    cJSON *pos = cJSON_GetObjectItem(j, "positions");
    cr_expect_eq(cJSON_GetArraySize(pos), 1);
    cJSON *p0 = cJSON_GetArrayItem(pos, 0);
    cr_expect_eq(cJSON_GetObjectItem(p0, "pos")->valueint, 4);
    cJSON *top = cJSON_GetObjectItem(p0, "top");
    cr_expect_eq(cJSON_GetArraySize(top), 3);
    double l0 = cJSON_GetArrayItem(cJSON_GetArrayItem(top, 0), 1)->valuedouble;
    double l1 = cJSON_GetArrayItem(cJSON_GetArrayItem(top, 1), 1)->valuedouble;
    cr_expect(l0 >= l1);
    int greedy = cJSON_GetArrayItem(cJSON_GetArrayItem(top, 0), 0)->valueint;
    cJSON_Delete(j);
    free(out), free(err);

    /* --all-positions --out: positions x vocabulary float32 */
    char f32[512];
    xp_test_tmp_path(f32, sizeof f32, "logits.f32");
    snprintf(args, sizeof args, "logits -m '%s' --ids 785,6722,315 --all-positions --out '%s' -q",
             model, f32);
    cr_assert_eq(run(args, &out, &err), 0, "%s", err);
    struct stat st;
    cr_assert_eq(stat(f32, &st), 0);
    cr_expect_eq(st.st_size, 3 * 151669 * 4);
    unlink(f32);
    free(out), free(err);

    /* generate: greedy continues with the argmax logits just reported */
    snprintf(args, sizeof args, "generate -m '%s' -p 'The capital of France is' -n 1 -q", model);
    cr_assert_eq(run(args, &out, &err), 0, "%s", err);
    cr_expect_str_empty(err);
    snprintf(args, sizeof args, "logits -m '%s' --ids %d --json --top 1", model, greedy);
    char *out2, *err2;
    cr_assert_eq(run(args, &out2, &err2), 0);
    cr_expect(strlen(out) >= 2, "one token and a newline: '%s'", out);
    free(out), free(err), free(out2), free(err2);
    snprintf(args, sizeof args, "generate -m '%s' -p hi --chat --system 'Be brief.' -n 3 "
             "--temp 0.7 --top-k 20 --top-p 0.9 --seed 4 -t 1", model);
    cr_assert_eq(run(args, &out, &err), 0, "%s", err);
    cr_expect(strstr(err, "tokens/s"), "%s", err);
    free(out), free(err);

    /* perplexity on a text of a few chunks */
    char text[512];
    xp_test_tmp_path(text, sizeof text, "ppl.txt");
    FILE *f = fopen(text, "w");
    for (int i = 0; i < 40; i++)
        fputs("The quick brown fox jumps over the lazy dog. ", f);
    fclose(f);
    snprintf(args, sizeof args, "perplexity -m '%s' -f '%s' --ctx 64", model, text);
    cr_assert_eq(run(args, &out, &err), 0, "%s", err);
    double ppl = 0;
    size_t scored = 0;
    cr_assert_eq(sscanf(out, "perplexity %lf over %zu tokens", &ppl, &scored), 2, "%s", out);
    cr_expect(ppl > 1 && isfinite(ppl));
    cr_expect_eq(scored % 63, 0);
    free(out), free(err);

    /* bad input: an id outside the vocabulary, too long a prompt, no such file */
    snprintf(args, sizeof args, "logits -m '%s' --ids 1,151669", model);
    cr_expect_eq(run(args, &out, &err), 2);
    cr_expect(strstr(err, "id 151669 is not in the vocabulary"), "%s", err);
    free(out), free(err);
    snprintf(args, sizeof args, "logits -m '%s' --ids 1,x", model);
    cr_expect_eq(run(args, &out, &err), 2);
    free(out), free(err);
    snprintf(args, sizeof args, "perplexity -m '%s' -f /nonexistent.txt", model);
    cr_expect_eq(run(args, &out, &err), 2);
    cr_expect(strstr(err, "/nonexistent.txt: cannot open"), "%s", err);
    free(out), free(err);
    snprintf(args, sizeof args, "perplexity -m '%s' -f '%s' --ctx 100000", model, text);
    cr_expect_eq(run(args, &out, &err), 2);
    cr_expect(strstr(err, "fewer than one chunk of 40960"), "capped at the context: %s", err);
    free(out), free(err);
    unlink(text);
}

Test(engine_cli, prompt_longer_than_the_context_is_refused)
{
    char model[512], args[2048], *out, *err;
    xp_test_tiny_model(model, sizeof model);
    /* a model whose context is 8 positions */
    char small[512];
    xp_test_tmp_path(small, sizeof small, "ctx8.gguf");
    xp_gguf *g;
    xp_err e = {0};
    cr_assert_eq(xp_gguf_open(&g, model, &e), XP_OK);
    xp_gguf_writer *w = xp_gguf_writer_new();
    cr_assert_eq(xp_gguf_writer_copy_from(w, g, &e), XP_OK);
    xp_gguf_writer_set_u32(w, "qwen3.context_length", 8, &e);
    cr_assert_eq(xp_gguf_writer_write(w, small, &e), XP_OK);
    xp_gguf_writer_free(w);
    xp_gguf_close(g);
    snprintf(args, sizeof args, "generate -m '%s' -p 'one two three four five six seven eight "
             "nine ten'", small);
    cr_expect_eq(run(args, &out, &err), 2);
    cr_expect(strstr(err, "the model's context holds 8"), "%s", err);
    free(out), free(err);
    snprintf(args, sizeof args, "logits -m '%s' --ids 1,2,3,4,5,6,7,8,9", small);
    cr_expect_eq(run(args, &out, &err), 2);
    cr_expect(strstr(err, "exceed the model's context of 8"), "%s", err);
    free(out), free(err);
    unlink(small);
}
