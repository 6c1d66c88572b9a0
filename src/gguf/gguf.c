/* GGUF v2/v3 reader. The file is mapped MAP_PRIVATE (so in-memory weight flips never
 * reach the disk) and every field is checked against what remains of the file before
 * it is used: a lying count can neither crash the reader nor make it allocate more
 * than the file could describe. Each failure names the file, the byte offset, the
 * field, what was expected and what was found. */
#include "xorpatch/gguf.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/journal.h"
#include "core/strmap.h"
#include "gguf/gguf_types.h"

/* Deeper nesting than this is refused: real files use one level (arrays of strings). */
#define MAX_ARRAY_DEPTH 8
#define MAX_TENSOR_NAME 64
#define MAX_DIMS 4

typedef struct cursor {
    const uint8_t *p;
    uint64_t len, off;
    const char *where; /* file name for messages */
    xp_err *err;
} cursor;

typedef struct index_tables {
    xp_strmap keys, tensors;
} index_tables;

static int fail(cursor *c, uint64_t off, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail(cursor *c, uint64_t off, const char *field, const char *fmt, ...)
{
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return xp_err_set(c->err, XP_EFORMAT, "%s: offset %llu: %s: %s", c->where,
                      (unsigned long long)off, field, what);
}

static uint64_t remaining(const cursor *c) { return c->len - c->off; }

static int take(cursor *c, void *dst, uint64_t n, const char *field)
{
    if (n > remaining(c))
        return fail(c, c->off, field, "needs %llu bytes but only %llu remain in the file", (unsigned long long)n, (unsigned long long)remaining(c));
    memcpy(dst, c->p + c->off, n);
    c->off += n;
    return XP_OK;
}

static int take_u32(cursor *c, uint32_t *v, const char *field) { return take(c, v, 4, field); }
static int take_u64(cursor *c, uint64_t *v, const char *field) { return take(c, v, 8, field); }

/* A GGUF string: u64 length then bytes. Points into the map. */
static int take_string(cursor *c, const uint8_t **s, uint64_t *n, const char *field)
{
    uint64_t at = c->off;
    int rc = take_u64(c, n, field);
    if (rc)
        return rc;
    if (*n > remaining(c))
        return fail(c, at, field, "string length is %llu but only %llu bytes remain in the file", (unsigned long long)*n, (unsigned long long)remaining(c));
    *s = c->p + c->off;
    c->off += *n;
    return XP_OK;
}

static size_t scalar_size(uint32_t t)
{
    switch (t) {
    case XP_GGUF_UINT8: case XP_GGUF_INT8: case XP_GGUF_BOOL: return 1;
    case XP_GGUF_UINT16: case XP_GGUF_INT16: return 2;
    case XP_GGUF_UINT32: case XP_GGUF_INT32: case XP_GGUF_FLOAT32: return 4;
    case XP_GGUF_UINT64: case XP_GGUF_INT64: case XP_GGUF_FLOAT64: return 8;
    default: return 0;
    }
}

static void free_value(xp_gguf_value *v)
{
    if (v->items) {
        for (uint64_t i = 0; i < v->n; i++)
            free_value(&v->items[i]);
        free(v->items);
        v->items = NULL;
    }
}

static int read_value(cursor *c, xp_gguf_value *v, uint32_t type, const char *field, int depth)
{
    memset(v, 0, sizeof *v);
    v->type = type;
    uint64_t at = c->off;
    if (type >= XP_GGUF_NTYPES)
        return fail(c, at, field, "value type is %llu but must be in [0, %llu]", (unsigned long long)type, (unsigned long long)XP_GGUF_NTYPES - 1);
    if (type == XP_GGUF_STRING)
        return take_string(c, &v->data, &v->n, field);
    if (type != XP_GGUF_ARRAY) {
        size_t sz = scalar_size(type);
        if (sz > remaining(c))
            return fail(c, at, field, "a %llu-byte value needs more than the %llu bytes that remain", (unsigned long long)sz, (unsigned long long)remaining(c));
        v->data = c->p + c->off;
        if (type == XP_GGUF_BOOL && v->data[0] > 1)
            return fail(c, at, field, "a bool must be 0 or 1, found %llu", (unsigned long long)v->data[0]);
        c->off += sz;
        return XP_OK;
    }
    if (depth >= MAX_ARRAY_DEPTH)
        return fail(c, at, field, "arrays nested deeper than %llu levels", (unsigned long long)MAX_ARRAY_DEPTH);
    int rc = take_u32(c, &v->elem_type, field);
    if (rc)
        return rc;
    if (v->elem_type >= XP_GGUF_NTYPES)
        return fail(c, at, field, "array element type is %llu but must be in [0, %llu]", (unsigned long long)v->elem_type, (unsigned long long)XP_GGUF_NTYPES - 1);
    at = c->off;
    if ((rc = take_u64(c, &v->n, field)))
        return rc;
    size_t esz = scalar_size(v->elem_type);
    if (esz) {
        if (v->n > remaining(c) / esz)
            return fail(c, at, field, "array of %llu elements does not fit in the %llu bytes that "
                        "remain", (unsigned long long)v->n, (unsigned long long)remaining(c));
        v->data = c->p + c->off;
        if (v->elem_type == XP_GGUF_BOOL)
            for (uint64_t i = 0; i < v->n; i++)
                if (v->data[i] > 1)
                    return fail(c, c->off + i, field, "a bool must be 0 or 1, found %llu", (unsigned long long)v->data[i]);
        c->off += v->n * esz;
        return XP_OK;
    }
    /* strings take at least 8 bytes each, nested arrays at least 12 */
    uint64_t min = v->elem_type == XP_GGUF_STRING ? 8 : 12;
    if (v->n > remaining(c) / min)
        return fail(c, at, field, "array of %llu elements cannot fit in the %llu bytes that remain", (unsigned long long)v->n, (unsigned long long)remaining(c));
    v->data = c->p + c->off;
    v->items = xp_calloc(v->n, sizeof *v->items);
    if (!v->items)
        return xp_err_set(c->err, XP_ENOMEM, "%s: cannot allocate %llu array items for %s",
                          c->where, (unsigned long long)v->n, field);
    for (uint64_t i = 0; i < v->n; i++) {
        /* a nested array element is an array body: element type, count, elements */
        rc = read_value(c, &v->items[i], v->elem_type, field, depth + 1);
        if (rc) {
            v->n = i + 1; /* free what was read */
            return rc;
        }
    }
    return XP_OK;
}

static int read_kv(cursor *c, xp_gguf *g, index_tables *ix)
{
    for (size_t i = 0; i < g->n_kv; i++) {
        xp_gguf_kv *kv = &g->kv[i];
        uint64_t at = c->off;
        const uint8_t *key = NULL;
        uint64_t klen = 0;
        char field[96];
        snprintf(field, sizeof field, "key %zu", i);
        int rc = take_string(c, &key, &klen, field);
        if (rc)
            return rc;
        if (klen == 0 || memchr(key, 0, klen))
            return fail(c, at, field, "key is empty or holds a NUL byte (length %llu)", (unsigned long long)klen);
        kv->key = xp_strndup((const char *)key, klen);
        if (!kv->key)
            return xp_err_set(c->err, XP_ENOMEM, "%s: cannot copy %s", c->where, field);
        snprintf(field, sizeof field, "value of '%.64s'", kv->key);
        if (xp_strmap_put(&ix->keys, kv->key, klen, (int64_t)i, NULL) == 0)
            return fail(c, at, field, "duplicate key '%s'", kv->key);
        uint32_t type = 0;
        if ((rc = take_u32(c, &type, field)))
            return rc;
        if ((rc = read_value(c, &kv->value, type, field, 0)))
            return rc;
    }
    return XP_OK;
}

static int read_alignment(cursor *c, xp_gguf *g)
{
    g->alignment = 32;
    const xp_gguf_value *v = xp_gguf_get(g, "general.alignment");
    if (!v)
        return XP_OK;
    if (v->type != XP_GGUF_UINT32)
        return fail(c, (uint64_t)(v->data - c->p), "general.alignment", "has type %llu, expected %llu (uint32)", (unsigned long long)v->type, (unsigned long long)XP_GGUF_UINT32);
    uint32_t a;
    memcpy(&a, v->data, 4);
    if (a == 0 || (a & (a - 1)))
        return fail(c, (uint64_t)(v->data - c->p), "general.alignment", "is %llu, expected a power of two", (unsigned long long)a);
    if (a > XP_GGUF_MAX_ALIGNMENT)
        return fail(c, (uint64_t)(v->data - c->p), "general.alignment", "is %llu, more than the largest alignment taken (%llu)", (unsigned long long)a, (unsigned long long)XP_GGUF_MAX_ALIGNMENT);
    g->alignment = a;
    return XP_OK;
}

static int read_tensor_infos(cursor *c, xp_gguf *g, index_tables *ix)
{
    for (size_t i = 0; i < g->n_tensors; i++) {
        xp_gguf_tensor *t = &g->tensors[i];
        uint64_t at = c->off;
        char field[128];
        snprintf(field, sizeof field, "tensor %zu name", i);
        const uint8_t *name = NULL;
        uint64_t nlen = 0;
        int rc = take_string(c, &name, &nlen, field);
        if (rc)
            return rc;
        if (nlen == 0 || nlen >= MAX_TENSOR_NAME || memchr(name, 0, nlen))
            return fail(c, at, field, "name length is %llu, expected 1 to %llu bytes without NUL", (unsigned long long)nlen, (unsigned long long)MAX_TENSOR_NAME - 1);
        t->name = xp_strndup((const char *)name, nlen);
        if (!t->name)
            return xp_err_set(c->err, XP_ENOMEM, "%s: cannot copy %s", c->where, field);
        if (xp_strmap_put(&ix->tensors, t->name, nlen, (int64_t)i, NULL) == 0)
            return fail(c, at, field, "duplicate tensor name '%s'", t->name);
        snprintf(field, sizeof field, "tensor '%s'", t->name);
        at = c->off;
        if ((rc = take_u32(c, &t->n_dims, field)))
            return rc;
        if (t->n_dims == 0 || t->n_dims > MAX_DIMS)
            return fail(c, at, field, "number of dimensions is %llu but must be in [1, %llu]", (unsigned long long)t->n_dims, (unsigned long long)MAX_DIMS);
        /* span is the product with zeros counted as ones: an empty tensor's other
         * dimensions must still multiply within int64, or code computing its row count
         * (ne1 * ne2 * ne3) overflows */
        int64_t total = 1, span = 1;
        for (int d = 0; d < MAX_DIMS; d++) {
            t->ne[d] = 1;
            if ((uint32_t)d >= t->n_dims)
                continue;
            at = c->off;
            if ((rc = take(c, &t->ne[d], 8, field)))
                return rc;
            if (t->ne[d] < 0)
                return fail(c, at, field, "dimension %llu is negative (%lld)", (unsigned long long)d, (long long)t->ne[d]);
            if (__builtin_mul_overflow(total, t->ne[d], &total) ||
                __builtin_mul_overflow(span, t->ne[d] ? t->ne[d] : 1, &span))
                return fail(c, at, field, "element count overflows at dimension %llu", (unsigned long long)d);
        }
        at = c->off;
        if ((rc = take_u32(c, &t->type, field)))
            return rc;
        const xp_ggml_type_info *ti = xp_ggml_type(t->type);
        if (!ti)
            return fail(c, at, field, "type id %llu is not a known ggml type", (unsigned long long)t->type);
        if (t->ne[0] % ti->block != 0)
            return fail(c, at, field, "row length %llu is not a multiple of the block size %llu", (unsigned long long)(uint64_t)t->ne[0], (unsigned long long)ti->block);
        uint64_t row = xp_tensor_row_bytes(t->type, t->ne[0]); /* 0: empty, or overflowed */
        if (!row && t->ne[0])
            return fail(c, at, field, "a row of %llu elements overflows its byte size", (unsigned long long)t->ne[0]);
        uint64_t rows = (uint64_t)(total / (t->ne[0] ? t->ne[0] : 1));
        if (t->ne[0] == 0)
            rows = 0;
        if (rows && __builtin_mul_overflow(row, rows, &t->nbytes))
            return fail(c, at, field, "byte size overflows (%llu rows of %llu bytes)", (unsigned long long)rows, (unsigned long long)row);
        if (!rows)
            t->nbytes = 0;
        at = c->off;
        if ((rc = take_u64(c, &t->offset, field)))
            return rc;
        if (t->offset % g->alignment)
            return fail(c, at, field, "data offset %llu is not a multiple of the alignment %llu", (unsigned long long)t->offset, (unsigned long long)g->alignment);
    }
    return XP_OK;
}

static int cmp_by_offset(const void *a, const void *b)
{
    const xp_gguf_tensor *x = *(xp_gguf_tensor *const *)a, *y = *(xp_gguf_tensor *const *)b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

static int place_tensors(cursor *c, xp_gguf *g)
{
    uint64_t data_size = g->file_size - g->data_offset;
    for (size_t i = 0; i < g->n_tensors; i++) {
        xp_gguf_tensor *t = &g->tensors[i];
        if (t->offset > data_size || t->nbytes > data_size - t->offset)
            return xp_err_set(c->err, XP_EFORMAT,
                              "%s: tensor '%s': data at offset %llu + %llu bytes ends past the "
                              "data section (%llu bytes from file offset %llu)",
                              c->where, t->name, (unsigned long long)t->offset,
                              (unsigned long long)t->nbytes, (unsigned long long)data_size,
                              (unsigned long long)g->data_offset);
        t->data = g->map + g->data_offset + t->offset;
    }
    xp_gguf_tensor **order = xp_calloc(g->n_tensors, sizeof *order);
    if (!order)
        return xp_err_set(c->err, XP_ENOMEM, "%s: cannot sort tensors", c->where);
    for (size_t i = 0; i < g->n_tensors; i++)
        order[i] = &g->tensors[i];
    qsort(order, g->n_tensors, sizeof *order, cmp_by_offset);
    int rc = XP_OK;
    for (size_t i = 1; i < g->n_tensors && !rc; i++)
        if (order[i - 1]->offset + order[i - 1]->nbytes > order[i]->offset)
            rc = xp_err_set(c->err, XP_EFORMAT,
                            "%s: tensor '%s' (data offset %llu, %llu bytes) overlaps tensor "
                            "'%s' at data offset %llu",
                            c->where, order[i - 1]->name,
                            (unsigned long long)order[i - 1]->offset,
                            (unsigned long long)order[i - 1]->nbytes, order[i]->name,
                            (unsigned long long)order[i]->offset);
    free(order);
    return rc;
}

static int parse(xp_gguf *g, xp_err *err)
{
    cursor c = {g->map, g->map_len, 0, g->path ? g->path : "<memory>", err};
    char magic[4];
    int rc = take(&c, magic, 4, "magic");
    if (rc)
        return rc;
    if (memcmp(magic, "GGUF", 4) != 0)
        return xp_err_set(err, XP_EFORMAT,
                          "%s: offset 0: magic: expected \"GGUF\", found %02x %02x %02x %02x: "
                          "not a GGUF file",
                          c.where, (uint8_t)magic[0], (uint8_t)magic[1], (uint8_t)magic[2],
                          (uint8_t)magic[3]);
    if ((rc = take_u32(&c, &g->version, "version")))
        return rc;
    if (g->version != 2 && g->version != 3) {
        if ((g->version & 0xffff) == 0 && g->version)
            return fail(&c, 4, "version", "%llu looks byte-swapped: big-endian GGUF is not supported", (unsigned long long)g->version);
        return fail(&c, 4, "version", "is %llu, expected 2 or 3", (unsigned long long)g->version);
    }
    uint64_t n_tensors = 0, n_kv = 0;
    if ((rc = take_u64(&c, &n_tensors, "tensor count")) || (rc = take_u64(&c, &n_kv, "key count")))
        return rc;
    /* a key-value pair takes at least 13 bytes, a tensor description at least 32 */
    if (n_kv > remaining(&c) / 13)
        return fail(&c, 16, "key count", "number of key-value pairs is %llu but the file has room for at "
                    "most %llu", (unsigned long long)n_kv, (unsigned long long)remaining(&c) / 13);
    if (n_tensors > remaining(&c) / 32)
        return fail(&c, 8, "tensor count", "number of tensors is %llu but the file has room for at most %llu", (unsigned long long)n_tensors, (unsigned long long)remaining(&c) / 32);
    index_tables *ix = calloc(1, sizeof *ix);
    g->index = ix;
    g->kv = xp_calloc(n_kv, sizeof *g->kv);
    g->tensors = xp_calloc(n_tensors, sizeof *g->tensors);
    if (!ix || !g->kv || !g->tensors || xp_strmap_init(&ix->keys, n_kv) ||
        xp_strmap_init(&ix->tensors, n_tensors))
        return xp_err_set(err, XP_ENOMEM, "%s: cannot allocate the header tables", c.where);
    g->n_kv = n_kv;
    if ((rc = read_kv(&c, g, ix)) || (rc = read_alignment(&c, g)))
        return rc;
    g->n_tensors = n_tensors;
    if ((rc = read_tensor_infos(&c, g, ix)))
        return rc;
    uint64_t pad = (g->alignment - c.off % g->alignment) % g->alignment;
    g->data_offset = c.off + pad;
    if (g->data_offset > c.len) {
        if (g->n_tensors)
            return fail(&c, c.off, "tensor data", "data section starts at %llu, past the end of the file "
                        "(%llu bytes)", (unsigned long long)g->data_offset, (unsigned long long)c.len);
        g->data_offset = c.len;
    }
    return place_tensors(&c, g);
}

void xp_gguf_close(xp_gguf *g)
{
    if (!g)
        return;
    for (size_t i = 0; i < g->n_kv; i++) {
        free((char *)g->kv[i].key);
        free_value(&g->kv[i].value);
    }
    for (size_t i = 0; i < g->n_tensors; i++)
        free((char *)g->tensors[i].name);
    free(g->kv);
    free(g->tensors);
    index_tables *ix = g->index;
    if (ix) {
        xp_strmap_free(&ix->keys);
        xp_strmap_free(&ix->tensors);
        free(ix);
    }
    if (g->mapped)
        munmap(g->map, g->map_len);
    else
        free(g->map);
    free(g->path);
    free(g);
}

static int finish_open(xp_gguf *g, xp_gguf **out, xp_err *err)
{
    int rc = parse(g, err);
    if (rc) {
        xp_gguf_close(g);
        return rc;
    }
    *out = g;
    return XP_OK;
}

int xp_gguf_open(xp_gguf **out, const char *path, xp_err *err)
{
    *out = NULL;
    /* a file left half changed by a killed in-place patch is completed before it is read */
    bool recovered;
    int rc = xp_journal_recover(path, &recovered, err);
    if (rc)
        return rc;
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return xp_err_set(err, XP_EIO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return xp_err_set(err, XP_EIO, "%s: not a regular file", path);
    }
    xp_gguf *g = calloc(1, sizeof *g);
    if (!g || !(g->path = xp_strdup(path))) {
        free(g);
        close(fd);
        return xp_err_set(err, XP_ENOMEM, "%s: out of memory", path);
    }
    g->file_size = g->map_len = (size_t)st.st_size;
    if (st.st_size == 0) {
        close(fd);
        xp_gguf_close(g);
        return xp_err_set(err, XP_EFORMAT, "%s: offset 0: magic: the file is empty", path);
    }
    void *m = mmap(NULL, g->map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    close(fd);
    if (m == MAP_FAILED) {
        xp_gguf_close(g);
        return xp_err_set(err, XP_EIO, "%s: cannot map: %s", path, strerror(errno));
    }
    g->map = m;
    g->mapped = 1;
    return finish_open(g, out, err);
}

int xp_gguf_open_memory(xp_gguf **out, const void *buf, size_t len, xp_err *err)
{
    *out = NULL;
    xp_gguf *g = calloc(1, sizeof *g);
    if (!g || !(g->map = malloc(len ? len : 1))) {
        free(g);
        return xp_err_set(err, XP_ENOMEM, "<memory>: cannot copy %zu bytes", len);
    }
    if (len)
        memcpy(g->map, buf, len);
    g->map_len = g->file_size = len;
    return finish_open(g, out, err);
}

const xp_gguf_value *xp_gguf_get(const xp_gguf *g, const char *key)
{
    const index_tables *ix = g->index;
    int64_t i = xp_strmap_get(&ix->keys, key, strlen(key));
    return i < 0 ? NULL : &g->kv[i].value;
}

const xp_gguf_tensor *xp_gguf_tensor_by_name(const xp_gguf *g, const char *name)
{
    const index_tables *ix = g->index;
    int64_t i = xp_strmap_get(&ix->tensors, name, strlen(name));
    return i < 0 ? NULL : &g->tensors[i];
}

static int lookup(const xp_gguf *g, const char *key, const xp_gguf_value **v, xp_err *err)
{
    *v = xp_gguf_get(g, key);
    if (!*v)
        return xp_err_set(err, XP_ENOTFOUND, "%s: metadata key '%s' is missing",
                          g->path ? g->path : "<memory>", key);
    return XP_OK;
}

static int wrong_type(const xp_gguf *g, const char *key, const xp_gguf_value *v,
                      const char *expected, xp_err *err)
{
    return xp_err_set(err, XP_ETYPE, "%s: metadata key '%s' has type %s, expected %s",
                      g->path ? g->path : "<memory>", key, xp_gguf_type_name(v->type), expected);
}

/* Any integer value as a sign flag plus magnitude, for range-checked conversion. */
static int as_integer(const xp_gguf_value *v, int *neg, uint64_t *mag)
{
    const uint8_t *d = v->data;
    int64_t s = 0;
    *neg = 0;
    switch (v->type) {
    case XP_GGUF_UINT8: *mag = d[0]; return 1;
    case XP_GGUF_UINT16: { uint16_t x; memcpy(&x, d, 2); *mag = x; return 1; }
    case XP_GGUF_UINT32: { uint32_t x; memcpy(&x, d, 4); *mag = x; return 1; }
    case XP_GGUF_UINT64: memcpy(mag, d, 8); return 1;
    case XP_GGUF_INT8: s = (int8_t)d[0]; break;
    case XP_GGUF_INT16: { int16_t x; memcpy(&x, d, 2); s = x; break; }
    case XP_GGUF_INT32: { int32_t x; memcpy(&x, d, 4); s = x; break; }
    case XP_GGUF_INT64: memcpy(&s, d, 8); break;
    default: return 0;
    }
    *neg = s < 0;
    *mag = s < 0 ? (uint64_t)0 - (uint64_t)s : (uint64_t)s;
    return 1;
}

int xp_gguf_get_u64(const xp_gguf *g, const char *key, uint64_t *out, xp_err *err)
{
    const xp_gguf_value *v;
    int rc = lookup(g, key, &v, err), neg;
    if (rc)
        return rc;
    if (!as_integer(v, &neg, out) || neg)
        return wrong_type(g, key, v, "a non-negative integer", err);
    return XP_OK;
}

int xp_gguf_get_i64(const xp_gguf *g, const char *key, int64_t *out, xp_err *err)
{
    const xp_gguf_value *v;
    int rc = lookup(g, key, &v, err), neg;
    uint64_t mag;
    if (rc)
        return rc;
    if (!as_integer(v, &neg, &mag) || (!neg && mag > INT64_MAX) ||
        (neg && mag > (uint64_t)INT64_MAX + 1))
        return wrong_type(g, key, v, "an integer in the int64 range", err);
    *out = neg ? (int64_t)(0 - mag) : (int64_t)mag;
    return XP_OK;
}

int xp_gguf_get_u32(const xp_gguf *g, const char *key, uint32_t *out, xp_err *err)
{
    uint64_t x;
    int rc = xp_gguf_get_u64(g, key, &x, err);
    if (rc)
        return rc;
    if (x > UINT32_MAX)
        return xp_err_set(err, XP_ETYPE, "%s: metadata key '%s' is %llu, beyond uint32",
                          g->path ? g->path : "<memory>", key, (unsigned long long)x);
    *out = (uint32_t)x;
    return XP_OK;
}

int xp_gguf_get_f32(const xp_gguf *g, const char *key, float *out, xp_err *err)
{
    const xp_gguf_value *v;
    int rc = lookup(g, key, &v, err);
    if (rc)
        return rc;
    if (v->type == XP_GGUF_FLOAT32) {
        memcpy(out, v->data, 4);
    } else if (v->type == XP_GGUF_FLOAT64) {
        double d;
        memcpy(&d, v->data, 8);
        *out = (float)d;
    } else {
        return wrong_type(g, key, v, "float32 or float64", err);
    }
    return XP_OK;
}

int xp_gguf_get_bool(const xp_gguf *g, const char *key, bool *out, xp_err *err)
{
    const xp_gguf_value *v;
    int rc = lookup(g, key, &v, err);
    if (rc)
        return rc;
    if (v->type != XP_GGUF_BOOL)
        return wrong_type(g, key, v, "bool", err);
    *out = v->data[0] != 0;
    return XP_OK;
}

int xp_gguf_get_str(const xp_gguf *g, const char *key, char **out, xp_err *err)
{
    const xp_gguf_value *v;
    int rc = lookup(g, key, &v, err);
    if (rc)
        return rc;
    if (v->type != XP_GGUF_STRING)
        return wrong_type(g, key, v, "string", err);
    if (!(*out = xp_strndup((const char *)v->data, v->n)))
        return xp_err_set(err, XP_ENOMEM, "copying metadata key '%s'", key);
    return XP_OK;
}

int xp_gguf_get_str_array(const xp_gguf *g, const char *key, const xp_gguf_value **items,
                          uint64_t *n, xp_err *err)
{
    const xp_gguf_value *v;
    int rc = lookup(g, key, &v, err);
    if (rc)
        return rc;
    if (v->type != XP_GGUF_ARRAY || v->elem_type != XP_GGUF_STRING)
        return wrong_type(g, key, v, "array of strings", err);
    *items = v->items;
    *n = v->n;
    return XP_OK;
}

const char *xp_gguf_type_name(uint32_t type)
{
    static const char *names[] = {"uint8", "int8", "uint16", "int16", "uint32", "int32",
                                  "float32", "bool", "string", "array", "uint64", "int64",
                                  "float64"};
    return type < XP_GGUF_NTYPES ? names[type] : "unknown";
}
