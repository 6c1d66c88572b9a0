/* A patch's provenance as one JSON object: the description, base name, tool, time,
 * architecture, search and source fields, in the order the binary format stores them.
 * Read strictly (an unknown key is an error), since only this project writes it. */
#include "core/utf8.h"
#include "patch/patch_internal.h"

int xp_patch_provenance_from_json(xp_patch *p, const cJSON *o, const char *where, xp_err *err)
{
    static const char *const allowed[] = {"description",  "base_model", "tool",   "created",
                                          "architecture", "search",     "source", NULL};
    int rc = xp_json_check_keys(o, allowed, where, "provenance", err);
    if (!rc && !(rc = xp_json_take_string(o, "description", &p->description, where, err)) &&
        !(rc = xp_json_take_string(o, "base_model", &p->base_model, where, err)) &&
        !(rc = xp_json_take_string(o, "tool", &p->tool, where, err)) &&
        !(rc = xp_json_take_string(o, "created", &p->created, where, err)) &&
        !(rc = xp_json_take_object(o, "architecture", &p->architecture, where, err)) &&
        !(rc = xp_json_take_object(o, "search", &p->search, where, err)))
        rc = xp_json_take_object(o, "source", &p->source, where, err);
    return rc;
}

cJSON *xp_patch_provenance_json(const xp_patch *p)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    if (p->description)
        cJSON_AddItemToObject(o, "description", xp_json_string(p->description));
    if (p->base_model)
        cJSON_AddItemToObject(o, "base_model", xp_json_string(p->base_model));
    if (p->tool)
        cJSON_AddItemToObject(o, "tool", xp_json_string(p->tool));
    if (p->created)
        cJSON_AddItemToObject(o, "created", xp_json_string(p->created));
    xp_json_add_text(o, "architecture", p->architecture);
    xp_json_add_text(o, "search", p->search);
    xp_json_add_text(o, "source", p->source);
    return o;
}
