/* Neagari's minimal patch format: a JSON list of [layer, projection, group] triples, as its
 * 1.7B demo publishes its verbatim patch, each a block flip named as in bankai_group_xor_v2
 * (the projection by GGUF name, "ffn_gate.weight" or "ffn_gate"; the group the block's
 * index within the tensor). Nothing else is in it: no name, base or search. Written as
 * blocks, rows as their blocks once the row length is known; scale bits and masks are
 * refused. */
#include <stdio.h>

#include "patch/patch_foreign.h"

#define MAX_INDEX ((uint64_t)XP_PATCH_MAX_INDEX)
#define FORMAT_TEXT "Neagari's [layer, projection, group] list"

static int read_triple(xp_patch *p, const cJSON *e, size_t i, const char *where, xp_err *err)
{
    int n = cJSON_IsArray(e) ? cJSON_GetArraySize(e) : -1;
    if (n != 3) {
        char found[48];
        snprintf(found, sizeof found, n < 0 ? "another JSON value" : "%d elements", n);
        return xp_json_fail(err, where,
                            "[%zu]: expected a triple [layer, \"ffn_gate.weight\", group], "
                            "found %s",
                            i, found);
    }
    const cJSON *l = cJSON_GetArrayItem(e, 0), *proj = cJSON_GetArrayItem(e, 1),
                *g = cJSON_GetArrayItem(e, 2);
    uint64_t layer, group;
    if (!xp_json_uint(l, XP_PATCH_MAX_LAYER, &layer))
        return xp_json_fail(err, where, "[%zu][0]: the layer must be an integer from 0 to %d", i,
                            XP_PATCH_MAX_LAYER);
    int k = cJSON_IsString(proj) ? xp_foreign_find_proj(proj->valuestring, false) : -1;
    char names[160];
    if (k < 0)
        return xp_json_fail(err, where, "[%zu][1]: %s%s%s is not a projection (expected %s)", i,
                            cJSON_IsString(proj) ? "\"" : "",
                            cJSON_IsString(proj) ? proj->valuestring : "this",
                            cJSON_IsString(proj) ? "\"" : "",
                            xp_foreign_proj_list(XP_NAMING_NEAGARI, names, sizeof names));
    if (!xp_json_uint(g, MAX_INDEX, &group))
        return xp_json_fail(err, where,
                            "[%zu][2]: the group (a block's index in the tensor) must be an "
                            "integer from 0 to %llu",
                            i, (unsigned long long)MAX_INDEX);
    char tensor[XP_TENSOR_NAME_MAX];
    xp_tensor_name(tensor, sizeof tensor, (uint32_t)layer, xp_proj_tensor(k));
    return xp_patch_add_block(p, tensor, (int64_t)group, err);
}

int xp_patch_neagari_list_read(xp_patch *p, const cJSON *root, const char *where, xp_err *err)
{
    size_t i = 0;
    int rc = XP_OK;
    for (const cJSON *e = root->child; e && !rc; e = e->next, i++)
        rc = read_triple(p, e, i, where, err);
    if (!rc)
        p->format = XP_PATCH_NEAGARI_LIST;
    return rc;
}

/* Why the list cannot hold a flip (per: the tensor's blocks per row), or NULL. */
static const char *unfit(const xp_flip *f, int64_t per)
{
    if (f->kind == XP_FLIP_SCALE || f->kind == XP_FLIP_MASK)
        return "it holds only whole blocks";
    if ((f->kind == XP_FLIP_ROW || f->kind == XP_FLIP_ROW_GROUP) && !per)
        return "rows become blocks only once the tensor's row length is known (give the model)";
    return NULL;
}

int xp_patch_neagari_list_write(const xp_patch *p, cJSON **out, xp_err *err)
{
    cJSON *list = cJSON_CreateArray();
    for (size_t i = 0; i < p->n_flips; i++) {
        const xp_flip *f = &p->flips[i];
        int64_t per = p->tensors[f->tensor].ne0 / XP_Q1_0_WEIGHTS;
        uint32_t layer;
        int proj;
        int rc = xp_foreign_place(p, f, FORMAT_TEXT, unfit(f, per), &layer, &proj, err);
        if (rc) {
            cJSON_Delete(list);
            return rc;
        }
        const char *name = xp_proj_info_of(proj)->name[XP_NAMING_NEAGARI];
        int64_t first = f->kind == XP_FLIP_ROW ? f->index * per : f->index;
        int64_t last = f->kind == XP_FLIP_ROW ? first + per - 1 : first;
        for (int64_t b = first; b <= last; b++) {
            cJSON *e = cJSON_CreateArray();
            cJSON_AddItemToArray(e, cJSON_CreateNumber(layer));
            cJSON_AddItemToArray(e, cJSON_CreateString(name));
            cJSON_AddItemToArray(e, cJSON_CreateNumber((double)b));
            cJSON_AddItemToArray(list, e);
        }
    }
    *out = list;
    return XP_OK;
}
