/* `xorpatch pipeline`: several domains searched in order on one model, each step on top
 * of the patches of the steps before it (the pipeline job, xorpatch/job.h). This file
 * takes the search's options and the probe files, runs the job with a progress bar per
 * step and its lines on stdout, and maps its outcome to an exit code. */
#include "cli/cli_job.h"
#include "cli/cmd_search.h"

static const char usage[] =
    "Usage: xorpatch pipeline -m MODEL -o DIR [options] PROBES...\n"
    "\n"
    "Runs the search once per probe file, in order, each step on the model patched by the\n"
    "steps before it. Targets a step solves (gap <= 0 before it, > 0 after) become\n"
    "controls of the later steps, at most --promote-cap of them in all (default 20),\n"
    "first solved first. Per step, a Neagari\n"
    "file's search_config sets lambda (lambda_control), the iterations (min_iterations)\n"
    "and the layers (recommended_layers below the model's count) unless given here.\n"
    "Writes DIR/step-K-DOMAIN.json per step (a step's patch applies on top of the earlier\n"
    "steps'; its search JSON lists them under \"after\"), DIR/stacked.json (every step's\n"
    "flips XORed together, for the base) and DIR/pipeline.json, a summary:\n"
    "  {\"model\", \"steps\": [{\"domain\", \"file\", \"patch\", \"iterations\", \"accepted\",\n"
    "   \"flips\", \"lambda\", \"targets\", \"solved_before\", \"solved_after\", \"controls\",\n"
    "   \"controls_broken\", \"promoted\", \"seconds\"}], \"stacked\": {\"path\", \"flips\"}}\n"
    "\n"
    "Options: -m, -o DIR, --controls FILE, --promote-cap N, and the search options\n"
    "(--metric, --fitness, --lambda, --epsilon, --min-gain, --granularity, --scale-ratio,\n"
    "--scale-bits, --layers, --proj, --proposal, --iterations, --screen, --auto-stop,\n"
    "--seed, --checkpoint-every, --allow-dead, --kernel, -t, -q, -h); see `xorpatch help\n"
    "search`.\n";

static int run(int argc, char **argv)
{
    cli_search_args a = {
        .command = "pipeline", .self = &cli_pipeline, .pipeline = true, .promote_cap = 20};
    xp_search_opts_default(&a.opts);
    int rc = cli_search_parse(argc, argv, &a);
    if (rc >= 0)
        return rc;
    int n_files = argc - a.first_file;
    if (!a.model || !a.out || n_files < 1)
        return cli_usage_error("pipeline", "-m MODEL, -o DIR and at least one probe file are "
                                           "required");
    if (a.probes || a.heldout || a.resume || a.name || a.log || a.report || a.no_eval)
        return cli_usage_error("pipeline",
                               "--probes, --heldout, --resume, --name, --log, "
                               "--report and --no-eval belong to search; give the probe files "
                               "as arguments");
    xp_pipeline_job job = {.model_path = a.model,
                           .kernel = a.kernel,
                           .files = (const char *const *)argv + a.first_file,
                           .n_files = (size_t)n_files,
                           .controls = a.controls,
                           .out_dir = a.out,
                           .promote_cap = a.promote_cap,
                           .allow_dead = a.allow_dead,
                           .opts = a.opts,
                           .lambda_given = a.lambda_set,
                           .iterations_given = a.iterations_set,
                           .layers_given = a.layers_set,
                           .out = stdout};
    cli_job_view view;
    xp_err err = {0};
    rc = xp_pipeline_job_run(&job, cli_job_view_init(&view), &err);
    return cli_job_view_end(&view, rc, &err);
}

const cli_command cli_pipeline = {"pipeline",
                                  "search several domains in order, promoting "
                                  "solved targets into later controls",
                                  usage, run};
