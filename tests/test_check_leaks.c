/* scripts/check-leaks.sh, which make test runs on the sanitised suite's log: a leak
 * report with a frame in the project's own code (any src/ folder, examples/, a test)
 * fails; one whose frames are all in Criterion or the sanitizer runtime (whose own
 * sources also live under a "src/" folder) does not. */
#include "testutil.h"

static int check(const char *frames)
{
    char log[512], cmd[2048];
    xp_test_tmp_path(log, sizeof log, "leaks.log");
    char text[1024];
    snprintf(text, sizeof text,
             "[====] Synthesis: Tested: 1\n==1==ERROR: LeakSanitizer: detected memory leaks\n"
             "Direct leak of 48 byte(s) in 1 object(s) allocated from:\n%s\n"
             "SUMMARY: AddressSanitizer: 48 byte(s) leaked in 1 allocation(s).\n",
             frames);
    xp_test_write(log, text);
    snprintf(cmd, sizeof cmd, "'%s/scripts/check-leaks.sh' '%s' 2>/dev/null",
             xp_test_env("XP_ROOT", "."), log);
    int rc = xp_test_run(cmd, NULL, NULL, NULL);
    unlink(log);
    return rc;
}

Test(check_leaks, runtime_leaks_pass_and_project_leaks_fail)
{
    const char *runtime =
        "    #0 0x7f in __interceptor_calloc ../../../../src/libsanitizer/asan/"
        "asan_malloc_linux.cpp:77\n    #1 0x7f  (/lib/x86_64-linux-gnu/libcriterion.so.3+0x1a332)";
    cr_assert_eq(check(runtime), 0, "a leak inside Criterion and the runtime fails the build");
    const char *dirs[] = {"src/job/search_job.c", "src/probe/audit.c", "src/core/file.c",
                          "examples/search.c", "tests/test_job.c"};
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
        char frames[512];
        snprintf(frames, sizeof frames, "%s\n    #2 0x55 in some_function %s:12", runtime,
                 dirs[i]);
        cr_assert_eq(check(frames), 1, "a leak through %s passes", dirs[i]);
    }
}
