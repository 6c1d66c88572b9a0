/* Patch files as they exist: Bankai's bankai_row_xor_v1 (row flips by layer and MLX
 * projection name, optionally a block "group" within the row; also its older variants
 * without "format"), Neagari's bankai_group_xor_v2 (block and fp16 scale-bit flips,
 * block index within the tensor, single files or a directory of patch_*.json with a
 * manifest), and the project's own "xorpatch/1" JSON, which adds what makes a patch
 * trustworthy: the base model's fingerprint and architecture, the tool and time, the
 * search that produced it, and a checksum of its flips. Foreign files are read leniently
 * (extra keys ignored) because they are what they are; our own format is read strictly,
 * so a typo is an error rather than a silently smaller patch. Every error names the file
 * and the JSON path of the bad value. */
#include <stdio.h>
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/alloc.h"
#include "patch/patch_internal.h"

#define FORMAT_OWN "xorpatch/1"
#define FORMAT_V1 "bankai_row_xor_v1"
#define FORMAT_V2 "bankai_group_xor_v2"
#define MAX_LAYER 99999
/* the largest patch file read: 4M flips as JSON stay well below it */
#define MAX_FILE (512 << 20)
#define MAX_INDEX ((uint64_t)XP_PATCH_MAX_INDEX)

static int fail(xp_err *err, const char *where, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(xp_err *err, const char *where, const char *fmt, ...)
{
    char what[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return xp_err_set(err, XP_EFORMAT, "%s: %s", where, what);
}

static int oom(xp_err *err, const char *where)
{
    return xp_err_set(err, XP_ENOMEM, "%s: out of memory", where);
}

/* A string member copied into *dst (absent: left alone); another type is an error. */
static int take_string(const cJSON *o, const char *key, char **dst, const char *where,
                       xp_err *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v)
        return XP_OK;
    if (!cJSON_IsString(v))
        return fail(err, where, "\"%s\" must be a string", key);
    free(*dst);
    if (!(*dst = xp_strdup(v->valuestring)))
        return oom(err, where);
    return XP_OK;
}

/* An object member kept as its JSON text. */
static int take_object(const cJSON *o, const char *key, char **dst, const char *where,
                       xp_err *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v)
        return XP_OK;
    if (!cJSON_IsObject(v))
        return fail(err, where, "\"%s\" must be an object", key);
    free(*dst);
    if (!(*dst = xp_json_print(v)))
        return oom(err, where);
    return XP_OK;
}

static int member_uint(const cJSON *o, const char *key, uint64_t max, uint64_t *out,
                       const char *where, const char *path, xp_err *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v)
        return fail(err, where, "%s: \"%s\" is missing", path, key);
    if (!xp_json_uint(v, max, out))
        return fail(err, where, "%s: \"%s\" must be an integer from 0 to %llu", path, key,
                    (unsigned long long)max);
    return XP_OK;
}

/* The number of a projection given by its GGUF name, with ".weight" (Neagari's) or
 * without, or when mlx also by its MLX name (Bankai's); -1 when none. */
static int find_proj(const char *s, bool mlx)
{
    int k = xp_proj_find(s, XP_NAMING_GGUF);
    if (k < 0)
        k = xp_proj_find(s, XP_NAMING_NEAGARI);
    if (k < 0 && mlx)
        k = xp_proj_find(s, XP_NAMING_MLX);
    return k;
}

/* Every projection's name in a vocabulary, "a, b, ... f or g", for messages. */
static const char *proj_list(int naming, char *buf, size_t size)
{
    size_t n = 0;
    for (int i = 0; i < XP_N_PROJ && n < size; i++)
        n += (size_t)snprintf(buf + n, size - n, "%s%s",
                              i == 0              ? ""
                              : i < XP_N_PROJ - 1 ? ", "
                                                  : " or ",
                              xp_proj_info_of(i)->name[naming]);
    return buf;
}

/* ---- Bankai v1 and Neagari v2 ------------------------------------------------- */

static int foreign_flip(xp_patch *p, const cJSON *f, size_t i, bool v2, const char *where,
                        xp_err *err)
{
    char path[48];
    snprintf(path, sizeof path, "flips[%zu]", i);
    if (!cJSON_IsObject(f))
        return fail(err, where, "%s: expected an object with \"layer\", \"proj\" and \"%s\"",
                    path, v2 ? "group" : "row");
    uint64_t layer, row = 0, group = 0, bit = 0;
    int rc = member_uint(f, "layer", MAX_LAYER, &layer, where, path, err);
    if (rc)
        return rc;
    const cJSON *proj = cJSON_GetObjectItemCaseSensitive(f, "proj");
    if (!cJSON_IsString(proj))
        return fail(err, where, "%s: \"proj\" must be a string naming a projection", path);
    int k = find_proj(proj->valuestring, !v2);
    char names[160];
    if (k < 0)
        return fail(err, where, "%s: unknown projection \"%s\" (expected %s)", path,
                    proj->valuestring,
                    proj_list(v2 ? XP_NAMING_NEAGARI : XP_NAMING_MLX, names, sizeof names));
    char tensor[XP_TENSOR_NAME_MAX];
    xp_tensor_name(tensor, sizeof tensor, (uint32_t)layer, xp_proj_tensor(k));
    xp_flip fl = {0};
    if (!v2) {
        if ((rc = member_uint(f, "row", MAX_INDEX, &row, where, path, err)))
            return rc;
        fl.kind = XP_FLIP_ROW;
        fl.index = (int64_t)row;
        if (cJSON_GetObjectItemCaseSensitive(f, "group")) {
            if ((rc = member_uint(f, "group", UINT32_MAX, &group, where, path, err)))
                return rc;
            fl.kind = XP_FLIP_ROW_GROUP;
            fl.group = (uint32_t)group;
        }
        return xp_patch_add(p, tensor, &fl, err);
    }
    if ((rc = member_uint(f, "group", MAX_INDEX, &group, where, path, err)))
        return rc;
    fl.index = (int64_t)group;
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(f, "type");
    if (type && !cJSON_IsString(type))
        return fail(err, where, "%s: \"type\" must be \"group\" or \"scale\"", path);
    if (!type || strcmp(type->valuestring, "group") == 0) {
        fl.kind = XP_FLIP_BLOCK;
    } else if (strcmp(type->valuestring, "scale") == 0) {
        if (!cJSON_GetObjectItemCaseSensitive(f, "bit"))
            return fail(err, where, "%s: a scale flip needs \"bit\" (0 to 15)", path);
        if (!xp_json_uint(cJSON_GetObjectItemCaseSensitive(f, "bit"), 15, &bit))
            return fail(err, where, "%s: \"bit\" must be an integer from 0 to 15 (a bit of the "
                        "block's fp16 scale)", path);
        fl.kind = XP_FLIP_SCALE;
        fl.bit = (uint8_t)bit;
    } else {
        return fail(err, where, "%s: unknown flip type \"%s\" (expected \"group\" or "
                    "\"scale\")", path, type->valuestring);
    }
    return xp_patch_add(p, tensor, &fl, err);
}

/* Neagari's search description: the keys that say how the patch was found. */
static int v2_search(xp_patch *p, const cJSON *root, const char *where, xp_err *err)
{
    static const char *const keys[] = {"domain", "method", "search_layers", "iterations"};
    cJSON *s = cJSON_CreateObject();
    if (!s)
        return oom(err, where);
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, keys[i]);
        if (v)
            cJSON_AddItemToObject(s, keys[i], cJSON_Duplicate(v, true));
    }
    const cJSON *hist = cJSON_GetObjectItemCaseSensitive(root, "fitness_history");
    int n = cJSON_IsArray(hist) ? cJSON_GetArraySize(hist) : 0;
    if (n && cJSON_IsNumber(cJSON_GetArrayItem(hist, n - 1)))
        cJSON_AddNumberToObject(s, "final_fitness", cJSON_GetArrayItem(hist, n - 1)->valuedouble);
    if (cJSON_GetArraySize(s) && !(p->search = xp_json_print(s))) {
        cJSON_Delete(s);
        return oom(err, where);
    }
    cJSON_Delete(s);
    return XP_OK;
}

static int parse_foreign(xp_patch *p, const cJSON *root, bool v2, const char *where,
                         xp_err *err)
{
    const cJSON *flips = cJSON_GetObjectItemCaseSensitive(root, "flips");
    if (!cJSON_IsArray(flips))
        return fail(err, where, "\"flips\" must be an array of flips");
    int rc;
    if ((rc = take_string(root, "name", &p->name, where, err)) ||
        (rc = take_string(root, "description", &p->description, where, err)) ||
        (rc = take_string(root, "base_model", &p->base_model, where, err)))
        return rc;
    if (v2)
        rc = v2_search(p, root, where, err);
    else
        rc = take_object(root, "metadata", &p->search, where, err);
    if (rc)
        return rc;
    size_t i = 0;
    for (const cJSON *f = flips->child; f; f = f->next, i++)
        if ((rc = foreign_flip(p, f, i, v2, where, err)))
            return rc;
    p->format = v2 ? XP_PATCH_NEAGARI_V2 : XP_PATCH_BANKAI_V1;
    return XP_OK;
}

/* ---- xorpatch/1 ----------------------------------------------------------------- */

static int check_keys(const cJSON *o, const char *const *allowed, const char *where,
                      const char *path, xp_err *err)
{
    for (const cJSON *c = o->child; c; c = c->next) {
        bool ok = false;
        for (size_t i = 0; allowed[i] && !ok; i++)
            ok = strcmp(c->string, allowed[i]) == 0;
        if (!ok)
            return fail(err, where, "%s: unknown key \"%s\"", path, c->string);
    }
    return XP_OK;
}

static int is_hex64(const char *s)
{
    if (strlen(s) != 64)
        return 0;
    for (int i = 0; i < 64; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return 1;
}

int xp_patch_provenance_from_json(xp_patch *p, const cJSON *o, const char *where, xp_err *err)
{
    static const char *const allowed[] = {"description", "base_model", "tool", "created",
                                          "architecture", "search", "source", NULL};
    int rc = check_keys(o, allowed, where, "provenance", err);
    if (!rc && !(rc = take_string(o, "description", &p->description, where, err)) &&
        !(rc = take_string(o, "base_model", &p->base_model, where, err)) &&
        !(rc = take_string(o, "tool", &p->tool, where, err)) &&
        !(rc = take_string(o, "created", &p->created, where, err)) &&
        !(rc = take_object(o, "architecture", &p->architecture, where, err)) &&
        !(rc = take_object(o, "search", &p->search, where, err)))
        rc = take_object(o, "source", &p->source, where, err);
    return rc;
}

static void add_json_text(cJSON *o, const char *key, const char *text)
{
    cJSON *v = text ? cJSON_Parse(text) : NULL;
    if (v)
        cJSON_AddItemToObject(o, key, v);
}

cJSON *xp_patch_provenance_json(const xp_patch *p)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    if (p->description)
        cJSON_AddStringToObject(o, "description", p->description);
    if (p->base_model)
        cJSON_AddStringToObject(o, "base_model", p->base_model);
    if (p->tool)
        cJSON_AddStringToObject(o, "tool", p->tool);
    if (p->created)
        cJSON_AddStringToObject(o, "created", p->created);
    add_json_text(o, "architecture", p->architecture);
    add_json_text(o, "search", p->search);
    add_json_text(o, "source", p->source);
    return o;
}

static int own_pairs(xp_patch *p, const char *tensor, const cJSON *arr, int kind,
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
            return fail(err, where, "%s[%zu]: expected %s", path, i,
                        kind == XP_FLIP_SCALE ? "[block, bit] with bit 0 to 15"
                        : kind == XP_FLIP_MASK ? "[block, \"32 hex digits\"]"
                                               : "[row, group]");
        f.index = (int64_t)x;
        int rc = xp_patch_add(p, tensor, &f, err);
        if (rc)
            return rc;
    }
    return XP_OK;
}

static int own_tensor(xp_patch *p, const cJSON *t, const char *where, xp_err *err)
{
    static const char *const allowed[] = {"shape", "rows", "blocks", "scale_bits", "masks",
                                          "row_groups", NULL};
    char path[128];
    snprintf(path, sizeof path, "tensors.%s", t->string);
    if (!cJSON_IsObject(t))
        return fail(err, where, "%s: expected an object of flip lists", path);
    int rc = check_keys(t, allowed, where, path, err);
    if (rc)
        return rc;
    size_t first = p->n_flips;
    static const struct { const char *key; int kind; } lists[] = {
        {"rows", XP_FLIP_ROW},         {"blocks", XP_FLIP_BLOCK}, {"scale_bits", XP_FLIP_SCALE},
        {"masks", XP_FLIP_MASK},       {"row_groups", XP_FLIP_ROW_GROUP}};
    for (size_t l = 0; l < 5; l++) {
        const cJSON *arr = cJSON_GetObjectItemCaseSensitive(t, lists[l].key);
        if (!arr)
            continue;
        char lp[160];
        snprintf(lp, sizeof lp, "%s.%s", path, lists[l].key);
        if (!cJSON_IsArray(arr))
            return fail(err, where, "%s: expected an array", lp);
        if (lists[l].kind == XP_FLIP_ROW || lists[l].kind == XP_FLIP_BLOCK) {
            size_t i = 0;
            for (const cJSON *e = arr->child; e; e = e->next, i++) {
                uint64_t v;
                if (!xp_json_uint(e, MAX_INDEX, &v))
                    return fail(err, where, "%s[%zu]: expected an integer from 0 to %llu", lp,
                                i, (unsigned long long)MAX_INDEX);
                xp_flip f = {.kind = (uint8_t)lists[l].kind, .index = (int64_t)v};
                if ((rc = xp_patch_add(p, t->string, &f, err)))
                    return rc;
            }
        } else if ((rc = own_pairs(p, t->string, arr, lists[l].kind, where, lp, err))) {
            return rc;
        }
    }
    if (p->n_flips == first)
        return fail(err, where, "%s: a tensor without flips", path);
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(t, "shape");
    if (shape) {
        uint64_t ne0, ne1;
        if (!cJSON_IsArray(shape) || cJSON_GetArraySize(shape) != 2 ||
            !xp_json_uint(cJSON_GetArrayItem(shape, 0), XP_PATCH_MAX_COLUMNS, &ne0) ||
            !xp_json_uint(cJSON_GetArrayItem(shape, 1), (uint64_t)1 << 31, &ne1) || !ne0 ||
            !ne1 || ne0 % XP_Q1_0_WEIGHTS)
            return fail(err, where, "%s.shape: expected [columns, rows], columns a positive "
                        "multiple of 128 up to %d", path, XP_PATCH_MAX_COLUMNS);
        xp_patch_tensor *pt = &p->tensors[p->flips[first].tensor];
        pt->ne0 = (int64_t)ne0, pt->ne1 = (int64_t)ne1;
    }
    return XP_OK;
}

static int parse_own(xp_patch *p, const cJSON *root, const char *where, xp_err *err)
{
    static const char *const allowed[] = {"format", "name", "description", "base", "tool",
                                          "created", "source", "search", "flips_sha256",
                                          "stats", "tensors", NULL};
    static const char *const base_allowed[] = {"sha256", "name", "architecture", NULL};
    int rc = check_keys(root, allowed, where, "the top level", err);
    if (rc || (rc = take_string(root, "name", &p->name, where, err)) ||
        (rc = take_string(root, "description", &p->description, where, err)) ||
        (rc = take_string(root, "tool", &p->tool, where, err)) ||
        (rc = take_string(root, "created", &p->created, where, err)) ||
        (rc = take_object(root, "source", &p->source, where, err)) ||
        (rc = take_object(root, "search", &p->search, where, err)))
        return rc;
    const cJSON *base = cJSON_GetObjectItemCaseSensitive(root, "base");
    if (base) {
        if (!cJSON_IsObject(base))
            return fail(err, where, "\"base\" must be an object");
        if ((rc = check_keys(base, base_allowed, where, "base", err)) ||
            (rc = take_string(base, "name", &p->base_model, where, err)) ||
            (rc = take_object(base, "architecture", &p->architecture, where, err)))
            return rc;
        const cJSON *sha = cJSON_GetObjectItemCaseSensitive(base, "sha256");
        if (sha && (!cJSON_IsString(sha) || !is_hex64(sha->valuestring)))
            return fail(err, where, "base.sha256 must be 64 lowercase hex digits");
        if (sha)
            memcpy(p->base_sha256, sha->valuestring, 65);
    }
    const cJSON *tensors = cJSON_GetObjectItemCaseSensitive(root, "tensors");
    if (!cJSON_IsObject(tensors))
        return fail(err, where, "\"tensors\" must be an object mapping tensor names to flips");
    for (const cJSON *t = tensors->child; t; t = t->next)
        if ((rc = own_tensor(p, t, where, err)))
            return rc;
    p->format = XP_PATCH_JSON;
    return XP_OK;
}

/* ---- parsing entry points -------------------------------------------------------- */

static void line_col(const char *text, const char *at, int *line, int *col)
{
    *line = 1, *col = 1;
    for (const char *c = text; c < at; c++) {
        if (*c == '\n')
            ++*line, *col = 1;
        else
            ++*col;
    }
}

static int parse_root(xp_patch *p, const cJSON *root, const char *where, xp_err *err)
{
    if (!cJSON_IsObject(root))
        return fail(err, where, "expected a JSON object (a patch), found another JSON value");
    const cJSON *format = cJSON_GetObjectItemCaseSensitive(root, "format");
    const cJSON *version = cJSON_GetObjectItemCaseSensitive(root, "version");
    if (format) {
        if (!cJSON_IsString(format))
            return fail(err, where, "\"format\" must be a string");
        const char *f = format->valuestring;
        if (strcmp(f, FORMAT_OWN) == 0)
            return parse_own(p, root, where, err);
        if (strcmp(f, FORMAT_V1) == 0)
            return parse_foreign(p, root, false, where, err);
        if (strcmp(f, FORMAT_V2) == 0)
            return parse_foreign(p, root, true, where, err);
        if (strncmp(f, "xorpatch/", 9) == 0)
            return fail(err, where, "format \"%s\" is newer than this xorpatch reads (%s)", f,
                        FORMAT_OWN);
        return fail(err, where, "unknown patch format \"%s\" (expected %s, %s or %s)", f,
                    FORMAT_OWN, FORMAT_V1, FORMAT_V2);
    }
    uint64_t v = 1;
    if (version && !xp_json_uint(version, 1000, &v))
        return fail(err, where, "\"version\" must be a small integer");
    if (v == 1 || v == 2) {
        if (cJSON_GetObjectItemCaseSensitive(root, "steps") &&
            !cJSON_GetObjectItemCaseSensitive(root, "flips"))
            return fail(err, where, "a Neagari manifest, not a patch: give the directory that "
                        "holds it and its patch_*.json files");
        if (!cJSON_GetObjectItemCaseSensitive(root, "flips"))
            return fail(err, where, "not a patch: no \"flips\" (and no \"format\")");
        return parse_foreign(p, root, v == 2, where, err);
    }
    return fail(err, where, "patch version %llu is not one xorpatch reads (1: Bankai rows, 2: "
                "Neagari blocks)", (unsigned long long)v);
}

static int parse_json(xp_patch **out, const char *text, size_t len, const char *where,
                        xp_err *err)
{
    *out = NULL;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, false);
    if (!root) {
        int line, col;
        line_col(text, end && end >= text && end <= text + len ? end : text, &line, &col);
        return fail(err, where, "line %d, column %d: malformed JSON", line, col);
    }
    for (const char *c = end; c < text + len; c++)
        if (*c != ' ' && *c != '\n' && *c != '\r' && *c != '\t') {
            int line, col;
            line_col(text, c, &line, &col);
            cJSON_Delete(root);
            return fail(err, where, "line %d, column %d: unexpected text after the JSON value",
                        line, col);
        }
    xp_patch *p;
    int rc = xp_patch_new(&p, err);
    if (!rc && !(p->path = xp_strdup(where)))
        rc = oom(err, where);
    if (!rc)
        rc = parse_root(p, root, where, err);
    const cJSON *sum = cJSON_GetObjectItemCaseSensitive(root, "flips_sha256");
    char want[65] = "";
    if (!rc && sum) {
        if (!cJSON_IsString(sum) || !is_hex64(sum->valuestring))
            rc = fail(err, where, "\"flips_sha256\" must be 64 lowercase hex digits");
        else
            memcpy(want, sum->valuestring, 65);
    }
    cJSON_Delete(root);
    size_t listed = rc ? 0 : p->n_flips;
    if (!rc && !listed)
        rc = fail(err, where, "the patch has no flips");
    if (!rc)
        rc = xp_patch_normalize(p, err);
    if (!rc && !p->n_flips)
        rc = fail(err, where, "all %zu flips cancel in pairs: the patch is empty", listed);
    char have[65];
    if (!rc && want[0] && !(rc = xp_patch_flips_sha256(p, have, err)) && strcmp(want, have))
        rc = fail(err, where, "the flips do not match \"flips_sha256\" (%.12s..., computed "
                  "%.12s...): the file was edited or damaged", want, have);
    if (rc) {
        xp_patch_free(p);
        return rc;
    }
    *out = p;
    return XP_OK;
}

int xp_patch_parse(xp_patch **out, const void *buf, size_t len, const char *where,
                   xp_err *err)
{
    *out = NULL;
    if (len >= 4 && memcmp(buf, "GGUF", 4) == 0)
        return fail(err, where, "a GGUF model, not a patch");
    if (xp_patch_is_binary(buf, len))
        return xp_patch_decode(out, buf, len, where, err);
    return parse_json(out, buf, len, where, err);
}

/* The file's name without folder and extension: a patch's name when it gives none. */
static char *stem(const char *path)
{
    const char *b = strrchr(path, '/');
    b = b ? b + 1 : path;
    const char *dot = strrchr(b, '.');
    return xp_strndup(b, dot && dot != b ? (size_t)(dot - b) : strlen(b));
}

int xp_patch_read(xp_patch **out, const char *path, xp_err *err)
{
    *out = NULL;
    struct stat st;
    if (stat(path, &st) == 0 && st.st_size > MAX_FILE)
        return fail(err, path, "%lld bytes: larger than any patch (at most %d MiB)",
                    (long long)st.st_size, MAX_FILE >> 20);
    char *buf;
    size_t len;
    int rc = xp_read_file(path, &buf, &len, err);
    if (rc)
        return rc;
    rc = xp_patch_parse(out, buf, len, path, err);
    free(buf);
    if (!rc && !(*out)->name && !((*out)->name = stem(path))) {
        xp_patch_free(*out);
        *out = NULL;
        return oom(err, path);
    }
    return rc;
}

/* ---- Neagari patch directories ---------------------------------------------------- */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool is_patch_file(const char *name)
{
    size_t n = strlen(name);
    return strncmp(name, "patch_", 6) == 0 && n > 11 && strcmp(name + n - 5, ".json") == 0;
}

/* The patch_*.json names of dir, sorted. */
static int list_dir(const char *dir, char ***names, size_t *n, xp_err *err)
{
    DIR *d = opendir(dir);
    if (!d)
        return xp_err_set(err, XP_EIO, "%s: cannot open the directory: %s", dir,
                          strerror(errno));
    char **v = NULL;
    size_t k = 0;
    int rc = XP_OK;
    for (struct dirent *e; (e = readdir(d)) && !rc;) {
        if (!is_patch_file(e->d_name))
            continue;
        char **nv = xp_realloc_array(v, k + 1, sizeof *nv);
        if (!nv || !(nv[k] = xp_strdup(e->d_name))) {
            v = nv ? nv : v;
            rc = oom(err, dir);
            break;
        }
        v = nv;
        k++;
    }
    closedir(d);
    if (rc) {
        for (size_t i = 0; i < k; i++)
            free(v[i]);
        free(v);
        return rc;
    }
    if (k)
        qsort(v, k, sizeof *v, cmp_str);
    *names = v;
    *n = k;
    return XP_OK;
}

/* Moves the manifest's steps to the front in pipeline order; counts steps whose patch
 * file is absent. */
static int order_by_manifest(const char *dir, char **names, size_t n, size_t *missing,
                             xp_err *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/manifest.json", dir);
    struct stat st;
    if (stat(path, &st) != 0)
        return XP_OK;
    char *text;
    size_t len;
    int rc = xp_read_file(path, &text, &len, err);
    if (rc)
        return rc;
    cJSON *m = cJSON_ParseWithLength(text, len);
    free(text);
    const cJSON *steps = cJSON_GetObjectItemCaseSensitive(m, "steps");
    if (!cJSON_IsObject(m) || (steps && !cJSON_IsArray(steps))) {
        cJSON_Delete(m);
        return fail(err, path, "expected a JSON object whose \"steps\" is an array");
    }
    size_t placed = 0, i = 0;
    for (const cJSON *s = steps ? steps->child : NULL; s; s = s->next, i++) {
        const cJSON *pf = cJSON_GetObjectItemCaseSensitive(s, "patch_file");
        if (!cJSON_IsString(pf)) {
            cJSON_Delete(m);
            return fail(err, path, "steps[%zu]: \"patch_file\" must be a string", i);
        }
        const char *base = strrchr(pf->valuestring, '/');
        base = base ? base + 1 : pf->valuestring;
        size_t at = n;
        for (size_t j = placed; j < n && at == n; j++)
            if (strcmp(names[j], base) == 0)
                at = j;
        if (at == n) {
            ++*missing;
            continue;
        }
        char *hit = names[at];
        memmove(names + placed + 1, names + placed, (at - placed) * sizeof *names);
        names[placed++] = hit;
    }
    cJSON_Delete(m);
    return XP_OK;
}

int xp_patch_read_all(xp_patch ***out, size_t *n, size_t *n_missing, const char *path,
                      xp_err *err)
{
    *out = NULL;
    *n = 0;
    *n_missing = 0;
    struct stat st;
    if (stat(path, &st) != 0)
        return xp_err_set(err, XP_EIO, "%s: cannot open: %s", path, strerror(errno));
    if (!S_ISDIR(st.st_mode)) {
        xp_patch **one = malloc(sizeof *one);
        if (!one)
            return oom(err, path);
        int rc = xp_patch_read(&one[0], path, err);
        if (rc) {
            free(one);
            return rc;
        }
        *out = one;
        *n = 1;
        return XP_OK;
    }
    char **names = NULL;
    size_t k = 0;
    int rc = list_dir(path, &names, &k, err);
    if (rc)
        return rc;
    if (!k)
        rc = xp_err_set(err, XP_ENOTFOUND, "%s: a patch directory must hold patch_*.json files "
                        "(and a manifest.json giving their order); this one has none", path);
    if (!rc)
        rc = order_by_manifest(path, names, k, n_missing, err);
    xp_patch **ps = rc ? NULL : xp_calloc(k, sizeof *ps);
    if (!rc && !ps)
        rc = oom(err, path);
    for (size_t i = 0; i < k && !rc; i++) {
        char file[4096];
        snprintf(file, sizeof file, "%s/%s", path, names[i]);
        rc = xp_patch_read(&ps[i], file, err);
    }
    for (size_t i = 0; i < k; i++)
        free(names[i]);
    free(names);
    if (rc) {
        xp_patch_list_free(ps, k);
        return rc;
    }
    *out = ps;
    *n = k;
    return XP_OK;
}

/* ---- writing ------------------------------------------------------------------- */

static cJSON *own_json(const xp_patch *p)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "format", FORMAT_OWN);
    if (p->name)
        cJSON_AddStringToObject(o, "name", p->name);
    if (p->description)
        cJSON_AddStringToObject(o, "description", p->description);
    cJSON *base = cJSON_AddObjectToObject(o, "base");
    if (p->base_sha256[0])
        cJSON_AddStringToObject(base, "sha256", p->base_sha256);
    if (p->base_model)
        cJSON_AddStringToObject(base, "name", p->base_model);
    add_json_text(base, "architecture", p->architecture);
    if (p->tool)
        cJSON_AddStringToObject(o, "tool", p->tool);
    if (p->created)
        cJSON_AddStringToObject(o, "created", p->created);
    add_json_text(o, "source", p->source);
    add_json_text(o, "search", p->search);
    xp_patch_stats s;
    xp_patch_total_stats(p, &s);
    cJSON *st = cJSON_AddObjectToObject(o, "stats");
    cJSON_AddNumberToObject(st, "flips", (double)s.flips);
    cJSON_AddNumberToObject(st, "rows", (double)s.rows);
    cJSON_AddNumberToObject(st, "blocks", (double)s.blocks);
    cJSON_AddNumberToObject(st, "scale_bits", (double)s.scale_bits);
    cJSON_AddNumberToObject(st, "masks", (double)s.masks);
    cJSON_AddNumberToObject(st, "row_groups", (double)s.row_groups);
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
        static const char *const keys[] = {"rows", "blocks", "scale_bits", "masks",
                                           "row_groups"};
        cJSON *lists[5] = {0};
        for (; i < p->n_flips && p->flips[i].tensor == t; i++) {
            const xp_flip *f = &p->flips[i];
            if (!lists[f->kind])
                cJSON_AddItemToObject(to, keys[f->kind], lists[f->kind] = cJSON_CreateArray());
            cJSON *e;
            if (f->kind == XP_FLIP_ROW || f->kind == XP_FLIP_BLOCK) {
                e = cJSON_CreateNumber((double)f->index);
            } else {
                e = cJSON_CreateArray();
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
            }
            cJSON_AddItemToArray(lists[f->kind], e);
        }
    }
    return o;
}

/* Layer and MLX / GGUF projection of a flip's tensor, or an error saying why it does not
 * fit a Bankai / Neagari file. */
static int layer_proj(const xp_patch *p, const xp_flip *f, const char *fmt, uint32_t *layer,
                      int *proj, xp_err *err)
{
    *proj = xp_tensor_name_parse(p->tensors[f->tensor].name, layer);
    if (*proj >= 0)
        return XP_OK;
    char names[96];
    size_t n = 0;
    for (int i = 0; i < XP_N_PROJ; i++)
        n += (size_t)snprintf(names + n, sizeof names - n, "%s%s", i ? "," : "",
                              xp_proj_tensor(xp_proj_at_file_order(i)));
    return xp_err_set(err, XP_EINVAL,
                      "%s: flip on '%s' does not fit %s, which names only "
                      "blk.N.{%s}.weight",
                      xp_patch_where(p), p->tensors[f->tensor].name, fmt, names);
}

static int unfit(const xp_patch *p, const xp_flip *f, const char *fmt, const char *why,
                 xp_err *err)
{
    char d[160];
    xp_flip_describe(p, f, d, sizeof d);
    return xp_err_set(err, XP_EINVAL, "%s: flip %s does not fit %s: %s", xp_patch_where(p), d,
                      fmt, why);
}

static cJSON *foreign_flip_json(uint32_t layer, const char *proj)
{
    cJSON *e = cJSON_CreateObject();
    cJSON_AddNumberToObject(e, "layer", layer);
    cJSON_AddStringToObject(e, "proj", proj);
    return e;
}

static int v1_json(const xp_patch *p, cJSON **out, xp_err *err)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "version", 1);
    cJSON_AddStringToObject(o, "format", FORMAT_V1);
    cJSON_AddStringToObject(o, "name", p->name ? p->name : "patch");
    cJSON_AddStringToObject(o, "description", p->description ? p->description : "");
    cJSON_AddStringToObject(o, "base_model", p->base_model ? p->base_model : "");
    cJSON *fl = cJSON_AddArrayToObject(o, "flips");
    for (size_t i = 0; i < p->n_flips; i++) {
        const xp_flip *f = &p->flips[i];
        uint32_t layer;
        int proj, rc;
        if ((rc = layer_proj(p, f, FORMAT_V1, &layer, &proj, err))) {
            cJSON_Delete(o);
            return rc;
        }
        int64_t per = p->tensors[f->tensor].ne0 / XP_Q1_0_WEIGHTS;
        if (f->kind == XP_FLIP_SCALE || f->kind == XP_FLIP_MASK ||
            (f->kind == XP_FLIP_BLOCK && !per)) {
            cJSON_Delete(o);
            return unfit(p, f, FORMAT_V1, f->kind == XP_FLIP_BLOCK
                         ? "a block needs the tensor's row length (give the model)"
                         : "it holds only row flips and blocks within rows", err);
        }
        cJSON *e = foreign_flip_json(layer, xp_proj_info_of(proj)->name[XP_NAMING_MLX]);
        if (f->kind == XP_FLIP_ROW) {
            cJSON_AddNumberToObject(e, "row", (double)f->index);
        } else if (f->kind == XP_FLIP_ROW_GROUP) {
            cJSON_AddNumberToObject(e, "row", (double)f->index);
            cJSON_AddNumberToObject(e, "group", f->group);
        } else {
            cJSON_AddNumberToObject(e, "row", (double)(f->index / per));
            cJSON_AddNumberToObject(e, "group", (double)(f->index % per));
        }
        cJSON_AddItemToArray(fl, e);
    }
    xp_patch_stats s;
    xp_patch_total_stats(p, &s);
    cJSON *st = cJSON_AddObjectToObject(o, "stats");
    cJSON_AddNumberToObject(st, "n_flips", cJSON_GetArraySize(fl));
    if (s.bits_known)
        cJSON_AddNumberToObject(st, "bits_flipped", (double)s.bits);
    /* Bankai's own count: 12 bytes per flip in its binary form */
    cJSON_AddNumberToObject(st, "size_bytes", 12.0 * cJSON_GetArraySize(fl));
    add_json_text(o, "metadata", p->search);
    *out = o;
    return XP_OK;
}

static int v2_json(const xp_patch *p, cJSON **out, xp_err *err)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "version", 2);
    cJSON_AddStringToObject(o, "format", FORMAT_V2);
    cJSON_AddStringToObject(o, "base_model", p->base_model ? p->base_model : "");
    cJSON *search = p->search ? cJSON_Parse(p->search) : NULL;
    static const char *const keys[] = {"domain", "method", "search_layers", "iterations"};
    for (size_t k = 0; k < 4; k++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(search, keys[k]);
        if (v)
            cJSON_AddItemToObject(o, keys[k], cJSON_Duplicate(v, true));
    }
    cJSON_Delete(search);
    cJSON *fl = cJSON_AddArrayToObject(o, "flips");
    uint64_t layers_seen[4] = {0}; /* layers < 256 for search_layers */
    for (size_t i = 0; i < p->n_flips; i++) {
        const xp_flip *f = &p->flips[i];
        uint32_t layer;
        int proj, rc;
        if ((rc = layer_proj(p, f, FORMAT_V2, &layer, &proj, err))) {
            cJSON_Delete(o);
            return rc;
        }
        int64_t per = p->tensors[f->tensor].ne0 / XP_Q1_0_WEIGHTS;
        if (f->kind == XP_FLIP_MASK ||
            ((f->kind == XP_FLIP_ROW || f->kind == XP_FLIP_ROW_GROUP) && !per)) {
            cJSON_Delete(o);
            return unfit(p, f, FORMAT_V2, f->kind == XP_FLIP_MASK
                         ? "it holds only whole blocks and scale bits"
                         : "rows become blocks only once the tensor's row length is known "
                           "(give the model)", err);
        }
        if (layer < 256)
            layers_seen[layer / 64] |= (uint64_t)1 << (layer % 64);
        const char *projname = xp_proj_info_of(proj)->name[XP_NAMING_NEAGARI];
        int64_t first = f->index, last = f->index;
        if (f->kind == XP_FLIP_ROW)
            first = f->index * per, last = first + per - 1;
        for (int64_t b = first; b <= last; b++) {
            cJSON *e = foreign_flip_json(layer, projname);
            cJSON_AddNumberToObject(e, "group", (double)b);
            cJSON_AddStringToObject(e, "type", f->kind == XP_FLIP_SCALE ? "scale" : "group");
            if (f->kind == XP_FLIP_SCALE)
                cJSON_AddNumberToObject(e, "bit", f->bit);
            cJSON_AddItemToArray(fl, e);
        }
    }
    if (!cJSON_GetObjectItemCaseSensitive(o, "search_layers")) {
        cJSON *sl = cJSON_AddArrayToObject(o, "search_layers");
        for (int l = 0; l < 256; l++)
            if (layers_seen[l / 64] >> (l % 64) & 1)
                cJSON_AddItemToArray(sl, cJSON_CreateNumber(l));
    }
    cJSON_AddNumberToObject(o, "total_flips", cJSON_GetArraySize(fl));
    *out = o;
    return XP_OK;
}

static int to_json(const xp_patch *p, int format, char **text, xp_err *err)
{
    cJSON *o = NULL;
    int rc = XP_OK;
    if (format == XP_PATCH_JSON)
        o = own_json(p);
    else if (format == XP_PATCH_BANKAI_V1)
        rc = v1_json(p, &o, err);
    else if (format == XP_PATCH_NEAGARI_V2)
        rc = v2_json(p, &o, err);
    else
        return xp_err_set(err, XP_EINVAL, "patch: format %d is not a JSON format", format);
    if (rc)
        return rc;
    if (format == XP_PATCH_JSON) {
        uint8_t *bin;
        size_t len;
        if ((rc = xp_patch_encode(p, 0, &bin, &len, err))) {
            cJSON_Delete(o);
            return rc;
        }
        char hex[65];
        xp_sha256_hex(bin, len, hex);
        free(bin);
        cJSON_AddStringToObject(o, "flips_sha256", hex);
    }
    char *s = o ? cJSON_Print(o) : NULL;
    cJSON_Delete(o);
    if (!s)
        return oom(err, xp_patch_where(p));
    /* a final newline, as text files have */
    size_t n = strlen(s);
    char *t = realloc(s, n + 2);
    if (!t) {
        free(s);
        return oom(err, xp_patch_where(p));
    }
    t[n] = '\n', t[n + 1] = '\0';
    *text = t;
    return XP_OK;
}

int xp_patch_serialize(const xp_patch *p, int format, uint8_t **buf, size_t *len, xp_err *err)
{
    if (!p->canonical)
        return xp_err_set(err, XP_EINVAL, "%s: normalise the patch before writing it",
                          xp_patch_where(p));
    if (!p->n_flips)
        return xp_err_set(err, XP_EINVAL, "%s: the patch is empty: nothing to write",
                          xp_patch_where(p));
    if (format == XP_PATCH_BINARY)
        return xp_patch_encode(p, XP_BIN_BASE | XP_BIN_NAME | XP_BIN_PROVENANCE | XP_BIN_SHAPES,
                               buf, len, err);
    if (format == XP_PATCH_BINARY_COMPACT)
        return xp_patch_encode(p, XP_BIN_BASE | XP_BIN_NAME | XP_BIN_SHAPES, buf, len, err);
    char *text;
    int rc = to_json(p, format, &text, err);
    if (rc)
        return rc;
    *buf = (uint8_t *)text;
    *len = strlen(text);
    return XP_OK;
}

int xp_patch_write(const xp_patch *p, int format, const char *path, xp_err *err)
{
    uint8_t *buf;
    size_t len;
    int rc = xp_patch_serialize(p, format, &buf, &len, err);
    if (rc)
        return rc;
    rc = xp_write_file_atomic(path, buf, len, err);
    free(buf);
    return rc;
}

static const char *const format_names[] = {"xorpatch", "binary", "binary-compact", "bankai-v1",
                                           "neagari-v2"};

const char *xp_patch_format_name(int format)
{
    return format >= 0 && format <= XP_PATCH_NEAGARI_V2 ? format_names[format] : "?";
}

int xp_patch_format_from_name(const char *name)
{
    for (int i = 0; i <= XP_PATCH_NEAGARI_V2; i++)
        if (strcmp(name, format_names[i]) == 0)
            return i;
    return -1;
}
