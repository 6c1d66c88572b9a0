/* The printing side of the commands that run a job (search, pipeline, experiment,
 * bench-task): a progress bar per stage on stderr, and the job's messages as notes. */
#ifndef XP_CLI_JOB_H
#define XP_CLI_JOB_H
#include "cli/cli.h"

typedef struct cli_job_view {
    xp_job_callbacks cb;
    cli_progress bar;
    char stage[64]; /* the bar's label ("" when none is drawn) */
    uint64_t last;  /* the bar's last count */
} cli_job_view;

/* Callbacks that draw and say it (quiet and terminal rules as cli_note and the bar):
 * what to give the job. */
const xp_job_callbacks *cli_job_view_init(cli_job_view *v);
/* After the job: clears a bar still drawn, prints the job's error when rc is one, and
 * returns the exit code. */
int cli_job_view_end(cli_job_view *v, int rc, const xp_err *err);

/* Callbacks that only say the messages, as notes (for a call outside a job's run). */
extern const xp_job_callbacks cli_job_notes;

/* --mpi (mpi set): this process joins the MPI job it is a rank of, into *team (NULL
 * without --mpi; a process of a job of several ranks without it is a usage error); a rank other
 * than 0 is quiet from then on, and *writes is false for it (it must not print the job's results
 * either). Rank 0, stopped by mpirun (as when another rank dies), says so and names checkpoint, the
 * patch to resume from (NULL: none). -1 to go on, or the exit code. */
int cli_job_team_open(bool mpi, const char *checkpoint, xp_search_team **team, bool *writes);
/* After the job, in place of cli_job_view_end: rank 0 says how the team shared the
 * work; a failure is printed by the ranks it is news to (rank 0, or a rank that failed
 * alone); the team is closed (a failure only this rank knows of stops every rank).
 * Returns the exit code. */
int cli_job_team_end(cli_job_view *v, xp_search_team *team, int rc, const xp_err *err);
#endif
