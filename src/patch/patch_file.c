/* Patching GGUF files: a patched copy (base ⊕ patches, plus the record of what was
 * applied) written through a temporary file and renamed, the reverse, and the same two
 * operations in place on a large file, which must survive a crash at any instant.
 *
 * In place, the bytes to change (the flipped rows, blocks and scale bytes, and the record
 * string, which keeps its reserved length) are first written with their old and new
 * contents to a journal beside the file (FILE.xpjournal.tmp, fsync, rename to
 * FILE.xpjournal, fsync of the directory: the commit point), then written into the file,
 * fsynced, and the journal removed. Whoever next touches the file (apply, revert, verify
 * all run xp_patch_file_recover first) finds either no journal — the file was never
 * touched, or was completely done — or a committed journal, and then writes every new
 * range again (idempotent), after checking that each byte still holds its old or its new
 * value, so a journal never lands on a file that changed since. The file is locked
 * (flock) while it changes, so a live operation's journal is never taken for a crashed
 * one. A file without a record is first rewritten once, whole, with the record's room
 * reserved; that rewrite is itself atomic (temporary file and rename). */
#include <stdio.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/alloc.h"
#include "patch/patch_internal.h"

static const uint8_t JMAGIC[8] = {'X', 'P', 'J', 'R', 'N', 'L', '0', '1'};
#define JHEADER 20 /* magic, file size u64, range count u32 */
#define JSUM 32

typedef struct range {
    uint64_t off, len;
    uint8_t *pre, *post;
} range;

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

static void step(const xp_patch_file_opts *o)
{
    if (o && o->on_step)
        o->on_step(o->step_ctx);
}

static char *suffixed(const char *path, const char *suffix)
{
    size_t n = strlen(path), m = strlen(suffix);
    char *s = malloc(n + m + 1);
    if (s) {
        memcpy(s, path, n);
        memcpy(s + n, suffix, m + 1);
    }
    return s;
}

static int io_loop(int fd, void *buf, size_t n, uint64_t off, bool write_it, const char *path,
                   xp_err *err)
{
    uint8_t *p = buf;
    while (n) {
        ssize_t k = write_it ? pwrite(fd, p, n, (off_t)off) : pread(fd, p, n, (off_t)off);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return xp_err_set(err, XP_EIO, "%s: %s failed at byte %llu: %s", path,
                              write_it ? "write" : "read", (unsigned long long)off,
                              k < 0 ? strerror(errno) : "unexpected end of file");
        p += k, n -= (size_t)k, off += (uint64_t)k;
    }
    return XP_OK;
}

/* Exclusive (to change the file) or shared (to read it whole) lock on path. */
static int lock_as(const char *path, bool exclusive, int *out, xp_err *err)
{
    int fd = open(path, exclusive ? O_RDWR : O_RDONLY);
    if (fd < 0)
        return xp_err_set(err, XP_EIO, "%s: cannot open%s: %s", path,
                          exclusive ? " for writing" : "", strerror(errno));
    if (flock(fd, (exclusive ? LOCK_EX : LOCK_SH) | LOCK_NB) != 0) {
        close(fd);
        return xp_err_set(err, XP_EIO, "%s: another xorpatch process is changing it right now; "
                          "try again when it has finished", path);
    }
    *out = fd;
    return XP_OK;
}

static int lock_file(const char *path, int *out, xp_err *err)
{
    return lock_as(path, true, out, err);
}

/* ---- journal ------------------------------------------------------------------- */

static int journal_encode(const plan *pl, uint64_t file_size, uint8_t **buf, size_t *len,
                          xp_err *err)
{
    size_t n = JHEADER + JSUM;
    for (size_t i = 0; i < pl->n; i++)
        n += 12 + 2 * (size_t)pl->r[i].len;
    uint8_t *b = malloc(n), *p = b;
    if (!b)
        return xp_err_set(err, XP_ENOMEM, "journal: out of memory");
    uint32_t count = (uint32_t)pl->n;
    memcpy(p, JMAGIC, 8), p += 8;
    memcpy(p, &file_size, 8), p += 8;
    memcpy(p, &count, 4), p += 4;
    for (size_t i = 0; i < pl->n; i++) {
        uint32_t l = (uint32_t)pl->r[i].len;
        memcpy(p, &pl->r[i].off, 8), p += 8;
        memcpy(p, &l, 4), p += 4;
        memcpy(p, pl->r[i].pre, l), p += l;
        memcpy(p, pl->r[i].post, l), p += l;
    }
    char hex[65];
    xp_sha256_hex(b, n - JSUM, hex);
    for (int i = 0; i < JSUM; i++) {
        unsigned v;
        sscanf(hex + 2 * i, "%2x", &v);
        p[i] = (uint8_t)v;
    }
    *buf = b;
    *len = n;
    return XP_OK;
}

/* Parses a committed journal into ranges pointing into buf. */
static int journal_decode(const uint8_t *b, size_t n, const char *jpath, plan *pl,
                          uint64_t *file_size, xp_err *err)
{
    char hex[65];
    bool ok = n >= JHEADER + JSUM && memcmp(b, JMAGIC, 8) == 0;
    if (ok) {
        xp_sha256_hex(b, n - JSUM, hex);
        for (int i = 0; i < JSUM && ok; i++) {
            unsigned v;
            sscanf(hex + 2 * i, "%2x", &v);
            ok = b[n - JSUM + (size_t)i] == v;
        }
    }
    if (!ok)
        return xp_err_set(err, XP_EFORMAT, "%s: the journal of an interrupted in-place patch is "
                          "damaged (bad magic or checksum); the file beside it may be partly "
                          "patched and was left as it is", jpath);
    uint32_t count;
    memcpy(file_size, b + 8, 8);
    memcpy(&count, b + 16, 4);
    size_t at = JHEADER, end = n - JSUM;
    if (count > (end - at) / 12 || !(pl->r = xp_calloc(count, sizeof *pl->r)))
        return xp_err_set(err, XP_EFORMAT, "%s: journal range count %u does not fit", jpath,
                          count);
    for (uint32_t i = 0; i < count; i++) {
        uint32_t l;
        if (end - at < 12)
            return xp_err_set(err, XP_EFORMAT, "%s: journal range %u is cut short", jpath, i);
        memcpy(&pl->r[i].off, b + at, 8);
        memcpy(&l, b + at + 8, 4);
        at += 12;
        if ((end - at) / 2 < l || pl->r[i].off > *file_size || l > *file_size - pl->r[i].off)
            return xp_err_set(err, XP_EFORMAT, "%s: journal range %u (%u bytes at %llu) does "
                              "not fit", jpath, i, l, (unsigned long long)pl->r[i].off);
        pl->r[i].len = l;
        /* borrowed from the journal buffer; plan_free is not called on this plan */
        pl->r[i].pre = (uint8_t *)b + at;
        pl->r[i].post = (uint8_t *)b + at + l;
        at += 2 * (size_t)l;
        pl->n = i + 1;
    }
    if (at != end)
        return xp_err_set(err, XP_EFORMAT, "%s: %zu unexpected bytes after the last range",
                          jpath, end - at);
    return XP_OK;
}

/* Completes a committed journal on the locked file fd. */
static int recover_locked(const char *path, int fd, bool *recovered, xp_err *err)
{
    char *jpath = suffixed(path, ".xpjournal"), *tmp = suffixed(path, ".xpjournal.tmp");
    if (!jpath || !tmp) {
        free(jpath), free(tmp);
        return xp_err_set(err, XP_ENOMEM, "out of memory");
    }
    /* an uncommitted journal: the file was never touched */
    unlink(tmp);
    free(tmp);
    if (access(jpath, F_OK) != 0) {
        free(jpath);
        return XP_OK;
    }
    char *buf;
    size_t len;
    int rc = xp_read_file(jpath, &buf, &len, err);
    if (rc) {
        free(jpath);
        return rc;
    }
    struct stat st;
    plan pl = {0};
    uint64_t size = 0;
    rc = journal_decode((const uint8_t *)buf, len, jpath, &pl, &size, err);
    if (!rc && (fstat(fd, &st) != 0 || (uint64_t)st.st_size != size))
        rc = xp_err_set(err, XP_EFORMAT, "%s: the journal is for a file of %llu bytes but %s "
                        "has %lld: left as it is", jpath, (unsigned long long)size, path,
                        (long long)st.st_size);
    for (size_t i = 0; i < pl.n && !rc; i++) {
        range *r = &pl.r[i];
        uint8_t *cur = malloc(r->len ? r->len : 1);
        if (!cur) {
            rc = xp_err_set(err, XP_ENOMEM, "out of memory");
            break;
        }
        rc = io_loop(fd, cur, r->len, r->off, false, path, err);
        for (uint64_t k = 0; k < r->len && !rc; k++)
            if (cur[k] != r->pre[k] && cur[k] != r->post[k])
                rc = xp_err_set(err, XP_EFORMAT, "%s: byte %llu is neither what the journal %s "
                                "says it was nor what it was to become: the file changed after "
                                "the interruption; left as it is", path,
                                (unsigned long long)(r->off + k), jpath);
        free(cur);
    }
    for (size_t i = 0; i < pl.n && !rc; i++)
        rc = io_loop(fd, pl.r[i].post, pl.r[i].len, pl.r[i].off, true, path, err);
    if (!rc && fsync(fd) != 0)
        rc = xp_err_set(err, XP_EIO, "%s: flush failed: %s", path, strerror(errno));
    if (!rc && unlink(jpath) != 0)
        rc = xp_err_set(err, XP_EIO, "%s: cannot remove: %s", jpath, strerror(errno));
    if (!rc)
        rc = xp_sync_dir_of(path, err);
    if (!rc)
        *recovered = true;
    free(pl.r);
    free(buf);
    free(jpath);
    return rc;
}

int xp_patch_file_recover(const char *path, bool *recovered, xp_err *err)
{
    *recovered = false;
    char *jpath = suffixed(path, ".xpjournal"), *tmp = suffixed(path, ".xpjournal.tmp");
    bool any = jpath && tmp && (access(jpath, F_OK) == 0 || access(tmp, F_OK) == 0);
    free(jpath), free(tmp);
    if (!any)
        return XP_OK;
    int fd, rc = lock_file(path, &fd, err);
    if (rc)
        return rc;
    rc = recover_locked(path, fd, recovered, err);
    close(fd);
    return rc;
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
            return xp_err_set(err, XP_EINVAL, "a changed range of %llu bytes is too long for "
                              "the journal", (unsigned long long)pl->r[i].len);
        if (!(pl->r[i].pre = malloc(pl->r[i].len)) || !(pl->r[i].post = malloc(pl->r[i].len)))
            return xp_err_set(err, XP_ENOMEM, "out of memory");
        memcpy(pl->r[i].pre, g->map + pl->r[i].off, pl->r[i].len);
    }
    return XP_OK;
}

/* ---- checks shared by copies and in-place changes ----------------------------------- */

static int check_apply(const char *path, xp_gguf *g, const xp_patch_record *rec,
                       const char *base, xp_patch *const *ps, size_t n, bool force, xp_err *err)
{
    char (*ids)[65] = xp_calloc(n, sizeof *ids);
    if (!ids)
        return xp_err_set(err, XP_ENOMEM, "out of memory");
    int rc = XP_OK;
    for (size_t i = 0; i < n && !rc; i++) {
        xp_patch *p = ps[i];
        if (p->base_sha256[0] && strcmp(p->base_sha256, base) != 0 && !force) {
            rc = xp_err_set(err, XP_EINVAL, "%s: made for the base model with SHA-256 %s, but "
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
                rc = xp_err_set(err, XP_EINVAL, "%s: already applied to %s (recorded as '%s'): "
                                "applying it again would revert it", xp_patch_where(p), path,
                                rec->patches[j]->name);
        }
        for (size_t j = 0; j < i && !rc; j++)
            if (strcmp(ids[j], ids[i]) == 0)
                rc = xp_err_set(err, XP_EINVAL, "%s: the same patch as %s: applying both would "
                                "cancel them", xp_patch_where(p), xp_patch_where(ps[j]));
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
            rc = xp_err_set(err, XP_EINVAL, "%s: not recorded as applied to %s: reverting it "
                            "would apply it (--force reverts it anyway)", xp_patch_where(p),
                            path);
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
        rc = lock_as(in, false, &fd, err);
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
            rc = xp_err_set(err, XP_EINVAL, "%s: records no applied patch: nothing to revert "
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

/* Journal, commit, write, sync, clean up (see the top of the file). */
static int commit(const char *path, int fd, const plan *pl, uint64_t size,
                  const xp_patch_file_opts *o, xp_err *err)
{
    char *jpath = suffixed(path, ".xpjournal"), *tmp = suffixed(path, ".xpjournal.tmp");
    uint8_t *j = NULL;
    size_t jlen = 0;
    int rc = jpath && tmp ? journal_encode(pl, size, &j, &jlen, err)
                          : xp_err_set(err, XP_ENOMEM, "out of memory");
    int jfd = rc ? -1 : open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (!rc && jfd < 0)
        rc = xp_err_set(err, XP_EIO, "%s: cannot create: %s", tmp, strerror(errno));
    if (!rc)
        rc = io_loop(jfd, j, jlen, 0, true, tmp, err);
    if (!rc && fsync(jfd) != 0)
        rc = xp_err_set(err, XP_EIO, "%s: flush failed: %s", tmp, strerror(errno));
    if (jfd >= 0)
        close(jfd);
    if (!rc)
        step(o);
    if (!rc && rename(tmp, jpath) != 0)
        rc = xp_err_set(err, XP_EIO, "%s: cannot commit the journal: %s", jpath, strerror(errno));
    if (!rc)
        rc = xp_sync_dir_of(path, err);
    if (rc && tmp)
        unlink(tmp);
    if (!rc)
        step(o);
    /* committed: from here on a failure leaves the journal for recovery */
    for (size_t i = 0; i < pl->n && !rc; i++) {
        uint64_t half = pl->r[i].len / 2;
        rc = io_loop(fd, pl->r[i].post, half, pl->r[i].off, true, path, err);
        if (!rc)
            step(o);
        if (!rc)
            rc = io_loop(fd, pl->r[i].post + half, pl->r[i].len - half, pl->r[i].off + half,
                         true, path, err);
        if (!rc)
            step(o);
    }
    if (!rc && fsync(fd) != 0)
        rc = xp_err_set(err, XP_EIO, "%s: flush failed: %s", path, strerror(errno));
    if (!rc)
        step(o);
    if (!rc && unlink(jpath) != 0)
        rc = xp_err_set(err, XP_EIO, "%s: cannot remove: %s", jpath, strerror(errno));
    if (!rc)
        rc = xp_sync_dir_of(path, err);
    if (!rc)
        step(o);
    free(j), free(jpath), free(tmp);
    return rc;
}

static int inplace_op(const char *path, xp_patch *const *ps, size_t n, bool revert,
                      const xp_patch_file_opts *o, xp_patch_file_result *res, xp_err *err)
{
    bool force = o && o->force, present = false;
    int fd = -1;
    xp_gguf *g = NULL;
    xp_patch_record rec = {0};
    int rc = lock_file(path, &fd, err);
    if (!rc)
        rc = recover_locked(path, fd, &res->recovered, err);
    if (!rc)
        rc = xp_gguf_open(&g, path, err);
    if (!rc)
        rc = xp_patch_record_read(g, &rec, &present, err);
    if (!rc && !present && revert)
        rc = xp_err_set(err, XP_EINVAL, "%s: has no xorpatch record, so nothing is recorded as "
                        "applied; to remove a patch anyway write a copy with `xorpatch revert -p "
                        "PATCH --force -o OUT`", path);
    if (!rc && !present) {
        rc = prepare(g, path, o, err);
        res->prepared = !rc;
        xp_gguf_close(g);
        g = NULL;
        close(fd);
        fd = -1;
        /* the rename replaced the file: lock and open the new one */
        if (!rc)
            rc = lock_file(path, &fd, err);
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
            rc = xp_err_set(err, XP_EINVAL, "%s: records no applied patch: nothing to revert",
                            path);
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
        rc = commit(path, fd, &pl, g->file_size, o, err);
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

int xp_patch_file_apply(const char *in, xp_patch *const *ps, size_t n, const char *out,
                        const xp_patch_file_opts *o, xp_patch_file_result *res, xp_err *err)
{
    xp_patch_file_result scratch;
    res = res ? res : &scratch;
    memset(res, 0, sizeof *res);
    if (!n)
        return xp_err_set(err, XP_EINVAL, "%s: no patch to apply", in);
    return out ? copy_op(in, ps, n, false, out, o, res, err)
               : inplace_op(in, ps, n, false, o, res, err);
}

int xp_patch_file_revert(const char *in, xp_patch *const *ps, size_t n, const char *out,
                         const xp_patch_file_opts *o, xp_patch_file_result *res, xp_err *err)
{
    xp_patch_file_result scratch;
    res = res ? res : &scratch;
    memset(res, 0, sizeof *res);
    return out ? copy_op(in, ps, n, true, out, o, res, err)
               : inplace_op(in, ps, n, true, o, res, err);
}
