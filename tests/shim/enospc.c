/* A test helper, loaded with LD_PRELOAD: a disk that fills up. Once the process has
 * written XP_ENOSPC_AFTER bytes to regular files (standard input, output and error do not
 * count), every further write to one fails with ENOSPC, the last one short, as on a
 * full file system. write, pwrite and writev are covered: the library writes files
 * through them only. Without the variable the shim does nothing. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

static atomic_llong room = -1; /* bytes left; -1 until read from the environment */

/* How many of n bytes fd may take (n when it is no regular file or no limit is set). */
static ssize_t allowed(int fd, size_t n)
{
    struct stat st;
    if (fd <= 2 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
        return (ssize_t)n;
    long long r = atomic_load(&room);
    if (r == -1) {
        const char *v = getenv("XP_ENOSPC_AFTER");
        if (!v)
            return (ssize_t)n;
        long long want = atoll(v);
        atomic_compare_exchange_strong(&room, &r, want);
        r = atomic_load(&room);
    }
    for (;;) {
        long long take = r < (long long)n ? r : (long long)n;
        if (atomic_compare_exchange_weak(&room, &r, r - take))
            return (ssize_t)take;
    }
}

#define NEXT(name) ((__typeof__(&name))dlsym(RTLD_NEXT, #name))

ssize_t write(int fd, const void *buf, size_t n)
{
    ssize_t k = allowed(fd, n);
    if (n && !k) {
        errno = ENOSPC;
        return -1;
    }
    return NEXT(write)(fd, buf, (size_t)k);
}

ssize_t pwrite(int fd, const void *buf, size_t n, off_t off)
{
    ssize_t k = allowed(fd, n);
    if (n && !k) {
        errno = ENOSPC;
        return -1;
    }
    return NEXT(pwrite)(fd, buf, (size_t)k, off);
}

ssize_t pwrite64(int fd, const void *buf, size_t n, off_t off) { return pwrite(fd, buf, n, off); }

ssize_t writev(int fd, const struct iovec *iov, int cnt)
{
    size_t n = 0;
    for (int i = 0; i < cnt; i++)
        n += iov[i].iov_len;
    ssize_t k = allowed(fd, n);
    if (n && !k) {
        errno = ENOSPC;
        return -1;
    }
    /* short: the first k bytes, as plain writes */
    ssize_t done = 0;
    for (int i = 0; i < cnt && done < k; i++) {
        size_t part = iov[i].iov_len < (size_t)(k - done) ? iov[i].iov_len : (size_t)(k - done);
        ssize_t w = NEXT(write)(fd, iov[i].iov_base, part);
        if (w < 0)
            return done ? done : w;
        done += w;
    }
    return done;
}
