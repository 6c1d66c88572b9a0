/* The GGUF reader and writer on valid files: every metadata value type survives a
 * write and a read with its exact bytes, typed look-ups convert only when the value
 * fits, alignment and padding follow ggml (checked against bytes assembled by hand),
 * the writer is a fixed point (write, read, copy, write gives the same bytes, also for
 * the golden files ggml itself wrote), a failed write leaves the target as it was, and
 * the reader's map is private so in-memory flips never reach the file. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <string.h>

#include "gguf_build.h"
#include "testutil.h"
#include "xorpatch.h"

static uint8_t *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    cr_assert(f, "cannot open %s: %s", path, strerror(errno));
    cr_assert_eq(fseek(f, 0, SEEK_END), 0);
    long n = ftell(f);
    cr_assert(n >= 0);
    rewind(f);
    uint8_t *p = malloc((size_t)n + 1);
    cr_assert(p);
    cr_assert_eq(fread(p, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return p;
}

static void assert_same_file(const char *a, const char *b)
{
    size_t na, nb;
    uint8_t *pa = slurp(a, &na), *pb = slurp(b, &nb);
    cr_assert_eq(na, nb, "%s has %zu bytes, %s has %zu", a, na, b, nb);
    size_t i = 0;
    while (i < na && pa[i] == pb[i])
        i++;
    cr_assert_eq(i, na, "%s and %s first differ at byte %zu", a, b, i);
    free(pa);
    free(pb);
}

static xp_gguf *open_ok(const char *path)
{
    xp_gguf *g;
    xp_err err;
    int rc = xp_gguf_open(&g, path, &err);
    cr_assert_eq(rc, XP_OK, "%s", err.msg);
    return g;
}

static void write_ok(xp_gguf_writer *w, const char *path)
{
    xp_err err;
    int rc = xp_gguf_writer_write(w, path, &err);
    cr_assert_eq(rc, XP_OK, "%s", err.msg);
}

/* A small Q1_0 tensor's bytes: block b has scale 1 + b/8 and a pattern of sign bits. */
static void q1_bytes(uint8_t *p, int blocks)
{
    for (int b = 0; b < blocks; b++) {
        uint16_t d = xp_f32_to_fp16(1.0f + (float)b / 8);
        p[b * 18] = (uint8_t)d;
        p[b * 18 + 1] = (uint8_t)(d >> 8);
        for (int i = 0; i < 16; i++)
            p[b * 18 + 2 + i] = (uint8_t)(b * 31 + i * 7);
    }
}

/* ---- reader on valid files ----------------------------------------------------------- */

Test(gguf, v2_file_accepted)
{
    gb b = {0};
    const int64_t ne[1] = {4};
    gb_header(&b, 2, 1, 1);
    gb_kv_u32(&b, "general.quantization_version", 2);
    gb_tensor(&b, "norm", 1, ne, XP_TYPE_F32, 0);
    gb_pad(&b, 32);
    size_t data_offset = b.n;
    const float vals[4] = {1, -2, 3.5f, 0};
    gb_bytes(&b, vals, sizeof vals);
    xp_gguf *g;
    xp_err err;
    cr_assert_eq(xp_gguf_open_memory(&g, b.p, b.n, &err), XP_OK, "%s", err.msg);
    cr_assert_eq(g->version, 2);
    cr_assert_eq(g->data_offset, data_offset);
    cr_assert_eq(memcmp(g->tensors[0].data, vals, sizeof vals), 0);
    xp_gguf_close(g);
    gb_free(&b);

    /* the writer keeps a v2 file v2 */
    char path[512];
    xp_test_tmp_path(path, sizeof path, "v2.gguf");
    xp_gguf_writer *w = xp_gguf_writer_new();
    cr_assert_eq(xp_gguf_writer_set_version(w, 2), XP_OK);
    cr_assert_eq(xp_gguf_writer_set_version(w, 1), XP_EINVAL);
    cr_assert_eq(xp_gguf_writer_set_version(w, 4), XP_EINVAL);
    write_ok(w, path);
    xp_gguf_writer_free(w);
    g = open_ok(path);
    cr_assert_eq(g->version, 2);
    xp_gguf_close(g);
    unlink(path);
}

static size_t elem_size(uint32_t t)
{
    static const size_t sizes[XP_GGUF_NTYPES] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    return sizes[t];
}

/* Deep equality of two values (a written one and the one read back). */
static int same_value(const xp_gguf_value *a, const xp_gguf_value *b)
{
    if (a->type != b->type)
        return 0;
    if (a->type == XP_GGUF_STRING)
        return a->n == b->n && memcmp(a->data, b->data, a->n) == 0;
    if (a->type != XP_GGUF_ARRAY)
        return memcmp(a->data, b->data, elem_size(a->type)) == 0;
    if (a->elem_type != b->elem_type || a->n != b->n)
        return 0;
    if (elem_size(a->elem_type))
        return memcmp(a->data, b->data, a->n * elem_size(a->elem_type)) == 0;
    for (uint64_t i = 0; i < a->n; i++)
        if (!same_value(&a->items[i], &b->items[i]))
            return 0;
    return 1;
}

Test(gguf, all_value_types_round_trip)
{
    const uint8_t u8 = 0xab;
    const int8_t i8 = -128;
    const uint16_t u16 = 0xbeef;
    const int16_t i16 = -12345;
    const uint32_t u32 = 0xdeadbeef;
    const int32_t i32 = INT32_MIN;
    const float f32 = -3.14159f;
    const uint8_t b1 = 1;
    const char str[] = "h\xc3\xa9llo, \xe4\xb8\x96\xe7\x95\x8c";
    const uint64_t u64 = 0xfedcba9876543210ull;
    const int64_t i64 = INT64_MIN;
    const double f64 = -2.5e300;
    const uint16_t u16s[3] = {1, 0xffff, 2};
    const double f64s[2] = {0.1, -0.0};
    const uint8_t bools[4] = {1, 0, 0, 1};
    const uint8_t bytes_a[2] = {1, 2}, bytes_c[3] = {3, 4, 5};
    xp_gguf_value u8_rows[3] = {
        {.type = XP_GGUF_ARRAY, .elem_type = XP_GGUF_UINT8, .n = 2, .data = bytes_a},
        {.type = XP_GGUF_ARRAY, .elem_type = XP_GGUF_UINT8, .n = 0, .data = bytes_a},
        {.type = XP_GGUF_ARRAY, .elem_type = XP_GGUF_UINT8, .n = 3, .data = bytes_c},
    };
    xp_gguf_value strs[3] = {
        {.type = XP_GGUF_STRING, .n = 5, .data = (const uint8_t *)"alpha"},
        {.type = XP_GGUF_STRING, .n = 0, .data = (const uint8_t *)""},
        {.type = XP_GGUF_STRING, .n = 2, .data = (const uint8_t *)"\xce\xb3"},
    };
    xp_gguf_value str_rows[2] = {
        {.type = XP_GGUF_ARRAY, .elem_type = XP_GGUF_STRING, .n = 3, .items = strs},
        {.type = XP_GGUF_ARRAY, .elem_type = XP_GGUF_STRING, .n = 1, .items = strs + 2},
    };
    struct {
        const char *key;
        xp_gguf_value v;
    } kvs[] = {
        {"t.uint8", {.type = XP_GGUF_UINT8, .data = &u8}},
        {"t.int8", {.type = XP_GGUF_INT8, .data = (const uint8_t *)&i8}},
        {"t.uint16", {.type = XP_GGUF_UINT16, .data = (const uint8_t *)&u16}},
        {"t.int16", {.type = XP_GGUF_INT16, .data = (const uint8_t *)&i16}},
        {"t.uint32", {.type = XP_GGUF_UINT32, .data = (const uint8_t *)&u32}},
        {"t.int32", {.type = XP_GGUF_INT32, .data = (const uint8_t *)&i32}},
        {"t.float32", {.type = XP_GGUF_FLOAT32, .data = (const uint8_t *)&f32}},
        {"t.bool", {.type = XP_GGUF_BOOL, .data = &b1}},
        {"t.string", {.type = XP_GGUF_STRING, .n = sizeof str - 1, .data = (const uint8_t *)str}},
        {"t.uint64", {.type = XP_GGUF_UINT64, .data = (const uint8_t *)&u64}},
        {"t.int64", {.type = XP_GGUF_INT64, .data = (const uint8_t *)&i64}},
        {"t.float64", {.type = XP_GGUF_FLOAT64, .data = (const uint8_t *)&f64}},
        {"a.uint16", {.type = XP_GGUF_ARRAY, .elem_type = XP_GGUF_UINT16, .n = 3,
                      .data = (const uint8_t *)u16s}},
        {"a.float64", {.type = XP_GGUF_ARRAY, .elem_type = XP_GGUF_FLOAT64, .n = 2,
                       .data = (const uint8_t *)f64s}},
        {"a.bool", {.type = XP_GGUF_ARRAY, .elem_type = XP_GGUF_BOOL, .n = 4, .data = bools}},
        {"a.empty", {.type = XP_GGUF_ARRAY, .elem_type = XP_GGUF_INT32, .n = 0, .data = bools}},
        {"a.string", {.type = XP_GGUF_ARRAY, .elem_type = XP_GGUF_STRING, .n = 3, .items = strs}},
        {"a.array.uint8", {.type = XP_GGUF_ARRAY, .elem_type = XP_GGUF_ARRAY, .n = 3,
                           .items = u8_rows}},
        {"a.array.string", {.type = XP_GGUF_ARRAY, .elem_type = XP_GGUF_ARRAY, .n = 2,
                            .items = str_rows}},
    };
    const size_t n_kvs = sizeof kvs / sizeof kvs[0];
    xp_gguf_writer *w = xp_gguf_writer_new();
    xp_err err;
    for (size_t i = 0; i < n_kvs; i++)
        cr_assert_eq(xp_gguf_writer_set(w, kvs[i].key, &kvs[i].v, &err), XP_OK, "%s", err.msg);
    char path[512];
    xp_test_tmp_path(path, sizeof path, "types.gguf");
    write_ok(w, path);
    xp_gguf_writer_free(w);

    xp_gguf *g = open_ok(path);
    cr_assert_eq(g->n_kv, n_kvs);
    for (size_t i = 0; i < n_kvs; i++) {
        cr_assert_str_eq(g->kv[i].key, kvs[i].key, "keys keep their order");
        cr_assert(same_value(&g->kv[i].value, &kvs[i].v), "key %s changed", kvs[i].key);
    }
    /* spot checks through the typed look-ups, so the bytes mean the same numbers */
    int64_t s;
    uint64_t u;
    float f;
    cr_assert_eq(xp_gguf_get_i64(g, "t.int64", &s, &err), XP_OK);
    cr_assert_eq(s, INT64_MIN);
    cr_assert_eq(xp_gguf_get_i64(g, "t.int8", &s, &err), XP_OK);
    cr_assert_eq(s, -128);
    cr_assert_eq(xp_gguf_get_u64(g, "t.uint64", &u, &err), XP_OK);
    cr_assert_eq(u, u64);
    cr_assert_eq(xp_gguf_get_f32(g, "t.float32", &f, &err), XP_OK);
    cr_assert_eq(f, f32);
    char *text;
    cr_assert_eq(xp_gguf_get_str(g, "t.string", &text, &err), XP_OK);
    cr_assert_str_eq(text, str);
    free(text);
    const xp_gguf_value *nested = xp_gguf_get(g, "a.array.uint8");
    cr_assert_eq(nested->items[2].n, 3);
    cr_assert_eq(nested->items[2].data[2], 5);
    cr_assert_eq(nested->items[1].n, 0);
    xp_gguf_close(g);
    unlink(path);
}

static xp_gguf *typed_file(char *path, size_t size)
{
    xp_gguf_writer *w = xp_gguf_writer_new();
    xp_err err;
    const uint8_t u8 = 200;
    const int8_t i8 = -128;
    const double f64 = 2.5;
    const char *strs[2] = {"a", "bc"};
    xp_gguf_value v8 = {.type = XP_GGUF_UINT8, .data = &u8};
    xp_gguf_value vi8 = {.type = XP_GGUF_INT8, .data = (const uint8_t *)&i8};
    xp_gguf_value vf64 = {.type = XP_GGUF_FLOAT64, .data = (const uint8_t *)&f64};
    int64_t i64min = INT64_MIN;
    xp_gguf_value vi64 = {.type = XP_GGUF_INT64, .data = (const uint8_t *)&i64min};
    cr_assert_eq(xp_gguf_writer_set(w, "u8", &v8, &err), XP_OK);
    cr_assert_eq(xp_gguf_writer_set(w, "i8neg", &vi8, &err), XP_OK);
    cr_assert_eq(xp_gguf_writer_set(w, "f64", &vf64, &err), XP_OK);
    cr_assert_eq(xp_gguf_writer_set(w, "i64min", &vi64, &err), XP_OK);
    cr_assert_eq(xp_gguf_writer_set_i32(w, "i32pos", 7, &err), XP_OK);
    cr_assert_eq(xp_gguf_writer_set_i32(w, "i32neg", -1, &err), XP_OK);
    cr_assert_eq(xp_gguf_writer_set_u64(w, "u64big", 1ull << 40, &err), XP_OK);
    cr_assert_eq(xp_gguf_writer_set_u64(w, "u64max", UINT64_MAX, &err), XP_OK);
    cr_assert_eq(xp_gguf_writer_set_u32(w, "u32max", UINT32_MAX, &err), XP_OK);
    cr_assert_eq(xp_gguf_writer_set_f32(w, "f32", 1.25f, &err), XP_OK);
    cr_assert_eq(xp_gguf_writer_set_bool(w, "bool", true, &err), XP_OK);
    cr_assert_eq(xp_gguf_writer_set_str(w, "str", "qwen3", &err), XP_OK);
    cr_assert_eq(xp_gguf_writer_set_str_arr(w, "strs", 2, strs, NULL, &err), XP_OK);
    xp_test_tmp_path(path, size, "typed.gguf");
    write_ok(w, path);
    xp_gguf_writer_free(w);
    return open_ok(path);
}

Test(gguf, typed_lookups_convert_only_what_fits)
{
    char path[512];
    xp_gguf *g = typed_file(path, sizeof path);
    xp_err err;
    uint32_t u32;
    uint64_t u64;
    int64_t i64;
    float f;
    bool b;

    cr_assert_eq(xp_gguf_get_u32(g, "u8", &u32, &err), XP_OK);
    cr_assert_eq(u32, 200);
    cr_assert_eq(xp_gguf_get_u32(g, "i32pos", &u32, &err), XP_OK);
    cr_assert_eq(u32, 7);
    cr_assert_eq(xp_gguf_get_u32(g, "u32max", &u32, &err), XP_OK);
    cr_assert_eq(u32, UINT32_MAX);
    cr_assert_eq(xp_gguf_get_u32(g, "i32neg", &u32, &err), XP_ETYPE);
    cr_assert(strstr(err.msg, "'i32neg'"), "%s", err.msg);
    cr_assert_eq(xp_gguf_get_u32(g, "u64big", &u32, &err), XP_ETYPE);
    cr_assert(strstr(err.msg, "beyond uint32"), "%s", err.msg);
    cr_assert_eq(xp_gguf_get_u32(g, "f64", &u32, &err), XP_ETYPE);
    cr_assert_eq(xp_gguf_get_u32(g, "str", &u32, &err), XP_ETYPE);

    cr_assert_eq(xp_gguf_get_u64(g, "u64big", &u64, &err), XP_OK);
    cr_assert_eq(u64, 1ull << 40);
    cr_assert_eq(xp_gguf_get_u64(g, "u64max", &u64, &err), XP_OK);
    cr_assert_eq(u64, UINT64_MAX);
    cr_assert_eq(xp_gguf_get_u64(g, "i8neg", &u64, &err), XP_ETYPE);

    cr_assert_eq(xp_gguf_get_i64(g, "i8neg", &i64, &err), XP_OK);
    cr_assert_eq(i64, -128);
    cr_assert_eq(xp_gguf_get_i64(g, "i64min", &i64, &err), XP_OK);
    cr_assert_eq(i64, INT64_MIN);
    cr_assert_eq(xp_gguf_get_i64(g, "u64big", &i64, &err), XP_OK);
    cr_assert_eq(i64, 1ll << 40);
    cr_assert_eq(xp_gguf_get_i64(g, "u64max", &i64, &err), XP_ETYPE);
    cr_assert_eq(xp_gguf_get_i64(g, "bool", &i64, &err), XP_ETYPE);

    cr_assert_eq(xp_gguf_get_f32(g, "f64", &f, &err), XP_OK);
    cr_assert_eq(f, 2.5f);
    cr_assert_eq(xp_gguf_get_f32(g, "f32", &f, &err), XP_OK);
    cr_assert_eq(f, 1.25f);
    cr_assert_eq(xp_gguf_get_f32(g, "u8", &f, &err), XP_ETYPE);
    cr_assert(strstr(err.msg, "float32 or float64"), "%s", err.msg);

    cr_assert_eq(xp_gguf_get_bool(g, "bool", &b, &err), XP_OK);
    cr_assert(b);
    cr_assert_eq(xp_gguf_get_bool(g, "u8", &b, &err), XP_ETYPE);

    char *s;
    cr_assert_eq(xp_gguf_get_str(g, "str", &s, &err), XP_OK);
    cr_assert_str_eq(s, "qwen3");
    free(s);
    cr_assert_eq(xp_gguf_get_str(g, "strs", &s, &err), XP_ETYPE);

    const xp_gguf_value *items;
    uint64_t n;
    cr_assert_eq(xp_gguf_get_str_array(g, "strs", &items, &n, &err), XP_OK);
    cr_assert_eq(n, 2);
    cr_assert_eq(items[1].n, 2);
    cr_assert_eq(memcmp(items[1].data, "bc", 2), 0);
    cr_assert_eq(xp_gguf_get_str_array(g, "str", &items, &n, &err), XP_ETYPE);

    /* a missing key is XP_ENOTFOUND from every getter, and the message names it */
    cr_assert_null(xp_gguf_get(g, "no.such.key"));
    int rcs[] = {
        xp_gguf_get_u32(g, "no.such.key", &u32, &err),
        xp_gguf_get_u64(g, "no.such.key", &u64, &err),
        xp_gguf_get_i64(g, "no.such.key", &i64, &err),
        xp_gguf_get_f32(g, "no.such.key", &f, &err),
        xp_gguf_get_bool(g, "no.such.key", &b, &err),
        xp_gguf_get_str(g, "no.such.key", &s, &err),
        xp_gguf_get_str_array(g, "no.such.key", &items, &n, &err),
    };
    for (size_t i = 0; i < sizeof rcs / sizeof rcs[0]; i++)
        cr_assert_eq(rcs[i], XP_ENOTFOUND, "getter %zu", i);
    cr_assert(strstr(err.msg, "'no.such.key'"), "%s", err.msg);
    xp_gguf_close(g);
    unlink(path);
}

Test(gguf, tensor_lookup_by_name)
{
    uint8_t q1[4 * 18];
    q1_bytes(q1, 4);
    const float norm[3] = {0.5f, 1, 2};
    const int64_t ne_w[2] = {256, 2}, ne_n[1] = {3};
    xp_gguf_writer *w = xp_gguf_writer_new();
    xp_err err;
    cr_assert_eq(xp_gguf_writer_add_tensor(w, "blk.0.ffn_up.weight", 2, ne_w, XP_TYPE_Q1_0, q1,
                                           NULL, NULL, &err), XP_OK, "%s", err.msg);
    cr_assert_eq(xp_gguf_writer_add_tensor(w, "output_norm.weight", 1, ne_n, XP_TYPE_F32, norm,
                                           NULL, NULL, &err), XP_OK, "%s", err.msg);
    char path[512];
    xp_test_tmp_path(path, sizeof path, "names.gguf");
    write_ok(w, path);
    xp_gguf_writer_free(w);

    xp_gguf *g = open_ok(path);
    const xp_gguf_tensor *t = xp_gguf_tensor_by_name(g, "blk.0.ffn_up.weight");
    cr_assert_not_null(t);
    cr_assert_eq(t->type, XP_TYPE_Q1_0);
    cr_assert_eq(t->n_dims, 2);
    cr_assert(t->ne[0] == 256 && t->ne[1] == 2 && t->ne[2] == 1 && t->ne[3] == 1);
    cr_assert_eq(t->nbytes, sizeof q1);
    cr_assert_eq(memcmp(t->data, q1, sizeof q1), 0);
    t = xp_gguf_tensor_by_name(g, "output_norm.weight");
    cr_assert_not_null(t);
    cr_assert_eq(t->offset, 96, "72 bytes padded to 96");
    cr_assert_eq(memcmp(t->data, norm, sizeof norm), 0);
    cr_assert_null(xp_gguf_tensor_by_name(g, "blk.0.ffn_up"));
    cr_assert_null(xp_gguf_tensor_by_name(g, ""));
    xp_gguf_close(g);
    unlink(path);
}

Test(gguf, map_is_private)
{
    uint8_t q1[2 * 18];
    q1_bytes(q1, 2);
    const int64_t ne[1] = {256};
    xp_gguf_writer *w = xp_gguf_writer_new();
    xp_err err;
    cr_assert_eq(xp_gguf_writer_add_tensor(w, "w", 1, ne, XP_TYPE_Q1_0, q1, NULL, NULL, &err),
                 XP_OK);
    char path[512];
    xp_test_tmp_path(path, sizeof path, "private.gguf");
    write_ok(w, path);
    xp_gguf_writer_free(w);
    size_t n_before, n_after;
    uint8_t *before = slurp(path, &n_before);

    xp_gguf *g = open_ok(path);
    cr_assert(g->mapped);
    xp_q1_0_flip_row(g->tensors[0].data, 256, 0);
    g->tensors[0].data[0] ^= 0x55;
    cr_assert_neq(memcmp(g->tensors[0].data, q1, sizeof q1), 0, "the flip shows in memory");
    xp_gguf_close(g);

    uint8_t *after = slurp(path, &n_after);
    cr_assert_eq(n_before, n_after);
    cr_assert_eq(memcmp(before, after, n_before), 0, "a flip in the map reached the file");
    g = open_ok(path);
    cr_assert_eq(memcmp(g->tensors[0].data, q1, sizeof q1), 0);
    xp_gguf_close(g);
    free(before);
    free(after);
    unlink(path);
}

Test(gguf, open_refuses_missing_file_and_directory)
{
    xp_gguf *g;
    xp_err err;
    cr_assert_eq(xp_gguf_open(&g, "/nonexistent/model.gguf", &err), XP_EIO);
    cr_assert(strstr(err.msg, "/nonexistent/model.gguf"), "%s", err.msg);
    cr_assert_null(g);
    cr_assert_eq(xp_gguf_open(&g, "/", &err), XP_EIO);
    cr_assert(strstr(err.msg, "not a regular file"), "%s", err.msg);
}

Test(gguf, type_tables)
{
    cr_assert_str_eq(xp_tensor_type_name(XP_TYPE_Q1_0), "q1_0");
    cr_assert_str_eq(xp_tensor_type_name(XP_TYPE_BF16), "bf16");
    cr_assert_null(xp_tensor_type_name(4));
    cr_assert_null(xp_tensor_type_name(1000));
    cr_assert_eq(xp_tensor_row_bytes(XP_TYPE_Q1_0, 2048), 16 * 18);
    cr_assert_eq(xp_tensor_row_bytes(XP_TYPE_Q1_0, 100), 0);
    cr_assert_eq(xp_tensor_row_bytes(XP_TYPE_F16, 3), 6);
    cr_assert_eq(xp_tensor_row_bytes(XP_TYPE_F32, -1), 0);
    cr_assert_eq(xp_tensor_row_bytes(31, 128), 0);
    cr_assert_str_eq(xp_gguf_type_name(XP_GGUF_FLOAT64), "float64");
    cr_assert_str_eq(xp_gguf_type_name(XP_GGUF_NTYPES), "unknown");
}

/* ---- writer -------------------------------------------------------------------------- */

/* A writer holding a few keys and tensors of each type xorpatch handles. */
static xp_gguf_writer *sample_writer(uint8_t *q1, float *f32, uint16_t *f16)
{
    xp_gguf_writer *w = xp_gguf_writer_new();
    xp_err err;
    const char *toks[3] = {"a", "\xc4\xa0the", "<|im_end|>"};
    const int32_t types[3] = {1, 1, 3};
    cr_assert_eq(xp_gguf_writer_set_str(w, "general.architecture", "qwen3", &err), XP_OK);
    cr_assert_eq(xp_gguf_writer_set_u32(w, "qwen3.block_count", 2, &err), XP_OK);
    cr_assert_eq(xp_gguf_writer_set_f32(w, "qwen3.rope.freq_base", 1e6f, &err), XP_OK);
    cr_assert_eq(xp_gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", false, &err), XP_OK);
    cr_assert_eq(xp_gguf_writer_set_str_arr(w, "tokenizer.ggml.tokens", 3, toks, NULL, &err),
                 XP_OK);
    cr_assert_eq(xp_gguf_writer_set_arr(w, "tokenizer.ggml.token_type", XP_GGUF_INT32, 3, types,
                                        &err), XP_OK);
    q1_bytes(q1, 6);
    for (int i = 0; i < 5; i++)
        f32[i] = (float)i - 1.5f;
    for (int i = 0; i < 6; i++)
        f16[i] = xp_f32_to_fp16((float)i / 3);
    const int64_t ne_q[2] = {384, 2}, ne_f[1] = {5}, ne_h[2] = {3, 2}, ne_0[2] = {0, 7};
    cr_assert_eq(xp_gguf_writer_add_tensor(w, "blk.0.attn_q.weight", 2, ne_q, XP_TYPE_Q1_0, q1,
                                           NULL, NULL, &err), XP_OK, "%s", err.msg);
    cr_assert_eq(xp_gguf_writer_add_tensor(w, "blk.0.attn_norm.weight", 1, ne_f, XP_TYPE_F32,
                                           f32, NULL, NULL, &err), XP_OK, "%s", err.msg);
    cr_assert_eq(xp_gguf_writer_add_tensor(w, "h", 2, ne_h, XP_TYPE_F16, f16, NULL, NULL, &err),
                 XP_OK, "%s", err.msg);
    cr_assert_eq(xp_gguf_writer_add_tensor(w, "b", 2, ne_h, XP_TYPE_BF16, f16, NULL, NULL, &err),
                 XP_OK, "%s", err.msg);
    cr_assert_eq(xp_gguf_writer_add_tensor(w, "none", 2, ne_0, XP_TYPE_F32, "", NULL, NULL,
                                           &err), XP_OK, "%s", err.msg);
    return w;
}

/* open src, copy everything into a new writer, write dst */
static void rewrite_ok(const char *src, const char *dst)
{
    xp_gguf *g = open_ok(src);
    xp_gguf_writer *w = xp_gguf_writer_new();
    xp_err err;
    cr_assert_eq(xp_gguf_writer_copy_from(w, g, &err), XP_OK, "%s", err.msg);
    write_ok(w, dst);
    xp_gguf_writer_free(w);
    xp_gguf_close(g);
}

Test(gguf_writer, rewrite_is_byte_identical)
{
    uint8_t q1[6 * 18];
    float f32[5];
    uint16_t f16[6];
    xp_gguf_writer *w = sample_writer(q1, f32, f16);
    char a[512], b[512], c[512];
    xp_test_tmp_path(a, sizeof a, "first.gguf");
    xp_test_tmp_path(b, sizeof b, "second.gguf");
    xp_test_tmp_path(c, sizeof c, "third.gguf");
    write_ok(w, a);
    xp_gguf_writer_free(w);
    rewrite_ok(a, b);
    assert_same_file(a, b);
    rewrite_ok(b, c);
    assert_same_file(a, c);

    xp_gguf *g = open_ok(b);
    cr_assert_eq(g->n_kv, 6);
    cr_assert_eq(g->n_tensors, 5);
    cr_assert_eq(memcmp(xp_gguf_tensor_by_name(g, "blk.0.attn_q.weight")->data, q1, sizeof q1), 0);
    cr_assert_eq(xp_gguf_tensor_by_name(g, "none")->nbytes, 0);
    xp_gguf_close(g);
    unlink(a);
    unlink(b);
    unlink(c);
}

static void golden_rewrite(const char *name)
{
    XP_SHARED_PATH(src, name);
    char dst[512];
    xp_test_tmp_path(dst, sizeof dst, "golden.gguf");
    rewrite_ok(src, dst);
    assert_same_file(src, dst);
    unlink(dst);
}

Test(gguf_writer, golden_tiny_tied_rewrites_identically) { golden_rewrite("golden/tiny-tied.gguf"); }

Test(gguf_writer, golden_small_untied_rewrites_identically)
{
    golden_rewrite("golden/small-untied.gguf");
}

/* The writer's bytes equal a file assembled by hand from the GGUF layout: header,
 * keys, tensor descriptions, zero padding to the alignment, then each tensor's bytes
 * zero-padded to the alignment (ggml pads the last tensor too). */
static void check_layout(uint32_t align)
{
    uint8_t q1[18], f16[10] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    const float f32[3] = {1, 2, 3};
    q1_bytes(q1, 1);
    const int64_t ne_q[1] = {128}, ne_f[1] = {3}, ne_h[1] = {5};
    xp_gguf_writer *w = xp_gguf_writer_new();
    xp_err err;
    if (align != 32)
        cr_assert_eq(xp_gguf_writer_set_u32(w, "general.alignment", align, &err), XP_OK);
    cr_assert_eq(xp_gguf_writer_add_tensor(w, "q", 1, ne_q, XP_TYPE_Q1_0, q1, NULL, NULL, &err),
                 XP_OK);
    cr_assert_eq(xp_gguf_writer_add_tensor(w, "f", 1, ne_f, XP_TYPE_F32, f32, NULL, NULL, &err),
                 XP_OK);
    cr_assert_eq(xp_gguf_writer_add_tensor(w, "h", 1, ne_h, XP_TYPE_F16, f16, NULL, NULL, &err),
                 XP_OK);
    char path[512];
    xp_test_tmp_path(path, sizeof path, "layout.gguf");
    write_ok(w, path);
    xp_gguf_writer_free(w);

    gb b = {0};
    gb_header(&b, 3, 3, align != 32);
    if (align != 32)
        gb_kv_u32(&b, "general.alignment", align);
    gb_tensor(&b, "q", 1, ne_q, XP_TYPE_Q1_0, 0);
    gb_tensor(&b, "f", 1, ne_f, XP_TYPE_F32, align);
    gb_tensor(&b, "h", 1, ne_h, XP_TYPE_F16, 2 * align);
    gb_pad(&b, align);
    size_t data_offset = b.n;
    gb_bytes(&b, q1, sizeof q1);
    gb_pad(&b, align);
    gb_bytes(&b, f32, sizeof f32);
    gb_pad(&b, align);
    gb_bytes(&b, f16, sizeof f16);
    gb_pad(&b, align);

    size_t n;
    uint8_t *got = slurp(path, &n);
    cr_assert_eq(n, b.n, "file size %zu, expected %zu", n, b.n);
    cr_assert_eq(memcmp(got, b.p, n), 0, "the layout differs from ggml's");
    free(got);

    xp_gguf *g = open_ok(path);
    cr_assert_eq(g->alignment, align);
    cr_assert_eq(g->data_offset, data_offset);
    cr_assert_eq(g->data_offset % align, 0);
    for (size_t i = 0; i < g->n_tensors; i++)
        cr_assert_eq(g->tensors[i].offset, i * align);
    xp_gguf_close(g);
    gb_free(&b);
    unlink(path);
}

Test(gguf_writer, tensors_aligned_and_padded) { check_layout(32); }

Test(gguf_writer, custom_alignment_64_honoured) { check_layout(64); }

Test(gguf_writer, missing_directory_fails_and_leaves_nothing)
{
    char dir[512], path[600];
    xp_test_tmp_path(dir, sizeof dir, "no-such-dir");
    snprintf(path, sizeof path, "%s/out.gguf", dir);
    xp_gguf_writer *w = xp_gguf_writer_new();
    xp_err err;
    cr_assert_eq(xp_gguf_writer_set_u32(w, "k", 1, &err), XP_OK);
    cr_assert_eq(xp_gguf_writer_write(w, path, &err), XP_EIO);
    cr_assert(strstr(err.msg, path), "%s", err.msg);
    xp_gguf_writer_free(w);
    struct stat st;
    cr_assert_neq(stat(dir, &st), 0, "the writer must not create directories");
}

typedef struct fill_state {
    int calls;
    int fail_at_call; /* 0 = never fail */
} fill_state;

/* Bytes that depend on their position, so a chunk written at the wrong offset shows. */
static int fill_pattern(void *ctx, const xp_gguf_tensor *t, uint64_t offset, uint8_t *dst,
                        size_t n, xp_err *err)
{
    fill_state *s = ctx;
    if (++s->calls == s->fail_at_call)
        return xp_err_set(err, XP_EIO, "tensor '%s': fill failed on purpose at %llu", t->name,
                          (unsigned long long)offset);
    for (size_t i = 0; i < n; i++)
        dst[i] = (uint8_t)((offset + i) * 131 >> 3);
    return XP_OK;
}

/* f32 tensor of a little over 8 MiB, so the writer asks for it in two chunks */
static const int64_t big_ne[1] = {(8 << 20) / 4 + 1000};

Test(gguf_writer, fill_callback_in_chunks)
{
    fill_state s = {0, 0};
    xp_gguf_writer *w = xp_gguf_writer_new();
    xp_err err;
    cr_assert_eq(xp_gguf_writer_add_tensor(w, "big", 1, big_ne, XP_TYPE_F32, NULL, fill_pattern,
                                           &s, &err), XP_OK, "%s", err.msg);
    char path[512];
    xp_test_tmp_path(path, sizeof path, "fill.gguf");
    write_ok(w, path);
    xp_gguf_writer_free(w);
    cr_assert_eq(s.calls, 2);
    xp_gguf *g = open_ok(path);
    const xp_gguf_tensor *t = &g->tensors[0];
    cr_assert_eq(t->nbytes, (uint64_t)big_ne[0] * 4);
    for (uint64_t i = 0; i < t->nbytes; i++)
        if (t->data[i] != (uint8_t)(i * 131 >> 3))
            cr_assert_fail("byte %llu of the filled tensor is wrong", (unsigned long long)i);
    xp_gguf_close(g);
    unlink(path);
}

Test(gguf_writer, failing_fill_leaves_target_untouched)
{
    char dir[512], path[600];
    xp_test_tmp_path(dir, sizeof dir, "fill-fails");
    cr_assert_eq(mkdir(dir, 0777), 0);
    snprintf(path, sizeof path, "%s/model.gguf", dir);
    FILE *f = fopen(path, "wb");
    cr_assert(f);
    fputs("the old bytes", f);
    fclose(f);

    /* the first tensor is written, the second fails on its second chunk */
    uint8_t q1[18];
    q1_bytes(q1, 1);
    const int64_t ne_q[1] = {128};
    fill_state s = {0, 2};
    xp_gguf_writer *w = xp_gguf_writer_new();
    xp_err err;
    cr_assert_eq(xp_gguf_writer_add_tensor(w, "q", 1, ne_q, XP_TYPE_Q1_0, q1, NULL, NULL, &err),
                 XP_OK);
    cr_assert_eq(xp_gguf_writer_add_tensor(w, "big", 1, big_ne, XP_TYPE_F32, NULL, fill_pattern,
                                           &s, &err), XP_OK);
    cr_assert_eq(xp_gguf_writer_write(w, path, &err), XP_EIO);
    cr_assert(strstr(err.msg, "fill failed on purpose at 8388608"), "%s", err.msg);
    xp_gguf_writer_free(w);
    cr_assert_eq(s.calls, 2);

    size_t n;
    uint8_t *got = slurp(path, &n);
    cr_assert_eq(n, 13);
    cr_assert_eq(memcmp(got, "the old bytes", 13), 0);
    free(got);
    DIR *d = opendir(dir);
    cr_assert(d);
    int entries = 0;
    for (struct dirent *e; (e = readdir(d));)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            cr_assert_str_eq(e->d_name, "model.gguf", "left behind: %s", e->d_name);
            entries++;
        }
    closedir(d);
    cr_assert_eq(entries, 1);
    unlink(path);
    rmdir(dir);
}

Test(gguf_writer, refuses_bad_arguments)
{
    xp_gguf_writer *w = xp_gguf_writer_new();
    xp_err err;
    uint8_t q1[36] = {0};
    char long_name[65];
    memset(long_name, 'x', 64);
    long_name[64] = '\0';
    const int64_t ne[2] = {128, 2}, ne_bad[1] = {100}, ne_neg[2] = {128, -2};
    cr_assert_eq(xp_gguf_writer_set_u32(w, "", 1, &err), XP_EINVAL);
    cr_assert_eq(xp_gguf_writer_set_arr(w, "k", XP_GGUF_STRING, 1, q1, &err), XP_EINVAL);
    xp_gguf_value bad = {.type = XP_GGUF_NTYPES};
    cr_assert_eq(xp_gguf_writer_set(w, "k", &bad, &err), XP_EINVAL);
    cr_assert_eq(xp_gguf_writer_add_tensor(w, "", 2, ne, XP_TYPE_Q1_0, q1, NULL, NULL, &err),
                 XP_EINVAL);
    cr_assert_eq(xp_gguf_writer_add_tensor(w, long_name, 2, ne, XP_TYPE_Q1_0, q1, NULL, NULL,
                                           &err), XP_EINVAL);
    cr_assert_eq(xp_gguf_writer_add_tensor(w, "w", 0, ne, XP_TYPE_Q1_0, q1, NULL, NULL, &err),
                 XP_EINVAL);
    cr_assert_eq(xp_gguf_writer_add_tensor(w, "w", 5, ne, XP_TYPE_Q1_0, q1, NULL, NULL, &err),
                 XP_EINVAL);
    cr_assert_eq(xp_gguf_writer_add_tensor(w, "w", 1, ne_bad, XP_TYPE_Q1_0, q1, NULL, NULL,
                                           &err), XP_EINVAL);
    cr_assert(strstr(err.msg, "whole number of blocks"), "%s", err.msg);
    cr_assert_eq(xp_gguf_writer_add_tensor(w, "w", 2, ne_neg, XP_TYPE_Q1_0, q1, NULL, NULL,
                                           &err), XP_EINVAL);
    cr_assert_eq(xp_gguf_writer_add_tensor(w, "w", 2, ne, XP_TYPE_Q1_0, NULL, NULL, NULL, &err),
                 XP_EINVAL);
    cr_assert_eq(xp_gguf_writer_add_tensor(w, "w", 2, ne, XP_TYPE_Q1_0, q1, fill_pattern, NULL,
                                           &err), XP_EINVAL);
    cr_assert_eq(xp_gguf_writer_add_tensor(w, "w", 2, ne, XP_TYPE_Q1_0, q1, NULL, NULL, &err),
                 XP_OK);
    cr_assert_eq(xp_gguf_writer_add_tensor(w, "w", 2, ne, XP_TYPE_Q1_0, q1, NULL, NULL, &err),
                 XP_EINVAL);
    cr_assert(strstr(err.msg, "duplicate tensor 'w'"), "%s", err.msg);
    xp_gguf_writer_free(w);
}

Test(gguf_writer, set_replaces_in_place_and_remove_deletes)
{
    xp_gguf_writer *w = xp_gguf_writer_new();
    xp_err err;
    cr_assert_eq(xp_gguf_writer_set_u32(w, "a", 1, &err), XP_OK);
    cr_assert_eq(xp_gguf_writer_set_u32(w, "b", 2, &err), XP_OK);
    cr_assert_eq(xp_gguf_writer_set_u32(w, "c", 3, &err), XP_OK);
    cr_assert_eq(xp_gguf_writer_set_str(w, "a", "now a string", &err), XP_OK);
    cr_assert_eq(xp_gguf_writer_remove(w, "b"), XP_OK);
    cr_assert_eq(xp_gguf_writer_remove(w, "b"), XP_ENOTFOUND);
    char path[512];
    xp_test_tmp_path(path, sizeof path, "replace.gguf");
    write_ok(w, path);
    xp_gguf_writer_free(w);
    xp_gguf *g = open_ok(path);
    cr_assert_eq(g->n_kv, 2);
    cr_assert_str_eq(g->kv[0].key, "a");
    cr_assert_eq(g->kv[0].value.type, XP_GGUF_STRING);
    cr_assert_str_eq(g->kv[1].key, "c");
    xp_gguf_close(g);
    unlink(path);
}

Test(gguf_writer, refuses_an_alignment_its_reader_would_refuse)
{
    /* the writer used to pad to 32 and still write general.alignment = 48, a file its
     * own reader then refused */
    const uint32_t bad[] = {0, 48};
    for (size_t i = 0; i < 2; i++) {
        xp_gguf_writer *w = xp_gguf_writer_new();
        xp_err err;
        cr_assert_eq(xp_gguf_writer_set_u32(w, "general.alignment", bad[i], &err), XP_OK);
        char path[512];
        xp_test_tmp_path(path, sizeof path, "bad-align.gguf");
        cr_assert_eq(xp_gguf_writer_write(w, path, &err), XP_EINVAL);
        cr_assert(strstr(err.msg, "general.alignment"), "%s", err.msg);
        struct stat st;
        cr_assert_neq(stat(path, &st), 0, "nothing is written");
        xp_gguf_writer_free(w);
    }
    xp_gguf_writer *w = xp_gguf_writer_new();
    xp_err err;
    cr_assert_eq(xp_gguf_writer_set_u64(w, "general.alignment", 64, &err), XP_OK);
    char path[512];
    xp_test_tmp_path(path, sizeof path, "bad-align.gguf");
    cr_assert_eq(xp_gguf_writer_write(w, path, &err), XP_EINVAL, "a uint64 alignment");
    xp_gguf_writer_free(w);
}

Test(gguf_writer, refuses_an_unknown_tensor_type_even_when_empty)
{
    xp_gguf_writer *w = xp_gguf_writer_new();
    xp_err err;
    const int64_t ne0[1] = {0}, ne[1] = {128};
    cr_assert_eq(xp_gguf_writer_add_tensor(w, "w", 1, ne0, 4, "", NULL, NULL, &err), XP_EINVAL);
    cr_assert(strstr(err.msg, "type 4"), "%s", err.msg);
    cr_assert_eq(xp_gguf_writer_add_tensor(w, "w", 1, ne, 200, "", NULL, NULL, &err), XP_EINVAL);
    xp_gguf_writer_free(w);
}
