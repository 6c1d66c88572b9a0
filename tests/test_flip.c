/* The flip-kind table: for every kind, on random Q1_0 tensors and random flips, the entry's
 * apply changes exactly what the Q1_0 operations (and a byte-level reference built here)
 * change, applying twice restores the bytes, the bits it reports are the Hamming distance
 * it makes, every changed byte lies in the span it reports and in the output row it
 * names, and its names and descriptions are the ones messages and files use. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "xorpatch.h"

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

enum { NE0 = 512, NE1 = 24, PER = NE0 / XP_Q1_0_WEIGHTS, BYTES = NE1 * PER * XP_Q1_0_BYTES };

/* A random flip of a kind, in range of a NE0 x NE1 tensor. */
static xp_flip random_flip(int kind, uint64_t *s)
{
    xp_flip f = {.kind = (uint8_t)kind};
    bool by_row = kind == XP_FLIP_ROW || kind == XP_FLIP_ROW_GROUP;
    f.index = (int64_t)(splitmix(s) % (by_row ? NE1 : NE1 * PER));
    f.bit = (uint8_t)(splitmix(s) % 16);
    f.group = (uint32_t)(splitmix(s) % PER);
    for (int i = 0; i < 16; i++)
        f.mask[i] = (uint8_t)splitmix(s);
    return f;
}

/* What the flip does, byte by byte, written without the library. */
static void reference(uint8_t *t, const xp_flip *f)
{
    uint8_t all[16];
    memset(all, 0xff, sizeof all);
    switch (f->kind) {
    case XP_FLIP_ROW:
        for (int b = 0; b < PER; b++)
            for (int i = 0; i < 16; i++)
                t[(f->index * PER + b) * XP_Q1_0_BYTES + 2 + i] ^= 0xff;
        break;
    case XP_FLIP_SCALE:
        t[f->index * XP_Q1_0_BYTES + f->bit / 8] ^= (uint8_t)(1u << f->bit % 8);
        break;
    default: {
        int64_t b = f->kind == XP_FLIP_ROW_GROUP ? f->index * PER + f->group : f->index;
        const uint8_t *m = f->kind == XP_FLIP_MASK ? f->mask : all;
        for (int i = 0; i < 16; i++)
            t[b * XP_Q1_0_BYTES + 2 + i] ^= m[i];
    }
    }
}

/* The same through the Q1_0 operations, as patches were applied before the table. */
static void q1_0_path(uint8_t *t, const xp_flip *f)
{
    switch (f->kind) {
    case XP_FLIP_ROW: xp_q1_0_flip_row(t, NE0, f->index); break;
    case XP_FLIP_BLOCK: xp_q1_0_flip_block(t, f->index); break;
    case XP_FLIP_SCALE: xp_q1_0_flip_scale_bit(t, f->index, f->bit); break;
    case XP_FLIP_ROW_GROUP: xp_q1_0_flip_block(t, f->index * PER + f->group); break;
    default:
        for (int i = 0; i < 16; i++)
            t[f->index * XP_Q1_0_BYTES + 2 + i] ^= f->mask[i];
    }
}

static uint64_t hamming(const uint8_t *a, const uint8_t *b)
{
    uint64_t n = 0;
    for (int i = 0; i < BYTES; i++)
        n += (uint64_t)__builtin_popcount((unsigned)(a[i] ^ b[i]));
    return n;
}

Test(flip, every_kind_agrees_with_the_q1_0_operations_and_undoes_itself)
{
    static uint8_t base[BYTES], t[BYTES], want[BYTES], old[BYTES];
    uint64_t s = 17;
    for (int i = 0; i < BYTES; i++)
        base[i] = (uint8_t)splitmix(&s);
    for (int kind = 0; kind < XP_N_FLIP_KINDS; kind++) {
        const xp_flip_kind_info *k = xp_flip_kind_of(kind);
        cr_assert(k, "kind %d", kind);
        for (int trial = 0; trial < 200; trial++) {
            xp_flip f = random_flip(kind, &s);
            memcpy(t, base, BYTES);
            memcpy(want, base, BYTES);
            memcpy(old, base, BYTES);
            k->apply(t, NE0, &f);
            reference(want, &f);
            q1_0_path(old, &f);
            cr_assert_arr_eq(t, want, BYTES, "%s %lld: not the reference", k->name,
                             (long long)f.index);
            cr_assert_arr_eq(t, old, BYTES, "%s %lld: not the Q1_0 operations", k->name,
                             (long long)f.index);
            uint64_t bits = 0;
            cr_assert(k->bits(&f, NE0, &bits));
            cr_assert_eq(bits, hamming(t, base), "%s: bits", k->name);
            uint64_t off, len;
            k->span(&f, NE0, &off, &len);
            int64_t row = k->row(&f, NE0);
            cr_assert(row >= 0 && row < NE1, "%s: row %lld", k->name, (long long)row);
            for (uint64_t i = 0; i < BYTES; i++)
                if (t[i] != base[i]) {
                    cr_assert(i >= off && i < off + len, "%s: byte %llu outside its span", k->name,
                              (unsigned long long)i);
                    cr_assert_eq(i / (PER * XP_Q1_0_BYTES), (uint64_t)row,
                                 "%s: byte %llu outside row %lld", k->name, (unsigned long long)i,
                                 (long long)row);
                }
            cr_assert(off + len <= BYTES, "%s: span past the tensor", k->name);
            k->apply(t, NE0, &f);
            cr_assert_arr_eq(t, base, BYTES, "%s %lld: applied twice, the bytes differ", k->name,
                             (long long)f.index);
        }
    }
}

Test(flip, names_descriptions_and_unknown_kinds)
{
    static const struct {
        int kind;
        const char *name, *key, *description;
        bool by_row;
    } want[] = {
        {XP_FLIP_ROW, "row", "rows", "row 17", true},
        {XP_FLIP_BLOCK, "block", "blocks", "block 17", false},
        {XP_FLIP_SCALE, "scale bit", "scale_bits", "scale bit 9 of block 17", false},
        {XP_FLIP_MASK, "mask", "masks", "mask 17", false},
        {XP_FLIP_ROW_GROUP, "row group", "row_groups", "row 17 group 3", true},
    };
    cr_assert_eq(sizeof want / sizeof *want, XP_N_FLIP_KINDS);
    for (size_t i = 0; i < XP_N_FLIP_KINDS; i++) {
        const xp_flip_kind_info *k = xp_flip_kind_of(want[i].kind);
        xp_flip f = {.kind = (uint8_t)want[i].kind, .index = 17, .bit = 9, .group = 3};
        char d[64];
        k->describe(&f, d, sizeof d);
        cr_expect_str_eq(k->name, want[i].name);
        cr_expect_str_eq(k->key, want[i].key);
        cr_expect_str_eq(d, want[i].description);
        cr_expect_eq(k->by_row, want[i].by_row, "%s", k->name);
    }
    cr_expect_null(xp_flip_kind_of(-1));
    cr_expect_null(xp_flip_kind_of(XP_N_FLIP_KINDS));
    /* a row's bits need the row length */
    uint64_t bits = 5;
    xp_flip row = {.kind = XP_FLIP_ROW, .index = 1};
    cr_expect_not(xp_flip_kind_of(XP_FLIP_ROW)->bits(&row, 0, &bits));
}

Test(flip, patch_stats_count_by_kind)
{
    xp_patch *p;
    xp_err err = {0};
    cr_assert_eq(xp_patch_new(&p, &err), XP_OK);
    uint8_t mask[16] = {0x0f, 0, 0, 0x01};
    cr_assert_eq(xp_patch_add_row(p, "blk.1.ffn_up.weight", 3, &err), XP_OK);
    cr_assert_eq(xp_patch_add_block(p, "blk.1.ffn_up.weight", 40, &err), XP_OK);
    cr_assert_eq(xp_patch_add_scale_bit(p, "blk.1.ffn_up.weight", 41, 5, &err), XP_OK);
    cr_assert_eq(xp_patch_add_mask(p, "blk.1.ffn_up.weight", 42, mask, &err), XP_OK);
    xp_flip g = {.kind = XP_FLIP_ROW_GROUP, .index = 7, .group = 1};
    cr_assert_eq(xp_patch_add(p, "blk.1.ffn_up.weight", &g, &err), XP_OK);
    cr_assert_eq(xp_patch_normalize(p, &err), XP_OK, "%s", err.msg);
    xp_patch_stats s;
    xp_patch_total_stats(p, &s);
    for (int k = 0; k < XP_N_FLIP_KINDS; k++)
        cr_expect_eq(s.by_kind[k], 1, "%s", xp_flip_kind_of(k)->name);
    cr_expect_eq(s.rows, 1);
    cr_expect_eq(s.row_groups, 1);
    cr_expect_eq(s.flips, 5);
    cr_expect_not(s.bits_known); /* the row's length is unknown */
    xp_shape shape;
    cr_assert_eq(xp_shape_preset("tiny", &shape, &err), XP_OK);
    cr_assert_eq(xp_patch_bind_shape(p, &shape, &err), XP_OK, "%s", err.msg);
    xp_patch_total_stats(p, &s);
    cr_expect(s.bits_known);
    /* the row group became a block: 256 + 128 + 1 + 5 + 128 */
    cr_expect_eq(s.bits, 256 + 128 + 1 + 5 + 128);
    cr_expect_eq(s.row_groups, 0);
    cr_expect_eq(s.blocks, 2);
    xp_patch_free(p);
}
