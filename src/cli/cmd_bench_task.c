/* `xorpatch bench-task`: a task benchmark (JSONL, one {"prompt", "answer"} per line)
 * run greedily without and with patches, scored exactly (GSM8K-style final number, or a
 * letter choice), with the paired statistics eval reports. This file parses the options
 * (loading the patches as it goes) and runs the bench-task job (xorpatch/job.h) with a
 * progress bar, its text or JSON on stdout. */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli_job.h"
#include "cli/cmd_patch_util.h"
#include "cli/cmd_search.h"

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
    "  --kernel NAME        fast-path kernel: avx512, avx2 or portable (default: best)\n"
    "  -t, --threads N      threads (default: all cores)\n"
    "  -q, --quiet          nothing on stderr but errors\n"
    "  -h, --help           this text\n";

static int run(int argc, char **argv)
{
    enum { O_TASKS = 256, O_KIND, O_CHAT, O_SYSTEM, O_STOPNL, O_LIMIT, O_JSON, O_KERNEL };
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'},     {"tasks", required_argument, 0, O_TASKS},
        {"patch", required_argument, 0, 'p'},     {"kind", required_argument, 0, O_KIND},
        {"chat", no_argument, 0, O_CHAT},         {"system", required_argument, 0, O_SYSTEM},
        {"max-tokens", required_argument, 0, 'n'}, {"stop-newline", no_argument, 0, O_STOPNL},
        {"limit", required_argument, 0, O_LIMIT}, {"json", no_argument, 0, O_JSON},
        {"kernel", required_argument, 0, O_KERNEL}, {"threads", required_argument, 0, 't'},
        {"quiet", no_argument, 0, 'q'},           {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    const char *model = NULL, *tasks = NULL, *kernel = NULL;
    xp_task_opts to = {.max_tokens = 256};
    int kind = XP_TASK_AUTO, opt, rc;
    size_t limit = 0;
    bool json = false;
    cli_patches list = {0};
    xp_err err = {0};
    optind = 1;
    while ((opt = getopt_long(argc, argv, "m:p:n:t:qh", opts, NULL)) != -1) {
        rc = -1;
        switch (opt) {
        case 'm': model = optarg; break;
        case O_TASKS: tasks = optarg; break;
        case 'p':
            if (cli_patches_add(&list, optarg, &err))
                rc = cli_fail(&err);
            break;
        case O_KIND:
            kind = !strcmp(optarg, "number") ? XP_TASK_NUMBER
                   : !strcmp(optarg, "choice") ? XP_TASK_CHOICE
                   : !strcmp(optarg, "auto")   ? XP_TASK_AUTO : -1;
            if (kind < 0)
                rc = cli_usage_error("bench-task", "--kind must be number, choice or auto, not "
                                     "'%s'", optarg);
            break;
        case O_CHAT: to.chat = true; break;
        case O_SYSTEM: to.system = optarg; break;
        case 'n': rc = cli_count_option("bench-task", "-n", optarg, &to.max_tokens); break;
        case O_STOPNL: to.stop_newline = true; break;
        case O_LIMIT: rc = cli_count_option("bench-task", "--limit", optarg, &limit); break;
        case O_JSON: json = true; break;
        case O_KERNEL: kernel = optarg; break;
        case 't': rc = cli_set_threads("bench-task", optarg); break;
        default: rc = cli_common_option(&cli_bench_task, opt);
        }
        if (rc >= 0) {
            cli_patches_free(&list);
            return rc;
        }
    }
    rc = -1;
    if (optind < argc)
        rc = cli_usage_error("bench-task", "unexpected argument '%s'", argv[optind]);
    else if (!model || !tasks)
        rc = cli_usage_error("bench-task", "-m MODEL and --tasks FILE are required");
    if (rc >= 0) {
        cli_patches_free(&list);
        return rc;
    }
    xp_bench_task_job job = {.model_path = model, .kernel = kernel, .tasks = tasks,
                             .kind = kind, .limit = limit, .patches = list.p,
                             .n_patches = list.n, .opts = to, .json = json, .out = stdout};
    cli_job_view view;
    rc = xp_bench_task_job_run(&job, cli_job_view_init(&view), &err);
    cli_patches_free(&list);
    return cli_job_view_end(&view, rc, &err);
}

const cli_command cli_bench_task = {"bench-task", "a JSONL task benchmark without and with "
                                    "patches, exact scoring", usage, run};
