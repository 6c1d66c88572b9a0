/* Checked allocation: sizes are multiplied with overflow checks and a failure returns
 * NULL for the caller to turn into XP_ENOMEM, never an abort. */
#ifndef XP_CORE_ALLOC_H
#define XP_CORE_ALLOC_H
#include <stddef.h>
#include <stdlib.h>

/* n * size bytes, zeroed; NULL on overflow or exhaustion. */
static inline void *xp_calloc(size_t n, size_t size)
{
    if (n == 0 || size == 0)
        return calloc(1, 1);
    return calloc(n, size);
}

/* realloc of n * size bytes; NULL on overflow (old block kept) or exhaustion. */
static inline void *xp_realloc_array(void *p, size_t n, size_t size)
{
    size_t total;
    if (__builtin_mul_overflow(n, size, &total))
        return NULL;
    return realloc(p, total ? total : 1);
}

/* malloc'd copy of n bytes plus a NUL. */
char *xp_strndup(const char *s, size_t n);
char *xp_strdup(const char *s);
#endif
