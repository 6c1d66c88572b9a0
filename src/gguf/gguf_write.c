/* GGUF v3 writer. Metadata values are serialised when they are set (so a value copied
 * from a file re-serialises to the same bytes), tensors are laid out in the order they
 * were added, each aligned to general.alignment (32 by default) and zero-padded as
 * ggml pads them, so llama.cpp loads what we write. The file is written beside its
 * target under a temporary name, flushed to disk and renamed over (core/file.h: only a
 * regular file is replaced, and a killed writer's temporary is removed by the next): a
 * failed or killed write never leaves a half file at the target path. */
#include "xorpatch/gguf.h"

#include <errno.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/file.h"

typedef struct buf {
    uint8_t *p;
    size_t n, cap;
    int oom;
} buf;

static void put(buf *b, const void *src, size_t n)
{
    if (b->oom)
        return;
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->n + n)
            cap *= 2;
        uint8_t *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, src, n);
    b->n += n;
}

static void put_u32(buf *b, uint32_t v) { put(b, &v, 4); }
static void put_u64(buf *b, uint64_t v) { put(b, &v, 8); }
static void put_str(buf *b, const void *s, uint64_t n)
{
    put_u64(b, n);
    put(b, s, n);
}

typedef struct wkv {
    char *key;
    buf bytes; /* value type tag and payload, exactly as in the file */
} wkv;

typedef struct wtensor {
    char *name;
    uint32_t n_dims, type;
    int64_t ne[4];
    uint64_t nbytes, offset;
    const void *data;
    xp_tensor_fill_fn fill;
    void *fill_ctx;
} wtensor;

struct xp_gguf_writer {
    uint32_t version;
    wkv *kv;
    size_t n_kv, cap_kv;
    wtensor *t;
    size_t n_t, cap_t;
    xp_progress_fn progress;
    void *progress_ctx;
};

xp_gguf_writer *xp_gguf_writer_new(void)
{
    xp_gguf_writer *w = calloc(1, sizeof *w);
    if (w)
        w->version = 3;
    return w;
}

void xp_gguf_writer_free(xp_gguf_writer *w)
{
    if (!w)
        return;
    for (size_t i = 0; i < w->n_kv; i++) {
        free(w->kv[i].key);
        free(w->kv[i].bytes.p);
    }
    for (size_t i = 0; i < w->n_t; i++)
        free(w->t[i].name);
    free(w->kv);
    free(w->t);
    free(w);
}

int xp_gguf_writer_set_version(xp_gguf_writer *w, uint32_t version)
{
    if (version != 2 && version != 3)
        return XP_EINVAL;
    w->version = version;
    return XP_OK;
}

static size_t scalar_size(uint32_t t)
{
    static const size_t sizes[XP_GGUF_NTYPES] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    return t < XP_GGUF_NTYPES ? sizes[t] : 0;
}

/* The payload of a value (without its own type tag). */
static int put_payload(buf *b, const xp_gguf_value *v, uint32_t type)
{
    if (type == XP_GGUF_STRING) {
        put_str(b, v->data, v->n);
        return XP_OK;
    }
    if (type != XP_GGUF_ARRAY) {
        if (!scalar_size(type))
            return XP_EINVAL;
        put(b, v->data, scalar_size(type));
        return XP_OK;
    }
    put_u32(b, v->elem_type);
    put_u64(b, v->n);
    size_t esz = scalar_size(v->elem_type);
    if (esz) {
        put(b, v->data, (size_t)v->n * esz);
        return XP_OK;
    }
    if (v->elem_type != XP_GGUF_STRING && v->elem_type != XP_GGUF_ARRAY)
        return XP_EINVAL;
    if (v->n && !v->items)
        return XP_EINVAL;
    for (uint64_t i = 0; i < v->n; i++) {
        int rc = put_payload(b, &v->items[i], v->elem_type);
        if (rc)
            return rc;
    }
    return XP_OK;
}

static wkv *find_kv(xp_gguf_writer *w, const char *key)
{
    for (size_t i = 0; i < w->n_kv; i++)
        if (strcmp(w->kv[i].key, key) == 0)
            return &w->kv[i];
    return NULL;
}

int xp_gguf_writer_set(xp_gguf_writer *w, const char *key, const xp_gguf_value *v, xp_err *err)
{
    if (!*key)
        return xp_err_set(err, XP_EINVAL, "gguf writer: empty metadata key");
    if (v->type >= XP_GGUF_NTYPES)
        return xp_err_set(err, XP_EINVAL,
                          "gguf writer: key '%s': value type %u is not a GGUF "
                          "type",
                          key, v->type);
    buf b = {0};
    put_u32(&b, v->type);
    int rc = put_payload(&b, v, v->type);
    if (rc || b.oom) {
        free(b.p);
        return rc ? xp_err_set(err, rc, "gguf writer: key '%s': malformed value", key)
                  : xp_err_set(err, XP_ENOMEM, "gguf writer: key '%s': out of memory", key);
    }
    wkv *kv = find_kv(w, key);
    if (kv) {
        free(kv->bytes.p);
        kv->bytes = b;
        return XP_OK;
    }
    if (w->n_kv == w->cap_kv) {
        size_t cap = w->cap_kv ? 2 * w->cap_kv : 32;
        wkv *p = xp_realloc_array(w->kv, cap, sizeof *p);
        if (!p) {
            free(b.p);
            return xp_err_set(err, XP_ENOMEM, "gguf writer: out of memory");
        }
        w->kv = p;
        w->cap_kv = cap;
    }
    kv = &w->kv[w->n_kv];
    if (!(kv->key = xp_strdup(key))) {
        free(b.p);
        return xp_err_set(err, XP_ENOMEM, "gguf writer: out of memory");
    }
    kv->bytes = b;
    w->n_kv++;
    return XP_OK;
}

static int set_scalar(xp_gguf_writer *w, const char *key, uint32_t type, const void *p, xp_err *err)
{
    xp_gguf_value v = {.type = type, .data = p};
    return xp_gguf_writer_set(w, key, &v, err);
}

int xp_gguf_writer_set_u32(xp_gguf_writer *w, const char *key, uint32_t v, xp_err *err)
{
    return set_scalar(w, key, XP_GGUF_UINT32, &v, err);
}
int xp_gguf_writer_set_i32(xp_gguf_writer *w, const char *key, int32_t v, xp_err *err)
{
    return set_scalar(w, key, XP_GGUF_INT32, &v, err);
}
int xp_gguf_writer_set_u64(xp_gguf_writer *w, const char *key, uint64_t v, xp_err *err)
{
    return set_scalar(w, key, XP_GGUF_UINT64, &v, err);
}
int xp_gguf_writer_set_f32(xp_gguf_writer *w, const char *key, float v, xp_err *err)
{
    return set_scalar(w, key, XP_GGUF_FLOAT32, &v, err);
}
int xp_gguf_writer_set_bool(xp_gguf_writer *w, const char *key, bool v, xp_err *err)
{
    uint8_t b = v;
    return set_scalar(w, key, XP_GGUF_BOOL, &b, err);
}
int xp_gguf_writer_set_str(xp_gguf_writer *w, const char *key, const char *s, xp_err *err)
{
    xp_gguf_value v = {.type = XP_GGUF_STRING, .n = strlen(s), .data = (const uint8_t *)s};
    return xp_gguf_writer_set(w, key, &v, err);
}

int xp_gguf_writer_set_arr(xp_gguf_writer *w, const char *key, uint32_t elem_type, uint64_t n,
                           const void *elems, xp_err *err)
{
    if (!scalar_size(elem_type))
        return xp_err_set(err, XP_EINVAL,
                          "gguf writer: key '%s': arrays of %s need their own "
                          "setter",
                          key, xp_gguf_type_name(elem_type));
    xp_gguf_value v = {.type = XP_GGUF_ARRAY, .elem_type = elem_type, .n = n, .data = elems};
    return xp_gguf_writer_set(w, key, &v, err);
}

int xp_gguf_writer_set_str_arr(xp_gguf_writer *w, const char *key, uint64_t n,
                               const char *const *strs, const size_t *lens, xp_err *err)
{
    xp_gguf_value *items = xp_calloc(n, sizeof *items);
    if (!items)
        return xp_err_set(err, XP_ENOMEM, "gguf writer: key '%s': out of memory", key);
    for (uint64_t i = 0; i < n; i++) {
        items[i].type = XP_GGUF_STRING;
        items[i].n = lens ? lens[i] : strlen(strs[i]);
        items[i].data = (const uint8_t *)strs[i];
    }
    xp_gguf_value v = {.type = XP_GGUF_ARRAY, .elem_type = XP_GGUF_STRING, .n = n, .items = items};
    int rc = xp_gguf_writer_set(w, key, &v, err);
    free(items);
    return rc;
}

int xp_gguf_writer_remove(xp_gguf_writer *w, const char *key)
{
    wkv *kv = find_kv(w, key);
    if (!kv)
        return XP_ENOTFOUND;
    free(kv->key);
    free(kv->bytes.p);
    size_t i = (size_t)(kv - w->kv);
    memmove(kv, kv + 1, (w->n_kv - i - 1) * sizeof *kv);
    w->n_kv--;
    return XP_OK;
}

int xp_gguf_writer_add_tensor(xp_gguf_writer *w, const char *name, uint32_t n_dims,
                              const int64_t *ne, uint32_t type, const void *data,
                              xp_tensor_fill_fn fill, void *fill_ctx, xp_err *err)
{
    if (!*name || strlen(name) >= 64)
        return xp_err_set(err, XP_EINVAL,
                          "gguf writer: tensor name '%s' must have 1 to 63 "
                          "bytes",
                          name);
    if (n_dims < 1 || n_dims > 4)
        return xp_err_set(err, XP_EINVAL,
                          "gguf writer: tensor '%s': %u dimensions, expected "
                          "1 to 4",
                          name, n_dims);
    for (size_t i = 0; i < w->n_t; i++)
        if (strcmp(w->t[i].name, name) == 0)
            return xp_err_set(err, XP_EINVAL, "gguf writer: duplicate tensor '%s'", name);
    if ((data == NULL) == (fill == NULL))
        return xp_err_set(err, XP_EINVAL,
                          "gguf writer: tensor '%s': give data or a fill "
                          "function, not both or neither",
                          name);
    wtensor t = {.n_dims = n_dims,
                 .type = type,
                 .data = data,
                 .fill = fill,
                 .fill_ctx = fill_ctx,
                 .ne = {1, 1, 1, 1}};
    uint64_t rows = 1;
    for (uint32_t d = 0; d < n_dims; d++) {
        if (ne[d] < 0)
            return xp_err_set(err, XP_EINVAL, "gguf writer: tensor '%s': negative dimension", name);
        t.ne[d] = ne[d];
        if (d > 0 && __builtin_mul_overflow(rows, (uint64_t)ne[d], &rows))
            return xp_err_set(err, XP_EINVAL, "gguf writer: tensor '%s': size overflows", name);
    }
    if (!xp_tensor_type_name(type))
        return xp_err_set(err, XP_EINVAL,
                          "gguf writer: tensor '%s': type %u is not a known "
                          "ggml type",
                          name, type);
    uint64_t row = xp_tensor_row_bytes(type, ne[0]);
    if (!row && ne[0])
        return xp_err_set(err, XP_EINVAL,
                          "gguf writer: tensor '%s': type %u with row length "
                          "%lld is not a whole number of blocks",
                          name, type, (long long)ne[0]);
    if (__builtin_mul_overflow(row, rows, &t.nbytes))
        return xp_err_set(err, XP_EINVAL, "gguf writer: tensor '%s': size overflows", name);
    if (w->n_t == w->cap_t) {
        size_t cap = w->cap_t ? 2 * w->cap_t : 64;
        wtensor *p = xp_realloc_array(w->t, cap, sizeof *p);
        if (!p)
            return xp_err_set(err, XP_ENOMEM, "gguf writer: out of memory");
        w->t = p;
        w->cap_t = cap;
    }
    if (!(t.name = xp_strdup(name)))
        return xp_err_set(err, XP_ENOMEM, "gguf writer: out of memory");
    w->t[w->n_t++] = t;
    return XP_OK;
}

int xp_gguf_writer_copy_from(xp_gguf_writer *w, const xp_gguf *g, xp_err *err)
{
    int rc = xp_gguf_writer_set_version(w, g->version);
    for (size_t i = 0; i < g->n_kv && !rc; i++)
        rc = xp_gguf_writer_set(w, g->kv[i].key, &g->kv[i].value, err);
    for (size_t i = 0; i < g->n_tensors && !rc; i++) {
        const xp_gguf_tensor *t = &g->tensors[i];
        rc = xp_gguf_writer_add_tensor(w, t->name, t->n_dims, t->ne, t->type,
                                       t->nbytes ? (const void *)t->data : (const void *)"", NULL,
                                       NULL, err);
    }
    return rc;
}

void xp_gguf_writer_set_progress(xp_gguf_writer *w, xp_progress_fn fn, void *ctx)
{
    w->progress = fn;
    w->progress_ctx = ctx;
}

/* 32 when general.alignment is absent; 0 when it is not a uint32 power of two of at
 * most XP_GGUF_MAX_ALIGNMENT, a file the reader would refuse. */
static uint64_t writer_alignment(xp_gguf_writer *w)
{
    wkv *kv = find_kv(w, "general.alignment");
    uint32_t type, a;
    if (!kv)
        return 32;
    if (kv->bytes.n != 8)
        return 0;
    memcpy(&type, kv->bytes.p, 4);
    memcpy(&a, kv->bytes.p + 4, 4);
    return type == XP_GGUF_UINT32 && a && !(a & (a - 1)) && a <= XP_GGUF_MAX_ALIGNMENT ? a : 0;
}

static int write_zeros(int fd, uint64_t n)
{
    static const uint8_t zeros[64];
    while (n) {
        size_t k = n < sizeof zeros ? (size_t)n : sizeof zeros;
        if (xp_write_all(fd, zeros, k) != 0)
            return -1;
        n -= k;
    }
    return 0;
}

static int write_tensor_data(int fd, wtensor *t, uint8_t *chunk, size_t chunk_size,
                             const char *path, xp_err *err)
{
    if (t->data)
        return xp_write_all(fd, t->data, t->nbytes) == 0
                   ? XP_OK
                   : xp_err_set(err, XP_EIO, "%s: write failed: %s", path, strerror(errno));
    xp_gguf_tensor view = {.name = t->name,
                           .n_dims = t->n_dims,
                           .type = t->type,
                           .offset = t->offset,
                           .nbytes = t->nbytes};
    memcpy(view.ne, t->ne, sizeof view.ne);
    for (uint64_t off = 0; off < t->nbytes;) {
        size_t n = t->nbytes - off < chunk_size ? (size_t)(t->nbytes - off) : chunk_size;
        int rc = t->fill(t->fill_ctx, &view, off, chunk, n, err);
        if (rc)
            return rc;
        if (xp_write_all(fd, chunk, n) != 0)
            return xp_err_set(err, XP_EIO, "%s: write failed: %s", path, strerror(errno));
        off += n;
    }
    return XP_OK;
}

int xp_gguf_writer_write(xp_gguf_writer *w, const char *path, xp_err *err)
{
    uint64_t align = writer_alignment(w);
    if (!align)
        return xp_err_set(err, XP_EINVAL,
                          "%s: general.alignment must be a uint32 power of two of at most %u",
                          path, XP_GGUF_MAX_ALIGNMENT);
    buf h = {0};
    put(&h, "GGUF", 4);
    put_u32(&h, w->version);
    put_u64(&h, w->n_t);
    put_u64(&h, w->n_kv);
    for (size_t i = 0; i < w->n_kv; i++) {
        put_str(&h, w->kv[i].key, strlen(w->kv[i].key));
        put(&h, w->kv[i].bytes.p, w->kv[i].bytes.n);
    }
    uint64_t off = 0;
    for (size_t i = 0; i < w->n_t; i++) {
        wtensor *t = &w->t[i];
        t->offset = off;
        put_str(&h, t->name, strlen(t->name));
        put_u32(&h, t->n_dims);
        for (uint32_t d = 0; d < t->n_dims; d++)
            put(&h, &t->ne[d], 8);
        put_u32(&h, t->type);
        put_u64(&h, t->offset);
        off += t->nbytes + (align - t->nbytes % align) % align;
    }
    if (h.oom)
        return xp_err_set(err, XP_ENOMEM, "%s: out of memory building the header", path);

    const size_t chunk_size = 8u << 20;
    uint8_t *chunk = malloc(chunk_size);
    if (!chunk) {
        free(h.p);
        return xp_err_set(err, XP_ENOMEM, "%s: out of memory", path);
    }
    char *tmp;
    int fd, rc = xp_atomic_begin(path, &tmp, &fd, err);
    if (rc) {
        free(chunk), free(h.p);
        return rc;
    }
    if (xp_write_all(fd, h.p, h.n) != 0 || write_zeros(fd, (align - h.n % align) % align))
        rc = xp_err_set(err, XP_EIO, "%s: write failed: %s", path, strerror(errno));
    for (size_t i = 0; i < w->n_t && !rc; i++) {
        rc = write_tensor_data(fd, &w->t[i], chunk, chunk_size, path, err);
        if (!rc && write_zeros(fd, (align - w->t[i].nbytes % align) % align))
            rc = xp_err_set(err, XP_EIO, "%s: write failed: %s", path, strerror(errno));
        if (w->progress)
            w->progress(w->progress_ctx, w->t[i].offset + w->t[i].nbytes, off);
    }
    rc = xp_atomic_end(rc, path, tmp, fd, err);
    free(chunk), free(h.p);
    return rc;
}
