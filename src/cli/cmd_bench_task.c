/* `xorpatch bench-task`: a task benchmark (JSONL, one {"prompt", "answer"} per line)
 * run greedily without and with patches, scored exactly (GSM8K-style final number, or a
 * letter choice), with the paired statistics eval reports. This file names the options
 * (the patches are loaded as they come) and runs the bench-task job (xorpatch/job.h) with a
 * progress bar, its text or JSON on stdout. */
#include "cli/cli_job.h"
#include "cli/options.h"

static const char usage[] =
    "Usage: xorpatch bench-task -m MODEL --tasks FILE.jsonl [-p PATCH ...] [options]\n"
    "\n"
    "Runs every task greedily (all prompts batched, KV caches) without and with the patches\n"
    "and scores each output exactly: 'number' takes the output's final number (commas\n"
    "dropped; the number after \"####\" when present) and compares it with the answer's, as\n"
    "GSM8K is scored; 'choice' takes the first standalone letter A-J (\"B\", \"(B)\",\n"
    "\"Answer: B\"). Reports accuracy with Wilson 95% intervals, fixed / broke, the exact\n"
    "McNemar p-value and a 95% interval for the paired difference.\n"
    "\n"
    "  -m, --model FILE     a Qwen3 GGUF (the unpatched base)\n"
    "  --tasks FILE         JSONL: one {\"prompt\": TEXT, \"answer\": TEXT or number} per line\n"
    "  -p, --patch PATH     a patch file or Neagari patch directory; repeat to stack\n"
    "  --kind KIND          number, choice, or auto (default: choice when every answer is a\n"
    "                       single letter)\n"
    "  --chat               send each prompt as the user turn of the chat template\n"
    "  --system TEXT        with --chat: a system message\n"
    "  -n, --max-tokens N   at most N new tokens per task (default 256)\n"
    "  --stop-newline       stop each output at its first newline\n"
    "  --limit N            only the first N tasks\n"
    "  --json               one JSON object on stdout:\n"
    "                       {\"tasks\", \"kind\", \"patches\": [names], \"summary\": PAIRED (as\n"
    "                        in eval --help), \"items\": [{\"answer\", \"right\": [base,\n"
    "                        patched], \"output\": [base, patched]}, ...]}\n"
    "  --kernel NAME        fast-path kernel: " CLI_KERNEL_NAMES " (default: best)\n"
    "  -t, --threads N      threads (default: all cores)\n"
    "  -q, --quiet          nothing on stderr but errors\n"
    "  -h, --help           this text\n";

static const int options[] = {CLI_O_MODEL, CLI_O_TASKS,  CLI_O_PATCH,      CLI_O_KIND,
                              CLI_O_CHAT,  CLI_O_SYSTEM, CLI_O_MAX_TOKENS, CLI_O_STOP_NEWLINE,
                              CLI_O_LIMIT, CLI_O_JSON,   CLI_O_KERNEL,     CLI_O_THREADS};
CLI_COMMAND(cli_bench_task, "bench-task",
            "a JSONL task benchmark without and with patches, exact scoring", usage, options, false,
            execute);

static int execute(const cli_values *v)
{
    if (!v->model || !v->tasks)
        return cli_usage_error("bench-task", "-m MODEL and --tasks FILE are required");
    xp_task_opts to = {.max_tokens = v->given[CLI_O_MAX_TOKENS] ? v->max_tokens : 256,
                       .chat = v->chat,
                       .system = v->system,
                       .stop_newline = v->stop_newline};
    xp_bench_task_job job = {.model_path = v->model,
                             .kernel = v->kernel,
                             .tasks = v->tasks,
                             .kind = v->task_kind,
                             .limit = v->limit,
                             .patches = v->patches.p,
                             .n_patches = v->patches.n,
                             .opts = to,
                             .json = v->json,
                             .out = stdout};
    cli_job_view view;
    xp_err err = {0};
    int rc = xp_bench_task_job_run(&job, cli_job_view_init(&view), &err);
    return cli_job_view_end(&view, rc, &err);
}
