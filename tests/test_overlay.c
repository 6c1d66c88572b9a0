/* Patch overlays: sequences of different patches in one batch of the fast path each get
 * the logits of the model with their patch applied, bit for bit, in prefill and decode,
 * on any kernel and thread count; hand-made row, block, scale-bit and embedding patches,
 * searched ones, stacks, and random patches of every flip kind. */
#include <omp.h>
#include <string.h>

#include "test_patch_util.h"

#define STEPS 3

static void tiny_bonsai(char *out, size_t size)
{
    snprintf(out, size, "%s/models/tiny-bonsai.gguf", xp_test_env("XP_ROOT", "."));
}

static xp_patch *read_patch(const char *name)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/serve/patches/%s", xp_test_env("XP_ROOT", "."), name);
    xp_patch *p;
    xp_err err = {0};
    cr_assert_eq(xp_patch_read(&p, path, &err), XP_OK, "%s", err.msg);
    return p;
}

/* One sequence: a prompt, then STEPS fixed tokens one at a time; every step's logits. */
typedef struct seq_case {
    int32_t prompt[8];
    size_t n_prompt;
    int32_t next[STEPS];
    xp_patch **patches; /* stacked; n_patches 0: the base */
    size_t n_patches;
} seq_case;

static float *run_alone(const char *model, const seq_case *c)
{
    xp_model *m;
    xp_err err = {0};
    cr_assert_eq(xp_model_open(&m, model, &err), XP_OK, "%s", err.msg);
    for (size_t i = 0; i < c->n_patches; i++)
        cr_assert_eq(xp_model_patch_apply(m, c->patches[i], &err), XP_OK, "%s", err.msg);
    size_t V = xp_model_shape(m)->n_vocab;
    float *out = malloc((STEPS + 1) * V * sizeof *out);
    xp_kv *kv;
    cr_assert_eq(xp_kv_new(&kv, m, 32, &err), XP_OK);
    xp_seq s = {kv, c->prompt, c->n_prompt, NULL};
    cr_assert_eq(xp_forward(m, XP_PATH_FAST, &s, 1, out, &err), XP_OK, "%s", err.msg);
    for (int k = 0; k < STEPS; k++) {
        s = (xp_seq){kv, &c->next[k], 1, NULL};
        cr_assert_eq(xp_forward(m, XP_PATH_FAST, &s, 1, out + (k + 1) * V, &err), XP_OK);
    }
    xp_kv_free(kv);
    xp_model_close(m);
    return out;
}

/* Every case in one batch on one base model, each with its overlay; compared with each
 * case run alone on a model with its patches applied. */
static void check_batch(const seq_case *cases, size_t n)
{
    char model[512];
    tiny_bonsai(model, sizeof model);
    xp_model *m;
    xp_err err = {0};
    cr_assert_eq(xp_model_open(&m, model, &err), XP_OK, "%s", err.msg);
    size_t V = xp_model_shape(m)->n_vocab;
    xp_kv *kv[16];
    xp_overlay *ov[16];
    xp_seq seqs[16];
    cr_assert(n <= 16);
    for (size_t i = 0; i < n; i++) {
        cr_assert_eq(xp_kv_new(&kv[i], m, 32, &err), XP_OK);
        ov[i] = NULL;
        if (cases[i].n_patches) {
            cr_assert_eq(xp_overlay_new(&ov[i], m, &err), XP_OK);
            for (size_t j = 0; j < cases[i].n_patches; j++)
                cr_assert_eq(xp_patch_overlay(cases[i].patches[j], m, ov[i], &err), XP_OK, "%s",
                             err.msg);
            xp_kv_set_overlay(kv[i], ov[i]);
        }
        seqs[i] = (xp_seq){kv[i], cases[i].prompt, cases[i].n_prompt, NULL};
    }
    float *got = malloc((STEPS + 1) * n * V * sizeof *got);
    cr_assert_eq(xp_forward(m, XP_PATH_FAST, seqs, n, got, &err), XP_OK, "%s", err.msg);
    for (int k = 0; k < STEPS; k++) {
        for (size_t i = 0; i < n; i++)
            seqs[i] = (xp_seq){kv[i], &cases[i].next[k], 1, NULL};
        cr_assert_eq(xp_forward(m, XP_PATH_FAST, seqs, n, got + (k + 1) * n * V, &err), XP_OK);
    }
    for (size_t i = 0; i < n; i++) {
        float *want = run_alone(model, &cases[i]);
        for (int k = 0; k <= STEPS; k++)
            cr_expect(!memcmp(got + (k * n + i) * V, want + k * V, V * sizeof(float)),
                      "sequence %zu (%zu patches), step %d: logits differ from the patched "
                      "model's",
                      i, cases[i].n_patches, k);
        free(want);
    }
    for (size_t i = 0; i < n; i++)
        xp_kv_free(kv[i]), xp_overlay_free(ov[i]);
    free(got);
    xp_model_close(m);
}

#define PROMPT_A {785, 6722, 315, 9625, 374}, 5 /* "The capital of France is" */
#define PROMPT_B {785, 6722, 315, 15344, 374}, 5
#define PROMPT_C {22, 5519, 20, 374}, 4

Test(overlay, mixed_patches_in_one_batch_as_applied)
{
    xp_patch *row = read_patch("row.json"), *block = read_patch("block.json");
    xp_patch *scale = read_patch("scale.json"), *embd = read_patch("embd.json");
    xp_patch *searched = read_patch("search-scale.xpb");
    xp_patch *stack[] = {row, block, scale};
    seq_case cases[] = {
        {PROMPT_A, {12095, 13, 198}, NULL, 0},   {PROMPT_A, {12095, 13, 198}, &row, 1},
        {PROMPT_B, {21718, 13, 198}, &block, 1}, {PROMPT_C, {220, 23, 13}, &scale, 1},
        {PROMPT_A, {12095, 13, 198}, &embd, 1},  {PROMPT_C, {220, 23, 13}, &searched, 1},
        {PROMPT_B, {21718, 13, 198}, stack, 3},  {PROMPT_B, {21718, 13, 198}, NULL, 0},
    };
    check_batch(cases, sizeof cases / sizeof cases[0]);
    omp_set_num_threads(1);
    check_batch(cases, sizeof cases / sizeof cases[0]);
    xp_patch_free(row), xp_patch_free(block), xp_patch_free(scale), xp_patch_free(embd);
    xp_patch_free(searched);
}

/* Random patches of every kind (rows, blocks, scale bits, masks, row groups, repeats and
 * overlaps), on every Q1_0 matrix including the embedding and LM head. */
Test(overlay, random_patches_as_applied)
{
    char model[512];
    tiny_bonsai(model, sizeof model);
    xp_gguf *g = xp_test_open(model);
    xp_patch *p[4];
    for (int i = 0; i < 4; i++)
        p[i] = xp_test_random_patch(g, 100 + (uint64_t)i, 60);
    xp_gguf_close(g);
    seq_case cases[] = {
        {PROMPT_A, {12095, 13, 198}, &p[0], 1}, {PROMPT_B, {21718, 13, 198}, &p[1], 1},
        {PROMPT_C, {220, 23, 13}, NULL, 0},     {PROMPT_C, {220, 23, 13}, &p[2], 2},
        {PROMPT_A, {12095, 13, 198}, &p[3], 1},
    };
    check_batch(cases, sizeof cases / sizeof cases[0]);
    for (int i = 0; i < 4; i++)
        xp_patch_free(p[i]);
}

Test(overlay, every_kernel_gives_the_same_bits)
{
    xp_patch *block = read_patch("block.json"), *scale = read_patch("scale.json");
    seq_case cases[] = {{PROMPT_A, {12095, 13, 198}, &block, 1},
                        {PROMPT_C, {220, 23, 13}, &scale, 1},
                        {PROMPT_B, {21718, 13, 198}, NULL, 0}};
    for (const char *const *k = xp_kernels_available(); *k; k++) {
        setenv("XORPATCH_KERNEL", *k, 1);
        check_batch(cases, 3);
    }
    unsetenv("XORPATCH_KERNEL");
    xp_patch_free(block), xp_patch_free(scale);
}

/* One copy of the model: an overlay holds the rows its patch touches and nothing more. */
Test(overlay, holds_only_the_touched_rows)
{
    char model[512];
    tiny_bonsai(model, sizeof model);
    xp_model *m;
    xp_err err = {0};
    cr_assert_eq(xp_model_open(&m, model, &err), XP_OK);
    xp_patch *row = read_patch("row.json"), *block = read_patch("search-block.json");
    xp_overlay *ov;
    cr_assert_eq(xp_overlay_new(&ov, m, &err), XP_OK);
    cr_assert_eq(xp_patch_overlay(row, m, ov, &err), XP_OK, "%s", err.msg);
    cr_expect_eq(xp_overlay_rows(ov), 120, "row.json flips 120 distinct rows");
    cr_assert_eq(xp_patch_overlay(block, m, ov, &err), XP_OK, "%s", err.msg);
    size_t blocks_rows = xp_overlay_rows(ov) - 120;
    cr_expect(blocks_rows >= 1 && blocks_rows <= block->n_flips, "%zu rows for %zu block flips",
              blocks_rows, block->n_flips);
    xp_overlay_free(ov);
    xp_patch_free(row), xp_patch_free(block);
    xp_model_close(m);
}

Test(overlay, the_plain_path_refuses_an_overlay)
{
    char model[512];
    tiny_bonsai(model, sizeof model);
    xp_model *m;
    xp_err err = {0};
    cr_assert_eq(xp_model_open(&m, model, &err), XP_OK);
    xp_kv *kv;
    xp_overlay *ov;
    cr_assert_eq(xp_kv_new(&kv, m, 8, &err), XP_OK);
    cr_assert_eq(xp_overlay_new(&ov, m, &err), XP_OK);
    xp_kv_set_overlay(kv, ov);
    int32_t tok = 785;
    float *logits = malloc(xp_model_shape(m)->n_vocab * sizeof *logits);
    xp_seq s = {kv, &tok, 1, NULL};
    cr_expect_eq(xp_forward(m, XP_PATH_PLAIN, &s, 1, logits, &err), XP_EINVAL);
    cr_expect(strstr(err.msg, "fast path only"), "%s", err.msg);
    free(logits);
    xp_kv_free(kv), xp_overlay_free(ov);
    xp_model_close(m);
}
