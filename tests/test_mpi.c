/* A search on the ranks of an MPI job writes what one process writes: tests/mpi/runs.sh
 * runs searches of several seeds, fitnesses and flip kinds, a pipeline and the
 * null-baseline experiment, alone and on three ranks (mpirun -np 3 on this machine's
 * cores, oversubscribed), and their patches, logs, reports and summaries (timings
 * normalised) must be equal; tests/mpi/killed.sh kills a rank mid-run (mpirun must name
 * it, rank 0 its checkpoint) and resumes from the checkpoint, which must end as the
 * uninterrupted run does. Ranks that do not run
 * the same search are refused, and an xorpatch without MPI says how to get it. The MPI
 * tests skip, saying why, when build/xorpatch-mpi or mpirun is absent. */
#include "testutil.h"

#define LAUNCHER "mpirun --allow-run-as-root --oversubscribe --bind-to none -x OMP_WAIT_POLICY"

/* build/xorpatch-mpi, or skip the calling test. */
static const char *mpi_bin(void)
{
    const char *bin = getenv("XP_MPI_BIN");
    if (!bin || !*bin)
        cr_skip_test("skipped: this run has no MPI program (make builds build/xorpatch-mpi when "
                     "Open MPI is installed: apt-get install libopenmpi-dev openmpi-bin; the "
                     "sanitizer run leaves it out)");
    if (access(bin, X_OK) != 0 || system("command -v mpirun >/dev/null 2>&1") != 0)
        cr_skip_test("skipped: %s or mpirun is missing", bin);
    return bin;
}

static void model_path(char *out, size_t size)
{
    snprintf(out, size, "%s/models/tiny-bonsai.gguf", xp_test_env("XP_ROOT", "."));
}

Test(mpi, three_ranks_write_what_one_process_writes, .timeout = 1800)
{
    const char *bin = mpi_bin(), *root = xp_test_env("XP_ROOT", ".");
    char one[512], team[512], model[512], cmd[4096];
    model_path(model, sizeof model);
    xp_test_tmp_path(one, sizeof one, "mpi-one");
    xp_test_tmp_path(team, sizeof team, "mpi-team");
    snprintf(cmd, sizeof cmd,
             "('%s/tests/mpi/runs.sh' '%s' '%s' '%s' && '%s/tests/mpi/runs.sh' '%s' '%s' '%s' "
             "%s -np 3 && diff -r '%s' '%s') >&2",
             root, one, xp_test_bin(), model, root, team, bin, model, LAUNCHER, one, team);
    char *err = NULL;
    int rc = xp_test_run(cmd, NULL, NULL, &err);
    cr_assert_eq(rc, 0, "three ranks wrote something else than one process (exit %d):\n%.4000s", rc,
                 err ? err : "");
    free(err);
    snprintf(cmd, sizeof cmd, "rm -rf '%s' '%s'", one, team);
    cr_assert_eq(system(cmd), 0);
}

Test(mpi, a_killed_rank_stops_the_run_and_its_checkpoint_resumes_exactly, .timeout = 1200)
{
    const char *bin = mpi_bin(), *root = xp_test_env("XP_ROOT", ".");
    char out[512], model[512], cmd[4096];
    model_path(model, sizeof model);
    xp_test_tmp_path(out, sizeof out, "mpi-killed");
    snprintf(cmd, sizeof cmd,
             "('%s/tests/mpi/killed.sh' '%s' '%s' '%s' '%s' %s -np 3 && diff '%s/one/p.json.norm' "
             "'%s/team/p.json.norm' && diff '%s/one/p.json.log.jsonl.norm' "
             "'%s/team/p.json.log.jsonl.norm') >&2",
             root, out, xp_test_bin(), bin, model, LAUNCHER, out, out, out, out);
    char *err = NULL;
    int rc = xp_test_run(cmd, NULL, NULL, &err);
    cr_assert_eq(rc, 0, "the killed and resumed run differs (exit %d):\n%.4000s", rc,
                 err ? err : "");
    free(err);
    char path[600];
    snprintf(path, sizeof path, "%s/team/killed.err", out);
    char *killed = xp_test_slurp(path);
    cr_assert(killed && strstr(killed, "rank 1"), "mpirun's message names no rank:\n%s",
              killed ? killed : "");
    cr_assert(strstr(killed, "mpirun stopped the search") &&
                  strstr(killed, "the last checkpoint is ") && strstr(killed, "--resume"),
              "rank 0 did not say where to resume from:\n%s", killed);
    free(killed);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", out);
    cr_assert_eq(system(cmd), 0);
}

Test(mpi, ranks_that_run_another_search_are_refused, .timeout = 600)
{
    const char *bin = mpi_bin(), *root = xp_test_env("XP_ROOT", ".");
    char out[512], model[512], args[2048], cmd[8192];
    model_path(model, sizeof model);
    xp_test_tmp_path(out, sizeof out, "mpi-other.json");
    snprintf(args, sizeof args,
             "search -m '%s' --probes '%s/tests/behaviour/train.json' --iterations 5 --no-eval "
             "-t 1 --mpi -o '%s'",
             model, root, out);
    /* rank 1 runs with another seed */
    snprintf(cmd, sizeof cmd, "%s -np 1 '%s' %s --seed 1 : -np 1 '%s' %s --seed 2", LAUNCHER, bin,
             args, bin, args);
    char *err = NULL;
    int rc = xp_test_run(cmd, NULL, NULL, &err);
    cr_assert_neq(rc, 0);
    cr_assert(err && strstr(err, "rank 1 of 2: its settings or probes are not rank 0's"), "%s",
              err ? err : "");
    cr_assert(access(out, F_OK) != 0, "a refused run wrote its patch");
    free(err);
    /* ranks without --mpi would each run the whole search and write the same files */
    char *plain = strstr(args, " --mpi");
    memmove(plain, plain + 6, strlen(plain + 6) + 1);
    snprintf(cmd, sizeof cmd, "%s -np 2 '%s' %s", LAUNCHER, bin, args);
    err = NULL;
    cr_assert_neq(xp_test_run(cmd, NULL, NULL, &err), 0);
    cr_assert(err && strstr(err, "without --mpi: each would run the whole search"), "%s",
              err ? err : "");
    cr_assert(access(out, F_OK) != 0, "a refused run wrote its patch");
    free(err);
}

Test(mpi, without_mpi_the_option_says_how_to_get_it)
{
    char cmd[4096], model[512];
    model_path(model, sizeof model);
    snprintf(cmd, sizeof cmd, "'%s' search -m '%s' --probes x.json -o x.json --mpi", xp_test_bin(),
             model);
    char *err = NULL;
    int rc = xp_test_run(cmd, NULL, NULL, &err);
    cr_assert_neq(rc, 0);
    cr_assert(err && strstr(err, "without MPI") && strstr(err, "libopenmpi-dev") &&
                  strstr(err, "build/xorpatch-mpi"),
              "%s", err ? err : "");
    free(err);
}
