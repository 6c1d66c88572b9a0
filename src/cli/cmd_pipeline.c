/* `xorpatch pipeline`: several domains searched in order on one model, each step on top
 * of the patches of the steps before it (the pipeline job, xorpatch/job.h). This file
 * names the search options it takes, runs the job on the probe files with a progress bar
 * per step and its lines on stdout, and maps its outcome to an exit code. */
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
    "Options:\n"
    "  -m, --model FILE       a Qwen3 GGUF (the base)\n"
    "  -o, --out DIR          the steps' patches and the summary (made when missing)\n"
    "  --controls FILE        probes every step keeps; repeat to add files (default: none)\n"
    "  --promote-cap N        solved targets promoted in all (default 20, 0 = none)\n"
    "  -t, --threads N        threads (default: all cores)\n"
    "  -q, --quiet            no progress or notes\n"
    "  -h, --help             this text\n"
    "and the search options, as `xorpatch help search` has them: --metric, --fitness,\n"
    "--lambda, --epsilon, --min-gain, --granularity, --scale-ratio, --scale-bits, --layers,\n"
    "--proj, --proposal, --rerank-every, --iterations, --screen, --auto-stop, --seed,\n"
    "--checkpoint-every, --naive, --allow-dead, --kernel, and --mpi (each step's search\n"
    "on mpirun's ranks).\n";

static const int options[] = {CLI_SEARCH_RUN_OPTIONS, CLI_O_PROMOTE_CAP};
CLI_COMMAND(cli_pipeline, "pipeline",
            "search several domains in order, promoting solved targets into later controls", usage,
            options, true, execute);

static int execute(const cli_values *v)
{
    if (!v->model || !v->out || v->n_args < 1)
        return cli_usage_error("pipeline", "-m MODEL, -o DIR and at least one probe file are "
                                           "required");
    xp_pipeline_job job = {.model_path = v->model,
                           .kernel = v->kernel,
                           .files = (const char *const *)v->args,
                           .n_files = (size_t)v->n_args,
                           .controls = v->controls.v,
                           .n_controls = v->controls.n,
                           .out_dir = v->out,
                           .promote_cap = v->given[CLI_O_PROMOTE_CAP] ? v->promote_cap : 20,
                           .allow_dead = v->allow_dead,
                           .lambda_given = v->given[CLI_O_LAMBDA],
                           .iterations_given = v->given[CLI_O_ITERATIONS],
                           .layers_given = v->given[CLI_O_SEARCH_LAYERS]};
    xp_search_opts_default(&job.opts);
    cli_search_opts(v, &job.opts);
    bool writes;
    int code = cli_job_team_open(v->mpi, NULL, &job.opts.team, &writes);
    if (code >= 0)
        return code;
    job.out = writes ? stdout : NULL;
    cli_job_view view;
    xp_err err = {0};
    int rc = xp_pipeline_job_run(&job, cli_job_view_init(&view), &err);
    return cli_job_team_end(&view, job.opts.team, rc, &err);
}
