/* What the jobs share inside the job layer: telling the caller (messages and progress
 * through its callbacks), the model a job runs on (the caller's, or one it opens), the
 * one writer of the patches a job makes, and a job's hooks into a search. */
#ifndef XP_JOB_INT_H
#define XP_JOB_INT_H
#include "xorpatch/job.h"

/* A message to the caller, formatted like printf. */
void job_note(const xp_job_callbacks *cb, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void job_warn(const xp_job_callbacks *cb, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* One stage's progress, as an xp_progress_fn (ctx: the job_stage). */
typedef struct job_stage {
    const xp_job_callbacks *cb;
    const char *name;
} job_stage;
void job_stage_progress(void *stage, uint64_t done, uint64_t total);
/* The stage starts: progress 0 of total. */
void job_stage_start(const job_stage *s, uint64_t total);

/* The model a job runs on: the caller's, or model_path opened (and kernel set); closed
 * by job_model_release only when the job opened it. */
int job_model_take(xp_model *given, const char *path, const char *kernel, xp_model **m,
                   xp_err *err);
void job_model_release(xp_model *given, xp_model *m);

/* Probe files loaded and concatenated in order into one set (the first file's
 * generation rules judge them all); NULL when n is 0. */
int job_probe_files_load(const char *const *paths, size_t n, xp_probe_set **out, xp_err *err);

/* How a job writes a patch, the one place it does: stamped (name when given, tool,
 * time), the base's shape recorded when base is given, in format, at path. */
typedef struct job_patch_out {
    const char *path;
    int format;       /* enum xp_patch_format */
    const char *name; /* NULL: the patch's own */
    const xp_gguf *base;
} job_patch_out;
int job_patch_write(const job_patch_out *o, xp_patch *p, xp_err *err);

/* What a job hooks into a search: each iteration goes to its log (when it keeps one), to
 * the caller's on_iter and as the stage's progress; the patches go to the job's writer. */
struct search_log;
typedef struct job_search {
    job_stage stage;
    size_t total;           /* the iterations, for the progress */
    struct search_log *log; /* NULL: none */
    job_patch_out out;
    bool no_empty; /* a patch without flips is not written (nothing resumes
                      from it: a pipeline's steps) */
} job_search;
/* Points o's on_iter, write_patch and ctx at s. */
void job_search_hook(job_search *s, xp_search_opts *o);
/* Whether this process writes what a job with search settings o makes: alone, or as
 * rank 0 of o's team (the other ranks only help the searches). */
bool job_writes(const xp_search_opts *o);

#endif
