/* The crash-safe journal of in-place file changes (journal.h). */
#include "core/journal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/file.h"

static const uint8_t JMAGIC[8] = {'X', 'P', 'J', 'R', 'N', 'L', '0', '1'};
#define JHEADER 20 /* magic, file size u64, range count u32 */
#define JSUM 32

typedef xp_journal_range range;

/* A decoded journal: ranges borrowed from its buffer. */
typedef struct plan {
    range *r;
    size_t n;
} plan;

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

int xp_file_lock(const char *path, bool exclusive, int *out, xp_err *err)
{
    int fd = open(path, exclusive ? O_RDWR : O_RDONLY);
    if (fd < 0)
        return xp_err_set(err, XP_EIO, "%s: cannot open%s: %s", path,
                          exclusive ? " for writing" : "", strerror(errno));
    if (flock(fd, (exclusive ? LOCK_EX : LOCK_SH) | LOCK_NB) != 0) {
        close(fd);
        return xp_err_set(err, XP_EIO,
                          "%s: another xorpatch process is changing it right now; "
                          "try again when it has finished",
                          path);
    }
    *out = fd;
    return XP_OK;
}

static int journal_encode(const range *r, size_t nr, uint64_t file_size, uint8_t **buf, size_t *len,
                          xp_err *err)
{
    size_t n = JHEADER + JSUM;
    for (size_t i = 0; i < nr; i++)
        n += 12 + 2 * (size_t)r[i].len;
    uint8_t *b = malloc(n), *p = b;
    if (!b)
        return xp_err_set(err, XP_ENOMEM, "journal: out of memory");
    uint32_t count = (uint32_t)nr;
    memcpy(p, JMAGIC, 8), p += 8;
    memcpy(p, &file_size, 8), p += 8;
    memcpy(p, &count, 4), p += 4;
    for (size_t i = 0; i < nr; i++) {
        uint32_t l = (uint32_t)r[i].len;
        memcpy(p, &r[i].off, 8), p += 8;
        memcpy(p, &l, 4), p += 4;
        memcpy(p, r[i].pre, l), p += l;
        memcpy(p, r[i].post, l), p += l;
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
        return xp_err_set(err, XP_EFORMAT,
                          "%s: the journal of an interrupted in-place patch is "
                          "damaged (bad magic or checksum); the file beside it may be partly "
                          "patched and was left as it is",
                          jpath);
    uint32_t count;
    memcpy(file_size, b + 8, 8);
    memcpy(&count, b + 16, 4);
    size_t at = JHEADER, end = n - JSUM;
    if (count > (end - at) / 12 || !(pl->r = xp_calloc(count, sizeof *pl->r)))
        return xp_err_set(err, XP_EFORMAT, "%s: journal range count %u does not fit", jpath, count);
    for (uint32_t i = 0; i < count; i++) {
        uint32_t l;
        if (end - at < 12)
            return xp_err_set(err, XP_EFORMAT, "%s: journal range %u is cut short", jpath, i);
        memcpy(&pl->r[i].off, b + at, 8);
        memcpy(&l, b + at + 8, 4);
        at += 12;
        if ((end - at) / 2 < l || pl->r[i].off > *file_size || l > *file_size - pl->r[i].off)
            return xp_err_set(err, XP_EFORMAT,
                              "%s: journal range %u (%u bytes at %llu) does "
                              "not fit",
                              jpath, i, l, (unsigned long long)pl->r[i].off);
        pl->r[i].len = l;
        pl->r[i].pre = (uint8_t *)b + at;
        pl->r[i].post = (uint8_t *)b + at + l;
        at += 2 * (size_t)l;
        pl->n = i + 1;
    }
    if (at != end)
        return xp_err_set(err, XP_EFORMAT, "%s: %zu unexpected bytes after the last range", jpath,
                          end - at);
    return XP_OK;
}

int xp_journal_recover_locked(const char *path, int fd, bool *recovered, xp_err *err)
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
        rc = xp_err_set(err, XP_EFORMAT,
                        "%s: the journal is for a file of %llu bytes but %s "
                        "has %lld: left as it is",
                        jpath, (unsigned long long)size, path, (long long)st.st_size);
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
                rc = xp_err_set(err, XP_EFORMAT,
                                "%s: byte %llu is neither what the journal %s "
                                "says it was nor what it was to become: the file changed after "
                                "the interruption; left as it is",
                                path, (unsigned long long)(r->off + k), jpath);
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

int xp_journal_recover(const char *path, bool *recovered, xp_err *err)
{
    *recovered = false;
    xp_remove_stale_temps(path);
    char *jpath = suffixed(path, ".xpjournal"), *tmp = suffixed(path, ".xpjournal.tmp");
    bool any = jpath && tmp && (access(jpath, F_OK) == 0 || access(tmp, F_OK) == 0);
    free(jpath), free(tmp);
    if (!any)
        return XP_OK;
    int fd, rc = xp_file_lock(path, true, &fd, err);
    if (!rc) {
        rc = xp_journal_recover_locked(path, fd, recovered, err);
        close(fd);
    }
    if (rc && err)
        xp_err_wrap(err,
                    "%s: an in-place change of it was interrupted (its journal %s.xpjournal "
                    "is there) and cannot be used until the change is completed, which any "
                    "xorpatch command that may write it does (e.g. `xorpatch verify -m %s`)",
                    path, path, path);
    return rc;
}

#define STEP() (step ? step(ctx) : (void)0) /* the test hook, after each change */

int xp_journal_commit(const char *path, int fd, const range *r, size_t n, uint64_t size,
                      void (*step)(void *ctx), void *ctx, xp_err *err)
{
    char *jpath = suffixed(path, ".xpjournal"), *tmp = suffixed(path, ".xpjournal.tmp");
    uint8_t *j = NULL;
    size_t jlen = 0;
    int rc = jpath && tmp ? journal_encode(r, n, size, &j, &jlen, err)
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
        STEP();
    if (!rc && rename(tmp, jpath) != 0)
        rc = xp_err_set(err, XP_EIO, "%s: cannot commit the journal: %s", jpath, strerror(errno));
    if (!rc)
        rc = xp_sync_dir_of(path, err);
    if (rc && tmp)
        unlink(tmp);
    if (!rc)
        STEP();
    /* committed: from here on a failure leaves the journal for recovery */
    for (size_t i = 0; i < n && !rc; i++) {
        uint64_t half = r[i].len / 2;
        rc = io_loop(fd, r[i].post, half, r[i].off, true, path, err);
        if (!rc)
            STEP();
        if (!rc)
            rc = io_loop(fd, r[i].post + half, r[i].len - half, r[i].off + half, true, path, err);
        if (!rc)
            STEP();
    }
    if (!rc && fsync(fd) != 0)
        rc = xp_err_set(err, XP_EIO, "%s: flush failed: %s", path, strerror(errno));
    if (!rc)
        STEP();
    if (!rc && unlink(jpath) != 0)
        rc = xp_err_set(err, XP_EIO, "%s: cannot remove: %s", jpath, strerror(errno));
    if (!rc)
        rc = xp_sync_dir_of(path, err);
    if (!rc)
        STEP();
    free(j), free(jpath), free(tmp);
    return rc;
}
