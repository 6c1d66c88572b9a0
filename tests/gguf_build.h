/* A small assembler of raw GGUF bytes for the reader tests. The project's writer only
 * produces valid files, so malformed ones (lying counts, bad types, truncations) are
 * put together here field by field, little-endian, exactly as they would sit on disk.
 * Offsets of interesting fields are read off `gb.n` while building, so a test can
 * assert that the reader's message names the right byte. */
#ifndef XP_TESTS_GGUF_BUILD_H
#define XP_TESTS_GGUF_BUILD_H
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct gb {
    uint8_t *p;
    size_t n, cap;
} gb;

static inline void gb_bytes(gb *b, const void *src, size_t n)
{
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n)
            cap *= 2;
        b->p = realloc(b->p, cap);
        cr_assert(b->p, "gguf_build: out of memory");
        b->cap = cap;
    }
    if (n)
        memcpy(b->p + b->n, src, n);
    b->n += n;
}

static inline void gb_u8(gb *b, uint8_t v) { gb_bytes(b, &v, 1); }
static inline void gb_u32(gb *b, uint32_t v) { gb_bytes(b, &v, 4); }
static inline void gb_u64(gb *b, uint64_t v) { gb_bytes(b, &v, 8); }
static inline void gb_i64(gb *b, int64_t v) { gb_bytes(b, &v, 8); }

/* A GGUF string: u64 length, then the bytes (no NUL). */
static inline void gb_str(gb *b, const char *s)
{
    gb_u64(b, strlen(s));
    gb_bytes(b, s, strlen(s));
}

/* Magic, version, tensor count, key count: 24 bytes. */
static inline void gb_header(gb *b, uint32_t version, uint64_t n_tensors, uint64_t n_kv)
{
    gb_bytes(b, "GGUF", 4);
    gb_u32(b, version);
    gb_u64(b, n_tensors);
    gb_u64(b, n_kv);
}

/* A key and its value type tag; the caller appends the payload. */
static inline void gb_key(gb *b, const char *key, uint32_t type)
{
    gb_str(b, key);
    gb_u32(b, type);
}

static inline void gb_kv_u32(gb *b, const char *key, uint32_t v)
{
    gb_key(b, key, 4 /* uint32 */);
    gb_u32(b, v);
}

/* One tensor description: name, n_dims, ne[0..n_dims-1], type, data offset. */
static inline void gb_tensor(gb *b, const char *name, uint32_t n_dims, const int64_t *ne,
                             uint32_t type, uint64_t offset)
{
    gb_str(b, name);
    gb_u32(b, n_dims);
    for (uint32_t d = 0; d < n_dims; d++)
        gb_i64(b, ne[d]);
    gb_u32(b, type);
    gb_u64(b, offset);
}

/* Zero bytes up to the next multiple of align (the header-to-data padding). */
static inline void gb_pad(gb *b, size_t align)
{
    while (b->n % align)
        gb_u8(b, 0);
}

static inline void gb_zeros(gb *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        gb_u8(b, 0);
}

static inline void gb_free(gb *b)
{
    free(b->p);
    b->p = NULL;
    b->n = b->cap = 0;
}
#endif
