/* The in-memory patch: canonical form (identical flips cancel, masks merge, rows and
 * blocks resolve once the layout is known, one identity whatever the order), validation
 * against a model before anything is touched (all or nothing), apply / revert with the
 * log refusing double application, the binary and JSON codecs (round trips, sizes,
 * damage detection, clear errors for bad input), Neagari directories, and diff ∘ apply
 * = identity on random patches. */
#include <cjson/cJSON.h>
#include <string.h>

#include "test_patch_util.h"

static xp_patch *new_patch(void)
{
    xp_patch *p;
    cr_assert_eq(xp_patch_new(&p, NULL), XP_OK);
    return p;
}

static void add(xp_patch *p, const char *t, int kind, int64_t index, int extra)
{
    xp_flip f = {.kind = (uint8_t)kind, .index = index, .bit = (uint8_t)extra,
                 .group = (uint32_t)extra};
    memset(f.mask, extra, 16);
    xp_err err = {0};
    cr_assert_eq(xp_patch_add(p, t, &f, &err), XP_OK, "%s", err.msg);
}

static void id_of(xp_patch *p, char hex[65])
{
    xp_err err = {0};
    cr_assert_eq(xp_patch_flips_sha256(p, hex, &err), XP_OK, "%s", err.msg);
}

/* Flips equal in everything but their position in the file they came from. */
static int same_flips(const xp_patch *a, const xp_patch *b)
{
    if (a->n_flips != b->n_flips)
        return 0;
    for (size_t i = 0; i < a->n_flips; i++) {
        xp_flip x = a->flips[i], y = b->flips[i];
        x.src = y.src = 0;
        if (memcmp(&x, &y, sizeof x) || strcmp(a->tensors[x.tensor].name, b->tensors[y.tensor].name))
            return 0;
    }
    return 1;
}

static xp_patch *parse(const char *text, xp_err *err)
{
    xp_patch *p = NULL;
    int rc = xp_patch_parse(&p, text, strlen(text), "test.json", err);
    cr_assert((rc == XP_OK) == (p != NULL));
    return p;
}

static void expect_parse_error(const char *text, const char *needle)
{
    xp_err err = {0};
    xp_patch *p = parse(text, &err);
    cr_expect_null(p, "parsed: %s", text);
    cr_expect(strstr(err.msg, needle), "error for %s was '%s', expected '%s'", text, err.msg,
              needle);
    cr_expect(strstr(err.msg, "test.json"), "error does not name the file: %s", err.msg);
    xp_patch_free(p);
}

Test(patch, identical_flips_cancel_and_masks_merge)
{
    xp_patch *p = new_patch();
    add(p, "blk.0.ffn_up.weight", XP_FLIP_ROW, 5, 0);
    add(p, "blk.0.ffn_up.weight", XP_FLIP_ROW, 5, 0);
    add(p, "blk.0.ffn_up.weight", XP_FLIP_SCALE, 9, 3);
    add(p, "blk.0.ffn_up.weight", XP_FLIP_SCALE, 9, 4);
    add(p, "blk.0.ffn_up.weight", XP_FLIP_SCALE, 9, 3);
    add(p, "blk.0.ffn_up.weight", XP_FLIP_MASK, 2, 0x0f);
    add(p, "blk.0.ffn_up.weight", XP_FLIP_MASK, 2, 0xf0);  /* merged: all ones = block */
    add(p, "blk.0.ffn_up.weight", XP_FLIP_BLOCK, 7, 0);
    add(p, "blk.0.ffn_up.weight", XP_FLIP_MASK, 7, 0x01);  /* block ^ mask = mask 0xfe */
    add(p, "blk.0.attn_q.weight", XP_FLIP_ROW, 1, 0);
    add(p, "blk.0.attn_q.weight", XP_FLIP_ROW, 1, 0);      /* the whole tensor cancels */
    cr_assert_eq(xp_patch_normalize(p, NULL), XP_OK);
    cr_assert_eq(p->n_tensors, 1, "a tensor whose flips all cancel is dropped");
    cr_assert_str_eq(p->tensors[0].name, "blk.0.ffn_up.weight");
    cr_assert_eq(p->n_flips, 3);
    cr_expect_eq(p->flips[0].kind, XP_FLIP_BLOCK);
    cr_expect_eq(p->flips[0].index, 2);
    cr_expect_eq(p->flips[1].kind, XP_FLIP_SCALE);
    cr_expect_eq(p->flips[1].index, 9);
    cr_expect_eq(p->flips[1].bit, 4);
    cr_expect_eq(p->flips[2].kind, XP_FLIP_MASK);
    cr_expect_eq(p->flips[2].index, 7);
    cr_expect_eq(p->flips[2].mask[0], 0xfe);
    cr_expect_eq(p->flips[2].mask[15], 0xfe);
    xp_patch_free(p);
}

Test(patch, identity_ignores_order_repetition_and_format)
{
    xp_patch *a = new_patch(), *b = new_patch();
    add(a, "blk.3.ffn_gate.weight", XP_FLIP_ROW, 10, 0);
    add(a, "blk.1.ffn_up.weight", XP_FLIP_BLOCK, 4, 0);
    add(a, "output.weight", XP_FLIP_SCALE, 8, 15);
    add(b, "output.weight", XP_FLIP_SCALE, 8, 15);
    add(b, "blk.1.ffn_up.weight", XP_FLIP_BLOCK, 99, 0);
    add(b, "blk.1.ffn_up.weight", XP_FLIP_BLOCK, 4, 0);
    add(b, "blk.1.ffn_up.weight", XP_FLIP_BLOCK, 99, 0);
    add(b, "blk.3.ffn_gate.weight", XP_FLIP_ROW, 10, 0);
    char ia[65], ib[65];
    id_of(a, ia);
    id_of(b, ib);
    cr_expect_str_eq(ia, ib);
    /* the same flips through every format keep the identity */
    for (int f = XP_PATCH_JSON; f <= XP_PATCH_BINARY_COMPACT; f++) {
        uint8_t *buf;
        size_t len;
        xp_err err = {0};
        cr_assert_eq(xp_patch_serialize(a, f, &buf, &len, &err), XP_OK, "%s", err.msg);
        xp_patch *c = NULL;
        cr_assert_eq(xp_patch_parse(&c, buf, len, "mem", &err), XP_OK, "%s: %s",
                     xp_patch_format_name(f), err.msg);
        char ic[65];
        id_of(c, ic);
        cr_expect_str_eq(ic, ia, "%s changes the identity", xp_patch_format_name(f));
        free(buf);
        xp_patch_free(c);
    }
    xp_patch_free(a);
    xp_patch_free(b);
}

Test(patch, layout_resolves_row_groups_and_row_block_overlaps)
{
    xp_shape s = xp_test_medium_shape(); /* ffn_down: 3 blocks per row, 256 rows */
    const char *t = "blk.1.ffn_down.weight";
    xp_patch *p = new_patch();
    add(p, t, XP_FLIP_ROW, 4, 0);
    add(p, t, XP_FLIP_BLOCK, 13, 0);          /* row 4, group 1: cancels inside the row */
    add(p, t, XP_FLIP_ROW_GROUP, 7, 0);       /* blocks 21, 22, 23 = row 7 */
    add(p, t, XP_FLIP_ROW_GROUP, 7, 1);
    add(p, t, XP_FLIP_BLOCK, 23, 0);
    add(p, t, XP_FLIP_ROW_GROUP, 9, 2);       /* block 29 */
    xp_err err = {0};
    cr_assert_eq(xp_patch_normalize(p, &err), XP_OK);
    cr_expect_not(p->bound, "no layout yet");
    cr_assert_eq(xp_patch_bind_shape(p, &s, &err), XP_OK, "%s", err.msg);
    cr_expect(p->bound);
    cr_expect_eq(p->tensors[0].ne0, 384);
    cr_expect_eq(p->tensors[0].ne1, 256);
    /* row 7 whole; blocks 12 and 14 of row 4; block 29 */
    cr_assert_eq(p->n_flips, 4, "%zu flips", p->n_flips);
    cr_expect_eq(p->flips[0].kind, XP_FLIP_ROW);
    cr_expect_eq(p->flips[0].index, 7);
    cr_expect_eq(p->flips[1].index, 12);
    cr_expect_eq(p->flips[2].index, 14);
    cr_expect_eq(p->flips[3].index, 29);
    xp_patch_stats st;
    xp_patch_total_stats(p, &st);
    cr_expect(st.bits_known);
    cr_expect_eq(st.bits, 384 + 3 * 128);
    xp_patch_free(p);
}

Test(patch, bind_checks_every_flip_before_touching_the_model)
{
    char path[512];
    xp_test_small_model(path, sizeof path);
    xp_gguf *g = xp_test_open(path);
    const xp_gguf_tensor *up = xp_gguf_tensor_by_name(g, "blk.0.ffn_up.weight");
    uint8_t *before = malloc(up->nbytes);
    memcpy(before, up->data, up->nbytes);
    struct { int kind; const char *tensor; int64_t index; int extra; const char *needle; } bad[] = {
        {XP_FLIP_ROW, "blk.7.ffn_up.weight", 0, 0, "is not in"},
        {XP_FLIP_ROW, "blk.0.attn_norm.weight", 0, 0, "expected q1_0"},
        {XP_FLIP_ROW, "blk.0.ffn_up.weight", 256, 0, "row out of range: the tensor has 256 rows"},
        {XP_FLIP_BLOCK, "blk.0.ffn_up.weight", 256, 0, "block out of range"},
        {XP_FLIP_ROW_GROUP, "blk.0.ffn_down.weight", 3, 2, "group out of range"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        xp_patch *p = new_patch();
        p->path = strdup("bad.json");
        add(p, "blk.0.ffn_up.weight", XP_FLIP_ROW, 3, 0); /* a good flip first */
        add(p, bad[i].tensor, bad[i].kind, bad[i].index, bad[i].extra);
        xp_patch_log log;
        xp_patch_log_init(&log);
        xp_err err = {0};
        cr_expect_neq(xp_patch_apply(g, p, &log, &err), XP_OK, "case %zu applied", i);
        cr_expect(strstr(err.msg, bad[i].needle), "case %zu: '%s' lacks '%s'", i, err.msg,
                  bad[i].needle);
        cr_expect(strstr(err.msg, "bad.json") && strstr(err.msg, "flip 1"),
                  "case %zu: '%s' names no file and flip", i, err.msg);
        cr_expect_eq(log.n, 0);
        cr_expect_eq(memcmp(before, up->data, up->nbytes), 0, "case %zu touched the model", i);
        cr_expect_eq(p->tensors[0].ne0, 0, "a failed bind leaves the patch's shapes alone");
        xp_patch_log_free(&log);
        xp_patch_free(p);
    }
    xp_patch *p = new_patch();
    xp_flip f = {.kind = XP_FLIP_SCALE, .index = 0, .bit = 16};
    xp_err err = {0};
    cr_expect_eq(xp_patch_add(p, "blk.0.ffn_up.weight", &f, &err), XP_EINVAL);
    cr_expect(strstr(err.msg, "0 to 15"), "%s", err.msg);
    xp_patch_free(p);
    free(before);
    xp_gguf_close(g);
}

Test(patch, apply_revert_and_the_log)
{
    char path[512];
    xp_test_medium_model(path, sizeof path);
    xp_gguf *g = xp_test_open(path), *orig = xp_test_open(path);
    xp_patch *a = xp_test_random_patch(g, 1, 40), *b = xp_test_random_patch(g, 2, 40);
    a->name = (free(a->name), strdup("a"));
    b->name = (free(b->name), strdup("b"));
    xp_patch_log log;
    xp_patch_log_init(&log);
    xp_err err = {0};
    cr_assert_eq(xp_patch_apply(g, a, &log, &err), XP_OK, "%s", err.msg);
    cr_assert_eq(xp_patch_apply(g, b, &log, &err), XP_OK, "%s", err.msg);
    cr_expect_eq(log.n, 2);
    cr_expect_str_eq(log.items[0].name, "a");
    cr_expect_str_eq(log.items[1].name, "b");
    cr_expect_eq(xp_patch_apply(g, a, &log, &err), XP_EINVAL);
    cr_expect(strstr(err.msg, "already applied") && strstr(err.msg, "revert"), "%s", err.msg);
    /* a's twin from another file has the same identity: refused too */
    uint8_t *buf;
    size_t len;
    cr_assert_eq(xp_patch_serialize(a, XP_PATCH_BINARY_COMPACT, &buf, &len, &err), XP_OK);
    xp_patch *twin;
    cr_assert_eq(xp_patch_parse(&twin, buf, len, "twin", &err), XP_OK, "%s", err.msg);
    free(buf);
    cr_expect_eq(xp_patch_apply(g, twin, &log, &err), XP_EINVAL);
    cr_assert_eq(xp_patch_revert(g, a, &log, &err), XP_OK, "%s", err.msg);
    cr_expect_eq(xp_patch_revert(g, a, &log, &err), XP_EINVAL);
    cr_expect(strstr(err.msg, "not applied"), "%s", err.msg);
    cr_assert_eq(xp_patch_revert(g, b, &log, &err), XP_OK, "%s", err.msg);
    cr_expect_eq(log.n, 0);
    cr_expect_eq(memcmp(g->map, orig->map, g->map_len), 0, "revert restores every byte");
    /* without a log the flips are just XORed */
    cr_assert_eq(xp_patch_apply(g, a, NULL, &err), XP_OK);
    cr_expect_neq(memcmp(g->map, orig->map, g->map_len), 0);
    cr_assert_eq(xp_patch_apply(g, a, NULL, &err), XP_OK);
    cr_expect_eq(memcmp(g->map, orig->map, g->map_len), 0);
    xp_patch_log_free(&log);
    xp_patch_free(a), xp_patch_free(b), xp_patch_free(twin);
    xp_gguf_close(g), xp_gguf_close(orig);
}

Test(patch, diff_of_apply_is_the_patch_on_random_patches)
{
    char path[512];
    xp_test_medium_model(path, sizeof path);
    xp_gguf *base = xp_test_open(path), *g = xp_test_open(path);
    for (uint64_t seed = 1; seed <= 25; seed++) {
        xp_patch *p = xp_test_random_patch(g, seed, 1 + (int)(seed * 7 % 60));
        xp_err err = {0};
        cr_assert_eq(xp_patch_apply(g, p, NULL, &err), XP_OK, "%s", err.msg);
        xp_patch *d = NULL;
        int rc = xp_patch_diff(&d, base, g, &err);
        if (p->n_flips == 0) {
            cr_expect_eq(rc, XP_EINVAL, "an empty patch gives an empty diff");
        } else {
            cr_assert_eq(rc, XP_OK, "seed %llu: %s", (unsigned long long)seed, err.msg);
            char ip[65], id[65];
            id_of(p, ip);
            id_of(d, id);
            cr_expect_str_eq(ip, id, "seed %llu: diff(base, base ^ P) != P",
                             (unsigned long long)seed);
            cr_expect_eq(d->n_flips, p->n_flips);
            cr_assert_eq(xp_patch_apply(g, d, NULL, &err), XP_OK, "%s", err.msg);
        }
        cr_expect_eq(memcmp(g->map, base->map, g->map_len), 0, "seed %llu",
                     (unsigned long long)seed);
        xp_patch_free(p);
        xp_patch_free(d);
    }
    xp_gguf_close(base), xp_gguf_close(g);
}

Test(patch, stack_cancels_overlaps_and_checks_bases)
{
    xp_patch *a = new_patch(), *b = new_patch(), *s = NULL;
    add(a, "blk.0.ffn_up.weight", XP_FLIP_ROW, 1, 0);
    add(a, "blk.0.ffn_up.weight", XP_FLIP_ROW, 2, 0);
    add(b, "blk.0.ffn_up.weight", XP_FLIP_ROW, 2, 0);
    add(b, "blk.0.ffn_gate.weight", XP_FLIP_BLOCK, 2, 0);
    xp_err err = {0};
    xp_patch *ab[] = {a, b};
    cr_assert_eq(xp_patch_stack(&s, ab, 2, false, &err), XP_OK, "%s", err.msg);
    cr_expect_eq(s->n_flips, 2, "row 2 is in both: it cancels");
    xp_patch_free(s);
    memset(a->base_sha256, 'a', 64);
    memset(b->base_sha256, 'b', 64);
    cr_expect_eq(xp_patch_stack(&s, ab, 2, false, &err), XP_EINVAL);
    cr_expect(strstr(err.msg, "--force"), "%s", err.msg);
    cr_assert_eq(xp_patch_stack(&s, ab, 2, true, &err), XP_OK);
    xp_patch_free(s);
    xp_patch *aa[] = {a, a};
    cr_assert_eq(xp_patch_stack(&s, aa, 2, false, &err), XP_OK);
    cr_expect_eq(s->n_flips, 0, "a patch stacked on itself is empty");
    xp_patch_free(s);
    xp_patch_free(a), xp_patch_free(b);
}

/* ---- binary ------------------------------------------------------------------- */

Test(patch_binary, round_trips_random_patches_and_is_small)
{
    char path[512];
    xp_test_medium_model(path, sizeof path);
    xp_gguf *g = xp_test_open(path);
    for (uint64_t seed = 1; seed <= 20; seed++) {
        xp_patch *p = xp_test_random_patch(g, seed, 50);
        xp_err err = {0};
        if (seed % 2)
            cr_assert_eq(xp_patch_bind(p, g, &err), XP_OK, "%s", err.msg);
        else
            cr_assert_eq(xp_patch_normalize(p, &err), XP_OK, "%s", err.msg);
        if (!p->n_flips) {
            xp_patch_free(p);
            continue;
        }
        memset(p->base_sha256, 'c', 64);
        p->search = strdup("{\"seed\":1,\"probes\":{\"a.json\":\"00\"},\"final_fitness\":0.5}");
        uint8_t *buf, *buf2;
        size_t len, len2;
        cr_assert_eq(xp_patch_serialize(p, XP_PATCH_BINARY, &buf, &len, &err), XP_OK, "%s",
                     err.msg);
        xp_patch *q;
        cr_assert_eq(xp_patch_parse(&q, buf, len, "mem.xpb", &err), XP_OK, "%s", err.msg);
        cr_expect_str_eq(q->name, "random");
        cr_expect_str_eq(q->base_sha256, p->base_sha256);
        cr_expect_str_eq(q->search, p->search);
        cr_expect_eq(q->bound, p->bound);
        cr_assert_eq(q->n_flips, p->n_flips);
        cr_expect(same_flips(p, q), "seed %llu", (unsigned long long)seed);
        cr_assert_eq(xp_patch_serialize(q, XP_PATCH_BINARY, &buf2, &len2, &err), XP_OK);
        cr_expect(len == len2 && memcmp(buf, buf2, len) == 0, "encoding is a fixed point");
        /* every single-byte change and every truncation is refused */
        for (size_t i = 0; i < len; i += 1 + len / 64) {
            buf[i] ^= 0x20;
            xp_patch *r = NULL;
            cr_expect_neq(xp_patch_parse(&r, buf, len, "mem.xpb", &err), XP_OK, "byte %zu", i);
            cr_expect(strstr(err.msg, "mem.xpb"), "%s", err.msg);
            xp_patch_free(r);
            buf[i] ^= 0x20;
            cr_expect_neq(xp_patch_parse(&r, buf, i, "mem.xpb", &err), XP_OK, "cut at %zu", i);
            xp_patch_free(r);
        }
        free(buf), free(buf2);
        xp_patch_free(p), xp_patch_free(q);
    }
    xp_gguf_close(g);
}

Test(patch_binary, a_93_row_patch_is_far_below_12_bytes_per_flip)
{
    xp_shape s;
    cr_assert_eq(xp_shape_preset("bonsai-8b", &s, NULL), XP_OK);
    xp_patch *p = new_patch();
    xp_rng r;
    xp_rng_seed(&r, 93);
    const int layers[] = {1, 2, 3, 4, 34};
    while (p->n_flips < 93) {
        char t[64];
        snprintf(t, sizeof t, "blk.%d.%s.weight", layers[xp_rng_below(&r, 5)],
                 xp_rng_below(&r, 2) ? "ffn_gate" : "ffn_up");
        add(p, t, XP_FLIP_ROW, (int64_t)xp_rng_below(&r, 12288), 0);
        cr_assert_eq(xp_patch_normalize(p, NULL), XP_OK);
    }
    xp_err err = {0};
    cr_assert_eq(xp_patch_bind_shape(p, &s, &err), XP_OK, "%s", err.msg);
    uint8_t *buf;
    size_t len;
    cr_assert_eq(xp_patch_serialize(p, XP_PATCH_BINARY_COMPACT, &buf, &len, &err), XP_OK);
    cr_log_info("93-row patch: %zu bytes binary (%.2f B/flip), Bankai 1116", len, len / 93.0);
    cr_expect_lt(len, 93 * 4, "%zu bytes for 93 rows", len);
    free(buf);
    xp_patch_free(p);
}

/* ---- JSON --------------------------------------------------------------------- */

Test(patch_json, clear_errors_for_bad_patches)
{
    expect_parse_error("{\n  \"flips\": [1,,2]\n}", "line 2, column 15: malformed JSON");
    expect_parse_error("[1, 2]", "expected a JSON object");
    expect_parse_error("{\"format\":\"bankai_row_xor_v1\",\"flips\":[]}", "no flips");
    expect_parse_error("{\"format\":\"bankai_row_xor_v1\",\"flips\":[{\"layer\":1,\"proj\":"
                       "\"up_proj\",\"row\":3},{\"layer\":1,\"proj\":\"up_proj\",\"row\":3}]}",
                       "flips 0 and 1 are the same flip (blk.1.ffn_up.weight row 3)");
    expect_parse_error("{\"format\":\"xorpatch/1\",\"tensors\":{\"blk.0.ffn_up.weight\":"
                       "{\"blocks\":[2],\"masks\":[[2,\"ffffffffffffffffffffffffffffffff\"]]}}}",
                       "cancel in pairs: the patch is empty");
    expect_parse_error("{\"format\":\"bankai_row_xor_v1\",\"flips\":[{\"layer\":1,\"proj\":"
                       "\"mlp_proj\",\"row\":3}]}", "flips[0]: unknown projection \"mlp_proj\"");
    expect_parse_error("{\"format\":\"bankai_group_xor_v2\",\"flips\":[{\"layer\":1,\"proj\":"
                       "\"gate_proj\",\"group\":3,\"type\":\"group\"}]}", "unknown projection");
    expect_parse_error("{\"version\":1,\"flips\":[{\"layer\":1,\"proj\":\"up_proj\",\"row\":-4}]}",
                       "\"row\" must be an integer");
    expect_parse_error("{\"version\":1,\"flips\":[{\"layer\":1,\"proj\":\"up_proj\"}]}",
                       "flips[0]: \"row\" is missing");
    expect_parse_error("{\"version\":2,\"flips\":[{\"layer\":1,\"proj\":\"ffn_up.weight\",\"group\""
                       ":3,\"type\":\"scale\",\"bit\":16}]}", "\"bit\" must be an integer from 0 to 15");
    expect_parse_error("{\"version\":2,\"flips\":[{\"layer\":1,\"proj\":\"ffn_up.weight\",\"group\""
                       ":3,\"type\":\"sign\"}]}", "unknown flip type \"sign\"");
    expect_parse_error("{\"format\":\"bankai_row_xor_v9\",\"flips\":[]}", "unknown patch format");
    expect_parse_error("{\"format\":\"xorpatch/2\"}", "newer than this xorpatch reads");
    expect_parse_error("{\"format\":\"xorpatch/1\",\"tensors\":{\"blk.0.ffn_up.weight\":"
                       "{\"rwos\":[1]}}}", "unknown key \"rwos\"");
    expect_parse_error("{\"format\":\"xorpatch/1\",\"tensors\":{\"blk.0.ffn_up.weight\":"
                       "{\"rows\":[1],\"shape\":[128,1]}}}", "row out of range");
    expect_parse_error("{\"format\":\"xorpatch/1\",\"tensors\":{\"x\":{\"masks\":[[1,\"00\"]]}}}",
                       "[block, \"32 hex digits\"]");
    expect_parse_error("{\"format\":\"xorpatch/1\",\"tensors\":{\"x\":{\"rows\":[1]}},"
                       "\"flips_sha256\":\"" "0000000000000000000000000000000000000000000000000000"
                       "000000000000\"}", "edited or damaged");
    expect_parse_error("{\"steps\":[{\"patch_file\":\"./a/patch_x.json\"}]}", "Neagari manifest");
    expect_parse_error("{\"version\":1,\"flips\":[]} x", "unexpected text after the JSON value");
}

Test(patch_json, own_format_round_trips_provenance)
{
    xp_patch *p = new_patch();
    add(p, "blk.2.ffn_gate.weight", XP_FLIP_ROW, 17, 0);
    add(p, "blk.2.ffn_gate.weight", XP_FLIP_MASK, 40, 0x5a);
    add(p, "token_embd.weight", XP_FLIP_SCALE, 3, 9);
    add(p, "blk.0.attn_v.weight", XP_FLIP_ROW_GROUP, 3, 1);
    p->name = strdup("prov");
    p->description = strdup("a test patch");
    memset(p->base_sha256, 'e', 64);
    p->base_model = strdup("synthetic");
    p->tool = strdup("xorpatch " XP_VERSION);
    p->created = strdup("2025-01-01T00:00:00Z");
    p->architecture = strdup("{\"n_layer\":3}");
    p->search = strdup("{\"iterations\":300,\"probe_sha256\":{\"p.json\":\"ab\"},\"final_fitness\":0.25}");
    p->source = strdup("{\"diff\":{\"a\":\"x\"}}");
    xp_err err = {0};
    cr_assert_eq(xp_patch_normalize(p, &err), XP_OK);
    uint8_t *buf;
    size_t len;
    cr_assert_eq(xp_patch_serialize(p, XP_PATCH_JSON, &buf, &len, &err), XP_OK, "%s", err.msg);
    char *text = (char *)buf;
    xp_patch *q = parse(text, &err);
    cr_assert_not_null(q, "%s\n%s", err.msg, text);
    const char *fields[][2] = {{p->name, q->name}, {p->description, q->description},
                               {p->base_sha256, q->base_sha256}, {p->base_model, q->base_model},
                               {p->tool, q->tool}, {p->created, q->created},
                               {p->architecture, q->architecture}, {p->search, q->search},
                               {p->source, q->source}};
    for (size_t i = 0; i < sizeof fields / sizeof *fields; i++)
        cr_expect_str_eq(fields[i][1] ? fields[i][1] : "(null)", fields[i][0], "field %zu", i);
    cr_assert_eq(q->n_flips, 4);
    cr_expect(same_flips(p, q));
    free(text);
    xp_patch_free(p), xp_patch_free(q);
}

Test(patch_json, bankai_and_neagari_writers_take_what_fits)
{
    xp_shape s = xp_test_medium_shape();
    xp_patch *p = new_patch();
    add(p, "blk.1.ffn_up.weight", XP_FLIP_ROW, 17, 0);
    add(p, "blk.1.ffn_down.weight", XP_FLIP_BLOCK, 40, 0);
    xp_err err = {0};
    cr_assert_eq(xp_patch_normalize(p, &err), XP_OK);
    uint8_t *buf;
    size_t len;
    /* a block needs the row length for v1 (row, group); a row needs it for v2 (blocks) */
    cr_expect_eq(xp_patch_serialize(p, XP_PATCH_BANKAI_V1, &buf, &len, &err), XP_EINVAL);
    cr_expect(strstr(err.msg, "give the model"), "%s", err.msg);
    cr_expect_eq(xp_patch_serialize(p, XP_PATCH_NEAGARI_V2, &buf, &len, &err), XP_EINVAL);
    cr_assert_eq(xp_patch_bind_shape(p, &s, &err), XP_OK, "%s", err.msg);
    char want[65];
    id_of(p, want);
    for (int f = XP_PATCH_BANKAI_V1; f <= XP_PATCH_NEAGARI_V2; f++) {
        cr_assert_eq(xp_patch_serialize(p, f, &buf, &len, &err), XP_OK, "%s", err.msg);
        cJSON *o = cJSON_ParseWithLength((const char *)buf, len);
        cr_assert_not_null(o);
        cr_expect_str_eq(cJSON_GetObjectItem(o, "format")->valuestring,
                         f == XP_PATCH_BANKAI_V1 ? "bankai_row_xor_v1" : "bankai_group_xor_v2");
        cr_expect_eq(cJSON_GetArraySize(cJSON_GetObjectItem(o, "flips")),
                     f == XP_PATCH_BANKAI_V1 ? 2 : 2 + 1, "v2 spells the row as its 2 blocks");
        cJSON_Delete(o);
        xp_patch *q;
        cr_assert_eq(xp_patch_parse(&q, buf, len, "w.json", &err), XP_OK, "%s", err.msg);
        cr_assert_eq(xp_patch_bind_shape(q, &s, &err), XP_OK, "%s", err.msg);
        char have[65];
        id_of(q, have);
        cr_expect_str_eq(have, want, "%s round trip", xp_patch_format_name(f));
        free(buf);
        xp_patch_free(q);
    }
    /* what a format does not hold is refused, naming the flip */
    add(p, "blk.1.ffn_up.weight", XP_FLIP_MASK, 3, 0x11);
    cr_assert_eq(xp_patch_bind_shape(p, &s, &err), XP_OK);
    for (int f = XP_PATCH_BANKAI_V1; f <= XP_PATCH_NEAGARI_V2; f++) {
        cr_expect_eq(xp_patch_serialize(p, f, &buf, &len, &err), XP_EINVAL);
        cr_expect(strstr(err.msg, "blk.1.ffn_up.weight mask 3"), "%s", err.msg);
    }
    xp_patch *e = new_patch();
    add(e, "token_embd.weight", XP_FLIP_SCALE, 3, 2);
    cr_assert_eq(xp_patch_bind_shape(e, &s, &err), XP_OK);
    cr_expect_eq(xp_patch_serialize(e, XP_PATCH_NEAGARI_V2, &buf, &len, &err), XP_EINVAL);
    cr_expect(strstr(err.msg, "token_embd.weight") && strstr(err.msg, "names only"), "%s",
              err.msg);
    xp_patch_free(e);
    xp_patch_free(p);
}

/* ---- directories ---------------------------------------------------------------- */

Test(patch_dir, manifest_order_missing_steps_and_empty_directories)
{
    char dir[512], file[700];
    xp_test_tmp_path(dir, sizeof dir, "patchdir");
    cr_assert_eq(mkdir(dir, 0777), 0);
    xp_patch **ps;
    size_t n, missing;
    xp_err err = {0};
    cr_expect_eq(xp_patch_read_all(&ps, &n, &missing, dir, &err), XP_ENOTFOUND);
    cr_expect(strstr(err.msg, "patch_*.json") && strstr(err.msg, dir), "%s", err.msg);
    const char *v2 = "{\"version\":2,\"format\":\"bankai_group_xor_v2\",\"domain\":\"%s\","
                     "\"flips\":[{\"layer\":1,\"proj\":\"ffn_up.weight\",\"group\":%d,"
                     "\"type\":\"group\"}]}";
    const char *names[] = {"alpha", "beta", "gamma"};
    for (int i = 0; i < 3; i++) {
        char text[512];
        snprintf(text, sizeof text, v2, names[i], i);
        snprintf(file, sizeof file, "%s/patch_%s.json", dir, names[i]);
        xp_test_write(file, text);
    }
    cr_assert_eq(xp_patch_read_all(&ps, &n, &missing, dir, &err), XP_OK, "%s", err.msg);
    cr_expect_eq(n, 3);
    cr_expect_str_eq(ps[0]->name, "patch_alpha", "without a manifest: by name");
    xp_patch_list_free(ps, n);
    snprintf(file, sizeof file, "%s/manifest.json", dir);
    xp_test_write(file, "{\"steps\":[{\"patch_file\":\"./d/patch_gamma.json\"},{\"patch_file\":"
                     "\"./d/patch_delta.json\"},{\"patch_file\":\"./d/patch_alpha.json\"}]}");
    cr_assert_eq(xp_patch_read_all(&ps, &n, &missing, dir, &err), XP_OK, "%s", err.msg);
    cr_assert_eq(n, 3);
    cr_expect_eq(missing, 1);
    cr_expect_str_eq(ps[0]->name, "patch_gamma");
    cr_expect_str_eq(ps[1]->name, "patch_alpha");
    cr_expect_str_eq(ps[2]->name, "patch_beta", "files the manifest does not name come last");
    cr_expect(strstr(ps[0]->search, "\"domain\":\"gamma\""), "%s", ps[0]->search);
    xp_patch_list_free(ps, n);
    xp_test_write(file, "{\"steps\": 3}");
    cr_expect_eq(xp_patch_read_all(&ps, &n, &missing, dir, &err), XP_EFORMAT);
    cr_expect(strstr(err.msg, "manifest.json"), "%s", err.msg);
}
