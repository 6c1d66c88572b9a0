/* Byte-pair merging. Symbols are token ids in a doubly linked list over an array;
 * every adjacent pair that has a merge sits in a 4-ary min-heap keyed by (rank,
 * position), so a pre-token of n bytes costs O(n log n) however long it is (100 KB of
 * spaces, a run of letters). Heap entries are never removed when a neighbour merges:
 * an entry is checked against the current list when it comes out, which is what the
 * reference's "deleted" flags do. Ties between equal ranks go to the leftmost pair, as
 * the reference's fractional position bias makes them. */
#include <stdlib.h>

#include "core/alloc.h"
#include "tok/tok_internal.h"

/* A candidate merge: the pair starting at symbol `pos` had merge rank `rank` when it
 * was pushed. 8 bytes, because a long pre-token pushes about three per symbol. */
struct xp_bpe_cand {
    int32_t rank;
    int32_t pos; /* index of the left symbol; a merged symbol keeps its left's index */
};

#define EMPTY_KEY UINT64_MAX

static uint64_t pair_key(int32_t left, int32_t right)
{
    return ((uint64_t)(uint32_t)left << 32) | (uint32_t)right;
}

static size_t pair_slot(const xp_bpe_table *t, uint64_t key)
{
    size_t i = (size_t)((key * 0x9E3779B97F4A7C15ull) >> 20) & (t->cap - 1);
    while (t->slots[i].key != EMPTY_KEY && t->slots[i].key != key)
        i = (i + 1) & (t->cap - 1);
    return i;
}

int xp_bpe_table_init(xp_bpe_table *t, size_t n)
{
    size_t cap = 16;
    while (cap < 2 * n + 2)
        cap *= 2;
    t->slots = xp_calloc(cap, sizeof *t->slots);
    t->cap = t->slots ? cap : 0;
    t->n = 0;
    if (!t->slots)
        return XP_ENOMEM;
    for (size_t i = 0; i < cap; i++)
        t->slots[i].key = EMPTY_KEY;
    return XP_OK;
}

void xp_bpe_table_free(xp_bpe_table *t)
{
    free(t->slots);
    t->slots = NULL;
    t->cap = t->n = 0;
}

static int table_grow(xp_bpe_table *t)
{
    xp_bpe_table bigger;
    if (xp_bpe_table_init(&bigger, t->cap) != XP_OK)
        return XP_ENOMEM;
    for (size_t i = 0; i < t->cap; i++)
        if (t->slots[i].key != EMPTY_KEY)
            bigger.slots[pair_slot(&bigger, t->slots[i].key)] = t->slots[i];
    bigger.n = t->n;
    free(t->slots);
    *t = bigger;
    return XP_OK;
}

int xp_bpe_table_put(xp_bpe_table *t, int32_t left, int32_t right, int32_t rank, int32_t merged)
{
    if (2 * (t->n + 1) > t->cap && table_grow(t) != XP_OK)
        return XP_ENOMEM;
    uint64_t key = pair_key(left, right);
    xp_bpe_pair *s = &t->slots[pair_slot(t, key)];
    int fresh = s->key == EMPTY_KEY;
    s->key = key;
    s->rank = rank;
    s->merged = merged;
    t->n += (size_t)fresh;
    return fresh;
}

const xp_bpe_pair *xp_bpe_table_get(const xp_bpe_table *t, int32_t left, int32_t right)
{
    if (!t->cap)
        return NULL;
    const xp_bpe_pair *s = &t->slots[pair_slot(t, pair_key(left, right))];
    return s->key == EMPTY_KEY ? NULL : s;
}

void xp_bpe_work_free(xp_bpe_work *w)
{
    free(w->ids);
    free(w->prev);
    free(w->next);
    free(w->heap);
    *w = (xp_bpe_work){0};
}

int xp_bpe_work_reserve(xp_bpe_work *w, size_t n)
{
    if (n <= w->cap)
        return XP_OK;
    if (n > INT32_MAX)
        return XP_ENOMEM;
    size_t cap = w->cap ? w->cap : 64;
    while (cap < n)
        cap *= 2;
    int32_t *ids = xp_realloc_array(w->ids, cap, sizeof *ids);
    if (!ids)
        return XP_ENOMEM;
    w->ids = ids;
    int32_t *prev = xp_realloc_array(w->prev, cap, sizeof *prev);
    if (!prev)
        return XP_ENOMEM;
    w->prev = prev;
    int32_t *next = xp_realloc_array(w->next, cap, sizeof *next);
    if (!next)
        return XP_ENOMEM;
    w->next = next;
    w->cap = cap;
    return XP_OK;
}

static int cand_less(struct xp_bpe_cand a, struct xp_bpe_cand b)
{
    return a.rank < b.rank || (a.rank == b.rank && a.pos < b.pos);
}

/* A 4-ary min-heap: half the levels of a binary one, and the four children of a node
 * share a cache line, which is what long pre-tokens are bound by. */
static void sift_down(struct xp_bpe_cand *h, size_t n, size_t i, struct xp_bpe_cand c)
{
    for (;;) {
        size_t first = 4 * i + 1;
        if (first >= n)
            break;
        size_t best = first, end = first + 4 < n ? first + 4 : n;
        for (size_t k = first + 1; k < end; k++)
            if (cand_less(h[k], h[best]))
                best = k;
        if (!cand_less(h[best], c))
            break;
        h[i] = h[best];
        i = best;
    }
    h[i] = c;
}

static int heap_reserve(xp_bpe_work *w, size_t n)
{
    if (n <= w->heap_cap)
        return XP_OK;
    size_t cap = w->heap_cap ? w->heap_cap : 64;
    while (cap < n)
        cap *= 2;
    struct xp_bpe_cand *h = xp_realloc_array(w->heap, cap, sizeof *h);
    if (!h)
        return XP_ENOMEM;
    w->heap = h;
    w->heap_cap = cap;
    return XP_OK;
}

static int heap_push(xp_bpe_work *w, struct xp_bpe_cand c)
{
    if (heap_reserve(w, w->heap_n + 1))
        return XP_ENOMEM;
    size_t i = w->heap_n++;
    while (i > 0) {
        size_t up = (i - 1) / 4;
        if (!cand_less(c, w->heap[up]))
            break;
        w->heap[i] = w->heap[up];
        i = up;
    }
    w->heap[i] = c;
    return XP_OK;
}

static struct xp_bpe_cand heap_pop(xp_bpe_work *w)
{
    struct xp_bpe_cand top = w->heap[0];
    w->heap_n--;
    if (w->heap_n)
        sift_down(w->heap, w->heap_n, 0, w->heap[w->heap_n]);
    return top;
}

/* The merge of the pair starting at symbol i, or NULL. */
static const xp_bpe_pair *pair_at(const xp_bpe_table *t, const xp_bpe_work *w, int32_t i)
{
    if (i < 0 || w->next[i] < 0)
        return NULL;
    return xp_bpe_table_get(t, w->ids[i], w->ids[w->next[i]]);
}

static int consider(const xp_bpe_table *t, xp_bpe_work *w, int32_t i)
{
    const xp_bpe_pair *p = pair_at(t, w, i);
    return p ? heap_push(w, (struct xp_bpe_cand){p->rank, i}) : XP_OK;
}

long xp_bpe_merge(const xp_bpe_table *t, xp_bpe_work *w, size_t n)
{
    if (n < 2)
        return (long)n;
    for (size_t i = 0; i < n; i++) {
        w->prev[i] = (int32_t)i - 1;
        w->next[i] = i + 1 < n ? (int32_t)i + 1 : -1;
    }
    if (heap_reserve(w, n))
        return XP_ENOMEM;
    w->heap_n = 0;
    for (size_t i = 0; i + 1 < n; i++) {
        const xp_bpe_pair *p = pair_at(t, w, (int32_t)i);
        if (p)
            w->heap[w->heap_n++] = (struct xp_bpe_cand){p->rank, (int32_t)i};
    }
    /* Bottom-up heap construction: O(n) for the n - 1 first candidates. */
    for (size_t i = w->heap_n > 1 ? (w->heap_n - 2) / 4 + 1 : 0; i-- > 0;)
        sift_down(w->heap, w->heap_n, i, w->heap[i]);

    while (w->heap_n) {
        struct xp_bpe_cand c = heap_pop(w);
        int32_t i = c.pos;
        /* Stale entries are skipped: the left symbol was swallowed by its own left
         * neighbour (id -1), or the pair there changed and so has another rank (a rank
         * names one pair, so an equal rank means this very merge is still due). */
        const xp_bpe_pair *p = w->ids[i] < 0 ? NULL : pair_at(t, w, i);
        if (!p || p->rank != c.rank)
            continue;
        int32_t j = w->next[i];
        w->ids[i] = p->merged;
        w->ids[j] = -1;
        w->next[i] = w->next[j];
        if (w->next[j] >= 0)
            w->prev[w->next[j]] = i;
        if (consider(t, w, w->prev[i]) != XP_OK || consider(t, w, i) != XP_OK)
            return XP_ENOMEM;
    }

    size_t m = 0;
    for (int32_t i = 0; i >= 0; i = w->next[i])
        w->ids[m++] = w->ids[i];
    return (long)m;
}
