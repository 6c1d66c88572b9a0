/* The experiments on the tiny synthetic model: random MLP flips are distinct, seeded and
 * MLP-only; N = 0 gives exactly the base perplexity and more flips change it; layer-map's
 * gaps equal those measured by applying the layer's flip set by hand; scale-vs-random's
 * impacts are the measured ones; a patch stacked with itself is the base; the randomised
 * copy differs from the model in about half the MLP sign bits and in nothing else; the
 * null baseline's rates carry their Wilson intervals; every experiment leaves the model
 * as it was. Then the command: each experiment's JSON with every option, a text table,
 * and exit codes (bad name or option 1, missing file 2). */
#include <cjson/cJSON.h>
#include <math.h>
#include <string.h>

#include "model/model.h"
#include "search/search_int.h"
#include "testutil.h"
#include "xorpatch.h"

static const char probes_json[] =
    "[{\"name\":\"add\",\"category\":\"math\",\"prompt\":\"37 + 48 =\",\"correct\":\" 85\","
    "\"wrong\":\" 84\"},"
    "{\"name\":\"mul\",\"category\":\"math\",\"prompt\":\"6 * 7 =\",\"correct\":\" 42\","
    "\"wrong\":\" 48\"},"
    "{\"name\":\"prime\",\"category\":\"prime\",\"prompt\":\"Is 97 prime?\",\"correct\":\" Yes\","
    "\"wrong\":\" No\"}]";
/* a Neagari set: two targets and a promoted control */
static const char neagari_json[] =
    "{\"domain\":\"math\",\"probes\":{\"target\":["
    "{\"name\":\"add\",\"prompt\":\"37 + 48 =\",\"correct\":\" 85\",\"wrong\":\" 84\"},"
    "{\"name\":\"mul\",\"prompt\":\"6 * 7 =\",\"correct\":\" 42\",\"wrong\":\" 48\"}],"
    "\"promoted_controls\":["
    "{\"name\":\"paris\",\"prompt\":\"The capital of France is\",\"correct\":\" Paris\","
    "\"wrong\":\" Lyon\"}]}}";
static const char text[] = "The quick brown fox jumps over the lazy dog, and the dog sleeps "
                           "on in the warm afternoon sun while the fox runs home.";

static xp_model *tiny(char *path, size_t size)
{
    xp_test_tiny_model(path, size);
    xp_model *m;
    xp_err err = {0};
    cr_assert_eq(xp_model_open(&m, path, &err), XP_OK, "%s", err.msg);
    return m;
}

/* SHA-256 of the model's whole map: what "left as it was" means. */
static void map_sha(xp_model *m, char hex[65])
{
    xp_gguf *g = xp_model_gguf(m);
    xp_sha256_hex(g->map, g->map_len, hex);
}

static xp_probe_tokens *probes(xp_model *m, const char *json, xp_probe_set **s)
{
    xp_err err = {0};
    xp_probe_tokens *pt;
    cr_assert_eq(xp_probe_set_parse(s, json, strlen(json), "test", &err), XP_OK, "%s", err.msg);
    cr_assert_eq(xp_probe_tokenize(*s, xp_model_tokenizer(m), &pt, &err), XP_OK, "%s", err.msg);
    return pt;
}

Test(experiment, random_mlp_patch_is_distinct_seeded_and_mlp_only)
{
    char path[512];
    xp_model *m = tiny(path, sizeof path);
    xp_err err = {0};
    xp_patch *a, *b, *c;
    cr_assert_eq(xp_exp_random_mlp_patch(m, XP_FLIP_MASK, 300, 9, &a, &err), XP_OK, "%s", err.msg);
    cr_assert_eq(xp_exp_random_mlp_patch(m, XP_FLIP_MASK, 300, 9, &b, &err), XP_OK);
    cr_assert_eq(xp_exp_random_mlp_patch(m, XP_FLIP_MASK, 300, 10, &c, &err), XP_OK);
    xp_patch_stats st;
    xp_patch_total_stats(a, &st);
    cr_expect_eq(st.bits, 300, "300 distinct bits, none cancelled");
    for (size_t t = 0; t < a->n_tensors; t++)
        cr_expect(strstr(a->tensors[t].name, ".ffn_"), "%s is not an MLP tensor",
                  a->tensors[t].name);
    char ia[65], ib[65], ic[65];
    xp_patch_flips_sha256(a, ia, &err);
    xp_patch_flips_sha256(b, ib, &err);
    xp_patch_flips_sha256(c, ic, &err);
    cr_expect_str_eq(ia, ib, "one seed, one patch");
    cr_expect_str_neq(ia, ic, "another seed, another patch");
    xp_patch_free(a), xp_patch_free(b), xp_patch_free(c);
    cr_assert_eq(xp_exp_random_mlp_patch(m, XP_FLIP_ROW, 7, 1, &a, &err), XP_OK);
    xp_patch_total_stats(a, &st);
    cr_expect_eq(st.rows, 7);
    xp_patch_free(a);
    cr_assert_eq(xp_exp_random_mlp_patch(m, XP_FLIP_BLOCK, 5, 1, &a, &err), XP_OK);
    xp_patch_total_stats(a, &st);
    cr_expect_eq(st.bits, 5 * 128);
    xp_patch_free(a);
    /* the tiny model's MLP has 4 layers x (768 + 768 + 256) rows: all of them is every
     * MLP sign bit, one short of all leaves one row */
    cr_assert_eq(xp_exp_random_mlp_patch(m, XP_FLIP_ROW, 4 * 1792, 1, &a, &err), XP_OK);
    xp_patch_total_stats(a, &st);
    cr_expect_eq(st.bits, 4ull * 3 * 256 * 768);
    xp_patch_free(a);
    cr_assert_eq(xp_exp_random_mlp_patch(m, XP_FLIP_ROW, 4 * 1792 - 1, 1, &a, &err), XP_OK);
    xp_patch_total_stats(a, &st);
    cr_expect_eq(st.rows, 4 * 1792 - 1);
    xp_patch_free(a);
    cr_expect_eq(xp_exp_random_mlp_patch(m, XP_FLIP_ROW, 4 * 1792 + 1, 1, &a, &err), XP_EINVAL);
    cr_expect(strstr(err.msg, "7168 rows"), "%s", err.msg);
    cr_expect_eq(xp_exp_random_mlp_patch(m, XP_FLIP_SCALE, 1, 1, &a, &err), XP_EINVAL);
    xp_model_close(m);
}

Test(experiment, random_flips_zero_is_the_base_and_more_flips_change_it, .timeout = 120)
{
    char path[512], before[65], after[65];
    xp_model *m = tiny(path, sizeof path);
    map_sha(m, before);
    xp_err err = {0};
    int32_t *ids;
    size_t n;
    cr_assert_eq(xp_tokenize(xp_model_tokenizer(m), text, strlen(text), false, &ids, &n, &err),
                 XP_OK);
    int kinds[] = {XP_FLIP_ROW, XP_FLIP_MASK};
    size_t counts[] = {0, 300};
    xp_random_flips_opts o = {kinds, 2, counts, 2, 2, 5, {16, 1, NULL, NULL}};
    xp_random_flips r;
    cr_assert_eq(xp_exp_random_flips(m, ids, n, &o, &r, &err), XP_OK, "%s", err.msg);
    cr_assert_eq(r.n, 8);
    cr_expect_eq(r.base.scored, 15);
    for (size_t i = 0; i < r.n; i++) {
        const xp_random_flips_point *p = &r.points[i];
        cr_expect_eq(p->kind, kinds[i / 4]);
        if (p->count == 0)
            cr_expect(p->perplexity == r.base.perplexity && p->bits == 0,
                      "no flip: exactly the base perplexity");
        else
            cr_expect(p->perplexity != r.base.perplexity, "300 %s flips change the perplexity",
                      p->kind == XP_FLIP_ROW ? "row" : "bit");
    }
    cr_expect_eq(r.points[6].bits, 300, "bit strategy: one bit per flip");
    cr_expect(r.points[2].perplexity != r.points[3].perplexity, "two trials, two draws");
    /* a point depends on its own seed only: the same draw when run alone */
    size_t one[] = {300};
    xp_random_flips_opts o2 = {kinds + 1, 1, one, 1, 2, 5, {16, 1, NULL, NULL}};
    xp_random_flips r2;
    cr_assert_eq(xp_exp_random_flips(m, ids, n, &o2, &r2, &err), XP_OK);
    cr_expect(r2.points[1].perplexity == r.points[7].perplexity);
    map_sha(m, after);
    cr_expect_str_eq(before, after, "the model is left as it was");
    xp_random_flips_free(&r);
    xp_random_flips_free(&r2);
    free(ids);
    xp_model_close(m);
}

Test(experiment, layer_map_equals_the_flip_set_applied_by_hand, .timeout = 120)
{
    char path[512], before[65], after[65];
    xp_model *m = tiny(path, sizeof path);
    map_sha(m, before);
    xp_probe_set *s;
    xp_probe_tokens *pt = probes(m, probes_json, &s);
    xp_err err = {0};
    uint32_t layers[] = {1, 3};
    xp_layer_map r;
    cr_assert_eq(xp_exp_layer_map(m, pt, s->n, XP_METRIC_SEQ_LOGPROB, layers, 2, 0, NULL, NULL,
                                  &r, &err), XP_OK, "%s", err.msg);
    map_sha(m, after);
    cr_expect_str_eq(before, after, "the model is left as it was");
    /* by hand: layer 3's flip set every sign bit of its three MLP tensors */
    xp_patch *p;
    cr_assert_eq(xp_exp_layer_patch(m, 3, 0, &p, &err), XP_OK);
    xp_patch_stats st;
    xp_patch_total_stats(p, &st);
    cr_expect_eq(st.bits, 3ull * 256 * 768, "every sign bit of gate, up and down");
    double base[3], g[3];
    cr_assert_eq(xp_probe_gaps(m, pt, s->n, XP_METRIC_SEQ_LOGPROB, base, &err), XP_OK);
    cr_assert_eq(xp_model_patch_apply(m, p, &err), XP_OK, "%s", err.msg);
    cr_assert_eq(xp_probe_gaps(m, pt, s->n, XP_METRIC_SEQ_LOGPROB, g, &err), XP_OK);
    cr_assert_eq(xp_model_patch_revert(m, p, &err), XP_OK);
    double mean_abs = 0;
    for (size_t i = 0; i < s->n; i++) {
        cr_expect(r.base[i] == base[i] && r.after[1 * s->n + i] == g[i], "probe %zu", i);
        mean_abs += fabs(g[i] - base[i]) / (double)s->n;
    }
    cr_expect_float_eq(r.stats[1].mean_abs, mean_abs, 1e-12);
    cr_expect_gt(r.stats[0].mean_abs, 0, "a whole layer moves the gaps");
    xp_patch_free(p);
    cr_expect_eq(xp_exp_layer_patch(m, 4, 0, &p, &err), XP_EINVAL, "the tiny model has 4 layers");
    xp_layer_map_free(&r);
    xp_probe_tokens_free(pt, s->n);
    xp_probe_set_free(s);
    xp_model_close(m);
}

Test(experiment, scale_vs_random_impacts_are_the_measured_ones, .timeout = 120)
{
    char path[512], before[65], after[65];
    xp_model *m = tiny(path, sizeof path);
    map_sha(m, before);
    xp_probe_set *s;
    xp_probe_tokens *pt = probes(m, probes_json, &s);
    xp_err err = {0};
    xp_search_opts o;
    xp_search_opts_default(&o);
    o.seed = 3;
    xp_scale_vs_random r;
    cr_assert_eq(xp_exp_scale_vs_random(m, pt, s->n, &o, 3, NULL, NULL, &r, &err), XP_OK, "%s",
                 err.msg);
    map_sha(m, after);
    cr_expect_str_eq(before, after, "the model is left as it was");
    cr_assert_eq(r.samples, 3);
    double g[3];
    for (int k = 0; k < 2; k++) {
        double sum = 0;
        for (size_t i = 0; i < r.samples; i++) {
            const xp_candidate *c = &r.cand[k][i];
            cr_expect(c->kind == XP_FLIP_ROW && c->layer >= 1 && c->layer <= 3 &&
                      (c->proj == XP_PROJ_GATE || c->proj == XP_PROJ_UP),
                      "the search's default space: gate/up rows of layers 1-3 (4 is absent)");
            sum += r.impact[k][i];
        }
        cr_expect_float_eq(r.mean_impact[k], sum / 3, 1e-12);
        /* the last candidate by hand */
        const xp_candidate *c = &r.cand[k][2];
        xp_candidate_flip(m, c);
        cr_assert_eq(xp_probe_gaps(m, pt, s->n, o.metric, g, &err), XP_OK);
        xp_candidate_flip(m, c);
        double impact = 0;
        for (size_t i = 0; i < s->n; i++)
            impact += fabs(g[i] - r.base[i]) / (double)s->n;
        cr_expect_float_eq(r.impact[k][2], impact, 1e-12);
        const xp_weight *w = xp_proj_weight(&m->layers[c->layer], c->proj);
        cr_expect_float_eq(r.scale[k][2], fabs(xp_q1_0_row_mean_scale(w->data, w->ne0, c->index)),
                           1e-9);
    }
    cr_expect_float_eq(r.ratio, r.mean_impact[0] / r.mean_impact[1], 1e-12);
    xp_scale_vs_random_free(&r);
    xp_probe_tokens_free(pt, s->n);
    xp_probe_set_free(s);
    xp_model_close(m);
}

/* A row of tensor and row 7 of layer 2's up projection; base: a fingerprint of 64 copies
 * of that character, or none (0). */
static xp_patch *row_patch(const char *tensor, int64_t row, char base)
{
    xp_patch *p;
    xp_err err = {0};
    cr_assert_eq(xp_patch_new(&p, &err), XP_OK);
    cr_assert_eq(xp_patch_add_row(p, tensor, row, &err), XP_OK);
    cr_assert_eq(xp_patch_add_row(p, "blk.2.ffn_up.weight", 7, &err), XP_OK);
    p->name = strdup(tensor);
    if (base) {
        memset(p->base_sha256, base, 64);
        p->base_sha256[64] = 0;
    }
    return p;
}

Test(experiment, stacking_a_patch_with_itself_is_the_base, .timeout = 120)
{
    char path[512], before[65], after[65];
    xp_model *m = tiny(path, sizeof path);
    map_sha(m, before);
    xp_probe_set *s;
    xp_probe_tokens *pt = probes(m, probes_json, &s);
    xp_err err = {0};
    xp_patch *a = row_patch("blk.1.ffn_gate.weight", 5, 0);
    xp_patch *b = row_patch("blk.3.ffn_down.weight", 9, 0);
    xp_patch *same[] = {a, a}, *two[] = {a, b};
    xp_stacking r;
    cr_assert_eq(xp_exp_stacking(m, pt, s->n, XP_METRIC_SEQ_LOGPROB, same, 2, false, &r, &err),
                 XP_OK, "%s", err.msg);
    cr_expect_eq(r.bits_in, 2 * (256 + 256));
    cr_expect_eq(r.bits_out, 0, "every bit cancels");
    for (size_t i = 0; i < s->n; i++)
        cr_expect(r.after[2 * s->n + i] == r.base[i], "stacked with itself: the base gap");
    cr_expect(r.stats[1].mean_abs > 0 && r.stats[0].mean_abs == r.stats[1].mean_abs);
    cr_expect_float_eq(r.interaction, 2 * r.stats[0].mean_abs, 1e-12);
    xp_stacking_free(&r);
    /* a and b share the up row: it cancels, the two gate/down rows stay */
    cr_assert_eq(xp_exp_stacking(m, pt, s->n, XP_METRIC_SEQ_LOGPROB, two, 2, false, &r, &err),
                 XP_OK, "%s", err.msg);
    cr_expect_eq(r.bits_out, 256 + 768);
    cr_expect_eq(r.bits_in, 256 + 256 + 768 + 256);
    xp_stacking_free(&r);
    map_sha(m, after);
    cr_expect_str_eq(before, after, "the model is left as it was");
    /* different base fingerprints: refused unless forced */
    xp_patch *c = row_patch("blk.1.ffn_gate.weight", 6, 'a');
    xp_patch *d = row_patch("blk.1.ffn_gate.weight", 8, 'b');
    xp_patch *diff[] = {c, d};
    cr_expect_eq(xp_exp_stacking(m, pt, s->n, XP_METRIC_SEQ_LOGPROB, diff, 2, false, &r, &err),
                 XP_EINVAL);
    cr_expect_eq(xp_exp_stacking(m, pt, s->n, XP_METRIC_SEQ_LOGPROB, diff, 2, true, &r, &err),
                 XP_OK, "%s", err.msg);
    xp_stacking_free(&r);
    cr_expect_eq(xp_exp_stacking(m, pt, s->n, XP_METRIC_SEQ_LOGPROB, same, 1, false, &r, &err),
                 XP_EINVAL, "one patch is no stack");
    xp_patch_free(a), xp_patch_free(b), xp_patch_free(c), xp_patch_free(d);
    xp_probe_tokens_free(pt, s->n);
    xp_probe_set_free(s);
    xp_model_close(m);
}

Test(experiment, randomised_copy_differs_in_half_the_mlp_signs_and_nothing_else)
{
    char path[512];
    xp_model *m = tiny(path, sizeof path), *r;
    xp_err err = {0};
    cr_assert_eq(xp_model_open(&r, path, &err), XP_OK);
    cr_assert_eq(xp_exp_randomize_mlp_signs(r, 11, &err), XP_OK);
    uint64_t bits = 0, differ = 0;
    for (uint32_t l = 0; l < m->shape.n_layer; l++)
        for (int proj = 0; proj < XP_N_PROJ; proj++) {
            const xp_weight *a = xp_proj_weight(&m->layers[l], proj);
            const xp_weight *b = xp_proj_weight(&r->layers[l], proj);
            bool mlp = proj <= XP_PROJ_DOWN;
            uint64_t blocks = (uint64_t)a->ne0 * (uint64_t)a->ne1 / 128;
            for (uint64_t k = 0; k < blocks; k++) {
                const uint8_t *x = a->data + k * 18, *y = b->data + k * 18;
                cr_assert(x[0] == y[0] && x[1] == y[1], "%s block %llu: scale changed", a->name,
                          (unsigned long long)k);
                if (!mlp) {
                    cr_assert(!memcmp(x, y, 18), "%s changed", a->name);
                    continue;
                }
                for (int i = 2; i < 18; i++)
                    differ += (uint64_t)__builtin_popcount(x[i] ^ y[i]);
                bits += 128;
            }
        }
    double share = (double)differ / (double)bits;
    /* 2.4M fair coins: the share is within 0.002 of 1/2 far beyond any doubt */
    cr_expect(fabs(share - 0.5) < 0.002, "%llu of %llu MLP sign bits differ (%.4f)",
              (unsigned long long)differ, (unsigned long long)bits, share);
    cr_expect(!memcmp(m->tok_embd.data, r->tok_embd.data, m->tok_embd.row_bytes * 16),
              "embeddings kept");
    xp_model_close(r);
    xp_model_close(m);
}

Test(experiment, null_baseline_rates_with_wilson_intervals, .timeout = 180)
{
    char path[512], before[65], after[65];
    xp_model *m = tiny(path, sizeof path), *copy;
    map_sha(m, before);
    xp_err err = {0};
    cr_assert_eq(xp_model_open(&copy, path, &err), XP_OK);
    xp_probe_set *s;
    xp_probe_tokens *pt = probes(m, probes_json, &s);
    xp_search_opts o;
    xp_search_opts_default(&o);
    o.iterations = 6;
    o.granularity = XP_GRAN_BLOCK;
    o.checkpoint_every = 0;
    xp_null_baseline r;
    cr_expect_eq(xp_exp_null_baseline(m, m, pt, 2, pt + 2, 1, &o, 2, &r, &err), XP_EINVAL,
                 "the copy must be a second model");
    cr_assert_eq(xp_exp_null_baseline(m, copy, pt, 2, pt + 2, 1, &o, 2, &r, &err), XP_OK, "%s",
                 err.msg);
    /* the trained side is exactly the search on the model */
    xp_search_result direct;
    cr_assert_eq(xp_search_run(m, pt, 2, pt + 2, 1, &o, NULL, &direct, &err), XP_OK);
    cr_expect_eq(r.run[0].accepted, direct.accepted);
    xp_search_result_free(&direct);
    for (int k = 0; k < 2; k++) {
        cr_expect_eq(r.run[k].iterations, 6);
        cr_expect_float_eq(r.rate[k], (double)r.run[k].accepted / 6, 1e-12);
        double lo, hi;
        xp_wilson(r.run[k].accepted, 6, &lo, &hi);
        cr_expect(r.lo[k] == lo && r.hi[k] == hi && lo <= r.rate[k] && r.rate[k] <= hi);
    }
    map_sha(m, after);
    cr_expect_str_eq(before, after, "the trained model is left as it was");
    map_sha(copy, after);
    cr_expect_str_neq(before, after, "the copy is randomised");
    xp_null_baseline_free(&r);
    xp_probe_tokens_free(pt, s->n);
    xp_probe_set_free(s);
    xp_model_close(copy);
    xp_model_close(m);
}

/* ---- the command ---- */

typedef struct files {
    char model[512], probes[512], neagari[512], text[512], a[512], b[512], c[512];
} files;

static files setup(void)
{
    files f;
    xp_test_tiny_model(f.model, sizeof f.model);
    xp_test_tmp_path(f.probes, sizeof f.probes, "exp-probes.json");
    xp_test_tmp_path(f.neagari, sizeof f.neagari, "exp-neagari.json");
    xp_test_tmp_path(f.text, sizeof f.text, "exp-text.txt");
    xp_test_tmp_path(f.a, sizeof f.a, "exp-a.json");
    xp_test_tmp_path(f.b, sizeof f.b, "exp-b.json");
    xp_test_tmp_path(f.c, sizeof f.c, "exp-c.json");
    xp_test_write(f.probes, probes_json);
    xp_test_write(f.neagari, neagari_json);
    xp_test_write(f.text, text);
    xp_test_write(f.a, "{\"version\":1,\"format\":\"bankai_row_xor_v1\",\"name\":\"A\",\"flips\":"
                    "[{\"layer\":1,\"proj\":\"gate_proj\",\"row\":5}]}");
    /* B and C are made for two different bases: stacking them needs --force */
    xp_patch *b = row_patch("blk.3.ffn_down.weight", 9, 'b');
    xp_patch *c = row_patch("blk.0.ffn_gate.weight", 1, 'c');
    xp_err err = {0};
    cr_assert_eq(xp_patch_normalize(b, &err), XP_OK);
    cr_assert_eq(xp_patch_normalize(c, &err), XP_OK);
    cr_assert_eq(xp_patch_write(b, XP_PATCH_JSON, f.b, &err), XP_OK, "%s", err.msg);
    cr_assert_eq(xp_patch_write(c, XP_PATCH_JSON, f.c, &err), XP_OK, "%s", err.msg);
    xp_patch_free(b);
    xp_patch_free(c);
    return f;
}

/* Runs `xorpatch experiment ARGS`; with want_json the stdout parsed (else NULL). */
static cJSON *run_exp(const files *f, const char *args, int want_rc, char **out)
{
    char cmd[5120], *o = NULL, *e = NULL;
    snprintf(cmd, sizeof cmd, "%s experiment -m '%s' %s", xp_test_bin(), f->model, args);
    int rc = xp_test_run(cmd, NULL, &o, &e);
    cr_expect_eq(rc, want_rc, "%s\n%s", cmd, e);
    cJSON *j = o ? cJSON_Parse(o) : NULL;
    if (out)
        *out = o;
    else
        free(o);
    free(e);
    return j;
}

static double num(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    cr_assert(cJSON_IsNumber(v), "no number '%s'", key);
    return v->valuedouble;
}

Test(experiment_cli, random_flips_json, .timeout = 120)
{
    files f = setup();
    char args[4096];
    snprintf(args, sizeof args, "random-flips -q --json --text '%s' --counts 0,40 --strategy "
             "bit,block --trials 2 --ctx 16 --max-chunks 1 --seed 3 -t 1", f.text);
    cJSON *j = run_exp(&f, args, 0, NULL);
    cr_assert(j);
    cr_expect_str_eq(cJSON_GetObjectItem(j, "experiment")->valuestring, "random-flips");
    cr_expect_eq(num(j, "seed"), 3);
    const cJSON *base = cJSON_GetObjectItem(j, "base"), *pts = cJSON_GetObjectItem(j, "points");
    cr_expect_eq(num(base, "tokens"), 15);
    cr_assert_eq(cJSON_GetArraySize(pts), 8, "2 strategies x 2 counts x 2 trials");
    const cJSON *p;
    cJSON_ArrayForEach(p, pts) {
        const char *strategy = cJSON_GetObjectItem(p, "strategy")->valuestring;
        double count = num(p, "count");
        cr_expect_eq(num(p, "bits"), count * (strcmp(strategy, "block") ? 1 : 128));
        if (count == 0)
            cr_expect(num(p, "ratio") == 1 && num(p, "perplexity") == num(base, "perplexity"));
        else
            cr_expect(num(p, "ratio") != 1);
    }
    cJSON_Delete(j);
}

Test(experiment_cli, layer_map_json_and_table, .timeout = 120)
{
    files f = setup();
    char args[4096], *out;
    snprintf(args, sizeof args, "layer-map -q --json --probes '%s' --layers 1,3 --proj gate,up "
             "--metric token_gap", f.probes);
    cJSON *j = run_exp(&f, args, 0, NULL);
    cr_assert(j);
    cr_expect_str_eq(cJSON_GetObjectItem(j, "metric")->valuestring, "token_gap");
    cr_expect_str_eq(cJSON_GetObjectItem(j, "proj")->valuestring, "gate,up");
    cr_expect_eq(num(j, "probes"), 3);
    const cJSON *ls = cJSON_GetObjectItem(j, "layers");
    cr_assert_eq(cJSON_GetArraySize(ls), 2);
    cr_expect_eq(num(cJSON_GetArrayItem(ls, 1), "layer"), 3);
    const cJSON *l1 = cJSON_GetArrayItem(ls, 0), *d;
    double mean_abs = 0;
    cJSON_ArrayForEach(d, cJSON_GetObjectItem(l1, "deltas"))
        mean_abs += fabs(d->valuedouble) / 3;
    cr_expect_float_eq(num(l1, "mean_abs"), mean_abs, 1e-9);
    cJSON_Delete(j);
    snprintf(args, sizeof args, "layer-map -q --probes '%s' --layers 2", f.probes);
    run_exp(&f, args, 0, &out);
    cr_expect(strstr(out, "layer-map: 3 probes, seq_logprob gaps, every sign bit of "
                          "gate,up,down") && strstr(out, "mean|dgap|") && strstr(out, "\n    2 "),
              "%s", out);
    free(out);
}

Test(experiment_cli, scale_vs_random_json, .timeout = 120)
{
    files f = setup();
    char args[4096];
    snprintf(args, sizeof args, "scale-vs-random -q --json --probes '%s' --samples 2 "
             "--granularity block --layers 2 --proj down", f.probes);
    cJSON *j = run_exp(&f, args, 0, NULL);
    cr_assert(j);
    cr_expect_eq(num(j, "samples"), 2);
    const char *groups[] = {"scale", "uniform"};
    for (int k = 0; k < 2; k++) {
        const cJSON *g = cJSON_GetObjectItem(j, groups[k]), *c;
        cr_assert_eq(cJSON_GetArraySize(cJSON_GetObjectItem(g, "candidates")), 2);
        cJSON_ArrayForEach(c, cJSON_GetObjectItem(g, "candidates")) {
            cr_expect_eq(num(c, "layer"), 2);
            cr_expect_str_eq(cJSON_GetObjectItem(c, "proj")->valuestring, "down");
            cr_expect_str_eq(cJSON_GetObjectItem(c, "kind")->valuestring, "block");
        }
    }
    cr_expect_float_eq(num(j, "ratio"), num(cJSON_GetObjectItem(j, "scale"), "mean_impact") /
                       num(cJSON_GetObjectItem(j, "uniform"), "mean_impact"), 1e-9);
    cJSON_Delete(j);
}

Test(experiment_cli, stacking_json_and_force, .timeout = 120)
{
    files f = setup();
    char args[4096];
    snprintf(args, sizeof args, "stacking -q --json --probes '%s' -p '%s' --patch '%s'", f.probes,
             f.a, f.a);
    cJSON *j = run_exp(&f, args, 0, NULL);
    cr_assert(j);
    cr_expect_eq(num(j, "bits_in"), 512);
    cr_expect_eq(num(j, "bits_out"), 0);
    const cJSON *ps = cJSON_GetObjectItem(j, "patches");
    cr_assert_eq(cJSON_GetArraySize(ps), 3);
    const cJSON *st = cJSON_GetArrayItem(ps, 2);
    cr_expect_str_eq(cJSON_GetObjectItem(st, "name")->valuestring, "stacked");
    cr_expect(num(st, "mean_abs") == 0 && num(st, "right") == num(j, "base_right"));
    cJSON_Delete(j);
    char *out;
    snprintf(args, sizeof args, "stacking -q --probes '%s' -p '%s' -p '%s'", f.probes, f.b, f.c);
    run_exp(&f, args, 2, NULL); /* two bases */
    strcat(args, " --force");
    run_exp(&f, args, 0, &out);
    cr_expect(strstr(out, "stacked") && strstr(out, "bits in 1536, out 1024 (512 cancelled)"),
              "%s", out);
    free(out);
    snprintf(args, sizeof args, "stacking -q --probes '%s' -p '%s' -p '%s' -p '%s'", f.probes,
             f.b, f.a, f.probes);
    run_exp(&f, args, 2, NULL); /* a probe file is no patch */
}

Test(experiment_cli, null_baseline_json_with_the_search_options, .timeout = 180)
{
    files f = setup();
    char args[4096];
    snprintf(args, sizeof args, "null-baseline -q --json --probes '%s' --iterations 3 "
             "--granularity block --layers 1 --proj up --fitness min --lambda 1.5 --proposal "
             "uniform --screen 0 --metric token_gap --seed 5", f.neagari);
    cJSON *j = run_exp(&f, args, 0, NULL);
    cr_assert(j);
    const cJSON *s = cJSON_GetObjectItem(j, "settings");
    cr_expect_str_eq(cJSON_GetObjectItem(s, "granularity")->valuestring, "block");
    cr_expect_str_eq(cJSON_GetObjectItem(s, "fitness")->valuestring, "min");
    cr_expect_str_eq(cJSON_GetObjectItem(s, "proposal")->valuestring, "uniform");
    cr_expect_str_eq(cJSON_GetObjectItem(s, "metric")->valuestring, "token_gap");
    cr_expect_eq(num(s, "lambda"), 1.5);
    cr_expect_eq(num(s, "screen"), 0);
    cr_expect_eq(num(s, "seed"), 5);
    cr_expect_eq(cJSON_GetArraySize(cJSON_GetObjectItem(s, "layers")), 1);
    cr_expect_str_eq(cJSON_GetArrayItem(cJSON_GetObjectItem(s, "proj"), 0)->valuestring, "up");
    cr_expect_eq(num(j, "targets"), 2);
    cr_expect_eq(num(j, "controls"), 1);
    const char *sides[] = {"trained", "randomised"};
    for (int k = 0; k < 2; k++) {
        const cJSON *r = cJSON_GetObjectItem(j, sides[k]);
        cr_expect_eq(num(r, "iterations"), 3);
        cr_expect_float_eq(num(r, "rate"), num(r, "accepted") / 3, 1e-12);
        double lo, hi;
        xp_wilson((size_t)num(r, "accepted"), 3, &lo, &hi);
        cr_expect_float_eq(num(r, "lo"), lo, 1e-12);
        cr_expect_float_eq(num(r, "hi"), hi, 1e-12);
    }
    cJSON_Delete(j);
}

Test(experiment_cli, bad_names_options_and_missing_files_exit_2)
{
    files f = setup();
    char args[4096], *out;
    struct { const char *args; int rc;
    } cases[] = {
        {"coin-flips --probes P", 2},
        {"--probes P", 2},
        {"layer-map stacking --probes P", 2},
        {"layer-map --probes P --counts 10", 2},
        {"stacking --probes P -p A -p A --seed 2", 2},
        {"random-flips --text T --probes P", 2},
        {"random-flips --text T --strategy bit,coin", 2},
        {"random-flips --text T --counts 10,x", 2},
        {"random-flips --probes P", 2},
        {"layer-map", 2},
        {"stacking --probes P -p A", 2},
        {"scale-vs-random --probes P --granularity scale-bit", 2},
        {"null-baseline --probes P --metric generation", 2},
        {"null-baseline --probes P --iterations 0", 2},
        {"layer-map --probes /nonexistent.json", 2},
        {"random-flips --text /nonexistent.txt", 2},
        {"stacking --probes P -p A -p /nonexistent.json", 2},
        {"layer-map --probes P --layers 9", 2},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char a[3072] = "";
        for (const char *c = cases[i].args; *c; c++) { /* P, T, A: the files */
            const char *sub = *c == 'P' && (c[1] == 0 || c[1] == ' ') ? f.probes
                              : *c == 'T' && (c[1] == 0 || c[1] == ' ') ? f.text
                              : *c == 'A' && (c[1] == 0 || c[1] == ' ') ? f.a : NULL;
            size_t len = strlen(a);
            if (sub)
                snprintf(a + len, sizeof a - len, "'%s'", sub);
            else
                a[len] = *c, a[len + 1] = 0;
        }
        snprintf(args, sizeof args, "-q %s", a);
        cJSON_Delete(run_exp(&f, args, cases[i].rc, NULL));
    }
    char cmd[1024], *e;
    snprintf(cmd, sizeof cmd, "%s experiment -m /nonexistent.gguf layer-map --probes '%s'",
             xp_test_bin(), f.probes);
    cr_expect_eq(xp_test_run(cmd, NULL, &out, &e), 2, "%s", e);
    free(out), free(e);
    snprintf(cmd, sizeof cmd, "%s experiment --help", xp_test_bin());
    cr_expect_eq(xp_test_run(cmd, NULL, &out, &e), 0);
    const char *names[] = {"random-flips", "layer-map", "scale-vs-random", "stacking",
                           "null-baseline", "Wilson"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        cr_expect(strstr(out, names[i]), "help names %s", names[i]);
    free(out), free(e);
}
