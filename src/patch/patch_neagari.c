/* Neagari's patch format, bankai_group_xor_v2: block flips and fp16 scale-bit flips
 * named by layer, GGUF projection name ("ffn_gate.weight") and the block's index within
 * the tensor, with the search's domain, method, layers and iterations beside them; either
 * one file or a directory of patch_*.json files whose manifest.json gives their order.
 * Rows are written as their blocks once the row length is known; masks are refused. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/alloc.h"
#include "core/utf8.h"
#include "patch/patch_foreign.h"

#define MAX_INDEX ((uint64_t)XP_PATCH_MAX_INDEX)

/* The top-level keys that say how a patch was found: kept as the patch's search. */
static const char *const search_keys[] = {"domain", "method", "search_layers", "iterations"};
#define N_SEARCH_KEYS (sizeof search_keys / sizeof *search_keys)

static int read_flip(xp_patch *p, const cJSON *f, size_t i, const char *where, xp_err *err)
{
    char path[48], tensor[XP_TENSOR_NAME_MAX];
    int rc = xp_foreign_read_flip(f, i, false, "group", path, tensor, where, err);
    uint64_t group, bit = 0;
    if (rc || (rc = xp_json_member_uint(f, "group", MAX_INDEX, &group, where, path, err)))
        return rc;
    xp_flip fl = {.kind = XP_FLIP_BLOCK, .index = (int64_t)group};
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(f, "type");
    if (type && !cJSON_IsString(type))
        return xp_json_fail(err, where, "%s: \"type\" must be \"group\" or \"scale\"", path);
    if (type && strcmp(type->valuestring, "scale") == 0) {
        if (!cJSON_GetObjectItemCaseSensitive(f, "bit"))
            return xp_json_fail(err, where, "%s: a scale flip needs \"bit\" (0 to 15)", path);
        if (!xp_json_uint(cJSON_GetObjectItemCaseSensitive(f, "bit"), 15, &bit))
            return xp_json_fail(err, where,
                                "%s: \"bit\" must be an integer from 0 to 15 (a bit of the "
                                "block's fp16 scale)",
                                path);
        fl.kind = XP_FLIP_SCALE;
        fl.bit = (uint8_t)bit;
    } else if (type && strcmp(type->valuestring, "group") != 0) {
        return xp_json_fail(err, where,
                            "%s: unknown flip type \"%s\" (expected \"group\" or \"scale\")", path,
                            type->valuestring);
    }
    return xp_patch_add(p, tensor, &fl, err);
}

/* Neagari's search description: the keys that say how the patch was found, and the last
 * fitness of its history. */
static int read_search(xp_patch *p, const cJSON *root, const char *where, xp_err *err)
{
    cJSON *s = cJSON_CreateObject();
    if (!s)
        return xp_json_oom(err, where);
    for (size_t i = 0; i < N_SEARCH_KEYS; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, search_keys[i]);
        if (v)
            cJSON_AddItemToObject(s, search_keys[i], cJSON_Duplicate(v, true));
    }
    const cJSON *hist = cJSON_GetObjectItemCaseSensitive(root, "fitness_history");
    int n = cJSON_IsArray(hist) ? cJSON_GetArraySize(hist) : 0;
    if (n && cJSON_IsNumber(cJSON_GetArrayItem(hist, n - 1)))
        cJSON_AddNumberToObject(s, "final_fitness", cJSON_GetArrayItem(hist, n - 1)->valuedouble);
    if (cJSON_GetArraySize(s) && !(p->search = xp_json_print(s))) {
        cJSON_Delete(s);
        return xp_json_oom(err, where);
    }
    cJSON_Delete(s);
    return XP_OK;
}

int xp_patch_neagari_read(xp_patch *p, const cJSON *root, const char *where, xp_err *err)
{
    return xp_foreign_read(p, root, XP_PATCH_NEAGARI_V2, read_search, read_flip, where, err);
}

/* Why Neagari v2 cannot hold a flip (per: the tensor's blocks per row), or NULL. */
static const char *unfit(const xp_flip *f, int64_t per)
{
    if (f->kind == XP_FLIP_MASK)
        return "it holds only whole blocks and scale bits";
    if ((f->kind == XP_FLIP_ROW || f->kind == XP_FLIP_ROW_GROUP) && !per)
        return "rows become blocks only once the tensor's row length is known (give the model)";
    return NULL;
}

int xp_patch_neagari_write(const xp_patch *p, cJSON **out, xp_err *err)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "version", 2);
    cJSON_AddStringToObject(o, "format", XP_PATCH_FORMAT_NEAGARI);
    cJSON_AddItemToObject(o, "base_model", xp_json_string(p->base_model ? p->base_model : ""));
    cJSON *search = p->search ? cJSON_Parse(p->search) : NULL;
    for (size_t k = 0; k < N_SEARCH_KEYS; k++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(search, search_keys[k]);
        if (v)
            cJSON_AddItemToObject(o, search_keys[k], cJSON_Duplicate(v, true));
    }
    cJSON_Delete(search);
    cJSON *fl = cJSON_AddArrayToObject(o, "flips");
    uint64_t layers_seen[4] = {0}; /* layers < 256 for search_layers */
    for (size_t i = 0; i < p->n_flips; i++) {
        const xp_flip *f = &p->flips[i];
        int64_t per = p->tensors[f->tensor].ne0 / XP_Q1_0_WEIGHTS;
        uint32_t layer;
        int proj;
        int rc = xp_foreign_place(p, f, XP_PATCH_FORMAT_NEAGARI, unfit(f, per), &layer, &proj, err);
        if (rc) {
            cJSON_Delete(o);
            return rc;
        }
        if (layer < 256)
            layers_seen[layer / 64] |= (uint64_t)1 << (layer % 64);
        const char *projname = xp_proj_info_of(proj)->name[XP_NAMING_NEAGARI];
        int64_t first = f->index, last = f->index;
        if (f->kind == XP_FLIP_ROW)
            first = f->index * per, last = first + per - 1;
        for (int64_t b = first; b <= last; b++) {
            cJSON *e = xp_foreign_flip_json(layer, projname);
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

/* ---- patch directories ------------------------------------------------------------ */

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
        return xp_err_set(err, XP_EIO, "%s: cannot open the directory: %s", dir, strerror(errno));
    char **v = NULL;
    size_t k = 0;
    int rc = XP_OK;
    for (struct dirent *e; (e = readdir(d)) && !rc;) {
        if (!is_patch_file(e->d_name))
            continue;
        char **nv = xp_realloc_array(v, k + 1, sizeof *nv);
        if (!nv || !(nv[k] = xp_strdup(e->d_name))) {
            v = nv ? nv : v;
            rc = xp_json_oom(err, dir);
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
static int order_by_manifest(const char *dir, char **names, size_t n, size_t *missing, xp_err *err)
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
        return xp_json_fail(err, path, "expected a JSON object whose \"steps\" is an array");
    }
    size_t placed = 0, i = 0;
    for (const cJSON *s = steps ? steps->child : NULL; s; s = s->next, i++) {
        const cJSON *pf = cJSON_GetObjectItemCaseSensitive(s, "patch_file");
        if (!cJSON_IsString(pf)) {
            cJSON_Delete(m);
            return xp_json_fail(err, path, "steps[%zu]: \"patch_file\" must be a string", i);
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

int xp_patch_neagari_dir(const char *dir, char ***names, size_t *n, size_t *missing, xp_err *err)
{
    *names = NULL;
    *n = 0;
    int rc = list_dir(dir, names, n, err);
    if (!rc && !*n)
        rc = xp_err_set(err, XP_ENOTFOUND,
                        "%s: a patch directory must hold patch_*.json files "
                        "(and a manifest.json giving their order); this one has none",
                        dir);
    if (!rc)
        rc = order_by_manifest(dir, *names, *n, missing, err);
    if (rc) {
        for (size_t i = 0; i < *n; i++)
            free((*names)[i]);
        free(*names);
        *names = NULL;
        *n = 0;
    }
    return rc;
}
