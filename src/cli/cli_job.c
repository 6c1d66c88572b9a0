/* A job's callbacks for a terminal (cli_job.h): a stage's progress draws a bar labelled
 * with it, a new stage (or a count going back) starts a fresh one, a finished stage
 * clears it, and a message clears it before it is said; and the searches' crash hook. */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli_job.h"

static void bar_clear(cli_job_view *v)
{
    if (v->stage[0])
        cli_progress_end(&v->bar);
    v->stage[0] = 0;
}

static void progress(void *ctx, const char *stage, uint64_t done, uint64_t total)
{
    cli_job_view *v = ctx;
    if (!v->stage[0] || strcmp(stage, v->stage) || done < v->last) {
        bar_clear(v);
        snprintf(v->stage, sizeof v->stage, "%s", stage);
        cli_progress_start(&v->bar, v->stage);
    }
    v->last = done;
    cli_progress_update(&v->bar, done, total);
    if (total && done >= total)
        bar_clear(v);
}

static void note(void *ctx, int level, const char *text)
{
    (void)ctx, (void)level; /* notes and warnings alike: on stderr unless quiet */
    cli_note("%s", text);
}

const xp_job_callbacks cli_job_notes = {.message = note};

static void message(void *ctx, int level, const char *text)
{
    bar_clear(ctx);
    note(ctx, level, text);
}

/* The crash hook of the searches, for tests: with XORPATCH_CRASH_AT_ITERATION=N the
 * process kills itself (SIGKILL) once iteration N is in its log. */
static long crash_at_iteration;

static void crash_at(void *ctx, const xp_search_iter *it)
{
    (void)ctx;
    if ((long)it->iter >= crash_at_iteration)
        raise(SIGKILL);
}

const xp_job_callbacks *cli_job_view_init(cli_job_view *v)
{
    memset(v, 0, sizeof *v);
    const char *crash = getenv("XORPATCH_CRASH_AT_ITERATION");
    crash_at_iteration = crash && *crash ? strtol(crash, NULL, 10) : 0;
    v->cb = (xp_job_callbacks){progress, crash_at_iteration > 0 ? crash_at : NULL, message, v};
    return &v->cb;
}

int cli_job_view_end(cli_job_view *v, int rc, const xp_err *err)
{
    bar_clear(v);
    return rc ? cli_fail(err) : EXIT_OK;
}

/* What rank 0 says when mpirun stops it, made before: a signal handler only writes. */
static char stopped_text[1200];

static void stopped(int sig)
{
    ssize_t n = write(STDERR_FILENO, stopped_text, strlen(stopped_text));
    (void)n; /* nothing more could be done about a failed write */
    _exit(128 + sig);
}

int cli_job_team_open(bool mpi, const char *checkpoint, xp_search_team **team, bool *writes)
{
    *team = NULL;
    *writes = true;
    xp_err err = {0};
    /* mpirun (Open MPI, or a PMI one such as MPICH) names the size of the job it starts */
    const char *size =
        getenv("OMPI_COMM_WORLD_SIZE") ? getenv("OMPI_COMM_WORLD_SIZE") : getenv("PMI_SIZE");
    if (!mpi && size && atoi(size) > 1) {
        fprintf(stderr,
                "xorpatch: error: this is one of the %d processes of an MPI job, without "
                "--mpi: each would run the whole search and write the same files; add --mpi\n",
                atoi(size));
        return EXIT_USAGE;
    }
    if (!mpi)
        return -1;
    if (xp_search_team_open(team, &err))
        return cli_fail(&err);
    if (xp_search_team_rank(*team) > 0) {
        cli.quiet = true, *writes = false;
        return -1;
    }
    snprintf(stopped_text, sizeof stopped_text,
             "xorpatch: error: mpirun stopped the search (a rank ended, or the job was "
             "interrupted)%s%.1000s%s\n",
             checkpoint ? ": the last checkpoint is " : "", checkpoint ? checkpoint : "",
             checkpoint ? ", and --resume goes on from it exactly" : "");
    signal(SIGTERM, stopped);
    return -1;
}

int cli_job_team_end(cli_job_view *v, xp_search_team *team, int rc, const xp_err *err)
{
    if (!team)
        return cli_job_view_end(v, rc, err);
    int rank = xp_search_team_rank(team), code;
    if (rc && rank > 0 && xp_search_team_failed_together(team)) { /* rank 0 says it */
        bar_clear(v);
        code = err->code == XP_ENOMEM || err->code == XP_EINTERNAL ? EXIT_INTERNAL : EXIT_BAD_INPUT;
    } else {
        xp_err mine = *err;
        if (rc && rank > 0)
            xp_err_wrap(&mine, "rank %d of %d", rank, xp_search_team_size(team));
        code = cli_job_view_end(v, rc, &mine);
    }
    xp_search_team_stats s;
    xp_search_team_stats_get(team, &s);
    if (!code && rank == 0 && s.searches)
        cli_note("mpi: %d ranks: %zu iterations from %zu candidate evaluations (%zu thrown away "
                 "after %zu kept flips), %.1f s in the search loop",
                 xp_search_team_size(team), s.iterations, s.evaluations, s.thrown_away, s.commits,
                 s.seconds);
    xp_search_team_close(team, code);
    return code;
}
