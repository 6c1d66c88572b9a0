/* The GGUF reader against malformed files: one test per way a file can be wrong. Each
 * feeds raw bytes (assembled field by field with gguf_build.h) to xp_gguf_open_memory
 * and checks that the file is refused with XP_EFORMAT and a message naming the byte
 * offset and the field, because a user with a broken 2 GB download needs to know where
 * it broke. A representative subset also goes through a file on disk and through
 * `xorpatch inspect` (exit status 2, "xorpatch: error: <message>" on stderr). */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdarg.h>
#include <string.h>
#include <sys/wait.h>

#include "gguf_build.h"
#include "testutil.h"
#include "xorpatch.h"

enum { T_F32 = 0, T_Q1_0 = 41 };
enum { V_U8 = 0, V_U32 = 4, V_BOOL = 7, V_STR = 8, V_ARR = 9, V_U64 = 10 };

static const int64_t ne_q1[2] = {128, 2}; /* two Q1_0 rows: 36 bytes */

/* Refused from memory with XP_EFORMAT, no handle, and every substring (NULL-ended
 * list) in the message. */
static void expect_refused_v(const void *bytes, size_t n, va_list ap)
{
    xp_gguf *g = (xp_gguf *)1;
    xp_err err = {0};
    int rc = xp_gguf_open_memory(&g, bytes, n, &err);
    cr_assert_eq(rc, XP_EFORMAT, "expected XP_EFORMAT, got %d (%s)", rc, err.msg);
    cr_assert_eq(err.code, XP_EFORMAT);
    cr_assert_null(g, "a refused file must not hand back a handle");
    for (const char *s; (s = va_arg(ap, const char *));)
        cr_assert(strstr(err.msg, s), "message lacks \"%s\": %s", s, err.msg);
}

static void expect_refused(const gb *b, ...)
{
    va_list ap;
    va_start(ap, b);
    expect_refused_v(b->p, b->n, ap);
    va_end(ap);
}

static void write_bytes(const char *path, const gb *b)
{
    FILE *f = fopen(path, "wb");
    cr_assert(f, "cannot create %s", path);
    if (b->n) /* an empty file has no buffer at all */
        cr_assert_eq(fwrite(b->p, 1, b->n, f), b->n);
    cr_assert_eq(fclose(f), 0);
}

/* The same refusal through xp_gguf_open on a real file: the message then also names
 * the file. */
static void expect_file_refused(const gb *b, ...)
{
    char path[512];
    xp_test_tmp_path(path, sizeof path, "malformed.gguf");
    write_bytes(path, b);
    xp_gguf *g = (xp_gguf *)1;
    xp_err err = {0};
    int rc = xp_gguf_open(&g, path, &err);
    cr_assert_eq(rc, XP_EFORMAT, "expected XP_EFORMAT, got %d (%s)", rc, err.msg);
    cr_assert_null(g);
    cr_assert(strstr(err.msg, path), "message lacks the path: %s", err.msg);
    va_list ap;
    va_start(ap, b);
    for (const char *s; (s = va_arg(ap, const char *));)
        cr_assert(strstr(err.msg, s), "message lacks \"%s\": %s", s, err.msg);
    va_end(ap);
    unlink(path);
}

/* `xorpatch inspect FILE` on the bytes: exit status 2 and the error on stderr. Skips
 * while the CLI has not been built. */
static void expect_cli_refuses(const gb *b, ...)
{
    const char *bin = getenv("XP_BIN");
    if (!bin || access(bin, X_OK) != 0)
        cr_skip_test("skipped: the xorpatch program (XP_BIN) is not built yet");
    char path[512];
    xp_test_tmp_path(path, sizeof path, "malformed-cli.gguf");
    write_bytes(path, b);
    int pipefd[2];
    cr_assert_eq(pipe(pipefd), 0);
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        int devnull = open("/dev/null", O_WRONLY);
        dup2(devnull, 1);
        dup2(pipefd[1], 2);
        close(pipefd[0]);
        execl(bin, bin, "inspect", path, (char *)NULL);
        _exit(127);
    }
    close(pipefd[1]);
    char out[8192];
    size_t len = 0;
    for (ssize_t k; len < sizeof out - 1 && (k = read(pipefd[0], out + len, sizeof out - 1 - len)) > 0;)
        len += (size_t)k;
    out[len] = '\0';
    close(pipefd[0]);
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    unlink(path);
    cr_assert(WIFEXITED(status), "xorpatch inspect did not exit normally: %s", out);
    cr_assert_eq(WEXITSTATUS(status), 2, "exit status %d, stderr: %s", WEXITSTATUS(status), out);
    cr_assert(strncmp(out, "xorpatch: error: ", 17) == 0, "stderr: %s", out);
    va_list ap;
    va_start(ap, b);
    for (const char *s; (s = va_arg(ap, const char *));)
        cr_assert(strstr(out, s), "stderr lacks \"%s\": %s", s, out);
    va_end(ap);
}

static const char *at(char *buf, size_t off)
{
    sprintf(buf, "offset %zu:", off);
    return buf;
}

/* A header with no tensors and one key named k whose type tag is `type`; the caller
 * appends the payload. */
static void one_key(gb *b, const char *k, uint32_t type)
{
    gb_header(b, 3, 0, 1);
    gb_key(b, k, type);
}

/* A header with one tensor description and room for its data (36 zero bytes). */
static void one_tensor(gb *b, const char *name, uint32_t n_dims, const int64_t *ne,
                       uint32_t type, uint64_t offset)
{
    gb_header(b, 3, 1, 0);
    gb_tensor(b, name, n_dims, ne, type, offset);
    gb_pad(b, 32);
    gb_zeros(b, 64);
}

/* ---- header ------------------------------------------------------------------------ */

static void build_bad_magic(gb *b)
{
    gb_bytes(b, "GGML", 4);
    gb_u32(b, 3);
    gb_u64(b, 0);
    gb_u64(b, 0);
}

Test(gguf_malformed, empty_file)
{
    gb b = {0};
    expect_refused(&b, "offset 0:", "magic", NULL);
    expect_file_refused(&b, "offset 0:", "magic", "empty", NULL);
}

Test(gguf_malformed, bad_magic)
{
    gb b = {0};
    build_bad_magic(&b);
    expect_refused(&b, "offset 0:", "magic", "expected \"GGUF\"", "47 47 4d 4c", NULL);
    expect_file_refused(&b, "offset 0:", "magic", NULL);
    gb_free(&b);
}

Test(gguf_malformed, version_1_and_4)
{
    for (uint32_t v = 1; v <= 4; v += 3) {
        gb b = {0};
        gb_header(&b, v, 0, 0);
        char want[32];
        snprintf(want, sizeof want, "is %u, expected 2 or 3", v);
        expect_refused(&b, "offset 4:", "version", want, NULL);
        gb_free(&b);
    }
}

Test(gguf_malformed, version_byte_swapped)
{
    gb b = {0};
    gb_header(&b, 0x03000000u, 0, 0); /* version 3 written big-endian */
    expect_refused(&b, "offset 4:", "version", "byte-swapped", NULL);
    gb_free(&b);
}

static void build_truncated_header(gb *b)
{
    gb_bytes(b, "GGUF", 4);
    gb_u32(b, 3);
    gb_u64(b, 0);
    gb_u32(b, 0); /* half of the key count */
}

Test(gguf_malformed, truncated_header)
{
    gb b = {0};
    gb_bytes(&b, "GGU", 3);
    expect_refused(&b, "offset 0:", "magic", "needs 4 bytes", NULL);
    gb_free(&b);
    gb_bytes(&b, "GGUF", 4);
    gb_u32(&b, 3);
    expect_refused(&b, "offset 8:", "tensor count", "needs 8 bytes", NULL);
    gb_free(&b);
    build_truncated_header(&b);
    expect_refused(&b, "offset 16:", "key count", "needs 8 bytes", NULL);
    expect_file_refused(&b, "offset 16:", "key count", NULL);
    gb_free(&b);
}

/* ---- keys and values ---------------------------------------------------------------- */

Test(gguf_malformed, truncated_in_key)
{
    gb b = {0};
    gb_header(&b, 3, 0, 1);
    gb_u64(&b, 12); /* "general.name" */
    gb_bytes(&b, "gener", 5);
    expect_refused(&b, "offset 24:", "key 0", "string length is 12", NULL);
    gb_free(&b);
}

Test(gguf_malformed, truncated_before_value_type)
{
    gb b = {0};
    gb_header(&b, 3, 0, 1);
    gb_str(&b, "abcdefghijklm");
    char buf[32];
    expect_refused(&b, at(buf, b.n), "value of 'abcdefghijklm'", "needs 4 bytes", NULL);
    gb_free(&b);
}

Test(gguf_malformed, truncated_in_value)
{
    gb b = {0};
    one_key(&b, "a", V_U32);
    size_t value_at = b.n;
    gb_u8(&b, 1);
    gb_u8(&b, 0); /* two of the four bytes */
    char buf[32];
    expect_refused(&b, at(buf, value_at), "value of 'a'", "4-byte value", NULL);
    gb_free(&b);
}

Test(gguf_malformed, truncated_in_second_key)
{
    /* the count passes the quick room check but the second pair is missing */
    gb b = {0};
    gb_header(&b, 3, 0, 2);
    gb_kv_u32(&b, "a", 1);
    size_t second = b.n;
    gb_u64(&b, 5); /* a five-byte key of which one byte is there */
    gb_u8(&b, 'x');
    char buf[32];
    expect_refused(&b, at(buf, second), "key 1", "string length is 5", NULL);
    gb_free(&b);
}

static void build_lying_key_count(gb *b, uint64_t n_kv)
{
    gb_header(b, 3, 0, n_kv);
    gb_kv_u32(b, "a", 1);
}

Test(gguf_malformed, key_count_too_large)
{
    /* refused from the count alone: calloc(2^60, ...) would fail (XP_ENOMEM) or, under
     * ASan, abort */
    uint64_t counts[] = {1ull << 60, UINT64_MAX, 1000};
    for (size_t i = 0; i < 3; i++) {
        gb b = {0};
        build_lying_key_count(&b, counts[i]);
        char want[64];
        snprintf(want, sizeof want, "number of key-value pairs is %llu",
                 (unsigned long long)counts[i]);
        expect_refused(&b, "offset 16:", "key count", want, NULL);
        gb_free(&b);
    }
}

static void build_lying_tensor_count(gb *b)
{
    gb_header(b, 3, 1ull << 60, 0);
    gb_tensor(b, "w", 2, ne_q1, T_Q1_0, 0);
    gb_pad(b, 32);
    gb_zeros(b, 36);
}

Test(gguf_malformed, tensor_count_too_large)
{
    gb b = {0};
    build_lying_tensor_count(&b);
    expect_refused(&b, "offset 8:", "tensor count", "number of tensors is 1152921504606846976",
                   NULL);
    expect_file_refused(&b, "offset 8:", "tensor count", NULL);
    gb_free(&b);
}

Test(gguf_malformed, key_length_past_end)
{
    gb b = {0};
    gb_header(&b, 3, 0, 1);
    gb_u64(&b, 1ull << 63);
    gb_zeros(&b, 16);
    expect_refused(&b, "offset 24:", "key 0", "string length is 9223372036854775808", NULL);
    gb_free(&b);
}

Test(gguf_malformed, string_value_length_past_end)
{
    gb b = {0};
    one_key(&b, "s", V_STR);
    size_t value_at = b.n;
    gb_u64(&b, 1000);
    gb_bytes(&b, "only a few bytes", 16);
    char buf[32];
    expect_refused(&b, at(buf, value_at), "value of 's'", "string length is 1000", NULL);
    gb_free(&b);
}

Test(gguf_malformed, array_count_lying_fixed_size)
{
    gb b = {0};
    one_key(&b, "a", V_ARR);
    gb_u32(&b, V_U32);
    size_t count_at = b.n;
    gb_u64(&b, 1ull << 62);
    gb_u32(&b, 1);
    gb_u32(&b, 2);
    char buf[32];
    expect_refused(&b, at(buf, count_at), "value of 'a'", "array of 4611686018427387904",
                   "does not fit", NULL);
    gb_free(&b);
}

Test(gguf_malformed, array_count_lying_strings)
{
    gb b = {0};
    one_key(&b, "a", V_ARR);
    gb_u32(&b, V_STR);
    size_t count_at = b.n;
    gb_u64(&b, 1ull << 40);
    gb_str(&b, "x");
    char buf[32];
    expect_refused(&b, at(buf, count_at), "value of 'a'", "array of 1099511627776",
                   "cannot fit", NULL);
    gb_free(&b);

    /* a plausible count whose last string runs past the end */
    one_key(&b, "a", V_ARR);
    gb_u32(&b, V_STR);
    gb_u64(&b, 2);
    gb_str(&b, "x");
    size_t second = b.n;
    gb_u64(&b, 100);
    gb_zeros(&b, 20);
    expect_refused(&b, at(buf, second), "value of 'a'", "string length is 100", NULL);
    gb_free(&b);
}

Test(gguf_malformed, array_count_lying_nested)
{
    gb b = {0};
    one_key(&b, "a", V_ARR);
    gb_u32(&b, V_ARR);
    size_t count_at = b.n;
    gb_u64(&b, 1ull << 40);
    gb_zeros(&b, 24);
    char buf[32];
    expect_refused(&b, at(buf, count_at), "value of 'a'", "cannot fit", NULL);
    gb_free(&b);

    /* the outer count is honest, the inner one lies */
    one_key(&b, "a", V_ARR);
    gb_u32(&b, V_ARR);
    gb_u64(&b, 1);
    gb_u32(&b, V_U8);
    size_t inner_at = b.n;
    gb_u64(&b, 1ull << 50);
    gb_bytes(&b, "\1\2\3", 3);
    expect_refused(&b, at(buf, inner_at), "value of 'a'", "array of 1125899906842624", NULL);
    gb_free(&b);
}

Test(gguf_malformed, invalid_value_type)
{
    uint32_t types[] = {13, 200, UINT32_MAX};
    for (size_t i = 0; i < 3; i++) {
        gb b = {0};
        one_key(&b, "a", types[i]);
        size_t value_at = b.n;
        gb_u64(&b, 0);
        char buf[32], want[64];
        snprintf(want, sizeof want, "value type is %u but must be in [0, 12]", types[i]);
        expect_refused(&b, at(buf, value_at), "value of 'a'", want, NULL);
        gb_free(&b);
    }
}

Test(gguf_malformed, invalid_array_element_type)
{
    gb b = {0};
    one_key(&b, "a", V_ARR);
    size_t value_at = b.n;
    gb_u32(&b, 13);
    gb_u64(&b, 0);
    char buf[32];
    expect_refused(&b, at(buf, value_at), "value of 'a'", "array element type is 13", NULL);
    gb_free(&b);
}

Test(gguf_malformed, bool_not_0_or_1)
{
    gb b = {0};
    one_key(&b, "flag", V_BOOL);
    size_t value_at = b.n;
    gb_u8(&b, 2);
    gb_zeros(&b, 8);
    char buf[32];
    expect_refused(&b, at(buf, value_at), "value of 'flag'", "bool must be 0 or 1, found 2",
                   NULL);
    gb_free(&b);

    one_key(&b, "flags", V_ARR);
    gb_u32(&b, V_BOOL);
    gb_u64(&b, 3);
    gb_bytes(&b, "\0\1\7", 3);
    expect_refused(&b, at(buf, b.n - 1), "value of 'flags'", "found 7", NULL);
    gb_free(&b);
}

/* `levels` arrays inside each other, the innermost holding one u8. */
static void build_nested(gb *b, int levels)
{
    one_key(b, "deep", V_ARR);
    for (int i = 0; i < levels - 1; i++) {
        gb_u32(b, V_ARR);
        gb_u64(b, 1);
    }
    gb_u32(b, V_U8);
    gb_u64(b, 1);
    gb_u8(b, 42);
}

Test(gguf_malformed, nesting_deeper_than_limit)
{
    gb b = {0};
    build_nested(&b, 8); /* the limit itself is fine */
    xp_gguf *g;
    xp_err err;
    cr_assert_eq(xp_gguf_open_memory(&g, b.p, b.n, &err), XP_OK, "%s", err.msg);
    const xp_gguf_value *v = xp_gguf_get(g, "deep");
    for (int i = 0; i < 7; i++)
        v = &v->items[0];
    cr_assert_eq(v->elem_type, XP_GGUF_UINT8);
    cr_assert_eq(v->data[0], 42);
    xp_gguf_close(g);
    gb_free(&b);

    build_nested(&b, 9);
    size_t innermost = b.n - 13;
    char buf[32];
    expect_refused(&b, at(buf, innermost), "value of 'deep'", "nested deeper than 8", NULL);
    gb_free(&b);
}

Test(gguf_malformed, duplicate_key)
{
    gb b = {0};
    gb_header(&b, 3, 0, 2);
    gb_kv_u32(&b, "general.alignment", 32);
    size_t second = b.n;
    gb_kv_u32(&b, "general.alignment", 64);
    char buf[32];
    expect_refused(&b, at(buf, second), "duplicate key 'general.alignment'", NULL);
    gb_free(&b);
}

Test(gguf_malformed, empty_key_and_key_with_nul)
{
    gb b = {0};
    gb_header(&b, 3, 0, 1);
    gb_kv_u32(&b, "", 1);
    gb_zeros(&b, 4);
    expect_refused(&b, "offset 24:", "key 0", "empty", NULL);
    gb_free(&b);

    gb_header(&b, 3, 0, 1);
    gb_u64(&b, 3);
    gb_bytes(&b, "a\0b", 3);
    gb_u32(&b, V_U32);
    gb_u32(&b, 1);
    expect_refused(&b, "offset 24:", "key 0", "NUL", NULL);
    gb_free(&b);
}

/* ---- general.alignment --------------------------------------------------------------- */

Test(gguf_malformed, alignment_wrong_type)
{
    gb b = {0};
    one_key(&b, "general.alignment", V_U64);
    size_t value_at = b.n;
    gb_u64(&b, 32);
    char buf[32];
    expect_refused(&b, at(buf, value_at), "general.alignment", "has type 10", "(uint32)", NULL);
    gb_free(&b);
}

/* A file whose general.alignment is `value` is refused at that value, saying `want`. */
static void alignment_refused(uint32_t value, const char *want)
{
    gb b = {0};
    one_key(&b, "general.alignment", V_U32);
    size_t value_at = b.n;
    gb_u32(&b, value);
    gb_zeros(&b, 8);
    char buf[32];
    expect_refused(&b, at(buf, value_at), "general.alignment", want, NULL);
    gb_free(&b);
}

Test(gguf_malformed, alignment_zero_or_not_power_of_two)
{
    uint32_t values[] = {0, 48, 3};
    for (size_t i = 0; i < 3; i++) {
        char want[64];
        snprintf(want, sizeof want, "is %u, expected a power of two", values[i]);
        alignment_refused(values[i], want);
    }
}

Test(gguf_malformed, alignment_larger_than_64_kib)
{
    /* a 2^30 alignment in a 58-byte file would make every rewrite pad each tensor to a
     * GiB (the GGUF fuzzer's out-of-memory finding); 65536 is still taken */
    uint32_t values[] = {1u << 17, 1u << 30, 1u << 31};
    for (size_t i = 0; i < 3; i++) {
        char want[96];
        snprintf(want, sizeof want, "is %u, more than the largest alignment taken (65536)",
                 values[i]);
        alignment_refused(values[i], want);
    }
    gb b = {0};
    one_key(&b, "general.alignment", V_U32);
    gb_u32(&b, 65536);
    gb_zeros(&b, 8);
    xp_gguf *g = NULL;
    xp_err err = {0};
    cr_assert_eq(xp_gguf_open_memory(&g, b.p, b.n, &err), XP_OK, "%s", err.msg);
    cr_expect_eq(g->alignment, 65536);
    xp_gguf_close(g);
    gb_free(&b);
}

/* ---- tensor descriptions ------------------------------------------------------------- */

Test(gguf_malformed, truncated_in_tensor_info)
{
    gb b = {0};
    gb_header(&b, 3, 1, 0);
    gb_str(&b, "blk.0.attn_q.weight");
    gb_u32(&b, 2);
    gb_i64(&b, 128);
    char buf[32];
    expect_refused(&b, at(buf, b.n), "tensor 'blk.0.attn_q.weight'", "needs 8 bytes", NULL);
    gb_free(&b);
}

Test(gguf_malformed, tensor_name_too_long)
{
    char name[65];
    memset(name, 'n', 64);
    name[64] = '\0';
    gb b = {0};
    one_tensor(&b, name, 2, ne_q1, T_Q1_0, 0);
    expect_refused(&b, "offset 24:", "tensor 0 name", "name length is 64", NULL);
    gb_free(&b);

    name[63] = '\0'; /* 63 bytes is the longest ggml allows */
    one_tensor(&b, name, 2, ne_q1, T_Q1_0, 0);
    xp_gguf *g;
    xp_err err;
    cr_assert_eq(xp_gguf_open_memory(&g, b.p, b.n, &err), XP_OK, "%s", err.msg);
    cr_assert_str_eq(g->tensors[0].name, name);
    xp_gguf_close(g);
    gb_free(&b);
}

Test(gguf_malformed, tensor_name_empty)
{
    gb b = {0};
    one_tensor(&b, "", 2, ne_q1, T_Q1_0, 0);
    expect_refused(&b, "offset 24:", "tensor 0 name", "name length is 0", NULL);
    gb_free(&b);
}

Test(gguf_malformed, tensor_name_duplicate)
{
    gb b = {0};
    gb_header(&b, 3, 2, 0);
    gb_tensor(&b, "w", 2, ne_q1, T_Q1_0, 0);
    size_t second = b.n;
    gb_tensor(&b, "w", 2, ne_q1, T_Q1_0, 64);
    gb_pad(&b, 32);
    gb_zeros(&b, 128);
    char buf[32];
    expect_refused(&b, at(buf, second), "tensor 1 name", "duplicate tensor name 'w'", NULL);
    gb_free(&b);
}

Test(gguf_malformed, n_dims_zero_or_above_four)
{
    uint32_t dims[] = {0, 5, UINT32_MAX};
    int64_t ne[5] = {128, 1, 1, 1, 1};
    for (size_t i = 0; i < 3; i++) {
        gb b = {0};
        gb_header(&b, 3, 1, 0);
        gb_str(&b, "w");
        size_t dims_at = b.n;
        gb_u32(&b, dims[i]);
        for (int d = 0; d < 5; d++)
            gb_i64(&b, ne[d]);
        gb_u32(&b, T_Q1_0);
        gb_u64(&b, 0);
        gb_pad(&b, 32);
        gb_zeros(&b, 32);
        char buf[32], want[64];
        snprintf(want, sizeof want, "number of dimensions is %u but must be in [1, 4]", dims[i]);
        expect_refused(&b, at(buf, dims_at), "tensor 'w'", want, NULL);
        gb_free(&b);
    }
}

Test(gguf_malformed, negative_dimension)
{
    gb b = {0};
    const int64_t ne[2] = {128, -1};
    one_tensor(&b, "w", 2, ne, T_Q1_0, 0);
    size_t dim1_at = 24 + 9 + 4 + 8;
    char buf[32];
    expect_refused(&b, at(buf, dim1_at), "tensor 'w'", "dimension 1 is negative (-1)", NULL);
    gb_free(&b);
}

Test(gguf_malformed, element_count_overflow)
{
    gb b = {0};
    const int64_t ne[2] = {1ll << 32, 1ll << 32}; /* 2^64 elements */
    one_tensor(&b, "w", 2, ne, T_F32, 0);
    char buf[32];
    expect_refused(&b, at(buf, 24 + 9 + 4 + 8), "tensor 'w'",
                   "element count overflows at dimension 1", NULL);
    gb_free(&b);

    /* 2^62 elements fit in int64 but 2^64 bytes of f32 do not */
    const int64_t ne2[2] = {1ll << 31, 1ll << 31};
    one_tensor(&b, "w", 2, ne2, T_F32, 0);
    expect_refused(&b, "tensor 'w'", "byte size overflows", NULL);
    gb_free(&b);
}

Test(gguf_malformed, element_count_overflow_behind_a_zero)
{
    /* no elements, yet ne[1] * ne[2] does not fit in int64: a reader of rows would
     * overflow computing the row count, and the writer refuses to write it back */
    gb b = {0};
    const int64_t ne[3] = {0, 1ll << 62, 1ll << 62};
    one_tensor(&b, "w", 3, ne, T_F32, 0);
    char buf[32];
    expect_refused(&b, at(buf, 24 + 9 + 4 + 16), "tensor 'w'",
                   "element count overflows at dimension 2", NULL);
    gb_free(&b);
}

Test(gguf_malformed, row_bytes_overflow_in_an_empty_tensor)
{
    /* no elements, yet one row of 2^62 f32 values is 2^64 bytes: a reader of rows
     * computing that size would get 0 (the GGUF fuzzer's finding) */
    gb b = {0};
    const int64_t ne[2] = {1ll << 62, 0};
    one_tensor(&b, "w", 2, ne, T_F32, 0);
    expect_refused(&b, "tensor 'w'", "a row of 4611686018427387904 elements overflows its byte size", NULL);
    gb_free(&b);
}

Test(gguf_malformed, unknown_tensor_type)
{
    uint32_t types[] = {4, 31, 200, UINT32_MAX};
    for (size_t i = 0; i < 4; i++) {
        gb b = {0};
        const int64_t ne[1] = {128};
        one_tensor(&b, "w", 1, ne, types[i], 0);
        char buf[32], want[64];
        snprintf(want, sizeof want, "type id %u is not a known ggml type", types[i]);
        expect_refused(&b, at(buf, 24 + 9 + 4 + 8), "tensor 'w'", want, NULL);
        gb_free(&b);
    }
}

Test(gguf_malformed, row_not_a_whole_number_of_blocks)
{
    gb b = {0};
    const int64_t ne[2] = {100, 2};
    one_tensor(&b, "w", 2, ne, T_Q1_0, 0);
    char buf[32];
    expect_refused(&b, at(buf, 24 + 9 + 4 + 16), "tensor 'w'",
                   "row length 100 is not a multiple of the block size 128", NULL);
    gb_free(&b);
}

static void build_misaligned(gb *b)
{
    one_tensor(b, "w", 2, ne_q1, T_Q1_0, 16);
}

Test(gguf_malformed, offset_not_aligned)
{
    gb b = {0};
    build_misaligned(&b);
    char buf[32];
    expect_refused(&b, at(buf, 24 + 9 + 4 + 16 + 4), "tensor 'w'",
                   "data offset 16 is not a multiple of the alignment 32", NULL);
    expect_file_refused(&b, "tensor 'w'", "data offset 16", NULL);
    gb_free(&b);

    /* aligned to the default 32 but not to the file's own 64 */
    gb_header(&b, 3, 1, 1);
    gb_kv_u32(&b, "general.alignment", 64);
    gb_tensor(&b, "w", 2, ne_q1, T_Q1_0, 32);
    gb_pad(&b, 64);
    gb_zeros(&b, 128);
    expect_refused(&b, "tensor 'w'", "data offset 32 is not a multiple of the alignment 64",
                   NULL);
    gb_free(&b);
}

static void build_data_past_end(gb *b)
{
    gb_header(b, 3, 1, 0);
    gb_tensor(b, "w", 2, ne_q1, T_Q1_0, 0);
    gb_pad(b, 32);
    gb_zeros(b, 35); /* one byte short of two Q1_0 blocks */
}

Test(gguf_malformed, tensor_data_past_end)
{
    gb b = {0};
    build_data_past_end(&b);
    expect_refused(&b, "tensor 'w'", "data at offset 0 + 36 bytes ends past the data section",
                   "35 bytes from file offset 96", NULL);
    expect_file_refused(&b, "tensor 'w'", "ends past", NULL);
    gb_free(&b);

    one_tensor(&b, "w", 2, ne_q1, T_Q1_0, 1ull << 62);
    expect_refused(&b, "tensor 'w'", "data at offset 4611686018427387904", "ends past", NULL);
    gb_free(&b);
}

Test(gguf_malformed, data_section_past_end)
{
    /* the header is not padded: the data section would start beyond the last byte */
    gb b = {0};
    const int64_t ne[1] = {0};
    gb_header(&b, 3, 1, 0);
    gb_tensor(&b, "empty", 1, ne, T_F32, 0);
    expect_refused(&b, "tensor data", "data section starts at 64", NULL);
    gb_free(&b);
}

static void build_overlap(gb *b)
{
    const int64_t ne[2] = {256, 2}; /* 72 bytes */
    gb_header(b, 3, 2, 0);
    gb_tensor(b, "a", 2, ne, T_Q1_0, 0);
    gb_tensor(b, "b", 2, ne_q1, T_Q1_0, 64);
    gb_pad(b, 32);
    gb_zeros(b, 128);
}

Test(gguf_malformed, tensors_overlap)
{
    gb b = {0};
    build_overlap(&b);
    expect_refused(&b, "tensor 'a' (data offset 0, 72 bytes) overlaps tensor 'b' at data offset 64",
                   NULL);
    gb_free(&b);
}

/* ---- every prefix of a valid file ------------------------------------------------------ */

Test(gguf_malformed, every_truncation_is_refused)
{
    /* a file cut anywhere before the end of its last tensor's bytes is refused with a
     * message naming an offset; cut inside the final padding it still reads */
    xp_gguf_writer *w = xp_gguf_writer_new();
    xp_err err;
    const char *toks[2] = {"a", "b"};
    const uint8_t q1[36] = {0x00, 0x3c, 1, 2, 3};
    const float norm[3] = {1, 2, 3};
    const int64_t ne_n[1] = {3};
    cr_assert_eq(xp_gguf_writer_set_str(w, "general.architecture", "qwen3", &err), XP_OK);
    cr_assert_eq(xp_gguf_writer_set_u32(w, "qwen3.block_count", 1, &err), XP_OK);
    cr_assert_eq(xp_gguf_writer_set_str_arr(w, "tokenizer.ggml.tokens", 2, toks, NULL, &err),
                 XP_OK);
    cr_assert_eq(xp_gguf_writer_add_tensor(w, "w", 2, ne_q1, T_Q1_0, q1, NULL, NULL, &err), XP_OK);
    cr_assert_eq(xp_gguf_writer_add_tensor(w, "n", 1, ne_n, T_F32, norm, NULL, NULL, &err),
                 XP_OK);
    char path[512];
    xp_test_tmp_path(path, sizeof path, "prefixes.gguf");
    cr_assert_eq(xp_gguf_writer_write(w, path, &err), XP_OK, "%s", err.msg);
    xp_gguf_writer_free(w);
    FILE *f = fopen(path, "rb");
    cr_assert(f);
    uint8_t file[4096];
    size_t n = fread(file, 1, sizeof file, f);
    fclose(f);
    unlink(path);

    xp_gguf *g;
    cr_assert_eq(xp_gguf_open_memory(&g, file, n, &err), XP_OK, "%s", err.msg);
    const xp_gguf_tensor *last = &g->tensors[1];
    size_t end = (size_t)(g->data_offset + last->offset + last->nbytes);
    xp_gguf_close(g);
    cr_assert_lt(end, n, "the last tensor is padded");
    for (size_t len = 0; len < n; len++) {
        int rc = xp_gguf_open_memory(&g, file, len, &err);
        if (len >= end) {
            cr_assert_eq(rc, XP_OK, "prefix of %zu bytes: %s", len, err.msg);
            xp_gguf_close(g);
            continue;
        }
        cr_assert_eq(rc, XP_EFORMAT, "prefix of %zu bytes", len);
        cr_assert(strstr(err.msg, "offset"), "prefix of %zu bytes: %s", len, err.msg);
    }
}

/* ---- the same refusals through the program --------------------------------------------- */

Test(gguf_cli, bad_magic_exits_2)
{
    gb b = {0};
    build_bad_magic(&b);
    expect_cli_refuses(&b, "offset 0:", "magic", NULL);
    gb_free(&b);
}

Test(gguf_cli, truncated_header_exits_2)
{
    gb b = {0};
    build_truncated_header(&b);
    expect_cli_refuses(&b, "offset 16:", "key count", NULL);
    gb_free(&b);
}

Test(gguf_cli, lying_counts_exit_2)
{
    gb b = {0};
    build_lying_key_count(&b, 1ull << 60);
    expect_cli_refuses(&b, "offset 16:", "key count", NULL);
    gb_free(&b);
    build_lying_tensor_count(&b);
    expect_cli_refuses(&b, "offset 8:", "tensor count", NULL);
    gb_free(&b);
}

Test(gguf_cli, bad_offsets_exit_2)
{
    gb b = {0};
    build_misaligned(&b);
    expect_cli_refuses(&b, "tensor 'w'", "data offset 16", NULL);
    gb_free(&b);
    build_data_past_end(&b);
    expect_cli_refuses(&b, "tensor 'w'", "ends past", NULL);
    gb_free(&b);
    build_overlap(&b);
    expect_cli_refuses(&b, "tensor 'a'", "overlaps", NULL);
    gb_free(&b);
}

Test(gguf_cli, empty_file_exits_2)
{
    gb b = {0};
    expect_cli_refuses(&b, "offset 0:", "magic", NULL);
}
