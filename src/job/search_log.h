/* The search job's per-iteration log: one JSON line per iteration appended as the
 * search goes (a resumed search first drops the lines a killed run wrote after its
 * checkpoint), and every iteration kept in memory for the report's curves. */
#ifndef XP_JOB_SEARCH_LOG_H
#define XP_JOB_SEARCH_LOG_H
#include <stdio.h>

#include "xorpatch/job.h"

typedef struct search_log {
    int fd; /* -1 until the first line */
    const char *path;
    bool resume;           /* append to the file rather than start it afresh */
    bool trim;             /* resuming: drop the lines from the first new iteration on */
    int failed;            /* the errno of a line that could not be written, else 0 */
    bool validation;       /* the search has validation probes: their values per line */
    bool early_stop;       /* under the early-stop rule: its best point per line */
    bool detail;           /* flip accounting: per kept flip, the probes that moved and
                              crossed zero */
    const char *const *names[3]; /* probe names by role (enum xp_search_role), for detail */
    xp_search_iter *iters; /* every iteration written (and, after search_log_reread, the
                              resumed run's earlier ones first) */
    size_t n, cap;
} search_log;

/* Starts the log of path, to append (resuming) or afresh: an error when path is no
 * regular file; the file itself is made at the first line. */
int search_log_open(search_log *l, const char *path, bool resume, xp_err *err);
/* One iteration: its line, and remembered. */
void search_log_write(search_log *l, const xp_search_iter *it);
/* Closes the file (made empty when the search completed without a line); an error,
 * naming the file and the reason, when it or any line could not be written. */
int search_log_close(search_log *l, bool complete, xp_err *err);
/* A resumed search's iterations 1..upto read back from the file, before the ones
 * written by this run. */
void search_log_reread(search_log *l, size_t upto);
void search_log_free(search_log *l);
#endif
