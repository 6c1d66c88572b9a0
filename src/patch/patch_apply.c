/* Applying and reverting a patch on an open model's private map, recorded in a log of
 * which patches are applied (the model keeps one). Every flip is validated before the first byte changes,
 * so a patch lands whole or not at all; the log refuses a second application of the
 * same patch (same canonical flips), which XOR would otherwise turn into a silent
 * revert. This is the microsecond path a search and a server use. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "patch/patch_internal.h"

/* XORs every flip into the tensors (bound, so every index is in range). */
static int flip_all(xp_gguf *g, const xp_patch *p, xp_err *err)
{
    uint8_t *data = NULL;
    int64_t ne0 = 0;
    uint32_t current = UINT32_MAX;
    for (size_t i = 0; i < p->n_flips; i++) {
        const xp_flip *f = &p->flips[i];
        if (f->tensor != current) {
            const xp_gguf_tensor *t = xp_gguf_tensor_by_name(g, p->tensors[f->tensor].name);
            if (!t)
                return xp_err_set(err, XP_EINTERNAL, "%s: bound tensor '%s' vanished",
                                  xp_patch_where(p), p->tensors[f->tensor].name);
            data = t->data;
            ne0 = t->ne[0];
            current = f->tensor;
        }
        xp_flip_kind_of(f->kind)->apply(data, ne0, f);
    }
    return XP_OK;
}

static const char *model_name(const xp_gguf *g)
{
    return g->path ? g->path : "the model";
}

/* Binds p to g and finds it in the log: *at is its entry or -1, id its identity.
 * Without a log the flips are XORed at once and *done is set. */
static int bind_and_find(xp_gguf *g, xp_patch *p, xp_patch_log *log, char id[65], long *at,
                         bool *done, xp_err *err)
{
    *done = false;
    int rc = xp_patch_bind(p, g, err);
    if (rc || !log) {
        *done = !rc;
        return rc ? rc : flip_all(g, p, err);
    }
    if ((rc = xp_patch_flips_sha256(p, id, err)))
        return rc;
    *at = xp_patch_log_find(log, id);
    return XP_OK;
}

int xp_patch_apply(xp_gguf *g, xp_patch *p, xp_patch_log *log, xp_err *err)
{
    char id[65];
    long at;
    bool done;
    int rc = bind_and_find(g, p, log, id, &at, &done, err);
    if (rc || done)
        return rc;
    if (at >= 0)
        return xp_err_set(err, XP_EINVAL, "%s: already applied to %s (as '%s'): applying it "
                          "again would revert it", xp_patch_where(p), model_name(g),
                          log->items[at].name);
    if (log->n == log->cap) {
        size_t cap = log->cap ? 2 * log->cap : 8;
        xp_patch_log_entry *e = xp_realloc_array(log->items, cap, sizeof *e);
        if (!e)
            return xp_err_set(err, XP_ENOMEM, "patch log: out of memory");
        log->items = e, log->cap = cap;
    }
    char *name = xp_strdup(p->name ? p->name : xp_patch_where(p));
    if (!name)
        return xp_err_set(err, XP_ENOMEM, "patch log: out of memory");
    if ((rc = flip_all(g, p, err))) {
        free(name);
        return rc;
    }
    xp_patch_log_entry *e = &log->items[log->n++];
    memcpy(e->flips_sha256, id, sizeof id);
    e->name = name;
    return XP_OK;
}

int xp_patch_revert(xp_gguf *g, xp_patch *p, xp_patch_log *log, xp_err *err)
{
    char id[65];
    long at;
    bool done;
    int rc = bind_and_find(g, p, log, id, &at, &done, err);
    if (rc || done)
        return rc;
    if (at < 0)
        return xp_err_set(err, XP_EINVAL, "%s: not applied to %s: reverting it would apply it",
                          xp_patch_where(p), model_name(g));
    if ((rc = flip_all(g, p, err)))
        return rc;
    free(log->items[at].name);
    memmove(log->items + at, log->items + at + 1, (log->n - (size_t)at - 1) * sizeof *log->items);
    log->n--;
    return XP_OK;
}

int xp_model_patch_apply(xp_model *m, xp_patch *p, xp_err *err)
{
    return xp_patch_apply(xp_model_gguf(m), p, xp_model_patch_log(m), err);
}

int xp_model_patch_revert(xp_model *m, xp_patch *p, xp_err *err)
{
    return xp_patch_revert(xp_model_gguf(m), p, xp_model_patch_log(m), err);
}
