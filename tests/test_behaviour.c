/* Behaviour is unchanged by restructuring: tests/behaviour/record.sh runs a fixed search
 * (with its evaluation), a scale-bit search, a pipeline and an eval on the shipped tiny
 * model, and what they write (timings and dates normalised) must equal the record in
 * tests/behaviour/expected/ byte for byte. The record was made before the job layer was
 * split out of the command-line front end. */
#include "testutil.h"

Test(behaviour, search_pipeline_and_eval_outputs_equal_the_record, .timeout = 600)
{
    const char *root = xp_test_env("XP_ROOT", ".");
    char out[512], cmd[4096];
    xp_test_tmp_path(out, sizeof out, "behaviour");
    snprintf(cmd, sizeof cmd,
             "'%s/tests/behaviour/record.sh' '%s' '%s/models/tiny-bonsai.gguf' '%s' "
             "&& diff -r '%s/tests/behaviour/expected' '%s' >&2",
             root, xp_test_bin(), root, out, root, out);
    char *err = NULL;
    int rc = xp_test_run(cmd, NULL, NULL, &err);
    cr_assert_eq(rc, 0, "the outputs differ from the record (exit %d):\n%.4000s", rc,
                 err ? err : "");
    free(err);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", out);
    cr_assert_eq(system(cmd), 0);
}
