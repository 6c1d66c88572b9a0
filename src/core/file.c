/* Whole-file reads, and atomic whole-file writes that replace only regular files and
 * clean up after the writers that were killed (see file.h). */
#include "core/file.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/alloc.h"

int xp_read_file(const char *path, char **buf, size_t *len, xp_err *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return xp_err_set(err, XP_EIO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return xp_err_set(err, XP_EIO, "%s: not a regular file", path);
    }
    char *b = malloc((size_t)st.st_size + 1);
    if (!b) {
        fclose(f);
        return xp_err_set(err, XP_ENOMEM, "%s: cannot hold %lld bytes", path,
                          (long long)st.st_size);
    }
    size_t n = fread(b, 1, (size_t)st.st_size, f);
    int bad = ferror(f);
    fclose(f);
    if (bad || n != (size_t)st.st_size) {
        free(b);
        return xp_err_set(err, XP_EIO, "%s: read error", path);
    }
    b[n] = '\0';
    *buf = b;
    *len = n;
    return XP_OK;
}

int xp_sync_dir_of(const char *path, xp_err *err)
{
    char *copy = xp_strdup(path);
    if (!copy)
        return xp_err_set(err, XP_ENOMEM, "out of memory");
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY);
    int rc = XP_OK;
    if (fd < 0 || fsync(fd) != 0)
        rc = xp_err_set(err, XP_EIO, "%s: cannot sync its directory: %s", path, strerror(errno));
    if (fd >= 0)
        close(fd);
    free(copy);
    return rc;
}

int xp_write_all(int fd, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    while (len) {
        ssize_t k = write(fd, p, len);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            if (k == 0)
                errno = ENOSPC;
            return -1;
        }
        p += k, len -= (size_t)k;
    }
    return 0;
}

int xp_check_output_path(const char *path, xp_err *err)
{
    struct stat st;
    if (stat(path, &st) != 0 || S_ISREG(st.st_mode))
        return XP_OK;
    const char *what = S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode) ? "a device"
                       : S_ISFIFO(st.st_mode)                     ? "a FIFO"
                       : S_ISDIR(st.st_mode)                      ? "a directory"
                       : S_ISSOCK(st.st_mode)                     ? "a socket"
                                                                  : "not a regular file";
    return xp_err_set(err, XP_EINVAL, "%s: %s, not a regular file: refusing to replace it", path,
                      what);
}

#define TMP_SUFFIX ".tmp."
#define TMP_RANDOM 6 /* the XXXXXX of mkstemp */

/* Whether name is base + ".tmp." + six characters of mkstemp's alphabet. */
static bool is_temp_of(const char *name, const char *base)
{
    size_t nb = strlen(base), ns = strlen(TMP_SUFFIX);
    if (strncmp(name, base, nb) != 0 || strncmp(name + nb, TMP_SUFFIX, ns) != 0 ||
        strlen(name + nb + ns) != TMP_RANDOM)
        return false;
    for (const char *c = name + nb + ns; *c; c++)
        if (!isalnum((unsigned char)*c))
            return false;
    return true;
}

void xp_remove_stale_temps(const char *path)
{
    char *dcopy = xp_strdup(path), *bcopy = xp_strdup(path);
    DIR *d = dcopy && bcopy ? opendir(dirname(dcopy)) : NULL;
    const char *base = d ? basename(bcopy) : "";
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (!is_temp_of(e->d_name, base))
            continue;
        int fd = openat(dirfd(d), e->d_name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
        struct stat held, named;
        /* a live writer holds its lock; a killed one's lock went with it */
        if (fd >= 0 && fstat(fd, &held) == 0 && S_ISREG(held.st_mode) &&
            flock(fd, LOCK_EX | LOCK_NB) == 0 &&
            fstatat(dirfd(d), e->d_name, &named, AT_SYMLINK_NOFOLLOW) == 0 &&
            named.st_dev == held.st_dev && named.st_ino == held.st_ino)
            unlinkat(dirfd(d), e->d_name, 0);
        if (fd >= 0)
            close(fd);
    }
    if (d)
        closedir(d);
    free(dcopy), free(bcopy);
}

int xp_atomic_begin(const char *path, char **tmp, int *fd, xp_err *err)
{
    *tmp = NULL, *fd = -1;
    int rc = xp_check_output_path(path, err);
    if (rc)
        return rc;
    xp_remove_stale_temps(path);
    size_t n = strlen(path) + sizeof TMP_SUFFIX + TMP_RANDOM;
    char *t = malloc(n);
    if (!t)
        return xp_err_set(err, XP_ENOMEM, "%s: out of memory", path);
    for (;;) {
        snprintf(t, n, "%s" TMP_SUFFIX "XXXXXX", path);
        int f = mkstemp(t);
        if (f < 0) {
            rc = xp_err_set(err, XP_EIO, "%s: cannot create a temporary file beside it: %s", path,
                            strerror(errno));
            free(t);
            return rc;
        }
        /* locked before anything is written; should a cleaner have taken the file in the
         * instant before the lock, it is gone (no link left): make another */
        struct stat st;
        if (flock(f, LOCK_EX) == 0 && fstat(f, &st) == 0 && st.st_nlink > 0) {
            fchmod(f, 0644); /* mkstemp makes 0600; the file is for others to read */
            *tmp = t, *fd = f;
            return XP_OK;
        }
        close(f);
    }
}

int xp_atomic_end(int rc, const char *path, char *tmp, int fd, xp_err *err)
{
    if (!rc && fsync(fd) != 0)
        rc = xp_err_set(err, XP_EIO, "%s: flush failed: %s", path, strerror(errno));
    if (!rc)
        rc = xp_check_output_path(path, err);
    /* renamed while still locked, so no cleaner takes it between close and rename */
    if (!rc && rename(tmp, path) != 0)
        rc = xp_err_set(err, XP_EIO, "%s: cannot rename the temporary file over it: %s", path,
                        strerror(errno));
    if (rc)
        unlink(tmp);
    if (close(fd) != 0 && !rc)
        rc = xp_err_set(err, XP_EIO, "%s: close failed: %s", path, strerror(errno));
    if (!rc)
        rc = xp_sync_dir_of(path, err);
    free(tmp);
    return rc;
}

int xp_write_file_atomic(const char *path, const void *buf, size_t len, xp_err *err)
{
    char *tmp;
    int fd, rc = xp_atomic_begin(path, &tmp, &fd, err);
    if (rc)
        return rc;
    if (xp_write_all(fd, buf, len) != 0)
        rc = xp_err_set(err, XP_EIO, "%s: write failed: %s", path, strerror(errno));
    return xp_atomic_end(rc, path, tmp, fd, err);
}
