/* String copies for the checked-allocation helpers of alloc.h. */
#include "core/alloc.h"

#include <stdint.h>
#include <string.h>

char *xp_strndup(const char *s, size_t n)
{
    if (n == SIZE_MAX)
        return NULL;
    char *p = malloc(n + 1);
    if (!p)
        return NULL;
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

char *xp_strdup(const char *s) { return xp_strndup(s, strlen(s)); }
