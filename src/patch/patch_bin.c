/* The compact binary patch encoding, for libraries of many patches and for the record a
 * patched GGUF keeps of what was applied. Layout (all integers unsigned LEB128 varints):
 *
 *   "XPATCH\0" 0x01            magic and version
 *   flags                       1 base, 2 name, 4 provenance, 8 shapes
 *   [32 bytes]                  SHA-256 of the unpatched GGUF
 *   [len, bytes]                name
 *   [len, bytes]                provenance: one JSON object
 *   n_tensors, then per tensor in name order:
 *     tag                       0: literal name (len, bytes); 1..7: blk.{layer}.{proj}.weight
 *     [layer]                   with tags 1..7 (tag - 1: the projection's file_order, so
 *                               attn_q is 1 and ffn_down 7)
 *     [ne0 / 128, ne1]          with flag 8; 0, 0 when unknown
 *     n_row n_block n_scale n_mask n_row_group
 *     rows, blocks              ascending, delta coded (first value, then gap - 1)
 *     scale bits                key block * 16 + bit, delta coded
 *     masks                     block delta coded, each followed by its 16 mask bytes
 *     row groups                row gap (0 for the same row), group (gap - 1 in a row)
 *   8 bytes                     first bytes of the SHA-256 of everything before
 *
 * A 93-row patch on Bonsai 8B takes a few bytes per flip (Bankai's format: 12). Decoding
 * checks every field against what remains of the input and names the offset of the
 * first bad one; it never trusts a count. The SHA-256 of the encoding of the canonical
 * flips alone (no optional part) is a patch's identity, the same in every format. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "patch/patch_internal.h"

static const uint8_t MAGIC[8] = {'X', 'P', 'A', 'T', 'C', 'H', 0, 1};
#define TRAILER 8
#define MAX_INDEX XP_PATCH_MAX_INDEX
#define MAX_DIM (INT64_C(1) << 31)
/* The flip kinds version 1 lists per tensor, in enum order: a new kind needs a new version
 * (or a place in this one) before it can be encoded. */
#define KINDS 5
_Static_assert(XP_N_FLIP_KINDS == KINDS, "the binary format lists every flip kind");

/* Unsigned LEB128: the bytes written (at most 10). */
static size_t varint_put(uint8_t *out, uint64_t v)
{
    size_t n = 0;
    do {
        uint8_t b = v & 0x7f;
        v >>= 7;
        out[n++] = (uint8_t)(b | (v ? 0x80 : 0));
    } while (v);
    return n;
}

/* The bytes read, or 0 when the input ends or the value is longer than 63 bits or not in
 * its shortest form. */
static size_t varint_get(const uint8_t *in, size_t len, uint64_t *v)
{
    uint64_t x = 0;
    for (size_t i = 0; i < len && i < 9; i++) {
        x |= (uint64_t)(in[i] & 0x7f) << (7 * i);
        if (!(in[i] & 0x80)) {
            /* a value that fits in 63 bits, written in its shortest form */
            if (i > 0 && in[i] == 0)
                return 0;
            *v = x;
            return i + 1;
        }
    }
    return 0;
}

bool xp_patch_is_binary(const void *buf, size_t len)
{
    return len >= 7 && memcmp(buf, MAGIC, 7) == 0;
}

bool xp_patch_binary_prefix(const void *buf, size_t len)
{
    return len > 0 && memcmp(buf, MAGIC, len < 7 ? len : 7) == 0;
}

/* ---- encoding ------------------------------------------------------------------ */

typedef struct bin_out {
    uint8_t *p;
    size_t n, cap;
    bool oom;
} bin_out;

static void put(bin_out *o, const void *src, size_t n)
{
    if (o->oom)
        return;
    if (o->n + n > o->cap) {
        size_t cap = o->cap ? o->cap : 256;
        while (cap < o->n + n)
            cap *= 2;
        uint8_t *p = realloc(o->p, cap);
        if (!p) {
            o->oom = true;
            return;
        }
        o->p = p, o->cap = cap;
    }
    memcpy(o->p + o->n, src, n);
    o->n += n;
}

static void put_v(bin_out *o, uint64_t v)
{
    uint8_t b[10];
    put(o, b, varint_put(b, v));
}

static void put_bytes(bin_out *o, const void *s, size_t n)
{
    put_v(o, n);
    put(o, s, n);
}

static int hex_to_bytes(const char *hex, uint8_t out[32])
{
    for (int i = 0; i < 32; i++) {
        unsigned v;
        if (sscanf(hex + 2 * i, "%2x", &v) != 1)
            return -1;
        out[i] = (uint8_t)v;
    }
    return 0;
}

static void put_tensor_name(bin_out *o, const char *name)
{
    uint32_t layer;
    int proj = xp_tensor_name_parse(name, &layer);
    if (proj >= 0) {
        put_v(o, (uint64_t)xp_proj_info_of(proj)->file_order + 1);
        put_v(o, layer);
    } else {
        put_v(o, 0);
        put_bytes(o, name, strlen(name));
    }
}

/* Flips of one tensor of one kind: [from, to) in the canonical order. */
static void put_kind(bin_out *o, const xp_flip *f, size_t n, int kind)
{
    uint64_t prev = 0;
    bool first = true;
    for (size_t i = 0; i < n; i++) {
        uint64_t v = (uint64_t)f[i].index;
        if (kind == XP_FLIP_SCALE)
            v = v * 16 + f[i].bit;
        if (kind == XP_FLIP_ROW_GROUP) {
            bool same = !first && v == prev;
            put_v(o, first ? v : v - prev);
            put_v(o, same ? f[i].group - f[i - 1].group - 1 : f[i].group);
        } else {
            put_v(o, first ? v : v - prev - 1);
            if (kind == XP_FLIP_MASK)
                put(o, f[i].mask, 16);
        }
        prev = v;
        first = false;
    }
}

int xp_patch_encode(const xp_patch *p, unsigned flags, uint8_t **buf, size_t *len, xp_err *err)
{
    if (!p->canonical)
        return xp_err_set(err, XP_EINTERNAL, "%s: encoding a patch that is not normalised",
                          xp_patch_where(p));
    uint8_t base[32];
    if (!p->base_sha256[0] || hex_to_bytes(p->base_sha256, base))
        flags &= ~(unsigned)XP_BIN_BASE;
    if (!p->name)
        flags &= ~(unsigned)XP_BIN_NAME;
    bool any_shape = false;
    for (size_t i = 0; i < p->n_tensors; i++)
        any_shape |= p->tensors[i].ne0 != 0;
    if (!any_shape)
        flags &= ~(unsigned)XP_BIN_SHAPES;
    char *prov = NULL;
    if (flags & XP_BIN_PROVENANCE) {
        cJSON *o = xp_patch_provenance_json(p);
        if (!o)
            return xp_err_set(err, XP_ENOMEM, "patch: out of memory");
        if (cJSON_GetArraySize(o) > 0)
            prov = cJSON_PrintUnformatted(o);
        cJSON_Delete(o);
        if (!prov)
            flags &= ~(unsigned)XP_BIN_PROVENANCE;
    }
    bin_out o = {0};
    put(&o, MAGIC, sizeof MAGIC);
    put_v(&o, flags);
    if (flags & XP_BIN_BASE)
        put(&o, base, 32);
    if (flags & XP_BIN_NAME)
        put_bytes(&o, p->name, strlen(p->name));
    if (flags & XP_BIN_PROVENANCE)
        put_bytes(&o, prov, strlen(prov));
    free(prov);
    put_v(&o, p->n_tensors);
    size_t i = 0;
    for (size_t t = 0; t < p->n_tensors; t++) {
        put_tensor_name(&o, p->tensors[t].name);
        if (flags & XP_BIN_SHAPES) {
            put_v(&o, (uint64_t)p->tensors[t].ne0 / XP_Q1_0_WEIGHTS);
            put_v(&o, (uint64_t)p->tensors[t].ne1);
        }
        size_t start[KINDS + 1];
        for (int k = 0; k < KINDS; k++) {
            start[k] = i;
            while (i < p->n_flips && p->flips[i].tensor == t && p->flips[i].kind == k)
                i++;
        }
        start[KINDS] = i;
        for (int k = 0; k < KINDS; k++)
            put_v(&o, start[k + 1] - start[k]);
        for (int k = 0; k < KINDS; k++)
            put_kind(&o, p->flips + start[k], start[k + 1] - start[k], k);
    }
    if (i != p->n_flips) {
        free(o.p);
        return xp_err_set(err, XP_EINTERNAL, "%s: flips are not in canonical order",
                          xp_patch_where(p));
    }
    if (!o.oom) {
        char hex[65];
        xp_sha256_hex(o.p, o.n, hex);
        uint8_t sum[32];
        hex_to_bytes(hex, sum);
        put(&o, sum, TRAILER);
    }
    if (o.oom) {
        free(o.p);
        return xp_err_set(err, XP_ENOMEM, "patch: out of memory encoding");
    }
    *buf = o.p;
    *len = o.n;
    return XP_OK;
}

/* ---- decoding ------------------------------------------------------------------ */

typedef struct bin_in {
    const uint8_t *p;
    size_t len, off;
    const char *where;
    xp_err *err;
} bin_in;

static int bad(bin_in *c, size_t at, const char *field, const char *what)
{
    return xp_err_set(c->err, XP_EFORMAT, "%s: offset %zu: %s: %s", c->where, at, field, what);
}

static int get_v(bin_in *c, uint64_t *v, const char *field)
{
    size_t n = varint_get(c->p + c->off, c->len - c->off, v);
    if (!n)
        return bad(c, c->off, field, c->off >= c->len ? "the input ends here"
                                                      : "malformed varint (longer than 63 "
                                                        "bits or not in its shortest form)");
    c->off += n;
    return XP_OK;
}

/* A varint that must be at most max. */
static int get_max(bin_in *c, uint64_t max, uint64_t *v, const char *field)
{
    size_t at = c->off;
    int rc = get_v(c, v, field);
    if (!rc && *v > max) {
        char what[128];
        snprintf(what, sizeof what, "%llu is more than the %llu allowed here",
                 (unsigned long long)*v, (unsigned long long)max);
        return bad(c, at, field, what);
    }
    return rc;
}

static int get_bytes(bin_in *c, const uint8_t **s, uint64_t *n, uint64_t max, const char *field)
{
    int rc = get_max(c, max, n, field);
    if (rc)
        return rc;
    if (*n > c->len - c->off)
        return bad(c, c->off, field, "its length runs past the end of the input");
    *s = c->p + c->off;
    c->off += *n;
    return XP_OK;
}

static int get_tensor_name(bin_in *c, char name[64])
{
    size_t at = c->off;
    uint64_t tag, layer, n;
    const uint8_t *s;
    int rc = get_max(c, XP_N_PROJ, &tag, "tensor name tag");
    if (rc)
        return rc;
    if (tag) {
        if ((rc = get_max(c, XP_PATCH_MAX_LAYER, &layer, "tensor layer")))
            return rc;
        xp_tensor_name(name, 64, (uint32_t)layer,
                       xp_proj_tensor(xp_proj_at_file_order((int)tag - 1)));
        return XP_OK;
    }
    if ((rc = get_bytes(c, &s, &n, 63, "tensor name")))
        return rc;
    if (n == 0 || memchr(s, 0, n))
        return bad(c, at, "tensor name", "must have 1 to 63 bytes and no NUL");
    memcpy(name, s, n);
    name[n] = '\0';
    uint32_t l;
    if (xp_tensor_name_parse(name, &l) >= 0)
        return bad(c, at, "tensor name", "a projection name must use its short tag");
    return XP_OK;
}

/* Reads one kind's flips of one tensor into the patch. */
static int get_kind(bin_in *c, xp_patch *p, const char *name, int kind, uint64_t count)
{
    uint64_t prev = 0, prev_group = 0;
    for (uint64_t i = 0; i < count; i++) {
        size_t at = c->off;
        uint64_t d, v;
        int rc = get_v(c, &d, "flip index");
        if (rc)
            return rc;
        v = i == 0 ? d : prev + d + (kind == XP_FLIP_ROW_GROUP ? 0 : 1);
        if (v < prev || v > (kind == XP_FLIP_SCALE ? (uint64_t)MAX_INDEX * 16 + 15
                                                   : (uint64_t)MAX_INDEX))
            return bad(c, at, "flip index", "out of range");
        xp_flip f = {.kind = (uint8_t)kind, .index = (int64_t)v};
        if (kind == XP_FLIP_SCALE) {
            f.index = (int64_t)(v / 16);
            f.bit = (uint8_t)(v % 16);
        } else if (kind == XP_FLIP_MASK) {
            if (c->len - c->off < 16)
                return bad(c, c->off, "mask", "needs 16 bytes");
            memcpy(f.mask, c->p + c->off, 16);
            c->off += 16;
        } else if (kind == XP_FLIP_ROW_GROUP) {
            uint64_t g;
            if ((rc = get_max(c, UINT32_MAX, &g, "row group")))
                return rc;
            bool same = i > 0 && v == prev;
            g = same ? prev_group + g + 1 : g;
            if (g > UINT32_MAX)
                return bad(c, at, "row group", "out of range");
            f.group = (uint32_t)g;
            prev_group = g;
        }
        prev = v;
        if ((rc = xp_patch_add(p, name, &f, c->err)))
            return rc;
    }
    return XP_OK;
}

static int decode(bin_in *c, xp_patch *p)
{
    int rc;
    uint64_t flags, n, n_tensors;
    const uint8_t *s;
    if (!c->len)
        return bad(c, 0, "magic", "the file is empty: not a binary xorpatch patch");
    if (!xp_patch_binary_prefix(c->p, c->len))
        return bad(c, 0, "magic", "expected \"XPATCH\\0\" and a version byte: not a binary "
                   "xorpatch patch");
    if (c->len < sizeof MAGIC + TRAILER + 2) {
        char what[128];
        snprintf(what, sizeof what, "a binary xorpatch patch cut short: %zu bytes, and one "
                 "takes at least %zu", c->len, sizeof MAGIC + TRAILER + 2);
        return bad(c, c->len, "end", what);
    }
    if (c->p[7] != MAGIC[7]) {
        char what[64];
        snprintf(what, sizeof what, "is %u, this xorpatch reads version 1", c->p[7]);
        return bad(c, 7, "version", what);
    }
    c->len -= TRAILER;
    /* the checksum first: a cut or damaged file is told as such, not by the first field
     * that happens to look wrong */
    char hex[65];
    xp_sha256_hex(c->p, c->len, hex);
    uint8_t sum[32];
    hex_to_bytes(hex, sum);
    if (memcmp(sum, c->p + c->len, TRAILER) != 0) {
        char what[160];
        snprintf(what, sizeof what, "does not match the content: the binary patch is damaged "
                 "or cut short (%zu bytes)", c->len + TRAILER);
        return bad(c, c->len, "checksum", what);
    }
    c->off = sizeof MAGIC;
    if ((rc = get_max(c, 15, &flags, "flags")))
        return rc;
    if (flags & XP_BIN_BASE) {
        if (c->len - c->off < 32)
            return bad(c, c->off, "base fingerprint", "needs 32 bytes");
        for (int i = 0; i < 32; i++)
            snprintf(p->base_sha256 + 2 * i, 3, "%02x", c->p[c->off + (size_t)i]);
        c->off += 32;
    }
    if (flags & XP_BIN_NAME) {
        size_t at = c->off;
        if ((rc = get_bytes(c, &s, &n, 4096, "name")))
            return rc;
        if (memchr(s, 0, n))
            return bad(c, at, "name", "contains a NUL byte");
        if (!(p->name = xp_strndup((const char *)s, n)))
            return xp_err_set(c->err, XP_ENOMEM, "%s: out of memory", c->where);
    }
    if (flags & XP_BIN_PROVENANCE) {
        size_t at = c->off;
        if ((rc = get_bytes(c, &s, &n, c->len, "provenance")))
            return rc;
        cJSON *o = cJSON_ParseWithLength((const char *)s, n);
        if (!o || !cJSON_IsObject(o)) {
            cJSON_Delete(o);
            return bad(c, at, "provenance", "is not one JSON object");
        }
        if (xp_json_refuse_nul((const char *)s, n, "", c->err)) {
            cJSON_Delete(o);
            return bad(c, at, "provenance", "a string in it holds a NUL (\\u0000)");
        }
        rc = xp_patch_provenance_from_json(p, o, c->where, c->err);
        cJSON_Delete(o);
        if (rc)
            return rc;
    }
    /* a tensor takes at least 7 bytes */
    if ((rc = get_max(c, (c->len - c->off) / 7, &n_tensors, "tensor count")))
        return rc;
    char prev[64] = "";
    for (uint64_t t = 0; t < n_tensors; t++) {
        char name[64];
        size_t at = c->off;
        if ((rc = get_tensor_name(c, name)))
            return rc;
        if (t > 0 && strcmp(prev, name) >= 0)
            return bad(c, at, "tensor name", "tensors must be in strictly ascending name order");
        memcpy(prev, name, sizeof prev);
        uint64_t ne0 = 0, ne1 = 0;
        if (flags & XP_BIN_SHAPES) {
            at = c->off;
            if ((rc = get_max(c, XP_PATCH_MAX_COLUMNS / XP_Q1_0_WEIGHTS, &ne0, "tensor shape")) ||
                (rc = get_max(c, MAX_DIM, &ne1, "tensor shape")))
                return rc;
            if ((ne0 == 0) != (ne1 == 0))
                return bad(c, at, "tensor shape", "columns and rows must both be known or "
                           "both be 0");
        }
        uint64_t counts[KINDS];
        for (int k = 0; k < KINDS; k++)
            if ((rc = get_max(c, c->len - c->off, &counts[k], "flip count")))
                return rc;
        uint64_t any = 0;
        for (int k = 0; k < KINDS; k++)
            any |= counts[k];
        if (!any)
            return bad(c, at, "flip count", "a tensor without flips");
        size_t first = p->n_flips;
        for (int k = 0; k < KINDS; k++)
            if ((rc = get_kind(c, p, name, k, counts[k])))
                return rc;
        xp_patch_tensor *pt = &p->tensors[p->flips[first].tensor];
        pt->ne0 = (int64_t)ne0 * XP_Q1_0_WEIGHTS;
        pt->ne1 = (int64_t)ne1;
    }
    if (c->off != c->len)
        return bad(c, c->off, "end", "unexpected bytes after the last tensor");
    return XP_OK;
}

int xp_patch_decode(xp_patch **out, const uint8_t *buf, size_t len, const char *where,
                    xp_err *err)
{
    *out = NULL;
    xp_patch *p;
    int rc = xp_patch_new(&p, err);
    if (rc)
        return rc;
    bin_in c = {buf, len, 0, where, err};
    p->format = XP_PATCH_BINARY;
    if (!(p->path = xp_strdup(where))) {
        xp_patch_free(p);
        return xp_err_set(err, XP_ENOMEM, "%s: out of memory", where);
    }
    if ((rc = decode(&c, p)) || (rc = xp_patch_normalize(p, err))) {
        xp_patch_free(p);
        return rc;
    }
    if (!p->n_flips && !xp_patch_checkpoint_empty(p)) {
        xp_patch_free(p);
        return xp_err_set(err, XP_EFORMAT,
                          "%s: the patch has no flips (only a search's checkpoint, with its "
                          "search record, may be empty)",
                          where);
    }
    *out = p;
    return XP_OK;
}

int xp_patch_flips_sha256(xp_patch *p, char hex[65], xp_err *err)
{
    int rc = xp_patch_normalize(p, err);
    uint8_t *buf;
    size_t len;
    if (rc || (rc = xp_patch_encode(p, 0, &buf, &len, err)))
        return rc;
    xp_sha256_hex(buf, len, hex);
    free(buf);
    return XP_OK;
}
