/* What Bankai v1 and Neagari v2 patch files share (patch_foreign.h): reading the top
 * level and its flips, the layer and projection that name a flip's tensor, and the
 * errors for a flip that does not fit them. */
#include <stdio.h>

#include "patch/patch_foreign.h"

int xp_foreign_read(xp_patch *p, const cJSON *root, int format, xp_foreign_part_fn search,
                    xp_foreign_flip_fn flip, const char *where, xp_err *err)
{
    const cJSON *flips = cJSON_GetObjectItemCaseSensitive(root, "flips");
    if (!cJSON_IsArray(flips))
        return xp_json_fail(err, where, "\"flips\" must be an array of flips");
    int rc;
    if ((rc = xp_json_take_string(root, "name", &p->name, where, err)) ||
        (rc = xp_json_take_string(root, "description", &p->description, where, err)) ||
        (rc = xp_json_take_string(root, "base_model", &p->base_model, where, err)) ||
        (rc = search(p, root, where, err)))
        return rc;
    size_t i = 0;
    for (const cJSON *f = flips->child; f && !rc; f = f->next, i++)
        rc = flip(p, f, i, where, err);
    if (!rc)
        p->format = format;
    return rc;
}

int xp_foreign_find_proj(const char *s, bool mlx)
{
    int k = xp_proj_find(s, XP_NAMING_GGUF);
    if (k < 0)
        k = xp_proj_find(s, XP_NAMING_NEAGARI);
    if (k < 0 && mlx)
        k = xp_proj_find(s, XP_NAMING_MLX);
    return k;
}

const char *xp_foreign_proj_list(int naming, char *buf, size_t size)
{
    size_t n = 0;
    for (int i = 0; i < XP_N_PROJ && n < size; i++) {
        const char *sep = i == 0 ? "" : i + 1 < XP_N_PROJ ? ", " : " or ";
        n += (size_t)snprintf(buf + n, size - n, "%s%s", sep, xp_proj_info_of(i)->name[naming]);
    }
    return buf;
}

int xp_foreign_read_flip(const cJSON *f, size_t i, bool mlx, const char *key, char path[48],
                         char tensor[XP_TENSOR_NAME_MAX], const char *where, xp_err *err)
{
    snprintf(path, 48, "flips[%zu]", i);
    if (!cJSON_IsObject(f))
        return xp_json_fail(
            err, where, "%s: expected an object with \"layer\", \"proj\" and \"%s\"", path, key);
    uint64_t layer;
    int rc = xp_json_member_uint(f, "layer", XP_PATCH_MAX_LAYER, &layer, where, path, err);
    if (rc)
        return rc;
    const cJSON *proj = cJSON_GetObjectItemCaseSensitive(f, "proj");
    if (!cJSON_IsString(proj))
        return xp_json_fail(err, where, "%s: \"proj\" must be a string naming a projection", path);
    int k = xp_foreign_find_proj(proj->valuestring, mlx);
    char names[160];
    if (k < 0)
        return xp_json_fail(
            err, where, "%s: unknown projection \"%s\" (expected %s)", path, proj->valuestring,
            xp_foreign_proj_list(mlx ? XP_NAMING_MLX : XP_NAMING_NEAGARI, names, sizeof names));
    xp_tensor_name(tensor, XP_TENSOR_NAME_MAX, (uint32_t)layer, xp_proj_tensor(k));
    return XP_OK;
}

int xp_foreign_place(const xp_patch *p, const xp_flip *f, const char *fmt, const char *unfit,
                     uint32_t *layer, int *proj, xp_err *err)
{
    *proj = xp_tensor_name_parse(p->tensors[f->tensor].name, layer);
    if (*proj < 0) {
        char names[96];
        size_t n = 0;
        for (int i = 0; i < XP_N_PROJ; i++)
            n += (size_t)snprintf(names + n, sizeof names - n, "%s%s", i ? "," : "",
                                  xp_proj_tensor(xp_proj_at_file_order(i)));
        return xp_err_set(err, XP_EINVAL,
                          "%s: flip on '%s' does not fit %s, which names only blk.N.{%s}.weight",
                          xp_patch_where(p), p->tensors[f->tensor].name, fmt, names);
    }
    if (!unfit)
        return XP_OK;
    char d[160];
    xp_flip_describe(p, f, d, sizeof d);
    return xp_err_set(err, XP_EINVAL, "%s: flip %s does not fit %s: %s", xp_patch_where(p), d, fmt,
                      unfit);
}

cJSON *xp_foreign_flip_json(uint32_t layer, const char *proj)
{
    cJSON *e = cJSON_CreateObject();
    cJSON_AddNumberToObject(e, "layer", layer);
    cJSON_AddStringToObject(e, "proj", proj);
    return e;
}
