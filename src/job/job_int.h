/* What the jobs share inside the job layer: telling the caller (messages and progress
 * through its callbacks), the model a job runs on (the caller's, or one it opens), the
 * one writer of the patches a job makes, and loading patch arguments. */
#ifndef XP_JOB_INT_H
#define XP_JOB_INT_H
#include "xorpatch.h"

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

/* How a job writes a patch, the one place it does: stamped (name when given, tool,
 * time), the base's shape recorded when base is given, in format, at path. */
typedef struct job_patch_out {
    const char *path;
    int format;       /* enum xp_patch_format */
    const char *name; /* NULL: the patch's own */
    const xp_gguf *base;
} job_patch_out;
int job_patch_write(const job_patch_out *o, xp_patch *p, xp_err *err);

/* Reads patch arguments (files in any format, or Neagari directories: each of their
 * patches) into a growing list; a manifest step whose file is absent is said. */
typedef struct job_patches {
    xp_patch **p;
    size_t n;
} job_patches;
int job_patches_add(job_patches *list, const char *path, const xp_job_callbacks *cb, xp_err *err);
void job_patches_free(job_patches *list);
#endif
