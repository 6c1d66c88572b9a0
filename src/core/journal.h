/* The journal that makes an in-place change of a large file survive a crash at any
 * instant. The byte ranges to change are first written with their old and new contents
 * to FILE.xpjournal.tmp (fsync, then renamed to FILE.xpjournal and the directory synced:
 * the commit point), then written into the file, which is fsynced before the journal is
 * removed. Whoever next opens the file (xp_gguf_open, and every patch file operation)
 * finds either no journal — the file was never touched, or was completely changed — or a
 * committed one, and then writes every new range again (idempotent) after checking that
 * each byte still holds its old or its new value, so a journal never lands on a file that
 * changed since. The file is locked (flock) while it changes, so a live change's journal
 * is never taken for a crashed one. */
#ifndef XP_CORE_JOURNAL_H
#define XP_CORE_JOURNAL_H
#include <stdint.h>

#include "xorpatch/core.h"

typedef struct xp_journal_range {
    uint64_t off, len;
    uint8_t *pre, *post; /* the bytes there now, and what they become */
} xp_journal_range;

/* Opens path and locks it: exclusive (to change it, opened for writing) or shared. */
int xp_file_lock(const char *path, bool exclusive, int *fd, xp_err *err);
/* Journals, commits and writes the ranges into the locked file fd of file_size bytes;
 * step (when set) is called after every step that changes a file (a test hook). */
int xp_journal_commit(const char *path, int fd, const xp_journal_range *r, size_t n,
                      uint64_t file_size, void (*step)(void *ctx), void *ctx, xp_err *err);
/* Completes a committed journal of path on its locked file fd (and drops an uncommitted
 * one); *recovered tells whether there was one to complete. */
int xp_journal_recover_locked(const char *path, int fd, bool *recovered, xp_err *err);
/* The same for a path not yet open: locks it only when a journal is there. Also removes
 * the temporaries of killed whole-file writers of path (core/file.h). */
int xp_journal_recover(const char *path, bool *recovered, xp_err *err);
#endif
