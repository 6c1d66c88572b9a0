/* Open-addressing string map with linear probing; the table doubles at 50% load. */
#include "core/strmap.h"

#include <stdlib.h>
#include <string.h>

#include "xorpatch/core.h"

uint64_t xp_hash_bytes(const void *p, size_t len)
{
    const unsigned char *s = p;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < len; i++) {
        h ^= s[i];
        h *= 0x100000001b3ull;
    }
    return h ^ (h >> 29);
}

int xp_strmap_init(xp_strmap *m, size_t n)
{
    size_t cap = 16;
    while (cap < 2 * n + 2)
        cap *= 2;
    m->slots = calloc(cap, sizeof *m->slots);
    m->cap = m->slots ? cap : 0;
    m->n = 0;
    return m->slots ? XP_OK : XP_ENOMEM;
}

void xp_strmap_free(xp_strmap *m)
{
    free(m->slots);
    m->slots = NULL;
    m->cap = m->n = 0;
}

static xp_strmap_slot *find_slot(xp_strmap_slot *slots, size_t cap, const char *key,
                                 size_t len)
{
    size_t i = xp_hash_bytes(key, len) & (cap - 1);
    while (slots[i].key &&
           !(slots[i].len == len && memcmp(slots[i].key, key, len) == 0))
        i = (i + 1) & (cap - 1);
    return &slots[i];
}

static int grow(xp_strmap *m)
{
    size_t cap = m->cap * 2;
    xp_strmap_slot *slots = calloc(cap, sizeof *slots);
    if (!slots)
        return XP_ENOMEM;
    for (size_t i = 0; i < m->cap; i++)
        if (m->slots[i].key)
            *find_slot(slots, cap, m->slots[i].key, m->slots[i].len) = m->slots[i];
    free(m->slots);
    m->slots = slots;
    m->cap = cap;
    return XP_OK;
}

int xp_strmap_put(xp_strmap *m, const char *key, size_t len, int64_t value, int64_t *old)
{
    if (2 * (m->n + 1) > m->cap && grow(m) != XP_OK)
        return XP_ENOMEM;
    xp_strmap_slot *s = find_slot(m->slots, m->cap, key, len);
    if (s->key) {
        if (old)
            *old = s->value;
        return 0;
    }
    s->key = key;
    s->len = len;
    s->value = value;
    m->n++;
    return 1;
}

int64_t xp_strmap_get(const xp_strmap *m, const char *key, size_t len)
{
    if (!m->cap)
        return -1;
    const xp_strmap_slot *s = find_slot(m->slots, m->cap, key, len);
    return s->key ? s->value : -1;
}
