/* The flip kinds: one table entry per kind (enum xp_flip_kind) says what it is called,
 * how it changes the bytes of a Q1_0 tensor, how many bits, which bytes and which output
 * row it changes. Applying a patch, planning an in-place file change, counting a patch,
 * describing a flip in a message, and the search's own flips and incremental reruns all
 * ask this table, so they cannot disagree about what a kind does.
 *
 * Adding a kind takes:
 *   - its enum xp_flip_kind value (before XP_N_FLIP_KINDS) and its entry below;
 *   - its codec lines: how the binary format (patch_bin.c) and xorpatch/1 (patch_own.c,
 *     under the entry's key) write and read it, and whether Bankai v1 (patch_bankai.c)
 *     and Neagari v2 (patch_neagari.c) can hold it; where it overlaps another kind's bits,
 *     as rows and blocks do, its rule in the canonical form (class_of in patch.c);
 *   - its tests (tests/test_flip.c: applied twice it restores the bytes, and its entry
 *     agrees with the Q1_0 operations; a round trip through every format that holds it). */
#include <stdio.h>

#include "xorpatch/patch.h"

static int64_t per_row(int64_t ne0) { return ne0 / XP_Q1_0_WEIGHTS; }

/* Every sign bit of an output row. */

static void row_apply(uint8_t *tensor, int64_t ne0, const xp_flip *f)
{
    xp_q1_0_flip_row(tensor, ne0, f->index);
}

static bool row_bits(const xp_flip *f, int64_t ne0, uint64_t *n)
{
    *n = (uint64_t)ne0;
    return ne0 != 0;
}

static void row_span(const xp_flip *f, int64_t ne0, uint64_t *off, uint64_t *len)
{
    *len = (uint64_t)per_row(ne0) * XP_Q1_0_BYTES;
    *off = (uint64_t)f->index * *len;
}

static int64_t row_row(const xp_flip *f, int64_t ne0) { return f->index; }

static void row_describe(const xp_flip *f, char *out, size_t size)
{
    snprintf(out, size, "row %lld", (long long)f->index);
}

/* The 128 sign bits of a block, numbered through the tensor. */

static void block_apply(uint8_t *tensor, int64_t ne0, const xp_flip *f)
{
    xp_q1_0_flip_block(tensor, f->index);
}

static bool block_bits(const xp_flip *f, int64_t ne0, uint64_t *n)
{
    *n = XP_Q1_0_WEIGHTS;
    return true;
}

/* The sign bytes of block b. */
static void signs_span(int64_t b, uint64_t *off, uint64_t *len)
{
    *off = (uint64_t)b * XP_Q1_0_BYTES + 2;
    *len = XP_Q1_0_QS;
}

static void block_span(const xp_flip *f, int64_t ne0, uint64_t *off, uint64_t *len)
{
    signs_span(f->index, off, len);
}

static int64_t block_row(const xp_flip *f, int64_t ne0) { return f->index / per_row(ne0); }

static void block_describe(const xp_flip *f, char *out, size_t size)
{
    snprintf(out, size, "block %lld", (long long)f->index);
}

/* One bit of a block's fp16 scale. */

static void scale_apply(uint8_t *tensor, int64_t ne0, const xp_flip *f)
{
    xp_q1_0_flip_scale_bit(tensor, f->index, f->bit);
}

static bool scale_bits(const xp_flip *f, int64_t ne0, uint64_t *n)
{
    *n = 1;
    return true;
}

static void scale_span(const xp_flip *f, int64_t ne0, uint64_t *off, uint64_t *len)
{
    *off = (uint64_t)f->index * XP_Q1_0_BYTES + f->bit / 8;
    *len = 1;
}

static void scale_describe(const xp_flip *f, char *out, size_t size)
{
    snprintf(out, size, "scale bit %u of block %lld", f->bit, (long long)f->index);
}

/* Any 128-bit mask XORed into a block's sign bytes. */

static void mask_apply(uint8_t *tensor, int64_t ne0, const xp_flip *f)
{
    uint8_t *qs = tensor + f->index * XP_Q1_0_BYTES + 2;
    for (int i = 0; i < XP_Q1_0_QS; i++)
        qs[i] ^= f->mask[i];
}

static bool mask_bits(const xp_flip *f, int64_t ne0, uint64_t *n)
{
    *n = 0;
    for (int i = 0; i < XP_Q1_0_QS; i++)
        *n += (uint64_t)__builtin_popcount(f->mask[i]);
    return true;
}

static void mask_describe(const xp_flip *f, char *out, size_t size)
{
    snprintf(out, size, "mask %lld", (long long)f->index);
}

/* A block named by its row and its place in the row, as Bankai v1 names it (binding
 * turns it into a block flip). */

static int64_t group_block(const xp_flip *f, int64_t ne0)
{
    return f->index * per_row(ne0) + f->group;
}

static void group_apply(uint8_t *tensor, int64_t ne0, const xp_flip *f)
{
    xp_q1_0_flip_block(tensor, group_block(f, ne0));
}

static void group_span(const xp_flip *f, int64_t ne0, uint64_t *off, uint64_t *len)
{
    signs_span(group_block(f, ne0), off, len);
}

static void group_describe(const xp_flip *f, char *out, size_t size)
{
    snprintf(out, size, "row %lld group %u", (long long)f->index, f->group);
}

static const xp_flip_kind_info kinds[XP_N_FLIP_KINDS] = {
    [XP_FLIP_ROW] = {"row", "rows", true, row_apply, row_bits, row_span, row_row, row_describe},
    [XP_FLIP_BLOCK] = {"block", "blocks", false, block_apply, block_bits, block_span, block_row,
                       block_describe},
    [XP_FLIP_SCALE] = {"scale bit", "scale_bits", false, scale_apply, scale_bits, scale_span,
                       block_row, scale_describe},
    [XP_FLIP_MASK] = {"mask", "masks", false, mask_apply, mask_bits, block_span, block_row,
                      mask_describe},
    [XP_FLIP_ROW_GROUP] = {"row group", "row_groups", true, group_apply, block_bits, group_span,
                           row_row, group_describe},
};

const xp_flip_kind_info *xp_flip_kind_of(int kind)
{
    return kind >= 0 && kind < XP_N_FLIP_KINDS ? &kinds[kind] : NULL;
}
