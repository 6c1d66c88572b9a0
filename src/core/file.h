/* Whole files: read into memory, and written atomically (a temporary file beside the
 * target, fsync, rename, fsync of the directory), so a reader sees the old file or the
 * new one and never half of one. */
#ifndef XP_CORE_FILE_H
#define XP_CORE_FILE_H
#include <stddef.h>

#include "xorpatch/core.h"

/* *buf is malloc'd with a NUL after the len bytes. */
int xp_read_file(const char *path, char **buf, size_t *len, xp_err *err);
int xp_write_file_atomic(const char *path, const void *buf, size_t len, xp_err *err);
/* fsync of the directory holding path, so a rename in it survives a crash. */
int xp_sync_dir_of(const char *path, xp_err *err);
#endif
