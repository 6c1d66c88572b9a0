/* The record a patched GGUF keeps of what was applied to it: one metadata string,
 * "xorpatch.applied", holding a JSON object — the SHA-256 of the unpatched file and, in
 * the order applied, each patch's name, identity and compact binary encoding (base64),
 * so `revert` needs nothing but the file and `verify` can say what the file claims. The
 * string is padded with spaces to a reserved length: a later in-place apply or revert
 * rewrites it within the same bytes, so the file's length and every tensor offset stay
 * put. An extra string key leaves the file valid for llama.cpp. */
#include <stdio.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/utf8.h"
#include "patch/patch_internal.h"

#define RECORD_FORMAT "xorpatch-applied/1"
/* room left for later in-place applications, beyond what the record needs now */
#define RECORD_SLACK (64u << 10)

void xp_patch_record_free(xp_patch_record *rec)
{
    xp_patch_list_free(rec->patches, rec->n);
    memset(rec, 0, sizeof *rec);
}

static int bad(xp_err *err, const xp_gguf *g, const char *what)
{
    return xp_err_set(err, XP_EFORMAT, "%s: metadata %s: %s", g->path ? g->path : "<memory>",
                      XP_PATCH_RECORD_KEY, what);
}

/* One record entry: decodes its patch and checks the identity it claims. */
static int read_entry(const xp_gguf *g, const cJSON *e, size_t i, xp_patch **out, xp_err *err)
{
    char what[160];
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(e, "name");
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(e, "flips_sha256");
    const cJSON *b64 = cJSON_GetObjectItemCaseSensitive(e, "patch");
    snprintf(what, sizeof what, "patches[%zu] needs the strings name, flips_sha256 and patch", i);
    if (!cJSON_IsString(name) || !cJSON_IsString(id) || !cJSON_IsString(b64) ||
        !xp_hex64_valid(id->valuestring))
        return bad(err, g, what);
    size_t n = strlen(b64->valuestring);
    uint8_t *bin = malloc(n / 4 * 3 + 3);
    if (!bin)
        return xp_err_set(err, XP_ENOMEM, "record: out of memory");
    int len = n % 4 || n > INT32_MAX ? -1
                                     : EVP_DecodeBlock(bin, (const uint8_t *)b64->valuestring,
                                                       (int)n);
    if (len < 0) {
        free(bin);
        snprintf(what, sizeof what, "patches[%zu].patch is not base64", i);
        return bad(err, g, what);
    }
    /* EVP_DecodeBlock counts the padding as zero bytes */
    if (n && b64->valuestring[n - 1] == '=')
        len -= 1 + (b64->valuestring[n - 2] == '=');
    char where[256];
    snprintf(where, sizeof where, "%s: %s patches[%zu]", g->path ? g->path : "<memory>",
             XP_PATCH_RECORD_KEY, i);
    int rc = xp_patch_decode(out, bin, (size_t)len, where, err);
    free(bin);
    if (rc)
        return rc;
    char have[65];
    if ((rc = xp_patch_flips_sha256(*out, have, err)))
        return rc;
    if (strcmp(have, id->valuestring) != 0) {
        snprintf(what, sizeof what, "patches[%zu] ('%s') does not match its flips_sha256",
                 i, name->valuestring);
        return bad(err, g, what);
    }
    free((*out)->name);
    if (!((*out)->name = xp_strdup(name->valuestring)))
        return xp_err_set(err, XP_ENOMEM, "record: out of memory");
    return XP_OK;
}

int xp_patch_record_read(const xp_gguf *g, xp_patch_record *rec, bool *present, xp_err *err)
{
    memset(rec, 0, sizeof *rec);
    *present = false;
    const xp_gguf_value *v = xp_gguf_get(g, XP_PATCH_RECORD_KEY);
    if (!v)
        return XP_OK;
    if (v->type != XP_GGUF_STRING)
        return bad(err, g, "expected a string");
    const char *text = (const char *)v->data, *end = NULL;
    cJSON *o = cJSON_ParseWithLengthOpts(text, v->n, &end, false);
    bool padded = o && end;
    for (const char *c = end; padded && c < text + v->n; c++)
        padded = *c == ' ';
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(o, "format");
    const cJSON *base = cJSON_GetObjectItemCaseSensitive(o, "base_sha256");
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(o, "patches");
    int rc = XP_OK;
    if (!padded || !cJSON_IsObject(o))
        rc = bad(err, g, "expected one JSON object padded with spaces");
    else if (!cJSON_IsString(fmt) || strcmp(fmt->valuestring, RECORD_FORMAT) != 0)
        rc = bad(err, g, "\"format\" must be \"" RECORD_FORMAT "\"");
    else if (!cJSON_IsString(base) || !xp_hex64_valid(base->valuestring))
        rc = bad(err, g, "\"base_sha256\" must be 64 lowercase hex digits");
    else if (!cJSON_IsArray(list))
        rc = bad(err, g, "\"patches\" must be an array");
    size_t n = rc ? 0 : (size_t)cJSON_GetArraySize(list);
    if (!rc && !(rec->patches = xp_calloc(n, sizeof *rec->patches)))
        rc = xp_err_set(err, XP_ENOMEM, "record: out of memory");
    size_t i = 0;
    for (const cJSON *e = rc ? NULL : list->child; e && !rc; e = e->next, i++) {
        rc = read_entry(g, e, i, &rec->patches[i], err);
        rec->n = i + (rec->patches[i] != NULL);
    }
    if (!rc) {
        memcpy(rec->base_sha256, base->valuestring, 65);
        rec->capacity = v->n;
        *present = true;
    }
    cJSON_Delete(o);
    if (rc)
        xp_patch_record_free(rec);
    return rc;
}

int xp_record_format(const char *base_sha256, xp_patch *const *ps, size_t n, uint64_t capacity,
                     char **text, size_t *len, xp_err *err)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "format", RECORD_FORMAT);
    cJSON_AddStringToObject(o, "tool", "xorpatch " XP_VERSION);
    cJSON_AddStringToObject(o, "base_sha256", base_sha256);
    cJSON *list = cJSON_AddArrayToObject(o, "patches");
    int rc = XP_OK;
    for (size_t i = 0; i < n && !rc; i++) {
        uint8_t *bin;
        size_t blen;
        char id[65];
        if ((rc = xp_patch_flips_sha256(ps[i], id, err)) ||
            (rc = xp_patch_serialize(ps[i], XP_PATCH_BINARY_COMPACT, &bin, &blen, err)))
            break;
        char *b64 = malloc(4 * ((blen + 2) / 3) + 1);
        if (!b64) {
            free(bin);
            rc = xp_err_set(err, XP_ENOMEM, "record: out of memory");
            break;
        }
        EVP_EncodeBlock((uint8_t *)b64, bin, (int)blen);
        free(bin);
        cJSON *e = cJSON_CreateObject();
        xp_json_add_string(e, "name", ps[i]->name ? ps[i]->name : xp_patch_where(ps[i]));
        cJSON_AddStringToObject(e, "flips_sha256", id);
        cJSON_AddNumberToObject(e, "flips", (double)ps[i]->n_flips);
        cJSON_AddStringToObject(e, "patch", b64);
        cJSON_AddItemToArray(list, e);
        free(b64);
    }
    char *s = rc ? NULL : cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (rc)
        return rc;
    if (!s)
        return xp_err_set(err, XP_ENOMEM, "record: out of memory");
    size_t used = strlen(s);
    if (!capacity)
        capacity = (used + RECORD_SLACK + 4095) / 4096 * 4096;
    if (used > capacity) {
        free(s);
        return xp_err_set(err, XP_EINVAL, "the file's reserved patch record has %llu bytes but "
                          "the new record needs %zu: write a new copy with `xorpatch apply -o` "
                          "(which reserves more) instead of changing it in place",
                          (unsigned long long)capacity, used);
    }
    char *t = realloc(s, capacity + 1);
    if (!t) {
        free(s);
        return xp_err_set(err, XP_ENOMEM, "record: out of memory");
    }
    memset(t + used, ' ', capacity - used);
    t[capacity] = '\0';
    *text = t;
    *len = capacity;
    return XP_OK;
}
