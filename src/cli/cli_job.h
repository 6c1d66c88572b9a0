/* The printing side of the commands that run a job (search, pipeline, experiment,
 * bench-task): a progress bar per stage on stderr, and the job's messages as notes. */
#ifndef XP_CLI_JOB_H
#define XP_CLI_JOB_H
#include "cli/cli.h"

typedef struct cli_job_view {
    xp_job_callbacks cb; /* what to give the job */
    cli_progress bar;
    char stage[64]; /* the bar's label ("" when none is drawn) */
    uint64_t last;  /* the bar's last count */
} cli_job_view;

/* Callbacks that draw and say it (quiet and terminal rules as cli_note and the bar). */
void cli_job_view_init(cli_job_view *v);
/* Clears a bar still drawn. */
void cli_job_view_end(cli_job_view *v);
#endif
