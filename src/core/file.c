/* Whole-file reads and atomic whole-file writes (see file.h). */
#include "core/file.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
        rc = xp_err_set(err, XP_EIO, "%s: cannot sync its directory: %s", path,
                        strerror(errno));
    if (fd >= 0)
        close(fd);
    free(copy);
    return rc;
}

int xp_write_file_atomic(const char *path, const void *buf, size_t len, xp_err *err)
{
    size_t plen = strlen(path);
    char *tmp = malloc(plen + 16);
    if (!tmp)
        return xp_err_set(err, XP_ENOMEM, "%s: out of memory", path);
    snprintf(tmp, plen + 16, "%s.tmp.XXXXXX", path);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        int rc = xp_err_set(err, XP_EIO, "%s: cannot create a temporary file beside it: %s",
                            path, strerror(errno));
        free(tmp);
        return rc;
    }
    fchmod(fd, 0644); /* mkstemp makes 0600; a patch is for others to read */
    const uint8_t *p = buf;
    size_t done = 0;
    int rc = XP_OK;
    while (done < len && !rc) {
        ssize_t k = write(fd, p + done, len - done);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            rc = xp_err_set(err, XP_EIO, "%s: write failed: %s", path, strerror(errno));
        else
            done += (size_t)k;
    }
    if (!rc && fsync(fd) != 0)
        rc = xp_err_set(err, XP_EIO, "%s: flush failed: %s", path, strerror(errno));
    if (close(fd) != 0 && !rc)
        rc = xp_err_set(err, XP_EIO, "%s: close failed: %s", path, strerror(errno));
    if (!rc && rename(tmp, path) != 0)
        rc = xp_err_set(err, XP_EIO, "%s: cannot rename the temporary file over it: %s", path,
                        strerror(errno));
    if (rc)
        unlink(tmp);
    else
        rc = xp_sync_dir_of(path, err);
    free(tmp);
    return rc;
}

