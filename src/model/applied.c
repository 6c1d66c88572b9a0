/* The record of which patches are applied to a model's weights, by the identity of
 * their canonical flips: the model owns one, and the patch layer fills it as it flips
 * bits (through xp_model_patch_log), so a second application of the same patch can be
 * refused. */
#include <stdlib.h>
#include <string.h>

#include "model/model.h"

void xp_patch_log_init(xp_patch_log *log)
{
    memset(log, 0, sizeof *log);
}

void xp_patch_log_free(xp_patch_log *log)
{
    for (size_t i = 0; i < log->n; i++)
        free(log->items[i].name);
    free(log->items);
    memset(log, 0, sizeof *log);
}

long xp_patch_log_find(const xp_patch_log *log, const char *flips_sha256)
{
    for (size_t i = 0; i < log->n; i++)
        if (strcmp(log->items[i].flips_sha256, flips_sha256) == 0)
            return (long)i;
    return -1;
}

const xp_patch_log *xp_model_patches(const xp_model *m) { return &m->applied; }
xp_patch_log *xp_model_patch_log(xp_model *m) { return &m->applied; }
