/* Patching GGUF files: a patched copy (base ⊕ patches, plus the record of what was
 * applied) written through a temporary file and renamed, the reverse, and the same two
 * operations in place on a large file, which must survive a crash at any instant.
 *
 * In place, the bytes to change (the flipped rows, blocks and scale bytes, and the record
 * string, which keeps its reserved length) go through the journal of core/journal.h,
 * which whoever next opens the file completes (xp_gguf_open does, and every operation
 * here runs xp_patch_file_recover first). A file without a record is first rewritten once, whole,
 * with the record's room reserved; that rewrite is itself atomic (temporary file and rename). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/journal.h"
#include "patch/patch_internal.h"

typedef xp_journal_range range;

typedef struct plan {
    range *r;
    size_t n, cap;
} plan;

static void plan_free(plan *pl)
{
    for (size_t i = 0; i < pl->n; i++)
        free(pl->r[i].pre), free(pl->r[i].post);
    free(pl->r);
    memset(pl, 0, sizeof *pl);
}

int xp_patch_file_recover(const char *path, bool *recovered, xp_err *err)
{
    return xp_journal_recover(path, recovered, err);
}

static void step(void *ctx)
{
    const xp_patch_file_opts *o = ctx;
    if (o && o->on_step)
        o->on_step(o->step_ctx);
}

/* ---- planning the byte ranges ----------------------------------------------------- */

static int plan_add(plan *pl, uint64_t off, uint64_t len, xp_err *err)
{
    if (pl->n == pl->cap) {
        size_t cap = pl->cap ? 2 * pl->cap : 64;
        range *r = xp_realloc_array(pl->r, cap, sizeof *r);
        if (!r)
            return xp_err_set(err, XP_ENOMEM, "out of memory");
        pl->r = r, pl->cap = cap;
    }
    pl->r[pl->n++] = (range){off, len, NULL, NULL};
    return XP_OK;
}

/* The file bytes a patch's flips change. */
static int plan_flips(plan *pl, const xp_gguf *g, const xp_patch *p, xp_err *err)
{
    int rc = XP_OK;
    for (size_t i = 0; i < p->n_flips && !rc; i++) {
        const xp_flip *f = &p->flips[i];
        const xp_gguf_tensor *t = xp_gguf_tensor_by_name(g, p->tensors[f->tensor].name);
        uint64_t off, len;
        xp_flip_kind_of(f->kind)->span(f, t->ne[0], &off, &len);
        rc = plan_add(pl, g->data_offset + t->offset + off, len, err);
    }
    return rc;
}

static int cmp_range(const void *a, const void *b)
{
    const range *x = a, *y = b;
    return x->off < y->off ? -1 : x->off > y->off;
}

/* Sorts and merges touching ranges, then copies their current bytes from the map. */
static int plan_finish(plan *pl, const xp_gguf *g, xp_err *err)
{
    qsort(pl->r, pl->n, sizeof *pl->r, cmp_range);
    size_t m = 0;
    for (size_t i = 0; i < pl->n; i++) {
        if (m && pl->r[i].off <= pl->r[m - 1].off + pl->r[m - 1].len) {
            uint64_t end = pl->r[i].off + pl->r[i].len;
            if (end > pl->r[m - 1].off + pl->r[m - 1].len)
                pl->r[m - 1].len = end - pl->r[m - 1].off;
        } else {
            pl->r[m++] = pl->r[i];
        }
    }
    pl->n = m;
    for (size_t i = 0; i < pl->n; i++) {
        if (pl->r[i].len > UINT32_MAX)
            return xp_err_set(err, XP_EINVAL,
                              "a changed range of %llu bytes is too long for "
                              "the journal",
                              (unsigned long long)pl->r[i].len);
        if (!(pl->r[i].pre = malloc(pl->r[i].len)) || !(pl->r[i].post = malloc(pl->r[i].len)))
            return xp_err_set(err, XP_ENOMEM, "out of memory");
        memcpy(pl->r[i].pre, g->map + pl->r[i].off, pl->r[i].len);
    }
    return XP_OK;
}

/* ---- checks shared by copies and in-place changes ----------------------------------- */

static int check_apply(const char *path, xp_gguf *g, const xp_patch_record *rec, const char *base,
                       xp_patch *const *ps, size_t n, bool force, xp_err *err)
{
    char(*ids)[65] = xp_calloc(n, sizeof *ids);
    if (!ids)
        return xp_err_set(err, XP_ENOMEM, "out of memory");
    int rc = XP_OK;
    for (size_t i = 0; i < n && !rc; i++) {
        xp_patch *p = ps[i];
        if (p->base_sha256[0] && strcmp(p->base_sha256, base) != 0 && !force) {
            rc = xp_err_set(err, XP_EINVAL,
                            "%s: made for the base model with SHA-256 %s, but "
                            "the base of %s is %s: refused (--force applies it anyway)",
                            xp_patch_where(p), p->base_sha256, path, base);
            break;
        }
        if ((rc = xp_patch_bind(p, g, err)) || (rc = xp_patch_flips_sha256(p, ids[i], err)))
            break;
        for (size_t j = 0; j < rec->n && !rc; j++) {
            char have[65];
            if ((rc = xp_patch_flips_sha256(rec->patches[j], have, err)))
                break;
            if (strcmp(have, ids[i]) == 0)
                rc = xp_err_set(err, XP_EINVAL,
                                "%s: already applied to %s (recorded as '%s'): "
                                "applying it again would revert it",
                                xp_patch_where(p), path, rec->patches[j]->name);
        }
        for (size_t j = 0; j < i && !rc; j++)
            if (strcmp(ids[j], ids[i]) == 0)
                rc = xp_err_set(err, XP_EINVAL,
                                "%s: the same patch as %s: applying both would "
                                "cancel them",
                                xp_patch_where(p), xp_patch_where(ps[j]));
    }
    free(ids);
    return rc;
}

/* Which patches a revert flips (*flip, borrowed) and which record entries stay (*keep). */
static int select_revert(const char *path, xp_gguf *g, const xp_patch_record *rec,
                         xp_patch *const *ps, size_t n, bool force, xp_patch ***flip,
                         size_t *n_flip, bool *keep, xp_err *err)
{
    for (size_t j = 0; j < rec->n; j++)
        keep[j] = n > 0;
    size_t k = n ? n : rec->n;
    xp_patch **list = xp_calloc(k, sizeof *list);
    if (!list)
        return xp_err_set(err, XP_ENOMEM, "out of memory");
    int rc = XP_OK;
    for (size_t i = 0; i < k && !rc; i++) {
        xp_patch *p = n ? ps[i] : rec->patches[i];
        char id[65], have[65];
        if ((rc = xp_patch_bind(p, g, err)) || (rc = xp_patch_flips_sha256(p, id, err)))
            break;
        list[i] = p;
        bool found = !n;
        for (size_t j = 0; j < rec->n && n && !rc && !found; j++) {
            rc = xp_patch_flips_sha256(rec->patches[j], have, err);
            if (!rc && keep[j] && strcmp(have, id) == 0)
                keep[j] = false, found = true;
        }
        if (!rc && !found && !force)
            rc = xp_err_set(err, XP_EINVAL,
                            "%s: not recorded as applied to %s: reverting it "
                            "would apply it (--force reverts it anyway)",
                            xp_patch_where(p), path);
    }
    if (rc) {
        free(list);
        return rc;
    }
    *flip = list;
    *n_flip = k;
    return XP_OK;
}

/* The record and the base fingerprint: the record's, else (when asked for) the file's
 * own SHA-256, else "" (a file without a record that is being reverted has no known base). */
static int read_record(xp_gguf *g, xp_patch_record *rec, bool *present, bool need_base,
                       char base[65], xp_err *err)
{
    int rc = xp_patch_record_read(g, rec, present, err);
    base[0] = '\0';
    if (rc)
        return rc;
    if (*present) {
        memcpy(base, rec->base_sha256, 65);
        return XP_OK;
    }
    return need_base ? xp_sha256_file(g->path, base, err) : XP_OK;
}

int xp_patch_file_base(xp_gguf *g, char base[65], xp_err *err)
{
    xp_patch_record rec = {0};
    bool present = false;
    int rc = read_record(g, &rec, &present, true, base, err);
    xp_patch_record_free(&rec);
    return rc;
}

int xp_patch_file_check(xp_gguf *g, const char *base, xp_patch *const *ps, size_t n, bool force,
                        xp_err *err)
{
    xp_patch_record rec = {0};
    bool present = false;
    int rc = xp_patch_record_read(g, &rec, &present, err);
    if (!rc)
        rc = check_apply(g->path, g, &rec, base, ps, n, force, err);
    xp_patch_record_free(&rec);
    return rc;
}

/* Writes g (already flipped in memory) to out with record text (NULL: no record). */
static int write_copy(const xp_gguf *g, const char *text, size_t len, const char *out,
                      const xp_patch_file_opts *o, xp_err *err)
{
    xp_gguf_writer *w = xp_gguf_writer_new();
    if (!w)
        return xp_err_set(err, XP_ENOMEM, "out of memory");
    int rc = xp_gguf_writer_copy_from(w, g, err);
    if (!rc && text) {
        xp_gguf_value v = {.type = XP_GGUF_STRING, .n = len, .data = (const uint8_t *)text};
        rc = xp_gguf_writer_set(w, XP_PATCH_RECORD_KEY, &v, err);
    } else if (!rc) {
        xp_gguf_writer_remove(w, XP_PATCH_RECORD_KEY);
    }
    if (o && o->progress)
        xp_gguf_writer_set_progress(w, o->progress, o->progress_ctx);
    if (!rc)
        rc = xp_gguf_writer_write(w, out, err);
    xp_gguf_writer_free(w);
    return rc;
}

static int flip_list(xp_gguf *g, xp_patch *const *ps, size_t n, xp_err *err)
{
    int rc = XP_OK;
    for (size_t i = 0; i < n && !rc; i++)
        rc = xp_patch_apply(g, ps[i], NULL, err);
    return rc;
}

/* ---- patched copies ---------------------------------------------------------------- */

static int copy_op(const char *in, xp_patch *const *ps, size_t n, bool revert, const char *out,
                   const xp_patch_file_opts *o, xp_patch_file_result *res, xp_err *err)
{
    int fd = -1, rc = xp_patch_file_recover(in, &res->recovered, err);
    xp_gguf *g = NULL;
    xp_patch_record rec = {0};
    bool present = false, force = o && o->force;
    if (!rc)
        rc = xp_file_lock(in, false, &fd, err);
    if (!rc)
        rc = xp_gguf_open(&g, in, err);
    if (!rc)
        rc = read_record(g, &rec, &present, !revert, res->base_sha256, err);
    xp_patch **list = NULL, **flips = NULL;
    size_t n_list = 0, n_flips = 0;
    bool *keep = NULL;
    if (!rc && !revert) {
        rc = check_apply(in, g, &rec, res->base_sha256, ps, n, force, err);
        flips = (xp_patch **)ps, n_flips = n;
        if (!rc && !(list = xp_calloc(rec.n + n, sizeof *list)))
            rc = xp_err_set(err, XP_ENOMEM, "out of memory");
        if (!rc) {
            if (rec.n)
                memcpy(list, rec.patches, rec.n * sizeof *list);
            memcpy(list + rec.n, ps, n * sizeof *list);
            n_list = rec.n + n;
        }
    } else if (!rc) {
        if (!n && !rec.n)
            rc = xp_err_set(err, XP_EINVAL,
                            "%s: records no applied patch: nothing to revert "
                            "(name the patch with -p, and --force if the file has no record)",
                            in);
        else if (!(keep = xp_calloc(rec.n, sizeof *keep)) ||
                 !(list = xp_calloc(rec.n, sizeof *list)))
            rc = xp_err_set(err, XP_ENOMEM, "out of memory");
        if (!rc)
            rc = select_revert(in, g, &rec, ps, n, force, &flips, &n_flips, keep, err);
        for (size_t j = 0; j < rec.n && !rc; j++)
            if (keep[j])
                list[n_list++] = rec.patches[j];
    }
    char *text = NULL;
    size_t len = 0;
    /* a file that had no record and is left with nothing applied gets none */
    bool record = n_list > 0 || (present && !revert);
    if (!rc && record)
        rc = xp_record_format(res->base_sha256, list, n_list, 0, &text, &len, err);
    if (!rc)
        rc = flip_list(g, flips, n_flips, err);
    if (!rc)
        rc = write_copy(g, text, len, out, o, err);
    res->n_applied = n_list;
    if (!rc && revert && !record && present) {
        char sha[65];
        rc = xp_sha256_file(out, sha, err);
        res->exact_base = !rc && strcmp(sha, res->base_sha256) == 0;
    }
    if (revert)
        free(flips);
    free(text), free(list), free(keep);
    xp_patch_record_free(&rec);
    xp_gguf_close(g);
    if (fd >= 0)
        close(fd);
    return rc;
}

/* ---- in place ----------------------------------------------------------------------- */

/* Rewrites a file without a record once, whole, with an empty record reserving room. */
static int prepare(xp_gguf *g, const char *path, const xp_patch_file_opts *o, xp_err *err)
{
    char sha[65], *text;
    size_t len;
    int rc = xp_sha256_file(path, sha, err);
    if (!rc)
        rc = xp_record_format(sha, NULL, 0, 0, &text, &len, err);
    if (rc)
        return rc;
    rc = write_copy(g, text, len, path, o, err);
    free(text);
    return rc;
}

static int inplace_op(const char *path, xp_patch *const *ps, size_t n, bool revert,
                      const xp_patch_file_opts *o, xp_patch_file_result *res, xp_err *err)
{
    bool force = o && o->force, present = false;
    int fd = -1;
    xp_gguf *g = NULL;
    xp_patch_record rec = {0};
    int rc = xp_file_lock(path, true, &fd, err);
    if (!rc)
        rc = xp_journal_recover_locked(path, fd, &res->recovered, err);
    if (!rc)
        rc = xp_gguf_open(&g, path, err);
    if (!rc)
        rc = xp_patch_record_read(g, &rec, &present, err);
    if (!rc && !present && revert)
        rc = xp_err_set(err, XP_EINVAL,
                        "%s: has no xorpatch record, so nothing is recorded as "
                        "applied; to remove a patch anyway write a copy with `xorpatch revert -p "
                        "PATCH --force -o OUT`",
                        path);
    if (!rc && !present) {
        rc = prepare(g, path, o, err);
        res->prepared = !rc;
        xp_gguf_close(g);
        g = NULL;
        close(fd);
        fd = -1;
        /* the rename replaced the file: lock and open the new one */
        if (!rc)
            rc = xp_file_lock(path, true, &fd, err);
        if (!rc)
            rc = xp_gguf_open(&g, path, err);
        if (!rc)
            rc = xp_patch_record_read(g, &rec, &present, err);
    }
    if (!rc)
        memcpy(res->base_sha256, rec.base_sha256, 65);
    xp_patch **list = NULL, **flips = NULL;
    size_t n_list = 0, n_flips = 0;
    bool *keep = NULL;
    if (!rc && !(list = xp_calloc(rec.n + n, sizeof *list)))
        rc = xp_err_set(err, XP_ENOMEM, "out of memory");
    if (!rc && !revert) {
        rc = check_apply(path, g, &rec, rec.base_sha256, ps, n, force, err);
        if (rec.n)
            memcpy(list, rec.patches, rec.n * sizeof *list);
        if (n)
            memcpy(list + rec.n, ps, n * sizeof *list);
        n_list = rec.n + n;
        flips = (xp_patch **)ps, n_flips = n;
    } else if (!rc) {
        if (!n && !rec.n)
            rc =
                xp_err_set(err, XP_EINVAL, "%s: records no applied patch: nothing to revert", path);
        else if (!(keep = xp_calloc(rec.n, sizeof *keep)))
            rc = xp_err_set(err, XP_ENOMEM, "out of memory");
        if (!rc)
            rc = select_revert(path, g, &rec, ps, n, force, &flips, &n_flips, keep, err);
        for (size_t j = 0; j < rec.n && !rc; j++)
            if (keep[j])
                list[n_list++] = rec.patches[j];
    }
    char *text = NULL;
    size_t len = 0;
    if (!rc)
        rc = xp_record_format(rec.base_sha256, list, n_list, rec.capacity, &text, &len, err);
    plan pl = {0};
    const xp_gguf_value *v = rc ? NULL : xp_gguf_get(g, XP_PATCH_RECORD_KEY);
    for (size_t i = 0; i < n_flips && !rc; i++)
        rc = plan_flips(&pl, g, flips[i], err);
    if (!rc)
        rc = plan_add(&pl, (uint64_t)(v->data - g->map), len, err);
    if (!rc)
        rc = plan_finish(&pl, g, err);
    if (!rc)
        rc = flip_list(g, flips, n_flips, err);
    for (size_t i = 0; i < pl.n && !rc; i++) {
        uint64_t rec_off = (uint64_t)(v->data - g->map);
        if (pl.r[i].off == rec_off)
            memcpy(pl.r[i].post, text, len);
        else
            memcpy(pl.r[i].post, g->map + pl.r[i].off, pl.r[i].len);
        res->bytes_changed += pl.r[i].len;
    }
    if (!rc)
        rc = xp_journal_commit(path, fd, pl.r, pl.n, g->file_size, step, (void *)o, err);
    res->n_applied = n_list;
    plan_free(&pl);
    if (revert)
        free(flips);
    free(text), free(list), free(keep);
    xp_patch_record_free(&rec);
    xp_gguf_close(g);
    if (fd >= 0)
        close(fd);
    return rc;
}

/* A patch without flips (a search's empty checkpoint) given to apply or revert on a
 * file: it would change nothing, and record a patch that is none. */
static int refuse_empty(const xp_patch *p, xp_err *err)
{
    return xp_err_set(err, XP_EINVAL,
                      "%s: the patch has no flips (the checkpoint of a search that kept none): "
                      "there is nothing to apply or revert",
                      xp_patch_where(p));
}

int xp_patch_file_apply(const char *in, xp_patch *const *ps, size_t n, const char *out,
                        const xp_patch_file_opts *o, xp_patch_file_result *res, xp_err *err)
{
    xp_patch_file_result scratch;
    res = res ? res : &scratch;
    memset(res, 0, sizeof *res);
    if (!n)
        return xp_err_set(err, XP_EINVAL, "%s: no patch to apply", in);
    for (size_t i = 0; i < n; i++)
        if (!ps[i]->n_flips)
            return refuse_empty(ps[i], err);
    return out ? copy_op(in, ps, n, false, out, o, res, err)
               : inplace_op(in, ps, n, false, o, res, err);
}

int xp_patch_file_revert(const char *in, xp_patch *const *ps, size_t n, const char *out,
                         const xp_patch_file_opts *o, xp_patch_file_result *res, xp_err *err)
{
    xp_patch_file_result scratch;
    res = res ? res : &scratch;
    memset(res, 0, sizeof *res);
    for (size_t i = 0; i < n; i++)
        if (!ps[i]->n_flips)
            return refuse_empty(ps[i], err);
    return out ? copy_op(in, ps, n, true, out, o, res, err)
               : inplace_op(in, ps, n, true, o, res, err);
}
