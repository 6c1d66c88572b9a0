/* Bankai's patch format, bankai_row_xor_v1 (and its older variants without "format"):
 * row flips named by layer, MLX projection name and row, optionally with a "group", the
 * block within the row, which becomes a block flip once the row length is known. Written
 * with Bankai's own stats; a patch holding anything but rows and blocks within rows is
 * refused, naming the first flip that does not fit. */
#include "core/utf8.h"
#include "patch/patch_foreign.h"

#define MAX_INDEX ((uint64_t)XP_PATCH_MAX_INDEX)

static int read_flip(xp_patch *p, const cJSON *f, size_t i, const char *where, xp_err *err)
{
    char path[48], tensor[XP_TENSOR_NAME_MAX];
    int rc = xp_foreign_read_flip(f, i, true, "row", path, tensor, where, err);
    uint64_t row, group;
    if (rc || (rc = xp_json_member_uint(f, "row", MAX_INDEX, &row, where, path, err)))
        return rc;
    xp_flip fl = {.kind = XP_FLIP_ROW, .index = (int64_t)row};
    if (cJSON_GetObjectItemCaseSensitive(f, "group")) {
        if ((rc = xp_json_member_uint(f, "group", UINT32_MAX, &group, where, path, err)))
            return rc;
        fl.kind = XP_FLIP_ROW_GROUP;
        fl.group = (uint32_t)group;
    }
    return xp_patch_add(p, tensor, &fl, err);
}

/* Bankai's search description: its "metadata" object. */
static int read_search(xp_patch *p, const cJSON *root, const char *where, xp_err *err)
{
    return xp_json_take_object(root, "metadata", &p->search, where, err);
}

int xp_patch_bankai_read(xp_patch *p, const cJSON *root, const char *where, xp_err *err)
{
    return xp_foreign_read(p, root, XP_PATCH_BANKAI_V1, read_search, read_flip, where, err);
}

/* Why Bankai v1 cannot hold a flip (per: the tensor's blocks per row), or NULL. */
static const char *unfit(const xp_flip *f, int64_t per)
{
    if (f->kind == XP_FLIP_SCALE || f->kind == XP_FLIP_MASK)
        return "it holds only row flips and blocks within rows";
    if (f->kind == XP_FLIP_BLOCK && !per)
        return "a block needs the tensor's row length (give the model)";
    return NULL;
}

int xp_patch_bankai_write(const xp_patch *p, cJSON **out, xp_err *err)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "version", 1);
    cJSON_AddStringToObject(o, "format", XP_PATCH_FORMAT_BANKAI);
    cJSON_AddItemToObject(o, "name", xp_json_string(p->name ? p->name : "patch"));
    cJSON_AddItemToObject(o, "description", xp_json_string(p->description ? p->description : ""));
    cJSON_AddItemToObject(o, "base_model", xp_json_string(p->base_model ? p->base_model : ""));
    cJSON *fl = cJSON_AddArrayToObject(o, "flips");
    for (size_t i = 0; i < p->n_flips; i++) {
        const xp_flip *f = &p->flips[i];
        int64_t per = p->tensors[f->tensor].ne0 / XP_Q1_0_WEIGHTS;
        uint32_t layer;
        int proj;
        int rc = xp_foreign_place(p, f, XP_PATCH_FORMAT_BANKAI, unfit(f, per), &layer, &proj, err);
        if (rc) {
            cJSON_Delete(o);
            return rc;
        }
        cJSON *e = xp_foreign_flip_json(layer, xp_proj_info_of(proj)->name[XP_NAMING_MLX]);
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
    xp_json_add_text(o, "metadata", p->search);
    *out = o;
    return XP_OK;
}
