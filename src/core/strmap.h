/* A hash map from byte strings to int64 values (open addressing, FNV-1a). Keys are
 * borrowed, not copied: they must outlive the map. Used for tensor and key names in
 * GGUF files and for token and merge look-ups in the tokenizer. */
#ifndef XP_CORE_STRMAP_H
#define XP_CORE_STRMAP_H
#include <stddef.h>
#include <stdint.h>

typedef struct xp_strmap_slot {
    const char *key;
    size_t len;
    int64_t value;
} xp_strmap_slot;

typedef struct xp_strmap {
    xp_strmap_slot *slots;
    size_t cap; /* power of two */
    size_t n;
} xp_strmap;

/* Room for n keys without growing; returns 0 or XP_ENOMEM. */
int xp_strmap_init(xp_strmap *m, size_t n);
void xp_strmap_free(xp_strmap *m);
/* Inserts key → value. Returns 1 when the key was new, 0 when it existed (its value is
 * left unchanged and written to *old when old is not NULL), or XP_ENOMEM. */
int xp_strmap_put(xp_strmap *m, const char *key, size_t len, int64_t value, int64_t *old);
/* The value of key, or -1 when absent. */
int64_t xp_strmap_get(const xp_strmap *m, const char *key, size_t len);
uint64_t xp_hash_bytes(const void *p, size_t len);
#endif
