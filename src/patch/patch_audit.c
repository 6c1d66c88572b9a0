/* Audit tools over patches and files: verify proves that a file equals base ⊕ patches
 * bit for bit (and says where it does not, as Hamming distances per tensor), diff turns
 * two files of one layout back into the patch between them, and stack composes patches
 * by XOR. Together they make a patch checkable by someone who did not make it:
 * diff(base, apply(base, P)) must give P again, and verify must find no wrong bit. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/utf8.h"
#include "patch/patch_internal.h"

static uint64_t hamming(const uint8_t *a, const uint8_t *b, uint64_t n)
{
    uint64_t bits = 0, i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t x, y;
        memcpy(&x, a + i, 8);
        memcpy(&y, b + i, 8);
        bits += (uint64_t)__builtin_popcountll(x ^ y);
    }
    for (; i < n; i++)
        bits += (uint64_t)__builtin_popcount((unsigned)(a[i] ^ b[i]));
    return bits;
}

/* Both files have the same tensors with the same types and shapes. */
static int same_layout(const xp_gguf *a, const xp_gguf *b, xp_err *err)
{
    const char *na = a->path ? a->path : "the first file", *nb = b->path ? b->path : "the second";
    if (a->n_tensors != b->n_tensors)
        return xp_err_set(err, XP_EINVAL, "%s has %zu tensors but %s has %zu: not the same "
                          "layout", na, a->n_tensors, nb, b->n_tensors);
    for (size_t i = 0; i < a->n_tensors; i++) {
        const xp_gguf_tensor *x = &a->tensors[i], *y = xp_gguf_tensor_by_name(b, x->name);
        if (!y)
            return xp_err_set(err, XP_EINVAL, "tensor '%s' of %s is not in %s: not the same "
                              "layout", x->name, na, nb);
        if (x->type != y->type || x->n_dims != y->n_dims || memcmp(x->ne, y->ne, sizeof x->ne))
            return xp_err_set(err, XP_EINVAL, "tensor '%s' differs in type or shape between %s "
                              "and %s: not the same layout", x->name, na, nb);
    }
    return XP_OK;
}

static bool value_equal(const xp_gguf_value *x, const xp_gguf_value *y)
{
    static const size_t sizes[XP_GGUF_NTYPES] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    if (x->type != y->type || x->n != y->n || x->elem_type != y->elem_type)
        return false;
    if (x->type == XP_GGUF_STRING)
        return memcmp(x->data, y->data, x->n) == 0;
    if (x->type != XP_GGUF_ARRAY)
        return memcmp(x->data, y->data, sizes[x->type]) == 0;
    if (x->items) {
        for (uint64_t i = 0; i < x->n; i++)
            if (!y->items || !value_equal(&x->items[i], &y->items[i]))
                return false;
        return true;
    }
    return memcmp(x->data, y->data, x->n * sizes[x->elem_type]) == 0;
}

/* Metadata keys that differ between the files, the patch record aside. */
static void compare_metadata(const xp_gguf *patched, const xp_gguf *base, xp_verify_report *r)
{
    for (int pass = 0; pass < 2; pass++) {
        const xp_gguf *from = pass ? patched : base, *to = pass ? base : patched;
        for (size_t i = 0; i < from->n_kv; i++) {
            const char *key = from->kv[i].key;
            if (strcmp(key, XP_PATCH_RECORD_KEY) == 0)
                continue;
            const xp_gguf_value *other = xp_gguf_get(to, key);
            /* a key present in both is compared on the first pass only */
            if ((pass && other) || (other && value_equal(&from->kv[i].value, other)))
                continue;
            if (!r->meta_differences++)
                snprintf(r->first_meta_difference, sizeof r->first_meta_difference, "%s", key);
        }
    }
}

void xp_verify_report_free(xp_verify_report *r)
{
    free(r->tensors);
    memset(r, 0, sizeof *r);
}

int xp_patch_verify(const xp_gguf *patched, xp_gguf *base, xp_patch *const *ps, size_t n,
                    xp_verify_report *r, xp_err *err)
{
    memset(r, 0, sizeof *r);
    int rc = same_layout(base, patched, err);
    if (rc)
        return rc;
    /* one canonical patch has disjoint flips, so its bit count is the expected distance */
    xp_patch *all = NULL;
    if (n && ((rc = xp_patch_stack(&all, ps, n, true, err)) || (rc = xp_patch_bind(all, base, err)))) {
        xp_patch_free(all);
        return rc;
    }
    uint64_t *changed = xp_calloc(base->n_tensors, sizeof *changed);
    r->tensors = xp_calloc(base->n_tensors, sizeof *r->tensors);
    if (!changed || !r->tensors) {
        free(changed);
        xp_patch_free(all);
        xp_verify_report_free(r);
        return xp_err_set(err, XP_ENOMEM, "verify: out of memory");
    }
    for (size_t i = 0; i < base->n_tensors; i++) {
        const xp_gguf_tensor *b = &base->tensors[i];
        changed[i] = hamming(b->data, xp_gguf_tensor_by_name(patched, b->name)->data, b->nbytes);
    }
    if (all)
        rc = xp_patch_apply(base, all, NULL, err);
    for (size_t i = 0; i < base->n_tensors && !rc; i++) {
        const xp_gguf_tensor *b = &base->tensors[i];
        const xp_gguf_tensor *t = xp_gguf_tensor_by_name(patched, b->name);
        xp_verify_tensor v = {.name = t->name, .bits_changed = changed[i]};
        v.bits_wrong = hamming(b->data, t->data, b->nbytes);
        for (size_t k = 0; all && k < all->n_tensors; k++)
            if (strcmp(all->tensors[k].name, b->name) == 0) {
                xp_patch_stats s;
                xp_patch_tensor_stats(all, k, &s);
                v.bits_expected = s.bits;
            }
        r->bits_changed += v.bits_changed;
        r->bits_expected += v.bits_expected;
        r->bits_wrong += v.bits_wrong;
        if (v.bits_changed || v.bits_expected || v.bits_wrong)
            r->tensors[r->n++] = v;
    }
    compare_metadata(patched, base, r);
    r->equal = !r->bits_wrong && !r->meta_differences;
    free(changed);
    xp_patch_free(all);
    if (rc)
        xp_verify_report_free(r);
    return rc;
}

/* ---- diff ---------------------------------------------------------------------- */

static int diff_tensor(xp_patch *p, const xp_gguf_tensor *x, const xp_gguf_tensor *y,
                       xp_err *err)
{
    int64_t per = x->ne[0] / XP_Q1_0_WEIGHTS;
    uint64_t row_bytes = (uint64_t)per * XP_Q1_0_BYTES;
    for (int64_t r = 0; r < x->ne[1]; r++) {
        const uint8_t *a = x->data + (uint64_t)r * row_bytes, *b = y->data + (uint64_t)r * row_bytes;
        if (memcmp(a, b, row_bytes) == 0)
            continue;
        for (int64_t k = 0; k < per; k++) {
            const uint8_t *ba = a + k * XP_Q1_0_BYTES, *bb = b + k * XP_Q1_0_BYTES;
            int64_t block = r * per + k;
            int rc = XP_OK;
            for (int bit = 0; bit < 16 && !rc; bit++)
                if ((ba[bit / 8] ^ bb[bit / 8]) >> (bit % 8) & 1)
                    rc = xp_patch_add_scale_bit(p, x->name, block, bit, err);
            uint8_t mask[16];
            bool any = false;
            for (int i = 0; i < 16; i++)
                any |= (mask[i] = ba[2 + i] ^ bb[2 + i]) != 0;
            if (!rc && any)
                rc = xp_patch_add_mask(p, x->name, block, mask, err);
            if (rc)
                return rc;
        }
    }
    return XP_OK;
}

int xp_patch_diff(xp_patch **out, const xp_gguf *a, const xp_gguf *b, xp_err *err)
{
    *out = NULL;
    int rc = same_layout(a, b, err);
    xp_patch *p = NULL;
    if (!rc)
        rc = xp_patch_new(&p, err);
    for (size_t i = 0; i < a->n_tensors && !rc; i++) {
        const xp_gguf_tensor *x = &a->tensors[i], *y = xp_gguf_tensor_by_name(b, x->name);
        bool matrix = x->type == XP_TYPE_Q1_0 && x->n_dims <= 2 && x->ne[0] % 128 == 0;
        if (matrix)
            rc = diff_tensor(p, x, y, err);
        else if (memcmp(x->data, y->data, x->nbytes) != 0)
            rc = xp_err_set(err, XP_EINVAL, "tensor '%s' (%s) differs between the files; a patch "
                            "holds only sign and scale flips of Q1_0 matrices", x->name,
                            xp_tensor_type_name(x->type) ? xp_tensor_type_name(x->type) : "?");
    }
    /* with every shape known, normalising finds the whole rows and blocks */
    for (size_t i = 0; !rc && i < p->n_tensors; i++) {
        const xp_gguf_tensor *t = xp_gguf_tensor_by_name(a, p->tensors[i].name);
        p->tensors[i].ne0 = t->ne[0], p->tensors[i].ne1 = t->ne[1];
    }
    if (!rc)
        rc = xp_patch_normalize(p, err);
    if (!rc && !p->n_flips)
        rc = xp_err_set(err, XP_EINVAL, "%s and %s have identical weights: the patch would be "
                        "empty", a->path ? a->path : "A", b->path ? b->path : "B");
    if (rc) {
        xp_patch_free(p);
        return rc;
    }
    *out = p;
    return XP_OK;
}

/* ---- stack --------------------------------------------------------------------- */

int xp_patch_stack(xp_patch **out, xp_patch *const *ps, size_t n, bool force, xp_err *err)
{
    *out = NULL;
    xp_patch *s;
    int rc = xp_patch_new(&s, err);
    if (rc)
        return rc;
    cJSON *src = cJSON_CreateObject(), *list = cJSON_AddArrayToObject(src, "stack");
    for (size_t i = 0; i < n && !rc; i++) {
        xp_patch *p = ps[i];
        if (p->base_sha256[0] && s->base_sha256[0] && strcmp(p->base_sha256, s->base_sha256) &&
            !force)
            rc = xp_err_set(err, XP_EINVAL, "%s: made for the base model with SHA-256 %s, but "
                            "the patches before it are for %s: refused (--force stacks them "
                            "anyway)", xp_patch_where(p), p->base_sha256, s->base_sha256);
        if (!rc && !s->base_sha256[0])
            memcpy(s->base_sha256, p->base_sha256, 65);
        for (size_t k = 0; k < p->n_flips && !rc; k++)
            rc = xp_patch_add(s, p->tensors[p->flips[k].tensor].name, &p->flips[k], err);
        for (size_t t = 0; t < p->n_tensors && !rc; t++) {
            const xp_patch_tensor *pt = &p->tensors[t];
            for (size_t u = 0; u < s->n_tensors && pt->ne0 && !rc; u++) {
                xp_patch_tensor *st = &s->tensors[u];
                if (strcmp(st->name, pt->name) != 0)
                    continue;
                if (st->ne0 && (st->ne0 != pt->ne0 || st->ne1 != pt->ne1))
                    rc = xp_err_set(err, XP_EINVAL, "%s: tensor '%s' is [%lld, %lld] here but "
                                    "[%lld, %lld] in an earlier patch", xp_patch_where(p),
                                    pt->name, (long long)pt->ne0, (long long)pt->ne1,
                                    (long long)st->ne0, (long long)st->ne1);
                st->ne0 = pt->ne0, st->ne1 = pt->ne1;
            }
        }
        char id[65];
        if (!rc)
            rc = xp_patch_flips_sha256(ps[i], id, err);
        cJSON *e = cJSON_CreateObject();
        xp_json_add_string(e, "name", p->name ? p->name : xp_patch_where(p));
        if (!rc)
            cJSON_AddStringToObject(e, "flips_sha256", id);
        cJSON_AddItemToArray(list, e);
        if (!rc && !s->base_model && p->base_model && !(s->base_model = xp_strdup(p->base_model)))
            rc = xp_err_set(err, XP_ENOMEM, "stack: out of memory");
    }
    if (!rc && !(s->source = xp_json_print(src)))
        rc = xp_err_set(err, XP_ENOMEM, "stack: out of memory");
    cJSON_Delete(src);
    if (!rc)
        rc = xp_patch_normalize(s, err);
    if (rc) {
        xp_patch_free(s);
        return rc;
    }
    *out = s;
    return XP_OK;
}
