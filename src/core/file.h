/* Whole files: read into memory, and written atomically (a temporary file beside the
 * target, fsync, rename, fsync of the directory), so a reader sees the old file or the
 * new one and never half of one. Only a regular file (or no file) is ever replaced: a
 * device, FIFO, directory or socket at the target is refused. The temporary file is
 * named TARGET.tmp.XXXXXX and locked (flock) by its writer for as long as it lives, so
 * the leftover of a killed writer can be told from a live one's and removed. */
#ifndef XP_CORE_FILE_H
#define XP_CORE_FILE_H
#include <stddef.h>

#include "xorpatch/core.h"

/* *buf is malloc'd with a NUL after the len bytes. */
int xp_read_file(const char *path, char **buf, size_t *len, xp_err *err);
int xp_write_file_atomic(const char *path, const void *buf, size_t len, xp_err *err);
/* fsync of the directory holding path, so a rename in it survives a crash. */
int xp_sync_dir_of(const char *path, xp_err *err);
/* The whole of buf to fd (EINTR and short writes retried); errno tells why on failure. */
int xp_write_all(int fd, const void *buf, size_t len);

/* An error naming path unless it is absent or a regular file (or a link to one). */
int xp_check_output_path(const char *path, xp_err *err);
/* Starts an atomic write of path: checks it (xp_check_output_path), removes the stale
 * temporaries of earlier writers of path, and creates and locks a new one (*tmp, malloc'd;
 * *fd open for writing, mode 0644). */
int xp_atomic_begin(const char *path, char **tmp, int *fd, xp_err *err);
/* Ends it: when rc is XP_OK, fsyncs fd, renames *tmp over path (checked again) and syncs
 * the directory; else (or when that fails) removes the temporary. Closes fd, frees tmp and
 * returns the first error. */
int xp_atomic_end(int rc, const char *path, char *tmp, int fd, xp_err *err);
/* Removes the temporaries PATH.tmp.XXXXXX (the naming above, regular files only) that no
 * live writer holds: what a killed write of path left behind. Errors are ignored. */
void xp_remove_stale_temps(const char *path);
#endif
