/* The project's own patch format, "xorpatch/1": JSON that adds to the flips what makes a
 * patch trustworthy, the base model's fingerprint and architecture, the tool and time,
 * the search that produced it, and a checksum of its flips. Flips are listed per tensor
 * under their kind's key (rows, blocks, scale_bits, masks, row_groups), with the tensor's
 * shape when known. It is read strictly, so a typo is an error rather than a silently
 * smaller patch; every error names the file and the JSON path of the bad value. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/utf8.h"
#include "patch/patch_internal.h"

#define MAX_INDEX ((uint64_t)XP_PATCH_MAX_INDEX)

/* The flips of a list of pairs: [block, bit], [block, "mask hex"] or [row, group]. */
static int read_pairs(xp_patch *p, const char *tensor, const cJSON *arr, int kind,
                      const char *where, const char *path, xp_err *err)
{
    size_t i = 0;
    for (const cJSON *e = arr->child; e; e = e->next, i++) {
        const cJSON *a = cJSON_GetArrayItem(e, 0), *b = cJSON_GetArrayItem(e, 1);
        uint64_t x, y = 0;
        xp_flip f = {.kind = (uint8_t)kind};
        bool ok = cJSON_IsArray(e) && cJSON_GetArraySize(e) == 2 && xp_json_uint(a, MAX_INDEX, &x);
        if (ok && kind == XP_FLIP_SCALE)
            ok = xp_json_uint(b, 15, &y), f.bit = (uint8_t)y;
        if (ok && kind == XP_FLIP_ROW_GROUP)
            ok = xp_json_uint(b, UINT32_MAX, &y), f.group = (uint32_t)y;
        if (ok && kind == XP_FLIP_MASK) {
            ok = cJSON_IsString(b) && strlen(b->valuestring) == 32;
            for (int k = 0; ok && k < 16; k++) {
                unsigned v;
                ok = sscanf(b->valuestring + 2 * k, "%2x", &v) == 1;
                f.mask[k] = (uint8_t)v;
            }
        }
        if (!ok)
            return xp_json_fail(err, where, "%s[%zu]: expected %s", path, i,
                                kind == XP_FLIP_SCALE  ? "[block, bit] with bit 0 to 15"
                                : kind == XP_FLIP_MASK ? "[block, \"32 hex digits\"]"
                                                       : "[row, group]");
        f.index = (int64_t)x;
        int rc = xp_patch_add(p, tensor, &f, err);
        if (rc)
            return rc;
    }
    return XP_OK;
}

/* The flips of a list of indices: rows or blocks. */
static int read_indices(xp_patch *p, const char *tensor, const cJSON *arr, int kind,
                        const char *where, const char *path, xp_err *err)
{
    size_t i = 0;
    for (const cJSON *e = arr->child; e; e = e->next, i++) {
        uint64_t v;
        if (!xp_json_uint(e, MAX_INDEX, &v))
            return xp_json_fail(err, where, "%s[%zu]: expected an integer from 0 to %llu", path, i,
                                (unsigned long long)MAX_INDEX);
        xp_flip f = {.kind = (uint8_t)kind, .index = (int64_t)v};
        int rc = xp_patch_add(p, tensor, &f, err);
        if (rc)
            return rc;
    }
    return XP_OK;
}

static int read_tensor(xp_patch *p, const cJSON *t, const char *where, xp_err *err)
{
    const char *allowed[XP_N_FLIP_KINDS + 2] = {"shape"};
    for (int k = 0; k < XP_N_FLIP_KINDS; k++)
        allowed[k + 1] = xp_flip_kind_of(k)->key;
    char path[128];
    snprintf(path, sizeof path, "tensors.%s", t->string);
    if (!cJSON_IsObject(t))
        return xp_json_fail(err, where, "%s: expected an object of flip lists", path);
    int rc = xp_json_check_keys(t, allowed, where, path, err);
    if (rc)
        return rc;
    size_t first = p->n_flips;
    for (int k = 0; k < XP_N_FLIP_KINDS; k++) {
        const cJSON *arr = cJSON_GetObjectItemCaseSensitive(t, xp_flip_kind_of(k)->key);
        if (!arr)
            continue;
        char lp[160];
        snprintf(lp, sizeof lp, "%s.%s", path, xp_flip_kind_of(k)->key);
        if (!cJSON_IsArray(arr))
            return xp_json_fail(err, where, "%s: expected an array", lp);
        if ((rc = k == XP_FLIP_ROW || k == XP_FLIP_BLOCK
                      ? read_indices(p, t->string, arr, k, where, lp, err)
                      : read_pairs(p, t->string, arr, k, where, lp, err)))
            return rc;
    }
    if (p->n_flips == first)
        return xp_json_fail(err, where, "%s: a tensor without flips", path);
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(t, "shape");
    if (shape) {
        uint64_t ne0, ne1;
        if (!cJSON_IsArray(shape) || cJSON_GetArraySize(shape) != 2 ||
            !xp_json_uint(cJSON_GetArrayItem(shape, 0), XP_PATCH_MAX_COLUMNS, &ne0) ||
            !xp_json_uint(cJSON_GetArrayItem(shape, 1), (uint64_t)1 << 31, &ne1) || !ne0 || !ne1 ||
            ne0 % XP_Q1_0_WEIGHTS)
            return xp_json_fail(err, where,
                                "%s.shape: expected [columns, rows], columns a positive "
                                "multiple of 128 up to %d",
                                path, XP_PATCH_MAX_COLUMNS);
        xp_patch_tensor *pt = &p->tensors[p->flips[first].tensor];
        pt->ne0 = (int64_t)ne0, pt->ne1 = (int64_t)ne1;
    }
    return XP_OK;
}

int xp_patch_own_read(xp_patch *p, const cJSON *root, const char *where, xp_err *err)
{
    static const char *const allowed[] = {"format",       "name",    "description", "base",
                                          "tool",         "created", "source",      "search",
                                          "flips_sha256", "stats",   "tensors",     NULL};
    static const char *const base_allowed[] = {"sha256", "name", "architecture", NULL};
    int rc = xp_json_check_keys(root, allowed, where, "the top level", err);
    if (rc || (rc = xp_json_take_string(root, "name", &p->name, where, err)) ||
        (rc = xp_json_take_string(root, "description", &p->description, where, err)) ||
        (rc = xp_json_take_string(root, "tool", &p->tool, where, err)) ||
        (rc = xp_json_take_string(root, "created", &p->created, where, err)) ||
        (rc = xp_json_take_object(root, "source", &p->source, where, err)) ||
        (rc = xp_json_take_object(root, "search", &p->search, where, err)))
        return rc;
    const cJSON *base = cJSON_GetObjectItemCaseSensitive(root, "base");
    if (base) {
        if (!cJSON_IsObject(base))
            return xp_json_fail(err, where, "\"base\" must be an object");
        if ((rc = xp_json_check_keys(base, base_allowed, where, "base", err)) ||
            (rc = xp_json_take_string(base, "name", &p->base_model, where, err)) ||
            (rc = xp_json_take_object(base, "architecture", &p->architecture, where, err)))
            return rc;
        const cJSON *sha = cJSON_GetObjectItemCaseSensitive(base, "sha256");
        if (sha && (!cJSON_IsString(sha) || !xp_hex64_valid(sha->valuestring)))
            return xp_json_fail(err, where, "base.sha256 must be 64 lowercase hex digits");
        if (sha)
            memcpy(p->base_sha256, sha->valuestring, 65);
    }
    const cJSON *tensors = cJSON_GetObjectItemCaseSensitive(root, "tensors");
    if (!cJSON_IsObject(tensors))
        return xp_json_fail(err, where,
                            "\"tensors\" must be an object mapping tensor names to flips");
    for (const cJSON *t = tensors->child; t; t = t->next)
        if ((rc = read_tensor(p, t, where, err)))
            return rc;
    p->format = XP_PATCH_JSON;
    return XP_OK;
}

/* One flip in its kind's list: an index, or a pair. */
static cJSON *flip_json(const xp_flip *f)
{
    if (f->kind == XP_FLIP_ROW || f->kind == XP_FLIP_BLOCK)
        return cJSON_CreateNumber((double)f->index);
    cJSON *e = cJSON_CreateArray();
    cJSON_AddItemToArray(e, cJSON_CreateNumber((double)f->index));
    if (f->kind == XP_FLIP_SCALE) {
        cJSON_AddItemToArray(e, cJSON_CreateNumber(f->bit));
    } else if (f->kind == XP_FLIP_ROW_GROUP) {
        cJSON_AddItemToArray(e, cJSON_CreateNumber(f->group));
    } else {
        char hex[33];
        for (int k = 0; k < 16; k++)
            snprintf(hex + 2 * k, 3, "%02x", f->mask[k]);
        cJSON_AddItemToArray(e, cJSON_CreateString(hex));
    }
    return e;
}

int xp_patch_own_write(const xp_patch *p, cJSON **out, xp_err *err)
{
    /* the checksum first: the binary encoding of the canonical flips */
    uint8_t *bin;
    size_t len;
    int rc = xp_patch_encode(p, 0, &bin, &len, err);
    if (rc)
        return rc;
    char sum[65];
    xp_sha256_hex(bin, len, sum);
    free(bin);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "format", XP_PATCH_FORMAT_OWN);
    if (p->name)
        cJSON_AddItemToObject(o, "name", xp_json_string(p->name));
    if (p->description)
        cJSON_AddItemToObject(o, "description", xp_json_string(p->description));
    cJSON *base = cJSON_AddObjectToObject(o, "base");
    if (p->base_sha256[0])
        cJSON_AddStringToObject(base, "sha256", p->base_sha256);
    if (p->base_model)
        cJSON_AddItemToObject(base, "name", xp_json_string(p->base_model));
    xp_json_add_text(base, "architecture", p->architecture);
    if (p->tool)
        cJSON_AddItemToObject(o, "tool", xp_json_string(p->tool));
    if (p->created)
        cJSON_AddItemToObject(o, "created", xp_json_string(p->created));
    xp_json_add_text(o, "source", p->source);
    xp_json_add_text(o, "search", p->search);
    xp_patch_stats s;
    xp_patch_total_stats(p, &s);
    cJSON *st = cJSON_AddObjectToObject(o, "stats");
    cJSON_AddNumberToObject(st, "flips", (double)s.flips);
    for (int k = 0; k < XP_N_FLIP_KINDS; k++)
        cJSON_AddNumberToObject(st, xp_flip_kind_of(k)->key, (double)s.by_kind[k]);
    if (s.bits_known)
        cJSON_AddNumberToObject(st, "bits", (double)s.bits);
    cJSON *ts = cJSON_AddObjectToObject(o, "tensors");
    size_t i = 0;
    for (size_t t = 0; t < p->n_tensors; t++) {
        cJSON *to = cJSON_AddObjectToObject(ts, p->tensors[t].name);
        if (p->tensors[t].ne0) {
            cJSON *sh = cJSON_AddArrayToObject(to, "shape");
            cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)p->tensors[t].ne0));
            cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)p->tensors[t].ne1));
        }
        cJSON *lists[XP_N_FLIP_KINDS] = {0};
        for (; i < p->n_flips && p->flips[i].tensor == t; i++) {
            const xp_flip *f = &p->flips[i];
            if (!lists[f->kind])
                cJSON_AddItemToObject(to, xp_flip_kind_of(f->kind)->key,
                                      lists[f->kind] = cJSON_CreateArray());
            cJSON_AddItemToArray(lists[f->kind], flip_json(f));
        }
    }
    cJSON_AddStringToObject(o, "flips_sha256", sum);
    *out = o;
    return XP_OK;
}
