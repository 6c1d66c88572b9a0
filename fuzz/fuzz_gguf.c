/* libFuzzer harness for the GGUF reader and writer. Any input must either be refused
 * with XP_EFORMAT and a message that names an offset, or parse into a file whose every
 * key and tensor can be looked up and read in full, that the writer can copy and write,
 * whose written copy reads back with the same keys, values, shapes and bytes, and whose
 * re-written copy is byte-identical to the first (the writer's output is a fixed point).
 * Any other outcome aborts, so libFuzzer records the input. Written files go to
 * /dev/shm (or $TMPDIR) because the writer fsyncs, which a disk would make slow. */
#include "xorpatch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CHECK(cond)                                                                     \
    do {                                                                                \
        if (!(cond)) {                                                                  \
            fprintf(stderr, "fuzz_gguf: %s:%d: check failed: %s\n", __FILE__, __LINE__, \
                    #cond);                                                             \
            abort();                                                                    \
        }                                                                               \
    } while (0)

/* Keeps reads of the file's bytes from being optimised away, so ASan sees them. */
static volatile uint8_t sink;

static size_t elem_size(uint32_t t)
{
    static const size_t sizes[XP_GGUF_NTYPES] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    return t < XP_GGUF_NTYPES ? sizes[t] : 0;
}

static void touch(const uint8_t *p, uint64_t n)
{
    uint8_t acc = 0;
    for (uint64_t i = 0; i < n; i++)
        acc ^= p[i];
    sink ^= acc;
}

/* Reads every byte a value points at, through its items for arrays of strings/arrays. */
static void walk_value(const xp_gguf_value *v)
{
    CHECK(v->type < XP_GGUF_NTYPES);
    if (v->type == XP_GGUF_STRING) {
        touch(v->data, v->n);
    } else if (v->type != XP_GGUF_ARRAY) {
        touch(v->data, elem_size(v->type));
    } else if (elem_size(v->elem_type)) {
        CHECK(!v->items);
        touch(v->data, v->n * elem_size(v->elem_type));
    } else {
        CHECK(v->n == 0 || v->items);
        for (uint64_t i = 0; i < v->n; i++) {
            CHECK(v->items[i].type == v->elem_type);
            walk_value(&v->items[i]);
        }
    }
}

static int same_value(const xp_gguf_value *a, const xp_gguf_value *b)
{
    if (a->type != b->type || a->n != b->n)
        return 0;
    if (a->type == XP_GGUF_STRING)
        return memcmp(a->data, b->data, a->n) == 0;
    if (a->type != XP_GGUF_ARRAY)
        return memcmp(a->data, b->data, elem_size(a->type)) == 0;
    if (a->elem_type != b->elem_type)
        return 0;
    if (elem_size(a->elem_type))
        return memcmp(a->data, b->data, a->n * elem_size(a->elem_type)) == 0;
    for (uint64_t i = 0; i < a->n; i++)
        if (!same_value(&a->items[i], &b->items[i]))
            return 0;
    return 1;
}

/* Every typed look-up either succeeds or says the type is wrong; the key exists. */
static void walk_keys(const xp_gguf *g)
{
    for (size_t i = 0; i < g->n_kv; i++) {
        const xp_gguf_kv *kv = &g->kv[i];
        CHECK(xp_gguf_get(g, kv->key) == &kv->value);
        walk_value(&kv->value);
        xp_err err;
        uint64_t u64;
        int64_t i64;
        uint32_t u32;
        float f32;
        bool b;
        char *s;
        const xp_gguf_value *items;
        uint64_t n;
        int rc[] = {
            xp_gguf_get_u64(g, kv->key, &u64, &err), xp_gguf_get_i64(g, kv->key, &i64, &err),
            xp_gguf_get_u32(g, kv->key, &u32, &err), xp_gguf_get_f32(g, kv->key, &f32, &err),
            xp_gguf_get_bool(g, kv->key, &b, &err),  xp_gguf_get_str(g, kv->key, &s, &err),
            xp_gguf_get_str_array(g, kv->key, &items, &n, &err),
        };
        for (size_t k = 0; k < sizeof rc / sizeof rc[0]; k++)
            CHECK(rc[k] == XP_OK || rc[k] == XP_ETYPE);
        if (rc[5] == XP_OK) {
            CHECK(strlen(s) <= kv->value.n);
            free(s);
        }
        if (rc[6] == XP_OK)
            for (uint64_t k = 0; k < n; k++)
                touch(items[k].data, items[k].n);
    }
}

/* Every tensor is found by name, lies inside the file, has the size its shape says,
 * and (for Q1_0) a row flip applied twice restores its bytes. */
static void walk_tensors(const xp_gguf *g)
{
    for (size_t i = 0; i < g->n_tensors; i++) {
        const xp_gguf_tensor *t = &g->tensors[i];
        CHECK(xp_gguf_tensor_by_name(g, t->name) == t);
        CHECK(t->data >= g->map && t->data + t->nbytes <= g->map + g->map_len);
        CHECK(t->offset % g->alignment == 0);
        touch(t->data, t->nbytes);
        uint64_t row = xp_tensor_row_bytes(t->type, t->ne[0]);
        CHECK(row || t->ne[0] == 0);
        if (t->ne[0])
            CHECK(t->nbytes == row * (uint64_t)(t->ne[1] * t->ne[2] * t->ne[3]));
        if (t->type == XP_TYPE_Q1_0 && t->nbytes) {
            uint8_t *copy = malloc(row);
            CHECK(copy);
            memcpy(copy, t->data, row);
            xp_q1_0_flip_row(t->data, t->ne[0], 0);
            CHECK(memcmp(copy, t->data, row) != 0);
            xp_q1_0_flip_row(t->data, t->ne[0], 0);
            CHECK(memcmp(copy, t->data, row) == 0);
            free(copy);
        }
    }
}

static void same_file(const xp_gguf *a, const xp_gguf *b)
{
    CHECK(a->version == b->version && a->alignment == b->alignment);
    CHECK(a->n_kv == b->n_kv && a->n_tensors == b->n_tensors);
    for (size_t i = 0; i < a->n_kv; i++) {
        CHECK(strcmp(a->kv[i].key, b->kv[i].key) == 0);
        CHECK(same_value(&a->kv[i].value, &b->kv[i].value));
    }
    for (size_t i = 0; i < a->n_tensors; i++) {
        const xp_gguf_tensor *x = &a->tensors[i], *y = &b->tensors[i];
        CHECK(strcmp(x->name, y->name) == 0 && x->type == y->type);
        CHECK(x->n_dims == y->n_dims && memcmp(x->ne, y->ne, sizeof x->ne) == 0);
        CHECK(x->nbytes == y->nbytes && memcmp(x->data, y->data, x->nbytes) == 0);
    }
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    CHECK(f);
    CHECK(fseek(f, 0, SEEK_END) == 0);
    long n = ftell(f);
    CHECK(n >= 0);
    rewind(f);
    char *p = malloc((size_t)n + 1);
    CHECK(p && fread(p, 1, (size_t)n, f) == (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return p;
}

static void write_copy(const xp_gguf *g, const char *path)
{
    xp_err err;
    xp_gguf_writer *w = xp_gguf_writer_new();
    CHECK(w);
    int rc = xp_gguf_writer_copy_from(w, g, &err);
    if (rc)
        fprintf(stderr, "fuzz_gguf: copy_from: %s\n", err.msg);
    CHECK(rc == XP_OK);
    rc = xp_gguf_writer_write(w, path, &err);
    if (rc)
        fprintf(stderr, "fuzz_gguf: write: %s\n", err.msg);
    CHECK(rc == XP_OK);
    xp_gguf_writer_free(w);
}

static void rewrite(const xp_gguf *g)
{
    static char first[512], second[512];
    if (!first[0]) {
        struct stat st;
        const char *dir = stat("/dev/shm", &st) == 0 ? "/dev/shm" : getenv("TMPDIR");
        snprintf(first, sizeof first, "%s/fuzz_gguf-%d-a.gguf", dir ? dir : "/tmp",
                 (int)getpid());
        snprintf(second, sizeof second, "%s/fuzz_gguf-%d-b.gguf", dir ? dir : "/tmp",
                 (int)getpid());
    }
    xp_err err;
    write_copy(g, first);
    xp_gguf *back;
    int rc = xp_gguf_open(&back, first, &err);
    if (rc)
        fprintf(stderr, "fuzz_gguf: re-read: %s\n", err.msg);
    CHECK(rc == XP_OK);
    same_file(g, back);
    write_copy(back, second);
    xp_gguf_close(back);
    size_t n1, n2;
    char *b1 = slurp(first, &n1), *b2 = slurp(second, &n2);
    CHECK(n1 == n2 && memcmp(b1, b2, n1) == 0);
    free(b1);
    free(b2);
    unlink(first);
    unlink(second);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    xp_gguf *g;
    xp_err err = {0};
    int rc = xp_gguf_open_memory(&g, data, size, &err);
    if (rc) {
        CHECK(rc == XP_EFORMAT && err.code == rc && !g);
        CHECK(strstr(err.msg, "offset") != NULL);
        return 0;
    }
    walk_keys(g);
    walk_tensors(g);
    rewrite(g);
    xp_gguf_close(g);
    return 0;
}
