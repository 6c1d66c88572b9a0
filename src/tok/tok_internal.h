/* Internal pieces of the tokenizer layer shared by its files: GPT-2's byte-to-unicode
 * alphabet with the UTF-8 steps it needs, and the merge table with the BPE merge loop
 * (the text clean-up every input goes through before BPE is public, in xorpatch/tok.h).
 * Nothing here is part of the public API; tests may include it. */
#ifndef XP_TOK_INTERNAL_H
#define XP_TOK_INTERNAL_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "xorpatch/tok.h"

/* ---- text ---------------------------------------------------------------------- */

/* GPT-2's alphabet: byte b is written as the code point xp_tok_byte_cp(b) (printable
 * bytes as themselves, the rest moved to U+0100 and up) so BPE never sees whitespace or
 * control characters. */
uint32_t xp_tok_byte_cp(uint8_t b);
/* The byte a code point of that alphabet stands for, or -1. */
int xp_tok_cp_byte(uint32_t cp);
/* UTF-8 of code point cp (valid, < 0x110000) into out[4]; returns the byte count. */
size_t xp_tok_utf8_put(uint32_t cp, char *out);
/* Decodes one code point of valid UTF-8 at s (n > 0 bytes left); returns its length. */
size_t xp_tok_utf8_get(const char *s, size_t n, uint32_t *cp);

/* ---- BPE ----------------------------------------------------------------------- */

/* Merge table: (left id, right id) → rank and merged id, open addressing on the
 * 64-bit pair key. */
typedef struct xp_bpe_pair {
    uint64_t key; /* UINT64_MAX = empty */
    int32_t rank;
    int32_t merged;
} xp_bpe_pair;

typedef struct xp_bpe_table {
    xp_bpe_pair *slots;
    size_t cap; /* power of two */
    size_t n;
} xp_bpe_table;

int xp_bpe_table_init(xp_bpe_table *t, size_t n);
void xp_bpe_table_free(xp_bpe_table *t);
/* Adds a merge, or gives a pair listed twice its later rank and result, as the
 * JavaScript reference's rank map does. Returns 1 when new, 0 when replaced, or
 * XP_ENOMEM. */
int xp_bpe_table_put(xp_bpe_table *t, int32_t left, int32_t right, int32_t rank, int32_t merged);
const xp_bpe_pair *xp_bpe_table_get(const xp_bpe_table *t, int32_t left, int32_t right);

/* Scratch space for one caller (one xp_tokenize call); grows as needed. */
typedef struct xp_bpe_work {
    int32_t *ids, *prev, *next;
    size_t cap;
    struct xp_bpe_cand *heap;
    size_t heap_n, heap_cap;
} xp_bpe_work;

void xp_bpe_work_free(xp_bpe_work *w);
/* Room for n symbols in w->ids; 0 or XP_ENOMEM. */
int xp_bpe_work_reserve(xp_bpe_work *w, size_t n);
/* Merges the n symbols the caller put in w->ids by rank, lowest rank first and
 * leftmost first among equals, and writes the resulting ids over w->ids; returns their
 * count, or XP_ENOMEM. O(n log n). */
long xp_bpe_merge(const xp_bpe_table *t, xp_bpe_work *w, size_t n);
#endif
